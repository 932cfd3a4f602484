#!/usr/bin/env python3
"""Kaldi data dirs for language identification from a VoxLingua107-shaped tree.

Input: <corpus-dir>/<lang>/<clip>.wav, the layout of VoxLingua107's unzipped per-language archives
(and of `python -m nasr.bin.make_synth_corpus lid`).  The folder is the ISO 639 language code.  Clip
names start with the YouTube id of the video the clip was cut from:

    real VoxLingua107   <video>---<start>-<end>.wav             e.g. en/-0ZQjJXSeAk---0052.650-0061.220.wav
    synthetic corpus    <video>__U__S<n>---<start>-<end>.wav    e.g. de/k3JqPz0aW1c__U__S4---0012.250-0015.610.wav

The video id (the part before `__U__`, else before `---`) is the speaker: one video is one
speaker and one channel, so videos never straddle two sets.  A name with neither marker is its own
speaker (counted and logged).

Output: <out-dir>/{train,dev,test}/ with wav.scp, utt2spk, spk2utt, utt2lang, utt2dur (sorted, C
order, validated), <out-dir>/languages.txt (the training languages, one per line, C order = class
index order of nasr.data.lid_dataset.make_lang2id) and <out-dir>/skipped.txt (`path reason` of every
clip left out).  Utterance ids are `<lang>-<clip name>`, speaker ids `<lang>-<video>`.

Split: per language, a seeded shuffle of its videos; --dev-fraction and --test-fraction of them
(at least one each when the language has three videos or more) go to dev and test.  With --test-dir
(e.g. VoxLingua107's own dev set, unzipped the same way) the test set is that whole tree instead,
training clips from any of its videos are dropped, and the corpus is split into train/dev only.

Skipped (counted per reason, listed in skipped.txt): unreadable audio, another sample rate than
--sample-rate, shorter than --min-seconds.
"""
from __future__ import annotations

import argparse
import logging
import re
import shutil
import sys
import tempfile
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nasr.data.datadir import DataDir, c_order, replace_dirs, validate_data_dir, write_data_dir
from nasr.utils.io import FormatError, atomic_write

log = logging.getLogger("nasr.prepare.lid")

SPLITS = ("train", "dev", "test")
SYNTH_MARKER = "__U__"   # the synthetic corpus's (and VoxLingua107's raw segmenter's) marker
TIME_MARKER = "---"      # VoxLingua107: <video>---<start>-<end>
LANG_DIR = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)?$")  # ISO 639-1/-3 codes, optionally with a region
BLANKS = re.compile(r"\s")


class CorpusError(RuntimeError):
    """The corpus directory is not laid out like VoxLingua107."""


@dataclass(frozen=True)
class Clip:
    lang: str
    path: Path       # absolute
    video: str       # speaker: the video id, or the clip name when the name has no video marker

    @property
    def spk(self) -> str:
        return f"{self.lang}-{self.video}"

    @property
    def utt(self) -> str:
        return f"{self.lang}-{BLANKS.sub('_', self.path.stem)}"


def video_of(stem: str) -> Optional[str]:
    """The video id of a clip name, or None when the name carries neither marker."""
    for marker in (SYNTH_MARKER, TIME_MARKER):
        head, sep, _ = stem.partition(marker)
        if sep and head:
            return BLANKS.sub("_", head)
    return None


def scan_tree(root: Path, langs: Optional[Sequence[str]]) -> Tuple[List[Clip], int]:
    """Clips of the wanted languages (all language folders when `langs` is None), sorted by path.
    Returns (clips, number of names without a video marker)."""
    if not root.is_dir():
        raise CorpusError(f"corpus dir '{root}' does not exist (fix: download it with local/lid/download.sh, "
                          "or point --corpus-dir at the unzipped VoxLingua107 folders)")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and LANG_DIR.match(p.name))
    if langs is None:
        wanted = found
    else:
        missing = [lang for lang in langs if lang not in found]
        if missing:
            raise CorpusError(f"language folder(s) {', '.join(missing)} not in '{root}' (it has: "
                              f"{', '.join(found) or 'none'}); fix: download them or drop them from --langs")
        wanted = list(langs)
    if not wanted:
        raise CorpusError(f"'{root}' holds no language folders (expected {root}/<lang>/*.wav, e.g. {root}/en/)")
    clips, unmarked = [], 0
    for lang in wanted:
        for path in sorted((root / lang).rglob("*.wav")):
            video = video_of(path.stem)
            if video is None:
                unmarked += 1
                video = BLANKS.sub("_", path.stem)
            clips.append(Clip(lang, path.resolve(), video))
    return clips, unmarked


