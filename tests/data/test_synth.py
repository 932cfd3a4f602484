"""Synthetic corpora: eSpeak wrapper, noises, and the three corpus trees (tiny sizes)."""
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nasr.data.synth import CorpusExistsError, build_tree, espeak, read_done
from nasr.data.synth.aishell import make_aishell1, make_aishell2
from nasr.data.synth.lid import make_lid, speaker_of
from nasr.data.synth.noise import NOISE_KINDS, make_noise, mix_at_snr
from nasr.data.synth.speech_commands import WORDS, make_speech_commands, which_set


def _tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- espeak

def test_espeak_is_audible_16k_and_repeatable_whatever_came_before():
    a = espeak.synthesize("seven", "en+m3", rate=160, pitch=40, pitch_range=60)
    assert a.dtype == np.float32 and 0.2 < len(a) / espeak.SAMPLE_RATE < 1.5
    assert np.sqrt(np.mean(a ** 2)) > 0.01
    # Other voices and texts in between must not change the next rendering (hidden engine state).
    espeak.synthesize("guten Morgen", "de+f2")
    espeak.synthesize("seven seven seven", "en+m3")
    assert np.array_equal(a, espeak.synthesize("seven", "en+m3", rate=160, pitch=40,
                                               pitch_range=60))
    assert not np.array_equal(a, espeak.synthesize("seven", "en+m3", rate=160, pitch=70,
                                                   pitch_range=60))


def test_espeak_rejects_unknown_voice():
    with pytest.raises(espeak.EspeakError, match="no voice"):
        espeak.synthesize("hello", "xx-nonexistent")


# ---------------------------------------------------------------- noise

@pytest.mark.parametrize("kind", sorted(NOISE_KINDS))
def test_noise_is_seeded(kind):
    a = make_noise(kind, 8000, 3)
    assert a.dtype == np.float32 and len(a) == 8000 and np.std(a) > 0.01
    assert np.array_equal(a, make_noise(kind, 8000, 3))
    assert not np.array_equal(a, make_noise(kind, 8000, 4))


def test_mix_at_snr_hits_the_requested_ratio():
    rng = np.random.default_rng(0)
    speech = np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.5
    noise = rng.standard_normal(16000).astype(np.float32)
    mixed = mix_at_snr(speech, noise, 20.0)
    residual = mixed - speech
    snr = 10 * np.log10(np.mean(speech ** 2) / np.mean(residual ** 2))
    assert abs(snr - 20.0) < 0.1


# ---------------------------------------------------------------- speech commands

def test_speech_commands_tree_matches_v001(tmp_path):
    root = tmp_path / "sc"
    assert make_speech_commands(root, num_speakers=5, noise_seconds=0.5, seed=1)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == sorted(list(WORDS) + ["_background_noise_"]) and len(WORDS) == 30
    bg = sorted(p.name for p in (root / "_background_noise_").iterdir())
    assert "README.md" in bg and len([b for b in bg if b.endswith(".wav")]) == 6

    speakers = set()
    for word in WORDS:
        files = sorted((root / word).iterdir())
        assert len(files) == 5
        for f in files:
            assert re.fullmatch(r"[0-9a-f]{8}_nohash_0\.wav", f.name), f.name
            speakers.add(f.name[:8])
    info = sf.info(str(root / "bed" / f"{sorted(speakers)[0]}_nohash_0.wav"))
    assert (info.samplerate, info.frames, info.channels, info.subtype) == (16000, 16000, 1, "PCM_16")
    x, _ = sf.read(str(root / "bed" / f"{sorted(speakers)[0]}_nohash_0.wav"))
    assert np.abs(x).max() > 0.05  # a word is in there, not only noise

    lists = {}
    for name in ("validation", "testing"):
        lines = (root / f"{name}_list.txt").read_text().splitlines()
        assert lines == sorted(lines) and all((root / line).is_file() for line in lines)
        lists[name] = {line.split("/")[1][:8] for line in lines}
        assert len(lines) == 30 * len(lists[name])  # every clip of a listed speaker is listed
        assert all(which_set(s) == name for s in lists[name])  # the official hash rule holds
    assert len(lists["validation"]) == 1 and len(lists["testing"]) == 1
    assert not lists["validation"] & lists["testing"]
    # training speakers are in neither list and hash to training
    assert all(which_set(s) == "training" for s in speakers - lists["validation"] - lists["testing"])

    assert read_done(root)["params"]["num_speakers"] == 5
    assert make_speech_commands(root, num_speakers=5, noise_seconds=0.5, seed=1) is False
    with pytest.raises(CorpusExistsError, match="remove it"):
        make_speech_commands(root, num_speakers=6, noise_seconds=0.5, seed=1)


