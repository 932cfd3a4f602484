"""A synthetic corpus shaped exactly like Speech Commands v0.01.

    <root>/bed/0a7c2a8d_nohash_0.wav ...      30 word folders, 1 s, 16 kHz, mono, 16-bit
    <root>/_background_noise_/*.wav, README.md
    <root>/validation_list.txt, testing_list.txt   paths relative to <root>, split by speaker

The split follows the official scheme: a speaker's bucket is a hash of the speaker id modulo 100,
below 10 is validation, below 20 testing, the rest training (`which_set`).  Speaker ids are drawn so
that small corpora still get their share of validation and test speakers, and a data preparation
that recomputes the hash, or reads the lists, gets the same split.

Each speaker is a random eSpeak English voice and variant with its own pitch, pitch range, rate,
vocal-tract length, microphone colour and level; each clip adds small rate and pitch jitter, a
random position in the second, and a generated background noise at a random SNR.

    >>> make_speech_commands("data/speech_commands_synth", num_speakers=40, num_workers=2)
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from . import (SAMPLE_RATE, Speaker, build_tree, draw_speaker, fit_peak, render, rng_for,
               run_jobs, unique_ids, _resample_by)
from .noise import NOISE_KINDS, make_noise, mix_at_snr

WORDS = ("bed", "bird", "cat", "dog", "down", "eight", "five", "four", "go", "happy", "house",
         "left", "marvin", "nine", "no", "off", "on", "one", "right", "seven", "sheila", "six",
         "stop", "three", "tree", "two", "up", "wow", "yes", "zero")
# eSpeak's English accents; every speaker speaks one of them.
ENGLISH_VOICES = ("en", "en-us", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc",
                  "en-gb-x-gbclan", "en-gb-x-gbcwmd")
BACKGROUND_DIR = "_background_noise_"
CLIP_SAMPLES = SAMPLE_RATE  # exactly one second
VALIDATION_PERCENTAGE = 10
TESTING_PERCENTAGE = 10
_NOISE_BANK_SECONDS = 8.0

_BACKGROUND_README = """\
This folder holds longer noise recordings that can be mixed with the one-second clips to simulate
background noise, as in the Speech Commands data set. They are generated, not recorded:

* white_noise.wav, pink_noise.wav, brown_noise.wav: Gaussian noise with a flat, 1/f and 1/f^2
  power spectrum.
* running_tap.wav: band-limited noise with a wandering centre frequency and gurgles.
* machine_hum.wav: mains hum with harmonics over pink noise.
* babble.wav: several synthetic talkers speaking random words at once.

