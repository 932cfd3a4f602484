"""The genotype: a searched cell pair as a small JSON value, and DARTS's rule to derive it from alphas.

JSON format (DARTS-compatible fields plus the op space it was searched in)::

    {"space": "nas1",
     "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ...],
     "normal_concat": [2, 3, 4, 5],
     "reduce": [...],
     "reduce_concat": [2, 3, 4, 5]}

Edge list entries 2i and 2i+1 are the two inputs of intermediate node i; an input index j < 2 is
one of the cell inputs (0 = c_{k-2}, 1 = c_{k-1}) and j >= 2 is intermediate node j-2. Loading
validates everything a training run would otherwise trip over hours later, and never evaluates text.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np

from nasr.nas.ops import OPS, RETIRED_OPS, unknown_op_message
from nasr.nas.spaces import OP_SPACES
from nasr.utils.io import FormatError, atomic_write

FIELDS = ("space", "normal", "normal_concat", "reduce", "reduce_concat")
CELLS = ("normal", "reduce")


def num_edges(steps: int) -> int:
    """Edges of a cell with `steps` intermediate nodes: node i has i + 2 candidate inputs."""
    return sum(i + 2 for i in range(steps))


def _line_of(text: str | None, needle: str) -> int | None:
    """1-based line of the first occurrence of `needle` in `text` (for error messages)."""
    if not text:
        return None
    for lineno, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return lineno
    return None


def _check_cell(d: Mapping, cell: str, space: str, source: str, text: str | None):
    """Validate one cell's edge list and concat list; return them normalised."""
    edges = d[cell]
    fix_shape = f'write "{cell}" as a list of ["op_name", input_index] pairs, two per node'
    if not isinstance(edges, list) or not edges or len(edges) % 2:
        raise FormatError(source, _line_of(text, f'"{cell}"'),
                          f'"{cell}" must be a non-empty list with an even number of edges', fix_shape)
    allowed = OP_SPACES[space]
    out: List[Tuple[str, int]] = []
    for k, edge in enumerate(edges):
        if (not isinstance(edge, (list, tuple)) or len(edge) != 2 or not isinstance(edge[0], str)
                or isinstance(edge[1], bool) or not isinstance(edge[1], int)):
            raise FormatError(source, _line_of(text, f'"{cell}"'),
                              f'"{cell}" edge {k} is {edge!r}, not an ["op_name", input_index] pair',
                              fix_shape)
        op, j = edge[0], edge[1]
        if op in RETIRED_OPS:
            raise FormatError(source, _line_of(text, f'"{op}"'),
                              f'op "{op}" in the {cell} cell of a "{space}" genotype is a retired name',
                              RETIRED_OPS[op])
        if op not in allowed:
            raise FormatError(source, _line_of(text, f'"{op}"'),
                              f'op "{op}" in the {cell} cell is not in op space "{space}"',
                              f"use one of: {', '.join(allowed)}")
        node = k // 2
        if not 0 <= j < node + 2:
            raise FormatError(source, _line_of(text, f'"{cell}"'),
                              f'"{cell}" edge {k} (node {node}) takes input {j}, but node {node} can '
                              f'only read inputs 0..{node + 1}',
                              "inputs 0 and 1 are the cell inputs, j >= 2 is node j-2 (earlier nodes only)")
        out.append((op, int(j)))
    steps = len(out) // 2
    concat = d[f"{cell}_concat"]
    key = f"{cell}_concat"
    if (not isinstance(concat, list) or not concat
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in concat)):
        raise FormatError(source, _line_of(text, f'"{key}"'), f'"{key}" must be a non-empty list of ints',
                          f"e.g. {list(range(2, steps + 2))}")
    bad = [c for c in concat if not 0 <= c < steps + 2]
    if bad or len(set(concat)) != len(concat):
        raise FormatError(source, _line_of(text, f'"{key}"'),
                          f'"{key}" {concat} must name distinct states in 0..{steps + 1}',
                          f"e.g. {list(range(2, steps + 2))}")
    return out, [int(c) for c in concat]


