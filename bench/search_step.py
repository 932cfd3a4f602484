"""Benchmark: the DARTS search step on the KWS paper's supernet (batch 16, C=16, 6 cells, 1x101x40)
and the training step of the networks a search derives, each against its peer in the same run.

Prints, from one run on this machine:
  * the first-order search step of the plain per-op supernet (``fused_edges=False``, the code path
    before issue 14) against the fused one (the default), and PC-DARTS K=4 (fused): seconds per
    step, the median of interleaved steps in one process (old, new, new_sep, ..., old, ...), wall
    and CPU time, and their ratios; the full supernet with its sep_convs' bodies recomputed in
    backward (new_sep: `recompute_sep_convs=True`, nasr.nas.sep_body); PC-DARTS K=4 as it runs by
    default (pc4: sep_convs' bodies recomputed), with all its ops' activations kept (pc4keep),
    the same with torch's own BatchNorm at its ops' 4 channels (pc4keep_nbn; the others use
    nasr.nas.batchnorm's row kernel where it applies), and with every edge recomputed in backward
    (pc4edges, `recompute_edges=True`); the fused step with torch's own dilated convs (new_nconv:
    no subsampled stride-2 convs, oneDNN's dilated depthwise backward; `DilatedConv2d.native`);
  * peak memory of each, one fresh process per variant: the peak of the tensors alive at once in
    the second step (`peak_tensor_mb`, the CPU counterpart of a GPU's max_memory_allocated), peak
    RSS, and the first step's own share of it (peak RSS minus the RSS before the first step: the
    model and the batch are built, torch is loaded);
  * the training step of the derived KWS network (same C, cells, batch) and of the CTC evaluation
    network (the aishell1 synth profile's size: C=8, 5 cells, stride-2 stem, batch 16, 3x400x40)
    under fp32 NCHW, fp32 channels-last, bf16 autocast (channels-last), the CTC network also with
    its dilated convs by torch as nn.Conv2d (fp32_cl_native_conv; `DilatedConv2d`),
    and with --compile torch.compile (inductor) of both; and the derived KWS network at the
    speech_commands synth profile's size (C=12, stride-2 stem, batch 64; the cell `make demo`'s
    search derived, `DEMO_GENOTYPE`) with BatchNorm by the row kernel and by torch
    (fp32_cl_native_bn), and with its dilated convs by torch (fp32_cl_native_conv): seconds per step (interleaved, median), achieved GFLOP/s
    (torch.utils.flop_counter) and its share of an fp32 and a bf16 2048x2048 matmul on the same
    threads in the same run.

e.g.: python bench/search_step.py [--threads 2 --repeats 3 --compile]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout

SEARCH_VARIANTS = {  # name: (fused_edges, pc_k, recompute_edges, recompute_sep_convs,
    #                             native BatchNorm, native dilated convs)
    "old": (False, 1, False, False, True, True),
    "new": (True, 1, False, False, False, False),      # the full supernet's default
    "new_sep": (True, 1, False, True, False, False),   # the same, sep_convs' bodies recomputed
    "new_nconv": (True, 1, False, False, False, True),  # the same with torch's own dilated convs
    "pc4": (True, 4, False, True, False, False),       # PC-DARTS K=4's default: sep_convs' bodies recomputed
    "pc4keep": (True, 4, False, False, False, False),  # PC-DARTS keeping all its ops' activations
    "pc4keep_nbn": (True, 4, False, False, True, False),  # the same with torch's BatchNorm at 4 channels
    "pc4edges": (True, 4, True, True, False, False),   # every edge's ops recomputed (recompute_edges)
}

# The cell `make demo`'s search derived on 2026-12-03 (19:03 run; README, speed section): its
# reduction cell has three stride-2 conv_5x5_dil2 edges.
DEMO_GENOTYPE = {
    "space": "nas1",
    "normal": [["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 2], ["sep_conv_5x5", 1],
               ["sep_conv_5x5", 2], ["conv_3x3_dil2", 3], ["avg_pool_3x3", 3], ["max_pool_3x3", 1]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["conv_5x5_dil2", 1], ["conv_5x5_dil2", 0], ["max_pool_3x3", 2], ["conv_5x5_dil2", 1],
               ["avg_pool_3x3", 3], ["sep_conv_3x3", 2], ["conv_5x5_dil2", 3], ["conv_5x5_dil2", 4]],
    "reduce_concat": [2, 3, 4, 5],
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _interleaved(steps: dict, repeats: int) -> dict:
    """Median wall and CPU seconds of each step function, run in turns after one warm-up each."""
    for fn in steps.values():
        fn()  # warm-up: allocator, oneDNN primitives
    wall = {k: [] for k in steps}
    cpu = {k: [] for k in steps}
    for _ in range(repeats):
        for name, fn in steps.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            print(f"    [{name}: {wall[name][-1]:.2f} s wall, {cpu[name][-1]:.2f} s CPU]", file=sys.stderr, flush=True)
    return {k: {"wall": statistics.median(wall[k]), "cpu": statistics.median(cpu[k]),
                "walls": wall[k]} for k in steps}


# ---------------------------------------------------------------------------------------------
# the search step

def search_step_fn(batch: int, C: int, layers: int, fused: bool, pc_k: int, recompute: bool,
                   recompute_sep: bool, native_bn: bool = False, native_conv: bool = False):
    import torch
    import torch.nn.functional as F

    from nasr.nas import batchnorm
    from nasr.nas.ops import DilatedConv2d
    from nasr.nas.search_model import SearchNetwork
    from nasr.nas.spaces import get_space

    torch.manual_seed(0)
    x = torch.randn(batch, 1, 101, 40)
    y = torch.randint(0, 12, (batch,))
    model = SearchNetwork(1, 12, C, layers, get_space("nas1"), reduction="every_two", pc_k=pc_k,
                          freq_dim=40, fused_edges=fused, recompute_edges=recompute,
                          recompute_sep_convs=recompute_sep)

    def loss_fn(m, b):
        return F.cross_entropy(m(b[0]), b[1])

    def setup():  # torch's BatchNorm and dilated convs everywhere, or nasr's where they apply
        batchnorm.native = native_bn
        DilatedConv2d.native = native_conv
    return first_order_step(model, loss_fn, (x, y), setup)


def first_order_step(model, loss_fn, batch, setup):
    """One first-order DARTS step on `batch` (alpha step, then weight step) after `setup()`, which
    sets the switches of the path being timed."""
    import torch

    from nasr.nas.architect import Architect

    w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    arch = Architect(model, loss_fn)

    def step():
        setup()
        arch.step(batch, batch, 0.025, w_opt)
        loss = loss_fn(model, batch)
        w_opt.zero_grad(set_to_none=True)
        loss.backward()
        w_opt.step()
    return step


def asr_search_times(repeats: int) -> dict:
    """P-DARTS's first stage on the revised space at the aishell1 synth profile's size (C=4, 3 cells,
    pc_k 2, stride-2 stem, CTC head, batch 16, 3x400x40, 400 units; first-order alpha step, then
    the weight step), with the dilated depthwise convs' backward by `depthwise_input_grad` (the
    default) and by oneDNN (`native_conv`: torch's own dilated convs), interleaved."""
    import torch
    import torch.nn.functional as F

    from nasr.nas.ops import DilatedConv2d
    from nasr.nas.search_model import SearchNetwork
    from nasr.nas.spaces import get_space

    torch.manual_seed(0)
    units = 400
    x = torch.randn(16, 3, 400, 40)
    targets = torch.randint(1, units, (16, 20))

    def loss_fn(m, b):
        lp = m(b[0]).float().log_softmax(-1).transpose(0, 1)  # (T', N, V)
        lens = torch.full((lp.size(1),), lp.size(0), dtype=torch.long)
        return F.ctc_loss(lp, b[1], lens, torch.full((lp.size(1),), 20, dtype=torch.long), zero_infinity=True)

    def make(native_conv: bool):
        torch.manual_seed(0)
        model = SearchNetwork(3, units, 4, 3, get_space("asr_revised"), reduction="thirds", pc_k=2,
                              stem_stride=2, head="ctc", freq_dim=40)

        def setup():
            DilatedConv2d.native = native_conv
        return first_order_step(model, loss_fn, (x, targets), setup)
    return _interleaved({"asr": make(False), "asr_native_conv": make(True)}, repeats)


def search_times(batch, C, layers, repeats) -> dict:
    steps = {name: search_step_fn(batch, C, layers, *spec) for name, spec in SEARCH_VARIANTS.items()}
    return _interleaved(steps, repeats)


def search_memory(batch, C, layers, variant) -> dict:
    step = search_step_fn(batch, C, layers, *SEARCH_VARIANTS[variant])
    base = _rss_mb()
    step()  # the first step's peak is the step's: the same activations as any later step
    peak = _rss_mb()
    return {"peak_mb": peak, "step_mb": peak - base, "tensor_mb": peak_tensor_mb(step)}


def peak_tensor_mb(fn) -> float:
    """Peak MB of the tensors alive at once while `fn()` runs (what torch.cuda.max_memory_allocated
    reports on a GPU): the profiler's record of every CPU allocation and free, summed in order.
    Peak RSS also counts the library code a step first touches and the allocator's free lists
    (~300 MB here, whatever the network)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak / 2**20


# ---------------------------------------------------------------------------------------------
# the training step of derived networks

def train_step_fns(net: str, settings, batch: int):
    import torch
    import torch.nn.functional as F

    from nasr.models.darts_net import DartsNetwork
    from nasr.nas.genotype import Genotype
    from nasr.nas.search_model import SearchNetwork
    from nasr.nas.spaces import get_space

    torch.manual_seed(0)
    if net in ("kws", "kws_synth"):  # the derived KWS network: same C, cells and batch as the
        # supernet; kws_synth: the demo's cell at the speech_commands synth profile's size (C=12,
        # stride-2 stem)
        genotype = SearchNetwork(1, 12, 4, 3, get_space("nas1")).genotype("nas1")
        if net == "kws_synth":
            genotype = Genotype.from_dict(DEMO_GENOTYPE, "bench DEMO_GENOTYPE")
        kw = dict(in_channels=1, num_classes=12, C=16, layers=6, reduction="every_two")
        if net == "kws_synth":
            kw.update(C=12, stem_stride=2)
        x = torch.randn(batch, 1, 101, 40)
        y = torch.randint(0, 12, (batch,))

        def loss_of(out):
            return F.cross_entropy(out.float(), y)
    else:  # the CTC evaluation network at the aishell1 synth profile's size
        genotype = SearchNetwork(3, 10, 4, 3, get_space("asr_revised"), reduction="thirds").genotype("asr_revised")
        units = 400
        kw = dict(in_channels=3, num_classes=units, C=8, layers=5, reduction="thirds", stem_stride=2,
                  head="ctc", freq_dim=40)
        x = torch.randn(batch, 3, 400, 40)  # 400 frames -> 100 output frames
        targets = torch.randint(1, units, (batch, 20))

        def loss_of(out):
            lp = out.float().transpose(0, 1)  # (T', N, V)
            lens = torch.full((out.size(0),), lp.size(0), dtype=torch.long)
            return F.ctc_loss(lp, targets, lens, torch.full((out.size(0),), 20, dtype=torch.long),
                              zero_infinity=True)

    from nasr.nas import batchnorm
    from nasr.nas.ops import DilatedConv2d

    base = DartsNetwork(genotype, **kw, channels_last=False)
    state = base.state_dict()
    fns = {}
    for name in settings:
        channels_last = name != "fp32_nchw"
        bf16 = "bf16" in name
        model = DartsNetwork(genotype, **kw, channels_last=channels_last)
        model.load_state_dict(state)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        run = torch.compile(model) if name.startswith("compile") else model
        xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x

        def step(run=run, opt=opt, xin=xin, bf16=bf16, native_conv=name.endswith("_native_conv"),
                 native_bn=name.endswith("_native_bn")):
            # The dilated depthwise convs' backward: oneDNN's own (before) or depthwise_input_grad;
            # BatchNorm: torch's own (before) or the row kernel where it applies (nasr.nas.batchnorm).
            DilatedConv2d.native = native_conv
            batchnorm.native = native_bn
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out, _ = run(xin)
            loss = loss_of(out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        fns[name] = step
    return fns


def train_bench(net: str, settings, batch: int, repeats: int) -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    fns = train_step_fns(net, settings, batch)
    compile_s = {}
    for name, fn in fns.items():  # the first call compiles (and warms up): timed apart
        t = time.perf_counter()
        fn()
        compile_s[name] = time.perf_counter() - t
    res = _interleaved(fns, repeats)
    eager = [n for n in fns if not n.startswith("compile")][0]
    # The network's FLOPs as its own convolutions' backward counts them: depthwise_input_grad
    # runs its dilated depthwise input gradients as convolutions over the zero-spread grid.
    counted = next((n for n in fns if n.endswith("_native_conv")), eager)
    with FlopCounterMode(display=False) as fc:
        fns[counted]()
    for name in res:
        res[name]["first_call_s"] = compile_s[name]
        res[name]["flops"] = fc.get_total_flops()
    return res


# ---------------------------------------------------------------------------------------------

def run_child(kw: dict, threads: int) -> dict:
    # The child's stderr (per-step progress) goes straight to ours.
    out = subprocess.run([sys.executable, __file__, "--threads", str(threads), "--child", json.dumps(kw)],
                         stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"child {kw} failed with exit status {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(kw: dict):
    what = kw.pop("what")
    if what == "search_times":
        return search_times(**kw)
    if what == "asr_search_times":
        return asr_search_times(**kw)
    if what == "search_memory":
        return search_memory(**kw)
    if what == "train":
        return train_bench(**kw)
    if what == "matmul":
        import torch
        from gpu import matmul_gflops  # bench/gpu.py, beside this script

        return {dt: matmul_gflops(torch.device("cpu"), dt, 2048) for dt in ("fp32", "bf16")}
    raise ValueError(what)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--repeats", type=int, default=3, help="interleaved steps per variant after one warm-up")
    p.add_argument("--threads", type=int, default=2, help="torch threads (the issue's figures: 2)")
    p.add_argument("--compile", action="store_true",
                   help="add torch.compile (inductor) settings to the training steps")
    p.add_argument("--skip-search", action="store_true", help="training steps only")
    p.add_argument("--skip-train", action="store_true", help="search steps only")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    if a.child:
        print(json.dumps(child(json.loads(a.child))))
        return 0

    load = os.getloadavg()
    print(f"torch {torch.__version__}, {a.threads} threads, {os.cpu_count()} CPUs, load average "
          f"{load[0]:.1f} at start")
    mm = run_child({"what": "matmul"}, a.threads)
    print(f"matmul 2048x2048: fp32 {mm['fp32']:.1f} GFLOP/s, bf16 {mm['bf16']:.1f} GFLOP/s")

    if not a.skip_search:
        common = dict(batch=a.batch, C=a.channels, layers=a.layers)
        print(f"\nKWS supernet, first-order search step (architect + weight step): batch {a.batch}, "
              f"C={a.channels}, {a.layers} cells, 1x101x40, nas1")
        t = run_child(dict(what="search_times", repeats=a.repeats, **common), a.threads)
        mem = {v: run_child(dict(what="search_memory", variant=v, **common), a.threads) for v in SEARCH_VARIANTS}
        for v in SEARCH_VARIANTS:
            print(f"  {v:>11}: {t[v]['wall']:7.2f} s/step wall ({', '.join(f'{w:.2f}' for w in t[v]['walls'])}), "
                  f"{t[v]['cpu']:7.2f} s CPU; peak tensors {mem[v]['tensor_mb']:6.0f} MB, "
                  f"peak RSS {mem[v]['peak_mb']:6.0f} MB, step {mem[v]['step_mb']:6.0f} MB")

        def mem_ratios(v, ref):
            return (f"peak tensors {mem[v]['tensor_mb'] / mem[ref]['tensor_mb']:.2f}x, "
                    f"peak RSS {mem[v]['peak_mb'] / mem[ref]['peak_mb']:.2f}x, "
                    f"step RSS {mem[v]['step_mb'] / mem[ref]['step_mb']:.2f}x")
        print(f"  fused / plain supernet step: wall {t['new']['wall'] / t['old']['wall']:.2f}x "
              f"(speed-up {t['old']['wall'] / t['new']['wall']:.2f}x), CPU {t['new']['cpu'] / t['old']['cpu']:.2f}x; "
              f"{mem_ratios('new', 'old')}")
        print(f"  full supernet, sep_convs' bodies recomputed / kept: wall {t['new_sep']['wall'] / t['new']['wall']:.2f}x; "
              f"{mem_ratios('new_sep', 'new')}")
        print(f"  PC-DARTS K=4 (activations kept), BatchNorm at 4 channels by the row kernel / by torch: "
              f"wall {t['pc4keep']['wall'] / t['pc4keep_nbn']['wall']:.2f}x")
        for v, what in (("pc4", "PC-DARTS K=4 (default: sep_convs' bodies recomputed)"),
                        ("pc4keep", "PC-DARTS K=4, activations kept"),
                        ("pc4edges", "PC-DARTS K=4, edges recomputed")):
            print(f"  {what} / full supernet (default): time wall {t[v]['wall'] / t['new']['wall']:.2f}x, "
                  f"CPU {t[v]['cpu'] / t['new']['cpu']:.2f}x (limit 0.5x); {mem_ratios(v, 'new')} (limit 0.25x)")
        print(f"  PC-DARTS K=4 (default) / full supernet with sep_convs' bodies recomputed too: time wall "
              f"{t['pc4']['wall'] / t['new_sep']['wall']:.2f}x; {mem_ratios('pc4', 'new_sep')}")

        r = run_child(dict(what="asr_search_times", repeats=a.repeats), a.threads)
        print("\nP-DARTS ASR search step, stage 1 (asr_revised, C=4, 3 cells, pc_k 2, stride-2 stem, CTC, "
              "batch 16, 3x400x40): dilated depthwise input gradients")
        for v, what in (("asr", "by DilatedConv2d"), ("asr_native_conv", "by nn.Conv2d (before)")):
            print(f"  {what:>24}: {r[v]['wall']:6.2f} s/step wall, {r[v]['cpu']:6.2f} s CPU")
        print(f"  speed-up {r['asr_native_conv']['wall'] / r['asr']['wall']:.2f}x")

    settings = ["fp32_nchw", "fp32_cl", "bf16_cl"] + (["compile_fp32_cl", "compile_bf16_cl"] if a.compile else [])
    train_nets = () if a.skip_train else (
        ("kws", a.batch, f"derived KWS network (nas1 genotype, C=16, 6 cells, batch {a.batch}, 1x101x40)"),
        ("kws_synth", 64, "derived KWS network at the speech_commands synth profile (nas1 "
                          "genotype, C=12, 6 cells, stride-2 stem, batch 64, 1x101x40)"),
        ("ctc", 16, "CTC evaluation network (asr_revised genotype, C=8, 5 cells, stride-2 stem, "
                    "batch 16, 3x400x40, 400 units)"))
    for net, batch, desc in train_nets:
        # nas1 has no dilated depthwise convs; the CTC network's dil_sep_convs are timed both ways.
        net_settings = settings + (["fp32_cl_native_conv"] if net == "ctc" else [])
        if net == "kws_synth":  # 12 channels: BatchNorm by the row kernel and by torch
            net_settings = ["fp32_cl", "fp32_cl_native_bn", "fp32_cl_native_conv"]
        r = run_child(dict(what="train", net=net, settings=net_settings, batch=batch, repeats=max(a.repeats, 5)), a.threads)
        first = net_settings[0]
        print(f"\ntraining step, {desc}: {r[first]['flops'] / 1e9:.1f} GFLOP per step")
        print(f"  {'setting':>17} {'s/step':>8} {'GFLOP/s':>8} {'/fp32 mm':>9} {'/bf16 mm':>9} {'vs ' + first:>17} {'first call s':>12}")
        ref = r[first]["wall"]
        for s in net_settings:
            m = r[s]
            gf = m["flops"] / m["wall"] / 1e9
            print(f"  {s:>17} {m['wall']:8.3f} {gf:8.1f} {gf / mm['fp32']:9.3f} {gf / mm['bf16']:9.3f} "
                  f"{ref / m['wall']:16.2f}x {m['first_call_s']:12.1f}")
    load = os.getloadavg()
    print(f"\nload average {load[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
