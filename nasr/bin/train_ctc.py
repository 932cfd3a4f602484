"""Train a CTC acoustic model (the evaluation network stacked from a searched genotype) from scratch.

The model is chosen by `model.name` in the config (nasr.models.registry); input channels, feature
dimension and unit count come from the data and lang dir. SGD with a cosine schedule to 0
(the paper: lr 0.01, momentum 0.9, wd 3e-4, batch 4, 20 epochs), length-bucketed batches,
optional bf16 autocast. Every epoch writes epoch-N.pt (model, optimizer, scheduler, history);
`--resume` continues from the newest one. best.pt is the epoch with the lowest dev loss (the last
epoch without --valid-data).

e.g.: python -m nasr.bin.train_ctc --config conf/train_asrnet_b.yaml --train-data data/train_sp \
        --valid-data data/dev --lang data/lang_syllable --genotype exp/pdarts_asr_revised/genotype.json \
        --exp-dir exp/train_asrnet_b --resume
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import time
from pathlib import Path

import torch

import nasr.nas.asr_head  # noqa: F401  (registers the "ctc" head)
from nasr.data.asr_dataset import AsrDataset
from nasr.models.registry import build_model
from nasr.nas.ops import count_parameters
from nasr.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from nasr.train.ctc import evaluate_ctc, input_dims, make_loader, train_ctc_epoch, unit_error_rate
from nasr.utils.config import load_config, save_config
from nasr.utils.device import describe_device, get_device
from nasr.utils.io import write_json
from nasr.utils.log import setup_logging

log = logging.getLogger("nasr.train_ctc")

DEFAULTS = {
    "model": {"name": "darts_net", "C": 24, "layers": 17, "reduction": "thirds", "head": "ctc",
              "auxiliary": False, "drop_path_prob": 0.0},
    "epochs": 20,
    "batch_size": 4,
    "max_frames": 1024,
    "optim": {"lr": 0.01, "lr_min": 0.0, "momentum": 0.9, "weight_decay": 3.0e-4, "grad_clip": 5.0},
    "bf16": False,
    "num_workers": 0,
    "seed": 1,
}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training YAML (conf/train_*.yaml)")
    p.add_argument("--profile", default=None, help="YAML with per-config overrides (conf/synth.yaml)")
    p.add_argument("--train-data", required=True, help="featurised training data dir")
    p.add_argument("--valid-data", default=None, help="featurised dev data dir (loss, TER per epoch)")
    p.add_argument("--lang", required=True, help="lang dir (units.txt, lang.json)")
    p.add_argument("--genotype", default=None, help="genotype JSON (sets model.genotype)")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--resume", action="store_true", help="continue from the newest epoch-N.pt")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE")
    return p


def build_ctc_model(cfg, in_channels: int, feat_dim: int, num_units: int):
    m = dict(cfg["model"])
    m.update(in_channels=in_channels, num_classes=num_units, freq_dim=feat_dim)
    return build_model(m)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    exp = Path(args.exp_dir)
    setup_logging(exp / "log" / "train.log", with_env=True)
    cfg = load_config(args.config, args.override, DEFAULTS, profile=args.profile)
    if args.genotype:
        cfg["model"]["genotype"] = str(args.genotype)
    torch.manual_seed(cfg["seed"])
    device = get_device(args.device)
    bf16 = bool(cfg["bf16"])
    train_ds = AsrDataset(args.train_data, args.lang, max_frames=cfg["max_frames"])
    valid_ds = (AsrDataset(args.valid_data, args.lang, max_frames=None, return_utt=True)
                if args.valid_data else None)
    c_in, feat_dim = input_dims(train_ds)
    cfg["data"] = {"in_channels": c_in, "feat_dim": feat_dim, "num_units": train_ds.num_units,
                   "lang": str(args.lang), "train": str(args.train_data)}
    save_config(cfg, exp / "config.yaml")
    log.info("config: %s", cfg)
    model = build_ctc_model(cfg, c_in, feat_dim, train_ds.num_units).to(device)
    params = count_parameters(model)
    log.info("model %s: %.3f M parameters; %d training utterances", cfg["model"]["name"], params / 1e6,
             len(train_ds))
    o = cfg["optim"]
    opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o["momentum"],
                          weight_decay=o["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg["epochs"], eta_min=o["lr_min"])
    start, history, train_seconds = 0, [], 0.0
    ckpt = latest_checkpoint(exp) if args.resume else None
    if ckpt is not None:
        st = load_checkpoint(ckpt)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        start, history, train_seconds = st["epoch"], st["history"], st["train_seconds"]
        log.info("resumed from %s (epoch %d done)", ckpt, start)
    for epoch in range(start + 1, cfg["epochs"] + 1):
        lr = sched.get_last_lr()[0]
        loader = make_loader(train_ds, None, cfg["batch_size"], True, cfg["seed"], epoch, cfg["num_workers"])
        tr = train_ctc_epoch(model, loader, opt, device, grad_clip=o["grad_clip"], bf16=bf16,
                             desc=f"epoch {epoch}")
        sched.step()
        train_seconds += tr["seconds"]
        rec = {"epoch": epoch, "lr": lr, "train_loss": tr["loss"], "wait_fraction": tr["wait_fraction"]}
        if valid_ds is not None:
            vl = make_loader(valid_ds, None, 8, False, 0, 0, cfg["num_workers"])
            ev, hyps, refs = evaluate_ctc(model, vl, device, bf16)
            rec.update(valid_loss=ev["loss"], valid_ter=unit_error_rate(hyps, refs))
        history.append(rec)
        log.info("epoch %d: lr %.5f train loss %.4f (data wait %.1f%%)%s | %.1f s", epoch, lr, tr["loss"],
                 100 * tr["wait_fraction"],
                 f" | dev loss {rec['valid_loss']:.4f} TER {100 * rec['valid_ter']:.2f}%"
                 if "valid_loss" in rec else "", tr["seconds"])
        save_checkpoint(exp / f"epoch-{epoch}.pt", {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "epoch": epoch, "history": history, "train_seconds": train_seconds, "config": cfg})
        key = "valid_loss" if "valid_loss" in rec else "epoch"
        best = min(history, key=lambda h: h[key]) if key == "valid_loss" else rec
        if best is rec:
            shutil.copyfile(exp / f"epoch-{epoch}.pt", exp / "best.pt.tmp")
            (exp / "best.pt.tmp").replace(exp / "best.pt")
    write_json(exp / "train.json", {
        "model": cfg["model"]["name"], "params": params, "epochs": cfg["epochs"],
        "train_seconds": train_seconds, "device": describe_device(device),
        "cells": cfg["model"].get("layers"), "channels": cfg["model"].get("C"),
        "genotype_source": cfg["model"].get("genotype"), "history": history,
        "command": " ".join(["python -m nasr.bin.train_ctc"] + (argv if argv is not None else sys.argv[1:]))})
    log.info("done: %d epochs, %.1f s on %s", cfg["epochs"], train_seconds, describe_device(device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
