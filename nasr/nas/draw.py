"""Cell pictures of a genotype as Graphviz DOT text, rendered to PNG/SVG when `dot` is installed,
and a search's alphas as a heatmap.

The DOT text is always written, so a machine without Graphviz still leaves a drawable file.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence

from nasr.nas.genotype import Genotype
from nasr.utils.io import atomic_write

log = logging.getLogger(__name__)
_said_no_dot = False  # a process draws many genotypes (every seed, stage, epoch): say it once


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def genotype_to_dot(genotype: Genotype, cell: str = "normal") -> str:
    """DOT text of one cell: inputs c_{k-2}, c_{k-1}, nodes 0..steps-1, edges labelled by op, and
    the concatenated output c_{k}."""
    if cell not in ("normal", "reduce"):
        raise ValueError(f"cell must be 'normal' or 'reduce', got {cell!r}")
    edges = genotype.normal if cell == "normal" else genotype.reduce
    concat = genotype.normal_concat if cell == "normal" else genotype.reduce_concat
    steps = len(edges) // 2

    def state(j: int) -> str:
        return ("c_{k-2}", "c_{k-1}")[j] if j < 2 else str(j - 2)

    lines: List[str] = [
        f"digraph {_q(cell)} {{",
        "  rankdir=LR;",
        '  edge [fontsize=20, fontname="helvetica"];',
        '  node [style="rounded, filled", shape=rect, align=center, fontsize=20, height=0.5, '
        'width=0.5, penwidth=2, fontname="helvetica"];',
        f'  {_q("c_{k-2}")} [fillcolor=darkseagreen2];',
        f'  {_q("c_{k-1}")} [fillcolor=darkseagreen2];',
    ]
    lines += [f"  {_q(str(i))} [fillcolor=lightblue];" for i in range(steps)]
    lines.append(f'  {_q("c_{k}")} [fillcolor=palegoldenrod];')
    for k, (op, j) in enumerate(edges):
        lines.append(f"  {_q(state(j))} -> {_q(str(k // 2))} [label={_q(op)}, fillcolor=gray];")
    for j in concat:
        lines.append(f'  {_q(state(j))} -> {_q("c_{k}")} [fillcolor=gray];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_genotype(genotype: Genotype, out_prefix) -> Dict[str, List[Path]]:
    """Write `<prefix>_normal.dot` and `<prefix>_reduce.dot`, plus .png and .svg of each when the
    Graphviz `dot` binary is on PATH. Returns {"normal": [paths], "reduce": [paths]}."""
    global _said_no_dot
    prefix = Path(out_prefix)
    dot_bin = shutil.which("dot")
    if dot_bin is None and not _said_no_dot:
        _said_no_dot = True
        log.warning("Graphviz's `dot` is not on PATH, so the cells are drawn as .dot text only (fix: "
                    "install Graphviz: apt-get install graphviz, conda install graphviz or brew install "
                    "graphviz; then e.g. dot -Tpng %s_normal.dot -o %s_normal.png)", prefix, prefix)
    written: Dict[str, List[Path]] = {}
    for cell in ("normal", "reduce"):
        dot_path = prefix.parent / f"{prefix.name}_{cell}.dot"
        text = genotype_to_dot(genotype, cell)
        with atomic_write(dot_path) as f:
            f.write(text)
        written[cell] = [dot_path]
        if dot_bin is None:
            continue
        for fmt in ("png", "svg"):
            out = dot_path.with_suffix(f".{fmt}")
            tmp = out.with_name(f".{out.name}.tmp")
            # Render to a temp name and rename, so a failed render never leaves a broken picture.
            proc = subprocess.run([dot_bin, f"-T{fmt}", str(dot_path), "-o", str(tmp)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                tmp.unlink(missing_ok=True)
                raise RuntimeError(f"dot failed on {dot_path}: {proc.stderr.strip()}")
            tmp.replace(out)
            written[cell].append(out)
    return written


def alpha_figure(weights: Sequence[Sequence[float]], edge_ops: Sequence[Sequence[str]], title: str):
    """A matplotlib figure of one cell's softmaxed alphas: a row per edge, a column per op (ops an
    edge does not have are left blank), each square labelled with its weight.  The colours span
    this cell's own range, so near-uniform alphas still show their order: read the labels or the
    colour bar for how far from uniform they are."""
    import numpy as np

    from nasr.utils.plot import pyplot

    ops: List[str] = []
    for names in edge_ops:
        ops += [op for op in names if op not in ops]
    grid = np.full((len(edge_ops), len(ops)), np.nan)
    for e, (names, row) in enumerate(zip(edge_ops, weights)):
        for op, w in zip(names, row):
            grid[e, ops.index(op)] = w
    fig, ax = pyplot().subplots(figsize=(1.0 + 0.9 * len(ops), 1.2 + 0.35 * len(edge_ops)))
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    for e in range(grid.shape[0]):
        for k in range(grid.shape[1]):
            if not np.isnan(grid[e, k]):
                ax.text(k, e, f"{grid[e, k]:.3f}", ha="center", va="center", fontsize=6, color="w")
    ax.set_xticks(range(len(ops)), ops, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(edge_ops)), [f"edge {e}" for e in range(len(edge_ops))], fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig


__all__ = ["genotype_to_dot", "draw_genotype", "alpha_figure"]
