"""Benchmark: FactorizedReduce's two sample grids taken by `_PhaseSubsample` (one backward writing
both gradients into one zero map) against autograd's slicing (each slice's backward fills its own
zero map; the two full-size gradients are added), forward + backward of the op's body, at the
sizes where the networks run it: the KWS supernet's preprocessing after a reduction cell
(16x64x101x40, 16x128x51x20), the demo network's (batch 64, 48 channels at 51x20) and a PC-DARTS
stride-2 skip_connect (16x4x101x40). Prints the median ms of each and their ratio, from one run.

e.g.: python bench/factorized_reduce.py [--threads 2 --repeats 20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from nasr.nas.ops import FactorizedReduce  # noqa: E402

SIZES = [(16, 64, 101, 40), (16, 128, 51, 20), (64, 48, 51, 20), (16, 4, 101, 40)]


def sliced_body(fr: FactorizedReduce, x: torch.Tensor) -> torch.Tensor:
    """The body with both grids sliced by autograd (the code path before)."""
    a = fr.conv_1(fr._subsample(x))
    b = fr.conv_2(fr._subsample(x[:, :, 1:, 1:]))
    b = F.pad(b, (0, a.shape[3] - b.shape[3], 0, a.shape[2] - b.shape[2]))
    return torch.cat([a, b.contiguous(memory_format=torch.channels_last)], dim=1)


def median_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {a.threads} threads; forward + backward of FactorizedReduce.body, "
          "channels-last, median ms")
    for n, c, h, w in SIZES:
        torch.manual_seed(0)
        fr = FactorizedReduce(c, max(2, c // 2)).to(memory_format=torch.channels_last)
        x = torch.randn(n, c, h, w).contiguous(memory_format=torch.channels_last).requires_grad_()

        def run(body):
            def step():
                y = body(x)
                y.backward(torch.ones_like(y))
            return step
        before = median_ms(run(lambda t: sliced_body(fr, t)), a.repeats)
        now = median_ms(run(fr.body), a.repeats)
        print(f"  {n}x{c}x{h}x{w}: sliced {before:7.2f} ms, _PhaseSubsample {now:7.2f} ms, {before / now:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
