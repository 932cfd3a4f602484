"""P-DARTS cell search for CTC speech recognition (the ASR paper, sections 3-4.3).

The training data is split at random into two halves: one trains the supernet's weights, the other
its architecture parameters (and gives the validation loss). The split is by original utterance
(utt2uniq): the speed-perturbed copies of an utterance (sp0.9-X, sp1.1-X) fall in the half of X,
so the alphas are never tuned on a copy of what the weights were trained on. Every seed uses the
same split (config `seed`), as the reference code's fixed split does. Every stage setting, the op
space, the ops with dropout and the pooling cap come from the config (conf/pdarts_*.yaml; see
nasr.nas.pdarts).

`--seeds N` repeats the whole search with seeds seed..seed+N-1 in <exp-dir>/seed-<s>/. The paper
repeats it 3 times and keeps the architecture whose evaluation network scores best. Here each
seed's derived network is trained briefly from scratch (the config's `pick:` section: the same
steps, batches and initial weights for every seed) and scored on `--valid-data` (dev token error
rate, never the test set); the lowest dev TER becomes <exp-dir>/genotype.json. seeds.json and the
log list every seed's dev TER and the choice. With one seed there is nothing to pick.

e.g.: python -m nasr.bin.search_pdarts --config conf/pdarts_asr_revised.yaml \\
        --train-data data/train_sp --valid-data data/dev --lang data/lang_syllable \\
        --exp-dir exp/pdarts_asr_revised --seeds 3
"""
from __future__ import annotations

import argparse
import itertools
import logging
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

import nasr.nas.asr_head  # noqa: F401  (registers the "ctc" head of the derived networks)
from nasr.data.asr_dataset import AsrDataset
from nasr.models.registry import build_model
from nasr.nas.draw import draw_genotype
from nasr.nas.cost import CostPenalty, check_cost_config, derived_cost, resolve_cost_config
from nasr.nas.genotype import Genotype
from nasr.nas.ops import OPS
from nasr.nas.pdarts import DEFAULTS as PDARTS_DEFAULTS
from nasr.nas.pdarts import parse_stages, run_pdarts
from nasr.nas.search_model import SearchNetwork
from nasr.nas.spaces import OP_SPACES
from nasr.nas.architect import alpha_step_amp
from nasr.train.ctc import batch_ctc_loss, batch_to, input_dims, make_loader, validate_ctc
from nasr.train.resume import check_resume_config, config_changes, record_config_change
from nasr.utils.config import (keys_of, list_of, load_config, non_negative_int, non_negative_number, one_of,
                               optional, positive_int, positive_number, probability, save_config)
from nasr.utils.device import AMP_CHOICES, backward_step, describe_device, get_device, plan_device
from nasr.utils.cli import cli_main, require_inputs
from nasr.utils.io import FormatError, atomic_write, iter_table, read_json, write_json
from nasr.utils.lock import dir_lock
from nasr.utils.log import setup_logging

log = logging.getLogger("nasr.search_pdarts")

DEFAULTS = dict(PDARTS_DEFAULTS, **{
    "model": {"C": 16, "reduction": "thirds", "steps": 4, "multiplier": 4, "stem_multiplier": 3,
              "stem_stride": 1, "pc_k": 1, "channels_last": True,
              "recompute_edges": False, "recompute_sep_convs": None},  # as nasr.bin.search
    "batch_size": 4,
    "max_frames": 1024,
    "max_train_utts": None,
    # A size/latency budget for the derived network (nasr.nas.cost): null (off), or
    # {table: exp/cost_cpu.json, metric: params|macs|latency, target: X, weight: 1.0, device: null}
    "cost": None,
    "bf16": False,
    # Autocast (nasr.utils.device): auto = bf16 (or fp16 with a GradScaler) on CUDA, and on CPU
    # bf16 only with `bf16: true`; or bf16 | fp16 | off. The alpha step autocasts in bf16 only.
    "amp": "auto",
    "num_workers": 0,
    "seed": 1,
    # Picking among seeds (--seeds N > 1): each seed's derived network, stacked from its genotype
    # (model: darts_net's settings), trains `steps` SGD steps (cosine lr to 0) on the whole search
    # set, then is scored on the dev set. The budget is the same for every seed.
    "pick": {"steps": 2000, "batch_size": 4,
             "model": {"C": 16, "layers": 17, "reduction": "thirds", "stem_stride": 1},
             "optim": {"lr": 0.01, "momentum": 0.9, "weight_decay": 3.0e-4, "grad_clip": 5.0}},
})

