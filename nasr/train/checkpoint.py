"""Checkpoints: `epoch-N.pt` per epoch plus `best.pt`, written atomically, loaded with a clear error.

A checkpoint holds everything needed to resume exactly: model, optimizers, schedulers, the epoch just
finished, every RNG state (python, numpy, torch CPU and CUDA: drop-path and dropout draw from torch's)
and any extra state (architecture parameters, metric history). best.pt is a copy of one epoch's
checkpoint, checked against the epoch history on every rerun (`ensure_best`)."""
from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from nasr.utils.io import atomic_write

EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(path, state: Dict[str, Any]) -> None:
    with atomic_write(path, "wb") as f:
        torch.save(state, f)


def load_checkpoint(path, map_location="cpu") -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint does not exist (fix: check the path or rerun the stage "
                              f"that writes it)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({type(e).__name__}: {e}) "
                              f"(fix: delete it; rerunning the step then resumes from the previous "
                              f"epoch-N.pt)") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path}: not a nasr checkpoint (no 'model' entry) "
                              f"(fix: point at an epoch-N.pt or best.pt written by nasr)")
    return state


def load_model_state(model: torch.nn.Module, state: Dict[str, Any], path) -> None:
    """model.load_state_dict(state["model"]), with an error that says what to do when the
    checkpoint was written by a model of another shape (a changed config under the same exp dir),
    instead of torch's list of size mismatches."""
    own = model.state_dict()
    theirs = state["model"]
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    reshaped = [k for k in own if k in theirs and tuple(own[k].shape) != tuple(theirs[k].shape)]
    if missing or unexpected or reshaped:
        detail = []
        if reshaped:
            k = reshaped[0]
            detail.append(f"{len(reshaped)} tensor(s) of another shape, e.g. {k} "
                          f"{list(theirs[k].shape)} in the checkpoint vs {list(own[k].shape)} here")
        if missing:
            detail.append(f"{len(missing)} missing, e.g. {missing[0]}")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
        raise CheckpointError(
            f"{path}: checkpoint does not fit this model ({'; '.join(detail)}): it was written with "
            f"another model config (fix: use the config it was trained with, or move {Path(path).parent} "
            f"aside to start over)")
    model.load_state_dict(theirs)


def list_epoch_checkpoints(exp_dir) -> List[int]:
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in exp_dir.iterdir() if (m := EPOCH_RE.match(p.name)))


def latest_checkpoint(exp_dir) -> Optional[Path]:
    """The newest epoch-N.pt that loads; a corrupt newest one (killed mid-write by an older tool,
    or truncated disk) is reported and skipped so a resume falls back one epoch instead of failing."""
    import logging

    for epoch in reversed(list_epoch_checkpoints(exp_dir)):
        p = Path(exp_dir) / f"epoch-{epoch}.pt"
        try:
            load_checkpoint(p)
            return p
        except CheckpointError as e:
            logging.getLogger("nasr").warning("skipping %s", e)
    return None


def average_checkpoints(paths) -> Dict[str, torch.Tensor]:
    """Element-wise mean of the model weights in `paths` (integer buffers taken from the last)."""
    states = [load_checkpoint(p)["model"] for p in paths]
    if not states:
        raise CheckpointError("no checkpoints to average")
    avg = {}
    for k, v in states[-1].items():
        if v.is_floating_point():
            avg[k] = sum(s[k].double() for s in states).div(len(states)).to(v.dtype)
        else:
            avg[k] = v.clone()
    return avg


def rng_states() -> Dict[str, Any]:
    """Every RNG a training step draws from, to store in a checkpoint."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng_states(states: Dict[str, Any]) -> None:
    """Put back what rng_states() saved: a resumed run then draws what the unbroken run drew."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def copy_checkpoint(src, dst) -> None:
    """Copy a checkpoint file atomically (a temporary file beside `dst`, renamed into place)."""
    with open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)


def ensure_best(exp_dir, history: List[Dict[str, Any]], best_of: Callable[[List[Dict[str, Any]]], int],
                name: str = "best.pt") -> Optional[str]:
    """Make `exp_dir/best.pt` the checkpoint of the epoch `best_of(history)` names.

    A best.pt that is missing, empty, unreadable or of another epoch (a kill between writing
    epoch-N.pt and best.pt) is rebuilt from that epoch's epoch-N.pt; when that file is gone too
    (pruned by keep_last) a CheckpointError says so. Returns what was done (None: best.pt was right)."""
    if not history:
        return None
    exp_dir = Path(exp_dir)
    want = int(best_of(history))
    best = exp_dir / name
    try:
        got = load_checkpoint(best).get("epoch") if best.is_file() and best.stat().st_size else None
        problem = None if got == want else (f"holds epoch {got}" if got is not None else
                                            ("is empty" if best.is_file() else "is missing"))
    except CheckpointError:
        problem = "is unreadable"
    if problem is None:
        return None
    src = exp_dir / f"epoch-{want}.pt"
    try:
        if load_checkpoint(src).get("epoch") != want:
            raise CheckpointError(f"{src}: does not hold epoch {want}")
    except CheckpointError as e:
        raise CheckpointError(
            f"{best} {problem} but the epoch history says the best epoch is {want}, and it cannot be "
            f"rebuilt: {e} (fix: retrain with --no-resume, or restore {src.name} from a backup)") from None
    copy_checkpoint(src, best)
    return f"{best} {problem}; the history's best epoch is {want}: rebuilt from {src.name}"
