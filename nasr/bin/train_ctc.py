"""Train a CTC acoustic model (the evaluation network stacked from a searched genotype) from scratch.

The model is chosen by `model.name` in the config (nasr.models.registry); input channels, feature
dimension and unit count come from the data and lang dir. SGD with a cosine schedule to 0
(the paper: lr 0.01, momentum 0.9, wd 3e-4, batch 4, 20 epochs), length-bucketed batches,
optional bf16 autocast. Every epoch writes epoch-N.pt (model, optimizer, scheduler, history);
`--resume` continues from the newest one. best.pt is the epoch with the lowest dev loss (the last
epoch without --valid-data).

Several workers (`--distributed bmuf|ddp`, launched by torchrun: one process per GPU, or N CPU
processes over gloo): each worker trains on its share of the length-bucketed batches (every worker
gets the same number of batches). `bmuf` (Chen & Huo 2016, nasr.train.bmuf) lets each worker run
`bmuf.block_size` local SGD steps, then all-reduces the parameters and applies the block momentum
and block learning rate (Nesterov optional), and resets each worker's SGD momentum
(`bmuf.local_momentum`); the config's `bmuf:` section sets them. `ddp`
all-reduces gradients every step (torch's DistributedDataParallel), for comparison. `none` is one
process. Every worker validates its share of the dev set (sums all-reduced); rank 0 logs to
log/train.log and writes checkpoints (BMUF's global model, not a worker's); the others log to
log/train.rank-R.log. A worker that dies ends the whole job
with an error naming it, within `dist_timeout_s`; the newest epoch-N.pt then resumes with --resume
(on any number of workers).

The config may name the op space its genotype must come from (`space: asr_revised`); a genotype
searched in another space is refused before any training.

e.g.: python -m nasr.bin.train_ctc --config conf/train_asrnet_b.yaml --train-data data/train_sp \
        --valid-data data/dev --lang data/lang_syllable --genotype exp/pdarts_asr_revised/genotype.json \
        --exp-dir exp/train_asrnet_b --resume
      torchrun --standalone --nproc-per-node 2 -m nasr.bin.train_ctc --distributed bmuf ...
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path

import torch

import nasr.nas.asr_head  # noqa: F401  (registers the "ctc" head)
from nasr.data.asr_dataset import AsrDataset
from nasr.models.registry import build_model, check_model_config
from nasr.nas.ops import count_parameters
from nasr.nas.spaces import OP_SPACES
from nasr.train.checkpoint import (copy_checkpoint, ensure_best, latest_checkpoint, load_checkpoint,
                                   load_model_state, restore_rng_states, rng_states, save_checkpoint)
from nasr.train.ctc import input_dims, train_ctc_epoch, validate_ctc
from nasr.train import distributed as dist_util
from nasr.train.resume import check_resume_config, config_changes, record_config_change
from nasr.utils.config import (load_config, non_negative_int, non_negative_number, one_of, optional, positive_int,
                               positive_number, probability, save_config)
from nasr.utils.device import AMP_CHOICES, describe_device, get_device, plan_device
from nasr.utils.cli import cli_main, require_inputs
from nasr.utils.io import write_json
from nasr.utils.lock import dir_lock
from nasr.utils.log import setup_logging

log = logging.getLogger("nasr.train_ctc")

DEFAULTS = {
    # Entirely from the YAML (its `name` picks the builder, the rest are that builder's arguments):
    # defaults merged in here would hand darts_net's keys to dfsmn_san.
    "model": {},
    "epochs": 20,
    "batch_size": 4,
    "max_frames": 1024,
    "optim": {"lr": 0.01, "lr_min": 0.0, "momentum": 0.9, "weight_decay": 3.0e-4, "grad_clip": 5.0},
    "bf16": False,
    # Autocast (nasr.utils.device): auto = bf16 (or fp16 with a GradScaler) on CUDA, and on CPU
    # bf16 only with `bf16: true`; or bf16 | fp16 | off.
    "amp": "auto",
    "num_workers": 0,
    "seed": 1,
    # Block-wise model-update filtering, used with --distributed bmuf. block_momentum null means
    # the paper's 1 - 1/workers. local_momentum: what a sync does to each worker's SGD momentum
    # (reset | average | keep; reset, as CNTK, so that it does not compound with the block momentum).
    "bmuf": {"block_size": 16, "block_momentum": None, "block_lr": 1.0, "nesterov": True,
             "average_sync_steps": 0, "local_momentum": "reset"},
    "dist_timeout_s": 600,   # how long a collective waits for a missing worker before the job fails
    "space": None,           # the op space the genotype must come from (null: any)
}
DIST_MODES = {"bmuf": "bmuf", "ddp": "ddp", "none": "single"}
# `model:` keys are the arguments of the builder its `name` picks: checked by check_model_config.
FREE = ("model",)
# Value checks run before any data is read or anything is written (nasr.utils.config).
CHECKS = {
    "model": check_model_config,
    "space": optional(one_of(OP_SPACES, "op space")),
    "epochs": positive_int,
    "batch_size": positive_int,
    "max_frames": optional(positive_int),
    "optim.lr": positive_number,
    "optim.lr_min": non_negative_number,
    "optim.momentum": probability,
    "optim.weight_decay": non_negative_number,
    "optim.grad_clip": non_negative_number,
    "amp": one_of(AMP_CHOICES, "amp setting"),
    "num_workers": non_negative_int,
    "seed": non_negative_int,
    "bmuf.block_size": positive_int,
    "bmuf.block_momentum": optional(probability),
    "bmuf.block_lr": positive_number,
    "bmuf.average_sync_steps": non_negative_int,
    "dist_timeout_s": positive_number,
}
# Settings a resume may change: they do not alter the run (a resume may use another number of workers).
MAY_CHANGE = ("num_workers", "distributed", "dist_timeout_s")


def best_epoch(history) -> int:
    """The epoch best.pt holds: the first with the lowest dev loss, or the last without dev data."""
    if any("valid_loss" in h for h in history):
        return min(history, key=lambda h: h.get("valid_loss", float("inf")))["epoch"]
    return history[-1]["epoch"]


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
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume although the config differs from the exp dir's (logged in config_changes.log)")
    p.add_argument("--distributed", choices=tuple(DIST_MODES), default="none",
                   help="how torchrun's workers cooperate: BMUF (block-wise model averaging with "
                        "momentum), DDP (gradient all-reduce every step), or none (one process)")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE")
    return p


def build_ctc_model(cfg, in_channels: int, feat_dim: int, num_units: int):
    m = dict(cfg["model"])
    m.update(in_channels=in_channels, num_classes=num_units, freq_dim=feat_dim)
    return build_model(m)


class GenotypeSpaceError(ValueError):
    """The genotype was searched in another op space than the training config names (or the
    config names no model at all)."""


def check_genotype_space(cfg, genotype_path) -> None:
    """Refuse a genotype from another op space than the config's `space:` (when it names one)."""
    want = cfg.get("space")
    if not want or cfg["model"].get("name") != "darts_net":
        return
    from nasr.models.registry import load_genotype

    got = load_genotype(genotype_path).space
    if got != want:
        raise GenotypeSpaceError(
            f"{genotype_path}: genotype searched in op space '{got}', but the training config names "
            f"space '{want}' (fix: pass the genotype of a '{want}' search, e.g. "
            f"exp/pdarts_{want}/genotype.json, or train with the config of the '{got}' network)")


