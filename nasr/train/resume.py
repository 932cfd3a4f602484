"""What a rerun may do to an experiment dir that already holds checkpoints.

A resume continues the run its checkpoints belong to: a config that would change that run (more
epochs, another lr schedule, another genotype) is refused with the keys that differ, unless the
command says `--allow-config-change`; the change is then appended to <exp-dir>/config_changes.log
so the record says the run was altered midway. Keys that do not change the run (loader workers,
how many checkpoints to keep) may differ freely."""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Dict, Mapping, Sequence, Tuple

from nasr.utils.config import diff_configs, load_yaml
from nasr.utils.io import atomic_write

CHANGES_LOG = "config_changes.log"


class ConfigChangeError(ValueError):
    """A resume whose config differs from the exp dir's in keys that alter the run."""


def _short(v: Any) -> str:
    s = json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= 80 else s[:77] + "..."


def _default_at(defaults: Mapping, key: str):
    node: Any = defaults
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def config_changes(exp_dir, cfg: Mapping, may_change: Sequence[str] = (),
                   extra: Mapping[str, Tuple[Any, Any]] | None = None,
                   defaults: Mapping | None = None) -> Dict[str, Tuple[Any, Any]]:
    """The run-altering differences between `cfg` and the exp dir's config.yaml ({} without one):
    {dotted key: (old, new)}, leaving out keys under the dotted prefixes in `may_change`; `extra`
    adds differences found elsewhere (e.g. the genotype file's content). With `defaults`, a key
    the old config.yaml lacks (written before the key existed) and the new one holds at its
    default is no change: the older run ran with that default's behaviour."""
    path = Path(exp_dir) / "config.yaml"
    old = load_yaml(path) if path.is_file() else {}
    diffs = {k: v for k, v in diff_configs(old, cfg).items()
             if not any(k == p or k.startswith(p + ".") for p in may_change)} if old else {}
    if defaults is not None:
        diffs = {k: (a, b) for k, (a, b) in diffs.items()
                 if not (a is None and _absent(old, k) and _default_at(defaults, k) == b)}
    diffs.update(extra or {})
    return diffs


def _absent(cfg: Mapping, key: str) -> bool:
    return _default_at(cfg, key) is _MISSING


def check_resume_config(exp_dir, diffs: Mapping[str, Tuple[Any, Any]], allow: bool) -> None:
    """Refuse (ConfigChangeError) a resume with run-altering `diffs` unless `allow`."""
    if diffs and not allow:
        listed = "; ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in diffs.items())
        raise ConfigChangeError(
            f"{exp_dir}: the config differs from the one its checkpoints were trained with ({listed}); "
            f"resuming would mix two runs (fix: use the exp dir's config.yaml, pass "
            f"--allow-config-change to continue with the new settings, or use another --exp-dir)")


def record_config_change(exp_dir, diffs: Mapping[str, Tuple[Any, Any]], command: str,
                         epoch: int | None = None) -> None:
    """Append the allowed change to <exp-dir>/config_changes.log (rewritten atomically)."""
    path = Path(exp_dir) / CHANGES_LOG
    before = path.read_text(encoding="utf-8") if path.is_file() else ""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    after = f" after epoch {epoch}" if epoch is not None else ""
    lines = [f"{stamp} resumed{after} with --allow-config-change: {command}"]
    lines += [f"  {k}: {_short(a)} -> {_short(b)}" for k, (a, b) in diffs.items()]
    with atomic_write(path) as f:
        f.write(before + "\n".join(lines) + "\n")