def check_clip(path: Path, sample_rate: int, min_seconds: float) -> Tuple[Optional[float], str]:
    """(duration in seconds, "") for a usable clip, else (None, reason). Reads the header only."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises several types; all mean "not readable audio"
        return None, f"unreadable ({str(e).splitlines()[0][:80]})"
    if info.samplerate != sample_rate:
        return None, f"sample-rate-{info.samplerate}"
    seconds = info.frames / float(info.samplerate)
    if seconds < min_seconds:
        return None, f"shorter-than-{min_seconds:g}s"
    return seconds, ""


def check_clips(clips: Sequence[Clip], sample_rate: int, min_seconds: float, nj: int
                ) -> Tuple[List[Tuple[Clip, float]], List[Tuple[Clip, str]]]:
    """Split into (usable clip, duration) and (skipped clip, reason). Header reads are I/O bound, so
    threads are enough to overlap them."""
    with ThreadPoolExecutor(max_workers=max(1, nj)) as pool:
        results = list(pool.map(lambda c: check_clip(c.path, sample_rate, min_seconds), clips,
                                chunksize=64))
    good = [(c, dur) for c, (dur, _) in zip(clips, results) if dur is not None]
    bad = [(c, why) for c, (dur, why) in zip(clips, results) if dur is None]
    return good, bad


def split_videos(clips: Sequence[Clip], seed: int, dev_fraction: float, test_fraction: float
                 ) -> Dict[str, str]:
    """video -> split. Per language, a seeded permutation of its videos (seeded by the language code
    too, so adding a language does not reshuffle the others); the first round(f * n) go to test,
    the next to dev, at least one each when the language has >= 3 videos. A video that also occurs
    under an earlier language keeps the split it got there, so no video straddles two sets."""
    videos_of: Dict[str, List[str]] = defaultdict(list)
    for c in clips:
        if c.video not in videos_of[c.lang]:
            videos_of[c.lang].append(c.video)
    split_of: Dict[str, str] = {}
    for lang in sorted(videos_of, key=c_order):
        videos = sorted((v for v in videos_of[lang] if v not in split_of), key=c_order)
        n = len(videos)
        rng = np.random.default_rng([seed, zlib.crc32(lang.encode("utf-8"))])
        order = [videos[i] for i in rng.permutation(n)]
        n_test = int(round(test_fraction * n))
        n_dev = int(round(dev_fraction * n))
        if n >= 3:
            n_test = max(n_test, 1) if test_fraction > 0 else 0
            n_dev = max(n_dev, 1) if dev_fraction > 0 else 0
        n_test = min(n_test, max(0, n - 1))          # keep at least one training video
        n_dev = min(n_dev, max(0, n - 1 - n_test))
        for rank, video in enumerate(order):
            split_of[video] = "test" if rank < n_test else "dev" if rank < n_test + n_dev else "train"
        if n_test == 0 and test_fraction > 0 or n_dev == 0 and dev_fraction > 0:
            log.warning("language %s has only %d video(s): none goes to %s", lang, n,
                        " and ".join(s for s, k in (("dev", n_dev), ("test", n_test)) if k == 0))
    return split_of


def build_data_dir(members: Sequence[Tuple[Clip, float]]) -> DataDir:
    utt2spk, wav, utt2lang, utt2dur = {}, {}, {}, {}
    for clip, seconds in members:
        utt = clip.utt
        if utt in utt2spk:
            raise CorpusError(f"two clips map to utterance id '{utt}' ({wav[utt]} and {clip.path}); "
                              "rename one of them")
        if BLANKS.search(str(clip.path)):
            raise CorpusError(f"'{clip.path}' has a blank in its path, which a wav.scp cannot hold "
                              "(fix: move the corpus to a path without spaces)")
        utt2spk[utt], wav[utt], utt2lang[utt] = clip.spk, str(clip.path), clip.lang
        utt2dur[utt] = f"{seconds:.3f}"
    return DataDir(utt2spk=utt2spk, wav_scp=wav, utt2lang=utt2lang, utt2dur=utt2dur)


def prepare(corpus_dir, out_dir, langs: Optional[Sequence[str]] = None, seed: int = 0,
            dev_fraction: float = 0.1, test_fraction: float = 0.1, test_dir=None,
            sample_rate: int = 16000, min_seconds: float = 0.5, max_per_lang: int = 0,
            nj: int = 4) -> Dict[str, Counter]:
    """Write train/dev/test; returns utterance counts per split and language (and logs them)."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    for name, f in (("--dev-fraction", dev_fraction), ("--test-fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{name} {f} must be in [0, 1)")
    if test_dir is None and dev_fraction + test_fraction >= 1.0:
        raise ValueError("--dev-fraction + --test-fraction must leave some videos for training")
    if langs is not None:
        langs = list(dict.fromkeys(langs))

    clips, unmarked = scan_tree(corpus_dir, langs)
    test_clips: List[Clip] = []
    if test_dir is not None:
        test_langs = [lang for lang in sorted({c.lang for c in clips}, key=c_order)
                      if (Path(test_dir) / lang).is_dir()]
        if not test_langs:
            raise CorpusError(f"test dir '{test_dir}' has none of the languages "
                              f"{', '.join(sorted({c.lang for c in clips}))}")
        test_clips, unmarked_test = scan_tree(Path(test_dir), test_langs)
        unmarked += unmarked_test
        test_videos = {c.video for c in test_clips}
        overlap = [c for c in clips if c.video in test_videos]
        if overlap:
            log.warning("dropping %d training clip(s) from videos that are in the test dir", len(overlap))
            clips = [c for c in clips if c.video not in test_videos]
    if unmarked:
        log.warning("%d clip name(s) carry no video id ('%s' or '%s'); each is its own speaker",
                    unmarked, SYNTH_MARKER, TIME_MARKER)

    if max_per_lang > 0:
        # a seeded random subset per language, drawn before the headers are read (the slow part)
        by_lang: Dict[str, List[Clip]] = defaultdict(list)
        for c in clips:
            by_lang[c.lang].append(c)
        clips = []
        for lang, lang_clips in sorted(by_lang.items()):
            order = np.random.default_rng([seed, 7, zlib.crc32(lang.encode())]).permutation(len(lang_clips))
            clips += sorted((lang_clips[i] for i in order[:max_per_lang]), key=lambda c: str(c.path))

    good, bad = check_clips(clips + test_clips, sample_rate, min_seconds, nj)
    reasons = Counter(why.split(" (")[0] for _, why in bad)
    for why, n in sorted(reasons.items()):
        log.warning("skipped %d clip(s): %s", n, why)
    test_set = set(test_clips)
    good_train = [(c, d) for c, d in good if c not in test_set]
    if not good_train:
        raise CorpusError(f"no usable clips in '{corpus_dir}' ({len(bad)} skipped: "
                          f"{', '.join(f'{k} {v}' for k, v in reasons.items()) or 'none found'})")

    if test_dir is None:
        split_of = split_videos([c for c, _ in good_train], seed, dev_fraction, test_fraction)
        members = {s: [(c, d) for c, d in good_train if split_of[c.video] == s] for s in SPLITS}
    else:
        split_of = split_videos([c for c, _ in good_train], seed, dev_fraction, 0.0)
        members = {s: [(c, d) for c, d in good_train if split_of[c.video] == s] for s in ("train", "dev")}
        members["test"] = [(c, d) for c, d in good if c in test_set]
    train_langs = sorted({c.lang for c, _ in members["train"]}, key=c_order)
    for s in ("dev", "test"):
        extra = sorted({c.lang for c, _ in members[s]} - set(train_langs))
        if extra:
            raise CorpusError(f"{s} has languages without training data: {', '.join(extra)}")
    for s in SPLITS:
        if not members[s]:
            raise CorpusError(f"the {s} set is empty (fix: more videos per language, or other "
                              f"--dev-fraction/--test-fraction)")

    # Speakers must never be shared between sets (checked, not assumed).
    spk_sets = {s: {c.spk for c, _ in members[s]} for s in SPLITS}
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        shared = {c.video for c, _ in members[a]} & {c.video for c, _ in members[b]}
        if shared:
            raise RuntimeError(f"bug: videos in both {a} and {b}: {sorted(shared)[:5]}")

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".prepare-", dir=out_dir))
    try:
        for s in SPLITS:
            write_data_dir(build_data_dir(members[s]), staging / s)
            # headers were read above; reading them again for 2.5M files would double the step
            validate_data_dir(staging / s, check_audio=False, no_text=True)
        replace_dirs(staging, out_dir, SPLITS)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with atomic_write(out_dir / "languages.txt") as f:
        f.write("".join(f"{lang}\n" for lang in train_langs))
    with atomic_write(out_dir / "skipped.txt") as f:
        for clip, why in sorted(bad, key=lambda cw: str(cw[0].path)):
            f.write(f"{clip.path} {why}\n")

    counts = {s: Counter(c.lang for c, _ in members[s]) for s in SPLITS}
    log_counts(train_langs, counts, spk_sets, len(bad))
    return counts


