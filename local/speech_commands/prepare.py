#!/usr/bin/env python3
"""Kaldi data dirs for keyword spotting on Google Speech Commands (v0.01 or v0.02).

Writes <out-dir>/{train,valid,test}/ with
  wav.scp   utt -> absolute wav path; noise recording id -> absolute path of a _background_noise_ file
  segments  every utterance: word clips span their whole file, `_silence_` clips are 1 s windows
            cut from the noise recordings (only written when there is a silence class)
  text      utt -> class label (a keyword, `_unknown_` or `_silence_`)
  utt2spk / spk2utt   the speaker is the hash before `_nohash_`; a noise recording is its own speaker
  utt2dur   seconds
  labels.txt, noise.scp   the class list (also in <out-dir>) and the noise recordings for augmentation

The 12-class task of Warden (2017), Honk and the DARTS-KWS paper: 10 keywords, `_unknown_` (the
other words, subsampled) and `_silence_` (background noise).  Class sizes follow TensorFlow's
speech_commands/input_data.py: per split, silence and unknown each get ceil(percent/100 * number of
keyword clips in that split).

Utterance ids are `<speaker>-<word>-<n>`, so sorting by utterance also sorts by speaker (Kaldi's
rule): speaker ids only hold [0-9a-z_], all of which sort after '-'.
"""
from __future__ import annotations

import argparse
import logging
import math
import re
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np
import soundfile as sf

from nasr.data.datadir import replace_dirs
from nasr.utils.io import FormatError, atomic_write, write_table

log = logging.getLogger("nasr.prepare.speech_commands")

DEFAULT_KEYWORDS = "yes,no,up,down,left,right,on,off,go,stop"
UNKNOWN = "_unknown_"
SILENCE = "_silence_"
NOISE_DIR = "_background_noise_"
SPLITS = ("train", "valid", "test")
# The paper splits "the entire dataset into 40% training, 40% validation, and 20% testing".
PAPER_FRACTIONS = (0.4, 0.4, 0.2)
SILENCE_CLIP_MS = 1000
CLIP_NAME = re.compile(r"^(?P<speaker>[0-9a-z]+)_nohash_(?P<index>[0-9]+)\.wav$")
# Separate random streams per purpose, so that e.g. changing --unknown-percent does not move the
# speaker split or the silence windows.
RNG_SPEAKERS, RNG_UNKNOWN, RNG_SILENCE = 1, 2, 3


class CorpusError(RuntimeError):
    """The corpus directory is not laid out like Speech Commands."""


@dataclass(frozen=True)
class Clip:
    """One word recording: <corpus>/<word>/<speaker>_nohash_<index>.wav."""
    path: Path          # absolute
    word: str
    speaker: str
    index: str

    @property
    def rel(self) -> str:
        """The path as the official validation/testing lists write it."""
        return f"{self.word}/{self.path.name}"

    @property
    def utt(self) -> str:
        return f"{self.speaker}-{self.word}-{self.index}"


@dataclass(frozen=True)
class SilenceClip:
    utt: str
    rec: str
    start_ms: int
    end_ms: int


def noise_rec_id(path: Path) -> str:
    """Recording id of a background noise file; also the speaker of its silence clips."""
    return "noise_" + re.sub(r"[^0-9a-z_]", "_", path.stem.lower())


def scan_corpus(corpus_dir: Path) -> Tuple[List[str], List[Clip], List[Path]]:
    """The word folders, every word clip and the background noise wavs of an unpacked corpus."""
    expected = (f"expected {corpus_dir}/<word>/<speaker>_nohash_<n>.wav for each word plus "
                f"{corpus_dir}/{NOISE_DIR}/*.wav, as unpacked from speech_commands_v0.0X.tar.gz "
                f"by local/speech_commands/download.sh")
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus dir '{corpus_dir}' does not exist ({expected})")
    words = sorted(p.name for p in corpus_dir.iterdir()
                   if p.is_dir() and not p.name.startswith(("_", ".")))
    if not words:
        raise CorpusError(f"corpus dir '{corpus_dir}' has no word folders ({expected})")
    clips: List[Clip] = []
    for word in words:
        for wav in sorted((corpus_dir / word).glob("*.wav")):
            m = CLIP_NAME.match(wav.name)
            if m is None:
                raise CorpusError(f"'{wav}' is not named <speaker>_nohash_<n>.wav ({expected}); "
                                  f"rename or remove it")
            clips.append(Clip(wav.resolve(), word, m["speaker"], m["index"]))
    empty = [w for w in words if not any(c.word == w for c in clips)]
    if empty:
        raise CorpusError(f"word folder(s) {', '.join(empty)} in '{corpus_dir}' hold no .wav files "
                          f"({expected}); is the unpacking incomplete?")
    noise_dir = corpus_dir / NOISE_DIR
    noises = sorted(p.resolve() for p in noise_dir.glob("*.wav")) if noise_dir.is_dir() else []
    return words, clips, noises