# Mappings whose keys are op names (checked in CHECKS), not config keys.
FREE = ("max_ops_normal", "max_ops_reduce")
# Value checks run before any data is read or anything is written (nasr.utils.config).
CHECKS = {
    "space": one_of(OP_SPACES, "op space"),
    **{f"model.{k}": positive_int for k in ("C", "steps", "multiplier", "stem_multiplier", "stem_stride", "pc_k")},
    "epochs_per_stage": positive_int,
    "warmup_epochs": non_negative_int,
    "dropout_ops": list_of(one_of(OPS, "op")),
    "dropout_decay": non_negative_number,
    "max_ops_normal": keys_of(OPS, "op", non_negative_int),
    "max_ops_reduce": keys_of(OPS, "op", non_negative_int),
    "always_keep": list_of(one_of(OPS, "op")),
    "optim.lr": positive_number,
    "optim.momentum": probability,
    "arch.lr": positive_number,
    "batch_size": positive_int,
    "max_frames": positive_int,
    "max_train_utts": optional(positive_int),
    "cost": check_cost_config,
    "amp": one_of(AMP_CHOICES, "amp setting"),
    "num_workers": non_negative_int,
    "seed": non_negative_int,
    "pick.steps": positive_int,
    "pick.batch_size": positive_int,
    "pick.optim.lr": positive_number,
}
# Settings a resume may change: they do not alter the search.
MAY_CHANGE = ("num_workers", "model.recompute_edges", "model.recompute_sep_convs")  # none changes what is computed
# The id prefix of Kaldi's speed-perturbed copies (utils/perturb_data_dir_speed.sh): sp0.9-, sp1.1-.
SPEED_PERTURBED_ID = re.compile(r"^sp[0-9.]+-")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="search YAML (conf/pdarts_*.yaml)")
    p.add_argument("--profile", default=None, help="YAML with per-config overrides (conf/synth.yaml)")
    p.add_argument("--train-data", required=True, help="featurised training data dir (split in halves)")
    p.add_argument("--valid-data", default=None,
                   help="featurised dev data dir: each seed's derived network is scored on it to pick "
                        "the winner (needed with --seeds > 1)")
    p.add_argument("--lang", required=True, help="lang dir (units.txt, lang.json)")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--seeds", type=int, default=1, help="repeat the search N times, keep the best")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-resume", action="store_true", help="start over even if stages are on disk")
    p.add_argument("--allow-config-change", action="store_true",
                   help="resume although the config differs from the exp dir's (logged in config_changes.log)")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. epochs_per_stage=2 model.C=8")
    return p


def original_utterances(data_dir, utts: Sequence[str]) -> List[str]:
    """The original utterance of each of `utts` (data_dir/utt2uniq, which speed perturbation writes
    and utils/combine_data.sh completes); each utterance is its own original when the data dir has
    no utt2uniq and no id looks speed-perturbed."""
    path = Path(data_dir) / "utt2uniq"
    if not path.is_file():
        copies = [u for u in utts if SPEED_PERTURBED_ID.match(u)]
        if copies:
            raise FormatError(path, None, f"missing, but {len(copies)} utterance ids look speed-perturbed "
                              f"(e.g. '{copies[0]}'): the two halves could share an original utterance",
                              "make the copies with utils/perturb_data_dir_speed.sh and join them with "
                              "utils/combine_data.sh, which write utt2uniq")
        return list(utts)
    table: Dict[str, str] = {}
    for lineno, utt, original in iter_table(path):
        if not original:
            raise FormatError(path, lineno, f"utterance '{utt}' has no original id",
                              "write `<utterance> <original utterance>`")
        table[utt] = original
    missing = [u for u in utts if u not in table]
    if missing:
        raise FormatError(path, None, f"{len(missing)} utterances have no line (e.g. '{missing[0]}')",
                          "rebuild the set with utils/combine_data.sh, which completes utt2uniq")
    return [table[u] for u in utts]


