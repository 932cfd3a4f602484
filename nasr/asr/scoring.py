"""Error rates by edit alignment: CER / TER / WER, token accuracy, Kaldi-style score files.

What is computed: the reference and the hypothesis of each utterance are split into tokens, aligned
by Levenshtein distance (unit costs), and the substitutions S, deletions D and insertions I are
summed over the set.  The error rate is 100 * (S + D + I) / N, N = number of reference tokens.
The token decides the name:

  %CER  tokens are characters, whitespace ignored: the paper's Mandarin CER, counted as Kaldi's
        AISHELL recipe counts it (egs/aishell/s5/local/score.sh -> steps/scoring/score_kaldi_cer.sh
        splits every word into its characters, Latin letters and digits included; a word holding
        `<...>` or `[...]` (`<unk>`, `[NOISE]`) or `!SIL` stays one token).  With latin_as_word
        (`--latin-as-word`) a run of Latin letters/digits is one token instead
        (`nasr.asr.units.split_chars`, the char units' own tokens).  Use %CER for char-unit and
        bpe-unit hypotheses (their text is characters) and for word hypotheses from WFST decoding.
  %TER  tokens are the whitespace-separated units as written (e.g. CI syllables): the error rate of
        the model's own output units, before any lexicon maps them to characters.
  %WER  whitespace-separated words.

Token accuracy = 1 - (S + D + I) / N = 1 - TER/100 over the same tokens: this is what the paper's
"token accuracy" (Table 1) is taken to mean.  It can be negative when insertions pile up.

Files per scored set (`write_score_files`), after icefall's recogs/errs/wer-summary and Kaldi's
per-utterance details:
  hyp       `utt hypothesis` lines, C-sorted
  errs      the summary line, then per utterance `utt ref ...`, `utt hyp ...`, `utt op ...`
            (C, S, I, D), `utt #csid c s i d`; then the most frequent substitutions, deletions,
            insertions
  summary   `%CER 6.12 [ 6403 / 104765, 120 ins, 410 del, 5873 sub ] <name>` and a %SER line
  score.json  the same numbers, and token_accuracy, for the report stage
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Hashable, List, Optional, Sequence, Tuple

from nasr.asr.units import split_chars
from nasr.utils.io import atomic_write, write_json

log = logging.getLogger(__name__)

EPS = "***"  # Kaldi's marker for the empty side of an insertion/deletion
METRICS = {"char": "CER", "token": "TER", "word": "WER"}

Pair = Tuple[Optional[Hashable], Optional[Hashable]]


# ----------------------------------------------------------------------------------------------
# alignment

def levenshtein_align(ref: Sequence, hyp: Sequence) -> List[Pair]:
    """A minimum-edit alignment as (ref token or None, hyp token or None) pairs.

    Pure Python, O(len(ref) * len(hyp)).  Among equally cheap alignments the backtrace (from the
    end) prefers an insertion, then a deletion, then a match/substitution: the choice kaldialign
    makes, so both give the same ins/del/sub split (tests/asr/test_scoring.py checks it).
    """
    n, m = len(ref), len(hyp)
    # cost[i][j]: edits turning ref[:i] into hyp[:j]
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        row, prev = cost[i], cost[i - 1]
        row[0] = i
        r = ref[i - 1]
        for j in range(1, m + 1):
            diag = prev[j - 1] + (r != hyp[j - 1])
            row[j] = min(diag, prev[j] + 1, row[j - 1] + 1)
    pairs: List[Pair] = []
    i, j = n, m
    while i > 0 or j > 0:
        if j > 0 and cost[i][j] == cost[i][j - 1] + 1:
            pairs.append((None, hyp[j - 1]))
            j -= 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((ref[i - 1], None))
            i -= 1
        else:
            pairs.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
    pairs.reverse()
    return pairs


def kaldialign_align(ref: Sequence, hyp: Sequence) -> List[Pair]:
    """The same alignment from kaldialign (Kaldi's C++ Levenshtein alignment)."""
    import kaldialign

    # kaldialign marks the empty side with a symbol and sorts the symbols: give it ints, with -1
    # for the empty side, so that any hashable token works and none can be taken for the marker.
    ids: Dict[Hashable, int] = {}
    ref_ids = [ids.setdefault(t, len(ids)) for t in ref]
    hyp_ids = [ids.setdefault(t, len(ids)) for t in hyp]
    tokens = list(ids)
    return [(None if r == -1 else tokens[r], None if h == -1 else tokens[h])
            for r, h in kaldialign.align(ref_ids, hyp_ids, -1)]


def align(ref: Sequence, hyp: Sequence, backend: str = "kaldialign") -> List[Pair]:
    if backend == "kaldialign":
        return kaldialign_align(ref, hyp)
    if backend == "python":
        return levenshtein_align(ref, hyp)
    raise ValueError(f"unknown alignment backend '{backend}' (kaldialign or python)")


def ops_of(pairs: Sequence[Pair]) -> List[str]:
    """C (correct), S (substitution), I (insertion), D (deletion) per aligned pair."""
    return ["I" if r is None else "D" if h is None else "C" if r == h else "S" for r, h in pairs]


# ----------------------------------------------------------------------------------------------
# counts

@dataclass
class ErrorStats:
    ref_tokens: int = 0
    ins: int = 0
    dels: int = 0
    subs: int = 0
    sentences: int = 0
    sentence_errors: int = 0

    @property
    def errors(self) -> int:
        return self.ins + self.dels + self.subs

    @property
    def rate(self) -> float:
        """Errors per 100 reference tokens (0 for an empty reference set with no errors)."""
        if self.ref_tokens == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return 100.0 * self.errors / self.ref_tokens

    @property
    def token_accuracy(self) -> float:
        """1 - (S + D + I) / N, as a fraction."""
        return 1.0 - self.rate / 100.0

    def add_pairs(self, pairs: Sequence[Pair]) -> Tuple[int, int, int, int]:
        ops = ops_of(pairs)
        c, s, i, d = (ops.count(k) for k in "CSID")
        self.ref_tokens += c + s + d
        self.subs += s
        self.ins += i
        self.dels += d
        self.sentences += 1
        self.sentence_errors += (s + i + d) > 0
        return c, s, i, d

    def to_dict(self) -> Dict:
        out = asdict(self)
        out.update(errors=self.errors, rate=round(self.rate, 4),
                   token_accuracy=round(self.token_accuracy, 6))
        return out


def edit_stats(refs: Sequence[Sequence], hyps: Sequence[Sequence], backend: str = "kaldialign") -> ErrorStats:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    stats = ErrorStats()
    for r, h in zip(refs, hyps):
        stats.add_pairs(align(r, h, backend))
    return stats


def token_accuracy(refs: Sequence[Sequence], hyps: Sequence[Sequence]) -> float:
    """Token accuracy = 1 - (S + D + I) / N, summed over all pairs; N = number of reference tokens.

    S, D, I are the substitutions, deletions and insertions of a minimum-edit (Levenshtein)
    alignment of each hypothesis token sequence to its reference; this is 1 - TER/100.  It is the
    meaning taken for the paper's "token accuracy" (Table 1): the tokens are the model's units.
    Returns a fraction (0.93 for 93 %); negative when insertions outnumber the correct tokens.
    """
    stats = edit_stats(refs, hyps)
    if stats.ref_tokens == 0:
        raise ValueError("token accuracy is undefined without reference tokens")
    return stats.token_accuracy


def summary_line(metric: str, stats: ErrorStats, name: str = "") -> str:
    """Kaldi's compute-wer line: `%CER 6.12 [ 6403 / 104765, 120 ins, 410 del, 5873 sub ] name`."""
    line = (f"%{metric} {stats.rate:.2f} [ {stats.errors} / {stats.ref_tokens}, {stats.ins} ins, "
            f"{stats.dels} del, {stats.subs} sub ]")
    return f"{line} {name}" if name else line


def ser_line(stats: ErrorStats, name: str = "") -> str:
    ser = 100.0 * stats.sentence_errors / stats.sentences if stats.sentences else 0.0
    line = f"%SER {ser:.2f} [ {stats.sentence_errors} / {stats.sentences} ]"
    return f"{line} {name}" if name else line


# Kaldi's score_kaldi_cer.sh keeps a word whole when it matches one of these (symbols, not text).
_KALDI_SYMBOL = re.compile(r"\[.*\]|<.*>|!SIL")


def kaldi_chars(text: str) -> List[str]:
    """'我 爱 AI2 <unk>' -> ['我', '爱', 'A', 'I', '2', '<unk>']: every character of every word a
    token, except words that hold a bracketed symbol or !SIL (score_kaldi_cer.sh's rule)."""
    tokens: List[str] = []
    for word in text.split():
        if _KALDI_SYMBOL.search(word):
            tokens.append(word)
        else:
            tokens.extend(word)
    return tokens


def tokenize(text: str, unit: str, latin_as_word: bool = False) -> List[str]:
    """Scoring tokens of `text` (see the module doc); latin_as_word only changes `char`."""
    if unit == "char":
        return split_chars(text) if latin_as_word else kaldi_chars(text)
    if unit in ("token", "word"):
        return text.split()
    raise ValueError(f"unknown scoring unit '{unit}' (expected one of {', '.join(METRICS)})")


# ----------------------------------------------------------------------------------------------
# files

def _fmt_aligned(pairs: Sequence[Pair]) -> Tuple[str, str, str]:
    """ref / hyp / op rows with each column padded to the wider of its ref and hyp token."""
    refs, hyps, ops = [], [], []
    for (r, h), op in zip(pairs, ops_of(pairs)):
        r = EPS if r is None else str(r)
        h = EPS if h is None else str(h)
        width = max(_display_width(r), _display_width(h), 1)
        refs.append(_pad(r, width))
        hyps.append(_pad(h, width))
        ops.append(_pad(op, width))
    return " ".join(refs), " ".join(hyps), " ".join(ops)


def _display_width(s: str) -> int:
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def _pad(s: str, width: int) -> str:
    return s + " " * (width - _display_width(s))


def score_texts(refs: Dict[str, str], hyps: Dict[str, str], unit: str = "char",
                missing: str = "empty", backend: str = "kaldialign", latin_as_word: bool = False):
    """Align every reference utterance with its hypothesis.

    missing: what a reference without a hypothesis counts as: `empty` (all deletions, logged with
    a count), `skip` (left out, logged), `error` (ValueError).  A hypothesis for an utterance
    without a reference is always an error: it is a sign of scoring against the wrong set.
    Returns (ErrorStats, {utt: aligned pairs}).
    """
    if missing not in ("empty", "skip", "error"):
        raise ValueError(f"unknown missing-hypothesis policy '{missing}' (empty, skip or error)")
    extra = sorted(set(hyps) - set(refs))
    if extra:
        raise ValueError(f"{len(extra)} hypotheses have no reference (e.g. '{extra[0]}'): "
                         "the hypotheses belong to another set")
    absent = [u for u in refs if u not in hyps]
    if absent:
        if missing == "error":
            raise ValueError(f"{len(absent)} of {len(refs)} reference utterances have no hypothesis "
                             f"(e.g. '{absent[0]}')")
        log.warning("%d of %d reference utterances have no hypothesis: %s", len(absent), len(refs),
                    "counted as empty (all deletions)" if missing == "empty" else "left out")
    stats = ErrorStats()
    per_utt: Dict[str, List[Pair]] = {}
    for utt in sorted(refs, key=lambda u: u.encode("utf-8")):
        if utt not in hyps and missing == "skip":
            continue
        pairs = align(tokenize(refs[utt], unit, latin_as_word),
                      tokenize(hyps.get(utt, ""), unit, latin_as_word), backend)
        stats.add_pairs(pairs)
        per_utt[utt] = pairs
    return stats, per_utt


def write_score_files(out_dir, refs: Dict[str, str], hyps: Dict[str, str], unit: str = "char",
                      name: Optional[str] = None, missing: str = "empty", write_hyp: bool = True,
                      top: int = 20, latin_as_word: bool = False) -> ErrorStats:
    """Score and write hyp / errs / summary / score.json into out_dir (see module doc)."""
    out_dir = Path(out_dir)
    metric = METRICS.get(unit)
    if metric is None:
        raise ValueError(f"unknown scoring unit '{unit}' (expected one of {', '.join(METRICS)})")
    stats, per_utt = score_texts(refs, hyps, unit, missing, latin_as_word=latin_as_word)
    tokens = f"{unit}, Latin runs as words" if unit == "char" and latin_as_word else unit
    name = str(out_dir) if name is None else name
    main_line = summary_line(metric, stats, name)
    confusions = {"S": Counter(), "D": Counter(), "I": Counter()}
    if write_hyp:
        with atomic_write(out_dir / "hyp") as f:
            for utt in sorted(hyps, key=lambda u: u.encode("utf-8")):
                f.write(f"{utt} {hyps[utt]}\n" if hyps[utt] else f"{utt}\n")
    with atomic_write(out_dir / "errs") as f:
        f.write(main_line + "\n")
        f.write(ser_line(stats, name) + "\n")
        f.write(f"# tokens: {tokens}; per utterance: ref / hyp / op (C correct, S substitution, "
                f"I insertion, D deletion), #csid counts; {EPS} = nothing\n\n")
        for utt, pairs in per_utt.items():
            ref_row, hyp_row, op_row = _fmt_aligned(pairs)
            ops = ops_of(pairs)
            f.write(f"{utt} ref  {ref_row}\n{utt} hyp  {hyp_row}\n{utt} op   {op_row}\n")
            f.write(f"{utt} #csid {ops.count('C')} {ops.count('S')} {ops.count('I')} {ops.count('D')}\n")
            for (r, h), op in zip(pairs, ops):
                if op == "S":
                    confusions["S"][(r, h)] += 1
                elif op == "D":
                    confusions["D"][r] += 1
                elif op == "I":
                    confusions["I"][h] += 1
        titles = {"S": "SUBSTITUTIONS: count ref -> hyp", "D": "DELETIONS: count ref",
                  "I": "INSERTIONS: count hyp"}
        for kind in "SDI":
            f.write(f"\n{titles[kind]} (top {top})\n")
            for key, n in confusions[kind].most_common(top):
                f.write(f"{n} {key[0]} -> {key[1]}\n" if kind == "S" else f"{n} {key}\n")
    with atomic_write(out_dir / "summary") as f:
        f.write(main_line + "\n")
        f.write(ser_line(stats, name) + "\n")
    write_json(out_dir / "score.json", {"metric": metric, "unit": unit, "latin_as_word": latin_as_word,
                                        "name": name, **stats.to_dict()})
    log.info("%s", main_line)
    return stats