def make_train_loader(dataset, cfg, epoch: int, ctx: dist_util.DistContext, pin_memory: bool = False):
    """This worker's length-bucketed batches of one epoch: every worker gets as many batches as the
    others (a worker with one more would wait in its next collective until the timeout)."""
    from torch.utils.data import DataLoader

    from nasr.data.asr_dataset import AsrCollate, BucketBatchSampler

    sampler = BucketBatchSampler(dataset.num_frames, batch_size=cfg["batch_size"], shuffle=True,
                                 seed=cfg["seed"], epoch=epoch, num_replicas=ctx.world_size, rank=ctx.rank)
    if len(sampler.batches()) == 0:
        raise ValueError(f"{dataset.data_dir}: {len(dataset)} utterances give worker {ctx.rank} no batch of "
                         f"{cfg['batch_size']} (fix: fewer workers or a smaller batch_size)")
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=AsrCollate(4),
                      num_workers=cfg["num_workers"], persistent_workers=False, pin_memory=pin_memory)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    require_inputs(args.config, [args.train_data, args.valid_data], files=[args.lang, args.profile, args.genotype])
    rank = dist_util.env_world()[0]
    # One training per exp dir: rank 0 holds the lock for all the workers of its job.
    with dir_lock(args.exp_dir, what="exp dir") if rank == 0 else contextlib.nullcontext():
        return run(args, argv, rank)