def split_halves(originals: Sequence[str], seed: int) -> Tuple[List[int], List[int]]:
    """Two disjoint halves of range(len(originals)) (weights, alphas) that never share an original
    utterance: the distinct originals are shuffled (fixed by `seed`) and cut in two equal parts, and
    each utterance goes where its original went."""
    groups: Dict[str, List[int]] = {}
    for i, original in enumerate(originals):
        groups.setdefault(original, []).append(i)
    if len(groups) < 2:
        raise ValueError(f"the search needs at least 2 original training utterances, got {len(groups)}")
    keys = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(keys))
    cut = len(keys) // 2
    weights = sorted(i for k in order[:cut] for i in groups[keys[k]])
    alphas = sorted(i for k in order[cut:] for i in groups[keys[k]])
    return weights, alphas


def search_one_seed(cfg, dataset, halves, seed: int, exp: Path, device, resume: bool):
    torch.manual_seed(seed)
    weights_half, alphas_half = halves
    bs, nw = int(cfg["batch_size"]), int(cfg["num_workers"])
    plan = plan_device(device, cfg["amp"], cfg["bf16"])
    amp, arch_amp = plan.amp_dtype, alpha_step_amp(plan.amp_dtype)
    log.info("seed %d: %d utterances train the weights, %d the alphas", seed, len(weights_half),
             len(alphas_half))
    m = cfg["model"]
    c_in, freq = input_dims(dataset)

    def build(layers, op_names, op_dropout):
        return SearchNetwork(c_in, dataset.num_units, m["C"], layers, op_names,
                             reduction=m["reduction"], steps=m["steps"], multiplier=m["multiplier"],
                             stem_multiplier=m["stem_multiplier"], stem_stride=m["stem_stride"],
                             pc_k=m["pc_k"], head="ctc",
                             freq_dim=freq, op_dropout=op_dropout,
                             channels_last=m["channels_last"],
                             recompute_edges=m["recompute_edges"],
                             recompute_sep_convs=m["recompute_sep_convs"]).to(device)

    def batches(indices, salt):
        def epoch_batches(epoch):
            for b in make_loader(dataset, indices, bs, True, seed + salt, epoch, nw, pin_memory=plan.pin_memory):
                yield batch_to(b, device)
        return epoch_batches

    valid_eval = make_loader(dataset, alphas_half, max(bs, 8), False, 0, 0, nw, pin_memory=plan.pin_memory)

    @torch.no_grad()
    def valid_loss(model):
        model.eval()
        tot = n = 0
        for b in valid_eval:
            b = batch_to(b, device)
            tot += float(batch_ctc_loss(model, b, amp)) * b.x.size(0)
            n += b.x.size(0)
        return tot / max(n, 1)

    penalty = CostPenalty.from_config(cfg["cost"], cfg["space"], cfg["max_ops_normal"], cfg["max_ops_reduce"])
    return run_pdarts(cfg, build, batches(weights_half, 0), batches(alphas_half, 1),
                      lambda model, b: batch_ctc_loss(model, b, amp), valid_loss, exp, device,
                      resume=resume, penalty=penalty, scaler=plan.make_scaler(),
                      arch_loss_fn=lambda model, b: batch_ctc_loss(model, b, arch_amp))