@dataclass
class Genotype:
    space: str
    normal: List[Tuple[str, int]]
    normal_concat: List[int]
    reduce: List[Tuple[str, int]]
    reduce_concat: List[int]

    def __post_init__(self):
        # Normalise (JSON gives lists, DARTS gives tuples/ranges) and validate code-built genotypes.
        checked = self._validated(self.to_dict(), "<Genotype>", None)
        self.normal, self.normal_concat = checked["normal"], checked["normal_concat"]
        self.reduce, self.reduce_concat = checked["reduce"], checked["reduce_concat"]

    # -- validation -----------------------------------------------------------------------------
    @staticmethod
    def _validated(d, source: str, text: str | None) -> Dict:
        if not isinstance(d, Mapping):
            raise FormatError(source, 1, "a genotype must be a JSON object",
                              f"write an object with the keys {', '.join(FIELDS)}")
        missing = [k for k in FIELDS if k not in d]
        if missing:
            raise FormatError(source, None, f"genotype lacks {', '.join(missing)}",
                              f"give all of {', '.join(FIELDS)}")
        extra = sorted(set(d) - set(FIELDS))
        if extra:
            raise FormatError(source, _line_of(text, f'"{extra[0]}"'),
                              f"unknown genotype keys {', '.join(extra)}",
                              f"keep only {', '.join(FIELDS)}")
        space = d["space"]
        if space not in OP_SPACES:
            raise FormatError(source, _line_of(text, '"space"'), f"unknown op space {space!r}",
                              f"use one of: {', '.join(OP_SPACES)}")
        out = {"space": space}
        for cell in CELLS:
            # Accept DARTS's tuples and ranges too when built in code.
            cell_d = {cell: [list(e) if isinstance(e, tuple) else e for e in d[cell]]
                      if isinstance(d[cell], (list, tuple)) else d[cell],
                      f"{cell}_concat": list(d[f"{cell}_concat"])
                      if isinstance(d[f"{cell}_concat"], (list, tuple, range)) else d[f"{cell}_concat"]}
            out[cell], out[f"{cell}_concat"] = _check_cell(cell_d, cell, space, source, text)
        return out

    # -- conversions ----------------------------------------------------------------------------
    @property
    def steps(self) -> int:
        return len(self.normal) // 2

    def to_dict(self) -> Dict:
        return {
            "space": self.space,
            "normal": [[op, j] for op, j in self.normal],
            "normal_concat": list(self.normal_concat),
            "reduce": [[op, j] for op, j in self.reduce],
            "reduce_concat": list(self.reduce_concat),
        }

    @classmethod
    def from_dict(cls, d: Mapping, source: str = "<dict>", text: str | None = None) -> "Genotype":
        checked = cls._validated(d, str(source), text)
        return cls(**checked)

    def to_json(self) -> str:
        # One field per line: diffable, and error line numbers point at the right cell.
        d = self.to_dict()
        body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(d[k])}" for k in FIELDS)
        return "{\n" + body + "\n}\n"

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> "Genotype":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise FormatError(source, e.lineno, f"not valid JSON: {e.msg} (column {e.colno})",
                              "write the genotype as JSON, e.g. as saved by a search") from None
        return cls.from_dict(d, source=source, text=text)

    def save(self, path) -> None:
        with atomic_write(path) as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path) -> "Genotype":
        text = Path(path).read_text(encoding="utf-8")
        return cls.from_json(text, source=str(path))


# The published DARTS (second order) CIFAR-10 cell pair, in DARTS's edge order.
DARTS_V2 = Genotype(
    space="darts",
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_sep_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)


# ----------------------------------------------------------------------------------------------
# deriving a genotype from alphas

OpNames = Union[Sequence[str], Mapping[str, Sequence[Sequence[str]]]]


def expand_edge_ops(op_names: OpNames, n_edges: int, cell: str) -> List[List[str]]:
    """Per-edge op lists for `cell` ("normal"/"reduce").

    `op_names` is one op list shared by every edge, or (as after a P-DARTS stage shrinks each edge
    to its own best ops) a mapping {"normal": [ops of edge 0, ...], "reduce": [...]}.
    """
    if isinstance(op_names, Mapping):
        if cell not in op_names:
            raise ValueError(f"per-edge op lists lack the '{cell}' cell")
        lists = [list(ops) for ops in op_names[cell]]
    else:
        if not op_names or isinstance(op_names, str):
            raise ValueError(f"op_names must be a non-empty list of op names, got {op_names!r}")
        lists = [list(op_names) for _ in range(n_edges)]
    if len(lists) != n_edges:
        raise ValueError(f"{cell} cell has {n_edges} edges but {len(lists)} op lists were given")
    widths = {len(ops) for ops in lists}
    if len(widths) != 1 or 0 in widths:
        raise ValueError(f"every {cell} edge needs the same, non-zero number of ops (got {sorted(widths)})")
    for ops in lists:
        unknown = [o for o in ops if o not in OPS]
        if unknown:
            raise ValueError("; ".join(unknown_op_message(o) for o in unknown))
    return lists


