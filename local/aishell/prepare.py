#!/usr/bin/env python3
"""Kaldi data dirs train/dev/test from an AISHELL-1 release (openslr 33), as Kaldi's aishell_data_prep.sh.

Usage: prepare.py --corpus-dir DIR --out-dir data
 e.g.: local/aishell/prepare.py --corpus-dir /data/aishell --out-dir data

DIR is what download.sh leaves (or the synthetic tree):
    DIR/data_aishell/wav/{train,dev,test}/S0002/BAC009S0002W0122.wav   (per-speaker tars unpacked)
    DIR/data_aishell/transcript/aishell_transcript_v0.8.txt           BAC009S0002W0122 而 对 楼市 ...
    DIR/resource_aishell/lexicon.txt

Writes OUT/{train,dev,test}/{wav.scp,text,utt2spk,spk2utt}: wav.scp holds absolute paths, the speaker
is the wav's folder (S0002, a prefix-consistent id: BAC009S0002W... sorts with S0002), text is the
transcript's words joined by single spaces as the release segments them.  OUT/local/lexicon.txt is
a copy of the release lexicon, so later stages never need the corpus path.
Transcript lines without a wav and wavs without a transcript line are skipped and counted in the log.
"""
from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from nasr.data.datadir import DataDir, validate_data_dir, write_data_dir
from nasr.utils.io import FormatError, atomic_write

log = logging.getLogger("nasr.prepare.aishell")

SETS = ("train", "dev", "test")
TRANSCRIPT = Path("data_aishell/transcript/aishell_transcript_v0.8.txt")
WAV_ROOT = Path("data_aishell/wav")
LEXICON = Path("resource_aishell/lexicon.txt")
SPEAKER_DIR = re.compile(r"^S\d{4}$")


class CorpusError(RuntimeError):
    """The corpus directory is not laid out like the AISHELL-1 release."""


def read_transcript(path: Path) -> Tuple[Dict[str, str], int]:
    """utt -> words joined by single spaces; also the number of lines without words (skipped)."""
    if not path.is_file():
        raise CorpusError(f"{path}: missing (fix: --corpus-dir must hold data_aishell/transcript/; "
                          "run local/aishell/download.sh)")
    out: Dict[str, str] = {}
    empty = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            utt, words = fields[0], fields[1:]
            if utt in out:
                raise FormatError(path, lineno, f"utterance '{utt}' has a second transcript line",
                                  "keep one line per utterance")
            if not words:
                empty += 1
                continue
            out[utt] = " ".join(words)
    return out, empty


def find_wavs(wav_root: Path) -> Dict[str, Dict[str, Tuple[str, Path]]]:
    """set -> utt -> (speaker, absolute wav path)."""
    if not wav_root.is_dir():
        raise CorpusError(f"{wav_root}: missing (fix: --corpus-dir must hold data_aishell/wav/)")
    tars = sorted(wav_root.glob("*.tar.gz"))
    found = {s: {} for s in SETS}
    seen: Dict[str, Path] = {}
    for subset in SETS:
        set_dir = wav_root / subset
        if not set_dir.is_dir():
            continue
        for wav in sorted(set_dir.glob("*/*.wav")):
            speaker = wav.parent.name
            utt = wav.stem
            if utt in seen:
                raise CorpusError(f"{wav}: utterance '{utt}' also at {seen[utt]} "
                                  "(fix: remove the duplicate wav)")
            seen[utt] = wav
            found[subset][utt] = (speaker, wav.resolve())
    if not seen:
        hint = (f"{len(tars)} per-speaker archives are still packed; unpack them "
                f"(for f in {wav_root}/*.tar.gz; do tar -xzf $f -C {wav_root}; done) or rerun "
                "local/aishell/download.sh" if tars else "check --corpus-dir")
        raise CorpusError(f"{wav_root}: no wav files under {{train,dev,test}}/<speaker>/ (fix: {hint})")
    if tars:
        log.warning("%s: %d per-speaker archives are still packed; their speakers are missing",
                    wav_root, len(tars))
    odd = sorted({spk for s in found.values() for spk, _ in s.values() if not SPEAKER_DIR.match(spk)})
    if odd:
        log.warning("speaker folders not named like S0002: %s", ", ".join(odd[:5]))
    return found


def prepare(corpus_dir, out_dir, validate: bool = True) -> Dict[str, Dict[str, int]]:
    """Write the three data dirs; returns per-set counts (utterances, speakers, skipped)."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    if not corpus_dir.is_dir():
        raise CorpusError(f"{corpus_dir}: no such directory (fix: give the folder holding data_aishell/)")
    transcripts, empty_lines = read_transcript(corpus_dir / TRANSCRIPT)
    wavs = find_wavs(corpus_dir / WAV_ROOT)
    counts: Dict[str, Dict[str, int]] = {}
    with_audio = set()
    for subset in SETS:
        utt2spk, wav_scp, text = {}, {}, {}
        no_text = 0
        for utt, (speaker, path) in wavs[subset].items():
            if utt not in transcripts:
                no_text += 1
                continue
            with_audio.add(utt)
            utt2spk[utt] = speaker
            wav_scp[utt] = str(path)
            text[utt] = transcripts[utt]
        if not utt2spk:
            raise CorpusError(f"{corpus_dir / WAV_ROOT / subset}: no utterance with both audio and "
                              "a transcript (fix: check the corpus is complete)")
        write_data_dir(DataDir(utt2spk=utt2spk, text=text, wav_scp=wav_scp), out_dir / subset)
        counts[subset] = {"utterances": len(utt2spk), "speakers": len(set(utt2spk.values())),
                          "wavs_without_transcript": no_text}
        log.info("%s: %d utterances, %d speakers; %d wavs without a transcript skipped",
                 subset, len(utt2spk), counts[subset]["speakers"], no_text)
    no_audio = len(set(transcripts) - with_audio - {u for s in SETS for u in wavs[s]})
    counts["transcript"] = {"lines": len(transcripts), "without_audio": no_audio,
                            "without_words": empty_lines}
    log.info("transcript: %d lines; %d without audio skipped; %d without words skipped",
             len(transcripts), no_audio, empty_lines)
    lexicon = corpus_dir / LEXICON
    if lexicon.is_file():
        with open(lexicon, "rb") as src, atomic_write(out_dir / "local" / "lexicon.txt", mode="wb") as dst:
            shutil.copyfileobj(src, dst)
        log.info("lexicon: copied %s to %s", lexicon, out_dir / "local" / "lexicon.txt")
    else:
        log.warning("%s: missing; syllable units need it (unpack resource_aishell.tgz)", lexicon)
    if validate:
        for subset in SETS:
            validate_data_dir(out_dir / subset, check_audio=False)
    return counts


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="e.g.: local/aishell/prepare.py --corpus-dir /data/aishell --out-dir data")
    parser.add_argument("--corpus-dir", required=True, help="folder holding data_aishell/ and resource_aishell/")
    parser.add_argument("--out-dir", required=True, help="where train/, dev/, test/ go (e.g. data)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from nasr.utils.log import setup_logging

    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        prepare(args.corpus_dir, args.out_dir)
    except (CorpusError, ValueError) as e:  # FormatError is a ValueError
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
