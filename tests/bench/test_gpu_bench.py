"""bench/gpu.py runs on CPU at tiny sizes and prints a row for every step kind and variant."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bench_runs_on_cpu_and_prints_every_row():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--repeats", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {tuple(line.split()[:2]) for line in out.stdout.splitlines() if line[:1].islower()}
    for kind in ("kws_search_1st", "kws_search_2nd", "kws_search_pc4", "kws_train", "pdarts_search#1",
                 "pdarts_search#2", "pdarts_search#3", "ctc_train"):
        for variant in ("fp32", "amp"):
            assert (kind, variant) in rows, f"no row {kind} {variant}:\n{out.stdout}"
    fp32_rows = [line for line in out.stdout.splitlines() if line.split()[1:2] == ["fp32"]]
    assert all("1.00x" in line for line in fp32_rows), out.stdout  # the reference of every ratio
    assert "failed" not in out.stdout and "not measured:" not in out.stdout, out.stdout
    assert "compile: not measured" in out.stdout  # the reason is printed on CPU


def test_compiled_cases_compile_side_by_side_and_are_timed_one_by_one():
    # backend "eager" runs the compile protocol (Dynamo, the wait for the turn, the timed steps) in
    # seconds; inductor's compile of even the tiny network takes minutes on 2 cores.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--repeats", "1",
                          "--kinds", "kws_train", "--compile", "on", "--compile-backend", "eager"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {tuple(line.split()[:2]): line for line in out.stdout.splitlines() if line.startswith("kws_train ")}
    assert set(rows) == {("kws_train", v) for v in ("fp32", "amp", "fp32+compile", "amp+compile")}, out.stdout
    assert "compiling 2 cases in 1 wave(s)" in out.stdout
    for line in rows.values():  # a time, not "not measured" or "failed"
        assert float(line.split()[2]) > 0, out.stdout


def test_waves_fit_the_device_memory():
    sys.path.insert(0, str(ROOT / "bench"))
    from gpu import waves_by_memory

    cases = [(("a", "fp32+compile"), {}), (("b", "fp32+compile"), {}), (("c", "fp32+compile"), {})]
    peaks = {("a", "fp32+compile"): 60.0, ("b", "fp32+compile"): 50.0, ("c", "fp32+compile"): None}
    waves = waves_by_memory(cases, peaks, capacity_mb=100.0, max_jobs=8)
    assert [[k[0] for k, _ in w] for w in waves] == [["a"], ["b"], ["c"]]  # c counted at the largest, 60
    waves = waves_by_memory(cases, peaks, capacity_mb=1000.0, max_jobs=2)
    assert [[k[0] for k, _ in w] for w in waves] == [["a", "b"], ["c"]]
