"""YAML configs: defaults < YAML file < profile section < command-line overrides; the resolved
config is saved next to the model and read back by every later stage.

Configs are strict: the defaults of a step name every key it reads, so a key they do not name (a
typo such as `epohcs: 1`) is an error naming the file, the line and the closest valid key, whether
it comes from the YAML file, the profile section or a `key=value` override. Below the `free` paths
(e.g. `model`, whose keys are the arguments of the builder its `name` picks) a step checks the keys
itself with a `checks` entry. `checks` also checks values (positive sizes, probabilities, known
names) before the step reads data or writes anything."""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

import yaml

from nasr.utils.io import FormatError, atomic_write

KeyPath = Tuple[str, ...]
Origin = Tuple[str, Optional[int]]  # (file or command-line item, line or None)


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


def key_lines(path) -> Dict[KeyPath, int]:
    """The 1-based line of every mapping key of a YAML file, by key path (anchored sections
    reused with `*alias` report the anchor's lines)."""
    with open(path, encoding="utf-8") as f:
        root = yaml.compose(f, Loader=yaml.SafeLoader)
    lines: Dict[KeyPath, int] = {}

    def walk(node, prefix: KeyPath) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                p = prefix + (str(k.value),)
                lines.setdefault(p, k.start_mark.line + 1)
                walk(v, p)

    walk(root, ())
    return lines


def deep_update(base: Dict[str, Any], update: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in update.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_override(item: str) -> Tuple[KeyPath, Any]:
    """`a.b.c=value` -> (("a", "b", "c"), value); the value is parsed as a YAML scalar (0.1, true, [1,2])."""
    if "=" not in item:
        raise ValueError(f"override '{item}' must look like key.sub=value")
    key, raw = item.split("=", 1)
    return tuple(key.split(".")), yaml.safe_load(raw)


def apply_overrides(cfg: Dict[str, Any], overrides: Iterable[str]) -> Dict[str, Any]:
    """Apply `a.b.c=value` overrides (see parse_override)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or []:
        parts, value = parse_override(item)
        node = cfg
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override '{item}': '{p}' is not a mapping in the config")
        node[parts[-1]] = value
    return cfg


# --- value checks: each takes the value and raises ValueError saying what it must be ----------

def positive_int(v) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError(f"must be a positive integer, got {v!r}")


def non_negative_int(v) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"must be an integer >= 0, got {v!r}")


def positive_number(v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise ValueError(f"must be a number > 0, got {v!r}")


def non_negative_number(v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
        raise ValueError(f"must be a number >= 0, got {v!r}")


def probability(v) -> None:
    """A rate in [0, 1): 1 would drop (or replace) everything."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
        raise ValueError(f"must be a probability in [0, 1), got {v!r}")


def one_of(names: Iterable[str], what: str = "name") -> Callable[[Any], None]:
    known = list(names)

    def check(v) -> None:
        if v not in known:
            close = difflib.get_close_matches(str(v), [str(k) for k in known], n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"names an unknown {what} {v!r}{hint}; known: {', '.join(map(str, known))}")
    return check


def optional(check: Callable[[Any], None]) -> Callable[[Any], None]:
    """`check`, or null (the setting is off)."""
    def wrapped(v) -> None:
        if v is not None:
            check(v)
    return wrapped


def keys_of(names: Iterable[str], what: str = "name", value: Callable[[Any], None] | None = None):
    """A mapping whose keys are known names (e.g. {avg_pool_3x3: 2} of op caps), values checked by `value`."""
    name_check = one_of(names, what)

    def check(v) -> None:
        if v is None:
            return
        if not isinstance(v, dict):
            raise ValueError(f"must be a mapping of {what}s, got {v!r}")
        for k, x in v.items():
            name_check(k)
            if value is not None:
                value(x)
    return check


def list_of(item: Callable[[Any], None]):
    def check(v) -> None:
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"must be a list, got {v!r}")
        for x in v:
            item(x)
    return check


class ConfigError(FormatError):
    """One or more bad keys or values of a config, one `file:line: problem (fix: ...)` per line."""

    def __init__(self, errors: Sequence[FormatError]):
        ValueError.__init__(self, "\n".join(str(e) for e in errors))
        self.errors = list(errors)
        self.path, self.lineno = errors[0].path, errors[0].lineno


class UnknownKeyError(ValueError):
    """Raised by a `checks` function for a free mapping: `key` (below the checked path) is not one of `valid`."""

    def __init__(self, key: str, valid: Sequence[str], what: str = ""):
        self.key, self.valid, self.what = key, list(valid), what
        super().__init__(f"unknown key '{key}'{what}")


# --- loading ---------------------------------------------------------------------------------

def _record(origins: Dict[KeyPath, Origin], data, prefix: KeyPath, source: str,
            lines: Mapping[KeyPath, int]) -> None:
    if isinstance(data, dict):
        for k, v in data.items():
            p = prefix + (str(k),)
            origins[p] = (source, lines.get(p))
            _record(origins, v, p, source, lines)


def _origin(origins: Mapping[KeyPath, Origin], path: KeyPath) -> Origin:
    """Where `path` (or its nearest set ancestor) was last set; () holds the config file itself."""
    for n in range(len(path), -1, -1):
        if path[:n] in origins:
            return origins[path[:n]]
    return ("the step's defaults", None)


