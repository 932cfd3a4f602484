#!/usr/bin/env python3
"""Tower search throughput: candidates evaluated per hour with 1 and with 2 trainer processes on one
store (the scaling ratio; 2.0 is ideal when there are 2 free cores), and the store's overhead per
candidate (claim + finish transactions) beside the time a candidate trains.

Each run starts fresh trainers (`python -m nasr.bin.tower_search`, one torch thread each) on a new
store for --seconds, on a generated two-language featurised set (or --train-data/--valid-data).
Only candidates finished inside the window count, so the rates include process start-up.

e.g.: python bench/tower_search.py --seconds 120
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG = """task: lid
blocks: [rnn_32, proj_32, svdf_32_8, lstm_32]
max_frames: 200
search: {max_blocks: 3, explore_m: 2, train_steps: 200, eval_every: 100}  # a few s per candidate: start-up does not dominate
train: {lr: 0.005, dropout: 0.1, batch_size: 16}
tune: {enabled: true, batch_size: [16], startup_trials: 2}
"""


def make_sets(root: Path):
    import numpy as np

    from nasr.bin import compute_feats
    from nasr.data.audio import write_wav

    sets = {}
    for name, n, seed in (("train", 40, 0), ("dev", 10, 1)):
        d = root / name
        d.mkdir(parents=True)
        rng = np.random.default_rng(seed)
        rows = {"wav.scp": [], "utt2spk": [], "utt2lang": []}
        for lang, f0 in (("aa", 300.0), ("bb", 600.0)):
            for i in range(n):
                utt = f"{lang}-{name}-{i:03d}"
                t = np.arange(32000) / 16000
                x = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.1 * rng.standard_normal()) * t) + 0.05 * rng.standard_normal(t.size)
                write_wav(root / f"{utt}.wav", x.astype(np.float32), 16000)
                rows["wav.scp"].append(f"{utt} {root / utt}.wav")
                rows["utt2spk"].append(f"{utt} {utt}")
                rows["utt2lang"].append(f"{utt} {lang}")
        rows["spk2utt"] = rows["utt2spk"]
        for fname, lines in rows.items():
            (d / fname).write_text("\n".join(sorted(lines)) + "\n")
        compute_feats.main(["--data-dir", str(d), "--preset", "lid_fbank", "--nj", "1", "--no-progress"])
        sets[name] = d
    return sets["train"], sets["dev"]


def run_trainers(n: int, seconds: float, train, valid, work: Path):
    from nasr.tower.store import CandidateStore

    exp = work / f"exp_{n}"
    cfg = work / "tower.yaml"
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(ROOT))
    t0 = time.time()
    procs = [subprocess.Popen([sys.executable, "-m", "nasr.bin.tower_search", "--config", str(cfg), "--train-data",
                               str(train), "--valid-data", str(valid), "--exp-dir", str(exp), "--trainer-id", str(j),
                               "--time-budget", str(seconds)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for j in range(1, n + 1)]
    for p in procs:
        p.wait()
    wall = time.time() - t0
    with CandidateStore(exp / "store.db") as s:
        done = s.candidates(("done",))
    # From the first claim to the last result: trainers stop claiming when the window closes and
    # finish what they hold, so this span is steady-state search time without process start-up.
    span = max(c.finished for c in done) - min(c.started for c in done) if done else float("nan")
    return {"trainers": n, "done": len(done), "span_s": span, "wall_s": wall,
            "per_hour": len(done) / span * 3600 if done else 0.0,
            "train_s": sum(c.train_seconds for c in done) / max(1, len(done))}


def store_overhead(location, existing: int = 200, n: int = 200) -> float:
    """Seconds per candidate spent in the store: one claim (select + mutate inside the transaction,
    over `existing` evaluated candidates) and one finish."""
    import random

    from nasr.tower.search import SearchSettings, mutate, select_candidates
    from nasr.tower.store import CandidateStore

    settings = SearchSettings(["rnn_32", "proj_32", "svdf_32_8", "lstm_32"], max_blocks=4, explore_m=5)
    rng = random.Random(0)
    curve = [[s, 0.5, 1.0] for s in range(0, 400, 20)]
    with CandidateStore(location) as s:
        def one():
            c = s.claim(lambda done, running: {"blocks": mutate(select_candidates(done), settings, rng,
                                                                [x.blocks for x in done + running])[1]}, "1")
            s.finish(c.id, loss=rng.random(), acc=0.5, params=1, steps=400, curve=curve, checkpoint=None,
                     train_seconds=1.0)
        for _ in range(existing):
            one()
        t0 = time.perf_counter()
        for _ in range(n):
            one()
        return (time.perf_counter() - t0) / n


def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=120.0, help="search window per run")
    p.add_argument("--train-data")
    p.add_argument("--valid-data")
    p.add_argument("--store-url", help="also measure the store overhead on this (empty) server database; "
                                       "default: a local PostgreSQL from pgserver when it is installed")
    return p


def server_locations(args, work: Path):
    """(name, URL) of the server stores to measure, and what to clean up afterwards."""
    if args.store_url:
        return [("server", args.store_url)], None
    try:
        import pgserver
    except ImportError:
        return [], None
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it logs initdb's whole output
    server = pgserver.get_server(work / "pg", cleanup_mode="stop")
    server.psql("CREATE DATABASE overhead;")
    return [("PostgreSQL (local socket, pgserver)", server.get_uri("overhead"))], server


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "tower.yaml").write_text(CONFIG)
        train, valid = (args.train_data, args.valid_data) if args.train_data else make_sets(work / "data")
        print(f"# tower search throughput, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}, "
              f"window {args.seconds:.0f}s per run")
        one = run_trainers(1, args.seconds, train, valid, work)
        two = run_trainers(2, args.seconds, train, valid, work)
        for r in (one, two):
            print(f"{r['trainers']} trainer(s): {r['done']} candidates in {r['span_s']:.0f}s = {r['per_hour']:.0f}/h "
                  f"(mean {r['train_s']:.1f}s training per candidate)")
        ratio = two["per_hour"] / max(one["per_hour"], 1e-9)
        print(f"scaling 2 vs 1 trainers: x{ratio:.2f} (ideal 2.00)")
        mean_train = max(one["train_s"], two["train_s"])
        servers, server = server_locations(args, work)
        for name, location in [("SQLite file", work / "overhead.db")] + servers:
            overhead = store_overhead(location)
            share = f"= {100 * overhead / mean_train:.3f}% of a candidate's training time" if mean_train else ""
            print(f"store overhead per candidate, {name} (claim over 200-400 candidates + finish): "
                  f"{1000 * overhead:.2f} ms {share}")
        if server is not None:
            server.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
