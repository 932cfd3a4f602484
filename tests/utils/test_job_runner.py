"""utils/run.py (local parallel jobs) and utils/slurm.py (one sbatch array job), run as scripts."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "utils" / "run.py"
SLURM = ROOT / "utils" / "slurm.py"

# Stands in for Slurm: runs the array's tasks here, one after another, with SLURM_ARRAY_TASK_ID set and
# output to --output (%a -> task id); records its arguments; FAKE_SBATCH_SKIP names a task that "dies"
# before running (as a node failure would), so the runner must notice the missing end line.
FAKE_SBATCH = r'''#!/usr/bin/env python3
import os, re, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_SBATCH_ARGS"], "w") as f:
    f.write("\n".join(args) + "\n")
opts = dict(a[2:].split("=", 1) for a in args[:-1] if a.startswith("--") and "=" in a)
assert "--wait" in args, "the runner must wait for the array"
first, last = map(int, re.match(r"(\d+)-(\d+)", opts["array"]).groups())
skip = os.environ.get("FAKE_SBATCH_SKIP", "")
print("Submitted batch job 4242")
failed = False
for task in range(first, last + 1):
    if str(task) == skip:
        failed = True
        continue
    out = opts["output"].replace("%a", str(task)).replace("%A", "4242")
    with open(out, "w") as f:
        rc = subprocess.run(["bash", args[-1]], env={**os.environ, "SLURM_ARRAY_TASK_ID": str(task)},
                            stdout=f, stderr=subprocess.STDOUT).returncode
    failed |= rc != 0
sys.exit(1 if failed else 0)
'''


def run(*args, cwd, extra_env=None):
    env = {**os.environ, **(extra_env or {})}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_job_substitution_and_logs(tmp_path):
    r = run(RUN, "JOB=1:3", "exp/log/echo.JOB.log", "echo", "job", "JOB", ">", "out.JOB", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for job in (1, 2, 3):
        assert (tmp_path / f"out.{job}").read_text() == f"job {job}\n"
        log = (tmp_path / "exp" / "log" / f"echo.{job}.log").read_text().splitlines()
        assert log[0] == f"# echo job {job} > out.{job}"
        assert log[1].startswith("# Started at ")
        assert re.match(r"# Ended \(code 0\) at .*, elapsed time \d+ seconds", log[-1])
    assert "run.py JOB=1:3 exp/log/echo.JOB.log" in r.stderr  # echoes its command line


def test_failed_job_is_named_and_others_still_run(tmp_path):
    r = run(RUN, "JOB=1:4", "log/t.JOB.log", "touch done.JOB", "&&", "test", "JOB", "-ne", "3", cwd=tmp_path)
    # an argument with blanks among others is quoted like Kaldi's run.pl: 'touch done.JOB' is one word
    assert r.returncode == 1 and "4 / 4 failed" in r.stderr
    r = run(RUN, "JOB=1:4", "log/t.JOB.log", "touch", "done.JOB", "&&", "test", "JOB", "-ne", "3", cwd=tmp_path)
    assert r.returncode == 1
    assert "1 / 4 failed" in r.stderr and "log/t.3.log" in r.stderr and "log/t.1.log" not in r.stderr
    assert all((tmp_path / f"done.{j}").exists() for j in (1, 2, 3, 4))
    assert "# Ended (code 1)" in (tmp_path / "log" / "t.3.log").read_text()


def test_single_job_and_single_shell_command(tmp_path):
    r = run(RUN, "one.log", "echo a b | tr a-z A-Z", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "A B" in (tmp_path / "one.log").read_text().splitlines()
    r = run(RUN, "one.log", "exit 7", cwd=tmp_path)
    assert r.returncode == 1 and "job failed, log is in one.log" in r.stderr
    assert "# Ended (code 7)" in (tmp_path / "one.log").read_text()


def test_bad_command_lines(tmp_path):
    r = run(RUN, "JOB=1:2", "same.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and "does not contain JOB" in r.stderr
    r = run(RUN, "--max-jobz", "2", "x.log", "true", cwd=tmp_path)
    assert r.returncode == 1 and "unknown option --max-jobz" in r.stderr
    r = run(RUN, "--gpu", "1", "--mem", "4G", "TASK=2:3", "x.TASK.log", "echo TASK", cwd=tmp_path)
    assert r.returncode == 0 and not (tmp_path / "x.1.log").exists()  # other job names, ranges; cluster opts ignored
    assert "3" in (tmp_path / "x.3.log").read_text().splitlines()


def test_parallelism_limit(tmp_path):
    # each job records its start and end time; at most 2 may overlap, and 2 must (it is parallel)
    job = (f"{sys.executable} -c 'import time,sys; s=time.time(); time.sleep(0.4); "
           f"open(\"t.\"+sys.argv[1],\"w\").write(f\"{{s}} {{time.time()}}\")' JOB")
    r = run(RUN, "--max-jobs-run", "2", "JOB=1:5", "log/p.JOB.log", job, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    spans = [tuple(map(float, (tmp_path / f"t.{j}").read_text().split())) for j in range(1, 6)]
    overlap = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert overlap == 2


def fake_slurm(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    (bindir / "sbatch").chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_SBATCH_ARGS": str(tmp_path / "sbatch.args")}


def test_slurm_array_job(tmp_path):
    env = fake_slurm(tmp_path)
    r = run(SLURM, "--max-jobs-run", "2", "--partition", "gpu", "--time", "1:00:00", "--mem", "4G", "--gpus", "1",
            "JOB=1:3", "exp/log/train.JOB.log", "echo", "task", "JOB", "|", "tr", "a-z", "A-Z", cwd=tmp_path,
            extra_env=env)
    assert r.returncode == 0, r.stderr
    args = (tmp_path / "sbatch.args").read_text().splitlines()
    assert "--wait" in args and "--array=1-3%2" in args and "--partition=gpu" in args
    assert "--time=1:00:00" in args and "--mem=4G" in args and "--gpus=1" in args and "--job-name=train" in args
    assert args[-1].endswith("exp/log/q/train.sh")
    for job in (1, 2, 3):
        log = (tmp_path / "exp" / "log" / f"train.{job}.log").read_text().splitlines()
        assert log[0] == f"# echo task {job} | tr a-z A-Z"
        assert f"TASK {job}" in log and log[-1].startswith("# Ended (code 0)")


def test_slurm_failures_are_named(tmp_path):
    env = fake_slurm(tmp_path)
    stale = tmp_path / "log" / "j.3.log"
    stale.parent.mkdir()
    stale.write_text("# Ended (code 0) at yesterday\n")  # must not count as this run's success
    r = run(SLURM, "JOB=1:3", "log/j.JOB.log", "test JOB -ne 2", cwd=tmp_path,
            extra_env={**env, "FAKE_SBATCH_SKIP": "3"})
    assert r.returncode == 1
    assert "2 / 3 failed" in r.stderr and "log/j.2.log" in r.stderr and "log/j.3.log" in r.stderr
    assert "log/j.1.log" not in r.stderr.split("failed")[-1]
    assert "job 3 did not finish" in r.stderr
    assert "# Ended (code 1)" in (tmp_path / "log" / "j.2.log").read_text()


def test_slurm_without_sbatch_fails_cleanly(tmp_path):
    r = run(SLURM, "x.log", "true", cwd=tmp_path, extra_env={"SBATCH": str(tmp_path / "no-sbatch")})
    assert r.returncode == 1 and "cannot run" in r.stderr and "Traceback" not in r.stderr