def read_list(path: Path, known: Dict[str, Clip]) -> List[str]:
    """An official list (validation_list.txt / testing_list.txt): one `word/file.wav` per line."""
    if not path.is_file():
        raise CorpusError(f"'{path}' does not exist; --split official needs the corpus's "
                          f"validation_list.txt and testing_list.txt (or use --split paper)")
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            rel = line.strip()
            if not rel:
                continue
            if rel not in known:
                raise FormatError(path, lineno, f"'{rel}' is not a clip of the corpus",
                                  "use the list that came with this corpus version")
            out.append(rel)
    return out


def split_official(corpus_dir: Path, clips: Sequence[Clip]) -> Dict[str, str]:
    """Utterance -> split from the corpus's own lists (everything not listed is training)."""
    by_rel = {c.rel: c for c in clips}
    assignment = {c.utt: "train" for c in clips}
    for split, name in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
        for rel in read_list(corpus_dir / name, by_rel):
            utt = by_rel[rel].utt
            if assignment[utt] != "train":
                raise CorpusError(f"'{rel}' is in both validation_list.txt and testing_list.txt "
                                  f"of '{corpus_dir}'")
            assignment[utt] = split
    return assignment


def split_by_speaker(clips: Sequence[Clip], seed: int,
                     fractions: Sequence[float] = PAPER_FRACTIONS) -> Dict[str, str]:
    """Utterance -> split for the paper's random 40/40/20 split.

    The paper gives only the proportions.  We split by SPEAKER (40/40/20 of the speakers), so that no
    test or validation speaker is heard in training, which is also what the official lists guarantee;
    an utterance-level split would let the model recognise voices it has already seen.
    """
    speakers = sorted({c.speaker for c in clips})
    order = np.random.default_rng([seed, RNG_SPEAKERS]).permutation(len(speakers))
    n_train = int(round(fractions[0] * len(speakers)))
    n_valid = int(round(fractions[1] * len(speakers)))
    split_of_speaker = {}
    for rank, i in enumerate(order):
        split_of_speaker[speakers[i]] = ("train" if rank < n_train else
                                         "valid" if rank < n_train + n_valid else "test")
    return {c.utt: split_of_speaker[c.speaker] for c in clips}


def class_list(keywords: Sequence[str], words: Sequence[str], unknown_percent: float,
               silence_percent: float) -> List[str]:
    """Keywords in the order given, then `_unknown_` (if any other word exists), then `_silence_`."""
    labels = list(keywords)
    if unknown_percent > 0 and set(words) - set(keywords):
        labels.append(UNKNOWN)
    if silence_percent > 0:
        labels.append(SILENCE)
    return labels


def cut_silence(noise_ms: Dict[str, int], counts: Dict[str, int], seed: int) -> Dict[str, List[SilenceClip]]:
    """1 s windows of background noise for each split, from disjoint regions of the recordings.

    Each recording is cut into consecutive regions, one per split that needs silence: 1 s each
    (so that a small split still gets a usable region) plus the rest of the recording shared in
    proportion to the number of clips each split needs.  A split's windows start anywhere inside
    its own region, so no sample of test noise is in a training silence clip.  A recording is drawn
    in proportion to the usable length of its region.
    """
    total = sum(counts.values())
    out: Dict[str, List[SilenceClip]] = {s: [] for s in SPLITS}
    if total == 0:
        return out
    recs = sorted(noise_ms)
    needing = [s for s in SPLITS if counts[s] > 0]
    bounds = {}  # (rec, split) -> (first ms, end ms) of the region
    for rec in recs:
        floor = SILENCE_CLIP_MS if noise_ms[rec] >= SILENCE_CLIP_MS * len(needing) else 0
        spare = noise_ms[rec] - floor * len(needing)
        edge, acc = 0, 0
        for n_done, split in enumerate(needing, 1):
            acc += counts[split]
            stop = floor * n_done + spare * acc // total
            bounds[rec, split] = (edge, stop)
            edge = stop
    for s_index, split in enumerate(SPLITS):
        if counts[split] == 0:
            continue
        usable = np.array([max(0, bounds[r, split][1] - bounds[r, split][0] - SILENCE_CLIP_MS + 1)
                           for r in recs], dtype=np.float64)  # possible start positions
        if usable.sum() == 0:
            raise CorpusError(f"the background noise recordings are too short to cut {counts[split]} "
                              f"one-second {split} silence clips from their {split} region "
                              f"(lengths in ms: {noise_ms}); lower --silence-percent or add noise files")
        rng = np.random.default_rng([seed, RNG_SILENCE, s_index])
        choice = rng.choice(len(recs), size=counts[split], p=usable / usable.sum())
        n_per_rec: Counter = Counter()
        for i in choice:
            rec = recs[i]
            first, _ = bounds[rec, split]
            start = first + int(rng.integers(0, usable[i]))
            k = n_per_rec[rec]
            n_per_rec[rec] += 1
            out[split].append(SilenceClip(f"{rec}-{SILENCE}-{split}{k:05d}", rec, start,
                                          start + SILENCE_CLIP_MS))
    return out


