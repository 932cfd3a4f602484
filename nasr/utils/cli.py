"""What every entry point does before its work and when it fails on its inputs.

`require_inputs` checks the paths a command names before anything is created (no `log/` dir is
left behind by a command that could not start); `cli_main` turns an input error (a FormatError,
a held lock) into one line on stderr and exit status 1, without a traceback: the message already
names the file and the fix.  Anything else is a bug of ours and keeps its traceback.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterable, Optional

from nasr.utils.io import FormatError
from nasr.utils.lock import LockError


def require_inputs(config=None, data_dirs: Iterable = (), files: Iterable = (),
                   exp_dir=None, exp_file: str = "config.yaml") -> None:
    """Raise FormatError for the first missing input: a config file, data dirs, other files, or an
    existing exp dir (one that holds `exp_file`, i.e. that a training wrote)."""
    if config is not None and not Path(config).is_file():
        raise FormatError(config, None, "config file does not exist", "check the --config path")
    for d in data_dirs:
        if d is not None and not Path(d).is_dir():
            raise FormatError(d, None, "data dir does not exist",
                              "check the path, or run the recipe's data preparation stage first")
    for f in files:
        if f is not None and not Path(f).exists():
            raise FormatError(f, None, "does not exist", "check the path")
    if exp_dir is not None:
        if not Path(exp_dir).is_dir():
            raise FormatError(exp_dir, None, "exp dir does not exist", "check --exp-dir, or train the model first")
        if exp_file and not (Path(exp_dir) / exp_file).is_file():
            raise FormatError(Path(exp_dir) / exp_file, None, "missing: not a finished exp dir",
                              "check --exp-dir, or train the model first")


def cli_main(main: Callable[[Optional[list]], int], prog: str) -> int:
    """Run `main()` as a command: input errors become one `prog: error: ...` line and status 1."""
    try:
        return main()
    except (FormatError, LockError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
