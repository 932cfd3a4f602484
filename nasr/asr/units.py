"""CTC output units (units.txt) and the text -> units conversion a lang dir defines.

A lang dir (written by `python -m nasr.bin.prepare_lang`) holds

    units.txt    `<blk> 0`, `<unk> 1`, then the units, one `unit id` per line, ids 0..V-1
    lexicon.txt  word -> unit sequence for the chosen unit type
    lang.json    unit type, OOV policy, source lexicon, counts
    bpe.model    the sentencepiece model (unit type bpe only)
    text_units   the training text as unit strings (for LM/graph tools and inspection)

Unit types:
  syllable  the paper's CI syllables: toned Mandarin syllables (+ English phones) via the lexicon
  char      the characters of the text (see `split_chars`)
  bpe       sentencepiece pieces trained on the training text
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from nasr.utils.io import FormatError, atomic_write, read_json

log = logging.getLogger(__name__)

BLANK = "<blk>"
UNK = "<unk>"
BLANK_ID = 0
UNIT_TYPES = ("syllable", "char", "bpe")
OOV_POLICIES = ("map-to-unk", "skip-utt", "error")
SP_SPACE = "\u2581"  # sentencepiece's word-boundary mark

# A run of Latin letters, digits and apostrophes is one token (an English word or a number):
# char units treat every other non-space character as its own token.
_LATIN_RUN = re.compile(r"[A-Za-z0-9']+")


def split_chars(text: str) -> List[str]:
    """'我 爱 AI 2 号' -> ['我', '爱', 'AI', '2', '号'].

    Each CJK (or other non-Latin) character is a token, a run of ASCII letters/digits/apostrophes
    is one token, whitespace separates and is dropped.  This is the char units' tokenisation, and
    CER scoring's with --latin-as-word; by default CER counts Latin letters one per character, as
    Kaldi's AISHELL scoring does (nasr.asr.scoring.kaldi_chars).
    """
    tokens: List[str] = []
    for chunk in text.split():
        pos = 0
        for m in _LATIN_RUN.finditer(chunk):
            tokens.extend(chunk[pos:m.start()])
            tokens.append(m.group(0))
            pos = m.end()
        tokens.extend(chunk[pos:])
    return tokens


class Units:
    """The unit inventory of units.txt: ids 0..V-1, `<blk>` is 0."""

    def __init__(self, units: Sequence[str], path=None):
        self.id2unit: List[str] = list(units)
        self.path = path
        if not self.id2unit or self.id2unit[0] != BLANK:
            raise FormatError(path or "<units>", 1, f"the first unit must be '{BLANK}' with id 0",
                              "rerun prepare_lang")
        self.unit2id: Dict[str, int] = {}
        for i, u in enumerate(self.id2unit):
            if u in self.unit2id:
                raise FormatError(path or "<units>", i + 1, f"unit '{u}' repeats", "list every unit once")
            self.unit2id[u] = i

    blank_id = BLANK_ID

    @property
    def unk_id(self) -> Optional[int]:
        return self.unit2id.get(UNK)

    def __len__(self) -> int:
        return len(self.id2unit)

    def __contains__(self, unit) -> bool:
        return unit in self.unit2id

    def encode(self, units: Iterable[str]) -> List[int]:
        """Unit strings -> ids; a unit not in the inventory becomes `<unk>` (KeyError if none)."""
        unk = self.unk_id
        out = []
        for u in units:
            i = self.unit2id.get(u, unk)
            if i is None:
                raise KeyError(f"unit '{u}' is not in {self.path or 'the unit inventory'} and it has no {UNK}")
            out.append(i)
        return out

    def decode(self, ids: Iterable[int]) -> List[str]:
        return [self.id2unit[int(i)] for i in ids]

    @classmethod
    def load(cls, path) -> "Units":
        """Read units.txt (`unit id` lines, ids 0..V-1 in order)."""
        path = Path(path)
        if not path.is_file():
            raise FormatError(path, None, "no such units file",
                              "run python -m nasr.bin.prepare_lang to write the lang dir")
        units: List[str] = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                fields = line.split()
                if len(fields) != 2 or not fields[1].isdigit():
                    raise FormatError(path, lineno, f"expected '<unit> <id>', got '{line.rstrip()}'",
                                      "one unit and its integer id per line")
                if int(fields[1]) != len(units):
                    raise FormatError(path, lineno, f"id {fields[1]} out of order (expected {len(units)})",
                                      "ids must run 0, 1, 2, ... in file order")
                units.append(fields[0])
        return cls(units, path=path)

    def write(self, path) -> None:
        with atomic_write(path) as f:
            for i, u in enumerate(self.id2unit):
                f.write(f"{u} {i}\n")


@dataclass
class OovStats:
    """What a conversion met: OOVs (occurrences per OOV word or uncovered character run),
    utterances touched, and how many out-of-lexicon words maximum matching split entirely into
    lexicon words."""
    oov_words: Dict[str, int] = field(default_factory=dict)
    oov_utts: int = 0
    segmented: int = 0
    utts: int = 0

    @property
    def oov_tokens(self) -> int:
        return sum(self.oov_words.values())

    def describe(self) -> str:
        top = sorted(self.oov_words.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        shown = ", ".join(f"{w} ({n})" for w, n in top)
        return (f"{self.oov_tokens} OOV tokens ({len(self.oov_words)} distinct) in {self.oov_utts} "
                f"of {self.utts} utterances" + (f"; most frequent: {shown}" if top else "")
                + (f"; {self.segmented} out-of-lexicon words split into lexicon words" if self.segmented else ""))


class OovError(ValueError):
    pass


class Tokenizer:
    """Transcript (space-separated words, as a data dir's `text`) -> unit strings.

    syllable: each word's first pronunciation in the unit lexicon; a word not in it is split into
    lexicon words by maximum matching (AISHELL-2 text is unsegmented), and each run of characters
    no lexicon word covers is an OOV.  char: `split_chars`, a character outside units.txt is an OOV.  bpe: the
    sentencepiece model (pieces are always in units.txt; OOVs do not arise).
    OOV handling: `map-to-unk` (the OOV becomes one `<unk>`), `skip-utt` (`__call__` returns None),
    `error` (OovError naming the word).
    """

    def __init__(self, unit_type: str, units: Units, lexicon=None, sp_model=None,
                 oov: str = "map-to-unk"):
        if unit_type not in UNIT_TYPES:
            raise ValueError(f"unknown unit type '{unit_type}' (expected one of {', '.join(UNIT_TYPES)})")
        if oov not in OOV_POLICIES:
            raise ValueError(f"unknown OOV policy '{oov}' (expected one of {', '.join(OOV_POLICIES)})")
        if unit_type == "syllable" and lexicon is None:
            raise ValueError("syllable units need a lexicon")
        if unit_type == "bpe" and sp_model is None:
            raise ValueError("bpe units need a sentencepiece model")
        self.unit_type = unit_type
        self.units = units
        self.lexicon = lexicon
        self.sp = sp_model
        self.oov = oov
        self.stats = OovStats()

    def _words_to_units(self, text: str) -> Tuple[List[str], List[str]]:
        """(units, OOV words) of one transcript, OOVs already replaced by `<unk>`."""
        from nasr.asr.lexicon import max_match_segment

        if self.unit_type == "bpe":
            return list(self.sp.encode(text.strip(), out_type=str)), []
        if self.unit_type == "char":
            chars = split_chars(text)
            oovs = [c for c in chars if c not in self.units]
            return [c if c in self.units else UNK for c in chars], oovs
        out: List[str] = []
        oovs: List[str] = []
        entries = self.lexicon.entries
        for word in text.split():
            prons = entries.get(word)
            if prons is not None:
                out.extend(prons[0])
                continue
            pieces = max_match_segment(word, self.lexicon)
            if all(known for _, known in pieces):
                self.stats.segmented += 1
            for piece, known in pieces:
                if known:
                    out.extend(entries[piece][0])
                else:
                    oovs.append(piece)
                    out.append(UNK)
        return out, oovs

    def __call__(self, text: str, where: str = "") -> Optional[List[str]]:
        units, oovs = self._words_to_units(text)
        self.stats.utts += 1
        if oovs:
            self.stats.oov_utts += 1
            for w in oovs:
                self.stats.oov_words[w] = self.stats.oov_words.get(w, 0) + 1
            if self.oov == "error":
                raise OovError(f"{where}'{oovs[0]}' is not in the lexicon/units "
                               f"({len(oovs)} OOV tokens in this utterance)")
            if self.oov == "skip-utt":
                return None
        return units

    def encode(self, text: str, where: str = "") -> Optional[List[int]]:
        units = self(text, where)
        return None if units is None else self.units.encode(units)

    def detokenize(self, units: Sequence[str]) -> str:
        """Unit strings -> text for scoring: bpe pieces are joined into words, chars into a
        string (scored per character anyway); syllables are kept space-separated."""
        if self.unit_type == "bpe":
            return "".join(units).replace(SP_SPACE, " ").strip()
        return " ".join(units)


def load_tokenizer(lang_dir, oov: Optional[str] = None) -> Tokenizer:
    """The Tokenizer of a prepared lang dir (`oov` overrides the policy stored in lang.json)."""
    from nasr.asr.lexicon import read_lexicon

    lang_dir = Path(lang_dir)
    info_path = lang_dir / "lang.json"
    if not info_path.is_file():
        raise FormatError(info_path, None, "missing: not a lang dir",
                          f"run python -m nasr.bin.prepare_lang --out {lang_dir} ...")
    info = read_json(info_path)
    unit_type = info.get("unit_type")
    if unit_type not in UNIT_TYPES:
        raise FormatError(info_path, None, f"unit_type '{unit_type}' is not one of {UNIT_TYPES}",
                          "rerun prepare_lang")
    units = Units.load(lang_dir / "units.txt")
    lexicon = read_lexicon(lang_dir / "lexicon.txt") if unit_type == "syllable" else None
    sp = None
    if unit_type == "bpe":
        import sentencepiece as spm

        model = lang_dir / "bpe.model"
        if not model.is_file():
            raise FormatError(model, None, "missing for a bpe lang dir", "rerun prepare_lang --unit bpe")
        sp = spm.SentencePieceProcessor(model_file=str(model))
    return Tokenizer(unit_type, units, lexicon=lexicon, sp_model=sp,
                     oov=oov or info.get("oov", "map-to-unk"))
