"""One tower-search trainer (tower-search paper, Algorithm 1): select the best candidate in the shared
store, mutate it, transfer the shared prefix's weights, train, evaluate, record; repeat until the
store's candidate budget or this trainer's time budget is spent.

Run several at once on one --store (the recipe uses its job runner: JOB=1:L ... --trainer-id JOB);
they never wait for each other; --store names a database URL when they run on several machines.
A trainer killed mid-training loses only the candidate it was training: the next claim by any
trainer marks it `lost` (its process is gone, or its heartbeat stopped for search.lease_s).
On exit each trainer writes the best tower so far to <exp-dir>/tower.json and a summary to
<exp-dir>/search.json (atomically: the last trainer to stop leaves the complete ones).

e.g.: python -m nasr.bin.tower_search --config conf/tower_b1.yaml --train-data data/train \\
          --valid-data data/dev --exp-dir exp/tower_search_b1 --trainer-id 1 --max-candidates 100
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from nasr.tower.search import PAPER_TRAIN
from nasr.utils.cli import require_inputs
from nasr.tower.tune import DEFAULTS as TUNE_DEFAULTS
from nasr.utils.config import (load_config, non_negative_int, non_negative_number, one_of, optional, positive_int,
                               positive_number, probability, save_config)
from nasr.utils.io import FormatError
from nasr.utils.lock import LOCK_NAME, LockError, dir_lock

DEFAULTS: Dict = {
    "task": "lid",                     # lid (utt2lang) or kws (text + labels.txt)
    "blocks": "conf/blocks_b1.yaml",   # a block-set YAML path, or the list of block names itself
    "block_set_name": None,            # the name of an inline `blocks:` list (default: the config's stem)
    "max_frames": 400,                 # the paper's LID input: at most 400 frames x 40 log-mel
    "seed": 1,
    "threads": 1,                      # torch threads per trainer: L trainers share the machine
    "search": {"max_blocks": 4, "explore_m": 5, "train_steps": 2000, "eval_every": 200,
               "max_candidates": None, "max_train_utts": None, "max_valid_utts": None,
               "lease_s": 300.0},        # a running candidate without a heartbeat this long is lost
    # The paper's footnote 3 (Adam, lr 5.24e-5, batch 20, dropout 0.3 between blocks, the staircase
    # decay x0.86156 four times: nasr.tower.search.PAPER_TRAIN, staircase_lr)
    "train": {**PAPER_TRAIN, "grad_clip": 5.0, "weight_decay": 0.0},
    "tune": dict(TUNE_DEFAULTS),
    "ensemble": {"members": 3, "train_steps": 4000, "eval_every": 400},
}

# Value checks run before any data is read or anything is written (nasr.utils.config); block names
# are checked by load_blocks.
CHECKS = {
    "task": one_of(("lid", "kws"), "task"),
    "max_frames": positive_int,
    "threads": positive_int,
    **{f"search.{k}": positive_int for k in ("max_blocks", "explore_m", "train_steps", "eval_every")},
    **{f"search.{k}": optional(positive_int) for k in ("max_candidates", "max_train_utts", "max_valid_utts")},
    "search.lease_s": positive_number,
    "train.lr": positive_number,
    "train.dropout": probability,
    "train.batch_size": positive_int,
    "train.grad_clip": non_negative_number,
    "train.weight_decay": non_negative_number,
    "train.lr_decay": positive_number,
    "train.lr_decay_times": non_negative_int,
    "tune.startup_trials": positive_int,
    "ensemble.members": positive_int,
    "ensemble.train_steps": positive_int,
    "ensemble.eval_every": positive_int,
}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="search config (conf/tower_b1.yaml)")
    p.add_argument("--profile", default=None, help="YAML with per-config overrides (conf/synth.yaml)")
    p.add_argument("--override", action="append", default=[], help="key.sub=value (repeatable)")
    p.add_argument("--train-data", required=True)
    p.add_argument("--valid-data", required=True, help="held-out set whose loss ranks the candidates")
    p.add_argument("--exp-dir", required=True)
    p.add_argument("--store", default=None,
                   help="candidate store: an SQLite file (default: EXP_DIR/store.db) for trainers on this machine, "
                        "or a database URL (postgresql://user:password@host/db) for trainers on many")
    p.add_argument("--trainer-id", default="1", help="this trainer's name in the store (the job number)")
    p.add_argument("--max-candidates", type=int, default=None,
                   help="stop when the store holds this many claimed candidates (all trainers together)")
    p.add_argument("--time-budget", type=float, default=None, help="stop claiming after this many seconds")
    p.add_argument("--device", default="cpu", help="only cpu: towers are small recurrent nets")
    return p


def resolve_config(args) -> Dict:
    return load_config(args.config, args.override, DEFAULTS, profile=args.profile, checks=CHECKS)


def load_blocks(cfg: Dict, config_path) -> Tuple[str, List[str]]:
    """The block set: an inline list in the config, or a block-set YAML (relative paths are tried
    from the working directory, then from the config's directory)."""
    from nasr.tower.blocks import BlockError, canonical_name, load_block_set

    spec = cfg["blocks"]
    if isinstance(spec, list):
        try:
            names = [canonical_name(b) for b in spec]
        except BlockError as e:
            raise FormatError(config_path, None, f"blocks: {e}") from None
        return str(cfg.get("block_set_name") or Path(config_path).stem), names
    path = Path(spec)
    if not path.is_file() and (Path(config_path).parent / path.name).is_file():
        path = Path(config_path).parent / path.name
    if not path.is_file():
        raise FormatError(config_path, None, f"block set '{spec}' does not exist",
                          "set `blocks:` to a block-set YAML or to a list of block names")
    return load_block_set(path)


def write_summary(store, exp_dir: Path, space: str, command: str, device: str) -> Dict:
    """search.json (what report steps read) and tower.json (the best tower so far), atomically."""
    from nasr.tower.tower import save_tower
    from nasr.tower.tune import tuning_summary
    from nasr.utils.io import write_json

    cands = store.candidates()
    done = [c for c in cands if c.status == "done"]
    best = store.best(5)
    summary = {
        "space": space, "store": store.location, "command": command, "device": device,
        "device_hours": sum(c.train_seconds or 0.0 for c in done) / 3600.0,
        "candidates": store.counts(),
        "wall_seconds": (max(c.finished or c.started for c in cands) - min(c.started for c in cands)) if cands else 0,
        "top": [{"id": c.id, "blocks": c.blocks, "loss": c.loss, "acc": c.acc, "params": c.params,
                 "hparams": c.hparams, "iteration": c.id} for c in best],
        "tuning": tuning_summary(store),
    }
    write_json(exp_dir / "search.json", summary)
    if best:
        b = best[0]
        save_tower(exp_dir / "tower.json", b.blocks, candidate=b.id, loss=b.loss, acc=b.acc, params=b.params,
                   hparams=b.hparams, store=store.location)
    return summary


class SearchFailed(RuntimeError):
    """The search has no evaluated candidate and none in training: it produced nothing."""


def check_search_result(store) -> None:
    """Raise SearchFailed when no candidate was evaluated and none is still being trained (by
    any trainer), quoting the first failure: its cause is usually every candidate's."""
    if store.best(1) or store.candidates(("running",), brief=True):
        return
    failed = store.candidates(("failed",))
    if failed:
        first = failed[0]
        raise SearchFailed(f"{store.location}: all {len(failed)} candidate(s) failed; the first (candidate "
                           f"{first.id}, {first.blocks}) with: {first.error} (fix: correct the cause, then "
                           f"search again in a new --store or exp dir)")
    raise SearchFailed(f"{store.location}: no candidate was evaluated (counts: {store.counts()}) "
                       f"(fix: give the search a larger --time-budget or --max-candidates)")


def main(argv=None) -> int:
    from nasr.tower.store import StoreError

    args = get_parser().parse_args(argv)
    trainer = re.sub(r"[^\w.-]", "_", str(args.trainer_id))
    try:
        require_inputs(args.config, [args.train_data, args.valid_data], files=[args.profile])
        # Many trainers share the exp dir and the store; one id belongs to one live trainer.
        with dir_lock(args.exp_dir, name=f"{LOCK_NAME}.trainer-{trainer}", what=f"trainer id '{args.trainer_id}'",
                      fix="give this trainer another --trainer-id, or stop that one first"):
            return run(args, argv)
    except (FormatError, LockError, StoreError, SearchFailed) as e:
        print(f"tower_search: {e}", file=sys.stderr)
        return 1


def run(args, argv) -> int:
    from nasr.tower.data import load_sets
    from nasr.tower.search import SearchSettings, run_trainer
    from nasr.tower.store import CandidateStore
    from nasr.tower.tune import Tuner
    from nasr.utils.device import describe_device
    from nasr.utils.log import setup_logging

    exp = Path(args.exp_dir)
    # Not trainer.N.log: the job runner writes its own log there (two writers would interleave).
    log = setup_logging(exp / "log" / f"tower_search.{args.trainer_id}.log")
    command = " ".join(["python -m nasr.bin.tower_search"] + (argv if argv is not None else sys.argv[1:]))
    log.info("%s", command)
    if args.device != "cpu":
        log.warning("--device %s: towers train on the CPU here", args.device)
    cfg = resolve_config(args)
    space, blocks = load_blocks(cfg, args.config)
    store = CandidateStore(args.store or exp / "store.db", lease_s=float(cfg["search"]["lease_s"]))
    store.check_writable()
    save_config(cfg, exp / "config.yaml")
    torch.set_num_threads(int(cfg["threads"]))
    s = cfg["search"]
    settings = SearchSettings(blocks, max_blocks=int(s["max_blocks"]), explore_m=int(s["explore_m"]))
    log.info("block set %s (%d blocks), K=%d, M=%d, %d steps per candidate", space, len(blocks),
             settings.max_blocks, settings.explore_m, s["train_steps"])
    train_ds, valid_ds, names = load_sets(cfg["task"], args.train_data, args.valid_data, int(cfg["seed"]),
                                          int(cfg["max_frames"]), s.get("max_train_utts"), s.get("max_valid_utts"))
    log.info("%d training and %d validation utterances, %d classes", len(train_ds), len(valid_ds), len(names))
    tuner = None
    if cfg["tune"].get("enabled"):
        tuner = Tuner(store, cfg["tune"])
    max_cands = args.max_candidates if args.max_candidates is not None else s.get("max_candidates")
    t0 = time.time()
    n = run_trainer(store, settings, train_ds, valid_ds, names, exp, str(args.trainer_id), dict(cfg["train"]),
                    steps=int(s["train_steps"]), eval_every=int(s["eval_every"]), seed=int(cfg["seed"]),
                    max_candidates=max_cands, time_budget=args.time_budget, tuner=tuner)
    summary = write_summary(store, exp, space, command, describe_device(torch.device("cpu")))
    log.info("trainer %s: %d candidates in %.0fs; store: %s; best: %s", args.trainer_id, n, time.time() - t0,
             summary["candidates"], summary["top"][:1])
    try:
        check_search_result(store)
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
