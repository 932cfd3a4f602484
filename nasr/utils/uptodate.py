"""Make-style skipping of a step that is done: lang prep, LM training, graph building, decoding.

On a real corpus these take minutes to hours (a WFST decode of AISHELL-2's test set), so a rerun of a
finished recipe must not redo them.  A step records, beside its outputs, its arguments and a
fingerprint of every input file (content for small files, size and time for large ones); a rerun with the same record and every output present
does nothing.  The record is removed before the work starts and written after it ends, so a step
killed half-way is redone, never skipped.

    done = Stamp(out / ".done.json", vars(args), inputs=[text, lexicon], what=out)
    if done.is_current(outputs=[out / "units.txt"]):
        return 0
    done.clear(); ...work...; done.write()
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Dict, Iterable, List

from nasr.utils.io import atomic_write

log = logging.getLogger(__name__)


def _input_files(paths: Iterable) -> List[Path]:
    """The files behind `paths`: a file as is, a dir's top-level files (not its subdirs, where a step
    may write its outputs, e.g. a lang dir's graph/), nothing for None."""
    files = []
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith("."))
        else:
            files.append(p)
    return files


SMALL = 1 << 20  # files up to this size are fingerprinted by content


def fingerprint(paths: Iterable) -> Dict[str, object]:
    """{file: fingerprint} of every input file: the content's SHA-1 for a small file (a config or
    scp rewritten with the same content by a resumed step is the same input), [size, mtime_ns] for a
    large one (checkpoints, archives), None for a missing one."""
    out: Dict[str, object] = {}
    for f in _input_files(paths):
        if not f.is_file():
            out[str(f)] = None
            continue
        st = f.stat()
        out[str(f)] = (hashlib.sha1(f.read_bytes()).hexdigest() if st.st_size <= SMALL
                       else [st.st_size, st.st_mtime_ns])
    return out


class Stamp:
    """The record of one finished run of a step: its arguments and its inputs' fingerprints."""

    def __init__(self, path, args: Dict, inputs: Iterable, what=None):
        self.path, self.what = Path(path), what or path
        # Through JSON once, so that the record compares equal to what is read back (tuples, Paths).
        self.record = json.loads(json.dumps({"args": args, "inputs": fingerprint(inputs)}, default=str))

    def is_current(self, outputs: Iterable) -> bool:
        """True when the last run had the same arguments and inputs and all its outputs exist."""
        if not self.path.is_file() or not all(Path(o).exists() for o in outputs):
            return False
        try:
            same = json.loads(self.path.read_text(encoding="utf-8")) == self.record
        except (OSError, ValueError):
            return False
        if same:
            log.info("%s is up to date (same arguments and inputs as the run that wrote it; record %s), "
                     "nothing to do", self.what, self.path)
        return same

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path) as f:
            json.dump(self.record, f, indent=1, sort_keys=True)
