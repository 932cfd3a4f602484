"""Word n-gram language models: interpolated modified Kneser-Ney training, Stolcke pruning, ARPA I/O.

No maintained PyPI package trains a pruned modified-KN ARPA model here (KenLM's `lmplz` is a compiled
binary that needs Boost and is not in its pip package; NLTK's KneserNeyInterpolated writes no ARPA
and has no pruning; SRILM is not pip-installable), so this module implements it:

* Counts up to order N over sentences padded as `<s> w1 ... wn </s>` (one `<s>`, as KenLM).
* Adjusted counts (Chen & Goodman 1998; KenLM): the raw count for the highest order and for n-grams
  that start with `<s>` (nothing can precede them), otherwise the continuation count
  N1+(. w_1^n) = the number of distinct words seen just left of w_1^n.
* Per order, three discounts from the count-of-counts n_1..n_4 of the adjusted counts:
  Y = n1 / (n1 + 2 n2),  D1 = 1 - 2Y n2/n1,  D2 = 2 - 3Y n3/n2,  D3+ = 3 - 4Y n4/n3.
  On a tiny corpus some n_k are 0 and the formula is undefined; then the fallback discounts
  (0.5, 1.0, 1.5) are used and a warning says so (KenLM's --discount_fallback).
* Interpolation: p(w|h) = max(a(hw) - D(a(hw)), 0) / a(h.) + gamma(h) p(w|h'),
  gamma(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / a(h.), with h' = h minus its first word; the
  unigram level interpolates with the uniform distribution over the vocabulary (all words, `</s>`
  and `<unk>`; never `<s>`). Written to ARPA, p is the n-gram's probability and gamma(h) the
  backoff weight of h, which makes the model exactly normalised.
* Pruning (Stolcke 1998, "Entropy-based pruning of backoff language models", as SRILM's -prune):
  an n-gram (n >= 2) is removed when the relative entropy its removal causes,
      D = -p(h) { p(w|h) [log p(w|h') + log a'(h) - log p(w|h)] + [log a'(h) - log a(h)] S(h) },
  with S(h) = 1 - sum of p(v|h) over the explicit v (the backed-off mass) and a'(h) the backoff
  weight recomputed without w, is below the threshold. p(h) is the chain probability of h under the
  model. N-grams that are the context (prefix) or the backoff target (suffix) of a kept longer n-gram
  are kept, so the ARPA stays well-formed. Backoff weights are then recomputed from the kept
  n-grams, so the pruned model is normalised too.
"""
from __future__ import annotations

import logging
import math
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from nasr.utils.io import FormatError, atomic_write

log = logging.getLogger(__name__)

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
# Log10 probability written for <s>, which is never predicted (the ARPA convention).
BOS_LOG10 = -99.0
LN10 = math.log(10.0)

Ngram = Tuple[str, ...]


class EmptyTextError(ValueError):
    """The LM training text holds no words."""


# --------------------------------------------------------------------------------------------------
# Query model (ARPA tables)


