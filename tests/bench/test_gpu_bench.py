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
