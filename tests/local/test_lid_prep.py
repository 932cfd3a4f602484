"""local/lid/{prepare.py,download.sh} on tiny trees shaped like VoxLingua107 and like the synthetic corpus."""
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nasr.data.audio import write_wav as _write_wav
from nasr.data.datadir import validate_data_dir
from nasr.utils.io import read_table

ROOT = Path(__file__).resolve().parents[2]
PREPARE = ROOT / "local" / "lid" / "prepare.py"
DOWNLOAD = ROOT / "local" / "lid" / "download.sh"
SR = 16000
SPLITS = ("train", "dev", "test")


def load_prepare():
    spec = importlib.util.spec_from_file_location("lid_prepare", PREPARE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


prep = load_prepare()


def write_wav(path, x, rate):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _write_wav(path, x, rate)


def tone(seconds, rate=SR, freq=220.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def make_voxlingua_tree(root: Path, langs=("de", "en", "fr"), videos=5, clips=2):
    """Real VoxLingua107 naming: <lang>/<video>---<start>-<end>.wav; video ids may hold '-' and '_'."""
    for lang in langs:
        for v in range(videos):
            video = f"-{lang}V_{v}x" if v % 2 else f"{lang}Vid{v}-Q"
            for c in range(clips):
                start = 10.0 * c + v
                write_wav(root / lang / f"{video}---{start:08.3f}-{start + 0.8:08.3f}.wav",
                          tone(0.8, freq=200 + 10 * v), SR)
    return root


def run_prepare(*args):
    return prep.main([str(a) for a in args])


def check_dirs(out: Path):
    tables = {}
    for s in SPLITS:
        stats = validate_data_dir(out / s, check_audio=True, no_text=True)
        assert "utt2lang" in stats["files"] and stats["sample_rates"] == [SR]
        tables[s] = {name: read_table(out / s / name) for name in ("wav.scp", "utt2spk", "utt2lang", "utt2dur")}
    return tables


def test_voxlingua_tree_split_by_video_with_skips(tmp_path):
    corpus = make_voxlingua_tree(tmp_path / "vox")
    # one unreadable clip, one at 8 kHz, one too short: each skipped and counted
    (corpus / "en" / "brokenVid---0000.000-0001.000.wav").write_bytes(b"RIFF\x00\x00junk, not a wav file")
    write_wav(corpus / "fr" / "lowRate---0000.000-0001.000.wav", tone(1.0, 8000), 8000)
    write_wav(corpus / "de" / "tinyVid---0000.000-0000.200.wav", tone(0.2), SR)
    (corpus / "README.txt").write_text("not a language folder\n")
    out = tmp_path / "data"
    assert run_prepare("--corpus-dir", corpus, "--out-dir", out, "--seed", "3",
                       "--dev-fraction", "0.2", "--test-fraction", "0.2") == 0
    t = check_dirs(out)

    all_utts = set().union(*(t[s]["utt2spk"] for s in SPLITS))
    assert len(all_utts) == 3 * 5 * 2
    # every language in every set: 5 videos -> 1 test, 1 dev, 3 train
    for s, n_videos in zip(SPLITS, (3, 1, 1)):
        assert set(t[s]["utt2lang"].values()) == {"de", "en", "fr"}
        assert len(set(t[s]["utt2spk"].values())) == 3 * n_videos
    # videos (speakers) never in two sets; utterance ids start with their speaker id
    spk = {s: set(t[s]["utt2spk"].values()) for s in SPLITS}
    assert not (spk["train"] & spk["dev"]) and not (spk["train"] & spk["test"]) and not (spk["dev"] & spk["test"])
    for s in SPLITS:
        for utt, sp in t[s]["utt2spk"].items():
            assert utt.startswith(sp + "---") and t[s]["utt2lang"][utt] == utt.split("-")[0]
            assert os.path.isabs(t[s]["wav.scp"][utt]) and float(t[s]["utt2dur"][utt]) == pytest.approx(0.8)
    assert "en-" + "-enV_1x" in spk["train"] | spk["dev"] | spk["test"]  # ids starting with '-' survive

    skipped = dict(line.split(" ", 1) for line in (out / "skipped.txt").read_text().splitlines())
    assert len(skipped) == 3
    reasons = {Path(p).name.split("---")[0]: why for p, why in skipped.items()}
    assert reasons["brokenVid"].startswith("unreadable")
    assert reasons["lowRate"] == "sample-rate-8000"
    assert reasons["tinyVid"] == "shorter-than-0.5s"
    assert (out / "languages.txt").read_text() == "de\nen\nfr\n"

    # seeded: the same seed gives the same split, another seed another one
    out2, out3 = tmp_path / "again", tmp_path / "other"
    run_prepare("--corpus-dir", corpus, "--out-dir", out2, "--seed", "3", "--dev-fraction", "0.2", "--test-fraction", "0.2")
    run_prepare("--corpus-dir", corpus, "--out-dir", out3, "--seed", "4", "--dev-fraction", "0.2", "--test-fraction", "0.2")
    for s in SPLITS:
        assert (out2 / s / "utt2spk").read_text() == (out / s / "utt2spk").read_text()
    assert any((out3 / s / "utt2spk").read_text() != (out / s / "utt2spk").read_text() for s in SPLITS)


def test_language_selection_and_bad_input(tmp_path, caplog):
    corpus = make_voxlingua_tree(tmp_path / "vox", langs=("de", "en", "fr"), videos=3, clips=1)
    out = tmp_path / "data"
    assert run_prepare("--corpus-dir", corpus, "--out-dir", out, "--langs", "fr,de") == 0
    assert set(read_table(out / "train" / "utt2lang").values()) == {"de", "fr"}
    assert (out / "languages.txt").read_text() == "de\nfr\n"
    before = (out / "train" / "utt2spk").read_text()
    # an unknown language is a clear error, and the earlier data dirs stay as they were
    assert run_prepare("--corpus-dir", corpus, "--out-dir", out, "--langs", "de xx") == 1
    assert "language folder(s) xx not in" in caplog.text
    assert (out / "train" / "utt2spk").read_text() == before
    assert run_prepare("--corpus-dir", tmp_path / "nope", "--out-dir", out) == 1
    assert "does not exist" in caplog.text


def test_separate_test_dir(tmp_path):
    corpus = make_voxlingua_tree(tmp_path / "train", langs=("de", "en"), videos=4, clips=2)
    test = tmp_path / "dev"  # VoxLingua107's dev set: same layout, other videos, fewer languages
    write_wav(test / "en" / "devVid1---0001.000-0002.000.wav", tone(1.0), SR)
    write_wav(test / "en" / "deVid0-Q---0100.000-0101.000.wav", tone(1.0), SR)  # a training video...
    write_wav(test / "ja" / "devVid2---0001.000-0002.000.wav", tone(1.0), SR)   # ...and a language not trained
    out = tmp_path / "data"
    assert run_prepare("--corpus-dir", corpus, "--out-dir", out, "--test-dir", test, "--dev-fraction", "0.25") == 0
    t = check_dirs(out)
    assert sorted(t["test"]["utt2spk"].values()) == ["en-deVid0-Q", "en-devVid1"]
    # clips of the test set's videos are dropped from training (the video "deVid0-Q" is under de/)
    assert "de-deVid0-Q" not in set(t["train"]["utt2spk"].values()) | set(t["dev"]["utt2spk"].values())
    assert len(set(t["dev"]["utt2spk"].values())) == 2  # one video of each language


def test_synthetic_tree(tmp_path):
    from nasr.data.synth.lid import make_lid

    corpus = tmp_path / "synth"
    make_lid(corpus, languages=["en", "de"], utts_per_language=6, num_speakers_per_language=3, seed=1)
    # an unreadable clip in the synthetic layout too
    (corpus / "de" / "zzzzzzzzzzz__U__S0---0001.000-0003.000.wav").write_bytes(b"\x00" * 100)
    out = tmp_path / "data"
    assert run_prepare("--corpus-dir", corpus, "--out-dir", out, "--dev-fraction", "0.34",
                       "--test-fraction", "0.34") == 0
    t = check_dirs(out)
    total = sum(len(t[s]["utt2spk"]) for s in SPLITS)
    assert total == 12
    for s in SPLITS:
        assert set(t[s]["utt2lang"].values()) == {"de", "en"}
        for utt, sp in t[s]["utt2spk"].items():
            assert utt.startswith(sp + "__U__S")
            # the speaker is the synthetic corpus's own notion of speaker
            from nasr.data.synth.lid import speaker_of
            assert sp == f"{t[s]['utt2lang'][utt]}-{speaker_of(t[s]['wav.scp'][utt])}"
    assert len((out / "skipped.txt").read_text().splitlines()) == 1


# --- download.sh -------------------------------------------------------------------------------

def make_zip(path: Path, lang: str, names, inner_folder=True):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name in names:
            src = path.parent / f".{name}"
            write_wav(src, tone(0.6), SR)
            z.write(src, f"{lang}/{name}" if inner_folder else name)
            src.unlink()


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_download(*args, check=True):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    r = subprocess.run(["bash", str(DOWNLOAD), *map(str, args)], capture_output=True, text=True, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"download.sh failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


needs_fetcher = pytest.mark.skipif(not (shutil.which("curl") or shutil.which("wget")),
                                   reason="download.sh needs curl or wget")


@needs_fetcher
def test_download_from_a_file_url_with_checksums(tmp_path):
    server = tmp_path / "server"
    make_zip(server / "en.zip", "en", ["vidA---0000.000-0000.600.wav", "vidB---0001.000-0001.600.wav"])
    make_zip(server / "de.zip", "de", ["vidC---0000.000-0000.600.wav"], inner_folder=False)
    sums = tmp_path / "sha256sums.txt"
    sums.write_text(f"{sha256(server / 'en.zip')}  en.zip\n{sha256(server / 'de.zip')}  de.zip\n")
    dest = tmp_path / "vox"
    r = run_download("--base-url", f"file://{server}", "--checksums", sums, "--langs", "en de", dest)
    assert sorted(p.name for p in (dest / "en").iterdir()) == ["vidA---0000.000-0000.600.wav",
                                                                "vidB---0001.000-0001.600.wav"]
    assert [p.name for p in (dest / "de").iterdir()] == ["vidC---0000.000-0000.600.wav"]
    assert (dest / "en" / ".complete").exists() is False  # markers live beside, not inside, the folders
    assert (dest / ".en.complete").exists() and (dest / ".de.complete").exists()
    # idempotent: done languages are skipped
    r = run_download("--base-url", f"file://{server}", "--checksums", sums, "--langs", "en de", dest)
    assert r.stdout.count("already there; skipping") == 2

    # a corrupt archive is refused and leaves nothing that looks complete
    make_zip(server / "fr.zip", "fr", ["vidD---0000.000-0000.600.wav"])
    with open(sums, "a") as f:
        f.write("0" * 64 + "  fr.zip\n")
    r = run_download("--base-url", f"file://{server}", "--checksums", sums, "--langs", "fr", dest, check=False)
    assert r.returncode != 0 and "checksum mismatch" in r.stderr
    assert not (dest / "fr").exists() and not (dest / ".fr.complete").exists()
    # a language the checksum list lacks is an error naming the fix
    r = run_download("--base-url", f"file://{server}", "--checksums", sums, "--langs", "es", dest, check=False)
    assert r.returncode != 0 and "es.zip" in r.stderr

    # the unzipped tree is what prepare.py reads; the archives folder is not taken for a language
    clips, unmarked = prep.scan_tree(dest, None)
    assert unmarked == 0 and (dest / "archives" / "en.zip").is_file()
    assert sorted((c.lang, c.video) for c in clips) == [("de", "vidC"), ("en", "vidA"), ("en", "vidB")]


@needs_fetcher
def test_download_without_checksums_and_user_dir(tmp_path):
    server = tmp_path / "server"
    make_zip(server / "en.zip", "en", ["vidA---0000.000-0000.600.wav"])
    dest = tmp_path / "vox"
    r = run_download("--base-url", f"file://{server}", "--langs", "en", dest)
    assert "no checksum" in (r.stdout + r.stderr)
    assert (dest / "en" / "vidA---0000.000-0000.600.wav").is_file()
    # the checksum seen is recorded, so the next run can verify
    assert f"{sha256(server / 'en.zip')}  en.zip" in (dest / "sha256sums.seen").read_text()
    # a user-supplied corpus dir: only checked, nothing is fetched
    r = run_download("--corpus-dir", dest, "--langs", "en", tmp_path / "unused")
    assert "using the corpus in" in r.stdout and not (tmp_path / "unused").exists()
    r = run_download("--corpus-dir", dest, "--langs", "en fr", tmp_path / "unused", check=False)
    assert r.returncode != 0 and "fr" in r.stderr
