"""Health of a DARTS search, per epoch: is the supernet learning, and are the alphas deciding?

A genotype is read off the alphas; if they end near uniform it is read off noise. These helpers
give the figures both searches log (nasr.bin.search per epoch; P-DARTS keeps its own record in
nasr.nas.pdarts, whose entropy and op-count functions are reused here): the alpha entropy of each
edge relative to uniform (1.0 = undecided), each edge's top op weight against 1/#ops, op counts of
the derived genotype, and supernet accuracy scored with batch statistics.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Dict, List, Mapping, Optional

from torch import nn

from nasr.nas.pdarts import alpha_entropy, op_counts

# Mean edge entropy at or above this share of uniform's ln(#ops) means the alphas have not moved:
# with 8 ops, 0.99 is reached when the top op holds ~0.20 against 0.125 for the others.
NEAR_UNIFORM = 0.99


@contextmanager
def batch_statistics(model: nn.Module):
    """Score `model` with each BatchNorm normalising by the batch's own statistics, leaving the
    running statistics untouched (momentum 0) and every other module in eval mode.

    Why: in a search the weights change fast and the running statistics lag them, so eval mode
    under-reads the supernet (measured on a derived cell at step 120: 17.6% in eval mode against
    37.9% with batch statistics); the best-epoch genotype must not be picked on that figure."""
    was_training = model.training
    saved = []
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            saved.append((m, m.momentum))
            m.momentum = 0.0
            m.train()
    try:
        yield model
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)


def alpha_health(model) -> Dict:
    """Per cell: entropy of each edge (nats), its ratio to uniform, each edge's top op weight;
    plus the means and the uniform weight 1/#ops, for the log line."""
    ent = alpha_entropy(model)
    out: Dict = {"entropy": ent, "entropy_ratio": {}, "top_weight": {}}
    uniform = []
    for cell, w in zip(("normal", "reduce"), model.alpha_softmax()):
        w = w.detach()
        n_ops = (w > 0).sum(-1).tolist()  # ops a P-DARTS mask switched off have weight 0
        out["entropy_ratio"][cell] = [h / math.log(n) if n > 1 else 0.0 for h, n in zip(ent[cell], n_ops)]
        out["top_weight"][cell] = w.max(-1).values.tolist()
        uniform += [1.0 / n for n in n_ops]
    out["uniform_weight"] = _mean(uniform)
    out["mean_entropy_ratio"] = _mean(out["entropy_ratio"]["normal"] + out["entropy_ratio"]["reduce"])
    out["mean_top_weight"] = _mean(out["top_weight"]["normal"] + out["top_weight"]["reduce"])
    return out


def search_health(model, genotype) -> Dict:
    """alpha_health plus the op counts of the genotype derived this epoch."""
    return {**alpha_health(model), "op_counts": op_counts(genotype)}


def near_uniform_warning(health: Mapping, threshold: float = NEAR_UNIFORM) -> Optional[str]:
    """A warning when the alphas ended undecided, else None."""
    ratio = health["mean_entropy_ratio"]
    if ratio < threshold:
        return None
    return (f"alphas end near uniform (mean edge entropy {ratio:.4f} of uniform, top op weight "
            f"{health['mean_top_weight']:.3f} against {health['uniform_weight']:.3f}): the genotype is "
            f"read off noise (fix: more search epochs, a higher arch lr, or a cheaper supernet)")


def format_health(health: Mapping) -> str:
    return (f"alpha entropy {health['mean_entropy_ratio']:.4f} of uniform, top op weight "
            f"{health['mean_top_weight']:.3f} (uniform {health['uniform_weight']:.3f}) | ops normal "
            f"{health['op_counts']['normal']} reduce {health['op_counts']['reduce']}")


def _mean(xs: List[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


__all__ = ["NEAR_UNIFORM", "batch_statistics", "alpha_health", "search_health", "near_uniform_warning",
           "format_health"]