def test_speech_commands_is_deterministic_across_worker_counts(tmp_path):
    kwargs = dict(num_speakers=3, words=["yes", "no", "up"], utts_per_word=2, noise_seconds=0.25)
    make_speech_commands(tmp_path / "a", seed=7, num_workers=1, **kwargs)
    make_speech_commands(tmp_path / "b", seed=7, num_workers=2, **kwargs)
    make_speech_commands(tmp_path / "c", seed=8, num_workers=1, **kwargs)
    a, b, c = (_tree_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert a != c
    assert sorted((tmp_path / "a" / "yes").iterdir())[0].name.endswith("_nohash_0.wav")
    assert len(list((tmp_path / "a" / "yes").iterdir())) == 6


def test_failed_build_leaves_nothing_that_looks_complete(tmp_path):
    def build(root):
        (root / "half.txt").write_text("x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_tree(tmp_path / "corpus", "test", {}, build)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- aishell

def test_aishell1_tree_transcript_and_lexicon(tmp_path):
    root = tmp_path / "a1"
    make_aishell1(root, num_speakers=(2, 1, 1), utts_per_speaker=3, vocab_size=60, seed=0,
                  missing_audio=1, missing_transcript=2)
    wavs = sorted((root / "data_aishell" / "wav").rglob("*.wav"))
    assert len(wavs) == 12 - 1
    spk_by_set = {}
    for w in wavs:
        subset, spk, name = w.relative_to(root / "data_aishell" / "wav").parts
        assert subset in ("train", "dev", "test")
        assert re.fullmatch(r"S\d{4}", spk) and re.fullmatch(rf"BAC009{spk}W\d{{4}}\.wav", name)
        spk_by_set.setdefault(subset, set()).add(spk)
    assert [len(spk_by_set[s]) for s in ("train", "dev", "test")] == [2, 1, 1]
    assert "S0002" in spk_by_set["train"]
    info = sf.info(str(wavs[0]))
    assert info.samplerate == 16000 and 0.8 < info.duration < 12

    lines = (root / "data_aishell/transcript/aishell_transcript_v0.8.txt").read_text(
        encoding="utf-8").splitlines()
    assert len(lines) == 12 - 2 and lines == sorted(lines)
    lexicon = {}
    for line in (root / "resource_aishell/lexicon.txt").read_text(encoding="utf-8").splitlines():
        word, *syls = line.split()
        assert syls and all(re.fullmatch(r"[a-z]+[1-5]", s) for s in syls), line
        lexicon[word] = syls
    ids_with_text = set()
    for line in lines:
        utt, *words = line.split()
        assert 4 <= len(words) <= 10
        assert all(w in lexicon for w in words)
        assert all(len(lexicon[w]) == len(w) for w in words)  # one syllable per character
        ids_with_text.add(utt)
    ids_with_audio = {w.stem for w in wavs}
    assert len(ids_with_text - ids_with_audio) == 1 and len(ids_with_audio - ids_with_text) == 2


def test_aishell2_layout(tmp_path):
    root = tmp_path / "a2"
    make_aishell2(root, num_speakers=(2, 1, 1), utts_per_speaker=2, vocab_size=60, seed=0)
    for data_dir, prefix in (("iOS/data", "ID"), ("AISHELL-DEV-TEST-SET/iOS/dev", "IT"),
                             ("AISHELL-DEV-TEST-SET/iOS/test", "IT")):
        scp = dict(line.split() for line in (root / data_dir / "wav.scp").read_text().splitlines())
        trans = dict(line.split(" ", 1) for line in
                     (root / data_dir / "trans.txt").read_text(encoding="utf-8").splitlines())
        assert set(scp) == set(trans) and scp
        for utt, rel in scp.items():
            assert re.fullmatch(rf"{prefix}\d{{4}}W\d{{4}}", utt)
            assert re.fullmatch(rf"wav/(C|IT)\d{{4}}/{utt}\.wav", rel)
            assert (root / data_dir / rel).is_file()
            assert " " not in trans[utt] and len(trans[utt]) >= 4
    train_utt = sorted(dict(line.split() for line in
                            (root / "iOS/data/wav.scp").read_text().splitlines()).items())[0]
    assert train_utt[1].startswith("wav/C0001/ID0001W")


# ---------------------------------------------------------------- lid

def test_lid_tree_has_ten_plus_languages_and_speaker_ids(tmp_path):
    root = tmp_path / "lid"
    make_lid(root, utts_per_language=2, num_speakers_per_language=2, seed=0)
    langs = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert len(langs) >= 10 and {"en", "de", "fr", "es"} <= set(langs)
    speakers = {}
    for lang in langs:
        files = sorted((root / lang).glob("*.wav"))
        assert len(files) == 2
        for f in files:
            m = re.fullmatch(r"([A-Za-z0-9]{11})__U__S(\d+)---(\d{4}\.\d{3})-(\d{4}\.\d{3})\.wav",
                             f.name)
            assert m, f.name
            info = sf.info(str(f))
            assert info.samplerate == 16000 and 2.0 <= info.duration <= 4.0
            assert abs(info.duration - (float(m.group(4)) - float(m.group(3)))) < 0.01
            speakers.setdefault(speaker_of(f.name), set()).add(lang)
    assert len(speakers) == 2 * len(langs) and all(len(v) == 1 for v in speakers.values())


# ---------------------------------------------------------------- command line

def test_cli_builds_once_and_refuses_other_arguments(tmp_path):
    from nasr.bin.make_synth_corpus import main

    out = tmp_path / "sc"
    argv = ["speech_commands", "--num-speakers", "1", "--words", "yes", "no",
            "--noise-seconds", "0.2", str(out)]
    assert main(argv) == 0
    before = _tree_digest(out)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["_background_noise_", "no",
                                                                    "yes"]
    assert main(argv) == 0 and _tree_digest(out) == before
    assert main(argv[:-1] + ["--seed", "3", str(out)]) == 1


def test_cli_with_workers_leaves_no_espeak_folder_in_tmpdir(tmp_path):
    """Pool workers end through os._exit (no atexit): they share the parent's eSpeak data folder,
    which the parent removes, instead of each leaving a nasr-espeak-* folder behind."""
    import os
    import subprocess
    import sys

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "NASR_ESPEAK_DATA"}  # not this process's folder
    env.update(TMPDIR=str(tmp), PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.run([sys.executable, "-m", "nasr.bin.make_synth_corpus", "speech_commands",
                           "--num-speakers", "1", "--words", "yes", "no", "--noise-seconds", "0.2",
                           "--nj", "2", str(tmp_path / "sc")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted((tmp_path / "sc").iterdir()) and sorted(p.name for p in tmp.iterdir()) == []
