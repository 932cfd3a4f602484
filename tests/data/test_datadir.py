"""Kaldi data dirs: the validator's rules, fix_data_dir's repairs, subset/split/combine/perturb."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from nasr.bin import data_dir as cli
from nasr.data import datadir as dd
from nasr.data.audio import read_audio, write_wav
from nasr.utils.io import FormatError

SR = 8000


def make_data_dir(root: Path, speakers=("spkA", "spkB", "spkC"), utts_per_spk=2, segments=False) -> Path:
    """A valid dir: utterances `<spk>-u<i>` of 0.25 s each; with `segments`, one 1 s recording per speaker."""
    data = root / "data" / "train"
    wavs = root / "wav"
    data.mkdir(parents=True)
    wavs.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    wav, text, utt2spk, seg, utt2dur, utt2lang = {}, {}, {}, {}, {}, {}
    for spk in speakers:
        if segments:
            write_wav(wavs / f"{spk}.wav", 0.1 * rng.standard_normal(SR).astype(np.float32), SR)
            wav[f"rec-{spk}"] = str(wavs / f"{spk}.wav")
        for i in range(1, utts_per_spk + 1):
            utt = f"{spk}-u{i}"
            utt2spk[utt] = spk
            text[utt] = f"你好 word{i}"
            utt2lang[utt] = "zh"
            if segments:
                seg[utt] = f"rec-{spk} {0.3 * (i - 1):.2f} {0.3 * (i - 1) + 0.25:.2f}"
            else:
                write_wav(wavs / f"{utt}.wav", 0.1 * rng.standard_normal(SR // 4).astype(np.float32), SR)
                wav[utt] = str(wavs / f"{utt}.wav")
            utt2dur[utt] = "0.25"
    d = dd.DataDir(utt2spk=utt2spk, text=text, wav_scp=wav, segments=seg or None, utt2dur=utt2dur,
                   utt2lang=utt2lang)
    dd.write_data_dir(d, data)
    return data


def lines(path):
    return Path(path).read_text(encoding="utf-8").splitlines()


def write_lines(path, rows):
    Path(path).write_text("".join(r + "\n" for r in rows), encoding="utf-8")


def test_valid_dir_passes_and_counts(tmp_path):
    data = make_data_dir(tmp_path)
    summary = dd.validate_data_dir(data)
    assert summary["utterances"] == 6 and summary["speakers"] == 3 and summary["recordings"] == 6
    assert summary["sample_rates"] == [SR]
    assert lines(data / "spk2utt")[0] == "spkA spkA-u1 spkA-u2"


def test_valid_dir_with_segments_passes(tmp_path):
    data = make_data_dir(tmp_path, segments=True)
    summary = dd.validate_data_dir(data)
    assert summary["utterances"] == 6 and summary["recordings"] == 3


# Each malformation: (how to break the dir, file named in the error, phrase in the error)
def _unsorted(data):
    rows = lines(data / "utt2spk")
    rows[1], rows[2] = rows[2], rows[1]
    write_lines(data / "utt2spk", rows)


def _duplicate(data):
    rows = lines(data / "text")
    write_lines(data / "text", rows[:3] + [rows[2].split()[0] + " other words"] + rows[3:])


def _missing_utt2spk_entry(data):
    write_lines(data / "utt2spk", [r for r in lines(data / "utt2spk") if not r.startswith("spkB-u2 ")])
    write_lines(data / "spk2utt", [r.replace(" spkB-u2", "") for r in lines(data / "spk2utt")])


def _missing_wav(data):
    os.unlink(dict(r.split() for r in lines(data / "wav.scp"))["spkC-u1"])


def _empty_text(data):
    write_lines(data / "text", [r if not r.startswith("spkA-u2 ") else "spkA-u2" for r in lines(data / "text")])


def _spk2utt_mismatch(data):
    write_lines(data / "spk2utt", [r.replace(" spkA-u2", "") for r in lines(data / "spk2utt")])


MALFORMED = {
    "unsorted": (_unsorted, "utt2spk:3", "not sorted: 'spkA-u2' comes after 'spkB-u1'"),
    "duplicate": (_duplicate, "text:4", "duplicate key 'spkB-u1'"),
    "missing_utt2spk_entry": (_missing_utt2spk_entry, "text:4", "utterance 'spkB-u2' is not in utt2spk"),
    "missing_wav": (_missing_wav, "wav.scp:5", "does not exist"),
    "empty_text": (_empty_text, "text:2", "utterance 'spkA-u2' has empty text"),
    "spk2utt_mismatch": (_spk2utt_mismatch, "spk2utt", "does not list utterance 'spkA-u2'"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_validator_names_file_line_and_fix(tmp_path, case):
    data = make_data_dir(tmp_path)
    breaker, where, problem = MALFORMED[case]
    breaker(data)
    with pytest.raises(FormatError) as e:
        dd.validate_data_dir(data)
    msg = str(e.value)
    assert f"{data}/{where}" in msg and problem in msg
    assert f"(fix: " in msg


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_fix_data_dir_repairs(tmp_path, case):
    data = make_data_dir(tmp_path)
    originals = {n: (data / n).read_bytes() for n in ("utt2spk", "text", "wav.scp")}
    MALFORMED[case][0](data)
    broken_text = (data / "text").read_bytes()
    removed = dd.fix_data_dir(data)
    summary = dd.validate_data_dir(data)
    dropped_one = case in ("missing_utt2spk_entry", "missing_wav", "empty_text")
    assert summary["utterances"] == (5 if dropped_one else 6)
    assert (data / ".backup" / "text").read_bytes() == broken_text
    if case == "unsorted":
        assert (data / "utt2spk").read_bytes() == originals["utt2spk"]
    if case == "duplicate":
        assert removed["text"] == 1 and "spkB-u1 你好 word1" in lines(data / "text")  # first line kept
    if case == "missing_wav":
        assert removed["wav.scp"] == 1 and not any(r.startswith("spkC-u1 ") for r in lines(data / "utt2spk"))
        assert lines(data / "spk2utt")[2] == "spkC spkC-u2"


def test_fix_drops_speakers_and_recordings_left_empty(tmp_path):
    data = make_data_dir(tmp_path, segments=True)
    write_lines(data / "text", [r for r in lines(data / "text") if not r.startswith("spkB-")])
    dd.fix_data_dir(data)
    assert [r.split()[0] for r in lines(data / "spk2utt")] == ["spkA", "spkC"]
    assert [r.split()[0] for r in lines(data / "wav.scp")] == ["rec-spkA", "rec-spkC"]
    dd.validate_data_dir(data)


def test_fix_refuses_to_empty_a_dir(tmp_path):
    data = make_data_dir(tmp_path)
    write_lines(data / "text", ["other-utt hello"])
    before = (data / "utt2spk").read_bytes()
    with pytest.raises(FormatError, match="no utterance is present in every file"):
        dd.fix_data_dir(data)
    assert (data / "utt2spk").read_bytes() == before  # nothing written


def test_segments_rules(tmp_path):
    data = make_data_dir(tmp_path, segments=True)
    rows = lines(data / "segments")
    write_lines(data / "segments", [rows[0].replace("rec-spkA", "rec-nope")] + rows[1:])
    with pytest.raises(FormatError, match=r"segments:1: recording 'rec-nope' of 'spkA-u1' is not in wav.scp"):
        dd.validate_data_dir(data)
    write_lines(data / "segments", [rows[0].replace("0.25", "0.00")] + rows[1:])
    with pytest.raises(FormatError, match="segments:1: 'spkA-u1': bad times"):
        dd.validate_data_dir(data)


def test_pipe_entries_are_run(tmp_path):
    data = make_data_dir(tmp_path)
    wav = dict(r.split(maxsplit=1) for r in lines(data / "wav.scp"))
    wav["spkA-u1"] = f"cat {wav['spkA-u1']} |"
    dd.write_data_dir(dd.DataDir(**{**vars(dd.load_data_dir(data)), "wav_scp": wav}), data)
    dd.validate_data_dir(data)
    wav["spkA-u1"] = "false |"
    write_lines(data / "wav.scp", [f"{k} {v}" for k, v in sorted(wav.items())])
    with pytest.raises(FormatError, match=r"wav.scp:1: cannot read audio: command 'false' failed"):
        dd.validate_data_dir(data)
    dd.validate_data_dir(data, check_audio=False)


def test_optional_files_must_cover_the_same_utterances(tmp_path):
    data = make_data_dir(tmp_path)
    write_lines(data / "utt2dur", lines(data / "utt2dur")[:-1])
    with pytest.raises(FormatError, match=r"utt2dur: has no line for utterance 'spkC-u2' \(utt2spk line 6\)"):
        dd.validate_data_dir(data)
    write_lines(data / "utt2dur", [r.replace("0.25", "abc") for r in lines(data / "utt2spk")])
    with pytest.raises(FormatError, match=r"utt2dur:1: 'spkA-u1': 'spkA' is not a number"):
        dd.validate_data_dir(data)


def test_no_text_and_no_wav_flags(tmp_path):
    data = make_data_dir(tmp_path)
    (data / "text").unlink()
    with pytest.raises(FormatError, match="text: missing"):
        dd.validate_data_dir(data)
    assert dd.validate_data_dir(data, no_text=True)["utterances"] == 6
    (data / "wav.scp").unlink()
    assert dd.validate_data_dir(data, no_text=True, no_wav=True)["utterances"] == 6


def test_write_is_c_ordered(tmp_path):
    d = dd.DataDir(utt2spk={"b": "s", "B": "s", "a_1": "s", "a-1": "s", "é": "s"})
    dd.write_data_dir(d, tmp_path / "x")
    assert [r.split()[0] for r in lines(tmp_path / "x" / "utt2spk")] == ["B", "a-1", "a_1", "b", "é"]
    assert lines(tmp_path / "x" / "spk2utt") == ["s B a-1 a_1 b é"]


def test_subset_selectors(tmp_path):
    data = make_data_dir(tmp_path)
    out = tmp_path / "sub"
    assert dd.subset_data_dir(data, out / "first", first=2).utts == ["spkA-u1", "spkA-u2"]
    assert dd.subset_data_dir(data, out / "last", last=3).utts == ["spkB-u2", "spkC-u1", "spkC-u2"]
    write_lines(tmp_path / "ids", ["spkC-u2", "spkA-u1", "nope"])
    assert dd.subset_data_dir(data, out / "utts", utt_list=tmp_path / "ids").utts == ["spkA-u1", "spkC-u2"]
    write_lines(tmp_path / "spks", ["spkB"])
    assert dd.subset_data_dir(data, out / "spks", spk_list=tmp_path / "spks").utts == ["spkB-u1", "spkB-u2"]
    r1 = dd.subset_data_dir(data, out / "r1", random_n=3, seed=1).utts
    r2 = dd.subset_data_dir(data, out / "r2", random_n=3, seed=1).utts
    assert r1 == r2 and len(r1) == 3
    for name in ("first", "last", "utts", "spks", "r1"):
        dd.validate_data_dir(out / name)
    assert lines(out / "first" / "spk2utt") == ["spkA spkA-u1 spkA-u2"]
    assert len(lines(out / "last" / "wav.scp")) == 3
    with pytest.raises(ValueError, match="cannot take 7 utterances"):
        dd.subset_data_dir(data, out / "bad", first=7)


def test_subset_keeps_only_used_recordings(tmp_path):
    data = make_data_dir(tmp_path, segments=True)
    sub = dd.subset_data_dir(data, tmp_path / "sub", first=3)
    assert sorted(sub.wav_scp) == ["rec-spkA", "rec-spkB"]
    dd.validate_data_dir(tmp_path / "sub")


def test_split_by_utterance_and_by_speaker(tmp_path):
    data = make_data_dir(tmp_path, speakers=("s1", "s2", "s3", "s4", "s5"), utts_per_spk=3)
    parts = dd.split_data(data, 4)
    assert [p.relative_to(data).as_posix() for p in parts] == [f"split4utt/{k}" for k in range(1, 5)]
    counts = [len(lines(p / "utt2spk")) for p in parts]
    assert counts == [4, 4, 4, 3]
    all_utts = [u for p in parts for u in dd.load_data_dir(p).utts]
    assert sorted(all_utts) == dd.load_data_dir(data).utts  # every utterance exactly once
    for p in parts:
        dd.validate_data_dir(p)

    parts = dd.split_data(data, 2, by_speaker=True)
    assert parts[0] == data / "split2" / "1"
    speakers = [set(dd.load_data_dir(p).utt2spk.values()) for p in parts]
    assert not speakers[0] & speakers[1]
    assert sum(len(dd.load_data_dir(p).utt2spk) for p in parts) == 15
    assert {len(s) for s in speakers} == {2, 3}
    for p in parts:
        assert all(len(u.split()) == 4 for u in lines(p / "spk2utt"))  # speakers whole: 3 utts each

    with pytest.raises(ValueError, match="it has 5 speakers"):
        dd.split_data(data, 6, by_speaker=True)


def test_split_is_reused_until_the_source_changes(tmp_path):
    data = make_data_dir(tmp_path)
    part = dd.split_data(data, 2)[0]
    marker = part / "utt2lang"
    stamp = marker.stat().st_mtime_ns
    dd.split_data(data, 2)
    assert marker.stat().st_mtime_ns == stamp
    (data / "utt2lang").write_text((data / "utt2lang").read_text().replace(" zh", " en"))
    t = (data / "utt2lang").stat().st_mtime + 5
    os.utime(data / "utt2lang", (t, t))
    dd.split_data(data, 2)
    assert marker.stat().st_mtime_ns != stamp and " en" in marker.read_text()


def test_combine(tmp_path):
    a = make_data_dir(tmp_path / "a", speakers=("spkA",))
    b = make_data_dir(tmp_path / "b", speakers=("spkB", "spkC"), segments=True)
    out = dd.combine_data(tmp_path / "all", [a, b])
    assert len(out.utt2spk) == 6
    # a had no segments: whole-recording segments were made for it
    assert out.segments["spkA-u1"] == "spkA-u1 0 -1" and "rec-spkB" in out.wav_scp
    dd.validate_data_dir(tmp_path / "all")
    assert len(read_audio(out.wav_scp["spkA-u1"], start=0.0, end=-1)) == SR // 4
    with pytest.raises(FormatError, match=r"a/data/train/utt2spk:1: utterance 'spkA-u1' is also in"):
        dd.combine_data(tmp_path / "dup", [tmp_path / "all", a])
    assert not (tmp_path / "dup").exists()


def test_combine_drops_files_missing_from_a_source(tmp_path):
    a = make_data_dir(tmp_path / "a", speakers=("spkA",))
    b = make_data_dir(tmp_path / "b", speakers=("spkB",))
    (b / "utt2lang").unlink()
    out = dd.combine_data(tmp_path / "all", [a, b])
    assert out.utt2lang is None and not (tmp_path / "all" / "utt2lang").exists()


def test_perturb_speed(tmp_path):
    data = make_data_dir(tmp_path, speakers=("spkA", "spkB"))
    out = dd.perturb_speed(data, tmp_path / "sp", 0.9)
    assert out.utts == ["sp0.9-spkA-u1", "sp0.9-spkA-u2", "sp0.9-spkB-u1", "sp0.9-spkB-u2"]
    assert out.utt2spk["sp0.9-spkB-u1"] == "sp0.9-spkB"
    assert out.text["sp0.9-spkA-u1"] == "你好 word1" and out.utt2lang["sp0.9-spkA-u1"] == "zh"
    assert out.utt2uniq["sp0.9-spkA-u1"] == "spkA-u1"
    assert float(out.utt2dur["sp0.9-spkA-u1"]) == pytest.approx(0.25 / 0.9, rel=1e-5)
    assert out.wav_scp["sp0.9-spkA-u1"].startswith("python -m nasr.data.audio --speed 0.9 ")
    x = read_audio(out.wav_scp["sp0.9-spkA-u1"])
    assert abs(len(x) - (SR // 4) / 0.9) <= 2
    dd.validate_data_dir(tmp_path / "sp")
    assert dd.speed_prefix(1.0) == "sp1.0-" and dd.speed_prefix(1.1) == "sp1.1-"


def test_perturb_speed_with_segments(tmp_path):
    data = make_data_dir(tmp_path, speakers=("spkA",), segments=True)
    (data / "feats.scp").write_text("spkA-u1 x.ark:1\nspkA-u2 x.ark:2\n")
    out = dd.perturb_speed(data, tmp_path / "sp", 1.1)
    assert out.segments["sp1.1-spkA-u2"] == f"sp1.1-rec-spkA {0.3 / 1.1:.6g} {0.55 / 1.1:.6g}"
    assert list(out.wav_scp) == ["sp1.1-rec-spkA"]
    assert not (tmp_path / "sp" / "feats.scp").exists()  # features must be recomputed
    dd.validate_data_dir(tmp_path / "sp")


def test_utt2spk_spk2utt_conversions():
    utt2spk = {"u2": "s1", "u1": "s1", "v1": "s0"}
    assert dd.utt2spk_to_spk2utt(utt2spk) == {"s0": ["v1"], "s1": ["u1", "u2"]}
    assert dd.spk2utt_to_utt2spk({"s1": ["u1", "u2"], "s0": ["v1"]}) == {"u1": "s1", "u2": "s1", "v1": "s0"}
    stream = list(dd.stream_utt2spk_to_spk2utt(["说话人一-1 说话人一\n", "b x\n", "说话人一-2 说话人一\n"]))
    assert stream == ["说话人一 说话人一-1 说话人一-2\n", "x b\n"]
    assert list(dd.stream_spk2utt_to_utt2spk(stream)) == ["说话人一-1 说话人一\n", "说话人一-2 说话人一\n", "b x\n"]
    # a no-break space is part of a token, as for Kaldi's byte-oriented tools
    assert list(dd.stream_utt2spk_to_spk2utt(["a\u00a0b s\n"])) == ["s a\u00a0b\n"]


def test_cli_errors_exit_1_without_traceback(tmp_path, capsys):
    data = make_data_dir(tmp_path)
    _unsorted(data)
    assert cli.main(["validate", str(data)]) == 1
    err = capsys.readouterr().err
    assert f"{data}/utt2spk:3: not sorted" in err and f"fix: utils/fix_data_dir.sh {data}" in err
    assert "Traceback" not in err
    assert cli.main(["fix", str(data)]) == 0
    assert cli.main(["validate", str(data)]) == 0
    assert "Successfully validated data-directory" in capsys.readouterr().out
    assert cli.main(["split", "--per-utt", str(data), "3"]) == 0
    assert (data / "split3utt" / "3" / "wav.scp").is_file()
    assert cli.main(["subset", "--first", "99", str(data), str(tmp_path / "s")]) == 1
    assert "cannot take 99 utterances" in capsys.readouterr().err
    shutil.rmtree(data / ".backup")


def test_rewriting_the_same_dir_keeps_its_features(tmp_path):
    """A rerun of data prep on the same corpus must not drop the features computed since (they
    would be computed again); a dir whose tables changed loses them, as before."""
    data = make_data_dir(tmp_path)
    d = dd.load_data_dir(data)
    for name in ("feats.scp", "utt2num_frames", "cmvn.scp", "feats.yaml"):
        (data / name).write_text("computed since\n")
    stamp = {f.name: f.stat().st_mtime_ns for f in data.iterdir()}
    dd.write_data_dir(d, data)
    assert {f.name: f.stat().st_mtime_ns for f in data.iterdir()} == stamp
    # perturb + combine (aishell's stage 3) rerun on unchanged inputs keep the combined dir's features
    dd.perturb_speed(data, tmp_path / "sp0.9", 0.9)
    dd.combine_data(tmp_path / "sp", [data, tmp_path / "sp0.9"])
    (tmp_path / "sp" / "feats.scp").write_text("computed since\n")
    dd.perturb_speed(data, tmp_path / "sp0.9", 0.9)
    dd.combine_data(tmp_path / "sp", [data, tmp_path / "sp0.9"])
    assert (tmp_path / "sp" / "feats.scp").is_file()

    d.text["spkA-u1"] = "changed"
    dd.write_data_dir(d, data)
    assert not (data / "feats.scp").exists() and not (data / "cmvn.scp").exists()
    assert "spkA-u1 changed" in lines(data / "text")


def test_replace_dirs_keeps_an_unchanged_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()

    def prepare(files):
        staging = tmp_path / "staging"
        (staging / "train").mkdir(parents=True)
        for name, text in files.items():
            (staging / "train" / name).write_text(text)
        dd.replace_dirs(staging, out, ["train"])
        shutil.rmtree(staging)

    files = {"text": "a yes\n", "labels.txt": "yes\nno\n"}
    prepare(files)
    (out / "train" / "feats.scp").write_text("computed since\n")
    prepare(files)
    assert (out / "train" / "feats.scp").is_file()
    prepare({"text": "a no\n", "labels.txt": "yes\nno\n"})  # another table: replaced
    assert not (out / "train" / "feats.scp").exists() and lines(out / "train" / "text") == ["a no"]
    (out / "train" / "feats.scp").write_text("computed since\n")
    prepare({"text": "a no\n"})  # a file prep no longer writes makes the dir another one too
    assert not (out / "train" / "labels.txt").exists() and not (out / "train" / "feats.scp").exists()


def test_global_cmvn_stats_are_valid_for_every_speaker(tmp_path):
    # compute_feats --cmvn global writes one `global` entry; a featurised dir must still validate,
    # and fixing or subsetting it keeps the stats (before: "speaker 'global' is not in spk2utt").
    data = make_data_dir(tmp_path)
    (data / "cmvn.scp").write_text("global /x/cmvn.ark:12\n")
    assert "cmvn.scp" in dd.validate_data_dir(data)["files"]
    dd.fix_data_dir(data)
    assert lines(data / "cmvn.scp") == ["global /x/cmvn.ark:12"]
    sub = dd.subset_data_dir(data, tmp_path / "sub", first=2)
    assert sub.cmvn_scp == {"global": "/x/cmvn.ark:12"}


def test_validator_names_a_cut_wav(tmp_path):
    import os

    data = make_data_dir(tmp_path)
    first = lines(data / "wav.scp")[0]
    path = first.split()[1]
    os.truncate(path, os.path.getsize(path) - 100)
    with pytest.raises(FormatError, match=rf"wav\.scp:1: audio file '{path}' is cut short"):
        dd.validate_data_dir(data)


def test_global_cmvn_stats_are_valid_and_kept_by_fix(tmp_path):
    # Before: the validator rejected compute_feats --cmvn global's own cmvn.scp and the suggested
    # fix_data_dir deleted the stats.
    from nasr.bin import compute_feats

    data = make_data_dir(tmp_path)
    assert compute_feats.main(["--data-dir", str(data), "--cmvn", "global", "--sample-rate", "8000",
                               "--no-progress"]) == 0
    stats = (data / "cmvn.scp").read_text()
    assert stats.startswith("global ")
    dd.validate_data_dir(data)
    first_utt = lines(data / "utt2spk")[0].split()[0]
    write_lines(data / "text", [l for l in lines(data / "text") if not l.startswith(first_utt + " ")])
    dd.fix_data_dir(data)
    assert (data / "cmvn.scp").read_text() == stats
    dd.validate_data_dir(data, no_feats=False)
    sub = tmp_path / "sub"
    dd.subset_data_dir(data, sub, first=2)
    assert (sub / "cmvn.scp").read_text() == stats
