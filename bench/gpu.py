"""Benchmark: the GPU path, every step kind with AMP on and off and torch.compile on and off.

Step kinds (the papers' sizes on CUDA; `--tiny`, implied by `--device cpu`, shrinks them so the
whole run takes well under a minute on 2 cores):

  kws_search_1st   DARTS KWS search step, first order (alpha step + weight step), nas1, 6 cells, C=16,
                   batch 16, 1x101x40 MFCC (darts-kws-speech-commands)
  kws_search_2nd   the same, second order (unrolled)
  kws_search_pc4   the same, first order, partial channels K=4 (PC-DARTS mode)
  kws_train        training step of a network derived from the nas1 space (6 cells, C=16, batch 16)
  pdarts_search    P-DARTS ASR search step (alpha + weight step) at each stage (5 cells x 8 ops,
                   11 x 5, 17 x 3; the heaviest ops survive), asr_revised,
                   C=16, batch 4, 3x452x40 fbank (AISHELL-1's mean
                   utterance, 4.5 s); the weight-only step of the warm-up epochs is timed too
  ctc_train        CTC training step of ASRNET-B's small evaluation network (17 cells, C=24, batch 4,
                   1434 units) (pdarts-asr-transfer, section 4.4)

The eager cases run one after another in one process (each one's peak memory is taken over its own
timed steps). The compiled cases compile side by side, one process each, in waves that fit the
device's memory at their eager peaks, then time their steps one process at a time; a wave not
compiled within `--compile-timeout`, and any case past `--budget`, is reported, not waited for. AMP is what
nasr.utils.device.plan_device picks for the device (`amp: auto`): bf16 where the card has it, else
fp16 with a GradScaler; on CPU, bf16. The alpha step autocasts only in bf16
(nasr.nas.architect.alpha_step_amp). Printed: step time (median of `--repeats` after warm-up),
peak memory (torch.cuda.max_memory_allocated on CUDA, peak RSS on CPU), the ratio of each variant's
step time and memory to the plain fp32 eager step of the same kind measured in this run, and on
CUDA the papers' search costs projected from the fastest variant:

  KWS search: 50 epochs of 65,000 x 40% / 16 = 1,625 steps (Speech Commands v1, 40% weight half,
    batch 16), against the paper's 0.58 (NAS1) and 0.29 (NAS2) GPU-days;
  P-DARTS: per stage 6 weight-only + 9 alpha+weight epochs of 120,098 x 3 (2-fold speed
    perturbation) / 2 / 4 = 45,037 steps, 3 seeds x 2 spaces, against 89 h on 8 Tesla P40 (712
    GPU-hours). Our own figures assume one GPU and no data wait.

e.g.: python bench/gpu.py --device cuda          # at most --budget (290 s) on one GPU
      python bench/gpu.py --device cpu           # tiny sizes, the test (tests/bench/test_gpu_bench.py)
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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

KINDS = ("kws_search_1st", "kws_search_2nd", "kws_search_pc4", "kws_train", "pdarts_search", "ctc_train")
VARIANTS = (("fp32", False), ("amp", False), ("fp32", True), ("amp", True))

# The papers' sizes, and the tiny ones for CPU.
PAPER = {"kws": dict(batch=16, C=16, layers=6, frames=101, bins=40, steps=4),
         "pdarts": dict(batch=4, C=16, frames=452, bins=40, units=1434, steps=4,
                        stages=((5, 8), (11, 5), (17, 3))),
         "ctc": dict(batch=4, C=24, layers=17, frames=452, bins=40, units=1434)}
TINY = {"kws": dict(batch=2, C=4, layers=3, frames=32, bins=16, steps=2),
        "pdarts": dict(batch=2, C=4, frames=32, bins=16, units=20, steps=2, stages=((3, 8), (3, 5), (3, 3))),
        "ctc": dict(batch=2, C=4, layers=3, frames=32, bins=16, units=20)}

# Search-cost projection (see the docstring).
KWS_STEPS_PER_EPOCH = 65000 * 40 // 100 // 16
KWS_EPOCHS = 50
KWS_PAPER_GPU_DAYS = {"NAS1": 0.58, "NAS2": 0.29}
PDARTS_STEPS_PER_EPOCH = 120098 * 3 // 2 // 4
PDARTS_WARMUP, PDARTS_SEARCH_EPOCHS = 6, 9
PDARTS_RUNS = 6  # 3 seeds x 2 spaces
PDARTS_PAPER_GPU_HOURS = 89 * 8


def _kws_batch(torch, s, device):
    x = torch.randn(s["batch"], 1, s["frames"], s["bins"], device=device)
    y = torch.randint(0, 12, (s["batch"],), device=device)
    return x, y


def _asr_batch(torch, s, device):
    from nasr.data.asr_dataset import AsrBatch

    n, t = s["batch"], s["frames"]
    x = torch.randn(n, 3, t, s["bins"], device=device)
    x_lens = torch.full((n,), t, dtype=torch.long, device=device)
    tlen = max(2, t // 16)
    targets = torch.randint(1, s["units"], (n * tlen,), device=device)
    target_lens = torch.full((n,), tlen, dtype=torch.long, device=device)
    return AsrBatch(x, x_lens, targets, target_lens)


def build_case(kind: str, sizes: dict, device, plan, compile_: bool, stage: int = 0, backend: str = "inductor",
               mode: str = "default"):
    """(step, extra_step or None): closures running one step of `kind`."""
    import torch
    import torch.nn.functional as F

    import nasr.nas.asr_head  # noqa: F401
    from nasr.models.darts_net import DartsNetwork
    from nasr.nas.architect import Architect, alpha_step_amp
    from nasr.nas.search_model import SearchNetwork
    from nasr.nas.spaces import get_space
    from nasr.train.ctc import batch_ctc_loss
    from nasr.train.loop import autocast_context
    from nasr.utils.device import backward_step

    amp, scaler = plan.amp_dtype, plan.make_scaler()
    arch_amp = alpha_step_amp(amp)
    maybe_compile = ((lambda m: torch.compile(m, backend=backend, mode=None if mode == "default" else mode))
                     if compile_ else (lambda m: m))

    if kind.startswith("kws_search"):
        s = sizes["kws"]
        model = SearchNetwork(1, 12, s["C"], s["layers"], get_space("nas1"), reduction="every_two",
                              steps=s["steps"], multiplier=s["steps"], pc_k=4 if kind.endswith("pc4") else 1,
                              freq_dim=s["bins"]).to(device)
        fwd = maybe_compile(model)
        batch = _kws_batch(torch, s, device)

        def loss_fn(m, b, a=None):
            with autocast_context(device, a):
                out = (fwd if m is model else m)(b[0])
            return F.cross_entropy(out.float(), b[1])

        w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        arch = Architect(model, lambda m, b: loss_fn(m, b, arch_amp), unrolled=kind.endswith("2nd"))

        def step():
            arch.step(batch, batch, 0.025, w_opt)
            w_opt.zero_grad(set_to_none=True)
            backward_step(loss_fn(model, batch, amp), w_opt, scaler, model.weight_parameters(), 5.0)
        return step, None

    if kind == "kws_train":
        s = sizes["kws"]
        genotype = SearchNetwork(1, 12, 4, 3, get_space("nas1")).genotype("nas1")
        model = DartsNetwork(genotype, 1, 12, s["C"], s["layers"], reduction="every_two").to(device)
        fwd = maybe_compile(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9)
        x, y = _kws_batch(torch, s, device)

        def step():
            with autocast_context(device, amp):
                logits, _ = fwd(x)
            opt.zero_grad(set_to_none=True)
            backward_step(F.cross_entropy(logits.float(), y), opt, scaler, model.parameters(), 5.0)
        return step, None

    if kind == "pdarts_search":
        s = sizes["pdarts"]
        layers, n_ops = s["stages"][stage]
        space = get_space("asr_revised")
        # The stage's surviving ops: the n heaviest of the space on every edge (its last n: the
        # convolutions), so the projection errs high; 2 + 3 + ... edges per cell (14 for 4 steps).
        ops = {cell: [space[-n_ops:]] * sum(2 + i for i in range(s["steps"])) for cell in ("normal", "reduce")}
        model = SearchNetwork(3, s["units"], s["C"], layers, ops, reduction="thirds", head="ctc",
                              steps=s["steps"], multiplier=s["steps"],
                              freq_dim=s["bins"], op_dropout={"dil_sep_conv_3x3": 0.1, "avg_pool_3x3": 0.1},
                              channels_last=True).to(device)
        fwd = maybe_compile(model)
        batch = _asr_batch(torch, s, device)

        def loss_fn(m, b, a=None):
            return batch_ctc_loss(fwd if m is model else m, b, a)

        w_opt = torch.optim.SGD(model.weight_parameters(), lr=0.01, momentum=0.9, weight_decay=3e-4)
        arch = Architect(model, lambda m, b: loss_fn(m, b, arch_amp), lr=6e-4)

        def weight_step():
            w_opt.zero_grad(set_to_none=True)
            backward_step(loss_fn(model, batch, amp), w_opt, scaler, model.weight_parameters(), 5.0)

        def step():
            arch.step(batch, batch, 0.01, w_opt)
            weight_step()
        return step, weight_step

    if kind == "ctc_train":
        from nasr.models.registry import build_model
        from nasr.nas.genotype import Genotype

        s = sizes["ctc"]
        # ASRNET-B's cells are not in our copy of the paper: every edge a 3x3 separable conv (the
        # space's most common op in its Figure 2 description) stands in, at the paper's L and C.
        genotype = Genotype(space="asr_revised", normal=[["sep_conv_3x3", i % 2] for i in range(8)],
                            normal_concat=[2, 3, 4, 5], reduce=[["sep_conv_3x3", i % 2] for i in range(8)],
                            reduce_concat=[2, 3, 4, 5])
        model = build_model(dict(name="darts_net", genotype=genotype, in_channels=3, num_classes=s["units"],
                                 freq_dim=s["bins"], head="ctc", C=s["C"], layers=s["layers"],
                                 reduction="thirds")).to(device)
        fwd = maybe_compile(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=3e-4)
        batch = _asr_batch(torch, s, device)

        def step():
            opt.zero_grad(set_to_none=True)
            backward_step(batch_ctc_loss(fwd, batch, amp), opt, scaler, model.parameters(), 5.0)
        return step, None
    raise ValueError(f"unknown kind {kind}")


def _peak_mb(torch, device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    try:  # VmHWM, reset by _reset_peak (Linux); else the process's lifetime peak
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak(torch, device) -> None:
    """Peak memory from here on: several cases share one process, so each one's peak is taken over
    its own timed steps (on CPU, writing 5 to clear_refs resets VmHWM to the current RSS)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def measure(kind: str, device_name: str, tiny: bool, amp: bool, compile_: bool, repeats: int,
            stage: int = 0, threads: int = 0, backend: str = "inductor", mode: str = "default",
            before_timing=None) -> dict:
    """One (kind, amp, compile) case: step seconds, peak memory over the timed steps, warm-up seconds.
    `before_timing` runs between the warm-up (the compile) and the timed steps."""
    import torch

    from nasr.utils.device import plan_device

    torch.manual_seed(0)
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    plan = plan_device(device, "auto" if amp else "off", bf16=amp)
    plan.apply()
    sizes = TINY if tiny else PAPER
    step, extra = build_case(kind, sizes, device, plan, compile_, stage, backend, mode)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(fn):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t

    warm = sum(timed(step) for _ in range(1 if tiny else 2))  # compile, allocator, cuDNN autotuning
    if extra is not None:
        warm += timed(extra)
    if before_timing is not None:
        before_timing()
    _reset_peak(torch, device)
    times = [timed(step) for _ in range(repeats)]
    out = {"seconds": statistics.median(times), "warmup_s": warm, "amp": plan.amp_name}
    if extra is not None:
        out["weight_step_s"] = statistics.median([timed(extra) for _ in range(repeats)])
    out["peak_mb"] = _peak_mb(torch, device)
    if not compile_:  # the step's matmul and conv FLOPs (the compiled step does the same arithmetic)
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as fc:
            step()
        out["flops"] = fc.get_total_flops()
    return out


