"""Logging set-up used by every entry point: console + `<exp>/log/<name>.log`, opened with the
command line, the git commit and the environment so that a log alone tells how a number was made.

`progress` is the one place that decides how a loop shows its progress: a tqdm bar on a terminal,
log lines when stderr is a file (a job runner's log, `2>log`, a pipe), where a redrawn bar would
leave thousands of carriage-return frames."""
from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

FORMAT = "%(asctime)s %(levelname)s [%(filename)s:%(lineno)d] %(message)s"


def git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        commit = out.stdout.strip() or "unknown"
        return commit + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict:
    import torch  # local: keep `nasr.utils` importable without torch for the data tools

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "host": platform.node(),
        "git": git_commit(),
    }


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO,
                  with_env: bool = False) -> logging.Logger:
    root = logging.getLogger()
    # Replaces the handlers of an earlier call (a step run in-process twice logs each line once);
    # handlers others put there (pytest's capture, an application's own) stay.
    for h in list(root.handlers):
        if getattr(h, "_nasr_setup", False):
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
        h._nasr_setup = True
        root.addHandler(h)
    log = logging.getLogger("nasr")
    log.info("command: %s", " ".join([Path(sys.argv[0]).name] + sys.argv[1:]))
    if with_env:
        log.info("environment: %s", environment())
    return log


class LogProgress:
    """The part of tqdm's interface the loops use (iterate, update, set_postfix, close, `with`), for
    output that is not a terminal: one log line per N items, N being however many items take
    `interval` seconds, so a short loop adds no line (its caller logs one per epoch) and a loop of
    hours shows it is alive.  A loop that logged any line also logs its end."""

    def __init__(self, iterable: Optional[Iterable] = None, *, desc: str = "", total: Optional[int] = None,
                 unit: str = "it", interval: float = 60.0):
        self.iterable, self.desc, self.unit, self.interval = iterable, desc, unit, interval
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.postfix = total, 0, ""
        self.start = self.last = time.monotonic()
        self.lines = 0
        self.log = logging.getLogger("nasr.progress")

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._line(now)

    def set_postfix(self, **kwargs) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in kwargs.items())

    def close(self) -> None:
        if self.lines:
            self._line(time.monotonic(), done=True)
            self.lines = 0

    def _line(self, now: float, done: bool = False) -> None:
        seconds = now - self.start
        of = f"/{self.total}" if self.total is not None else ""
        rate = self.n / seconds if seconds > 0 else 0.0
        self.log.info("%s%s: %d%s %s in %.0f s (%.2f %s/s)%s", self.desc or "progress", " done" if done else "",
                      self.n, of, self.unit, seconds, rate, self.unit, f" {self.postfix}" if self.postfix else "")
        self.lines += 1


def progress(iterable: Optional[Iterable] = None, *, desc: str = "", total: Optional[int] = None,
             unit: str = "it", disable: bool = False, leave: bool = False, interval: float = 60.0):
    """A tqdm bar when stderr is a terminal, else a `LogProgress` (log lines, nothing redrawn).
    `disable` shows nothing either way; `leave` keeps the finished bar on the terminal."""
    if disable:
        return LogProgress(iterable, desc=desc, total=total, unit=unit, interval=float("inf"))
    if getattr(sys.stderr, "isatty", lambda: False)():
        from tqdm import tqdm

        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, mininterval=2.0, file=sys.stderr)
    return LogProgress(iterable, desc=desc, total=total, unit=unit, interval=interval)
