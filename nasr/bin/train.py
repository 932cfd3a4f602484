"""Train an utterance classifier (KWS / LID) from a config: a network built from a searched genotype,
or a hand-designed baseline, chosen by `model.name` (see nasr.models.registry).

Writes `<exp-dir>/{config.yaml, epoch-N.pt, best.pt, log/train.log, tensorboard/, train.json}`. With
`--valid-data`, or with `holdout_speakers: F` (a fraction F of the training speakers held out), best.pt
is the epoch with the best validation accuracy; with neither (the paper's retraining on train+valid)
best.pt is the last epoch. Reruns resume from the newest epoch on disk.

e.g.: python -m nasr.bin.train --config conf/train_nas1.yaml --train-data data/train data/valid \
        --genotype exp/search_nas1/genotype.json --exp-dir exp/train_nas1
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import Subset

from nasr.models.registry import build_model, check_model_config
from nasr.train.checkpoint import (ensure_best, latest_checkpoint, load_checkpoint, load_model_state,
                                   restore_rng_states, rng_states, save_checkpoint)
from nasr.train.kws import (EpochLoader, batch_featurizer, full_batches, input_shape, kws_parts, load_labels,
                            make_dataset, make_loader, speaker_holdout)
from nasr.train.loop import evaluate, train_one_epoch
from nasr.train.resume import check_resume_config, config_changes, record_config_change
from nasr.utils.config import (load_config, non_negative_int, non_negative_number, one_of, positive_int,
                               positive_number, probability, save_config)
from nasr.utils.device import AMP_CHOICES, describe_device, get_device, plan_device
from nasr.utils.cli import cli_main, require_inputs
from nasr.utils.io import atomic_write, read_json, write_json
from nasr.utils.lock import dir_lock
from nasr.utils.log import setup_logging
from nasr.utils.profile import profile

DEFAULTS = {
    "model": {},  # entirely from the YAML: its `name` picks the builder, the rest are its arguments
    "epochs": 200,
    "batch_size": 64,
    "optim": {"name": "sgd", "lr": 0.025, "lr_min": 0.0, "momentum": 0.9, "weight_decay": 3.0e-4,
              "grad_clip": 5.0},
    "aux_weight": 0.4,
    "augment": {"p_noise": 0.8, "noise_volume": 0.1, "shift_ms": 100.0},
    "bf16": False,
    # Autocast (nasr.utils.device): auto = bf16 (or fp16 with a GradScaler) on CUDA, and on CPU
    # bf16 only with `bf16: true`; or bf16 | fp16 | off.
    "amp": "auto",
    # Augmented training items are waves featurised a batch at a time inside the step
    # (nasr.data.batch_features: the same Kaldi features, on the training device) instead of one
    # by one in the loader, whose featurising made TC-ResNet14 wait on data ~80% of its time.
    # Falls back (logged) for feature settings it cannot reproduce; false: always per item.
    "batch_features": True,
    "num_workers": 0,
    "keep_last": 3,
    "seed": 1,
    # Without --valid-data, hold out this fraction of the training speakers (whole speakers, a fixed
    # draw) as validation data: per-epoch validation curves and best.pt on validation data only.
    # 0: train on everything and keep the last epoch.
    "holdout_speakers": 0.0,
}


# `model:` keys are the arguments of the builder its `name` picks: checked by check_model_config.
FREE = ("model",)
# Value checks run before any data is read or anything is written (nasr.utils.config).
CHECKS = {
    "model": check_model_config,
    "epochs": positive_int,
    "batch_size": positive_int,
    "optim.name": one_of(("sgd", "adamw"), "optimizer"),
    "optim.lr": positive_number,
    "optim.lr_min": non_negative_number,
    "optim.momentum": probability,
    "optim.weight_decay": non_negative_number,
    "optim.grad_clip": non_negative_number,
    "aux_weight": non_negative_number,
    "augment.p_noise": probability,
    "augment.noise_volume": non_negative_number,
    "augment.shift_ms": non_negative_number,
    "amp": one_of(AMP_CHOICES, "amp setting"),
    "batch_features": one_of((True, False), "batch_features setting"),
    "num_workers": non_negative_int,
    "keep_last": non_negative_int,
    "seed": non_negative_int,
}
# Settings a resume may change: they do not alter the run.
MAY_CHANGE = ("num_workers", "keep_last")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--profile", default=None, help="YAML with per-config overrides (conf/synth.yaml)")
    p.add_argument("--train-data", nargs="+", required=True)
    p.add_argument("--valid-data", nargs="*", default=[])
    p.add_argument("--genotype", default=None, help="genotype JSON for model.name=darts_net")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume although the config differs from the exp dir's (logged in config_changes.log)")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE")
    return p


def make_optimizer(params, o):
    if o["name"] == "sgd":
        return torch.optim.SGD(params, lr=o["lr"], momentum=o["momentum"], weight_decay=o["weight_decay"],
                               nesterov=o.get("nesterov", False))
    if o["name"] == "adamw":
        return torch.optim.AdamW(params, lr=o["lr"], weight_decay=o["weight_decay"])
    raise ValueError(f"unknown optim.name '{o['name']}' (known: sgd, adamw)")


def prune_checkpoints(exp: Path, keep: int) -> None:
    from nasr.train.checkpoint import list_epoch_checkpoints

    for e in list_epoch_checkpoints(exp)[:-keep] if keep > 0 else []:
        (exp / f"epoch-{e}.pt").unlink(missing_ok=True)


def best_epoch(history) -> int:
    """The epoch best.pt holds: the first with the best validation accuracy, or the last epoch
    without validation data (the paper's retraining on train+valid)."""
    if any("valid" in h for h in history):
        return max(history, key=lambda h: h.get("valid", {}).get("acc", -1))["epoch"]
    return history[-1]["epoch"]


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    require_inputs(args.config, list(args.train_data) + list(args.valid_data), files=[args.profile, args.genotype])
    with dir_lock(args.exp_dir, what="exp dir"):  # one training per exp dir
        return run(args, argv)


def run(args, argv) -> int:
    exp = Path(args.exp_dir)
    log = setup_logging(exp / "log" / "train.log", with_env=True)
    command = " ".join(["python -m nasr.bin.train"] + (argv if argv is not None else sys.argv[1:]))
    cfg = load_config(args.config, args.override, DEFAULTS, profile=args.profile, free=FREE,
                      checks=CHECKS)
    labels = load_labels(list(args.train_data) + list(args.valid_data))
    train_ds, _ = make_dataset(args.train_data, labels, cfg["augment"], cfg["seed"], waves=cfg["batch_features"])
    featurize, why = batch_featurizer(train_ds)
    if featurize is None and any(p.waves for p in kws_parts(train_ds)):
        log.info("training features computed per item in the loader (%s)", why)
        train_ds, _ = make_dataset(args.train_data, labels, cfg["augment"], cfg["seed"])
    valid_ds, valid_desc = None, None
    if args.valid_data:
        valid_ds = make_dataset(args.valid_data, labels, None, cfg["seed"])[0]
        valid_desc = " ".join(args.valid_data)
    elif cfg["holdout_speakers"]:
        kept, held = speaker_holdout(train_ds, float(cfg["holdout_speakers"]))
        valid_ds = Subset(make_dataset(args.train_data, labels, None, cfg["seed"])[0], held)
        train_ds = Subset(train_ds, kept)
        valid_desc = f"{cfg['holdout_speakers']} of the training speakers, held out"
        log.info("validation: %d utts of %s (%d utts left to train on)", len(held), valid_desc, len(kept))
    steps_per_epoch = full_batches(len(train_ds), cfg["batch_size"], " ".join(args.train_data))
    shape = input_shape(train_ds)
    if featurize is not None:
        shape = tuple(featurize(train_ds[0][0][None]).shape[1:])
        log.info("training features: computed a batch at a time in the step on the training device (%s)",
                 featurize.cfg.type)
    mcfg = dict(cfg["model"])
    mcfg.setdefault("num_classes", len(labels))
    mcfg.setdefault("in_channels", shape[0])
    build_cfg = dict(mcfg)
    genotype_changed = {}
    if mcfg["name"] == "darts_net":
        if args.genotype:
            mcfg["genotype"] = build_cfg["genotype"] = args.genotype
        if "genotype" not in mcfg:
            raise ValueError("model darts_net needs a genotype (fix: --genotype exp/search_x/genotype.json)")
        if isinstance(mcfg["genotype"], str):
            # The genotype is copied into the exp dir (once every check has passed): the experiment
            # stays reproducible if the search reruns. A resume with another genotype is a change.
            kept = exp / "genotype.json"
            source = Path(mcfg["genotype"])
            if source.resolve() != kept.resolve() and kept.is_file() and read_json(kept) != read_json(source):
                genotype_changed = {"genotype.json": (str(kept), str(source))}
            mcfg["genotype"] = str(kept)
    cfg["model"] = mcfg
    cfg["input_size"] = list(shape[1:])
    log.info("config: %s", cfg)

    torch.manual_seed(cfg["seed"])
    device = get_device(args.device)
    plan = plan_device(device, cfg["amp"], cfg["bf16"])
    plan.apply()
    scaler = plan.make_scaler()
    log.info("device plan: %s", plan.describe())
    model = build_model(build_cfg).to(device)
    if featurize is not None:
        featurize = featurize.to(device)
    prof = profile(model, shape)  # one example, no batch dim
    log.info("model %s: %d params, %d MACs; train %d utts, %d classes", mcfg["name"], prof["params"],
             prof["macs"], len(train_ds), len(labels))

    o = cfg["optim"]
    opt = make_optimizer(model.parameters(), o)
    total = cfg["epochs"] * steps_per_epoch
    # Per-step cosine decay (the papers' schedule), written as a LambdaLR so it resumes exactly.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (o["lr_min"] + 0.5 * (o["lr"] - o["lr_min"]) * (1 + math.cos(math.pi * min(s, total) / total))) / o["lr"])

    # Every check before the first write: a refused resume leaves the exp dir as it was.
    start, history, train_seconds, changes = 0, [], 0.0, {}
    ckpt = None if args.no_resume else latest_checkpoint(exp)
    if ckpt is not None:
        # model.genotype is always the exp dir's copy (its spelling follows --exp-dir): the copy's
        # content is what is compared.
        changes = config_changes(exp, cfg, MAY_CHANGE + ("model.genotype",), genotype_changed, DEFAULTS)
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
        else:
            log.warning("%s holds no RNG state (written by an older nasr): the resumed run draws "
                        "other drop-path and dropout masks than an unbroken one would", ckpt)
        log.info("resumed from %s (epoch %d done)", ckpt, start)
        fixed = ensure_best(exp, history, best_epoch)
        if fixed:
            log.warning("%s", fixed)
    copy_to = mcfg.get("genotype")
    if isinstance(copy_to, str) and Path(build_cfg["genotype"]).resolve() != Path(copy_to).resolve():
        with atomic_write(copy_to) as f:
            f.write(Path(build_cfg["genotype"]).read_text(encoding="utf-8"))
    save_config(cfg, exp / "config.yaml")
    if changes:
        record_config_change(exp, changes, command, start)
        log.warning("config changed on resume (--allow-config-change): %s; logged in %s", sorted(changes),
                    exp / "config_changes.log")

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(exp / "tensorboard"))
    train_loader = EpochLoader(train_ds, cfg["batch_size"], True, cfg["seed"], cfg["num_workers"],
                               drop_last=True, pin_memory=plan.pin_memory)
    for epoch in range(start + 1, cfg["epochs"] + 1):
        t0 = time.time()
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = mcfg.get("drop_path_prob", 0.0) * (epoch - 1) / cfg["epochs"]
        loader = train_loader.at(epoch)
        lr = sched.get_last_lr()[0]
        tr = train_one_epoch(model, loader, opt, device, epoch=epoch, aux_weight=cfg["aux_weight"],
                             grad_clip=o["grad_clip"], amp=plan.amp_dtype, scaler=scaler, writer=writer,
                             featurize=featurize,
                             global_step=(epoch - 1) * steps_per_epoch, scheduler_step=sched.step)
        if epoch < cfg["epochs"]:
            train_loader.prefetch(epoch + 1)  # the workers load while the epoch is evaluated and saved
        rec = {"epoch": epoch, "lr": lr, "train": {"loss": tr["loss"], "acc": tr["acc"]},
               "data_wait_frac": tr["data_wait_frac"]}
        if valid_ds is not None:
            rec["valid"] = evaluate(model, make_loader(valid_ds, 128, False, 0, pin_memory=plan.pin_memory),
                                    device, plan.amp_dtype)
            writer.add_scalar("valid/acc", rec["valid"]["acc"], epoch)
            writer.add_scalar("valid/loss", rec["valid"]["loss"], epoch)
        train_seconds += time.time() - t0
        history.append(rec)
        write_json(exp / "history.json", history)
        writer.add_scalar("train/acc", tr["acc"], epoch)
        writer.add_scalar("lr", lr, epoch)
        log.info("epoch %d: lr %.5f train loss %.4f acc %.4f%s | %.1f s (data wait %.0f%%)", epoch, lr,
                 tr["loss"], tr["acc"],
                 f" | valid loss {rec['valid']['loss']:.4f} acc {rec['valid']['acc']:.4f}" if valid_ds is not None else "",
                 time.time() - t0, 100 * tr["data_wait_frac"])
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "epoch": epoch, "history": history, "train_seconds": train_seconds, "config": cfg,
                 "rng": rng_states(), "scaler": scaler.state_dict() if scaler is not None else None}
        save_checkpoint(exp / f"epoch-{epoch}.pt", state)
        if best_epoch(history) == epoch:
            save_checkpoint(exp / "best.pt", state)
        prune_checkpoints(exp, cfg["keep_last"])
    writer.close()
    write_json(exp / "train.json", {"model": mcfg["name"], "genotype_source": args.genotype, "params": prof["params"], "macs": prof["macs"],
                                    "epochs": cfg["epochs"], "train_seconds": train_seconds,
                                    "device": describe_device(device), "input_size": cfg["input_size"],
                                    "train_data": list(args.train_data),
                                    "holdout_speakers": cfg["holdout_speakers"] if not args.valid_data else 0.0,
                                    "checkpoint_selection": (f"best validation accuracy on {valid_desc}"
                                                             if valid_ds is not None else "last epoch"),
                                    "command": command})
    log.info("done: %d epochs in %.1f s", cfg["epochs"], train_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "train"))
