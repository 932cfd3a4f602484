"""Random architectures from a search space: the baseline a searched cell must beat.

NAS studies (Li & Talwalkar 2019; Yu et al., ICLR 2020) found that random cells from a DARTS space
often match the searched one, so every table gets rows of cells drawn here and retrained at the
searched cell's budget. A draw is uniform over the genotypes the search itself could derive: per
node two distinct inputs, on each a non-`none` op of the space, and no more of an op than the
search's `max_ops` caps allow (rejection sampling keeps the draw uniform over the capped set).
"""
from __future__ import annotations

import random
from itertools import combinations
from typing import List, Mapping, Optional, Tuple

from nasr.nas.genotype import Genotype
from nasr.nas.ops import OPS
from nasr.nas.spaces import get_space

MAX_TRIES = 100_000


def _random_cell(rng: random.Random, ops: List[str], steps: int,
                 caps: Mapping[str, int]) -> List[Tuple[str, int]]:
    for _ in range(MAX_TRIES):
        gene = []
        for node in range(steps):
            for j in rng.choice(list(combinations(range(node + 2), 2))):
                gene.append((rng.choice(ops), j))
        if all(sum(1 for op, _ in gene if op == name) <= cap for name, cap in caps.items()):
            return gene
    raise ValueError(f"no cell of {steps} nodes meets the op caps {dict(caps)} in {MAX_TRIES} draws "
                     "(fix: raise the caps)")


def random_genotype(space: str, seed: int, steps: int = 4, multiplier: int = 4,
                    max_ops: Optional[Mapping[str, int]] = None,
                    max_ops_reduce: Optional[Mapping[str, int]] = None) -> Genotype:
    """A genotype drawn uniformly from `space` under the caps; the same seed gives the same cells."""
    ops = [op for op in get_space(space) if op != "none"]  # derivation never keeps `none` either
    caps_n, caps_r = dict(max_ops or {}), dict(max_ops_reduce or {})
    unknown = [o for o in {**caps_n, **caps_r} if o not in OPS]
    if unknown:
        raise ValueError(f"max_ops names unknown ops {unknown} (known ops: {', '.join(OPS)})")
    rng = random.Random(f"{space}:{seed}")
    normal = _random_cell(rng, ops, steps, caps_n)
    reduce = _random_cell(rng, ops, steps, caps_r)
    concat = list(range(2 + steps - multiplier, steps + 2))
    return Genotype(space=space, normal=normal, normal_concat=concat, reduce=reduce, reduce_concat=concat)


__all__ = ["random_genotype"]
