"""Benchmark: one DARTS search step on the KWS paper's supernet (batch 16, C=16, 6 cells, 1x101x40).

Prints, from one run on this machine:
  * time and peak memory of a first-order and a second-order search step (architect + weights),
  * the ratio of a search step to a training step of the derived network (same C, cells, batch),
  * the memory ratio of the partial-channel (PC-DARTS, K=4) mode against the full supernet,
  * achieved GFLOP/s of the search step (torch.utils.flop_counter) against a plain fp32 and bf16
    matmul on the same cores, and whether bf16 autocast speeds up the search step and the
    training step.
Each measurement runs in a fresh subprocess so that peak memory (ru_maxrss) is its own.

e.g.: python bench/search_step.py [--batch 16 --channels 16 --layers 6 --repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(kind: str, batch: int, C: int, layers: int, repeats: int, pc_k: int = 1, bf16: bool = False,
            unrolled: bool = False) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from nasr.models.darts_net import DartsNetwork
    from nasr.nas.architect import Architect
    from nasr.nas.search_model import SearchNetwork
    from nasr.nas.spaces import get_space

    torch.manual_seed(0)
    x = torch.randn(batch, 1, 101, 40)
    y = torch.randint(0, 12, (batch,))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else (lambda: torch.autocast("cpu", enabled=False))

    if kind == "search":
        model = SearchNetwork(1, 12, C, layers, get_space("nas1"), reduction="every_two", pc_k=pc_k, freq_dim=40)
        w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)

        def loss_fn(m, b):
            with ctx():
                return F.cross_entropy(m(b[0]).float(), b[1])

        arch = Architect(model, loss_fn, unrolled=unrolled)

        def step():
            arch.step((x, y), (x, y), 0.025, w_opt)
            loss = loss_fn(model, (x, y))
            w_opt.zero_grad(set_to_none=True)
            loss.backward()
            w_opt.step()
    else:
        genotype = SearchNetwork(1, 12, 4, 3, get_space("nas1")).genotype("nas1")
        model = DartsNetwork(genotype, 1, 12, C, layers, reduction="every_two")
        opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9)

        def step():
            with ctx():
                logits, _ = model(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    base = _rss_mb()
    step()  # warm-up: allocator and oneDNN primitive caches
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    peak = _rss_mb()
    with FlopCounterMode(display=False) as fc:
        step()
    return {"seconds": min(times), "peak_mb": peak, "step_mb": peak - base, "flops": fc.get_total_flops()}


def matmul_gflops(dtype_name: str, n: int = 2048, repeats: int = 5) -> float:
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def run_child(args: list) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(args)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        kw = json.loads(a.child)
        res = matmul_gflops(kw["dtype"]) if kw.get("matmul") else measure(**kw)
        print(json.dumps(res))
        return 0

    import torch

    common = dict(batch=a.batch, C=a.channels, layers=a.layers, repeats=a.repeats)
    print(f"KWS supernet: batch {a.batch}, C={a.channels}, {a.layers} cells, 1x101x40, "
          f"{torch.get_num_threads()} threads, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '')}")
    r = {
        "first": run_child(dict(kind="search", **common)),
        "second": run_child(dict(kind="search", unrolled=True, **common)),
        "pc4": run_child(dict(kind="search", pc_k=4, **common)),
        "first_bf16": run_child(dict(kind="search", bf16=True, **common)),
        "train": run_child(dict(kind="train", **common)),
        "train_bf16": run_child(dict(kind="train", bf16=True, **common)),
    }
    mm32 = run_child({"matmul": True, "dtype": "fp32"})
    mm16 = run_child({"matmul": True, "dtype": "bf16"})
    for name, m in r.items():
        print(f"{name:>11}: {m['seconds']:7.2f} s/step  peak RSS {m['peak_mb']:7.0f} MB "
              f"(+{m['step_mb']:.0f} MB in the step)  {m['flops'] / m['seconds'] / 1e9:6.2f} GFLOP/s")
    print(f"second/first-order step time: {r['second']['seconds'] / r['first']['seconds']:.2f}x")
    print(f"search step / training step of the derived network: {r['first']['seconds'] / r['train']['seconds']:.2f}x")
    print(f"partial channels K=4 / full supernet peak memory: {r['pc4']['peak_mb'] / r['first']['peak_mb']:.2f}x "
          f"(step memory {r['pc4']['step_mb'] / max(r['first']['step_mb'], 1e-9):.2f}x), "
          f"time {r['pc4']['seconds'] / r['first']['seconds']:.2f}x")
    gf = r["first"]["flops"] / r["first"]["seconds"] / 1e9
    print(f"matmul peak: fp32 {mm32:.1f} GFLOP/s, bf16 {mm16:.1f} GFLOP/s; search step achieves "
          f"{gf:.2f} GFLOP/s = {gf / mm32:.3f}x fp32 matmul")
    print(f"bf16 autocast speed-up: search step {r['first']['seconds'] / r['first_bf16']['seconds']:.2f}x, "
          f"training step {r['train']['seconds'] / r['train_bf16']['seconds']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