def _unknown_key(origins, path: KeyPath, valid: Iterable[str], what: str = "") -> FormatError:
    valid = sorted(str(v) for v in valid)
    dotted = ".".join(path)
    close = difflib.get_close_matches(path[-1], valid, n=1, cutoff=0.5)
    parent = ".".join(path[:-1])
    where = f"in '{parent}'" if parent else "at the top level"
    fix = (f"did you mean '{'.'.join(path[:-1] + (close[0],))}'?" if close
           else f"remove it; valid keys {where}: {', '.join(valid)}")
    source, line = _origin(origins, path)
    return FormatError(source, line, f"unknown config key '{dotted}'{what}", fix)


def _check_keys(cfg: Mapping, schema: Mapping, origins, free: Sequence[str], prefix: KeyPath = ()) -> list:
    """A FormatError for every key of `cfg` that `schema` does not name (below non-free paths)."""
    errors = []
    for key, value in cfg.items():
        path = prefix + (str(key),)
        if ".".join(path) in free:
            continue  # its own checks entry reads these keys
        if key not in schema:
            errors.append(_unknown_key(origins, path, schema))
        elif isinstance(schema[key], dict):
            if not isinstance(value, dict):
                source, line = _origin(origins, path)
                errors.append(FormatError(source, line, f"'{'.'.join(path)}' must be a mapping, got {value!r}",
                                          f"write `{key}:` then indented `key: value` lines"))
            else:
                errors += _check_keys(value, schema[key], origins, free, path)
    return errors


def _get(cfg: Mapping, path: KeyPath):
    node: Any = cfg
    for p in path:
        if not isinstance(node, dict) or p not in node:
            return False, None
        node = node[p]
    return True, node


def _run_checks(cfg: Mapping, checks: Mapping[str, Callable[[Any], None]], origins) -> list:
    errors = []
    for dotted, check in checks.items():
        path = tuple(dotted.split("."))
        found, value = _get(cfg, path)
        if not found:
            continue
        try:
            check(value)
        except UnknownKeyError as e:
            errors.append(_unknown_key(origins, path + (e.key,), e.valid, e.what))
        except (ValueError, TypeError) as e:
            source, line = _origin(origins, path)
            errors.append(FormatError(source, line, f"'{dotted}' {e}", f"correct '{dotted}'"))
    return errors


def load_config(path=None, overrides: Iterable[str] = (), defaults: Dict[str, Any] | None = None,
                profile=None, free: Sequence[str] = (), checks: Mapping[str, Callable] | None = None):
    """defaults < YAML `path` < the `profile` file's section named after `path`'s stem < overrides.

    A profile (e.g. conf/synth.yaml) holds one section per step config, so a recipe switches
    every step to a small setting with one flag while each step keeps a single config file.

    With `defaults`, every key must be one the defaults name (at every depth), except below the
    dotted `free` paths; `checks` maps dotted paths to value checks (see positive_int, one_of, ...).
    Failures raise one ConfigError (a FormatError) listing each with the file and line (or the
    override) that set the key."""
    cfg = copy.deepcopy(defaults or {})
    origins: Dict[KeyPath, Origin] = {}
    if path is not None:
        data = load_yaml(path)
        origins[()] = (str(path), None)  # a value the file leaves at its default
        _record(origins, data, (), str(path), key_lines(path))
        cfg = deep_update(cfg, data)
    if profile is not None:
        stem = Path(path).stem if path is not None else None
        section = load_yaml(profile).get(stem, {}) if stem is not None else {}
        lines = {p[1:]: n for p, n in key_lines(profile).items() if p[:1] == (stem,) and len(p) > 1}
        if not isinstance(section, dict):
            raise FormatError(profile, key_lines(profile).get((stem,)), f"section '{stem}' must be a mapping",
                              "write `stem:` then indented `key: value` lines")
        _record(origins, section, (), str(profile), lines)
        cfg = deep_update(cfg, section)
    for item in overrides or []:
        parts, value = parse_override(item)
        _record(origins, {parts[-1]: value}, parts[:-1], f"--override {item}", {})
        for n in range(1, len(parts)):
            origins.setdefault(parts[:n], (f"--override {item}", None))
        cfg = apply_overrides(cfg, [item])
    errors = _check_keys(cfg, defaults, origins, tuple(free)) if defaults is not None else []
    if checks and not errors:  # values are checked once every key is known
        errors = _run_checks(cfg, checks, origins)
    if errors:
        raise ConfigError(errors)
    return cfg


def diff_configs(old: Mapping, new: Mapping, prefix: str = "") -> Dict[str, Tuple[Any, Any]]:
    """{dotted key: (old value, new value)} for every leaf that differs (missing = None)."""
    out: Dict[str, Tuple[Any, Any]] = {}
    for k in list(old) + [k for k in new if k not in old]:
        a, b = old.get(k), new.get(k)
        key = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(diff_configs(a, b, key + "."))
        elif a != b:
            out[key] = (a, b)
    return out


def save_config(cfg: Dict[str, Any], path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        yaml.safe_dump(cfg, f, sort_keys=False, allow_unicode=True)
