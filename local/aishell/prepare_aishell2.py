#!/usr/bin/env python3
"""Kaldi data dirs train/dev/test from AISHELL-2 (iOS channel) and AISHELL-DEV-TEST-SET.

Usage: prepare_aishell2.py --corpus-dir DIR --out-dir data [--channel iOS] [--lexicon LEX]
       prepare_aishell2.py --train-dir AISHELL-2/iOS/data --dev-dir AISHELL-DEV-TEST-SET/iOS/dev \\
           --test-dir AISHELL-DEV-TEST-SET/iOS/test --out-dir data
 e.g.: local/aishell/prepare_aishell2.py --corpus-dir /data/aishell2 --out-dir data

The release layout (each set dir holds wav.scp with paths relative to it, and trans.txt):
    DIR/iOS/data/{wav.scp,trans.txt,wav/C0012/IC0012W0014.wav}            train
    DIR/AISHELL-DEV-TEST-SET/iOS/{dev,test}/{wav.scp,trans.txt,wav/...}    dev, test
(--corpus-dir DIR may also be the AISHELL-2 folder itself, with AISHELL-DEV-TEST-SET beside or
inside it; --train-dir/--dev-dir/--test-dir override the guesses.)

Writes OUT/{train,dev,test}/{wav.scp,text,utt2spk,spk2utt}.  As Kaldi's aishell2 recipe, the
speaker is the wav's folder (C0012) and wav.scp paths are made absolute.  trans.txt is unsegmented
characters: text keeps it so (ASCII letters upper-cased, whitespace collapsed), or, with --lexicon,
segments it into lexicon words by forward maximum matching (characters no word covers stay single).
wav.scp entries without a transcript, transcripts without a wav.scp entry, and entries whose wav
file is missing are skipped and counted in the log.

AISHELL-2 ships no lexicon (Kaldi's recipe downloads DaCiDian). Without --lexicon, one is made from
pypinyin (`--make-lexicon`, the default): the words of pypinyin's phrase dictionary (2-4 characters)
written only with characters of the training transcripts, and each of those characters alone, with
pypinyin's toned readings (`中国 zhong1 guo2`; neutral tone 5). It goes to OUT/local/lexicon.txt
(a given --lexicon is copied there), so later stages never need the corpus path.
Latin-letter words have no entry: they are counted, and prepare_lang's OOV policy applies.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from nasr.data.datadir import DataDir, validate_data_dir, write_data_dir
from nasr.utils.io import FormatError

log = logging.getLogger("nasr.prepare.aishell2")

SETS = ("train", "dev", "test")


class CorpusError(RuntimeError):
    """The corpus directory is not laid out like AISHELL-2."""


def read_two_columns(path: Path) -> Tuple[Dict[str, str], int]:
    """key -> rest of line (tab or space separated); also the number of lines with no value."""
    if not path.is_file():
        raise CorpusError(f"{path}: missing (fix: point the set dir at the folder with wav.scp and trans.txt)")
    out: Dict[str, str] = {}
    empty = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.strip().split(maxsplit=1)
            if not parts:
                continue
            if parts[0] in out:
                raise FormatError(path, lineno, f"key '{parts[0]}' appears twice", "keep one line per utterance")
            if len(parts) < 2 or not parts[1].strip():
                empty += 1
                continue
            out[parts[0]] = parts[1].strip()
    return out, empty


def normalise_text(text: str) -> str:
    """Collapse whitespace and upper-case ASCII letters (English words in AISHELL-2 vary in case)."""
    return " ".join("".join(c.upper() if c.isascii() else c for c in w) for w in text.split())


def locate_sets(corpus_dir: Optional[Path], channel: str, overrides: Dict[str, Optional[str]]) -> Dict[str, Path]:
    dirs: Dict[str, Path] = {}
    for subset in SETS:
        if overrides.get(subset):
            dirs[subset] = Path(overrides[subset])
            continue
        if corpus_dir is None:
            raise CorpusError(f"no --{subset}-dir and no --corpus-dir (fix: give --corpus-dir)")
        if subset == "train":
            candidates = [corpus_dir / channel / "data", corpus_dir / "AISHELL-2" / channel / "data"]
        else:
            candidates = [base / "AISHELL-DEV-TEST-SET" / channel / subset
                          for base in (corpus_dir, corpus_dir.parent)]
        found = next((c for c in candidates if (c / "wav.scp").is_file()), None)
        if found is None:
            raise CorpusError(f"{subset}: no wav.scp in any of {', '.join(map(str, candidates))} "
                              f"(fix: give --{subset}-dir)")
        dirs[subset] = found
    return dirs


def prepare_set(set_dir: Path, lexicon=None) -> Tuple[DataDir, Dict[str, int]]:
    from nasr.asr.lexicon import segment_words

    wav_scp, empty_wav = read_two_columns(set_dir / "wav.scp")
    trans, empty_trans = read_two_columns(set_dir / "trans.txt")
    utt2spk, wavs, text = {}, {}, {}
    counts = {"wavs_without_transcript": 0, "transcripts_without_wav": 0, "missing_wav_files": 0,
              "empty_transcripts": empty_trans, "empty_wav_entries": empty_wav}
    for utt, rel in wav_scp.items():
        if utt not in trans:
            counts["wavs_without_transcript"] += 1
            continue
        path = Path(rel) if Path(rel).is_absolute() else set_dir / rel
        if not path.is_file():
            counts["missing_wav_files"] += 1
            continue
        words = normalise_text(trans[utt])
        if lexicon is not None:
            words = " ".join(segment_words(words.split(), lexicon))
        utt2spk[utt] = path.parent.name
        wavs[utt] = str(path.resolve())
        text[utt] = words
    counts["transcripts_without_wav"] = len(set(trans) - set(wav_scp))
    counts["utterances"] = len(utt2spk)
    counts["speakers"] = len(set(utt2spk.values()))
    return DataDir(utt2spk=utt2spk, text=text, wav_scp=wavs), counts


def pinyin_lexicon(texts) -> "Lexicon":
    """Word -> toned syllables from pypinyin for the characters of `texts` (see the module doc)."""
    from pypinyin import Style, pinyin
    from pypinyin.phrases_dict import phrases_dict

    from nasr.asr.lexicon import Lexicon

    chars = {c for t in texts for c in t if not c.isascii() and not c.isspace()}
    if not chars:
        raise CorpusError("the training transcripts hold no Chinese character to build a lexicon from "
                          "(fix: give --lexicon)")
    words = sorted(chars) + sorted(w for w in phrases_dict if 2 <= len(w) <= 4 and set(w) <= chars)
    lex = Lexicon()
    for w in words:
        # Phrase-aware readings (pypinyin picks a polyphone's reading from the phrase dictionary).
        syl = [s[0] for s in pinyin(w, style=Style.TONE3, neutral_tone_with_five=True, errors="ignore")]
        if len(syl) == len(w) and all(x[-1:].isdigit() for x in syl):
            lex.add(w, syl)
    log.info("pypinyin lexicon: %d words (%d characters of the training text, %d phrases)",
             len(lex.entries), len(chars), len(lex.entries) - len(chars))
    return lex


def prepare(out_dir, corpus_dir=None, channel: str = "iOS", train_dir=None, dev_dir=None, test_dir=None,
            lexicon_path=None, validate: bool = True, make_lexicon: bool = False) -> Dict[str, Dict[str, int]]:
    out_dir = Path(out_dir)
    corpus_dir = Path(corpus_dir) if corpus_dir is not None else None
    if corpus_dir is not None and not corpus_dir.is_dir():
        raise CorpusError(f"{corpus_dir}: no such directory (fix: give the folder holding {channel}/data)")
    dirs = locate_sets(corpus_dir, channel, {"train": train_dir, "dev": dev_dir, "test": test_dir})
    from nasr.asr.lexicon import read_lexicon, write_lexicon

    if lexicon_path is not None:
        lexicon = read_lexicon(lexicon_path)
    elif make_lexicon:
        trans, _ = read_two_columns(dirs["train"] / "trans.txt")
        lexicon = pinyin_lexicon(normalise_text(t) for t in trans.values())
    else:
        lexicon = None
    if lexicon is not None:
        write_lexicon(out_dir / "local" / "lexicon.txt", lexicon)
    all_counts = {}
    for subset in SETS:
        data, counts = prepare_set(dirs[subset], lexicon)
        if not data.utt2spk:
            raise CorpusError(f"{dirs[subset]}: no utterance with a transcript and an existing wav "
                              "(fix: check the corpus is complete)")
        # Speaker = folder gives ids that need not prefix the utterance ids; Kaldi needs only that
        # sorting by utterance keeps each speaker's utterances together, which validate checks.
        write_data_dir(data, out_dir / subset)
        all_counts[subset] = counts
        log.info("%s (%s): %d utterances, %d speakers; skipped: %d wavs without a transcript, "
                 "%d transcripts without a wav.scp entry, %d missing wav files, %d empty transcripts",
                 subset, dirs[subset], counts["utterances"], counts["speakers"],
                 counts["wavs_without_transcript"], counts["transcripts_without_wav"],
                 counts["missing_wav_files"], counts["empty_transcripts"])
    if validate:
        for subset in SETS:
            validate_data_dir(out_dir / subset, check_audio=False)
    return all_counts


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="e.g.: local/aishell/prepare_aishell2.py --corpus-dir /data/aishell2 --out-dir data")
    parser.add_argument("--corpus-dir", default=None, help="folder holding <channel>/data and AISHELL-DEV-TEST-SET")
    parser.add_argument("--channel", default="iOS", choices=("iOS", "Android", "Mic"), help="recording channel")
    parser.add_argument("--train-dir", default=None, help="the train set dir (wav.scp, trans.txt)")
    parser.add_argument("--dev-dir", default=None, help="the dev set dir")
    parser.add_argument("--test-dir", default=None, help="the test set dir")
    parser.add_argument("--lexicon", default=None, help="segment the text into this lexicon's words "
                        "(copied to OUT/local/lexicon.txt)")
    parser.add_argument("--make-lexicon", choices=("pypinyin", "none"), default="pypinyin",
                        help="without --lexicon: build OUT/local/lexicon.txt from pypinyin, or keep "
                             "the text unsegmented (none)")
    parser.add_argument("--out-dir", required=True, help="where train/, dev/, test/ go")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from nasr.utils.log import setup_logging

    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        prepare(args.out_dir, args.corpus_dir, args.channel, args.train_dir, args.dev_dir,
                args.test_dir, args.lexicon, make_lexicon=args.make_lexicon == "pypinyin")
    except (CorpusError, ValueError) as e:  # FormatError is a ValueError
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
