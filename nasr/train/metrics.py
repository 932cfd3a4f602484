"""Classification metrics shared by KWS and LID."""
from __future__ import annotations

from typing import List, Sequence

import numpy as np


def confusion_matrix(refs: Sequence[int], hyps: Sequence[int], num_classes: int) -> np.ndarray:
    """rows = reference class, columns = hypothesis class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(refs, dtype=np.int64), np.asarray(hyps, dtype=np.int64)), 1)
    return cm


def accuracy(cm: np.ndarray) -> float:
    total = cm.sum()
    return float(np.trace(cm) / total) if total else 0.0


def format_confusion(cm: np.ndarray, labels: List[str]) -> str:
    width = max(6, max(len(l) for l in labels) + 1)
    lines = ["ref\\hyp".ljust(width) + "".join(l[:width - 1].rjust(width) for l in labels)]
    for i, l in enumerate(labels):
        lines.append(l.ljust(width) + "".join(str(int(v)).rjust(width) for v in cm[i]))
    return "\n".join(lines)
