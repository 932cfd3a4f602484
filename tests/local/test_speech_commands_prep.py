"""local/speech_commands/{prepare.py,download.sh} on a tiny hand-made tree shaped like Speech Commands."""
import hashlib
import importlib.util
import math
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from nasr.data.audio import read_audio, write_wav
from nasr.utils.io import read_table

ROOT = Path(__file__).resolve().parents[2]
PREPARE = ROOT / "local" / "speech_commands" / "prepare.py"
DOWNLOAD = ROOT / "local" / "speech_commands" / "download.sh"
SR = 16000
SPLITS = ("train", "valid", "test")


def load_prepare():
    spec = importlib.util.spec_from_file_location("speech_commands_prepare", PREPARE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


prep = load_prepare()


def speaker(i):
    return hashlib.md5(str(i).encode()).hexdigest()[:8]


def make_corpus(root: Path, words=("yes", "no", "up", "cat", "dog"), n_speakers=10,
                noise_secs=(6.0, 4.5)):
    """Every speaker says every word twice (0.5 s or 1 s clips); two noise recordings; the
    official lists put the last-but-one speaker in validation and the last one in testing."""
    rng = np.random.default_rng(0)
    for w in words:
        (root / w).mkdir(parents=True)
        for i in range(n_speakers):
            for n in range(2):
                length = SR if n == 0 else SR // 2
                write_wav(root / w / f"{speaker(i)}_nohash_{n}.wav",
                          (0.1 * rng.standard_normal(length)).astype(np.float32), SR)
    (root / "_background_noise_").mkdir()
    for k, secs in enumerate(noise_secs):
        write_wav(root / "_background_noise_" / f"noise-{k}.wav",
                  (0.05 * rng.standard_normal(int(secs * SR))).astype(np.float32), SR)
    (root / "_background_noise_" / "README.md").write_text("not audio\n")
    for name, spk in (("validation_list.txt", n_speakers - 2), ("testing_list.txt", n_speakers - 1)):
        (root / name).write_text("".join(f"{w}/{speaker(spk)}_nohash_{n}.wav\n"
                                         for w in words for n in range(2)))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("sc") / "speech_commands_v0.01")


def read_dir(d: Path):
    return {name: read_table(d / name) for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur")
            if (d / name).exists()} | ({"segments": read_table(d / "segments")}
                                       if (d / "segments").exists() else {})


def c_sorted(keys):
    return sorted(keys, key=lambda k: k.encode())


def test_twelve_class_style_mapping(corpus, tmp_path):
    out = tmp_path / "data"
    counts = prep.prepare(corpus, out, keywords=["yes", "no", "up"], split="official",
                          silence_percent=10, unknown_percent=50)
    labels = ["yes", "no", "up", "_unknown_", "_silence_"]
    assert (out / "labels.txt").read_text().split() == labels
    for s in SPLITS:
        assert (out / s / "labels.txt").read_text().split() == labels
        text = read_table(out / s / "text")
        n_kw = sum(1 for lab in text.values() if lab in ("yes", "no", "up"))
        assert n_kw == {"train": 8, "valid": 1, "test": 1}[s] * 3 * 2
        n_unknown = sum(1 for lab in text.values() if lab == "_unknown_")
        n_silence = sum(1 for lab in text.values() if lab == "_silence_")
        assert n_unknown == math.ceil(n_kw * 0.5)
        assert n_silence == math.ceil(n_kw * 0.1)
        assert counts[s]["_unknown_"] == n_unknown and counts[s]["_silence_"] == n_silence
        for utt, lab in text.items():
            word = utt.split("-")[1]
            if lab == "_unknown_":
                assert word in ("cat", "dog")
            elif lab == "_silence_":
                assert utt.startswith("noise_noise_")
            else:
                assert word == lab


def test_keywords_naming_every_word_leave_out_unknown(corpus, tmp_path):
    out = tmp_path / "data"
    prep.prepare(corpus, out, keywords=["dog", "cat", "up", "no", "yes"], split="paper", seed=3)
    assert (out / "labels.txt").read_text().split() == ["dog", "cat", "up", "no", "yes", "_silence_"]
    for s in SPLITS:
        assert "_unknown_" not in set(read_table(out / s / "text").values())


def test_no_silence_class_means_no_segments(corpus, tmp_path):
    out = tmp_path / "data"
    prep.prepare(corpus, out, keywords=["yes"], split="official", silence_percent=0)
    assert (out / "labels.txt").read_text().split() == ["yes", "_unknown_"]
    for s in SPLITS:
        assert not (out / s / "segments").exists()
        wav = read_table(out / s / "wav.scp")
        assert set(wav) == set(read_table(out / s / "text"))


def test_official_split_follows_the_lists(corpus, tmp_path):
    out = tmp_path / "data"
    prep.prepare(corpus, out, split="official", keywords=["yes", "no"])
    spk_of = {s: set(read_table(out / s / "utt2spk").values()) - {"noise_noise_0", "noise_noise_1"}
              for s in SPLITS}
    assert spk_of["valid"] == {speaker(8)}
    assert spk_of["test"] == {speaker(9)}
    assert spk_of["train"] == {speaker(i) for i in range(8)}


