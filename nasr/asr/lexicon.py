"""Pronunciation lexicons: reading, writing, syllable joining and lexicon-based word segmentation.

A lexicon file holds one pronunciation per line, `word unit unit ...` (Kaldi's lexicon.txt); a
word may have several lines (polyphones).  A `lexiconp.txt` line with a probability in the second
field (`word 1.0 unit ...`) is read too, the probability dropped.

Mandarin lexicons come in two shapes, both handled by `pron_to_syllables`:

* initial/final phones with the tone on the final, as AISHELL-1's resource_aishell/lexicon.txt
  (`中国 zh ong1 g uo2`, zero initials written `aa ee ii oo uu vv`: `一 ii i1`, `鱼 vv v2`);
* whole toned syllables, as the synthetic corpora (`中国 zhong1 guo2`).

Joined syllables are spelled like pypinyin's TONE3 style (ü as `v` after l/n, `u` after j/q/x/y;
neutral tone 5), so that both shapes yield the same unit names.  English entries (upper-case
ARPAbet, `HELLO HH AH0 L OW1`) keep their phones with the stress digit removed: CMUdict's 39
phones, the English half of the paper's CI-syllable inventory.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from nasr.utils.io import FormatError, atomic_write

log = logging.getLogger(__name__)

Pron = Tuple[str, ...]

# Words whose pronunciation is only silence / noise phones: no CTC unit corresponds to them.
SILENCE_PHONES = frozenset({"sil", "SIL", "spn", "SPN", "nsn", "NSN", "<sil>", "<SIL>"})

CONSONANT_INITIALS = frozenset("b p m f d t n l g k h j q x zh ch sh r z c s y w".split())
ZERO_INITIALS = frozenset("aa ee ii oo uu vv".split())
INITIALS = CONSONANT_INITIALS | ZERO_INITIALS
_TONED = re.compile(r"^([a-z]+)([1-5])$")
_ARPABET = re.compile(r"^([A-Z]+)[0-2]?$")

# Full-form finals some lexicons use, and the written form after a consonant.
_FINAL_SHORT = {"iou": "iu", "uei": "ui", "uen": "un"}
# Zero initial + final -> written syllable (without tone), for finals whose spelling changes.
_ZERO_SPELLING = {
    "ii": {"i": "yi", "in": "yin", "ing": "ying", "iu": "you", "iou": "you", "iong": "yong",
           "ia": "ya", "ie": "ye", "iao": "yao", "ian": "yan", "iang": "yang", "io": "yo"},
    "uu": {"u": "wu", "ui": "wei", "uei": "wei", "un": "wen", "uen": "wen", "ueng": "weng",
           "ua": "wa", "uo": "wo", "uai": "wai", "uan": "wan", "uang": "wang"},
    "vv": {"v": "yu", "ve": "yue", "van": "yuan", "vn": "yun", "u": "yu", "ue": "yue",
           "uan": "yuan", "un": "yun"},
}


class Lexicon:
    """word -> pronunciations (tuples of units), in file order; the first is the default."""

    def __init__(self, entries: Optional[Dict[str, List[Pron]]] = None, path=None):
        self.entries: Dict[str, List[Pron]] = entries if entries is not None else {}
        self.path = path
        self._max_word_len: Optional[int] = None

    def add(self, word: str, pron: Sequence[str]) -> None:
        prons = self.entries.setdefault(word, [])
        pron = tuple(pron)
        if pron not in prons:  # a repeated line is harmless; keep it once
            prons.append(pron)
        self._max_word_len = None

    def __contains__(self, word) -> bool:
        return word in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, word: str) -> List[Pron]:
        return self.entries[word]

    def words(self) -> List[str]:
        return list(self.entries)

    def units(self) -> List[str]:
        """Every unit used, sorted in C order."""
        return sorted({u for prons in self.entries.values() for p in prons for u in p},
                      key=lambda u: u.encode("utf-8"))

    @property
    def max_word_len(self) -> int:
        if self._max_word_len is None:
            self._max_word_len = max((len(w) for w in self.entries), default=0)
        return self._max_word_len


def read_lexicon(path) -> Lexicon:
    """Read `word unit...` lines (or lexiconp `word prob unit...`); errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, None, "no such lexicon file",
                          "give the lexicon of the corpus (e.g. resource_aishell/lexicon.txt)")
    lex = Lexicon(path=path)
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue  # blank lines occur in hand-edited lexicons and carry nothing
            if len(fields) >= 3 and _is_probability(fields[1]):
                fields = [fields[0]] + fields[2:]
            if len(fields) < 2:
                raise FormatError(path, lineno, f"word '{fields[0]}' has no pronunciation",
                                  "write 'word unit [unit ...]' on every line")
            lex.add(fields[0], fields[1:])
    if not lex.entries:
        raise FormatError(path, None, "holds no entries", "use a non-empty lexicon")
    return lex


def _is_probability(field: str) -> bool:
    try:
        value = float(field)
    except ValueError:
        return False
    return 0.0 <= value <= 1.0 and not _TONED.match(field)


