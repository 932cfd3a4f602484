"""P-DARTS cell search for CTC speech recognition (the ASR paper, sections 3-4.3).

The training data is split at random into two equal halves: one trains the supernet's weights, the
other its architecture parameters (and gives the validation loss). Every stage setting, the op
space, the ops with dropout and the pooling cap come from the config (conf/pdarts_*.yaml; see
nasr.nas.pdarts). `--seeds N` repeats the whole search with seeds seed..seed+N-1 in
<exp-dir>/seed-<s>/ and keeps every seed's genotype; the one with the lowest final validation loss
becomes <exp-dir>/genotype.json (seeds.json lists them all).

e.g.: python -m nasr.bin.search_pdarts --config conf/pdarts_asr_revised.yaml \\
        --train-data data/train_sp --lang data/lang_syllable --exp-dir exp/pdarts_asr_revised --seeds 3
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from nasr.data.asr_dataset import AsrDataset
from nasr.nas.draw import draw_genotype
from nasr.nas.genotype import Genotype
from nasr.nas.pdarts import DEFAULTS as PDARTS_DEFAULTS
from nasr.nas.pdarts import run_pdarts
from nasr.nas.search_model import SearchNetwork
from nasr.train.ctc import batch_ctc_loss, batch_to, input_dims, make_loader
from nasr.utils.config import load_config, save_config
from nasr.utils.device import describe_device, get_device
from nasr.utils.cli import cli_main, require_inputs
from nasr.utils.io import write_json
from nasr.utils.lock import dir_lock
from nasr.utils.log import setup_logging

log = logging.getLogger("nasr.search_pdarts")

DEFAULTS = dict(PDARTS_DEFAULTS, **{
    "model": {"C": 16, "reduction": "thirds", "steps": 4, "multiplier": 4, "stem_multiplier": 3,
              "stem_stride": 1, "pc_k": 1, "channels_last": True},
    "batch_size": 4,
    "max_frames": 1024,
    "max_train_utts": None,
    "bf16": False,
    "num_workers": 0,
    "seed": 1,
})


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="search YAML (conf/pdarts_*.yaml)")
    p.add_argument("--profile", default=None, help="YAML with per-config overrides (conf/synth.yaml)")
    p.add_argument("--train-data", required=True, help="featurised training data dir (split in halves)")
    p.add_argument("--lang", required=True, help="lang dir (units.txt, lang.json)")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--seeds", type=int, default=1, help="repeat the search N times, keep the best")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-resume", action="store_true", help="start over even if stages are on disk")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. epochs_per_stage=2 model.C=8")
    return p


def split_halves(n: int, seed: int):
    """Two disjoint halves of range(n) (weights, alphas), fixed by `seed`."""
    if n < 2:
        raise ValueError(f"the search needs at least 2 training utterances, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    return sorted(order[: n // 2].tolist()), sorted(order[n // 2:].tolist())


def search_one_seed(cfg, dataset, seed: int, exp: Path, device, resume: bool):
    torch.manual_seed(seed)
    weights_half, alphas_half = split_halves(len(dataset), seed)
    bs, bf16, nw = int(cfg["batch_size"]), bool(cfg["bf16"]), int(cfg["num_workers"])
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
                             channels_last=m["channels_last"]).to(device)

    def batches(indices, salt):
        def epoch_batches(epoch):
            for b in make_loader(dataset, indices, bs, True, seed + salt, epoch, nw):
                yield batch_to(b, device)
        return epoch_batches

    valid_eval = make_loader(dataset, alphas_half, max(bs, 8), False, 0, 0, nw)

    @torch.no_grad()
    def valid_loss(model):
        model.eval()
        tot = n = 0
        for b in valid_eval:
            b = batch_to(b, device)
            tot += float(batch_ctc_loss(model, b, bf16)) * b.x.size(0)
            n += b.x.size(0)
        return tot / max(n, 1)

    return run_pdarts(cfg, build, batches(weights_half, 0), batches(alphas_half, 1),
                      lambda model, b: batch_ctc_loss(model, b, bf16), valid_loss, exp, device,
                      resume=resume)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    require_inputs(args.config, [args.train_data], files=[args.lang, args.profile])
    with dir_lock(args.exp_dir, what="exp dir"):  # one search per exp dir
        return run(args, argv)


def run(args, argv) -> int:
    exp = Path(args.exp_dir)
    setup_logging(exp / "log" / "search.log", with_env=True)
    cfg = load_config(args.config, args.override, DEFAULTS, profile=args.profile)
    save_config(cfg, exp / "config.yaml")
    log.info("config: %s", cfg)
    if args.seeds < 1:
        raise SystemExit("--seeds must be >= 1")
    device = get_device(args.device)
    dataset = AsrDataset(args.train_data, args.lang, max_frames=cfg["max_frames"], return_utt=False)
    if cfg["max_train_utts"]:
        keep = int(cfg["max_train_utts"])
        dataset.utts, dataset.targets, dataset.num_frames = (dataset.utts[:keep], dataset.targets[:keep],
                                                             dataset.num_frames[:keep])
    log.info("search data: %d utterances, %d units, input (%d, T, %d)", len(dataset),
             dataset.num_units, *input_dims(dataset))
    results = []
    for k in range(args.seeds):
        seed = int(cfg["seed"]) + k
        sdir = exp / f"seed-{seed}"
        r = search_one_seed(cfg, dataset, seed, sdir, device, not args.no_resume)
        r["genotype"].save(sdir / "genotype.json")
        results.append({"seed": seed, "valid_loss": r["valid_loss"], "genotype": str(sdir / "genotype.json"),
                        "search_seconds": r["search_seconds"]})
        log.info("seed %d: final valid loss %.4f, genotype %s", seed, r["valid_loss"],
                 r["genotype"].to_json().replace("\n", " "))
    best = min(results, key=lambda r: r["valid_loss"])
    (exp / "genotype.json").write_text(Path(best["genotype"]).read_text())
    try:
        draw_genotype(Genotype.load(exp / "genotype.json"), exp / "cells")
    except Exception as e:  # drawing needs graphviz's dot; the genotype is what matters
        log.warning("could not draw the cells: %s", e)
    seconds = sum(r["search_seconds"] for r in results)
    write_json(exp / "seeds.json", {"best_seed": best["seed"], "seeds": results})
    write_json(exp / "search.json", {
        "space": cfg["space"], "best_seed": best["seed"], "valid_loss": best["valid_loss"],
        "stages": cfg["stages"], "epochs_per_stage": cfg["epochs_per_stage"], "seeds": args.seeds,
        "search_seconds": seconds, "device": describe_device(device), "device_hours": seconds / 3600.0,
        "channels": cfg["model"]["C"],
        "command": " ".join(["python -m nasr.bin.search_pdarts"] + (argv if argv is not None else sys.argv[1:]))})
    log.info("best seed %d (valid loss %.4f) -> %s; %d seed(s) took %.1f s on %s", best["seed"],
             best["valid_loss"], exp / "genotype.json", args.seeds, seconds, describe_device(device))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "search_pdarts"))