def test_paper_split_is_by_speaker_40_40_20_and_seeded(corpus, tmp_path):
    def speakers(out):
        return {s: {spk for spk in read_table(out / s / "utt2spk").values() if not spk.startswith("noise_")}
                for s in SPLITS}

    prep.prepare(corpus, tmp_path / "a", split="paper", seed=1, keywords=["yes", "no", "up"])
    prep.prepare(corpus, tmp_path / "b", split="paper", seed=1, keywords=["yes", "no", "up"])
    a, b = speakers(tmp_path / "a"), speakers(tmp_path / "b")
    assert a == b
    assert [len(a[s]) for s in SPLITS] == [4, 4, 2]
    assert not (a["train"] & a["valid"]) and not (a["train"] & a["test"]) and not (a["valid"] & a["test"])
    assert set().union(*a.values()) == {speaker(i) for i in range(10)}
    # every clip of a speaker goes where the speaker goes
    text = read_table(tmp_path / "a" / "train" / "text")
    assert sum(1 for lab in text.values() if lab in ("yes", "no", "up")) == 4 * 3 * 2
    differs = []
    for seed in range(2, 6):
        prep.prepare(corpus, tmp_path / f"s{seed}", split="paper", seed=seed, keywords=["yes"])
        differs.append(speakers(tmp_path / f"s{seed}") != a)
    assert any(differs), "the split does not depend on the seed"


def test_silence_segments_lie_in_disjoint_regions_of_the_noise(corpus, tmp_path):
    out = tmp_path / "data"
    prep.prepare(corpus, out, keywords=["yes", "no", "up", "cat", "dog"], split="paper",
                 silence_percent=60)
    durations = {"noise_noise_0": 6.0, "noise_noise_1": 4.5}
    spans = {}
    for s in SPLITS:
        segments = read_table(out / s / "segments")
        text = read_table(out / s / "text")
        wav = read_table(out / s / "wav.scp")
        silence = [u for u, lab in text.items() if lab == "_silence_"]
        assert silence
        for utt in silence:
            rec, start, end = segments[utt].split()
            start, end = float(start), float(end)
            assert 0 <= start and end <= durations[rec] and end - start == pytest.approx(1.0)
            assert Path(wav[rec]).name == rec.replace("noise_noise_", "noise-") + ".wav"
            spans.setdefault(rec, {}).setdefault(s, []).append((start, end))
            x = read_audio(wav[rec], SR, start=start, end=end)
            assert len(x) == SR
    for rec, by_split in spans.items():
        for s1 in SPLITS:
            for s2 in SPLITS:
                if s1 < s2 and s1 in by_split and s2 in by_split:
                    lo1, hi1 = min(a for a, _ in by_split[s1]), max(b for _, b in by_split[s1])
                    lo2, hi2 = min(a for a, _ in by_split[s2]), max(b for _, b in by_split[s2])
                    assert hi1 <= lo2 or hi2 <= lo1, (rec, s1, s2)


def test_data_dirs_are_sorted_and_consistent(corpus, tmp_path):
    out = tmp_path / "data"
    prep.prepare(corpus, out, keywords=["yes", "no"], split="paper")
    all_utts = set()
    for s in SPLITS:
        d = out / s
        for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "segments"):
            keys = [line.split()[0] for line in (d / name).read_text().splitlines()]
            assert keys == c_sorted(keys) and len(keys) == len(set(keys)), f"{d / name} not sorted/unique"
        t = read_dir(d)
        utts = set(t["text"])
        assert set(t["utt2spk"]) == utts == set(t["segments"]) == set(t["utt2dur"])
        assert not (utts & all_utts), "utterance ids repeat across splits"
        all_utts |= utts
        # utterance ids start with their speaker, so both sort orders agree (Kaldi's rule)
        for utt, spk in t["utt2spk"].items():
            assert utt.startswith(spk + "-")
        by_utt = [spk for _, spk in sorted(t["utt2spk"].items(), key=lambda kv: kv[0].encode())]
        assert by_utt == c_sorted(by_utt)
        assert {spk: sorted(u.split(), key=str.encode) for spk, u in t["spk2utt"].items()} == \
            {spk: c_sorted(u for u, s2 in t["utt2spk"].items() if s2 == spk) for spk in t["spk2utt"]}
        recs = {seg.split()[0] for seg in t["segments"].values()}
        assert recs == set(t["wav.scp"])
        for key, path in t["wav.scp"].items():
            assert Path(path).is_absolute() and Path(path).is_file()
        for utt, seg in t["segments"].items():
            rec, start, end = seg.split()
            assert float(end) - float(start) == pytest.approx(float(t["utt2dur"][utt]), abs=1e-3)
        assert set(read_table(d / "noise.scp")) == {"noise_noise_0", "noise_noise_1"}
    assert (out / "noise.scp").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "staging dirs left behind"


