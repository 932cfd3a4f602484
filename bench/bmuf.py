"""BMUF vs DDP vs one worker on CPU (gloo): throughput and the loss after an equal number of samples.

Usage:
  python bench/bmuf.py [--samples 16384] [--batch 32] [--block-size 8] [--threads 1]

e.g.:
  python bench/bmuf.py --samples 8192

A small conv model (two 3x3 conv + BN layers, global pooling, linear) learns a synthetic 10-class
task: 40x40 "spectrograms" made of a class template plus noise, drawn deterministically per
(worker, step). Every run sees `--samples` training samples in all:
  single  one process, --threads threads, samples/batch steps;
  bmuf    2 processes (gloo), --threads each, samples/(2*batch) steps each, a block sync every
          --block-size steps (block momentum 1 - 1/2, Nesterov, block lr 1);
  ddp     2 processes (gloo), gradients all-reduced every step, samples/(2*batch) steps each.
Same local optimizer everywhere (SGD, lr 0.05, momentum 0.9). Prints samples/s (time of the training
loop only, slowest worker, after a 3-step warm-up), the CPU time per sample (all workers together:
what distribution costs, less sensitive to other jobs than samples/s), the loss on a held-out set of 1024 samples (the
BMUF global model), and the ratios: throughput of 2 workers against 1, loss against single.
On a 2-core machine expect at most ~2x, less when other jobs share the cores.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

NUM_CLASSES = 10
SIDE = 40
WARMUP_STEPS = 3


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, NUM_CLASSES))


def templates() -> torch.Tensor:
    g = torch.Generator().manual_seed(1234)
    return torch.randn(NUM_CLASSES, 1, SIDE, SIDE, generator=g)


def make_batch(tmpl, seed: int, batch: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=g)
    x = tmpl[y] + 1.5 * torch.randn(batch, 1, SIDE, SIDE, generator=g)
    return x, y


@torch.no_grad()
def heldout_loss(model, tmpl) -> float:
    model.eval()
    x, y = make_batch(tmpl, seed=10 ** 9, batch=1024)
    loss = F.cross_entropy(model(x), y).item()
    model.train()
    return loss


def train(mode: str, rank: int, world: int, steps: int, batch: int, block_size: int, threads: int):
    torch.set_num_threads(threads)
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    net, stepper = model, opt
    if mode == "bmuf":
        from nasr.train.bmuf import BMUF
        stepper = BMUF(model, opt, block_size)
    elif mode == "ddp":
        net = torch.nn.parallel.DistributedDataParallel(model)
    tmpl = templates()
    losses = []
    t0 = None
    for step in range(steps):
        if step == WARMUP_STEPS:
            if world > 1:
                torch.distributed.barrier()
            t0 = time.perf_counter()
            c0 = time.process_time()
        x, y = make_batch(tmpl, seed=rank * 1_000_003 + step, batch=batch)
        loss = F.cross_entropy(net(x), y)
        stepper.zero_grad()
        loss.backward()
        stepper.step()
        losses.append(loss.item())
    if mode == "bmuf":
        stepper.sync()
    if world > 1:
        torch.distributed.barrier()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    if mode == "bmuf":
        with stepper.global_params_in_model():
            final = heldout_loss(model, tmpl)
    else:
        final = heldout_loss(model, tmpl)
    tail = losses[-max(1, len(losses) // 10):]
    return {"elapsed": elapsed, "cpu": cpu, "timed_samples": (steps - WARMUP_STEPS) * batch, "heldout": final,
            "train_tail": sum(tail) / len(tail)}


def _worker(rank, world, port, mode, steps, batch, block_size, threads, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    from nasr.train.distributed import cleanup, init_distributed
    init_distributed(mode, device="cpu", timeout_s=300)
    res = train(mode, rank, world, steps, batch, block_size, threads)
    torch.save(res, Path(out) / f"{mode}{rank}.pt")
    cleanup()


def run_distributed(mode, steps, batch, block_size, threads):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as out:
        procs = [ctx.Process(target=_worker, args=(r, 2, port, mode, steps, batch, block_size, threads, out))
                 for r in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        if any(p.exitcode != 0 for p in procs):
            raise SystemExit(f"bench/bmuf.py: a {mode} worker failed (exit codes {[p.exitcode for p in procs]})")
        res = [torch.load(Path(out) / f"{mode}{r}.pt") for r in range(2)]
    return {"elapsed": max(r["elapsed"] for r in res), "cpu": sum(r["cpu"] for r in res),
            "timed_samples": sum(r["timed_samples"] for r in res),
            "heldout": res[0]["heldout"], "train_tail": sum(r["train_tail"] for r in res) / 2}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=16384, help="training samples per run, all workers together")
    p.add_argument("--batch", type=int, default=32, help="batch per worker and step")
    p.add_argument("--block-size", type=int, default=8, help="BMUF local steps per block")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    steps2 = args.samples // (2 * args.batch)
    if steps2 <= WARMUP_STEPS + args.block_size:
        raise SystemExit(f"--samples {args.samples} is too few for 2 workers of batch {args.batch} "
                         f"(fix: at least {2 * args.batch * (WARMUP_STEPS + args.block_size + 1)})")
    load_before = os.getloadavg()[0]
    results = {}
    results["single"] = train("single", 0, 1, 2 * steps2, args.batch, args.block_size, args.threads)
    results["bmuf"] = run_distributed("bmuf", steps2, args.batch, args.block_size, args.threads)
    results["ddp"] = run_distributed("ddp", steps2, args.batch, args.block_size, args.threads)

    print(f"{2 * steps2 * args.batch} samples, batch {args.batch}/worker, {args.threads} thread(s)/worker, "
          f"BMUF block {args.block_size}, {os.cpu_count()} CPU cores, "
          f"1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after (other jobs skew samples/s)")
    print(f"{'run':<8} {'samples/s':>10} {'CPU ms/sample':>14} {'heldout loss':>13} {'train loss (last 10%)':>22}")
    for name, r in results.items():
        print(f"{name:<8} {r['timed_samples'] / r['elapsed']:>10.1f} {1000 * r['cpu'] / r['timed_samples']:>14.3f} "
              f"{r['heldout']:>13.4f} {r['train_tail']:>22.4f}")
    single_tp = results["single"]["timed_samples"] / results["single"]["elapsed"]
    for name in ("bmuf", "ddp"):
        r = results[name]
        print(f"{name}: throughput 2 workers / 1 = {r['timed_samples'] / r['elapsed'] / single_tp:.2f}x; "
              f"held-out loss / single = {r['heldout'] / results['single']['heldout']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
