"""YAML configs: defaults < YAML file < command-line overrides; the resolved config is saved
next to the model and read back by every later stage."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, Iterable

import yaml

from nasr.utils.io import FormatError, atomic_write


def load_yaml(path) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        raise FormatError(path, None if line is None else line + 1, f"not valid YAML: {e}",
                          "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise FormatError(path, 1, "top level must be a mapping", "write `key: value` lines")
    return data


def deep_update(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def apply_overrides(cfg: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """Apply `a.b.c=value` overrides; values are parsed as YAML scalars (so 0.1, true, [1,2] work)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override '{item}' must look like key.sub=value")
        key, raw = item.split("=", 1)
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override '{item}': '{p}' is not a mapping in the config")
        node[parts[-1]] = yaml.safe_load(raw)
    return cfg


def load_config(path=None, overrides: Iterable[str] = (), defaults: Dict[str, Any] | None = None,
                profile=None):
    """defaults < YAML `path` < the `profile` file's section named after `path`'s stem < overrides.

    A profile (e.g. conf/synth.yaml) holds one section per step config, so a recipe switches
    every step to a small setting with one flag while each step keeps a single config file."""
    cfg = copy.deepcopy(defaults or {})
    if path is not None:
        cfg = deep_update(cfg, load_yaml(path))
    if profile is not None:
        section = load_yaml(profile).get(Path(path).stem, {}) if path is not None else {}
        if not isinstance(section, dict):
            raise FormatError(profile, None, f"section '{Path(path).stem}' must be a mapping",
                              "write `stem:` then indented `key: value` lines")
        cfg = deep_update(cfg, section)
    return apply_overrides(cfg, overrides)


def save_config(cfg: Dict[str, Any], path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        yaml.safe_dump(cfg, f, sort_keys=False, allow_unicode=True)