def test_data_dirs_pass_the_kaldi_checks(corpus, tmp_path):
    datadir = pytest.importorskip("nasr.data.datadir")
    out = tmp_path / "data"
    prep.prepare(corpus, out, keywords=["yes", "no", "up"], split="paper")
    for s in SPLITS:
        info = datadir.validate_data_dir(out / s)
        assert info["utterances"] == len(read_table(out / s / "text"))


def test_rerun_replaces_old_dirs(corpus, tmp_path):
    out = tmp_path / "data"
    prep.prepare(corpus, out, keywords=["yes", "no"], split="official")
    (out / "train" / "feats.scp").write_text("stale\n")
    prep.prepare(corpus, out, keywords=["yes"], split="official")
    assert not (out / "train" / "feats.scp").exists()
    assert (out / "labels.txt").read_text().split()[0] == "yes"


def test_errors_name_the_dir_and_what_is_expected(corpus, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(prep.CorpusError, match=r"empty.*no word folders.*expected .*_nohash_"):
        prep.prepare(empty, tmp_path / "out")
    with pytest.raises(prep.CorpusError, match=r"left.*speech_commands_v0.01.*corpus has: cat, dog, no, up, yes"):
        prep.prepare(corpus, tmp_path / "out", keywords=["yes", "left"])
    assert not (tmp_path / "out" / "train").exists()

    broken = make_corpus(tmp_path / "broken", words=("yes", "no"), n_speakers=2)
    with open(broken / "testing_list.txt", "a") as f:
        f.write("yes/ffffffff_nohash_0.wav\n")
    with pytest.raises(ValueError, match=r"testing_list.txt:5: 'yes/ffffffff_nohash_0.wav' is not a clip"):
        prep.prepare(broken, tmp_path / "out", keywords=["yes"], split="official")
    assert not (tmp_path / "out" / "train").exists()


def test_command_line(corpus, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    ok = subprocess.run([sys.executable, str(PREPARE), "--corpus-dir", str(corpus), "--out-dir",
                         str(tmp_path / "data"), "--keywords", "yes,no", "--split", "official"],
                        capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "_silence_" in ok.stderr and "total" in ok.stderr  # the per-class count table
    bad = subprocess.run([sys.executable, str(PREPARE), "--corpus-dir", str(tmp_path / "nowhere"),
                          "--out-dir", str(tmp_path / "x")], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "nowhere" in bad.stderr and "does not exist" in bad.stderr


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_download_verifies_checksum_and_skips_when_complete(tmp_path):
    src = make_corpus(tmp_path / "src", words=("yes",), n_speakers=1, noise_secs=(1.5,))
    archive = tmp_path / "speech_commands_v0.01.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(src.iterdir()):
            tar.add(p, arcname=p.name)  # like the real archive: no top-level folder
    url = archive.as_uri()

    bad = subprocess.run(["bash", str(DOWNLOAD), "--url", url, "--sha256", "0" * 64,
                          str(tmp_path / "bad"), "v0.01"], capture_output=True, text=True)
    assert bad.returncode != 0 and "checksum mismatch" in bad.stderr
    assert not (tmp_path / "bad" / ".complete").exists()
    # refused, never taken for the archive, but what was fetched is kept for the user to judge
    assert not (tmp_path / "bad" / "speech_commands_v0.01.tar.gz").exists()
    assert (tmp_path / "bad" / "speech_commands_v0.01.tar.gz.part").read_bytes() == archive.read_bytes()

    dest = tmp_path / "good"
    ok = subprocess.run(["bash", str(DOWNLOAD), "--url", url, "--sha256", sha256(archive),
                         "--remove-archive", "true", str(dest), "v0.01"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (dest / ".complete").exists() and (dest / "yes").is_dir()
    assert (dest / "_background_noise_" / "noise-0.wav").is_file()
    assert not (dest / "speech_commands_v0.01.tar.gz").exists()

    # with the marker in place nothing is fetched: a dead URL still succeeds
    again = subprocess.run(["bash", str(DOWNLOAD), "--url", (tmp_path / "gone.tar.gz").as_uri(),
                            str(dest), "v0.01"], capture_output=True, text=True)
    assert again.returncode == 0 and "skipping" in again.stdout

    # the default checksum is the published one, which a fake archive cannot match
    default = subprocess.run(["bash", str(DOWNLOAD), "--url", url, str(tmp_path / "d2"), "v0.01"],
                             capture_output=True, text=True)
    assert default.returncode != 0 and "743935421bb51ccc" in default.stderr

    wrong = subprocess.run(["bash", str(DOWNLOAD), str(tmp_path / "d3"), "v9"], capture_output=True, text=True)
    assert wrong.returncode != 0 and "unknown version" in wrong.stderr
    typo = subprocess.run(["bash", str(DOWNLOAD), "--sha-256", "x", str(tmp_path / "d4")],
                          capture_output=True, text=True)
    assert typo.returncode != 0 and "--sha-256" in typo.stderr and not (tmp_path / "d4").exists()