def wav_duration(path: Path) -> float:
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises several types; all mean "not a readable wav"
        raise CorpusError(f"cannot read '{path}': {e}; re-download the corpus") from None
    return info.frames / info.samplerate


def write_split(dest: Path, clips: Sequence[Tuple[Clip, str]], silence: Sequence[SilenceClip],
                noise_paths: Dict[str, Path], labels: Sequence[str]) -> None:
    """Write one data dir.  `clips` are (clip, label) pairs; `noise_paths` the recordings that
    `silence` cuts from (they go into wav.scp)."""
    wav_scp, text, utt2spk, utt2dur, segments = {}, {}, {}, {}, {}
    for clip, label in clips:
        dur = wav_duration(clip.path)
        wav_scp[clip.utt] = str(clip.path)
        text[clip.utt] = label
        utt2spk[clip.utt] = clip.speaker
        utt2dur[clip.utt] = f"{dur:.4f}"
        # 5 decimals: 1/16000 s is 0.0000625, so the end rounds back to the exact last sample
        segments[clip.utt] = f"{clip.utt} 0.000 {dur:.5f}"
    for s in silence:
        wav_scp[s.rec] = str(noise_paths[s.rec])
        text[s.utt] = SILENCE
        utt2spk[s.utt] = s.rec
        utt2dur[s.utt] = f"{(s.end_ms - s.start_ms) / 1000:.4f}"
        segments[s.utt] = f"{s.rec} {s.start_ms / 1000:.3f} {s.end_ms / 1000:.3f}"
    spk2utt: Dict[str, List[str]] = defaultdict(list)
    for utt, spk in utt2spk.items():
        spk2utt[spk].append(utt)
    dest.mkdir(parents=True, exist_ok=True)
    write_table(dest / "wav.scp", wav_scp)
    write_table(dest / "text", text)
    write_table(dest / "utt2spk", utt2spk)
    write_table(dest / "spk2utt", {s: " ".join(sorted(u, key=str.encode)) for s, u in spk2utt.items()})
    write_table(dest / "utt2dur", utt2dur)
    if silence:
        # With a segments file Kaldi keys wav.scp by recording and wants every utterance in
        # segments, so word clips get a segment spanning their whole file.
        write_table(dest / "segments", segments)
    write_lines(dest / "labels.txt", labels)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    with atomic_write(path) as f:
        for line in lines:
            f.write(line + "\n")


