"""Benchmark: how torch's OpenMP threads wait between parallel regions, on idle and on shared cores.

libgomp (the OpenMP of torch's CPU wheels) lets a thread that finished its share of an op spin for
GOMP_SPINCOUNT iterations before it sleeps (OMP_WAIT_POLICY=PASSIVE: no spinning at all). The
DARTS networks run thousands of small ops a step, so the setting matters. For each setting (a
fresh process each: libgomp reads the environment once), this times
  * the first-order search step of the speech_commands synth profile's supernet (C=8, 3 cells,
    pc_k 2, stride-2 stem, batch 16; alpha step, then weight step), and
  * the training step of the derived KWS network at that profile's size (bench/search_step.py's
    `DEMO_GENOTYPE`, C=12, 6 cells, stride-2 stem, batch 64),
median of a few steps after a warm-up, first with the cores idle, then with `--busy` processes
spinning on the cores (another job on the machine), and prints each against path.sh's setting.

e.g.: python bench/omp_wait.py [--threads 2 --busy 2 --steps 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout

# name: environment of the child (every other OpenMP variable removed). path.sh sets "spin30k".
SETTINGS = {
    "spin30k": {"GOMP_SPINCOUNT": "30000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "default": {},  # libgomp's own: 300000 spins
}
REFERENCE = "spin30k"


def child(what: str, steps: int) -> list:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    sys.path.insert(0, str(ROOT / "bench"))
    from search_step import DEMO_GENOTYPE, first_order_step

    if what == "search":
        from nasr.nas.search_model import SearchNetwork
        from nasr.nas.spaces import get_space

        x, y = torch.randn(16, 1, 101, 40), torch.randint(0, 12, (16,))
        model = SearchNetwork(1, 12, 8, 3, get_space("nas1"), reduction="every_two", pc_k=2,
                              stem_stride=2, freq_dim=40)

        def loss_fn(m, b):
            return F.cross_entropy(m(b[0]), b[1])

        step = first_order_step(model, loss_fn, (x, y), lambda: None)
    else:
        from nasr.models.darts_net import DartsNetwork
        from nasr.nas.genotype import Genotype

        model = DartsNetwork(Genotype.from_dict(DEMO_GENOTYPE), 1, 12, C=12, layers=6,
                             reduction="every_two", stem_stride=2)
        x = torch.randn(64, 1, 101, 40).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 12, (64,))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

        def step():
            out, _ = model(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    step()  # warm-up
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times


def run_child(what: str, setting: str, threads: int, steps: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_WAIT", "GOMP_SPIN"))}
    env.update(SETTINGS[setting], OMP_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, __file__, "--child", what, "--steps", str(steps)],
                         env=env, capture_output=True, text=True, check=True)
    return statistics.median(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--busy", type=int, default=2, help="spinning processes for the shared-cores rows")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.steps)))
        return 0
    print(f"{a.threads} torch threads, {os.cpu_count()} CPUs; seconds per step (median of {a.steps})")
    for busy in (0, a.busy):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            for what in ("search", "train"):
                t = {s: run_child(what, s, a.threads, a.steps) for s in SETTINGS}
                row = ", ".join(f"{s} {t[s]:.3f} s ({t[s] / t[REFERENCE]:.2f}x of {REFERENCE})" for s in SETTINGS)
                print(f"  {what:>6}, {busy} busy processes: {row}")
        finally:
            for sp in spinners:
                sp.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
