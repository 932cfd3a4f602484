"""Tower building blocks (tower-search paper, Table 2): one name = one block with its dimensions.

    rnn_<k>         tanh RNN with k units
    lstm_<k>        LSTM with k units
    proj_<k>        dense per-frame projection to k outputs (a kernel-1 1-D convolution, linear)
    svdf_<k>_<d>    rank-1 SVDF with k units and memory d frames (feature filter, then a causal
                    depthwise time filter of length d per unit, bias, ReLU)

Every block maps (B, T, in_dim) -> (B, T, out_dim) and is causal, so frames past an utterance's end
(padding) never change the outputs at its valid frames: pooling over valid frames is exact without
packing sequences.  The name carries every dimension, so two towers share a block exactly when the
names match (and the inputs match: see `transfer` in nasr.tower.tower).
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Sequence, Tuple, Union

import torch
from torch import nn

BlockSpec = Union[str, Sequence]

# kind -> number of integer dimensions in its name
BLOCK_KINDS: Dict[str, int] = {"rnn": 1, "lstm": 1, "proj": 1, "svdf": 2}
_NAME_RE = re.compile(r"^([a-z]+)((?:_\d+)+)$")


class BlockError(ValueError):
    """An unknown or malformed block name; the message lists what is known and how to fix it."""


def parse_block_name(spec: BlockSpec) -> Tuple[str, Tuple[int, ...]]:
    """'svdf_256_16' or ["svdf", 256, 16] (DESIGN.md's list form) -> ("svdf", (256, 16))."""
    if isinstance(spec, (list, tuple)):
        if not spec or not isinstance(spec[0], str) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                              for v in spec[1:]):
            raise BlockError(f"block spec {list(spec)!r} must be [kind, int, ...], e.g. [\"svdf\", 256, 16]")
        spec = "_".join([spec[0]] + [str(v) for v in spec[1:]])
    if not isinstance(spec, str):
        raise BlockError(f"block spec {spec!r} must be a name like 'lstm_256' or a list like [\"lstm\", 256]")
    m = _NAME_RE.match(spec)
    kind = m.group(1) if m else spec.split("_")[0]
    if kind not in BLOCK_KINDS:
        raise BlockError(f"unknown block '{spec}' (fix: use one of the kinds {', '.join(sorted(BLOCK_KINDS))} "
                         f"as {', '.join(_example(k) for k in sorted(BLOCK_KINDS))})")
    dims = tuple(int(v) for v in m.group(2)[1:].split("_")) if m else ()
    if len(dims) != BLOCK_KINDS[kind] or any(d < 1 for d in dims):
        raise BlockError(f"block '{spec}': {kind} takes {BLOCK_KINDS[kind]} positive dimension(s) "
                         f"(fix: write it like {_example(kind)})")
    return kind, dims


def canonical_name(spec: BlockSpec) -> str:
    kind, dims = parse_block_name(spec)
    return "_".join([kind] + [str(d) for d in dims])


def _example(kind: str) -> str:
    return {"rnn": "rnn_256", "lstm": "lstm_512", "proj": "proj_128", "svdf": "svdf_256_16"}[kind]


class RecurrentBlock(nn.Module):
    def __init__(self, cell: type, in_dim: int, units: int):
        super().__init__()
        self.rnn = cell(in_dim, units, batch_first=True)
        self.out_dim = units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class ProjBlock(nn.Module):
    """Dense per-frame projection written as a kernel-1 1-D convolution (the paper's PROJ_k)."""

    def __init__(self, in_dim: int, units: int):
        super().__init__()
        self.conv = nn.Conv1d(in_dim, units, kernel_size=1)
        self.out_dim = units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.transpose(1, 2)).transpose(1, 2)


class SvdfBlock(nn.Module):
    """Rank-1 SVDF: each unit projects the frame to one value (feature filter), keeps the last d of
    those values as its memory and filters them in time (time filter).  The left-only padding makes
    it causal, like the streaming layer it was designed as."""

    def __init__(self, in_dim: int, units: int, memory: int):
        super().__init__()
        self.feature_filter = nn.Linear(in_dim, units, bias=False)
        self.time_filter = nn.Conv1d(units, units, kernel_size=memory, groups=units, bias=True)
        self.memory = memory
        self.out_dim = units

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.feature_filter(x).transpose(1, 2)                 # (B, k, T)
        h = nn.functional.pad(h, (self.memory - 1, 0))
        return torch.relu(self.time_filter(h)).transpose(1, 2)     # (B, T, k)


_FACTORIES: Dict[str, Callable[..., nn.Module]] = {
    "rnn": lambda in_dim, k: RecurrentBlock(nn.RNN, in_dim, k),
    "lstm": lambda in_dim, k: RecurrentBlock(nn.LSTM, in_dim, k),
    "proj": lambda in_dim, k: ProjBlock(in_dim, k),
    "svdf": lambda in_dim, k, d: SvdfBlock(in_dim, k, d),
}


def build_block(name: BlockSpec, in_dim: int) -> nn.Module:
    """The block called `name` over `in_dim` inputs; its `out_dim` attribute is the output size."""
    kind, dims = parse_block_name(name)
    return _FACTORIES[kind](in_dim, *dims)


def block_out_dim(name: BlockSpec) -> int:
    return parse_block_name(name)[1][0]


def block_params(name: BlockSpec, in_dim: int) -> int:
    """Parameters of a block, computed without building it (used to size towers in reports)."""
    kind, dims = parse_block_name(name)
    k = dims[0]
    if kind == "rnn":
        return k * (in_dim + k) + 2 * k
    if kind == "lstm":
        return 4 * (k * (in_dim + k) + 2 * k)
    if kind == "proj":
        return in_dim * k + k
    return in_dim * k + k * dims[1] + k


def block_macs_per_frame(name: BlockSpec, in_dim: int) -> int:
    kind, dims = parse_block_name(name)
    k = dims[0]
    if kind == "rnn":
        return k * (in_dim + k)
    if kind == "lstm":
        return 4 * k * (in_dim + k)
    if kind == "proj":
        return in_dim * k
    return in_dim * k + k * dims[1]


def load_block_set(path) -> Tuple[str, list]:
    """A block-set YAML (conf/blocks_b1.yaml): `name: b1` and `blocks: [lstm_256, svdf_256_16, ...]`.
    Returns (name, canonical block names); a bad entry is reported with its file and line."""
    from nasr.utils.config import load_yaml
    from nasr.utils.io import FormatError

    cfg = load_yaml(path)
    blocks = cfg.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise FormatError(path, None, "no `blocks:` list", "add `blocks: [lstm_256, rnn_128, ...]`")
    names = []
    for spec in blocks:
        try:
            names.append(canonical_name(spec))
        except BlockError as e:
            raise FormatError(path, _line_of(path, spec), str(e)) from None
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise FormatError(path, _line_of(path, dup), f"block '{dup}' is listed twice", "list each block once")
    return str(cfg.get("name", "blocks")), names


def _line_of(path, spec) -> int | None:
    """1-based line of the first line of `path` mentioning `spec` (YAML loaders drop line numbers)."""
    needle = spec if isinstance(spec, str) else str(spec[0] if spec else "")
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if needle and needle in line:
                return lineno
    return None