def score_genotype(cfg, genotype: Genotype, dataset, dev, device) -> Dict:
    """Train the network stacked from `genotype` for pick.steps SGD steps on `dataset` and score it
    on `dev`: {"dev_ter", "dev_loss", "dev_utts", "train_loss", "steps", "seconds"}. The initial
    weights and the batch order depend on the config's seed only, so every seed's genotype gets
    the same start and data."""
    pk, nw = cfg["pick"], int(cfg["num_workers"])
    plan = plan_device(device, cfg["amp"], cfg["bf16"])
    amp, scaler = plan.amp_dtype, plan.make_scaler()
    o, steps = pk["optim"], int(pk["steps"])
    if steps < 1:
        raise ValueError(f"pick.steps must be >= 1, got {steps}")
    c_in, freq = input_dims(dataset)
    torch.manual_seed(int(cfg["seed"]))
    model = build_model(dict(pk["model"], name="darts_net", genotype=genotype, in_channels=c_in,
                             num_classes=dataset.num_units, freq_dim=freq, head="ctc")).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=o["lr"], momentum=o["momentum"],
                          weight_decay=o["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.0)

    def batches():  # epoch after epoch until the step budget is spent
        for epoch in itertools.count():
            yield from make_loader(dataset, None, int(pk["batch_size"]), True, int(cfg["seed"]), epoch, nw,
                                   pin_memory=plan.pin_memory)

    t0, tot = time.time(), 0.0
    model.train()
    for b in itertools.islice(batches(), steps):
        loss = batch_ctc_loss(model, batch_to(b, device), amp)
        opt.zero_grad(set_to_none=True)
        backward_step(loss, opt, scaler, model.parameters(), o["grad_clip"])
        sched.step()
        tot += float(loss.detach())
    ev = validate_ctc(model, dev, device, amp, nw)
    return {"dev_ter": ev["ter"], "dev_loss": ev["loss"], "dev_utts": ev["utts"], "train_loss": tot / steps,
            "steps": steps, "seconds": time.time() - t0}


def pick_score(cfg, genotype: Genotype, dataset, dev, seed: int, sdir: Path, device, resume: bool) -> Dict:
    """score_genotype for one seed, kept in sdir/pick.json (read back on resume while the pick
    settings and the genotype are the same)."""
    path = sdir / "pick.json"
    if resume and path.is_file():
        old = read_json(path)
        if old.get("pick") == cfg["pick"] and old.get("genotype") == genotype.to_dict():
            log.info("seed %d: dev TER %.2f%% after %d steps, scored before (%s)", seed,
                     100 * old["dev_ter"], old["steps"], path)
            return old
    log.info("seed %d: training its derived network for %d steps to score it on dev", seed,
             int(cfg["pick"]["steps"]))
    r = score_genotype(cfg, genotype, dataset, dev, device)
    r.update(seed=seed, pick=cfg["pick"], genotype=genotype.to_dict())
    write_json(path, r)
    log.info("seed %d: dev TER %.2f%% (loss %.4f, %d utterances) after %d steps (train loss %.4f), %.1f s",
             seed, 100 * r["dev_ter"], r["dev_loss"], r["dev_utts"], r["steps"], r["train_loss"], r["seconds"])
    return r


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    require_inputs(args.config, [args.train_data], files=[args.lang, args.profile])
    with dir_lock(args.exp_dir, what="exp dir"):  # one search per exp dir
        return run(args, argv)


def run(args, argv) -> int:
    exp = Path(args.exp_dir)
    setup_logging(exp / "log" / "search.log", with_env=True)
    command = " ".join(["python -m nasr.bin.search_pdarts"] + (argv if argv is not None else sys.argv[1:]))
    cfg = load_config(args.config, args.override, DEFAULTS, profile=args.profile, free=FREE, checks=CHECKS)
    try:
        parse_stages(cfg)  # depths, ops per edge, dropout in [0, 1), as run_pdarts will read them
    except ValueError as e:
        raise SystemExit(f"{args.config}: {e}") from None
    cfg["cost"] = resolve_cost_config(cfg["cost"])
    penalty = CostPenalty.from_config(cfg["cost"], cfg["space"])  # the table is read before any write
    if penalty is not None:
        penalty.table.check_compatible(cfg["space"], cfg["model"]["steps"], cfg["model"]["multiplier"])
    log.info("config: %s", cfg)
    if args.seeds < 1:
        raise SystemExit("--seeds must be >= 1")
    if args.seeds > 1 and not args.valid_data:
        raise SystemExit("--seeds > 1 picks the seed whose derived network scores best on a dev set: "
                         "give it with --valid-data (e.g. data/dev)")
    # A resume continues the stages on disk: they must belong to this config.
    resuming = not args.no_resume and any(exp.glob("seed-*/stage-*/*"))
    changes = config_changes(exp, cfg, MAY_CHANGE, defaults=DEFAULTS) if resuming else {}
    check_resume_config(exp, changes, args.allow_config_change)
    save_config(cfg, exp / "config.yaml")
    if changes:
        record_config_change(exp, changes, command)
        log.warning("config changed on resume (--allow-config-change): %s", sorted(changes))
    device = get_device(args.device)
    plan = plan_device(device, cfg["amp"], cfg["bf16"])
    plan.apply()
    log.info("device plan: %s; alpha step autocast %s", plan.describe(), alpha_step_amp(plan.amp_dtype) or "off")
    dataset = AsrDataset(args.train_data, args.lang, max_frames=cfg["max_frames"], return_utt=False)
    if cfg["max_train_utts"]:
        keep = int(cfg["max_train_utts"])
        dataset.utts, dataset.targets, dataset.num_frames = (dataset.utts[:keep], dataset.targets[:keep],
                                                             dataset.num_frames[:keep])
    log.info("search data: %d utterances, %d units, input (%d, T, %d)", len(dataset),
             dataset.num_units, *input_dims(dataset))
    halves = split_halves(original_utterances(args.train_data, dataset.utts), int(cfg["seed"]))
    log.info("halves (split seed %d, by original utterance): %d utterances train the weights, %d the "
             "alphas", int(cfg["seed"]), len(halves[0]), len(halves[1]))
    dev = (AsrDataset(args.valid_data, dataset.tokenizer, max_frames=None, return_utt=True)
           if args.seeds > 1 else None)
    results = []
    for k in range(args.seeds):
        seed = int(cfg["seed"]) + k
        sdir = exp / f"seed-{seed}"
        r = search_one_seed(cfg, dataset, halves, seed, sdir, device, not args.no_resume)
        r["genotype"].save(sdir / "genotype.json")
        res = {"seed": seed, "valid_loss": r["valid_loss"], "genotype": str(sdir / "genotype.json"),
               "search_seconds": r["search_seconds"]}
        log.info("seed %d: final valid loss %.4f, genotype %s", seed, r["valid_loss"],
                 r["genotype"].to_json().replace("\n", " "))
        if dev is not None:
            sc = pick_score(cfg, r["genotype"], dataset, dev, seed, sdir, device, not args.no_resume)
            res.update(dev_ter=sc["dev_ter"], dev_loss=sc["dev_loss"], pick_seconds=sc["seconds"])
        results.append(res)
    if dev is not None:
        # The supernets' valid losses are not compared: they measure supernets, not the networks
        # the genotypes become. Ties go to the lower dev loss, then the lower seed.
        best = min(results, key=lambda r: (r["dev_ter"], r["dev_loss"], r["seed"]))
        picked_by = (f"lowest dev TER ({args.valid_data}) of the derived networks after "
                     f"{int(cfg['pick']['steps'])} training steps each")
        log.info("dev TER per seed: %s -> seed %d", ", ".join(f"seed {r['seed']} {100 * r['dev_ter']:.2f}%"
                                                             for r in results), best["seed"])
    else:
        best, picked_by = results[0], "the only seed"
    with atomic_write(exp / "genotype.json") as f:
        f.write(Path(best["genotype"]).read_text(encoding="utf-8"))
    try:
        draw_genotype(Genotype.load(exp / "genotype.json"), exp / "cells")
    except Exception as e:  # drawing needs graphviz's dot; the genotype is what matters
        log.warning("could not draw the cells: %s", e)
    seconds = sum(r["search_seconds"] for r in results)
    write_json(exp / "seeds.json", {"best_seed": best["seed"], "picked_by": picked_by, "seeds": results})
    write_json(exp / "search.json", {
        "space": cfg["space"], "best_seed": best["seed"], "picked_by": picked_by,
        "dev_ter": best.get("dev_ter"), "valid_loss": best["valid_loss"],
        "stages": cfg["stages"], "epochs_per_stage": cfg["epochs_per_stage"], "seeds": args.seeds,
        "search_seconds": seconds, "device": describe_device(device), "device_hours": seconds / 3600.0,
        "channels": cfg["model"]["C"],
        "cost": None if penalty is None else {
            **cfg["cost"], "device": penalty.device,
            "derived": derived_cost(penalty.table, Genotype.load(exp / "genotype.json"), penalty.metric,
                                    penalty.device)},
        "command": command})
    log.info("picked seed %d (%s) -> %s; %d seed(s) took %.1f s of search on %s", best["seed"], picked_by,
             exp / "genotype.json", args.seeds, seconds, describe_device(device))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "search_pdarts"))
