"""DARTS cell search for an utterance classifier (keyword spotting).

Weights are trained on the first half of the search data and the architecture parameters on the
second half, as in the KWS paper (train = 40 %, valid = 40 % of Speech Commands). Every epoch writes
its genotype and alphas; the genotype of the epoch with the best validation accuracy becomes
`<exp-dir>/genotype.json`, with cell diagrams. A killed search resumes from its last epoch.

e.g.: python -m nasr.bin.search --config conf/search_nas1.yaml --train-data data/train \
        --valid-data data/valid --exp-dir exp/search_nas1
"""
from __future__ import annotations

import argparse
import sys
import time
from itertools import cycle
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from nasr.nas.architect import Architect
from nasr.nas.draw import draw_genotype
from nasr.nas.search_model import SearchNetwork
from nasr.nas.spaces import get_space
from nasr.train.checkpoint import latest_checkpoint, load_checkpoint, load_model_state, save_checkpoint
from nasr.train.kws import input_shape, load_labels, make_dataset, make_loader
from nasr.train.loop import autocast_context
from nasr.utils.config import load_config, save_config
from nasr.utils.device import describe_device, get_device
from nasr.utils.cli import cli_main, require_inputs
from nasr.utils.io import write_json
from nasr.utils.lock import dir_lock
from nasr.utils.log import setup_logging

DEFAULTS = {
    "space": "nas1",
    "model": {"C": 16, "layers": 6, "reduction": "every_two", "steps": 4, "multiplier": 4,
              "stem_multiplier": 3, "stem_stride": 1, "pc_k": 1},
    "epochs": 50,
    "batch_size": 16,
    "optim": {"lr": 0.025, "lr_min": 0.001, "momentum": 0.9, "weight_decay": 3.0e-4, "grad_clip": 5.0},
    "arch": {"lr": 3.0e-4, "betas": [0.5, 0.999], "weight_decay": 1.0e-3, "unrolled": False,
             "start_epoch": 0},
    "augment": {"p_noise": 0.8, "noise_volume": 0.1, "shift_ms": 100.0},
    "max_ops": None,  # e.g. {avg_pool_3x3: 2}: cap an op type in the derived normal cell (P-DARTS)
    "max_ops_reduce": None,  # the same for the reduction cell
    "max_train_utts": None,
    "max_valid_utts": None,
    "bf16": False,
    "num_workers": 0,
    "seed": 1,
}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="search YAML (conf/search_*.yaml)")
    p.add_argument("--profile", default=None, help="YAML with per-config overrides (conf/synth.yaml)")
    p.add_argument("--train-data", nargs="+", required=True, help="data dir(s) for the weights")
    p.add_argument("--valid-data", nargs="+", required=True, help="data dir(s) for the architecture")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. epochs=10 model.C=8")
    return p


def ce_loss(model, batch, bf16: bool = False):
    x, y = batch
    with autocast_context(x.device, bf16):
        logits = model(x)
    return F.cross_entropy(logits.float(), y)


def alpha_table(model) -> dict:
    w_normal, w_reduce = model.alpha_softmax()
    return {"normal": w_normal.tolist(), "reduce": w_reduce.tolist(),
            "normal_ops": model.edge_ops["normal"], "reduce_ops": model.edge_ops["reduce"]}


def log_alphas(writer, model, epoch: int) -> None:
    for cell, weights in zip(("normal", "reduce"), model.alpha_softmax()):
        for e, row in enumerate(weights.tolist()):
            writer.add_scalars(f"alpha_{cell}/edge{e}",
                               dict(zip(model.edge_ops[cell][e], row)), epoch)


@torch.no_grad()
def evaluate_supernet(model, loader, device, bf16):
    model.eval()
    loss = correct = n = 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with autocast_context(device, bf16):
            logits = model(x).float()
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(-1) == y).sum().item()
        n += y.numel()
    return {"loss": loss / max(n, 1), "acc": correct / max(n, 1)}


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    require_inputs(args.config, list(args.train_data) + list(args.valid_data), files=[args.profile])
    with dir_lock(args.exp_dir, what="exp dir"):  # one search per exp dir
        return run(args, argv)