def prepare(corpus_dir, out_dir, keywords: Sequence[str] = tuple(DEFAULT_KEYWORDS.split(",")),
            split: str = "paper", seed: int = 1, silence_percent: float = 10.0,
            unknown_percent: float = 10.0) -> Dict[str, Counter]:
    """Write the three data dirs; returns the class counts per split."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    keywords = list(keywords)
    if not keywords:
        raise ValueError("--keywords is empty; name at least one word")
    if len(set(keywords)) != len(keywords):
        raise ValueError(f"--keywords names a word twice: {','.join(keywords)}")
    if silence_percent < 0 or unknown_percent < 0:
        raise ValueError("--silence-percent and --unknown-percent must be >= 0")
    words, clips, noises = scan_corpus(corpus_dir)
    missing = [k for k in keywords if k not in words]
    if missing:
        raise CorpusError(f"keyword(s) {', '.join(missing)} have no folder in corpus dir '{corpus_dir}' "
                          f"(expected {corpus_dir}/<keyword>/*.wav; the corpus has: {', '.join(words)})")
    if silence_percent > 0 and not noises:
        raise CorpusError(f"'{corpus_dir / NOISE_DIR}' holds no .wav files, so there is nothing to cut "
                          f"silence clips from (fix: use the full corpus, or pass --silence-percent 0)")
    labels = class_list(keywords, words, unknown_percent, silence_percent)

    if split == "official":
        split_of = split_official(corpus_dir, clips)
    elif split == "paper":
        split_of = split_by_speaker(clips, seed)
    else:
        raise ValueError(f"unknown --split '{split}' (expected paper or official)")

    keyword_set = set(keywords)
    members: Dict[str, List[Tuple[Clip, str]]] = {s: [] for s in SPLITS}
    unknown_pool: Dict[str, List[Clip]] = {s: [] for s in SPLITS}
    for clip in clips:
        if clip.word in keyword_set:
            members[split_of[clip.utt]].append((clip, clip.word))
        else:
            unknown_pool[split_of[clip.utt]].append(clip)

    silence_counts = {}
    for s_index, s in enumerate(SPLITS):
        n_keyword = len(members[s])
        if UNKNOWN in labels:
            want = math.ceil(n_keyword * unknown_percent / 100)
            pool = unknown_pool[s]
            if want > len(pool):
                log.warning("%s: %d unknown clips wanted but only %d exist; using all of them",
                            s, want, len(pool))
            order = np.random.default_rng([seed, RNG_UNKNOWN, s_index]).permutation(len(pool))
            members[s].extend((pool[i], UNKNOWN) for i in order[:want])
        silence_counts[s] = math.ceil(n_keyword * silence_percent / 100) if SILENCE in labels else 0

    noise_paths = {noise_rec_id(p): p for p in noises}
    if len(noise_paths) != len(noises):
        raise CorpusError(f"two noise files in '{corpus_dir / NOISE_DIR}' map to the same recording id "
                          f"after lower-casing; rename one of them")
    noise_ms = {rec: int(wav_duration(p) * 1000) for rec, p in noise_paths.items()}
    silence = cut_silence(noise_ms, silence_counts, seed)

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out_dir))
    try:
        for s in SPLITS:
            used = {c.rec for c in silence[s]}
            write_split(staging / s, members[s], silence[s],
                        {r: p for r, p in noise_paths.items() if r in used}, labels)
            if noise_paths:
                # Augmentation may mix any noise recording, not only those this split cut silence from.
                write_table(staging / s / "noise.scp", {r: str(p) for r, p in noise_paths.items()})
        replace_dirs(staging, out_dir, SPLITS)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_lines(out_dir / "labels.txt", labels)
    if noise_paths:
        write_table(out_dir / "noise.scp", {r: str(p) for r, p in noise_paths.items()})

    counts = {s: Counter(label for _, label in members[s]) for s in SPLITS}
    for s in SPLITS:
        counts[s][SILENCE] += len(silence[s])
    log_counts(labels, counts)
    return counts


def log_counts(labels: Sequence[str], counts: Dict[str, Counter]) -> None:
    width = max(len(x) for x in list(labels) + ["total"])
    log.info("%-*s %8s %8s %8s", width, "class", *SPLITS)
    for label in labels:
        log.info("%-*s %8d %8d %8d", width, label, *(counts[s][label] for s in SPLITS))
    log.info("%-*s %8d %8d %8d", width, "total", *(sum(counts[s].values()) for s in SPLITS))


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Kaldi data dirs (train/valid/test) for Speech Commands keyword spotting.",
        epilog="e.g.: local/speech_commands/prepare.py --corpus-dir /data/speech_commands_v0.01 "
               "--out-dir data --split paper")
    p.add_argument("--corpus-dir", required=True, type=Path, help="the unpacked corpus")
    p.add_argument("--out-dir", required=True, type=Path, help="where train/ valid/ test/ go")
    p.add_argument("--keywords", default=DEFAULT_KEYWORDS,
                   help="comma-separated keywords; the other words form _unknown_ (default: %(default)s)")
    p.add_argument("--split", choices=("paper", "official"), default="paper",
                   help="paper: seeded random 40/40/20 split by speaker; official: the corpus's "
                        "validation_list.txt / testing_list.txt (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--silence-percent", type=float, default=10.0,
                   help="silence clips per split, as a percentage of its keyword clips (0: no class)")
    p.add_argument("--unknown-percent", type=float, default=10.0,
                   help="unknown clips per split, as a percentage of its keyword clips (0: no class)")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log.info("%s", " ".join([Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv))))
    keywords = [k.strip() for k in args.keywords.split(",") if k.strip()]
    try:
        prepare(args.corpus_dir, args.out_dir, keywords, args.split, args.seed,
                args.silence_percent, args.unknown_percent)
    except (CorpusError, FormatError, ValueError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
