"""A tower (stack of blocks) as JSON data and as a network; parameter transfer between towers.

Tower JSON (a `tower.json` file, or the `blocks` column of the candidate store):

    {"blocks": ["lstm_256", "lstm_512", "svdf_1024_16"]}

Block names are those of nasr.tower.blocks; DESIGN.md's list form `[["svdf", 256, 16], ["rnn", 256]]`
is read too (as the bare top-level list or as the `blocks` value) and written back as names.  Other
keys (loss, accuracy, candidate id, hyperparameters) may sit beside `blocks` and are kept as metadata.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from nasr.tower.blocks import (BlockError, block_macs_per_frame, block_out_dim, block_params, build_block,
                               canonical_name)
from nasr.utils.io import FormatError, atomic_write


def parse_tower(text: str, source: str = "<tower>") -> Tuple[List[str], Dict]:
    """JSON text -> (canonical block names, metadata).  Errors name `source`, the line and the fix."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(source, e.lineno, f"tower JSON does not parse: {e.msg} (column {e.colno})",
                          'write it like {"blocks": ["lstm_256", "proj_128"]}') from None
    meta: Dict = {}
    if isinstance(data, dict):
        if "blocks" not in data:
            raise FormatError(source, 1, "tower JSON has no 'blocks' key", 'add "blocks": ["lstm_256", ...]')
        meta = {k: v for k, v in data.items() if k != "blocks"}
        data = data["blocks"]
    if not isinstance(data, list) or not data:
        raise FormatError(source, 1, "a tower needs a non-empty list of blocks",
                          'write it like {"blocks": ["lstm_256", "proj_128"]}')
    names = []
    for i, spec in enumerate(data):
        try:
            names.append(canonical_name(spec))
        except BlockError as e:
            raise FormatError(source, _line_of(text, spec), f"block {i + 1}: {e}") from None
    return names, meta


def _line_of(text: str, spec) -> int | None:
    needle = json.dumps(spec if isinstance(spec, str) else (spec[0] if spec else ""))
    for lineno, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return lineno
    return None


def load_tower(path) -> Tuple[List[str], Dict]:
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, None, "tower file does not exist", "check the path or rerun the search stage")
    return parse_tower(path.read_text(encoding="utf-8"), str(path))


def tower_to_json(blocks: Sequence, **meta) -> str:
    return json.dumps({"blocks": [canonical_name(b) for b in blocks], **meta}, indent=1, sort_keys=False)


def save_tower(path, blocks: Sequence, **meta) -> None:
    with atomic_write(path) as f:
        f.write(tower_to_json(blocks, **meta) + "\n")


def tower_str(blocks: Sequence[str]) -> str:
    """Human-readable, as in the paper's Table 3: 'LSTM256, LSTM512, SVDF1024-16'."""
    out = []
    for b in blocks:
        kind, *dims = canonical_name(b).split("_")
        out.append(kind.upper() + "-".join(dims))
    return ", ".join(out)


class TowerNet(nn.Module):
    """blocks with dropout between them -> mean over each utterance's valid frames -> linear logits.

    Dropout sits between blocks only (the paper's footnote 3: "dropout between blocks, 0.3"): the
    last block's output goes to the pooling and the head undropped, and a one-block tower has none."""

    def __init__(self, blocks: Sequence, input_dim: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.block_names = [canonical_name(b) for b in blocks]
        if not self.block_names:
            raise ValueError("a tower needs at least one block")
        layers, dim = [], input_dim
        for name in self.block_names:
            block = build_block(name, dim)
            layers.append(block)
            dim = block.out_dim
        self.blocks = nn.ModuleList(layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)
        self.input_dim, self.num_classes = input_dim, num_classes

    def set_dropout(self, p: float) -> None:
        self.dropout.p = p

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, F), lengths (B,) valid frames per row (None: all T) -> logits (B, K)."""
        for i, block in enumerate(self.blocks):
            x = block(self.dropout(x) if i > 0 else x)
        if lengths is None:
            return self.head(x.mean(dim=1))
        mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]).to(x.dtype)
        pooled = (x * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        return self.head(pooled)


def tower_params(blocks: Sequence, input_dim: int, num_classes: int) -> int:
    total, dim = 0, input_dim
    for b in blocks:
        total += block_params(b, dim)
        dim = block_out_dim(b)
    return total + dim * num_classes + num_classes


def tower_macs(blocks: Sequence, input_dim: int, num_classes: int, frames: int) -> int:
    """Multiply-accumulates for one utterance of `frames` frames (blocks per frame, head once)."""
    total, dim = 0, input_dim
    for b in blocks:
        total += frames * block_macs_per_frame(b, dim)
        dim = block_out_dim(b)
    return total + dim * num_classes


def common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of b' (eq. 3): the blocks b_i with a_j == b_j for every j <= i."""
    n = 0
    for x, y in zip(a, b):
        if canonical_name(x) != canonical_name(y):
            break
        n += 1
    return n


def transfer(src_state: Dict[str, torch.Tensor], src_blocks: Sequence[str], dst: TowerNet) -> int:
    """TRANSFER: copy the weights of the longest common prefix of `src_blocks` and `dst`'s blocks
    from a trained tower's state dict into `dst`.  Equal names imply equal shapes because the input
    of block i is fixed by the blocks below it.  The head moves too when the towers are identical
    and the class count matches.  Returns the number of blocks copied."""
    n = common_prefix(src_blocks, dst.block_names)
    prefixes = [f"blocks.{i}." for i in range(n)]
    if n == len(dst.block_names) == len(src_blocks):
        prefixes.append("head.")
    own = dst.state_dict()
    copied = {k: v for k, v in src_state.items()
              if any(k.startswith(p) for p in prefixes) and k in own and own[k].shape == v.shape}
    own.update(copied)
    dst.load_state_dict(own)
    return n
