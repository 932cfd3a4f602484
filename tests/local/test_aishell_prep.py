"""local/aishell/{prepare.py,prepare_aishell2.py,download.sh} on tiny trees shaped like the releases."""
import hashlib
import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from nasr.data.audio import write_wav
from nasr.data.datadir import validate_data_dir
from nasr.utils.io import read_table

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "local" / "aishell"
PREPARE = LOCAL / "prepare.py"
PREPARE2 = LOCAL / "prepare_aishell2.py"
DOWNLOAD = LOCAL / "download.sh"
SR = 16000
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


prep1 = load(PREPARE, "aishell_prepare")
prep2 = load(PREPARE2, "aishell2_prepare")


def wav(path: Path, seed: int = 0, seconds: float = 0.3):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    write_wav(path, (0.05 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)


# Speakers S0002, S0003 train; S0724 dev; S0764 test.  Two utterances each, plus:
#   BAC009S0003W0200: transcript only (missing audio)
#   BAC009S0764W0999: audio only (missing transcript), in test
UTTS = {
    "train": {"S0002": ["BAC009S0002W0122", "BAC009S0002W0123"],
              "S0003": ["BAC009S0003W0121", "BAC009S0003W0124"]},
    "dev": {"S0724": ["BAC009S0724W0121", "BAC009S0724W0122"]},
    "test": {"S0764": ["BAC009S0764W0121", "BAC009S0764W0122", "BAC009S0764W0999"]},
}
NO_TRANSCRIPT = "BAC009S0764W0999"
NO_AUDIO = "BAC009S0003W0200"
SENTENCES = ["而 对 楼市 成交 抑制 作用 最 大", "中国 的 楼市", "楼市 成交", "中国 而 对",
             "作用 最 大", "对 中国", "楼市 的 作用"]
LEXICON = """SIL sil
<SPOKEN_NOISE> sil
中国 zh ong1 g uo2
楼市 l ou2 sh ix4
成交 ch eng2 j iao1
抑制 ii i4 zh ix4
作用 z uo4 ii iong4
而 ee er2
对 d ui4
最 z ui4
大 d a4
的 d e5
"""


def make_aishell1(root: Path) -> Path:
    n = 0
    lines = []
    for subset, speakers in UTTS.items():
        for spk, utts in speakers.items():
            for utt in utts:
                wav(root / "data_aishell" / "wav" / subset / spk / f"{utt}.wav", seed=n)
                if utt != NO_TRANSCRIPT:
                    # The release separates words by one or more spaces.
                    lines.append(f"{utt} " + SENTENCES[n % len(SENTENCES)].replace(" ", "  ") + "\n")
                n += 1
    lines.append(f"{NO_AUDIO} 中国 的 楼市\n")
    transcript = root / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt"
    transcript.parent.mkdir(parents=True)
    transcript.write_text("".join(sorted(lines)), encoding="utf-8")
    (root / "resource_aishell").mkdir()
    (root / "resource_aishell" / "lexicon.txt").write_text(LEXICON, encoding="utf-8")
    return root


def test_prepare_aishell1_tree(tmp_path):
    corpus = make_aishell1(tmp_path / "aishell")
    out = tmp_path / "data"
    run = subprocess.run([sys.executable, str(PREPARE), "--corpus-dir", str(corpus), "--out-dir", str(out)],
                         capture_output=True, text=True, env=ENV)
    assert run.returncode == 0, run.stderr
    # Skipped items are counted in the log, attributed to the right place.
    assert "test: 2 utterances, 1 speakers; 1 wavs without a transcript skipped" in run.stderr
    assert "train: 4 utterances, 2 speakers; 0 wavs without a transcript skipped" in run.stderr
    assert "1 without audio skipped" in run.stderr
    for subset in ("train", "dev", "test"):
        counts = validate_data_dir(out / subset, check_audio=True)
        assert counts["utterances"] == {"train": 4, "dev": 2, "test": 2}[subset]
    utt2spk = read_table(out / "train" / "utt2spk")
    assert utt2spk["BAC009S0002W0122"] == "S0002" and utt2spk["BAC009S0003W0124"] == "S0003"
    wav_scp = read_table(out / "train" / "wav.scp")
    path = Path(wav_scp["BAC009S0002W0122"])
    assert path.is_absolute() and path.is_file()
    assert path.parts[-3:] == ("train", "S0002", "BAC009S0002W0122.wav")
    text = read_table(out / "train" / "text")
    assert text["BAC009S0002W0122"] == "而 对 楼市 成交 抑制 作用 最 大"  # runs of spaces collapsed
    test_utts = read_table(out / "test" / "utt2spk")
    assert NO_TRANSCRIPT not in test_utts and NO_AUDIO not in utt2spk
    assert (out / "local" / "lexicon.txt").read_text(encoding="utf-8") == LEXICON


def test_prepare_aishell1_counts_and_errors(tmp_path, caplog):
    corpus = make_aishell1(tmp_path / "aishell")
    counts = prep1.prepare(corpus, tmp_path / "data")
    assert counts["test"]["wavs_without_transcript"] == 1
    assert counts["transcript"]["without_audio"] == 1
    assert counts["train"]["speakers"] == 2
    # Still-packed per-speaker archives: a clear error saying how to unpack them.
    packed = tmp_path / "packed"
    (packed / "data_aishell" / "wav").mkdir(parents=True)
    (packed / "data_aishell" / "wav" / "S0002.tar.gz").write_bytes(b"")
    (packed / "data_aishell" / "transcript").mkdir()
    (packed / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt").write_text("", encoding="utf-8")
    with pytest.raises(prep1.CorpusError, match="still packed"):
        prep1.prepare(packed, tmp_path / "d2")
    with pytest.raises(prep1.CorpusError, match="transcript"):
        prep1.prepare(tmp_path / "data", tmp_path / "d3")  # not a corpus
    assert prep1.main(["--corpus-dir", str(tmp_path / "nowhere"), "--out-dir", str(tmp_path / "d4")]) == 1
    assert not (tmp_path / "d4").exists()


def make_aishell2(root: Path) -> Path:
    sets = {"iOS/data": ("C0001", "IC0001W", 3), "AISHELL-DEV-TEST-SET/iOS/dev": ("IT0001", "IT0001W", 2),
            "AISHELL-DEV-TEST-SET/iOS/test": ("IT0002", "IT0002W", 2)}
    for k, (rel, (folder, prefix, n)) in enumerate(sets.items()):
        d = root / rel
        scp, trans = [], []
        for i in range(n):
            utt = f"{prefix}{i + 1:04d}"
            wav(d / "wav" / folder / f"{utt}.wav", seed=10 * k + i)
            scp.append(f"{utt}\twav/{folder}/{utt}.wav\n")
            trans.append(f"{utt}\t中国的楼市成交\n" if i else f"{utt}\t而对ai楼市\n")
        if rel == "iOS/data":
            scp.append("IC0001W0009\twav/C0001/IC0001W0009.wav\n")  # listed, file missing
            trans.append("IC0001W0009\t中国\n")
            trans.append("IC0001W0010\t楼市\n")                     # transcript without wav.scp entry
            wav(d / "wav" / folder / "IC0001W0011.wav")
            scp.append("IC0001W0011\twav/C0001/IC0001W0011.wav\n")  # wav without transcript
        (d / "wav.scp").write_text("".join(scp), encoding="utf-8")
        (d / "trans.txt").write_text("".join(trans), encoding="utf-8")
    return root


def test_prepare_aishell2_layout(tmp_path):
    corpus = make_aishell2(tmp_path / "aishell2")
    lexicon = tmp_path / "lexicon.txt"
    lexicon.write_text(LEXICON, encoding="utf-8")
    out = tmp_path / "data"
    run = subprocess.run([sys.executable, str(PREPARE2), "--corpus-dir", str(corpus), "--out-dir", str(out),
                          "--make-lexicon", "none"],
                         capture_output=True, text=True, env=ENV)
    assert run.returncode == 0, run.stderr
    assert ("train (" in run.stderr and "3 utterances, 1 speakers; skipped: 1 wavs without a transcript, "
            "1 transcripts without a wav.scp entry, 1 missing wav files" in run.stderr)
    for subset in ("train", "dev", "test"):
        validate_data_dir(out / subset, check_audio=True)
    text = read_table(out / "train" / "text")
    assert text["IC0001W0001"] == "而对AI楼市"  # unsegmented, ASCII upper-cased
    assert read_table(out / "dev" / "utt2spk")["IT0001W0001"] == "IT0001"
    assert Path(read_table(out / "test" / "wav.scp")["IT0002W0002"]).is_absolute()
    counts = prep2.prepare(tmp_path / "seg", corpus, lexicon_path=lexicon)
    assert counts["train"]["missing_wav_files"] == 1
    seg = read_table(tmp_path / "seg" / "train" / "text")
    assert seg["IC0001W0002"] == "中国 的 楼市 成交"  # maximum matching against the lexicon
    assert seg["IC0001W0001"] == "而 对 AI 楼市"      # an uncovered run stays, split off
    with pytest.raises(prep2.CorpusError, match="--train-dir"):
        prep2.prepare(tmp_path / "x", corpus / "iOS" / "data" / "wav")


# ----------------------------------------------------------------------------------------------
# download.sh

def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def fake_archives(tmp_path: Path) -> Path:
    """data_aishell.tgz with a per-speaker wav/S0002.tar.gz inside, and resource_aishell.tgz."""
    src = tmp_path / "src"
    (src / "data_aishell" / "wav").mkdir(parents=True)
    lines = []
    for subset, speaker in (("train", "S0002"), ("dev", "S0724"), ("test", "S0764")):
        utt = f"BAC009{speaker}W0122"
        spk = src / "spk" / speaker
        wav(spk / subset / speaker / f"{utt}.wav")
        with tarfile.open(src / "data_aishell" / "wav" / f"{speaker}.tar.gz", "w:gz") as t:
            t.add(spk / subset, arcname=subset)
        lines.append(f"{utt} 中国\n")
    (src / "data_aishell" / "transcript").mkdir()
    (src / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt").write_text(
        "".join(lines), encoding="utf-8")
    (src / "resource_aishell").mkdir()
    (src / "resource_aishell" / "lexicon.txt").write_text(LEXICON, encoding="utf-8")
    served = tmp_path / "served"
    served.mkdir()
    for part in ("data_aishell", "resource_aishell"):
        with tarfile.open(served / f"{part}.tgz", "w:gz") as t:
            t.add(src / part, arcname=part)
    return served


def test_download_checksum_and_untar(tmp_path):
    served = fake_archives(tmp_path)
    url = served.as_uri()
    dest = tmp_path / "dest"
    # The published checksums do not match the fake archives: refused, never unpacked, and the
    # download kept (the hint names the flag that would accept it) rather than deleted.
    bad = subprocess.run(["bash", str(DOWNLOAD), "--url-base", url, str(dest)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "checksum mismatch" in bad.stderr and "2f494334227864a8a8fec932999db9d8" in bad.stderr
    assert f"--data-md5 {md5(served / 'data_aishell.tgz')}" in bad.stderr
    assert (dest / "data_aishell.tgz.part").is_file() and not (dest / "data_aishell.tgz").exists()
    assert not (dest / "data_aishell" / ".complete").exists()

    args = ["--url-base", url, "--data-md5", md5(served / "data_aishell.tgz"),
            "--resource-md5", md5(served / "resource_aishell.tgz").upper()]
    ok = subprocess.run(["bash", str(DOWNLOAD), *args, str(dest)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (dest / "data_aishell/wav/train/S0002/BAC009S0002W0122.wav").is_file()
    assert not list((dest / "data_aishell" / "wav").glob("*.tar.gz"))  # inner archives unpacked
    assert (dest / "resource_aishell/lexicon.txt").is_file()
    assert (dest / "data_aishell/.complete").is_file() and (dest / "resource_aishell/.complete").is_file()
    # The unpacked tree is what prepare.py reads.
    counts = prep1.prepare(dest, tmp_path / "data")
    assert [counts[s]["utterances"] for s in ("train", "dev", "test")] == [1, 1, 1]

    # Finished parts are skipped: the URL is not even read.
    again = subprocess.run(["bash", str(DOWNLOAD), "--url-base", (tmp_path / "gone").as_uri(), str(dest)],
                           capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("skipping") == 2
    typo = subprocess.run(["bash", str(DOWNLOAD), "--data-md55", "x", str(dest)], capture_output=True, text=True)
    assert typo.returncode != 0
