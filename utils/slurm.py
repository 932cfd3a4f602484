#!/usr/bin/env python3
"""Usage: utils/slurm.py [options] [JOB=1:N] <log-file> <command> [<args> ...]
e.g.:  utils/slurm.py --partition gpu --gpus 1 --time 4:00:00 JOB=1:4 exp/search/log/train.JOB.log \\
           python -m nasr.bin.train --config conf/train.yaml --job JOB

The Slurm counterpart of utils/run.py, with the same command line: submits ONE sbatch array job
(--wait), task k running the command with JOB replaced by k (from SLURM_ARRAY_TASK_ID), its output in
the job's log with the same header/footer lines as run.py.  When the array is done, exits 1 naming the
logs of the jobs that failed or never finished.
Options:
  --max-jobs-run K     at most K tasks at once (sbatch --array=a-b%K)
  --partition P        sbatch --partition
  --time T             sbatch --time (e.g. 4:00:00)
  --mem M              sbatch --mem (e.g. 8G)
  --gpus G, --gpu G    sbatch --gpus (0: none)
  --num-threads T      sbatch --cpus-per-task
  --config F           accepted and ignored (Kaldi convention)
The sbatch script and Slurm's own per-task output go to <log-dir>/q/.  sbatch is found on PATH
(set SBATCH to use another).  Standard library only.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import UsageError, join_command, parse_command_line, report_failures, substitute  # noqa: E402

SLURM_OPTIONS = ("--partition", "--time", "--mem", "--gpus", "--gpu", "--num-threads")
ENDED = re.compile(r"^# Ended \(code (-?\d+)\)", re.MULTILINE)

TASK_SCRIPT = """#!/usr/bin/env bash
# Written by utils/slurm.py: one task of a Slurm array job; the task id selects the job.
cd {cwd}
case "${{SLURM_ARRAY_TASK_ID:-}}" in
{cases}
  *) echo "$0: unexpected SLURM_ARRAY_TASK_ID '${{SLURM_ARRAY_TASK_ID:-}}'" >&2; exit 1 ;;
esac
mkdir -p "$(dirname "$log")"
start=$(date +%s)
printf '# %s\\n# Started at %s on %s\\n#\\n' "$cmd" "$(date)" "$(hostname)" > "$log"
bash -c "$cmd" < /dev/null >> "$log" 2>&1 && rc=0 || rc=$?
elapsed=$(( $(date +%s) - start ))
printf '# Accounting: time=%s threads=1\\n# Ended (code %s) at %s, elapsed time %s seconds\\n' \\
  "$elapsed" "$rc" "$(date)" "$elapsed" >> "$log"
exit "$rc"
"""


def job_name(log_template: str, var: Optional[str]) -> str:
    """exp/fbank/log/make_fbank.JOB.log -> make_fbank (Slurm job names should be short and readable)."""
    base = os.path.basename(log_template)
    if var:
        base = base.replace(f".{var}", "").replace(var, "")
    base = re.sub(r"\.log$", "", base)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", base) or "job"


def exit_code_from_log(path: str) -> Optional[int]:
    """The code on the log's '# Ended (code N)' line; None when the task never finished."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            codes = ENDED.findall(f.read())
    except OSError:
        return None
    return int(codes[-1]) if codes else None


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    prog = "slurm.py"
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 0 if argv else 1
    try:
        options, var, first, last, log_template, cmd = parse_command_line(argv, SLURM_OPTIONS)
    except UsageError as e:
        print(f"{prog}: {e}\n\n{__doc__}", file=sys.stderr)
        return 1
    print(f"{prog} {' '.join(argv)}", file=sys.stderr)

    jobs = list(range(first, last + 1))
    command_template = join_command(cmd)
    logs = {job: substitute(log_template, var, job) for job in jobs}
    name = job_name(log_template, var)
    qdir = Path(os.path.dirname(log_template) or ".") / "q"
    qdir.mkdir(parents=True, exist_ok=True)
    for path in logs.values():
        # a stale log from an earlier run must not pass for this run's result
        Path(path).unlink(missing_ok=True)

    cases = "\n".join(f"  {job}) log={shlex.quote(logs[job])}; "
                      f"cmd={shlex.quote(substitute(command_template, var, job))} ;;" for job in jobs)
    script = qdir / f"{name}.sh"
    script.write_text(TASK_SCRIPT.format(cwd=shlex.quote(os.getcwd()), cases=cases), encoding="utf-8")
    script.chmod(0o755)

    array = f"{first}-{last}" + (f"%{options['max_jobs_run']}" if options["max_jobs_run"] else "")
    sbatch = [os.environ.get("SBATCH", "sbatch"), "--wait", f"--array={array}", f"--job-name={name}",
              f"--output={qdir / name}.%a.out"]
    if options.get("partition"):
        sbatch.append(f"--partition={options['partition']}")
    if options.get("time"):
        sbatch.append(f"--time={options['time']}")
    if options.get("mem"):
        sbatch.append(f"--mem={options['mem']}")
    gpus = options.get("gpus") or options.get("gpu")
    if gpus and gpus != "0":
        sbatch.append(f"--gpus={gpus}")
    if options.get("num_threads") and options["num_threads"] != "1":
        sbatch.append(f"--cpus-per-task={options['num_threads']}")
    sbatch.append(str(script))
    print(f"{prog}: {' '.join(shlex.quote(a) for a in sbatch)}", file=sys.stderr)
    try:
        # sbatch --wait returns when every task has ended; its status is not trusted on its own:
        # each task's log says how that task ended
        subprocess.run(sbatch, stdin=subprocess.DEVNULL)
    except OSError as e:
        print(f"{prog}: cannot run {sbatch[0]}: {e}", file=sys.stderr)
        return 1

    failed = []
    for job in jobs:
        rc = exit_code_from_log(logs[job])
        if rc != 0:
            failed.append(logs[job])
            if rc is None:
                print(f"{prog}: job {job} did not finish (no end line in {logs[job]}); Slurm's output: "
                      f"{qdir / name}.{job}.out", file=sys.stderr)
    return report_failures(prog, failed, len(jobs))


if __name__ == "__main__":
    sys.exit(main())
