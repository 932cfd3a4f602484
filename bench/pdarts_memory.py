"""Memory of the P-DARTS alpha batches over one epoch: the old cached iteration (itertools.cycle,
which keeps every batch of the pass) against the streamed one (nasr.nas.pdarts.alpha_batch_stream).

Usage:
  python bench/pdarts_memory.py [--utts 3000] [--batch-size 4] [--min-frames 200] [--max-frames 1024]

e.g.:
  python bench/pdarts_memory.py

An epoch's alpha half is --utts synthetic utterances of AISHELL-1's feature shape (3 x T x 40:
static, delta, delta-delta log-mel; T uniform in [--min-frames, --max-frames], AISHELL-1's range
under the recipe's 1024-frame cap), batched by the recipe's own loader (nasr.train.ctc.make_loader:
length buckets, padding) as nasr.bin.search_pdarts does. Each alpha step takes the next batch and
reads it (the architect's forward is left out: it needs the same memory in both cases). Each
variant runs in a fresh process, which samples its resident set size (/proc/self/statm) after every
step; the script prints each variant's peak RSS growth over the epoch, the largest batch, and the
cached/streamed ratio, all from this one run.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout

FEAT_BINS, CHANNELS = 40, 3


class SyntheticAlphaHalf:
    """Utterances made on demand (as FeatureReader reads them from disk): random features of a
    fixed length per item and a short label sequence. Only the lengths are kept."""

    def __init__(self, utts: int, min_frames: int, max_frames: int, seed: int = 0):
        import numpy as np

        self.num_frames = np.random.default_rng(seed).integers(min_frames, max_frames + 1, utts).tolist()

    def __len__(self) -> int:
        return len(self.num_frames)

    def __getitem__(self, index: int):
        import numpy as np
        import torch

        rng = np.random.default_rng(index)
        feats = rng.standard_normal((CHANNELS, self.num_frames[index], FEAT_BINS), dtype=np.float32)
        ids = rng.integers(1, 100, max(1, self.num_frames[index] // 40))
        return torch.from_numpy(feats), torch.from_numpy(ids)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(variant: str, utts: int, batch_size: int, min_frames: int, max_frames: int) -> dict:
    """One epoch of alpha steps with `variant` ('cached' or 'streamed'): peak RSS growth."""
    import torch

    from nasr.nas.pdarts import alpha_batch_stream
    from nasr.train.ctc import batch_to, make_loader

    torch.set_num_threads(1)
    half = SyntheticAlphaHalf(utts, min_frames, max_frames)
    device = torch.device("cpu")

    def valid_batches(epoch):  # as nasr.bin.search_pdarts builds the alpha half's batches
        for b in make_loader(half, None, batch_size, True, 1, epoch, 0):
            yield batch_to(b, device)

    steps = len(make_loader(half, None, batch_size, True, 1, 0, 0))
    base = peak = rss_bytes()
    largest = 0
    stream = (itertools.cycle(valid_batches(0)) if variant == "cached"
              else alpha_batch_stream(valid_batches, 0))
    for _ in range(steps):
        batch = next(stream)
        largest = max(largest, batch.x.numel() * batch.x.element_size())
        float(batch.x.sum())  # the step reads its batch
        del batch
        peak = max(peak, rss_bytes())
    return {"variant": variant, "steps": steps, "peak_growth_mb": (peak - base) / 2**20,
            "largest_batch_mb": largest / 2**20}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utts", type=int, default=3000, help="utterances in the alpha half")
    p.add_argument("--batch-size", type=int, default=4, help="the paper's batch size")
    p.add_argument("--min-frames", type=int, default=200)
    p.add_argument("--max-frames", type=int, default=1024)
    p.add_argument("--variant", choices=("cached", "streamed"), help=argparse.SUPPRESS)  # child process
    args = p.parse_args(argv)
    if args.variant:
        print(json.dumps(measure(args.variant, args.utts, args.batch_size, args.min_frames, args.max_frames)))
        return 0
    out = {}
    for variant in ("cached", "streamed"):
        proc = subprocess.run([sys.executable, __file__, "--variant", variant, "--utts", str(args.utts),
                               "--batch-size", str(args.batch_size), "--min-frames", str(args.min_frames),
                               "--max-frames", str(args.max_frames)],
                              check=True, capture_output=True, text=True)
        out[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    c, s = out["cached"], out["streamed"]
    print(f"alpha half: {args.utts} utterances of 3x[{args.min_frames},{args.max_frames}]x40, batch "
          f"{args.batch_size}: {c['steps']} alpha steps in the epoch, largest batch {c['largest_batch_mb']:.2f} MB")
    ratio = c["peak_growth_mb"] / max(s["peak_growth_mb"], 1e-3)
    print(f"peak RSS growth over the epoch: cached (itertools.cycle) {c['peak_growth_mb']:.1f} MB, "
          f"streamed {s['peak_growth_mb']:.1f} MB; cached/streamed x{ratio:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
