"""Data-loader wait in CTC training: the share of each step spent waiting for the next batch.

Usage:
  python bench/ctc_loader.py [--data DIR --lang DIR] [--steps 40] [--batch-size 8] [--workers 0 1]

e.g.:
  python bench/ctc_loader.py                      # builds a small synthetic Mandarin set first
  python bench/ctc_loader.py --data egs/aishell1/data/train_sp --lang egs/aishell1/data/lang_char

Trains the small ASR evaluation network (a DARTS genotype, CTC head, the aishell1 synth profile's
size) for --steps steps through the recipe's own loader (nasr.train.ctc.make_loader: length
buckets, padding, CMVN in the dataset) once per --workers value, timing with
nasr.train.ctc.train_ctc_epoch, which measures the time between the end of one step and the
arrival of the next batch. Prints the wait fraction of each run and its ratio to the limit
(issue: batch waiting under 5% of step time), PASS when the best setting is under it.
Without --data, a synthetic AISHELL-1-shaped corpus (eSpeak) is made, prepared and featurised in a
temp dir with the recipe's steps (about a minute).
"""
from __future__ import annotations

import argparse
import itertools
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout

LIMIT = 0.05


def build_synthetic_set(work: Path, speakers: int, utts: int) -> tuple:
    """A featurised train dir and a char lang dir, made with the aishell1 recipe's own steps."""
    py = sys.executable

    def step(*args):
        subprocess.run([py, *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)

    corpus, data = work / "corpus", work / "data"
    step("-m", "nasr.bin.make_synth_corpus", "aishell1", str(corpus), "--num-speakers", str(speakers),
         "1", "1", "--utts-per-speaker", str(utts), "--nj", "2")
    step("local/aishell/prepare.py", "--corpus-dir", str(corpus), "--out-dir", str(data))
    step("-m", "nasr.bin.compute_feats", "--data-dir", str(data / "train"), "--preset", "asr_fbank",
         "--nj", "2")
    step("-m", "nasr.bin.prepare_lang", "--data", str(data / "train"), "--unit", "char",
         "--out", str(data / "lang_char"))
    return data / "train", data / "lang_char"


def run(data, lang, workers: int, steps: int, batch_size: int, C: int, layers: int) -> dict:
    import torch

    from nasr.data.asr_dataset import AsrDataset
    from nasr.models.darts_net import DartsNetwork
    from nasr.nas.genotype import DARTS_V2
    from nasr.train.ctc import input_dims, make_loader, train_ctc_epoch

    torch.manual_seed(0)
    ds = AsrDataset(data, lang, max_frames=1024)
    c_in, feat_dim = input_dims(ds)
    model = DartsNetwork(DARTS_V2, c_in, ds.num_units, C=C, layers=layers, reduction="thirds",
                         head="ctc", freq_dim=feat_dim, stem_stride=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = make_loader(ds, None, batch_size, True, seed=0, epoch=1, num_workers=workers)

    class FirstSteps:  # the first `steps` batches, cycling when the set is smaller
        def __iter__(self):
            return itertools.islice(itertools.cycle(loader), steps)

    # One warm-up step outside the timing (first-call allocations, worker start-up in the loop).
    train_ctc_epoch(model, itertools.islice(loader, 1), opt, "cpu", desc="warm-up")
    r = train_ctc_epoch(model, FirstSteps(), opt, "cpu", desc=f"workers={workers}")
    return {"workers": workers, "wait_fraction": r["wait_fraction"], "seconds": r["seconds"],
            "step_seconds": r["seconds"] / steps}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="featurised data dir (default: build a synthetic one)")
    p.add_argument("--lang", default=None, help="lang dir for --data")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    p.add_argument("--channels", type=int, default=8, help="evaluation network C")
    p.add_argument("--layers", type=int, default=5, help="evaluation network cells")
    p.add_argument("--synth-speakers", type=int, default=6)
    p.add_argument("--synth-utts", type=int, default=20)
    args = p.parse_args(argv)
    if (args.data is None) != (args.lang is None):
        p.error("give both --data and --lang, or neither")

    with tempfile.TemporaryDirectory(prefix="ctc_loader_") as tmp:
        if args.data is None:
            print("building a synthetic featurised set ...", flush=True)
            data, lang = build_synthetic_set(Path(tmp), args.synth_speakers, args.synth_utts)
        else:
            data, lang = Path(args.data), Path(args.lang)
        rows = [run(data, lang, w, args.steps, args.batch_size, args.channels, args.layers)
                for w in args.workers]

    print(f"\nCTC training, {args.steps} steps of batch {args.batch_size}, network C={args.channels} "
          f"L={args.layers} ({data})")
    print(f"{'workers':>8} {'step (s)':>9} {'wait':>7} {'wait/limit':>11}")
    for r in rows:
        print(f"{r['workers']:>8} {r['step_seconds']:>9.3f} {100 * r['wait_fraction']:>6.2f}% "
              f"{r['wait_fraction'] / LIMIT:>11.2f}")
    best = min(rows, key=lambda r: r["wait_fraction"])
    ok = best["wait_fraction"] < LIMIT
    print(f"best: {best['workers']} worker(s), wait {100 * best['wait_fraction']:.2f}% of step time "
          f"(limit {100 * LIMIT:.0f}%): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
