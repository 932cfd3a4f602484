"""Language-identification scores: accuracy, NIST LRE Cavg, pooled EER, confusion matrix; report files.

From logits to detection scores
-------------------------------
A K-way classifier gives logits z (N, K).  Its log-posteriors are l = log_softmax(z).  For the
detection task "is utterance n in language k?" the score is the log-likelihood ratio the
posteriors imply under the flat prior they were trained with (Brummer & van Leeuwen 2006; the
NIST LRE evaluation plans):

    s[n, k] = l[n, k] - log( 1/(K-1) * sum_{j != k} exp(l[n, j]) )

i.e. log P(x | k) / P(x | not k) with "not k" the equal mixture of the other K-1 languages.

Cavg (NIST LRE 2009/2015/2017, C_miss = C_fa = 1, P_target = 0.5)
---------------------------------------------------------------
The Bayes decision for target k at P_target = 0.5 is "accept" when s[n, k] > log((1-P_t)/P_t) = 0.
Over the set L of languages that occur in the reference labels:

    P_miss(T)    = fraction of utterances of T with s[n, T] <= 0
    P_fa(T, N)   = fraction of utterances of N with s[n, T] > 0          (N != T)
    Cavg = 1/|L| * sum_{T in L} [ P_t * P_miss(T) + (1 - P_t)/(|L|-1) * sum_{N in L, N != T} P_fa(T, N) ]

equal to the mean over ordered pairs (T, N) of the pairwise cost P_t P_miss(T) + (1-P_t) P_fa(T, N).
Languages the model knows but the set lacks have no trials and are left out of the averages
(they still take part in the denominators of s).  Cavg is undefined (None) with fewer than two
languages present.

EER (pooled)
------------
All N*K trials pooled: target trials s[n, label_n], non-target trials s[n, k] for k != label_n.
P_miss(t) = fraction of target scores < t, P_fa(t) = fraction of non-target scores >= t, evaluated
at every distinct score; the EER is where the two curves cross, linearly interpolated between the
two neighbouring thresholds (0 for perfectly separated scores, 1 for perfectly reversed ones,
0.5 when every score ties).

Values are fractions in [0, 1]; the `summary` file prints percentages for accuracy and EER.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from nasr.train.metrics import accuracy, confusion_matrix, format_confusion
from nasr.utils.io import atomic_write, write_json

P_TARGET = 0.5


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def detection_llrs(logits: np.ndarray) -> np.ndarray:
    """(N, K) logits -> (N, K) detection log-likelihood ratios s (module docstring)."""
    logp = log_softmax(logits)
    n, k = logp.shape
    if k < 2:
        raise ValueError("detection scores need at least 2 classes")
    out = np.empty_like(logp)
    for j in range(k):
        others = np.delete(logp, j, axis=1)
        m = others.max(axis=1)
        # log-mean-exp of the other classes, shifted by its max for stability
        log_mean_others = m + np.log(np.exp(others - m[:, None]).mean(axis=1))
        out[:, j] = logp[:, j] - log_mean_others
    return out


def cavg(llrs: np.ndarray, labels: np.ndarray, p_target: float = P_TARGET) -> Optional[float]:
    """NIST LRE Cavg at the Bayes threshold log((1-p_target)/p_target) (module docstring)."""
    threshold = math.log((1.0 - p_target) / p_target)
    present = sorted(set(int(y) for y in labels))
    if len(present) < 2:
        return None
    accept = llrs > threshold
    total = 0.0
    for t in present:
        p_miss = float(np.mean(~accept[labels == t, t]))
        p_fa = [float(np.mean(accept[labels == nt, t])) for nt in present if nt != t]
        total += p_target * p_miss + (1.0 - p_target) * float(np.mean(p_fa))
    return total / len(present)


def equal_error_rate(target_scores: np.ndarray, nontarget_scores: np.ndarray) -> float:
    """EER of two score lists (module docstring for the convention at ties)."""
    tar = np.sort(np.asarray(target_scores, dtype=np.float64))
    non = np.sort(np.asarray(nontarget_scores, dtype=np.float64))
    if tar.size == 0 or non.size == 0:
        raise ValueError("EER needs at least one target and one non-target trial")
    cuts = np.concatenate([[-np.inf], np.unique(np.concatenate([tar, non])), [np.inf]])
    p_miss = np.searchsorted(tar, cuts, side="left") / tar.size      # targets below the cut
    p_fa = 1.0 - np.searchsorted(non, cuts, side="left") / non.size  # non-targets at or above
    i = int(np.argmax(p_miss >= p_fa))  # p_miss rises from 0 to 1, p_fa falls from 1 to 0
    if i == 0:
        return float(p_fa[0])
    m0, m1, f0, f1 = p_miss[i - 1], p_miss[i], p_fa[i - 1], p_fa[i]
    alpha = (f0 - m0) / ((m1 - m0) - (f1 - f0))
    return float(m0 + alpha * (m1 - m0))


def _check_inputs(logits, labels, class_names):
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, K), got shape {logits.shape}")
    n, k = logits.shape
    if n == 0:
        raise ValueError("no utterances to score")
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be {n} integers, got shape {labels.shape} dtype {labels.dtype}")
    if len(class_names) != k:
        raise ValueError(f"{len(class_names)} class names for {k} logit columns")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must lie in [0, {k}), got {labels.min()}..{labels.max()}")
    if not np.isfinite(logits).all():
        raise ValueError("logits hold NaN or infinite values")
    return logits, labels.astype(np.int64)


def lid_scores(logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> Dict[str, object]:
    """{"acc", "cavg", "eer", "confusion" (K x K ints, rows = reference), "num"}; see module doc."""
    logits, labels = _check_inputs(logits, labels, class_names)
    n, k = logits.shape
    cm = confusion_matrix(labels, logits.argmax(axis=1), k)
    llrs = detection_llrs(logits)
    is_target = np.zeros((n, k), dtype=bool)
    is_target[np.arange(n), labels] = True
    return {"acc": accuracy(cm), "cavg": cavg(llrs, labels), "eer": equal_error_rate(llrs[is_target], llrs[~is_target]),
            "confusion": cm.tolist(), "num": int(n)}


def format_summary(scores: Dict[str, object], out_dir) -> str:
    n = int(scores["num"])
    correct = int(np.trace(np.asarray(scores["confusion"])))
    cavg_text = "n/a (fewer than 2 languages)" if scores["cavg"] is None else f"{scores['cavg']:.4f}"
    return (f"%ACC {100.0 * scores['acc']:.2f} [ {correct} / {n} ] {out_dir}\n"
            f"Cavg {cavg_text} [ P_target {P_TARGET} ] {out_dir}\n"
            f"%EER {100.0 * scores['eer']:.2f} [ pooled ] {out_dir}\n")


def write_lid_report(out_dir, scores: Dict[str, object], utts: Sequence[str], logits: np.ndarray,
                     labels: np.ndarray, class_names: Sequence[str], extra: Optional[Dict] = None) -> None:
    """Write in out_dir (each file atomically):

    results.json   the scores, the class names and the number of utterances (+ `extra`)
    confusion.txt  rows = reference, columns = hypothesis, with per-language totals and accuracy
    scores         `utt ref hyp logit_1 ... logit_K` per utterance (columns in class_names order)
    summary        %ACC / Cavg / %EER lines, Kaldi style, each naming out_dir
    """
    logits, labels = _check_inputs(logits, labels, class_names)
    if len(utts) != len(labels):
        raise ValueError(f"{len(utts)} utterance ids for {len(labels)} labels")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names: List[str] = list(class_names)
    hyps = logits.argmax(axis=1)

    with atomic_write(out_dir / "scores") as f:
        for i in sorted(range(len(utts)), key=lambda i: utts[i].encode("utf-8")):
            values = " ".join(f"{v:.4f}" for v in logits[i])
            f.write(f"{utts[i]} {names[labels[i]]} {names[hyps[i]]} {values}\n")

    cm = np.asarray(scores["confusion"], dtype=np.int64)
    table = format_confusion(cm, names).splitlines()
    width = max(len(line) for line in table)
    lines = [table[0].ljust(width) + "   total    acc%"]
    for i, row in enumerate(table[1:]):
        total = int(cm[i].sum())
        acc = f"{100.0 * cm[i, i] / total:7.2f}" if total else "    n/a"
        lines.append(row.ljust(width) + f"{total:8d} {acc}")
    with atomic_write(out_dir / "confusion.txt") as f:
        f.write("# rows: reference language, columns: hypothesis\n")
        f.write("\n".join(lines) + "\n")

    write_json(out_dir / "results.json", {**scores, "class_names": names, "p_target": P_TARGET, **(extra or {})})
    with atomic_write(out_dir / "summary") as f:
        f.write(format_summary(scores, out_dir))
