"""Train an utterance classifier (KWS / LID) from a config: a network built from a searched genotype,
or a hand-designed baseline, chosen by `model.name` (see nasr.models.registry).

Writes `<exp-dir>/{config.yaml, epoch-N.pt, best.pt, log/train.log, tensorboard/, train.json}`. With
`--valid-data`, best.pt is the epoch with the best validation accuracy; without it (the paper's
retraining on train+valid) best.pt is the last epoch. Reruns resume from the newest epoch on disk.

e.g.: python -m nasr.bin.train --config conf/train_nas1.yaml --train-data data/train data/valid \
        --genotype exp/search_nas1/genotype.json --exp-dir exp/train_nas1
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import time
from pathlib import Path

import torch

from nasr.models.registry import build_model
from nasr.train.checkpoint import latest_checkpoint, load_checkpoint, load_model_state, save_checkpoint
from nasr.train.kws import input_shape, load_labels, make_dataset, make_loader
from nasr.train.loop import evaluate, train_one_epoch
from nasr.utils.config import load_config, save_config
from nasr.utils.device import describe_device, get_device
from nasr.utils.cli import cli_main, require_inputs
from nasr.utils.io import write_json
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
    "num_workers": 0,
    "keep_last": 3,
    "seed": 1,
}


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


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    require_inputs(args.config, list(args.train_data) + list(args.valid_data), files=[args.profile, args.genotype])
    with dir_lock(args.exp_dir, what="exp dir"):  # one training per exp dir
        return run(args, argv)


def run(args, argv) -> int:
    exp = Path(args.exp_dir)
    log = setup_logging(exp / "log" / "train.log", with_env=True)
    cfg = load_config(args.config, args.override, DEFAULTS, profile=args.profile)
    labels = load_labels(list(args.train_data) + list(args.valid_data))
    train_ds, _ = make_dataset(args.train_data, labels, cfg["augment"], cfg["seed"])
    shape = input_shape(train_ds)
    mcfg = dict(cfg["model"])
    if "name" not in mcfg:
        raise ValueError(f"{args.config}: no model.name (fix: add `model: {{name: darts_net, ...}}`)")
    mcfg.setdefault("num_classes", len(labels))
    mcfg.setdefault("in_channels", shape[0])
    if mcfg["name"] == "darts_net":
        if args.genotype:
            mcfg["genotype"] = args.genotype
        if "genotype" not in mcfg:
            raise ValueError("model darts_net needs a genotype (fix: --genotype exp/search_x/genotype.json)")
        # Copy the genotype into the exp dir: the experiment stays reproducible if the search reruns.
        if isinstance(mcfg["genotype"], str):
            exp.mkdir(parents=True, exist_ok=True)
            if Path(mcfg["genotype"]).resolve() != (exp / "genotype.json").resolve():
                shutil.copyfile(mcfg["genotype"], exp / "genotype.json")
            mcfg["genotype"] = str(exp / "genotype.json")
    cfg["model"] = mcfg
    cfg["input_size"] = list(shape[1:])
    save_config(cfg, exp / "config.yaml")
    log.info("config: %s", cfg)

    torch.manual_seed(cfg["seed"])
    device = get_device(args.device)
    model = build_model(mcfg).to(device)
    prof = profile(model, shape)  # one example, no batch dim
    log.info("model %s: %d params, %d MACs; train %d utts, %d classes", mcfg["name"], prof["params"],
             prof["macs"], len(train_ds), len(labels))
    valid_ds = make_dataset(args.valid_data, labels, None, cfg["seed"])[0] if args.valid_data else None

    o = cfg["optim"]
    opt = make_optimizer(model.parameters(), o)
    steps_per_epoch = max(1, len(train_ds) // cfg["batch_size"])
    total = cfg["epochs"] * steps_per_epoch
    # Per-step cosine decay (the papers' schedule), written as a LambdaLR so it resumes exactly.
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (o["lr_min"] + 0.5 * (o["lr"] - o["lr_min"]) * (1 + math.cos(math.pi * min(s, total) / total))) / o["lr"])

    start, history, train_seconds = 0, [], 0.0
    ckpt = None if args.no_resume else latest_checkpoint(exp)
    if ckpt is not None:
        st = load_checkpoint(ckpt)
        load_model_state(model, st, ckpt)
        opt.load_state_dict(st["optimizer"])
        sched.load_state_dict(st["scheduler"])
        start, history, train_seconds = st["epoch"], st["history"], st["train_seconds"]
        log.info("resumed from %s (epoch %d done)", ckpt, start)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(exp / "tensorboard"))
    best_acc = max((h.get("valid", {}).get("acc", -1) for h in history), default=-1)
    for epoch in range(start + 1, cfg["epochs"] + 1):
        t0 = time.time()
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = mcfg.get("drop_path_prob", 0.0) * (epoch - 1) / cfg["epochs"]
        loader = make_loader(train_ds, cfg["batch_size"], True, cfg["seed"], epoch, cfg["num_workers"],
                             drop_last=True)
        lr = sched.get_last_lr()[0]
        tr = train_one_epoch(model, loader, opt, device, epoch=epoch, aux_weight=cfg["aux_weight"],
                             grad_clip=o["grad_clip"], bf16=cfg["bf16"], writer=writer,
                             global_step=(epoch - 1) * steps_per_epoch, scheduler_step=sched.step)
        rec = {"epoch": epoch, "lr": lr, "train": {"loss": tr["loss"], "acc": tr["acc"]},
               "data_wait_frac": tr["data_wait_frac"]}
        if valid_ds is not None:
            rec["valid"] = evaluate(model, make_loader(valid_ds, 128, False, 0), device, cfg["bf16"])
            writer.add_scalar("valid/acc", rec["valid"]["acc"], epoch)
            writer.add_scalar("valid/loss", rec["valid"]["loss"], epoch)
        train_seconds += time.time() - t0
        history.append(rec)
        write_json(exp / "history.json", history)
        writer.add_scalar("train/acc", tr["acc"], epoch)
        writer.add_scalar("lr", lr, epoch)
        log.info("epoch %d: lr %.5f train loss %.4f acc %.4f%s | %.1f s (data wait %.0f%%)", epoch, lr,
                 tr["loss"], tr["acc"],
                 f" | valid loss {rec['valid']['loss']:.4f} acc {rec['valid']['acc']:.4f}" if valid_ds else "",
                 time.time() - t0, 100 * tr["data_wait_frac"])
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "epoch": epoch, "history": history, "train_seconds": train_seconds, "config": cfg}
        save_checkpoint(exp / f"epoch-{epoch}.pt", state)
        acc = rec.get("valid", {}).get("acc")
        if acc is None or acc > best_acc:
            best_acc = acc if acc is not None else best_acc
            save_checkpoint(exp / "best.pt", state)
        prune_checkpoints(exp, cfg["keep_last"])
    writer.close()
    write_json(exp / "train.json", {"model": mcfg["name"], "genotype_source": args.genotype, "params": prof["params"], "macs": prof["macs"],
                                    "epochs": cfg["epochs"], "train_seconds": train_seconds,
                                    "device": describe_device(device), "input_size": cfg["input_size"],
                                    "command": " ".join(["python -m nasr.bin.train"]
                                                        + (argv if argv is not None else sys.argv[1:]))})
    log.info("done: %d epochs in %.1f s", cfg["epochs"], train_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "train"))
