"""Benchmark: would batching the dense dilated convs of the supernet edges that read one cell state
pay? (issue 14's "fused or batched candidate ops" lever, measured before building it)

Every state of a DARTS cell feeds up to 4 edges, and each edge of the KWS space nas1 runs
`conv_3x3_dil2` and `conv_5x5_dil2` on the same ReLU of that state. Batched, the 4 edges' convs of
one kernel size would be one conv with 4x the output channels. This times forward + backward
(input and weight gradients) of 4 separate C->C convs against one C->4C conv at the KWS supernet's
sizes (batch 16, C=16 at 101x40 and its reductions), channels-last, and prints the ratio.

e.g.: python bench/edge_batching.py [--threads 2 --repeats 8]
"""
from __future__ import annotations

import argparse
import sys
import time


def fwd_bwd_ms(fn, x, weights, repeats: int) -> float:
    import torch

    def once():
        outs = fn(x, weights)
        outs = outs if isinstance(outs, list) else [outs]
        torch.autograd.grad(outs, [x] + weights, [torch.ones_like(o) for o in outs])

    for _ in range(2):  # warm-up: oneDNN primitives, allocator
        once()
    t = time.perf_counter()
    for _ in range(repeats):
        once()
    return (time.perf_counter() - t) / repeats * 1000


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--edges", type=int, default=4, help="edges reading one state")
    a = p.parse_args(argv)
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cl = torch.channels_last
    print(f"{a.threads} threads; forward + backward ms, dilation 2, channels-last")
    for N, C, H, W in ((16, 16, 101, 40), (16, 32, 51, 20), (16, 64, 26, 10)):
        x = torch.randn(N, C, H, W).contiguous(memory_format=cl).requires_grad_()
        for k in (5, 3):
            pad = k - 1
            separate = [torch.randn(C, C, k, k).contiguous(memory_format=cl).requires_grad_()
                        for _ in range(a.edges)]
            batched = [torch.randn(a.edges * C, C, k, k).contiguous(memory_format=cl).requires_grad_()]
            t_sep = fwd_bwd_ms(lambda x, ws: [F.conv2d(x, w, None, 1, pad, 2) for w in ws], x, separate, a.repeats)
            t_bat = fwd_bwd_ms(lambda x, ws: F.conv2d(x, ws[0], None, 1, pad, 2), x, batched, a.repeats)
            print(f"  {N}x{C}x{H}x{W} {k}x{k}: {a.edges} convs {t_sep:6.1f} ms, one {a.edges * C}-channel "
                  f"conv {t_bat:6.1f} ms: batched {t_sep / t_bat:.2f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