class NgramLM:
    """A backoff n-gram model: per order, n-gram -> log10 prob, and context -> log10 backoff.

    Built by `train_ngram` or read from an ARPA file with `NgramLM.read_arpa(path)`.
    `logprob(word, context)` and `score(sentence)` return natural-log probabilities
    (`score` includes `</s>`); the ARPA file holds log10 values, as the format requires.
    """

    def __init__(self, order: int, logprob10: Dict[Ngram, float], backoff10: Dict[Ngram, float]):
        self.order = order
        self.logprob10 = logprob10
        self.backoff10 = backoff10
        self.vocab = sorted({g[0] for g in logprob10 if len(g) == 1})

    # ---- queries
    def logprob(self, word: str, context: Sequence[str] = ()) -> float:
        """ln p(word | context); a word outside the vocabulary is scored as `<unk>`
        (or -inf if the model has no `<unk>`)."""
        if (word,) not in self.logprob10:
            word = UNK
            if (word,) not in self.logprob10:
                return -math.inf
        context = tuple(c if (c,) in self.logprob10 else UNK for c in context)
        context = context[max(0, len(context) - self.order + 1):]
        return self._log10(word, context) * LN10

    def _log10(self, word: str, context: Ngram) -> float:
        total = 0.0
        while True:
            p = self.logprob10.get(context + (word,))
            if p is not None:
                return total + p
            if not context:
                return -math.inf
            total += self.backoff10.get(context, 0.0)
            context = context[1:]

    def score(self, sentence: Sequence[str] | str, bos: bool = True, eos: bool = True) -> float:
        """ln p(sentence), the words following `<s>` and followed by `</s>`."""
        words = sentence.split() if isinstance(sentence, str) else list(sentence)
        context: List[str] = [BOS] if bos else []
        total = 0.0
        for w in words + ([EOS] if eos else []):
            total += self.logprob(w, context)
            context.append(w)
        return total

    def num_ngrams(self) -> List[int]:
        counts = Counter(len(g) for g in self.logprob10)
        return [counts.get(n, 0) for n in range(1, self.order + 1)]

    # ---- ARPA I/O
    def write_arpa(self, path) -> None:
        """Write the model as an ARPA file (atomically), n-grams sorted within each order."""
        by_order: Dict[int, List[Ngram]] = defaultdict(list)
        for g in self.logprob10:
            by_order[len(g)].append(g)
        with atomic_write(path) as f:
            f.write("\n\\data\\\n")
            for n in range(1, self.order + 1):
                f.write(f"ngram {n}={len(by_order[n])}\n")
            for n in range(1, self.order + 1):
                f.write(f"\n\\{n}-grams:\n")
                for g in sorted(by_order[n]):
                    line = f"{self.logprob10[g]:.7g}\t{' '.join(g)}"
                    if n < self.order and g in self.backoff10:
                        line += f"\t{self.backoff10[g]:.7g}"
                    f.write(line + "\n")
            f.write("\n\\end\\\n")

    @classmethod
    def read_arpa(cls, path) -> "NgramLM":
        """Read an ARPA file; malformed lines raise FormatError naming the file and line."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ARPA file (fix: train one with nasr.bin.train_ngram)")
        logprob10: Dict[Ngram, float] = {}
        backoff10: Dict[Ngram, float] = {}
        declared: Dict[int, int] = {}
        section: Optional[int] = None  # 0 = \data\, n = \n-grams:
        ended = False
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                if line == "\\data\\":
                    section = 0
                    continue
                if line == "\\end\\":
                    ended = True
                    break
                m = re.fullmatch(r"\\(\d+)-grams:", line)
                if m:
                    section = int(m.group(1))
                    if section not in declared:
                        raise FormatError(path, lineno, f"section {line} not declared in \\data\\",
                                          "regenerate the ARPA file")
                    continue
                if section is None:
                    continue  # free text before \data\ is allowed by the format
                if section == 0:
                    m = re.fullmatch(r"ngram\s+(\d+)\s*=\s*(\d+)", line)
                    if not m:
                        raise FormatError(path, lineno, f"bad \\data\\ line '{line}'", "expected 'ngram N=COUNT'")
                    declared[int(m.group(1))] = int(m.group(2))
                    continue
                fields = line.split()
                n = section
                if len(fields) not in (n + 1, n + 2):
                    raise FormatError(path, lineno, f"a {n}-gram line needs {n + 1} or {n + 2} fields, "
                                      f"got {len(fields)}", "regenerate the ARPA file")
                try:
                    lp = float(fields[0])
                    bo = float(fields[n + 1]) if len(fields) == n + 2 else None
                except ValueError:
                    raise FormatError(path, lineno, "probability or backoff is not a number",
                                      "regenerate the ARPA file") from None
                g = tuple(fields[1:n + 1])
                logprob10[g] = lp
                if bo is not None:
                    backoff10[g] = bo
        if not declared:
            raise FormatError(path, None, "no \\data\\ section", "is this an ARPA file?")
        if not ended:
            raise FormatError(path, None, "missing \\end\\ (truncated file?)", "regenerate the ARPA file")
        got = Counter(len(g) for g in logprob10)
        for n, count in declared.items():
            if got.get(n, 0) != count:
                raise FormatError(path, None, f"\\data\\ declares {count} {n}-grams but {got.get(n, 0)} "
                                  "are listed", "regenerate the ARPA file")
        return cls(max(declared), logprob10, backoff10)

    # ---- vocabulary restriction (for a lexicon that lacks some LM words)
    def restrict_vocab(self, keep: Iterable[str]) -> "NgramLM":
        """A new model without the n-grams that contain a word outside `keep` (`<s>`, `</s>` are
        always kept). Unigrams are renormalised and backoff weights recomputed, so the result is a
        normalised distribution over the kept words."""
        keep = set(keep) | {BOS, EOS}
        probs = {g: 10.0 ** lp for g, lp in self.logprob10.items() if all(w in keep for w in g)}
        probs[(BOS,)] = 0.0
        z = sum(p for g, p in probs.items() if len(g) == 1)
        if z <= 0:
            raise ValueError("no LM word is in the kept vocabulary (fix: check the lexicon against the LM text)")
        for g in list(probs):
            if len(g) == 1:
                probs[g] /= z
        return _from_probs(self.order, probs)


# --------------------------------------------------------------------------------------------------
# Training


def read_kaldi_text(path) -> List[List[str]]:
    """Sentences of a Kaldi `text` file (`utt-id word word ...`); an utterance with no words is kept
    out. An empty file, or one with no words at all, is an EmptyTextError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such text file (fix: pass a Kaldi data dir's text)")
    sentences: List[List[str]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 1:
                sentences.append(fields[1:])
    if not sentences:
        raise EmptyTextError(f"{path}: the LM training text has no words "
                             "(fix: give a non-empty Kaldi text file, 'utt-id word word ...' per line)")
    return sentences


def map_oov(sentences: Iterable[Sequence[str]], vocab: Iterable[str], policy: str = "unk"
            ) -> Tuple[List[List[str]], Counter]:
    """Apply an OOV policy for words outside `vocab`: "unk" replaces them with `<unk>`, "skip" drops
    the sentences that contain one. Returns (sentences, Counter of OOV words)."""
    if policy not in ("unk", "skip"):
        raise ValueError(f"unknown OOV policy '{policy}' (fix: use 'unk' or 'skip')")
    vocab = set(vocab)
    oov: Counter = Counter()
    out: List[List[str]] = []
    for s in sentences:
        missing = [w for w in s if w not in vocab]
        oov.update(missing)
        if not missing:
            out.append(list(s))
        elif policy == "unk":
            out.append([w if w in vocab else UNK for w in s])
    return out, oov


def count_ngrams(sentences: Iterable[Sequence[str]], order: int) -> List[Counter]:
    """Raw counts: counts[n][ngram] for n = 1..order (counts[0] unused) over `<s> ... </s>`."""
    counts = [Counter() for _ in range(order + 1)]
    for s in sentences:
        toks = (BOS,) + tuple(s) + (EOS,)
        for n in range(1, order + 1):
            c = counts[n]
            for i in range(len(toks) - n + 1):
                c[toks[i:i + n]] += 1
    return counts


def adjusted_counts(raw: List[Counter], order: int) -> List[Dict[Ngram, int]]:
    """KN adjusted counts: raw for the top order and for `<s>`-initial n-grams, else the number of
    distinct left extensions."""
    adj: List[Dict[Ngram, int]] = [dict() for _ in range(order + 1)]
    adj[order] = dict(raw[order])
    for n in range(order - 1, 0, -1):
        cont: Counter = Counter()
        for g in raw[n + 1]:
            cont[g[1:]] += 1
        a = adj[n]
        for g, c in raw[n].items():
            if g[0] == BOS:
                a[g] = c
            elif g in cont:
                a[g] = cont[g]
            # else: an n-gram never seen with a left neighbour nor at <s> cannot occur (every
            # non-initial token has a left neighbour), except <s> itself handled above.
    return adj


def kn_discounts(adj_counts: Iterable[int]) -> Tuple[Tuple[float, float, float], bool]:
    """(D1, D2, D3+) from count-of-counts (Chen & Goodman); second value True if fallback was used."""
    coc = Counter(c for c in adj_counts if c <= 4)
    n1, n2, n3, n4 = (coc.get(k, 0) for k in (1, 2, 3, 4))
    if min(n1, n2, n3, n4) == 0:
        return FALLBACK_DISCOUNTS, True
    y = n1 / (n1 + 2 * n2)
    d = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
    if not all(0 < dk < k for k, dk in enumerate(d, 1)):
        return FALLBACK_DISCOUNTS, True
    return d, False


def train_ngram(sentences: Sequence[Sequence[str]], order: int = 5, prune: float = 0.0,
                discounts: Optional[Dict[int, Tuple[float, float, float]]] = None,
                source: str = "<sentences>") -> NgramLM:
    """Train an interpolated modified-KN model of `order`, optionally Stolcke-pruned at `prune`.

    `discounts` fixes (D1, D2, D3+) for some orders (tests, or to match another toolkit);
    the others are estimated from the counts.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    sentences = [s for s in sentences if len(s) > 0]
    if not sentences:
        raise EmptyTextError(f"{source}: the LM training text has no words (fix: give a non-empty text)")
    raw = count_ngrams(sentences, order)
    adj = adjusted_counts(raw, order)

    disc: Dict[int, Tuple[float, float, float]] = {}
    for n in range(1, order + 1):
        if discounts and n in discounts:
            disc[n] = tuple(discounts[n])
            continue
        # <s> as a unigram is never predicted: keep it out of the unigram statistics.
        d, fell_back = kn_discounts(c for g, c in adj[n].items() if g != (BOS,))
        if fell_back:
            log.warning("order %d: count-of-counts too sparse for modified-KN discounts; "
                        "using fallback %s", n, FALLBACK_DISCOUNTS)
        disc[n] = d

    vocab = {g[0] for g in raw[1]} | {UNK}
    vocab.discard(BOS)
    probs: Dict[Ngram, float] = {}
    # Unigrams: interpolate with the uniform distribution over the vocabulary.
    uni = {g: c for g, c in adj[1].items() if g != (BOS,)}
    total = sum(uni.values())
    gamma0 = _gamma(uni.values(), disc[1], total)
    for w in vocab:
        c = uni.get((w,), 0)
        probs[(w,)] = max(c - _d(c, disc[1]), 0.0) / total + gamma0 / len(vocab)
    probs[(BOS,)] = 0.0

    for n in range(2, order + 1):
        by_ctx: Dict[Ngram, Dict[str, int]] = defaultdict(dict)
        for g, c in adj[n].items():
            by_ctx[g[:-1]][g[-1]] = c
        for h, children in by_ctx.items():
            tot = sum(children.values())
            gam = _gamma(children.values(), disc[n], tot)
            for w, c in children.items():
                lower = _prob_backoff(probs, None, w, h[1:])
                probs[h + (w,)] = max(c - _d(c, disc[n]), 0.0) / tot + gam * lower
    lm = _from_probs(order, probs)
    if prune > 0:
        lm = stolcke_prune(lm, prune)
    return lm


def _d(c: int, d: Tuple[float, float, float]) -> float:
    return 0.0 if c == 0 else d[min(c, 3) - 1]


def _gamma(counts: Iterable[int], d: Tuple[float, float, float], total: float) -> float:
    n = Counter(min(c, 3) for c in counts if c > 0)
    return (d[0] * n.get(1, 0) + d[1] * n.get(2, 0) + d[2] * n.get(3, 0)) / total


def _prob_backoff(probs: Dict[Ngram, float], bows: Optional[Dict[Ngram, float]], w: str, h: Ngram) -> float:
    """p(w|h) from explicit probs, backing off with `bows` (None while training: the lower orders
    are already interpolated, so the explicit lower-order probability is exact whenever it exists)."""
    factor = 1.0
    while True:
        p = probs.get(h + (w,))
        if p is not None:
            return factor * p
        if not h:
            return 0.0
        if bows is not None:
            factor *= bows.get(h, 1.0)
        h = h[1:]


def _compute_backoffs(order: int, probs: Dict[Ngram, float]) -> Dict[Ngram, float]:
    """Backoff weights that normalise every context: a(h) = (1 - sum_v p(v|h)) / (1 - sum_v p(v|h'))
    over the explicit children v of h; computed from low to high order because p(.|h') needs the
    backoffs of the lower orders. May rescale `probs` in place (see below)."""
    children: Dict[Ngram, List[str]] = defaultdict(list)
    for g in probs:
        if len(g) >= 2:
            children[g[:-1]].append(g[-1])
    bows: Dict[Ngram, float] = {}
    for h in sorted(children, key=len):
        ws = children[h]
        num = 1.0 - sum(probs[h + (w,)] for w in ws)
        den = 1.0 - sum(_prob_backoff(probs, bows, w, h[1:]) for w in ws)
        if den <= 1e-9:
            # Every word has an explicit probability after h: nothing backs off, so the explicit
            # ones must sum to 1 by themselves (they may not after `restrict_vocab` dropped some).
            z = 1.0 - num
            for w in ws:
                probs[h + (w,)] /= z
            bows[h] = 1.0
        elif num <= 1e-12:
            bows[h] = 1e-10  # the explicit words hold all the mass: unseen words get ~nothing
        else:
            bows[h] = num / den
    # Contexts that are n-grams but have no children keep no backoff entry (weight 1).
    return bows


def _from_probs(order: int, probs: Dict[Ngram, float]) -> NgramLM:
    bows = _compute_backoffs(order, probs)
    logprob10 = {g: (BOS_LOG10 if g == (BOS,) else math.log10(p)) for g, p in probs.items() if p > 0 or g == (BOS,)}
    backoff10 = {h: math.log10(b) for h, b in bows.items() if h in logprob10}
    return NgramLM(order, logprob10, backoff10)


def stolcke_prune(lm: NgramLM, threshold: float) -> NgramLM:
    """Relative-entropy pruning (see the module docstring); unigrams are never pruned."""
    probs = {g: (0.0 if g == (BOS,) else 10.0 ** lp) for g, lp in lm.logprob10.items()}
    bows = {h: 10.0 ** b for h, b in lm.backoff10.items()}
    children: Dict[Ngram, List[str]] = defaultdict(list)
    for g in probs:
        if len(g) >= 2:
            children[g[:-1]].append(g[-1])
    # Per context: explicit mass (numerator) and the lower-order mass of the same words (denominator).
    num = {h: 1.0 - sum(probs[h + (w,)] for w in ws) for h, ws in children.items()}
    den = {h: 1.0 - sum(_prob_backoff(probs, bows, w, h[1:]) for w in ws) for h, ws in children.items()}

    hist_cache: Dict[Ngram, float] = {}

    def history_prob(h: Ngram) -> float:
        # p(h) by the chain rule; a history starting with <s> is conditioned on it (p(<s>) = 1).
        if h not in hist_cache:
            p, ctx = 1.0, ()
            start = 0
            if h and h[0] == BOS:
                ctx, start = (BOS,), 1
            for w in h[start:]:
                p *= _prob_backoff(probs, bows, w, ctx[max(0, len(ctx) - lm.order + 1):])
                ctx = ctx + (w,)
            hist_cache[h] = p
        return hist_cache[h]

    kept = set(probs)
    removed = 0
    for n in range(lm.order, 1, -1):
        # Prefixes and suffixes of kept (n+1)-grams must stay for a well-formed ARPA.
        needed = set()
        for g in kept:
            if len(g) == n + 1:
                needed.add(g[:-1])
                needed.add(g[1:])
        for g in [g for g in kept if len(g) == n]:
            if g in needed:
                continue
            h, w = g[:-1], g[-1]
            p_wh = probs[g]
            p_wh_lower = _prob_backoff(probs, bows, w, h[1:])
            bo_old = bows.get(h, 1.0)
            n_new, d_new = num[h] + p_wh, den[h] + p_wh_lower
            if d_new <= 1e-12 or n_new <= 1e-12 or num[h] <= 1e-12 or p_wh_lower <= 0:
                continue
            bo_new = n_new / d_new
            delta = -history_prob(h) * (
                p_wh * (math.log(p_wh_lower) + math.log(bo_new) - math.log(p_wh))
                + (math.log(bo_new) - math.log(bo_old)) * num[h])
            if delta < threshold:
                kept.discard(g)
                removed += 1
    log.info("pruning at %g removed %d of %d n-grams", threshold, removed, len(probs))
    return _from_probs(lm.order, {g: probs[g] for g in kept})
