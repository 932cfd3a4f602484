"""CTC greedy (best-path) decoding."""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import numpy as np
import torch

Array = Union[torch.Tensor, np.ndarray]


def greedy_decode(log_probs: Array, lens: Optional[Union[Array, Sequence[int]]] = None,
                  blank: int = 0) -> List[List[int]]:
    """Best path of each sequence: argmax per frame, repeats collapsed, blanks dropped.

    log_probs: (N, T, V) scores (log-posteriors, posteriors or logits: only the argmax matters);
    lens: valid frames per sequence (default: all T).  Returns N lists of unit ids.
    A blank between two equal labels separates them (`a _ a` -> [a, a]); without one they merge.
    """
    scores = torch.as_tensor(log_probs)
    if scores.dim() != 3:
        raise ValueError(f"log_probs must be (N, T, V), got shape {tuple(scores.shape)}")
    n, t, _ = scores.shape
    best = scores.argmax(dim=-1)  # (N, T)
    if lens is None:
        lens_t = torch.full((n,), t, dtype=torch.long)
    else:
        lens_t = torch.as_tensor(lens, dtype=torch.long).reshape(-1).cpu()
        if lens_t.numel() != n:
            raise ValueError(f"lens has {lens_t.numel()} entries for {n} sequences")
        if (lens_t < 0).any() or (lens_t > t).any():
            raise ValueError(f"lens must lie in [0, {t}], got {lens_t.tolist()}")
    best = best.cpu()
    # Keep a frame when it is not blank, differs from the frame before, and lies within the length.
    changed = torch.ones_like(best, dtype=torch.bool)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    valid = torch.arange(t).unsqueeze(0) < lens_t.unsqueeze(1)
    keep = changed & (best != blank) & valid
    return [best[i][keep[i]].tolist() for i in range(n)]
