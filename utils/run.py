#!/usr/bin/env python3
"""Usage: utils/run.py [options] [JOB=1:N] <log-file> <command> [<args> ...]
e.g.:  utils/run.py --max-jobs-run 4 JOB=1:8 exp/log/validate.JOB.log \\
           utils/validate_data_dir.sh data/train/split8utt/JOB

Kaldi's run.pl: runs jobs 1..N of <command> on this machine, at most --max-jobs-run at a time
(default: the number of CPU cores).  JOB (any NAME=a:b works, e.g. TASK=1:4) is replaced by the job
number everywhere in the log path and the command.  Each job's log begins with its command line and
start time and ends with its exit code, end time and elapsed seconds.  All jobs run even when one
fails; then this exits 1 naming the failed jobs' logs.

Arguments are joined into one bash command as Kaldi does: an argument without blanks is used as is
(so a quoted `\\|` or `"|"` is a pipe), one with blanks is quoted; a single argument is taken
as a whole bash command (utils/run.py x.log "a | b").
Options:
  --max-jobs-run K    run at most K jobs at once (default: number of CPU cores)
  --num-threads T, --mem M, --gpu G, --gpus G, --partition P, --time T, --config F
                      accepted and ignored, so that one cmd.sh line works with run.py and a
                      cluster runner (Kaldi convention)
Standard library only: runs before any environment is set up.
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

JOB_RANGE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+)(?::(\d+))?$")
IGNORED_OPTIONS = ("--num-threads", "--mem", "--gpu", "--gpus", "--partition", "--time", "--config")


class UsageError(Exception):
    pass


def parse_command_line(argv: Sequence[str], extra_options: Sequence[str] = ()) -> Tuple[dict, str, int, int, str, List[str]]:
    """-> (options, job variable, first, last, log path, command args).  `extra_options`: options with a
    value that the caller understands (the Slurm runner's --partition etc.)."""
    argv = list(argv)
    options = {"max_jobs_run": None}
    while argv and argv[0].startswith("--"):
        opt = argv.pop(0)
        name, eq, value = opt.partition("=")
        if not eq:
            if not argv:
                raise UsageError(f"option {name} needs a value")
            value = argv.pop(0)
        if name == "--max-jobs-run":
            if not value.isdigit() or int(value) < 1:
                raise UsageError(f"--max-jobs-run needs a positive integer, got '{value}'")
            options["max_jobs_run"] = int(value)
        elif name in extra_options:
            options[name[2:].replace("-", "_")] = value
        elif name in IGNORED_OPTIONS:
            pass
        else:
            raise UsageError(f"unknown option {name}")
    var, first, last = None, 1, 1
    if argv and JOB_RANGE.match(argv[0]):
        m = JOB_RANGE.match(argv.pop(0))
        var, first = m.group(1), int(m.group(2))
        last = int(m.group(3)) if m.group(3) is not None else first
        if last < first:
            raise UsageError(f"empty job range {var}={first}:{last}")
    if len(argv) < 2:
        raise UsageError("need a log file and a command")
    log_path, cmd = argv[0], argv[1:]
    if var is not None and last > first and var not in log_path:
        # N jobs writing one log would interleave and the failure report could not name the job
        raise UsageError(f"log file '{log_path}' does not contain {var}: every job would write the same log")
    return options, var, first, last, log_path, cmd


def join_command(args: Sequence[str]) -> str:
    """Kaldi run.pl's rule: blank-free arguments verbatim (shell syntax such as | stays live), others quoted.
    One argument alone is a whole shell command: a command name with blanks in it is never meant."""
    if len(args) == 1:
        return args[0]
    return " ".join(a if a and not re.search(r"\s", a) else shlex.quote(a) for a in args)


def substitute(text: str, var: Optional[str], job: int) -> str:
    return text if var is None else text.replace(var, str(job))


def _now() -> str:
    return time.strftime("%a %b %d %H:%M:%S %Z %Y")


def run_one(command: str, log_path: str) -> int:
    """Run `command` under bash with stdout+stderr to `log_path`, framed by Kaldi-style header/footer lines."""
    os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
    start = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(f"# {command}\n# Started at {_now()}\n#\n")
        log.flush()
        # stdin from /dev/null: parallel jobs must not compete for the terminal
        proc = subprocess.run(["bash", "-c", command], stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT)
        rc = proc.returncode
        if rc < 0:  # killed by a signal: report it the shell's way
            rc = 128 - rc
        elapsed = time.time() - start
        log.write(f"# Accounting: time={elapsed:.0f} threads=1\n"
                  f"# Ended (code {rc}) at {_now()}, elapsed time {elapsed:.0f} seconds\n")
    return rc


def report_failures(prog: str, failed: List[str], total: int) -> int:
    if not failed:
        return 0
    if total == 1:
        print(f"{prog}: job failed, log is in {failed[0]}", file=sys.stderr)
    else:
        print(f"{prog}: {len(failed)} / {total} failed, log is in:", file=sys.stderr)
        for path in failed:
            print(f"  {path}", file=sys.stderr)
    return 1


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    prog = "run.py"
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 0 if argv else 1
    try:
        options, var, first, last, log_template, cmd = parse_command_line(argv)
    except UsageError as e:
        print(f"{prog}: {e}\n\n{__doc__}", file=sys.stderr)
        return 1
    print(f"{prog} {' '.join(argv)}", file=sys.stderr)
    jobs = list(range(first, last + 1))
    max_jobs = options["max_jobs_run"] or os.cpu_count() or 1
    command_template = join_command(cmd)
    failed: List[Tuple[int, str]] = []
    lock = threading.Lock()

    def one(job: int) -> None:
        log_path = substitute(log_template, var, job)
        try:
            rc = run_one(substitute(command_template, var, job), log_path)
        except OSError as e:  # unwritable log dir, no bash: the job failed, say why
            print(f"{prog}: job {job}: {e}", file=sys.stderr)
            rc = 1
        if rc != 0:
            with lock:
                failed.append((job, log_path))

    with ThreadPoolExecutor(max_workers=min(max_jobs, len(jobs))) as pool:
        list(pool.map(one, jobs))
    return report_failures(prog, [path for _, path in sorted(failed)], len(jobs))


if __name__ == "__main__":
    sys.exit(main())
