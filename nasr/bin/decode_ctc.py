"""Greedy CTC decoding and scoring of a data dir with a trained model.

Writes <exp-dir>/decode_<name>/: `hyp`, `errs`, `summary`, `score.json` over the model's units
(token accuracy = 1 - (S + D + I) / N over unit tokens, nasr.asr.scoring.token_accuracy), and, for
char and bpe units, the same files under `char/` with the Kaldi-style `%CER` line (syllable units
are not characters: their %TER line is the syllable error rate). results.json gathers the figures
for the report stage.

e.g.: python -m nasr.bin.decode_ctc --exp-dir exp/train_asrnet_b --data data/test --name test
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from nasr.asr.scoring import write_score_files
from nasr.data.asr_dataset import AsrDataset
from nasr.nas.ops import count_parameters
from nasr.bin.train_ctc import build_ctc_model
from nasr.train.checkpoint import load_checkpoint
from nasr.train.ctc import evaluate_ctc, make_loader
from nasr.utils.config import load_yaml
from nasr.utils.device import get_device
from nasr.utils.io import read_json, read_table, write_json
from nasr.utils.log import setup_logging

log = logging.getLogger("nasr.decode_ctc")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, help="training exp dir (config.yaml, best.pt)")
    p.add_argument("--data", required=True, help="featurised data dir to decode")
    p.add_argument("--name", default=None, help="set name (default: the data dir's name)")
    p.add_argument("--checkpoint", default="best.pt", help="file in --exp-dir, or a path")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    exp = Path(args.exp_dir)
    name = args.name or Path(args.data).name
    out = exp / f"decode_{name}"
    setup_logging(out / "log" / "decode.log")
    cfg = load_yaml(exp / "config.yaml")
    device = get_device(args.device)
    d = cfg["data"]
    ds = AsrDataset(args.data, d["lang"], max_frames=None, return_utt=True)
    model = build_ctc_model(cfg, d["in_channels"], d["feat_dim"], d["num_units"]).to(device)
    ckpt = Path(args.checkpoint) if Path(args.checkpoint).is_file() else exp / args.checkpoint
    model.load_state_dict(load_checkpoint(ckpt)["model"])
    ev, hyps, refs = evaluate_ctc(model, make_loader(ds, None, args.batch_size, False), device,
                                  bool(cfg.get("bf16", False)))
    units = ds.tokenizer.units
    hyp_units = {u: " ".join(units.decode(h)) for u, h in hyps.items()}
    ref_units = {u: " ".join(units.decode(r)) for u, r in refs.items()}
    tok = write_score_files(out, ref_units, hyp_units, unit="token", name=str(out))
    result = {"set": name, "model": cfg["model"]["name"], "params": count_parameters(model),
              "cells": cfg["model"].get("layers"), "channels": cfg["model"].get("C"),
              "unit_type": ds.tokenizer.unit_type, "utts": len(refs), "ctc_loss": ev["loss"],
              "token_accuracy": tok.token_accuracy, "ter": tok.rate, "token_summary": (out / "summary").read_text().splitlines()[0],
              "genotype_source": cfg["model"].get("genotype"), "checkpoint": str(ckpt),
              "eval_command": " ".join(["python -m nasr.bin.decode_ctc"] + (argv if argv is not None else sys.argv[1:]))}
    if ds.tokenizer.unit_type in ("char", "bpe"):
        text = read_table(Path(args.data) / "text")
        ref_text = {u: text[u] for u in refs}
        hyp_text = {u: ds.tokenizer.detokenize(units.decode(h)) for u, h in hyps.items()}
        cer = write_score_files(out / "char", ref_text, hyp_text, unit="char", name=str(out))
        result.update(cer=cer.rate, cer_summary=(out / "char" / "summary").read_text().splitlines()[0])
    train_json = exp / "train.json"
    if train_json.is_file():
        t = read_json(train_json)
        result.update(train_seconds=t["train_seconds"], epochs=t["epochs"], device=t["device"],
                      train_command=t["command"])
    write_json(out / "results.json", result)
    log.info("%s: token accuracy %.2f%%%s", name, 100 * tok.token_accuracy,
             f", {result['cer_summary']}" if "cer" in result else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
