"""Score a trained classifier on a data dir: accuracy, confusion matrix, parameters and MACs.

Writes `<exp-dir>/decode_<set>/{hyp, errs, confusion.txt, results.json, summary}`; `summary` is one
greppable line, e.g. `%ACC 96.12 [ 1153 / 1200 ] exp/train_nas1/decode_test`.

e.g.: python -m nasr.bin.evaluate --exp-dir exp/train_nas1 --data data/test
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


from nasr.models.registry import build_model
from nasr.train.checkpoint import load_checkpoint, load_model_state
from nasr.train.kws import make_dataset, make_loader
from nasr.train.loop import predict
from nasr.train.metrics import accuracy, confusion_matrix, format_confusion
from nasr.utils.cli import cli_main, require_inputs
from nasr.utils.config import load_yaml
from nasr.utils.device import get_device, plan_device
from nasr.utils.io import atomic_write, read_json, write_json, write_table
from nasr.utils.log import setup_logging
from nasr.utils.profile import profile


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--data", required=True, help="data dir to score")
    p.add_argument("--name", default=None, help="set name (default: the data dir's name)")
    p.add_argument("--checkpoint", default="best.pt", help="file in --exp-dir, or a path")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=128)
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    require_inputs(data_dirs=[args.data], exp_dir=args.exp_dir)
    exp = Path(args.exp_dir)
    name = args.name or Path(args.data).name
    out = exp / f"decode_{name}"
    log = setup_logging(exp / "log" / f"decode_{name}.log")
    cfg = load_yaml(exp / "config.yaml")
    ckpt_path = Path(args.checkpoint) if Path(args.checkpoint).is_file() else exp / args.checkpoint
    state = load_checkpoint(ckpt_path)
    device = get_device(args.device)
    model = build_model(cfg["model"]).to(device)
    load_model_state(model, state, ckpt_path)

    labels = [l.strip() for l in open(Path(args.data) / "labels.txt", encoding="utf-8") if l.strip()]
    ds, _ = make_dataset([args.data], labels, None, cfg.get("seed", 1))
    plan = plan_device(device, cfg.get("amp", "auto"), cfg.get("bf16", False))  # as the model trained
    logits, refs = predict(model, make_loader(ds, args.batch_size, False, 0, pin_memory=plan.pin_memory), device,
                           plan.amp_dtype)
    hyps = logits.argmax(-1)
    cm = confusion_matrix(refs.tolist(), hyps.tolist(), len(labels))
    acc = accuracy(cm)
    shape = (cfg["model"]["in_channels"], *cfg["input_size"])  # one example, no batch dim
    prof = profile(model, shape)

    utts = ds.utts
    write_table(out / "hyp", {u: labels[h] for u, h in zip(utts, hyps.tolist())})
    write_table(out / "errs", {u: f"ref={labels[r]} hyp={labels[h]}"
                               for u, r, h in zip(utts, refs.tolist(), hyps.tolist()) if r != h})
    with atomic_write(out / "confusion.txt") as f:
        f.write(format_confusion(cm, labels) + "\n")
    correct, total = int(cm.trace()), int(cm.sum())
    summary = f"%ACC {100 * acc:.2f} [ {correct} / {total} ] {out}"
    train_info = read_json(exp / "train.json") if (exp / "train.json").is_file() else {}
    write_json(out / "results.json", {
        "exp_dir": str(exp), "set": name, "checkpoint": str(ckpt_path), "model": cfg["model"]["name"],
        "cells": cfg["model"].get("layers"), "channels": cfg["model"].get("C"),
        "params": prof["params"], "macs": prof["macs"], "acc": acc, "correct": correct, "total": total,
        "labels": labels, "confusion": cm.tolist(), "epochs": cfg.get("epochs"),
        "train_seconds": train_info.get("train_seconds"), "device": train_info.get("device"),
        "genotype_source": train_info.get("genotype_source"), "train_command": train_info.get("command"),
        "checkpoint_selection": train_info.get("checkpoint_selection"),
        "eval_command": " ".join(["python -m nasr.bin.evaluate"] + (argv if argv is not None else sys.argv[1:]))})
    with atomic_write(out / "summary") as f:
        f.write(summary + "\n")
    log.info("%s\n%s", summary, format_confusion(cm, labels))
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "evaluate"))
