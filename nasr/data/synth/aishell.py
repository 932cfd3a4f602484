"""Synthetic Mandarin corpora shaped like the AISHELL-1 and AISHELL-2 releases.

AISHELL-1 (as after untarring the per-speaker archives):

    data_aishell/wav/{train,dev,test}/S0002/BAC009S0002W0122.wav
    data_aishell/transcript/aishell_transcript_v0.8.txt   BAC009S0002W0122 而 对 楼市 成交 ...
    resource_aishell/lexicon.txt                           楼市 lou2 shi4
    resource_aishell/speaker.info                          0002 F

AISHELL-2 (iOS channel) and its AISHELL-DEV-TEST-SET:

    iOS/data/wav.scp          ID0012W0014 wav/C0012/ID0012W0014.wav
    iOS/data/trans.txt        ID0012W0014 厨房用具            (characters, no word spaces)
    iOS/data/wav/C0012/ID0012W0014.wav
    AISHELL-DEV-TEST-SET/iOS/{dev,test}/{wav.scp,trans.txt,wav/IT0011/IT0011W0001.wav}

Sentences are 4-10 words drawn with Zipf-like frequencies from a vocabulary of real Mandarin words:
common one-character function words, and a seeded sample of the most frequent 2-3 character words
of wordfreq's Chinese list that pypinyin's phrase dictionary also holds, all of whose characters are
in GB2312 level 1 (the 3755 most common characters).  Audio is eSpeak's
Mandarin voice reading the words' toned pinyin, the same syllables the lexicon lists, so the lexicon
is exactly what was spoken.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from . import (FEMALE_VARIANTS, SAMPLE_RATE, Speaker, build_tree, draw_speaker, fit_peak, render,
               rng_for, run_jobs)
from .noise import make_noise, mix_at_snr
from .speech_commands import trim_silence

MANDARIN_VOICES = ("cmn-latn-pinyin",)  # reads toned pinyin: audio follows the lexicon exactly
FUNCTION_WORDS = ("的", "了", "是", "在", "有", "和", "不", "也", "就", "都", "而", "对", "最",
                  "大", "很", "要", "把", "被", "从", "向", "给", "让", "又", "还", "更", "会",
                  "能", "这", "那", "我", "你", "他", "她", "上", "下", "中", "多", "新")
MIN_WORDS, MAX_WORDS = 4, 10
LEAD_SILENCE = (0.1, 0.4)  # seconds of room noise before and after the speech


def _is_common_char(ch: str) -> bool:
    """GB2312 level 1: first byte 0xB0-0xD7 (the 3755 most frequent characters)."""
    try:
        encoded = ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return len(encoded) == 2 and 0xB0 <= encoded[0] <= 0xD7


@lru_cache(maxsize=None)
def candidate_words(limit: int = 20000) -> Tuple[str, ...]:
    """Frequent 2-3 character Mandarin words, most frequent first.

    wordfreq's Chinese list gives the frequency order; pypinyin's phrase dictionary confirms each
    is a lexicalised word and gives its reading.  Characters must be GB2312 level 1.
    """
    import wordfreq
    from pypinyin.phrases_dict import phrases_dict

    return tuple(w for w in wordfreq.top_n_list("zh", limit)
                 if 2 <= len(w) <= 3 and w in phrases_dict and all(_is_common_char(c) for c in w))


def syllables(word: str) -> List[str]:
    """Toned pinyin syllables ('lou2', 'shi4'; neutral tone 5, ü written v), phrase-aware."""
    from pypinyin import Style, pinyin

    return [s[0] for s in pinyin(word, style=Style.TONE3, neutral_tone_with_five=True)]


class MandarinSentences:
    """Random Mandarin sentences over a fixed vocabulary; word frequencies fall off like Zipf's law
    so that an n-gram LM and a small acoustic model have something to learn."""

    def __init__(self, vocab_size: int = 600, seed: int = 0):
        # A seeded sample of the 2 x vocab_size most frequent words, kept in frequency order.
        candidates = candidate_words()[: 2 * vocab_size]
        function_words = list(FUNCTION_WORDS[:vocab_size])
        n_phrases = max(0, min(vocab_size - len(function_words), len(candidates)))
        rng = rng_for(seed, "mandarin", "vocabulary")
        picked = sorted(rng.choice(len(candidates), n_phrases, replace=False))
        # Function words first: they are the most frequent words of running Mandarin text.
        self.words: List[str] = function_words + [candidates[i] for i in picked]
        weights = 1.0 / (np.arange(len(self.words)) + 10.0)  # Zipf over the frequency rank
        self.probs = weights / weights.sum()
        self.lexicon: Dict[str, List[str]] = {w: syllables(w) for w in self.words}

    def sentence(self, rng: np.random.Generator) -> List[str]:
        n = int(rng.integers(MIN_WORDS, MAX_WORDS + 1))
        return [self.words[i] for i in rng.choice(len(self.words), n, p=self.probs)]

    def pinyin(self, words: Sequence[str]) -> str:
        return " ".join(s for w in words for s in self.lexicon[w])


def _make_utt(job) -> str:
    root, rel, pinyin_text, speaker_dict, seed, corpus = job
    speaker = Speaker(**speaker_dict)
    rng = rng_for(seed, corpus, "utt", rel)
    speech = trim_silence(render(pinyin_text, speaker, rng))
    lead, tail = (int(rng.uniform(*LEAD_SILENCE) * SAMPLE_RATE) for _ in range(2))
    x = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)])
    # A quiet recording room: pink or brown noise well below the speech.
    noise = make_noise(str(rng.choice(["pink_noise", "brown_noise", "white_noise"])), len(x),
                       int(rng.integers(1 << 31)))
    x = mix_at_snr(x, noise, float(rng.uniform(25.0, 40.0)))
    from ..audio import write_wav

    path = Path(root) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(str(path), fit_peak(x), SAMPLE_RATE)
    return rel


def _draw_corpus_speakers(ids: Sequence[str], seed: int, corpus: str) -> List[Speaker]:
    return [draw_speaker(spk, rng_for(seed, corpus, "speaker", spk), MANDARIN_VOICES) for spk in ids]


def _check_sizes(num_speakers: Sequence[int], utts_per_speaker: int, vocab_size: int) -> None:
    if len(num_speakers) != 3 or min(num_speakers) < 1:
        raise ValueError(f"num_speakers must be three positive counts (train, dev, test), "
                         f"got {tuple(num_speakers)}")
    if utts_per_speaker < 1:
        raise ValueError(f"utts_per_speaker must be positive, got {utts_per_speaker}")
    if vocab_size < MAX_WORDS:
        raise ValueError(f"vocab_size must be at least {MAX_WORDS}, got {vocab_size}")


def _utt_numbers(rng: np.random.Generator, count: int) -> List[int]:
    """Distinct, sorted 4-digit utterance numbers, spread like the real ones (not all from 1)."""
    return sorted(int(n) for n in rng.choice(np.arange(1, 10000), count, replace=False))


def make_aishell1(out_dir, num_speakers: Sequence[int] = (20, 4, 4), utts_per_speaker: int = 20,
                  vocab_size: int = 600, seed: int = 0, num_workers: int = 1,
                  missing_audio: int = 0, missing_transcript: int = 0) -> bool:
    """Write an AISHELL-1-shaped corpus into `out_dir` (which gets data_aishell/, resource_aishell/).

    num_speakers: (train, dev, test) speaker counts, ids S0002 upwards, disjoint across sets;
    missing_audio: that many transcript lines get no wav (the real release has such lines);
    missing_transcript: that many wavs get no transcript line.
    Returns False when `out_dir` already holds this corpus (nothing is done).
    """
    num_speakers = tuple(int(n) for n in num_speakers)
    _check_sizes(num_speakers, utts_per_speaker, vocab_size)
    total = sum(num_speakers) * utts_per_speaker
    if missing_audio < 0 or missing_transcript < 0 or missing_audio + missing_transcript > total:
        raise ValueError(f"missing_audio + missing_transcript must be between 0 and {total} "
                         f"(the number of utterances), got {missing_audio} + {missing_transcript}")
    params = {"num_speakers": list(num_speakers), "utts_per_speaker": utts_per_speaker,
              "vocab_size": vocab_size, "seed": seed, "missing_audio": missing_audio,
              "missing_transcript": missing_transcript}

    def build(root: Path) -> None:
        corpus = "aishell1"
        gen = MandarinSentences(vocab_size, seed)
        rng = rng_for(seed, corpus, "layout")
        spk_nums = iter(range(2, 2 + sum(num_speakers)))
        utts: List[Tuple[str, str, List[str], Speaker]] = []  # (utt id, rel wav, words, speaker)
        speaker_info: List[str] = []
        for subset, count in zip(("train", "dev", "test"), num_speakers):
            ids = [f"S{next(spk_nums):04d}" for _ in range(count)]
            for spk in _draw_corpus_speakers(ids, seed, corpus):
                gender = "F" if spk.voice.split("+")[1] in FEMALE_VARIANTS else "M"
                speaker_info.append(f"{spk.speaker_id[1:]} {gender}")
                for n in _utt_numbers(rng, utts_per_speaker):
                    utt = f"BAC009{spk.speaker_id}W{n:04d}"
                    utts.append((utt, f"data_aishell/wav/{subset}/{spk.speaker_id}/{utt}.wav",
                                 gen.sentence(rng), spk))
        dropped = rng.choice(len(utts), missing_audio + missing_transcript, replace=False)
        no_audio = {utts[i][0] for i in dropped[:missing_audio]}
        no_text = {utts[i][0] for i in dropped[missing_audio:]}
        jobs = [(str(root), rel, gen.pinyin(words), spk.to_dict(), seed, corpus)
                for utt, rel, words, spk in utts if utt not in no_audio]
        run_jobs(_make_utt, jobs, num_workers, desc="aishell1 utterances")
        lines = sorted(f"{utt} {' '.join(words)}\n" for utt, _, words, _ in utts if utt not in no_text)
        _write_text(root / "data_aishell/transcript/aishell_transcript_v0.8.txt", lines)
        _write_lexicon(root / "resource_aishell/lexicon.txt", gen.lexicon)
        _write_text(root / "resource_aishell/speaker.info", [s + "\n" for s in sorted(speaker_info)])

    return build_tree(out_dir, "aishell1", params, build)


def make_aishell2(out_dir, num_speakers: Sequence[int] = (20, 2, 2), utts_per_speaker: int = 20,
                  vocab_size: int = 600, seed: int = 0, num_workers: int = 1) -> bool:
    """Write an AISHELL-2-shaped corpus (iOS/data/...) and its AISHELL-DEV-TEST-SET into `out_dir`.

    num_speakers: (train, dev, test); train speakers are C0001..., dev/test speakers IT0001...
    With the same `seed` and `vocab_size` as make_aishell1 the vocabulary is the same (a transfer
    setting: one language, new speakers).
    """
    num_speakers = tuple(int(n) for n in num_speakers)
    _check_sizes(num_speakers, utts_per_speaker, vocab_size)
    params = {"num_speakers": list(num_speakers), "utts_per_speaker": utts_per_speaker,
              "vocab_size": vocab_size, "seed": seed}

    def build(root: Path) -> None:
        corpus = "aishell2"
        gen = MandarinSentences(vocab_size, seed)
        rng = rng_for(seed, corpus, "layout")
        jobs = []
        tables: Dict[str, Tuple[Dict[str, str], Dict[str, str]]] = {}
        test_spk = iter(range(1, 1 + num_speakers[1] + num_speakers[2]))
        for subset, count in zip(("train", "dev", "test"), num_speakers):
            data_dir = "iOS/data" if subset == "train" else f"AISHELL-DEV-TEST-SET/iOS/{subset}"
            if subset == "train":
                pairs = [(f"C{i:04d}", f"ID{i:04d}") for i in range(1, count + 1)]
            else:
                pairs = [(f"IT{n:04d}", f"IT{n:04d}") for n in (next(test_spk) for _ in range(count))]
            wav_scp, trans = tables.setdefault(data_dir, ({}, {}))
            speakers = _draw_corpus_speakers([folder for folder, _ in pairs], seed, corpus)
            for (folder, utt_prefix), spk in zip(pairs, speakers):
                for n in _utt_numbers(rng, utts_per_speaker):
                    utt = f"{utt_prefix}W{n:04d}"
                    words = gen.sentence(rng)
                    wav_scp[utt] = f"wav/{folder}/{utt}.wav"
                    trans[utt] = "".join(words)
                    jobs.append((str(root), f"{data_dir}/wav/{folder}/{utt}.wav", gen.pinyin(words),
                                 spk.to_dict(), seed, corpus))
        run_jobs(_make_utt, jobs, num_workers, desc="aishell2 utterances")
        for data_dir, (wav_scp, trans) in tables.items():
            _write_text(root / data_dir / "wav.scp", [f"{k} {wav_scp[k]}\n" for k in sorted(wav_scp)])
            _write_text(root / data_dir / "trans.txt", [f"{k} {trans[k]}\n" for k in sorted(trans)])

    return build_tree(out_dir, "aishell2", params, build)


def _write_text(path: Path, lines: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)


def _write_lexicon(path: Path, lexicon: Dict[str, List[str]]) -> None:
    # C-order sort, as Kaldi tools expect of a lexicon.
    _write_text(path, [f"{w} {' '.join(lexicon[w])}\n"
                       for w in sorted(lexicon, key=lambda w: w.encode("utf-8"))])
