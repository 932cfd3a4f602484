"""DARTS cell search for an utterance classifier (keyword spotting).

Weights are trained on the first half of the search data and the architecture parameters on the
second half, as in the KWS paper (train = 40 %, valid = 40 % of Speech Commands). Every epoch writes
its genotype, alphas and search health (`health.json`, `health.png`: supernet accuracy on both halves,
each edge's alpha entropy against uniform, op counts). The genotype of the epoch with the best
supernet accuracy on the alpha half (validation data only; scored with batch statistics, see
nasr.nas.health) among the epochs that trained alphas becomes `<exp-dir>/genotype.json`, with cell
diagrams; a search whose alphas end near uniform says so. A killed search resumes from its last epoch.

A deployment budget (`cost: {table, metric, target, weight}`, nasr.nas.cost; off by default) adds
weight * log(E[cost] / target) to the alpha loss while the network being derived is over the target;
every epoch records the expected cost and the derived network's cost (history.json, search.json).

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

from nasr.nas.architect import Architect, alpha_step_amp
from nasr.nas.cost import CostPenalty, check_cost_config, derived_cost, resolve_cost_config
from nasr.nas.draw import alpha_figure, draw_genotype
from nasr.nas.health import batch_statistics, format_health, near_uniform_warning, search_health
from nasr.nas.pdarts import plot_health
from nasr.nas.ops import OPS
from nasr.nas.search_model import SearchNetwork
from nasr.nas.spaces import OP_SPACES, get_space
from nasr.train.checkpoint import (latest_checkpoint, load_checkpoint, load_model_state, restore_rng_states,
                                   rng_states, save_checkpoint)
from nasr.train.kws import EpochLoader, full_batches, input_shape, load_labels, make_dataset, make_loader
from nasr.train.loop import WaitClock, autocast_context
from nasr.train.resume import check_resume_config, config_changes, record_config_change
from nasr.utils.config import (keys_of, load_config, non_negative_int, non_negative_number, one_of, optional,
                               positive_int, positive_number, probability, save_config)
from nasr.utils.device import AMP_CHOICES, backward_step, copy_to, describe_device, get_device, plan_device
from nasr.utils.cli import cli_main, require_inputs
from nasr.utils.io import atomic_write, write_json
from nasr.utils.lock import dir_lock
from nasr.utils.log import progress, setup_logging

DEFAULTS = {
    "space": "nas1",
    "model": {"C": 16, "layers": 6, "reduction": "every_two", "steps": 4, "multiplier": 4,
              "stem_multiplier": 3, "stem_stride": 1, "pc_k": 1,
              # Recompute each edge's ops in backward instead of keeping their activations: with
              # pc_k 4, 0.12x the full supernet's peak tensor memory for 1.58x PC-DARTS's default
              # step time (README, speed section; bench/search_step.py).
              "recompute_edges": False,
              # Keep two maps of each sep_conv for backward instead of five (nasr.nas.sep_body):
              # null = with partial channels (pc_k > 1) only; true gives the full supernet 0.63x
              # its peak tensor memory for 1.12x its step time (README, speed section).
              "recompute_sep_convs": None},
    "epochs": 50,
    "batch_size": 16,
    "optim": {"lr": 0.025, "lr_min": 0.001, "momentum": 0.9, "weight_decay": 3.0e-4, "grad_clip": 5.0},
    "arch": {"lr": 3.0e-4, "betas": [0.5, 0.999], "weight_decay": 1.0e-3, "unrolled": False,
             "start_epoch": 0},
    "augment": {"p_noise": 0.8, "noise_volume": 0.1, "shift_ms": 100.0},
    "augment_alpha": False,  # augment the alpha half too (DARTS does not: alphas fit clean data)
    "max_ops": None,  # e.g. {avg_pool_3x3: 2}: cap an op type in the derived normal cell (P-DARTS)
    "max_ops_reduce": None,  # the same for the reduction cell
    "max_train_utts": None,
    "max_valid_utts": None,
    # A size/latency budget for the derived network (nasr.nas.cost): null (off), or
    # {table: exp/cost_cpu.json, metric: params|macs|latency, target: X, weight: 1.0, device: null}
    "cost": None,
    "bf16": False,
    # Autocast (nasr.utils.device): auto = bf16 (or fp16 with a GradScaler) on CUDA, and on CPU
    # bf16 only with `bf16: true`; or bf16 | fp16 | off. The alpha step autocasts in bf16 only.
    "amp": "auto",
    "num_workers": 0,
    "seed": 1,
}

# Value checks run before any data is read or anything is written (nasr.utils.config).
CHECKS = {
    "space": one_of(OP_SPACES, "op space"),
    **{f"model.{k}": positive_int for k in ("C", "layers", "steps", "multiplier", "stem_multiplier",
                                            "stem_stride", "pc_k")},
    "epochs": positive_int,
    "batch_size": positive_int,
    "optim.lr": positive_number,
    "optim.lr_min": non_negative_number,
    "optim.momentum": probability,
    "optim.weight_decay": non_negative_number,
    "optim.grad_clip": non_negative_number,
    "arch.lr": positive_number,
    "arch.weight_decay": non_negative_number,
    "arch.start_epoch": non_negative_int,
    "augment.p_noise": probability,
    "augment.noise_volume": non_negative_number,
    "augment.shift_ms": non_negative_number,
    "max_ops": keys_of(OPS, "op", non_negative_int),
    "max_ops_reduce": keys_of(OPS, "op", non_negative_int),
    "max_train_utts": optional(positive_int),
    "max_valid_utts": optional(positive_int),
    "cost": check_cost_config,
    "amp": one_of(AMP_CHOICES, "amp setting"),
    "num_workers": non_negative_int,
    "seed": non_negative_int,
}
# Settings a resume may change: they do not alter the search.
MAY_CHANGE = ("num_workers", "model.recompute_edges", "model.recompute_sep_convs")  # none changes what is computed


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="search YAML (conf/search_*.yaml)")
    p.add_argument("--profile", default=None, help="YAML with per-config overrides (conf/synth.yaml)")
    p.add_argument("--train-data", nargs="+", required=True, help="data dir(s) for the weights")
    p.add_argument("--valid-data", nargs="+", required=True, help="data dir(s) for the architecture")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume although the config differs from the exp dir's (logged in config_changes.log)")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. epochs=10 model.C=8")
    return p


def ce_loss(model, batch, amp=None):
    x, y = batch
    with autocast_context(x.device, amp):
        logits = model(x)
    return F.cross_entropy(logits.float(), y)


def alpha_table(model) -> dict:
    w_normal, w_reduce = model.alpha_softmax()
    table = {"normal": w_normal.tolist(), "reduce": w_reduce.tolist(),
             "normal_ops": model.edge_ops["normal"], "reduce_ops": model.edge_ops["reduce"]}
    edges = model.edge_weights()  # PC-DARTS's normalised betas (pc_k > 1), one per edge
    if edges is not None:
        table["normal_edges"], table["reduce_edges"] = edges[0].tolist(), edges[1].tolist()
    return table


def log_alphas(writer, model, epoch: int) -> None:
    """Each cell's alphas as one heatmap image per epoch (TensorBoard's Images tab, with a step
    slider).  add_scalars would make one TensorBoard run per op and edge: 225 runs for nas1."""
    for cell, weights in zip(("normal", "reduce"), model.alpha_softmax()):
        writer.add_figure(f"alphas/{cell}", alpha_figure(weights.tolist(), model.edge_ops[cell],
                                                         f"{cell} cell alphas, epoch {epoch}"), epoch)


@torch.no_grad()
def evaluate_supernet(model, loader, device, amp):
    """Loss and accuracy with batch statistics (eval mode's running statistics lag the search)."""
    loss = correct = n = 0
    with batch_statistics(model):
        for x, y in loader:
            x, y = copy_to(x, device), copy_to(y, device)
            with autocast_context(device, amp):
                logits = model(x).float()
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
            n += y.numel()
    return {"loss": loss / max(n, 1), "acc": correct / max(n, 1)}


def make_search_datasets(train_dirs, valid_dirs, labels, cfg):
    """The weight half (augmented), the alpha half (augmented only with `augment_alpha: true`) and
    the weight half without augmentation (the same utterances), to score the supernet on."""
    train_ds, _ = make_dataset(train_dirs, labels, cfg["augment"], cfg["seed"], cfg["max_train_utts"])
    valid_ds, _ = make_dataset(valid_dirs, labels, cfg["augment"] if cfg["augment_alpha"] else None,
                               cfg["seed"] + 1, cfg["max_valid_utts"])
    train_clean_ds, _ = make_dataset(train_dirs, labels, None, cfg["seed"], cfg["max_train_utts"])
    return train_ds, valid_ds, train_clean_ds


def health_record(h: dict) -> dict:
    """A history entry in the shape nasr.nas.pdarts.plot_health draws (one stage)."""
    return {"stage": 1, "epoch": h["epoch"], "valid_loss": h["valid"]["loss"], **h["health"]}


def pick_best(history: list) -> dict:
    """The epoch whose genotype is kept: best alpha-half accuracy (validation data only) among the
    epochs that trained alphas; warm-up epochs' genotypes come from untouched alphas. With a cost
    budget, only epochs whose derived network meets it compete (the cheapest epoch when none does)."""
    searched = [h for h in history if h.get("alphas_trained", True)] or history
    budgeted = [h for h in searched if "cost" in h]
    if budgeted:
        within = [h for h in budgeted if h["cost"]["derived"] <= h["cost"]["target"]]
        if not within:
            return min(budgeted, key=lambda h: (h["cost"]["derived"], -h["valid"]["acc"]))
        searched = within
    return max(searched, key=lambda h: (h["valid"]["acc"], -h["valid"]["loss"]))


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    require_inputs(args.config, list(args.train_data) + list(args.valid_data), files=[args.profile])
    with dir_lock(args.exp_dir, what="exp dir"):  # one search per exp dir
        return run(args, argv)


def run(args, argv) -> int:
    exp = Path(args.exp_dir)
    log = setup_logging(exp / "log" / "search.log", with_env=True)
    command = " ".join(["python -m nasr.bin.search"] + (argv if argv is not None else sys.argv[1:]))
    cfg = load_config(args.config, args.override, DEFAULTS, profile=args.profile, checks=CHECKS)
    cfg["cost"] = resolve_cost_config(cfg["cost"])
    log.info("config: %s", cfg)
    penalty = CostPenalty.from_config(cfg["cost"], cfg["space"], cfg["max_ops"], cfg["max_ops_reduce"])
    if penalty is not None:
        penalty.table.check_compatible(cfg["space"], cfg["model"]["steps"], cfg["model"]["multiplier"])
        log.info("cost budget: %s <= %g (weight %g) of the network in %s: %s", penalty.metric, penalty.target,
                 penalty.weight, cfg["cost"]["table"], penalty.table.network)
    torch.manual_seed(cfg["seed"])
    device = get_device(args.device)
    plan = plan_device(device, cfg["amp"], cfg["bf16"])
    plan.apply()
    amp, scaler = plan.amp_dtype, plan.make_scaler()
    arch_amp = alpha_step_amp(amp)
    log.info("device plan: %s; alpha step autocast %s", plan.describe(), arch_amp or "off")

    labels = load_labels(list(args.train_data) + list(args.valid_data))
    train_ds, valid_ds, train_clean_ds = make_search_datasets(args.train_data, args.valid_data, labels, cfg)
    full_batches(len(train_ds), cfg["batch_size"], " ".join(args.train_data))
    full_batches(len(valid_ds), cfg["batch_size"], " ".join(args.valid_data) or "the alpha half")
    c_in, _, freq = input_shape(train_ds)
    log.info("search data: %d utts for weights, %d for alphas, %d classes, input %s",
             len(train_ds), len(valid_ds), len(labels), input_shape(train_ds))

    m = cfg["model"]
    op_names = get_space(cfg["space"])
    model = SearchNetwork(c_in, len(labels), m["C"], m["layers"], op_names, reduction=m["reduction"],
                          steps=m["steps"], multiplier=m["multiplier"],
                          stem_multiplier=m["stem_multiplier"], stem_stride=m["stem_stride"], pc_k=m["pc_k"],
                          freq_dim=freq, recompute_edges=m["recompute_edges"],
                          recompute_sep_convs=m["recompute_sep_convs"]).to(device)
    o, a = cfg["optim"], cfg["arch"]
    w_opt = torch.optim.SGD(model.weight_parameters(), lr=o["lr"], momentum=o["momentum"],
                            weight_decay=o["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, cfg["epochs"], eta_min=o["lr_min"])
    architect = Architect(model, lambda mdl, b: ce_loss(mdl, b, arch_amp), lr=a["lr"], betas=tuple(a["betas"]),
                          weight_decay=a["weight_decay"], unrolled=a["unrolled"],
                          w_momentum=o["momentum"], w_weight_decay=o["weight_decay"], penalty=penalty)

    # Every check before the first write: a refused resume leaves the exp dir as it was.
    start_epoch, history, search_seconds, changes = 0, [], 0.0, {}
    ckpt = None if args.no_resume else latest_checkpoint(exp)
    if ckpt is not None:
        changes = config_changes(exp, cfg, MAY_CHANGE, defaults=DEFAULTS)
        check_resume_config(exp, changes, args.allow_config_change)
        state = load_checkpoint(ckpt)
        load_model_state(model, state, ckpt)
        w_opt.load_state_dict(state["w_optimizer"])
        sched.load_state_dict(state["scheduler"])
        architect.optimizer.load_state_dict(state["arch_optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, history, search_seconds = state["epoch"], state["history"], state["search_seconds"]
        if "rng" in state:
            restore_rng_states(state["rng"])
        log.info("resumed from %s (epoch %d done)", ckpt, start_epoch)
    save_config(cfg, exp / "config.yaml")
    if changes:
        record_config_change(exp, changes, command, start_epoch)
        log.warning("config changed on resume (--allow-config-change): %s", sorted(changes))

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(exp / "tensorboard"))
    step = start_epoch * (len(train_ds) // cfg["batch_size"])
    train_batches = EpochLoader(train_ds, cfg["batch_size"], True, cfg["seed"], cfg["num_workers"],
                                drop_last=True, pin_memory=plan.pin_memory)
    valid_batches = EpochLoader(valid_ds, cfg["batch_size"], True, cfg["seed"] + 1, cfg["num_workers"],
                                drop_last=True, pin_memory=plan.pin_memory)
    for epoch in range(start_epoch + 1, cfg["epochs"] + 1):
        t0 = time.time()
        lr = sched.get_last_lr()[0]
        model.train()
        train_loader, valid_loader = train_batches.at(epoch), valid_batches.at(epoch)
        tot = {"loss": 0.0, "correct": 0, "n": 0}
        bar = progress(zip(train_loader, cycle(valid_loader)), total=len(train_loader),
                       desc=f"search epoch {epoch}", unit="step")
        clock = WaitClock()
        for (xt, yt), (xv, yv) in bar:
            clock.ready()
            xt, yt, xv, yv = (copy_to(t, device) for t in (xt, yt, xv, yv))
            if epoch > a["start_epoch"]:
                architect.step((xt, yt), (xv, yv), lr, w_opt)
            with autocast_context(device, amp):
                logits = model(xt).float()
            loss = F.cross_entropy(logits, yt)
            w_opt.zero_grad(set_to_none=True)
            backward_step(loss, w_opt, scaler, model.weight_parameters(), o["grad_clip"])
            step += 1
            tot["loss"] += loss.item() * yt.numel()
            tot["correct"] += (logits.argmax(-1) == yt).sum().item()
            tot["n"] += yt.numel()
            bar.set_postfix(loss=f"{tot['loss'] / tot['n']:.3f}")
            clock.done()
        sched.step()
        running = {"loss": tot["loss"] / max(tot["n"], 1), "acc": tot["correct"] / max(tot["n"], 1)}
        train = evaluate_supernet(model, make_loader(train_clean_ds, 64, False, 0, epoch), device, amp)
        valid = evaluate_supernet(model, make_loader(valid_ds, 64, False, 0, epoch), device, amp)
        search_seconds += time.time() - t0

        genotype = model.genotype(cfg["space"], max_ops=cfg["max_ops"],
                                  max_ops_reduce=cfg["max_ops_reduce"])
        genotype.save(exp / "genotypes" / f"epoch-{epoch}.json")
        write_json(exp / "alphas" / f"epoch-{epoch}.json", alpha_table(model))
        health = search_health(model, genotype)
        history.append({"epoch": epoch, "lr": lr, "alphas_trained": epoch > a["start_epoch"],
                        "data_wait_frac": clock.fraction,
                        "train_running": running, "train": train, "valid": valid, "health": health})
        if penalty is not None:
            history[-1]["cost"] = penalty.summary(model)
            log.info("epoch %d: %s expected %.6g, derived network %.6g, target %g", epoch, penalty.metric,
                     history[-1]["cost"]["expected"], history[-1]["cost"]["derived"], penalty.target)
        write_json(exp / "history.json", history)
        logged = [health_record(h) for h in history if "health" in h]
        write_json(exp / "health.json", logged)
        plot_health(logged, exp / "health.png")
        for split, r in (("train", train), ("valid", valid)):
            writer.add_scalar(f"{split}/loss", r["loss"], epoch)
            writer.add_scalar(f"{split}/acc", r["acc"], epoch)
        writer.add_scalar("lr", lr, epoch)
        writer.add_scalar("health/alpha_entropy_ratio", health["mean_entropy_ratio"], epoch)
        log_alphas(writer, model, epoch)
        log.info("epoch %d%s: lr %.5f supernet (batch statistics) acc weight half %.4f alpha half %.4f "
                 "(loss %.4f) | %s | %.1f s (data wait %.0f%%) | %s", epoch,
                 "" if epoch > a["start_epoch"] else " (weights only)",
                 lr, train["acc"], valid["acc"], valid["loss"], format_health(health), time.time() - t0,
                 100 * clock.fraction,
                 genotype.to_json().replace("\n", " "))
        save_checkpoint(exp / f"epoch-{epoch}.pt", {
            "model": model.state_dict(), "w_optimizer": w_opt.state_dict(), "scheduler": sched.state_dict(),
            "arch_optimizer": architect.optimizer.state_dict(), "epoch": epoch, "history": history,
            "search_seconds": search_seconds, "config": cfg, "rng": rng_states(),
            "scaler": scaler.state_dict() if scaler is not None else None})
    writer.close()

    # "the best cell architecture with the highest validation score found by the search phase"
    best = pick_best(history)
    if penalty is not None and best["cost"]["derived"] > penalty.target:
        log.warning("no epoch derived a network within the budget (%s <= %g): kept epoch %d, the cheapest (%g); "
                    "fix: more epochs, a larger cost.weight, or a looser target", penalty.metric, penalty.target,
                    best["epoch"], best["cost"]["derived"])
    final = history[-1].get("health")  # None in a history written before health was logged
    warning = near_uniform_warning(final) if final else None
    if warning:
        log.warning("%s", warning)
    best_path = exp / "genotypes" / f"epoch-{best['epoch']}.json"
    with atomic_write(exp / "genotype.json") as f:
        f.write(best_path.read_text(encoding="utf-8"))
    from nasr.nas.genotype import Genotype

    draw_genotype(Genotype.load(exp / "genotype.json"), exp / "cells")
    write_json(exp / "search.json", {
        "space": cfg["space"], "best_epoch": best["epoch"], "valid_acc": best["valid"]["acc"],
        "valid_loss": best["valid"]["loss"], "epochs": cfg["epochs"], "search_seconds": search_seconds,
        "device": describe_device(device), "device_hours": search_seconds / 3600.0,
        "cells": cfg["model"]["layers"], "channels": cfg["model"]["C"],
        "selected_on": "supernet accuracy on the alpha half (validation data, batch statistics)",
        "final_alpha_entropy_ratio": final["mean_entropy_ratio"] if final else None,
        "final_top_op_weight": final["mean_top_weight"] if final else None, "warning": warning,
        "cost": None if penalty is None else {
            **cfg["cost"], "device": penalty.device,
            "derived": derived_cost(penalty.table, Genotype.load(exp / "genotype.json"), penalty.metric,
                                    penalty.device)},
        "command": command})
    log.info("best epoch %d (valid acc %.4f); genotype -> %s; search took %.1f s on %s", best["epoch"],
             best["valid"]["acc"], exp / "genotype.json", search_seconds, describe_device(device))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "search"))