Each file is 16 kHz, mono, 16-bit PCM.
"""


def which_set(speaker_id: str, validation_percentage: int = VALIDATION_PERCENTAGE,
              testing_percentage: int = TESTING_PERCENTAGE) -> str:
    """'validation', 'testing' or 'training' for a speaker id (e.g. '0a7c2a8d'), from its hash.

    A path such as 'bed/0a7c2a8d_nohash_0.wav' is accepted too: the speaker is the part of the file
    name before '_nohash_', so every clip of a speaker lands in the same set.
    """
    name = Path(speaker_id).name.split("_nohash_")[0]
    bucket = int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % 100
    if bucket < validation_percentage:
        return "validation"
    if bucket < validation_percentage + testing_percentage:
        return "testing"
    return "training"


def _split_counts(num_speakers: int) -> Dict[str, int]:
    """How many speakers each set gets: ~10% / 10%, at least one each once there are three."""
    if num_speakers < 3:
        return {"validation": 0, "testing": 0, "training": num_speakers}
    n_valid = max(1, round(num_speakers * VALIDATION_PERCENTAGE / 100))
    n_test = max(1, round(num_speakers * TESTING_PERCENTAGE / 100))
    return {"validation": n_valid, "testing": n_test,
            "training": num_speakers - n_valid - n_test}


def draw_speakers(num_speakers: int, seed: int) -> List[Tuple[Speaker, str]]:
    """(speaker, set) pairs; the 8-hex-digit ids hash into the set they are listed under."""
    rng = rng_for(seed, "speech_commands", "speaker-ids")
    taken: List[str] = []
    out: List[Tuple[Speaker, str]] = []
    for subset, count in _split_counts(num_speakers).items():
        ids = unique_ids(count, lambda r: f"{int(r.integers(0, 1 << 32)):08x}", rng,
                         accept=lambda s, subset=subset: which_set(s) == subset, taken=taken)
        taken.extend(ids)
        for spk in ids:
            out.append((draw_speaker(spk, rng_for(seed, "speech_commands", "speaker", spk),
                                     ENGLISH_VOICES), subset))
    return out


def trim_silence(x: np.ndarray, threshold: float = 0.02, margin: int = 320) -> np.ndarray:
    """Cut leading and trailing samples quieter than `threshold` x peak, keeping a 20 ms margin."""
    if not len(x):
        return x
    loud = np.nonzero(np.abs(x) > threshold * np.abs(x).max())[0]
    if not len(loud):
        return x[:0]
    return x[max(0, loud[0] - margin): loud[-1] + 1 + margin]


_noise_banks: Dict[Tuple[int, str], np.ndarray] = {}


def _noise_bank(seed: int, kind: str) -> np.ndarray:
    """A few seconds of each noise kind per process, cut into per-clip excerpts."""
    key = (seed, kind)
    if key not in _noise_banks:
        _noise_banks[key] = make_noise(kind, int(_NOISE_BANK_SECONDS * SAMPLE_RATE),
                                       rng_for(seed, "speech_commands", "clip-noise", kind)
                                       .integers(1 << 31))
    return _noise_banks[key]


def _make_clip(job) -> str:
    root, word, speaker_dict, index, seed, snr_range = job
    speaker = Speaker(**speaker_dict)
    rel = f"{word}/{speaker.speaker_id}_nohash_{index}.wav"
    rng = rng_for(seed, "speech_commands", "clip", rel)
    speech = trim_silence(render(word, speaker, rng))
    longest = CLIP_SAMPLES - SAMPLE_RATE // 20  # keep 50 ms of room so no word is cut
    if len(speech) > longest:  # a slow speaker: speed the word up to fit rather than cut it
        speech = _resample_by(speech, len(speech) / longest)[:longest]
    clip = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    offset = int(rng.integers(0, CLIP_SAMPLES - len(speech) + 1))
    clip[offset:offset + len(speech)] = speech
    kind = str(rng.choice(sorted(NOISE_KINDS)))
    bank = _noise_bank(seed, kind)
    start = int(rng.integers(0, len(bank) - CLIP_SAMPLES + 1))
    clip = mix_at_snr(clip, bank[start:start + CLIP_SAMPLES], float(rng.uniform(*snr_range)))
    _write_wav(Path(root) / rel, fit_peak(clip))
    return rel


def _write_wav(path: Path, x: np.ndarray) -> None:
    from ..audio import write_wav

    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(str(path), x, SAMPLE_RATE)


def _make_background(job) -> str:
    root, kind, seconds, seed = job
    x = make_noise(kind, int(round(seconds * SAMPLE_RATE)),
                   rng_for(seed, "speech_commands", "background", kind).integers(1 << 31))
    rel = f"{BACKGROUND_DIR}/{kind}.wav"
    _write_wav(Path(root) / rel, fit_peak(x * 4.0))  # files are kept loud, as the real ones are
    return rel


def make_speech_commands(out_dir, num_speakers: int = 40, utts_per_word: int = 1,
                         words: Sequence[str] = WORDS, noise_seconds: float = 30.0,
                         snr_db: Tuple[float, float] = (10.0, 30.0), seed: int = 0,
                         num_workers: int = 1) -> bool:
    """Write the corpus to `out_dir` (the folder that holds the word folders).

    num_speakers: speakers, split ~80/10/10 into training/validation/testing by the hash rule;
    utts_per_word: clips of each word per speaker (`<spk>_nohash_0.wav`, `_1`, ...);
    noise_seconds: length of each `_background_noise_` file; snr_db: range of per-clip SNRs.
    Returns False when `out_dir` already holds this corpus (nothing is done).
    """
    words = list(words)
    if num_speakers < 1 or utts_per_word < 1 or not words:
        raise ValueError("num_speakers, utts_per_word and words must all be positive "
                         f"(got {num_speakers}, {utts_per_word}, {len(words)} words)")
    bad = [w for w in words if not w or "/" in w or w.startswith("_") or " " in w]
    if bad:
        raise ValueError(f"words {bad} cannot be folder names (fix: single words, no '/' or '_' "
                         "at the start)")
    if not 0 < snr_db[0] <= snr_db[1]:
        raise ValueError(f"snr_db must be (low, high) with 0 < low <= high, got {snr_db}")
    params = {"num_speakers": num_speakers, "utts_per_word": utts_per_word, "words": words,
              "noise_seconds": noise_seconds, "snr_db": list(snr_db), "seed": seed}

    def build(root: Path) -> None:
        speakers = draw_speakers(num_speakers, seed)
        clip_jobs = [(str(root), word, spk.to_dict(), n, seed, tuple(snr_db))
                     for spk, _ in speakers for word in words for n in range(utts_per_word)]
        run_jobs(_make_clip, clip_jobs, num_workers, desc="speech_commands clips")
        if noise_seconds > 0:
            noise_jobs = [(str(root), kind, noise_seconds, seed) for kind in NOISE_KINDS]
            run_jobs(_make_background, noise_jobs, num_workers, desc="background noise")
            (root / BACKGROUND_DIR / "README.md").write_text(_BACKGROUND_README, encoding="utf-8")
        lists: Dict[str, List[str]] = {"validation": [], "testing": []}
        for spk, subset in speakers:
            if subset in lists:
                lists[subset].extend(f"{w}/{spk.speaker_id}_nohash_{n}.wav"
                                     for w in words for n in range(utts_per_word))
        for subset, paths in lists.items():
            text = "".join(p + "\n" for p in sorted(paths))
            (root / f"{subset}_list.txt").write_text(text, encoding="utf-8")

    return build_tree(out_dir, "speech_commands", params, build)


def speaker_table(num_speakers: int, seed: int) -> Dict[str, Dict]:
    """The speakers `make_speech_commands` draws for these arguments (for inspection and tests)."""
    return {spk.speaker_id: dict(spk.to_dict(), set=subset)
            for spk, subset in draw_speakers(num_speakers, seed)}

