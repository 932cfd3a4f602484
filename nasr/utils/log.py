"""Logging set-up used by every entry point: console + `<exp>/log/<name>.log`, opened with the
command line, the git commit and the environment so that a log alone tells how a number was made."""
from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

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
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(level)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(console)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_file, encoding="utf-8")
        fh.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(fh)
    log = logging.getLogger("nasr")
    log.info("command: %s", " ".join([Path(sys.argv[0]).name] + sys.argv[1:]))
    if with_env:
        log.info("environment: %s", environment())
    return log