def matmul_gflops(device, dtype_name: str, n: int, repeats: int = 5) -> float:
    """The device's matmul rate in `dtype_name` (the ceiling the steps' GFLOP/s are read against)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def _child(spec: dict) -> None:
    """A child process: measures spec["cases"] in order, printing one JSON line per case. With
    spec["wait"], it prints {"ready": true} after the warm-up (the compile) and times only once the
    parent writes a line to its stdin: compiles run side by side, timed steps one process at a time."""
    import gc

    def emit(obj):
        print(json.dumps(obj), flush=True)

    def wait_for_turn():
        emit({"ready": True})
        if not sys.stdin.readline():
            raise SystemExit(0)  # the parent is gone

    for args in spec["cases"]:
        try:
            emit(measure(**args, before_timing=wait_for_turn if spec.get("wait") else None))
        except Exception as e:  # noqa: BLE001 (reported in the table)
            emit({"error": f"failed: {type(e).__name__}: {str(e)[:150]}"})
        gc.collect()
        if args["device_name"].startswith("cuda"):
            import torch
            torch.cuda.empty_cache()


class _Child:
    """A `--child` process and the JSON lines it prints, read by a thread (so every wait has a deadline)."""

    def __init__(self, spec: dict, env: dict):
        import queue
        import threading

        cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.lines, self.stderr_tail = queue.Queue(), []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:  # the child's results; anything else a library printed is skipped
                got = json.loads(line) if line.startswith("{") else None
            except json.JSONDecodeError:
                got = None
            if isinstance(got, dict):
                self.lines.put(got)
        self.lines.put(None)  # exited

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr_tail = (self.stderr_tail + [line.rstrip()])[-20:]

    def next(self, deadline: float):
        """The next JSON object; None when the child exited; "timeout" past `deadline`."""
        import queue

        try:
            return self.lines.get(timeout=max(0.0, deadline - time.time()))
        except queue.Empty:
            return "timeout"

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def died(self) -> str:
        self.proc.wait()
        last = next((ln for ln in reversed(self.stderr_tail) if ln.strip()), "?")
        return f"failed: exit {self.proc.returncode}: {last[:150]}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _child_env(compile_threads: int = 0) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if compile_threads:
        env["TORCHINDUCTOR_COMPILE_THREADS"] = str(compile_threads)
    return env


def run_in_sequence(cases: list, deadline: float, report) -> None:
    """The eager cases, one after another in one process (a new one only after a crash)."""
    todo = list(cases)
    while todo:
        child = _Child({"cases": [args for _, args in todo]}, _child_env())
        while todo:
            got = child.next(deadline)
            if got == "timeout":
                child.kill()
                for key, _ in todo:
                    report(key, {"error": "not measured: the run's time budget was spent"})
                return
            key, _ = todo.pop(0)
            if got is None:  # crashed on this case; the rest in a fresh process
                report(key, {"error": child.died()})
                break
            report(key, got)
        child.kill()


def run_side_by_side(waves: list, compile_timeout: float, deadline: float, report, timing_s: dict) -> None:
    """The compiled cases, wave by wave: the processes of a wave compile at once (the compile is CPU
    work), then each times its steps alone on the device while the others wait. A wave stops
    compiling in time to leave `timing_s[key]` seconds per case for the timed steps."""
    cpus = os.cpu_count() or 1
    for wave in waves:
        if time.time() >= deadline:
            for key, _ in wave:
                report(key, {"error": "not measured: the run's time budget was spent"})
            continue
        # Two compile workers per process on the CPUs' share (a process spends part of its compile
        # in single-threaded tracing, so the CPUs are oversubscribed by at most 2x).
        env = _child_env(compile_threads=max(1, 2 * cpus // len(wave)))
        children = [(key, _Child({"cases": [args], "wait": True}, env)) for key, args in wave]
        wave_start = time.time()
        compile_deadline = min(wave_start + compile_timeout, deadline - sum(timing_s[key] for key, _ in wave))
        ready = []
        for key, child in children:
            got = child.next(compile_deadline)
            if got == "timeout":
                report(key, {"error": f"not measured: not compiled within {max(0.0, compile_deadline - wave_start):.0f} s "
                                      f"({len(wave)} compiling at once on {cpus} CPUs)"})
                child.kill()
            elif got is None:
                report(key, {"error": child.died()})
            elif "error" in got:
                report(key, got)
                child.kill()
            else:
                ready.append((key, child))
        for key, child in ready:
            child.go()
            got = child.next(deadline)
            report(key, {"error": "not measured: the run's time budget was spent"} if got == "timeout"
                     else {"error": child.died()} if got is None else got)
            child.kill()


def fmt_ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def project(results: dict, device_desc: str) -> list:
    """The papers' search costs from this run's step times (the fastest measured variant)."""
    def best(kind, key="seconds"):
        vals = [(r[key], v) for (k, v), r in results.items() if k == kind and r and key in r]
        return min(vals) if vals else (None, None)

    lines = [f"Projected search costs on {device_desc} (one GPU, no data wait, fastest variant per step):"]
    for kind, what in (("kws_search_1st", "first order"), ("kws_search_2nd", "second order"),
                       ("kws_search_pc4", "PC-DARTS K=4")):
        t, v = best(kind)
        if t is None:
            continue
        hours = t * KWS_STEPS_PER_EPOCH * KWS_EPOCHS / 3600
        paper = ", ".join(f"{k} {d} GPU-days = {d * 24:.1f} h ({hours / (d * 24):.2f}x)"
                          for k, d in KWS_PAPER_GPU_DAYS.items())
        lines.append(f"  KWS search, {what} ({v}): {t * 1e3:.1f} ms/step x {KWS_STEPS_PER_EPOCH} steps x "
                     f"{KWS_EPOCHS} epochs = {hours:.2f} GPU-hours = {hours / 24:.3f} GPU-days; paper: {paper}")
    total, parts = 0.0, []
    for stage in range(3):
        kind = f"pdarts_search#{stage + 1}"
        t, v = best(kind)
        tw, _ = best(kind, "weight_step_s")
        if t is None or tw is None:
            return lines + ["  P-DARTS: not every stage was measured, no projection"]
        h = (PDARTS_WARMUP * tw + PDARTS_SEARCH_EPOCHS * t) * PDARTS_STEPS_PER_EPOCH / 3600
        parts.append(f"stage {stage + 1} {h:.1f} h")
        total += h
    lines.append(f"  P-DARTS ASR search, one seed in one space: {total:.1f} GPU-hours ({', '.join(parts)}); "
                 f"x{PDARTS_RUNS} (3 seeds x 2 spaces) = {total * PDARTS_RUNS:.0f} GPU-hours = "
                 f"{total * PDARTS_RUNS / 24:.1f} GPU-days; paper: 89 h on 8 Tesla P40 = "
                 f"{PDARTS_PAPER_GPU_HOURS} GPU-hours ({total * PDARTS_RUNS / PDARTS_PAPER_GPU_HOURS:.2f}x)")
    return lines


def waves_by_memory(cases: list, peak_mb: dict, capacity_mb: float, max_jobs: int) -> list:
    """The compiled cases in waves that fit the device side by side, each case counted at its eager
    peak (unknown: the largest known), at most `max_jobs` per wave."""
    known = [v for v in peak_mb.values() if v]
    waves, used = [], 0.0
    for key, args in cases:
        need = peak_mb.get(key) or (max(known) if known else 0.0)
        if not waves or len(waves[-1]) >= max_jobs or used + need > capacity_mb:
            waves.append([])
            used = 0.0
        waves[-1].append((key, args))
        used += need
    return waves


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (paper sizes) or cpu (tiny sizes)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (implied by --device cpu)")
    p.add_argument("--repeats", type=int, default=None, help="timed steps per case (default 5 cuda, 2 cpu)")
    p.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    p.add_argument("--compile", choices=("on", "off", "auto"), default="auto",
                   help="measure torch.compile variants (auto: on CUDA; off on CPU, where one compile of the "
                        "tiny supernet takes longer than the whole tiny benchmark)")
    p.add_argument("--compile-timeout", type=float, default=150.0,
                   help="seconds the compiled cases of one wave may take to compile and warm up, side by side")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend (eager / aot_eager time Dynamo's and AOTAutograd's share)")
    p.add_argument("--compile-mode", default="default",
                   choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                   help="torch.compile mode (reduce-overhead: CUDA graphs, the lever for launch-bound steps)")
    p.add_argument("--budget", type=float, default=290.0,
                   help="seconds for the whole run: cases not measured by then are reported as such")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per case (default: torch's on CUDA, 1 on CPU: on a shared machine "
                        "OpenMP threads spin-waiting on oversubscribed cores made tiny steps 7x slower)")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _child(json.loads(a.child))
        return 0

    import torch

    sys.path.insert(0, ROOT)
    from nasr.utils.device import describe_device, get_device, plan_device

    t_start = time.time()
    deadline = t_start + a.budget
    device = get_device(a.device)
    tiny = a.tiny or device.type == "cpu"
    repeats = a.repeats or (5 if device.type == "cuda" else 2)
    do_compile = a.compile == "on" or (a.compile == "auto" and device.type == "cuda")
    threads = a.threads if a.threads is not None else (0 if device.type == "cuda" else 1)
    plan = plan_device(device, "auto", bf16=True)
    desc = describe_device(device)
    print(f"bench/gpu.py on {desc}, torch {torch.__version__}; sizes: {'tiny' if tiny else 'the papers'}; "
          f"AMP = {plan.amp_name}{' + GradScaler' if plan.grad_scaler else ''}; {repeats} timed steps per case"
          f"{f'; {threads} torch thread(s)' if threads else ''}", flush=True)
    # fp32 stays fp32 (torch's default: no TF32 matmuls), as in the steps' fp32 variants.
    n_mm = 1024 if tiny else 8192
    peak = {dt: matmul_gflops(device, dt, n_mm) for dt in ("fp32", plan.amp_name)}
    print(f"matmul {n_mm}x{n_mm}: " + ", ".join(f"{dt} {g:.0f} GFLOP/s" for dt, g in peak.items()), flush=True)
    if not do_compile:
        print("compile: not measured (--compile off, or on CPU by default: inductor compiles each tiny "
              "supernet for longer than this whole benchmark runs; --compile on measures it)")
    eager, compiled = [], []
    for kind in a.kinds:
        for stage in (range(3) if kind == "pdarts_search" else [0]):
            name = f"{kind}#{stage + 1}" if kind == "pdarts_search" else kind
            for var, comp in VARIANTS:
                args = dict(kind=kind, device_name=str(device), tiny=tiny, amp=var == "amp", compile_=comp,
                            repeats=repeats, stage=stage, threads=threads, backend=a.compile_backend,
                            mode=a.compile_mode)
                key = (name, var + ("+compile" if comp else ""))
                if not comp:
                    eager.append((key, args))
                elif do_compile:
                    compiled.append((key, args))
    results = {key: None for key, _ in eager + compiled}  # the table's order

    def report(key, r):
        results[key] = r
        what = r["error"] if "error" in r else f"{r['seconds'] * 1e3:.1f} ms/step, {r['peak_mb']:.0f} MB"
        print(f"  [{time.time() - t_start:5.0f} s] {key[0]} {key[1]}: {what}", flush=True)

    run_in_sequence(eager, deadline, report)
    if compiled:
        peaks = {key: (results.get((key[0], key[1].split("+")[0])) or {}).get("peak_mb") for key, _ in compiled}
        capacity = (0.8 * torch.cuda.get_device_properties(device).total_memory / 2 ** 20
                    if device.type == "cuda" else float("inf"))
        waves = waves_by_memory(compiled, peaks, capacity, max_jobs=len(compiled))
        print(f"compiling {len(compiled)} cases in {len(waves)} wave(s) side by side, then timing each alone",
              flush=True)
        # Time left for each compiled case's timed steps: its eager steps' time, and start-up.
        timing_s = {key: 3.0 + (repeats + 3) * ((results.get((key[0], key[1].split("+")[0])) or {}).get("seconds")
                                                 or 1.0) for key, _ in compiled}
        run_side_by_side(waves, a.compile_timeout, deadline, report, timing_s)

    mem_unit = "peak GPU MB" if device.type == "cuda" else "peak RSS MB"
    print(f"\n{'step':<17}{'variant':<14}{'ms/step':>10}{mem_unit:>13}{'time vs fp32':>14}{'mem vs fp32':>13}"
          f"{'warm-up s':>11}{'GFLOP/s':>10}{'of mm':>7}")
    for (name, label), r in results.items():
        base, r = results.get((name, "fp32")) or {}, r or {"error": "not measured"}
        if "error" in r:
            print(f"{name:<17}{label:<14}  {r['error']}")
            continue
        flops = base.get("flops") or r.get("flops")
        rate = f"{flops / r['seconds'] / 1e9:>10.0f}{flops / r['seconds'] / 1e9 / peak[label.split('+')[0].replace('amp', plan.amp_name)]:>7.3f}" if flops else ""
        print(f"{name:<17}{label:<14}{r['seconds'] * 1e3:>10.1f}{r['peak_mb']:>13.0f}"
              f"{fmt_ratio(r['seconds'], base.get('seconds')):>14}{fmt_ratio(r['peak_mb'], base.get('peak_mb')):>13}"
              f"{r['warmup_s']:>11.1f}{rate}")
    print("\n(time and memory ratios: each variant against the fp32 eager step of the same kind in this run; "
          "memory: the peak over the timed steps; warm-up: the untimed first steps, compile included; GFLOP/s: "
          "the step's matmul and conv FLOPs (torch.utils.flop_counter, counted on the eager fp32 step) per "
          "second; of mm: of the matmul rate above in the variant's dtype)")
    projection = project(results, desc) if device.type == "cuda" and not tiny else []
    if projection:
        print()
        print("\n".join(projection))
    print(f"\ntotal {time.time() - t_start:.0f} s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": desc, "torch": torch.__version__, "tiny": tiny, "repeats": repeats,
                       "matmul_gflops": peak,
                       "results": [dict(step=k[0], variant=k[1], **r) for k, r in results.items()],
                       "projection": projection}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
