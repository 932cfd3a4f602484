"""One writer per directory: a job that writes an exp dir or a data dir holds a lock file in it.

A second job on the same dir fails at once with a LockError naming the holder (pid, host, command),
instead of both writing the same checkpoints, logs or arks.  The lock is an flock(2) on the file, so
the kernel drops it when the holder dies however it dies (kill -9 included): a lock file left by a
dead process is simply taken over by the next job.  The file itself only tells who holds it.

e.g.:
    with dir_lock(exp_dir):
        ...train...
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".lock"


class LockError(RuntimeError):
    """The directory is held by another live job; the message names it and the fix."""


def holder_line() -> str:
    command = " ".join(sys.argv) if sys.argv and sys.argv[0] else "python"
    return f"pid {os.getpid()} on host {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: {command}"


@contextlib.contextmanager
def dir_lock(directory, name: str = LOCK_NAME, what: str = "directory", fix: str = "") -> Iterator[Path]:
    """Hold `<directory>/<name>` for the duration of the block (the directory is created).

    Raises LockError at once when another process holds it.  `what` says in the message what is
    locked (exp dir, data dir); `fix` replaces the default advice."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    fd = _acquire(path, what, fix or f"wait for it to end or stop it; give a parallel run another {what}")
    try:
        yield path
    finally:
        # Unlink before unlocking: a job waiting on this inode sees it gone and retries (_acquire).
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _acquire(path: Path, what: str, fix: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "a job that is starting"
            os.close(fd)
            raise LockError(f"{path.parent}: this {what} is in use by another job ({holder}) "
                            f"(fix: {fix}; {path.name} is released when that process exits)") from None
        # The holder we waited for may have unlinked the file before unlocking it: the lock we got
        # is then on a dead inode while a newcomer may lock a fresh file.  Only the current file counts.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (holder_line() + "\n").encode("utf-8"), 0)
            return fd
        os.close(fd)
