"""Small file helpers shared by every step: atomic writes and Kaldi-style key/value tables.

Every table writer goes through `atomic_write` so that a killed or failing step never leaves a
half-written file that a later stage would trust.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Tuple


class FormatError(ValueError):
    """A malformed input file. The message names the file, the line and the fix."""

    def __init__(self, path, lineno: int | None, problem: str, fix: str = ""):
        where = f"{path}:{lineno}" if lineno is not None else f"{path}"
        msg = f"{where}: {problem}"
        if fix:
            msg += f" (fix: {fix})"
        super().__init__(msg)
        self.path = str(path)
        self.lineno = lineno


@contextlib.contextmanager
def atomic_write(path, mode: str = "w", encoding: str | None = "utf-8"):
    """Write to a temporary file beside `path` and rename it into place on success only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes the file 0600; give it the mode a plain open() would (shared clusters).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        kwargs = {} if "b" in mode else {"encoding": encoding}
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def iter_table(path) -> Iterator[Tuple[int, str, str]]:
    """Yield (lineno, key, rest) for a Kaldi table `key rest...`; rest may be empty."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                raise FormatError(path, lineno, "empty line", "remove blank lines")
            parts = line.split(maxsplit=1)
            yield lineno, parts[0], parts[1].strip() if len(parts) > 1 else ""


def read_table(path, allow_empty_value: bool = False) -> Dict[str, str]:
    """Read a `key value` table into an (insertion-ordered) dict, rejecting duplicate keys."""
    out: Dict[str, str] = {}
    for lineno, key, rest in iter_table(path):
        if key in out:
            raise FormatError(path, lineno, f"duplicate key '{key}'",
                              "keep one line per key (utils/fix_data_dir.sh)")
        if not rest and not allow_empty_value:
            raise FormatError(path, lineno, f"key '{key}' has no value", "give every key a value")
        out[key] = rest
    return out


def format_table(items: Iterable[Tuple[str, str]] | Dict[str, str], sort: bool = True) -> str:
    """The text of a `key value` table, sorted by key in C collation (Kaldi's rule)."""
    pairs: List[Tuple[str, str]] = list(items.items() if isinstance(items, dict) else items)
    if sort:
        pairs.sort(key=lambda kv: kv[0].encode("utf-8"))
    return "".join(f"{k} {v}\n" if v != "" else f"{k}\n" for k, v in pairs)


def write_table(path, items: Iterable[Tuple[str, str]] | Dict[str, str], sort: bool = True) -> None:
    """Write a `key value` table atomically, sorted by key in C collation (Kaldi's rule)."""
    text = format_table(items, sort)
    with atomic_write(path) as f:
        f.write(text)


def write_json(path, obj, indent: int = 2) -> None:
    with atomic_write(path) as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise FormatError(path, e.lineno, f"not valid JSON: {e.msg}", "fix or regenerate the file") from None