def run(args, argv, rank: int) -> int:
    exp = Path(args.exp_dir)
    log_name = "train.log" if rank == 0 else f"train.rank-{rank}.log"
    setup_logging(exp / "log" / log_name, with_env=True)
    if rank > 0:
        # Every rank logs to its own file; the console shows rank 0 (and the others' warnings).
        for h in logging.getLogger().handlers:
            if type(h) is logging.StreamHandler:
                h.setLevel(logging.WARNING)
    try:
        return train(args, argv)
    except dist_util.WorkerLostError as e:
        # Already explained (lost ranks, how to resume) by the guard that raised it.
        log.error("training stopped: %s", e)
        return 1
    except GenotypeSpaceError as e:
        log.error("%s", e)
        return 1


def train(args, argv) -> int:
    exp = Path(args.exp_dir)
    command = " ".join(["python -m nasr.bin.train_ctc"] + (argv if argv is not None else sys.argv[1:]))
    cfg = load_config(args.config, args.override, DEFAULTS, profile=args.profile, free=FREE,
                      checks=CHECKS)
    if args.genotype:
        cfg["model"]["genotype"] = str(args.genotype)
        check_genotype_space(cfg, args.genotype)
    ctx = dist_util.init_distributed(DIST_MODES[args.distributed], device=args.device,
                                     timeout_s=float(cfg["dist_timeout_s"]))
    ctx.resume_hint = (f"rerun with --resume (same or another number of workers): it continues from "
                       f"the newest {exp}/epoch-N.pt")
    main_rank = ctx.is_main
    torch.manual_seed(cfg["seed"])
    device = ctx.device if ctx.is_distributed else get_device(args.device)
    plan = plan_device(device, cfg["amp"], cfg["bf16"])
    plan.apply()
    amp, scaler = plan.amp_dtype, plan.make_scaler()  # each BMUF worker keeps its own loss scale
    log.info("device plan: %s", plan.describe())
    train_ds = AsrDataset(args.train_data, args.lang, max_frames=cfg["max_frames"])
    valid_ds = (AsrDataset(args.valid_data, args.lang, max_frames=None, return_utt=True)
                if args.valid_data else None)
    c_in, feat_dim = input_dims(train_ds)
    cfg["data"] = {"in_channels": c_in, "feat_dim": feat_dim, "num_units": train_ds.num_units,
                   "lang": str(args.lang), "train": str(args.train_data)}
    cfg["distributed"] = {"mode": ctx.mode, "workers": ctx.world_size, "backend": ctx.backend}
    log.info("config: %s", cfg)
    model = build_ctc_model(cfg, c_in, feat_dim, train_ds.num_units).to(device)
    params = count_parameters(model)
    log.info("model %s: %.3f M parameters; %d training utterances; %s", cfg["model"]["name"], params / 1e6,
             len(train_ds), f"{ctx.world_size} workers ({ctx.mode}, {ctx.backend})" if ctx.is_distributed
             else "one process")
    o = cfg["optim"]
    opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o["momentum"],
                          weight_decay=o["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg["epochs"], eta_min=o["lr_min"])
    # Every check before the first write: a refused resume leaves the exp dir as it was.
    start, history, train_seconds, changes = 0, [], 0.0, {}
    ckpt = latest_checkpoint(exp) if args.resume else None
    st = None
    if ckpt is not None:
        changes = config_changes(exp, cfg, MAY_CHANGE, defaults=DEFAULTS)
        check_resume_config(exp, changes, args.allow_config_change)
        st = load_checkpoint(ckpt)
        load_model_state(model, st, ckpt)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        if scaler is not None and st.get("scaler"):
            scaler.load_state_dict(st["scaler"])
        start, history, train_seconds = st["epoch"], st["history"], st["train_seconds"]
        if "rng" in st:
            restore_rng_states(st["rng"])
        log.info("resumed from %s (epoch %d done)", ckpt, start)
        if main_rank:
            fixed = ensure_best(exp, history, best_epoch)
            if fixed:
                log.warning("%s", fixed)
    if main_rank:
        save_config(cfg, exp / "config.yaml")
        if changes:
            record_config_change(exp, changes, command, start)
            log.warning("config changed on resume (--allow-config-change): %s", sorted(changes))
    b = cfg["bmuf"]
    train_model, stepper = dist_util.wrap_for_training(
        model, opt, ctx, block_size=b["block_size"], block_momentum=b["block_momentum"],
        block_lr=b["block_lr"], nesterov=b["nesterov"], average_sync_steps=b["average_sync_steps"],
        local_momentum=b["local_momentum"])
    bmuf = stepper if stepper is not opt else None
    # A checkpoint of a single-process or DDP run stores "bmuf": None: BMUF then starts from its model.
    if bmuf is not None and st is not None and st.get("bmuf"):
        bmuf.load_state_dict(st["bmuf"])  # W and the block momentum Delta, not just W
    for epoch in range(start + 1, cfg["epochs"] + 1):
        lr = sched.get_last_lr()[0]
        loader = make_train_loader(train_ds, cfg, epoch, ctx, pin_memory=plan.pin_memory)
        with dist_util.guard_collective(f"epoch {epoch} ({ctx.mode} training)"):
            tr = train_ctc_epoch(train_model, loader, stepper, device, grad_clip=o["grad_clip"], amp=amp, scaler=scaler,
                                 parameters=model.parameters(), desc=f"epoch {epoch}")
            if bmuf is not None:
                bmuf.sync()  # end the last block: the checkpoint holds every worker's last steps
        sched.step()
        train_seconds += tr["seconds"]
        rec = {"epoch": epoch, "lr": lr, "train_loss": tr["loss"], "wait_fraction": tr["wait_fraction"]}
        if valid_ds is not None:
            # Every worker scores its share of the dev set with the model rank 0 checkpoints:
            # the global model W under BMUF, and rank 0's BatchNorm statistics.
            with (bmuf.global_params_in_model() if bmuf is not None else contextlib.nullcontext(model)) as m:
                dist_util.broadcast_buffers(m)
                with dist_util.guard_collective(f"epoch {epoch} validation"):
                    ev = validate_ctc(m, valid_ds, device, amp, cfg["num_workers"], ctx.rank, ctx.world_size)
            rec.update(valid_loss=ev["loss"], valid_ter=ev["ter"])
        if main_rank:
            state = bmuf.global_state_dict() if bmuf is not None else model.state_dict()
            history.append(rec)
            log.info("epoch %d: lr %.5f train loss %.4f (rank 0; data wait %.1f%%)%s | %.1f s", epoch, lr,
                     tr["loss"], 100 * tr["wait_fraction"],
                     f" | dev loss {rec['valid_loss']:.4f} TER {100 * rec['valid_ter']:.2f}%"
                     if "valid_loss" in rec else "", tr["seconds"])
            save_checkpoint(exp / f"epoch-{epoch}.pt", {
                "model": state, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "bmuf": bmuf.state_dict() if bmuf is not None else None,
                "epoch": epoch, "history": history, "train_seconds": train_seconds, "config": cfg,
                "rng": rng_states(), "scaler": scaler.state_dict() if scaler is not None else None})
            if best_epoch(history) == epoch:
                copy_checkpoint(exp / f"epoch-{epoch}.pt", exp / "best.pt")
        else:
            history.append(rec)
        # Workers wait while rank 0 writes; nobody runs ahead into the next epoch's
        # collectives with a checkpoint half-written.
        dist_util.barrier(f"end of epoch {epoch}")
    if main_rank:
        write_json(exp / "train.json", {
            "model": cfg["model"]["name"], "params": params, "epochs": cfg["epochs"],
            "train_seconds": train_seconds, "device": describe_device(device),
            "workers": ctx.world_size, "distributed": ctx.mode, "backend": ctx.backend,
            "bmuf": cfg["bmuf"] if ctx.mode == "bmuf" else None,
            "cells": cfg["model"].get("layers"), "channels": cfg["model"].get("C"),
            "genotype_source": cfg["model"].get("genotype"), "history": history,
            "train_data": [str(args.train_data)],
            "command": command})
    log.info("done: %d epochs, %.1f s on %s", cfg["epochs"], train_seconds, describe_device(device))
    dist_util.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "train_ctc"))
