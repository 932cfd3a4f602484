"""A committed RESULTS.md is not silently cut down: `make demo` writes its own table, and a report
that regenerates a table with fewer rows says which rows it drops."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs" / "speech_commands"


def fake_scores(exp: Path, system: str, acc: float) -> None:
    d = exp / system / "decode_test"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({
        "exp_dir": str(exp / system), "set": "test", "model": "res15", "params": 1000, "macs": 2e6,
        "acc": acc, "correct": int(acc * 100), "total": 100, "epochs": 1, "train_seconds": 10.0,
        "device": "CPU", "genotype_source": None, "train_command": "t", "eval_command": "e"}))


def report(work: Path):
    return subprocess.run([sys.executable, "-m", "nasr.bin.report", "--exp-root", "exp", "--set", "test",
                           "--out", "RESULTS.md"], cwd=work, capture_output=True, text=True, timeout=120)


def test_a_report_that_drops_rows_names_them(tmp_path):
    fake_scores(tmp_path / "exp", "train_res15", 0.9)
    fake_scores(tmp_path / "exp", "train_tower", 0.6)
    r = report(tmp_path)
    assert r.returncode == 0, r.stderr
    assert "exp/train_tower/decode_test" in (tmp_path / "RESULTS.md").read_text()
    assert "warning" not in r.stderr
    for p in sorted((tmp_path / "exp" / "train_tower").rglob("*"), reverse=True):  # a fresh clone has no exp/
        p.unlink() if p.is_file() else p.rmdir()
    r = report(tmp_path)
    assert r.returncode == 0, r.stderr
    assert re.search(r"warning: RESULTS.md loses the rows of exp/train_tower/decode_test", r.stderr), r.stderr


def test_make_demo_leaves_the_committed_results_alone(tmp_path):
    dry = subprocess.run(["make", "-n", "-C", str(ROOT), "demo"], capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    line = next(x for x in dry.stdout.splitlines() if "./run.sh" in x)
    demo_args = shlex.split(line.split("./run.sh", 1)[1])
    work = tmp_path / "sc"
    work.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "conf", "local", "utils"):
        (work / name).symlink_to(RECIPE / name)
    committed = "| tower (b2) | train_tower | ... |\n%ACC 61.67 [ 222 / 360 ] exp/train_tower/decode_test\n"
    (work / "RESULTS.md").write_text(committed)
    fake_scores(work / "exp", "train_res15", 0.9)
    r = subprocess.run(["bash", "run.sh", *demo_args, "--stage", "7"], cwd=work, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (work / "RESULTS.md").read_text() == committed
    tables = [p for p in work.rglob("RESULTS.md") if p != work / "RESULTS.md"]
    assert len(tables) == 1 and "train_res15" in tables[0].read_text()