def run(args, argv) -> int:
    exp = Path(args.exp_dir)
    log = setup_logging(exp / "log" / "search.log", with_env=True)
    cfg = load_config(args.config, args.override, DEFAULTS, profile=args.profile)
    save_config(cfg, exp / "config.yaml")
    log.info("config: %s", cfg)
    torch.manual_seed(cfg["seed"])
    device = get_device(args.device)
    bf16 = bool(cfg["bf16"])

    labels = load_labels(list(args.train_data) + list(args.valid_data))
    train_ds, _ = make_dataset(args.train_data, labels, cfg["augment"], cfg["seed"], cfg["max_train_utts"])
    valid_ds, _ = make_dataset(args.valid_data, labels, cfg["augment"], cfg["seed"] + 1,
                               cfg["max_valid_utts"])
    c_in, _, freq = input_shape(train_ds)
    log.info("search data: %d utts for weights, %d for alphas, %d classes, input %s",
             len(train_ds), len(valid_ds), len(labels), input_shape(train_ds))

    m = cfg["model"]
    op_names = get_space(cfg["space"])
    model = SearchNetwork(c_in, len(labels), m["C"], m["layers"], op_names, reduction=m["reduction"],
                          steps=m["steps"], multiplier=m["multiplier"],
                          stem_multiplier=m["stem_multiplier"], stem_stride=m["stem_stride"], pc_k=m["pc_k"],
                          freq_dim=freq).to(device)
    o, a = cfg["optim"], cfg["arch"]
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=o["lr"], momentum=o["momentum"],
                            weight_decay=o["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, cfg["epochs"], eta_min=o["lr_min"])
    architect = Architect(model, lambda mdl, b: ce_loss(mdl, b, bf16), lr=a["lr"], betas=tuple(a["betas"]),
                          weight_decay=a["weight_decay"], unrolled=a["unrolled"],
                          w_momentum=o["momentum"], w_weight_decay=o["weight_decay"])

    start_epoch, history, search_seconds = 0, [], 0.0
    ckpt = None if args.no_resume else latest_checkpoint(exp)
    if ckpt is not None:
        state = load_checkpoint(ckpt)
        load_model_state(model, state, ckpt)
        w_opt.load_state_dict(state["w_optimizer"])
        sched.load_state_dict(state["scheduler"])
        architect.optimizer.load_state_dict(state["arch_optimizer"])
        start_epoch, history, search_seconds = state["epoch"], state["history"], state["search_seconds"]
        log.info("resumed from %s (epoch %d done)", ckpt, start_epoch)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(exp / "tensorboard"))
    step = start_epoch * (len(train_ds) // cfg["batch_size"])
    for epoch in range(start_epoch + 1, cfg["epochs"] + 1):
        t0 = time.time()
        lr = sched.get_last_lr()[0]
        model.train()
        train_loader = make_loader(train_ds, cfg["batch_size"], True, cfg["seed"], epoch,
                                   cfg["num_workers"], drop_last=True)
        valid_loader = make_loader(valid_ds, cfg["batch_size"], True, cfg["seed"] + 1, epoch,
                                   cfg["num_workers"], drop_last=True)
        tot = {"loss": 0.0, "correct": 0, "n": 0}
        bar = tqdm(zip(train_loader, cycle(valid_loader)), total=len(train_loader),
                   desc=f"search epoch {epoch}", leave=False, mininterval=2.0)
        for (xt, yt), (xv, yv) in bar:
            xt, yt, xv, yv = xt.to(device), yt.to(device), xv.to(device), yv.to(device)
            if epoch > a["start_epoch"]:
                architect.step((xt, yt), (xv, yv), lr, w_opt)
            with autocast_context(device, bf16):
                logits = model(xt).float()
            loss = F.cross_entropy(logits, yt)
            w_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.weight_parameters(), o["grad_clip"])
            w_opt.step()
            step += 1
            tot["loss"] += loss.item() * yt.numel()
            tot["correct"] += (logits.argmax(-1) == yt).sum().item()
            tot["n"] += yt.numel()
            bar.set_postfix(loss=f"{tot['loss'] / tot['n']:.3f}")
        sched.step()
        train = {"loss": tot["loss"] / max(tot["n"], 1), "acc": tot["correct"] / max(tot["n"], 1)}
        valid = evaluate_supernet(model, make_loader(valid_ds, 64, False, 0, epoch), device, bf16)
        search_seconds += time.time() - t0

        genotype = model.genotype(cfg["space"], max_ops=cfg["max_ops"],
                                  max_ops_reduce=cfg["max_ops_reduce"])
        genotype.save(exp / "genotypes" / f"epoch-{epoch}.json")
        write_json(exp / "alphas" / f"epoch-{epoch}.json", alpha_table(model))
        history.append({"epoch": epoch, "lr": lr, "train": train, "valid": valid})
        write_json(exp / "history.json", history)
        for split, r in (("train", train), ("valid", valid)):
            writer.add_scalar(f"{split}/loss", r["loss"], epoch)
            writer.add_scalar(f"{split}/acc", r["acc"], epoch)
        writer.add_scalar("lr", lr, epoch)
        log_alphas(writer, model, epoch)
        log.info("epoch %d: lr %.5f train loss %.4f acc %.4f | valid loss %.4f acc %.4f | %.1f s | %s",
                 epoch, lr, train["loss"], train["acc"], valid["loss"], valid["acc"], time.time() - t0,
                 genotype.to_json().replace("\n", " "))
        save_checkpoint(exp / f"epoch-{epoch}.pt", {
            "model": model.state_dict(), "w_optimizer": w_opt.state_dict(), "scheduler": sched.state_dict(),
            "arch_optimizer": architect.optimizer.state_dict(), "epoch": epoch, "history": history,
            "search_seconds": search_seconds, "config": cfg})
    writer.close()

    # "the best cell architecture with the highest validation score found by the search phase"
    best = max(history, key=lambda h: (h["valid"]["acc"], -h["valid"]["loss"]))
    best_path = exp / "genotypes" / f"epoch-{best['epoch']}.json"
    (exp / "genotype.json").write_text(best_path.read_text())
    from nasr.nas.genotype import Genotype

    draw_genotype(Genotype.load(exp / "genotype.json"), exp / "cells")
    write_json(exp / "search.json", {
        "space": cfg["space"], "best_epoch": best["epoch"], "valid_acc": best["valid"]["acc"],
        "valid_loss": best["valid"]["loss"], "epochs": cfg["epochs"], "search_seconds": search_seconds,
        "device": describe_device(device), "device_hours": search_seconds / 3600.0,
        "cells": cfg["model"]["layers"], "channels": cfg["model"]["C"],
        "command": " ".join(["python -m nasr.bin.search"] + (argv if argv is not None else sys.argv[1:]))})
    log.info("best epoch %d (valid acc %.4f); genotype -> %s; search took %.1f s on %s", best["epoch"],
             best["valid"]["acc"], exp / "genotype.json", search_seconds, describe_device(device))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "search"))