def write_lexicon(path, lexicon: Lexicon) -> None:
    """Write atomically, words in C order, each word's pronunciations in their stored order."""
    with atomic_write(path) as f:
        for word in sorted(lexicon.entries, key=lambda w: w.encode("utf-8")):
            for pron in lexicon.entries[word]:
                f.write(f"{word} {' '.join(pron)}\n")


# ----------------------------------------------------------------------------------------------
# syllables

def is_silence_pron(pron: Sequence[str]) -> bool:
    return all(u in SILENCE_PHONES for u in pron)


def join_initial_final(initial: str, final: str) -> Tuple[str, bool]:
    """('zh', 'ong1') -> ('zhong1', True); ('ii', 'ia3') -> ('ya3', True).

    The bool is False when the pair follows no known spelling rule; the syllable is then the plain
    concatenation (still a consistent unit name, so an odd lexicon line does not stop the run).
    """
    m = _TONED.match(final)
    if not m:
        return initial + final, False
    body, tone = m.groups()
    if initial in ("aa", "ee", "oo"):
        return body + tone, body[0] == initial[0]
    if initial in _ZERO_SPELLING:
        spelled = _ZERO_SPELLING[initial].get(body)
        return (spelled or initial + body) + tone, spelled is not None
    body = _FINAL_SHORT.get(body, body)
    if initial in ("j", "q", "x", "y") and body.startswith("v"):
        body = "u" + body[1:]  # written ju/que/xuan: ü after j, q, x, y is spelled u
    elif initial in ("zh", "ch", "sh", "r", "z", "c", "s") and body in ("ix", "iy", "ih"):
        body = "i"  # apical vowel written as a separate phone by some lexicons
    return initial + body + tone, True


def pron_to_syllables(pron: Sequence[str], where: str = "") -> Tuple[Pron, int]:
    """Units of one pronunciation as CI syllables (and English phones); also the number of
    initial/final pairs that followed no spelling rule (see `join_initial_final`).

    Raises ValueError for a phone-style initial with no toned final after it.
    """
    out: List[str] = []
    odd = 0
    i = 0
    while i < len(pron):
        unit = pron[i]
        if unit in INITIALS and not _TONED.match(unit):
            if i + 1 >= len(pron) or not _TONED.match(pron[i + 1]):
                raise ValueError(f"{where}initial '{unit}' is not followed by a toned final "
                                 f"in '{' '.join(pron)}'")
            syllable, known = join_initial_final(unit, pron[i + 1])
            odd += not known
            out.append(syllable)
            i += 2
            continue
        english = _ARPABET.match(unit)
        if english:
            out.append(english.group(1))
        elif unit not in SILENCE_PHONES:
            out.append(unit)  # a whole toned syllable (or a bare final), kept as is
        i += 1
    return tuple(out), odd


def syllable_lexicon(lexicon: Lexicon) -> Lexicon:
    """The lexicon with every pronunciation turned into CI syllables; silence-only words dropped."""
    out = Lexicon(path=lexicon.path)
    odd_pairs = Counter()
    dropped = []
    lineno_hint = f"{lexicon.path}: " if lexicon.path else ""
    for word, prons in lexicon.entries.items():
        for pron in prons:
            if is_silence_pron(pron):
                dropped.append(word)
                continue
            try:
                syllables, odd = pron_to_syllables(pron, where=f"{lineno_hint}word '{word}': ")
            except ValueError as e:
                raise FormatError(lexicon.path or "<lexicon>", None, str(e),
                                  "write each initial followed by its toned final") from None
            if odd:
                odd_pairs[word] += odd
            if syllables:
                out.add(word, syllables)
    if dropped:
        log.info("lexicon: %d silence/noise entries have no CTC unit and are left out (%s)",
                 len(dropped), ", ".join(sorted(set(dropped))[:5]))
    if odd_pairs:
        log.warning("lexicon: %d initial/final pairs follow no pinyin spelling rule and were "
                    "joined as written (e.g. %s)", sum(odd_pairs.values()),
                    ", ".join(list(odd_pairs)[:5]))
    return out


# ----------------------------------------------------------------------------------------------
# segmentation

def max_match_segment(text: str, lexicon: Lexicon) -> List[Tuple[str, bool]]:
    """Split unsegmented text into lexicon words, longest match first (forward maximum matching).

    Returns (piece, in_lexicon) pairs; consecutive characters that no lexicon word covers are
    kept together as one piece with in_lexicon False (e.g. a Latin word, an unknown name).
    """
    pieces: List[Tuple[str, bool]] = []
    n = len(text)
    i = 0
    longest = max(1, lexicon.max_word_len)
    while i < n:
        for j in range(min(n, i + longest), i, -1):
            if text[i:j] in lexicon.entries:
                pieces.append((text[i:j], True))
                i = j
                break
        else:
            if pieces and not pieces[-1][1]:
                pieces[-1] = (pieces[-1][0] + text[i], False)
            else:
                pieces.append((text[i], False))
            i += 1
    return pieces


def segment_words(words: Iterable[str], lexicon: Lexicon) -> List[str]:
    """Keep lexicon words; split the others into lexicon words by maximum matching, leaving the
    runs no lexicon word covers as words of their own."""
    out: List[str] = []
    for w in words:
        if w in lexicon.entries:
            out.append(w)
        else:
            out.extend(piece for piece, _ in max_match_segment(w, lexicon))
    return out