def _softmax(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().float().cpu().numpy()
    a = np.asarray(a, dtype=np.float64)
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _parse_cell(weights: np.ndarray, allowed: np.ndarray, edge_ops: List[List[str]], steps: int):
    """DARTS's rule: per node the 2 inputs whose best allowed op is strongest, each with that op.

    Returns the gene [(op, input)] and, per gene entry, (edge, op column, weight).
    """
    masked = np.where(allowed, weights, -np.inf)
    gene, picks = [], []
    start = 0
    for node in range(steps):
        n_in = node + 2
        rows = masked[start:start + n_in]
        strength = rows.max(axis=1)
        # Stable sort: ties go to the lower input index, as DARTS's sorted() does.
        chosen = sorted(range(n_in), key=lambda j: -strength[j])[:2]
        for j in chosen:
            if not np.isfinite(strength[j]):
                raise ValueError(f"node {node} has no allowed op left on input {j} "
                                 f"(max_ops caps exclude every candidate; raise the caps)")
            k = int(np.argmax(rows[j]))
            gene.append((edge_ops[start + j][k], j))
            picks.append((start + j, k, float(rows[j, k])))
        start += n_in
    return gene, picks


def _derive_cell(alphas, edge_ops: List[List[str]], steps: int, caps: Mapping[str, int] | None,
                 edge_weights=None):
    weights = _softmax(alphas)
    if weights.shape != (num_edges(steps), len(edge_ops[0])):
        raise ValueError(f"alphas have shape {weights.shape}, expected "
                         f"({num_edges(steps)}, {len(edge_ops[0])}) for {steps} steps")
    if edge_weights is not None:
        # PC-DARTS: an edge's op weights times its edge weight rank the edges into a node (the
        # op chosen on an edge is the same either way: one scale per row).
        if hasattr(edge_weights, "detach"):
            edge_weights = edge_weights.detach().float().cpu().numpy()
        edge_weights = np.asarray(edge_weights, dtype=np.float64)
        if edge_weights.shape != (num_edges(steps),):
            raise ValueError(f"edge weights have shape {edge_weights.shape}, expected "
                             f"({num_edges(steps)},) for {steps} steps")
        weights = weights * edge_weights[:, None]
    allowed = np.array([[op != "none" for op in ops] for ops in edge_ops], dtype=bool)
    caps = dict(caps or {})
    unknown = [o for o in caps if o not in OPS]
    if unknown:
        raise ValueError("max_ops names unknown ops: "
                         + "; ".join(unknown_op_message(o) for o in unknown))
    while True:
        gene, picks = _parse_cell(weights, allowed, edge_ops, steps)
        over = next((op for op, cap in caps.items()
                     if sum(1 for o, _ in gene if o == op) > cap), None)
        if over is None:
            return gene
        # P-DARTS's refinement: drop the weakest instance of the over-used op and re-derive, so that
        # edge takes its next best op (or the node picks another input if that is now stronger).
        edge, k, _ = min((p for p, (o, _) in zip(picks, gene) if o == over), key=lambda p: p[2])
        allowed[edge, k] = False


def derive_genotype(alphas_normal, alphas_reduce, op_names: OpNames, space: str, steps: int = 4,
                    multiplier: int = 4, max_ops: Mapping[str, int] | None = None,
                    max_ops_reduce: Mapping[str, int] | None = None,
                    edge_weights: Sequence | None = None) -> Genotype:
    """The discrete cell pair DARTS reads off the alphas.

    Per node keep the 2 incoming edges whose strongest non-`none` op (softmax weight) is largest,
    and on each the op of that weight. `max_ops` (e.g. {"avg_pool_3x3": 2}) caps how many of an op
    the normal cell keeps (P-DARTS restricts the normal cell; the ASR paper caps avg pooling there);
    `max_ops_reduce` does the same for the reduction cell. `edge_weights` [normal, reduce] (PC-DARTS's
    normalised betas, one per edge) multiply each edge's op weights before the edges are ranked.
    """
    if space not in OP_SPACES:
        raise ValueError(f"unknown op space '{space}' (known spaces: {', '.join(OP_SPACES)})")
    n_edges = num_edges(steps)
    e_normal, e_reduce = edge_weights if edge_weights is not None else (None, None)
    normal = _derive_cell(alphas_normal, expand_edge_ops(op_names, n_edges, "normal"), steps, max_ops,
                          e_normal)
    reduce = _derive_cell(alphas_reduce, expand_edge_ops(op_names, n_edges, "reduce"), steps,
                          max_ops_reduce, e_reduce)
    concat = list(range(2 + steps - multiplier, steps + 2))
    return Genotype(space=space, normal=normal, normal_concat=concat, reduce=reduce,
                    reduce_concat=concat)


__all__ = ["Genotype", "DARTS_V2", "derive_genotype", "expand_edge_ops", "num_edges", "FIELDS"]
