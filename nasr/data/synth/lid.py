"""A synthetic language-identification corpus shaped like VoxLingua107 after unzipping.

    <root>/<lang>/<video id>__U__S<n>---<start>-<end>.wav      e.g. de/k3JqPz0aW1c__U__S4---0012.250-0015.610.wav

As in the real corpus, the folder is the ISO 639-1 language code and the file name starts with the
id of the (here imaginary) video the clip was cut from; one video is one speaker, so a data
preparation splits by the part before `__U__` to keep speakers out of two sets.  Clips are 2-4 s at
16 kHz: random word sequences from wordfreq's frequency list of the language (Zipf-weighted), spoken
by that language's eSpeak voice with a random variant, pitch, rate and microphone, over light noise.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from . import SAMPLE_RATE, Speaker, build_tree, draw_speaker, fit_peak, render, rng_for, run_jobs
from .noise import make_noise, mix_at_snr
from .speech_commands import trim_silence

# ISO 639-1 code (VoxLingua107 folder name, wordfreq code) -> eSpeak voice.
LID_LANGUAGES: Dict[str, str] = {
    "en": "en", "de": "de", "fr": "fr", "es": "es", "it": "it", "pt": "pt", "nl": "nl",
    "sv": "sv", "pl": "pl", "ru": "ru", "tr": "tr", "fi": "fi", "cs": "cs", "hu": "hu",
    "el": "el", "bg": "bg", "ro": "ro", "ca": "ca", "da": "da", "uk": "uk", "id": "id",
    "lt": "lt", "lv": "lv", "sk": "sk", "sl": "sl", "hi": "hi", "fa": "fa", "ar": "ar",
}
DEFAULT_LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "sv", "pl", "ru", "tr", "fi")
MIN_SECONDS, MAX_SECONDS = 2.0, 4.0
WORD_LIST_SIZE = 3000
_VIDEO_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

_word_lists: Dict[str, List[str]] = {}


def word_list(lang: str) -> List[str]:
    """The language's most frequent alphabetic words (no digits, no one-letter fragments)."""
    if lang not in _word_lists:
        import wordfreq

        words = [w for w in wordfreq.top_n_list(lang, WORD_LIST_SIZE) if w.isalpha() and len(w) > 1]
        if len(words) < 100:
            raise ValueError(f"wordfreq has only {len(words)} usable words for '{lang}' "
                             "(fix: choose a language wordfreq covers)")
        _word_lists[lang] = words
    return _word_lists[lang]


def _set_word_lists(lists: Dict[str, List[str]]) -> None:
    """Pool initializer: wordfreq takes ~0.2 s per language to load, so workers get the lists."""
    _word_lists.update(lists)


def _make_clip(job) -> str:
    root, lang, rel, seconds, speaker_dict, seed = job
    speaker = Speaker(**speaker_dict)
    rng = rng_for(seed, "lid", "clip", rel)
    words = word_list(lang)
    probs = 1.0 / (np.arange(len(words)) + 20.0)
    probs /= probs.sum()
    target = int(round(seconds * SAMPLE_RATE))  # the length the file name promises
    # Speak more words until the clip is long enough; about 2.5 words a second to start with.
    n_words = max(3, int(target / SAMPLE_RATE * 2.5))
    text: List[str] = []
    speech = np.zeros(0, np.float32)
    for _ in range(10):
        text += [words[i] for i in rng.choice(len(words), n_words - len(text), p=probs)]
        speech = trim_silence(render(" ".join(text), speaker, rng))
        if len(speech) >= target:
            break
        n_words = len(text) + 3
    if len(speech) >= target:
        speech = speech[:target].copy()
        fade = min(len(speech), SAMPLE_RATE // 50)  # 20 ms fade-out where the cut falls in a word
        speech[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    else:  # pad with silence rather than return a clip shorter than the corpus promises
        speech = np.concatenate([speech, np.zeros(target - len(speech), np.float32)])
    noise = make_noise(str(rng.choice(["pink_noise", "brown_noise", "machine_hum", "babble"])),
                       len(speech), int(rng.integers(1 << 31)))
    x = mix_at_snr(speech, noise, float(rng.uniform(15.0, 35.0)))
    from ..audio import write_wav

    path = Path(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(str(path), fit_peak(x), SAMPLE_RATE)
    return rel


def make_lid(out_dir, languages: Sequence[str] = DEFAULT_LANGUAGES, utts_per_language: int = 40,
             num_speakers_per_language: int = 8, seed: int = 0, num_workers: int = 1) -> bool:
    """Write the corpus to `out_dir` (which gets one folder per language code).

    Clips are shared out evenly over each language's speakers (videos).
    Returns False when `out_dir` already holds this corpus (nothing is done).
    """
    languages = list(languages)
    unknown = [lang for lang in languages if lang not in LID_LANGUAGES]
    if unknown or not languages:
        raise ValueError(f"languages {unknown or '(none)'} are not available "
                         f"(fix: choose from {', '.join(LID_LANGUAGES)})")
    if len(set(languages)) != len(languages):
        raise ValueError(f"languages {languages} name a language twice")
    if num_speakers_per_language < 1 or utts_per_language < num_speakers_per_language:
        raise ValueError("need 1 <= num_speakers_per_language <= utts_per_language, got "
                         f"{num_speakers_per_language} speakers for {utts_per_language} clips")
    params = {"languages": languages, "utts_per_language": utts_per_language,
              "num_speakers_per_language": num_speakers_per_language, "seed": seed}

    def build(root: Path) -> None:
        jobs = []
        taken = set()
        # Loaded here first: fails before any synthesis if wordfreq lacks a language.
        lists = {lang: word_list(lang) for lang in languages}
        for lang in languages:
            rng = rng_for(seed, "lid", "layout", lang)
            speakers: List[Speaker] = []
            while len(speakers) < num_speakers_per_language:
                video = "".join(rng.choice(list(_VIDEO_ID_CHARS), 11))
                if video not in taken:
                    taken.add(video)
                    speakers.append(draw_speaker(video, rng_for(seed, "lid", "speaker", video),
                                                 [LID_LANGUAGES[lang]]))
            for n in range(utts_per_language):
                spk = speakers[n % len(speakers)]
                segment = n // len(speakers)
                start = float(np.round(rng.uniform(0, 3000), 2))
                seconds = float(np.round(rng.uniform(MIN_SECONDS, MAX_SECONDS), 2))
                rel = (f"{lang}/{spk.speaker_id}__U__S{segment}---"
                       f"{start:08.3f}-{start + seconds:08.3f}.wav")
                jobs.append((str(root), lang, rel, seconds, spk.to_dict(), seed))
        run_jobs(_make_clip, jobs, num_workers, desc="lid clips", initializer=_set_word_lists,
                 initargs=(lists,))

    return build_tree(out_dir, "lid", params, build)


def speaker_of(clip_path: str) -> str:
    """The speaker (video id) of a clip file name: the part before '__U__'."""
    return Path(clip_path).name.split("__U__")[0]