def log_counts(langs: Sequence[str], counts: Dict[str, Counter], spk_sets, n_skipped: int) -> None:
    width = max(len(x) for x in list(langs) + ["total"])
    log.info("%-*s %8s %8s %8s   (utterances)", width, "lang", *SPLITS)
    for lang in langs:
        log.info("%-*s %8d %8d %8d", width, lang, *(counts[s][lang] for s in SPLITS))
    log.info("%-*s %8d %8d %8d", width, "total", *(sum(counts[s].values()) for s in SPLITS))
    log.info("%-*s %8d %8d %8d", width, "videos", *(len(spk_sets[s]) for s in SPLITS))
    log.info("skipped clips: %d (listed in skipped.txt)", n_skipped)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Kaldi data dirs (train/dev/test with utt2lang) from a VoxLingua107-shaped tree.",
        epilog="e.g.: local/lid/prepare.py --corpus-dir /data/voxlingua107 --out-dir data "
               "--langs 'en de fr' --seed 0")
    p.add_argument("--corpus-dir", required=True, type=Path, help="<dir>/<lang>/*.wav")
    p.add_argument("--out-dir", required=True, type=Path, help="where train/ dev/ test/ go")
    p.add_argument("--langs", default="",
                   help="blank- or comma-separated language codes (default: every language folder)")
    p.add_argument("--test-dir", type=Path, default=None,
                   help="a separate <dir>/<lang>/*.wav tree for the test set (e.g. VoxLingua107's dev set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dev-fraction", type=float, default=0.1, help="of each language's videos")
    p.add_argument("--test-fraction", type=float, default=0.1,
                   help="of each language's videos (ignored with --test-dir)")
    p.add_argument("--sample-rate", type=int, default=16000, help="clips at another rate are skipped")
    p.add_argument("--min-seconds", type=float, default=0.5, help="shorter clips are skipped")
    p.add_argument("--max-per-lang", type=int, default=0,
                   help="a seeded subset of at most this many clips per language (0: all)")
    p.add_argument("--nj", type=int, default=4, help="threads reading wav headers")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    log.info("%s", " ".join([Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv))))
    langs = [x for x in re.split(r"[,\s]+", args.langs) if x] or None
    try:
        prepare(args.corpus_dir, args.out_dir, langs, args.seed, args.dev_fraction, args.test_fraction,
                args.test_dir, args.sample_rate, args.min_seconds, args.max_per_lang, args.nj)
    except (CorpusError, FormatError, ValueError) as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
