"""python -m nasr.bin.compute_feats on tiny data dirs: outputs, segments, CMVN, resume, errors."""
import kaldiio
import numpy as np
import pytest
import yaml

from nasr.bin import compute_feats
from nasr.data.audio import read_audio, write_wav
from nasr.data.features import FeatureConfig, FeatureReader, accumulate_cmvn_stats, compute_features

SR = 16000


def tone_noise(seconds, seed, sr=SR):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (150 + 50 * seed) * t) + 0.05 * rng.standard_normal(t.size)
    return x.astype(np.float32)


def make_dir(root, durations=(1.0, 0.6, 1.3), speakers=("a", "b", "a"), sr=SR):
    data = root / "data_in"
    data.mkdir()
    wav_lines, spk_lines = [], []
    for i, (dur, spk) in enumerate(zip(durations, speakers)):
        path = root / f"rec{i}.wav"
        write_wav(path, tone_noise(dur, i, sr), sr)
        wav_lines.append(f"{spk}_utt{i} {path}\n")
        spk_lines.append(f"{spk}_utt{i} {spk}\n")
    (data / "wav.scp").write_text("".join(sorted(wav_lines)))
    (data / "utt2spk").write_text("".join(sorted(spk_lines)))
    return data


def run(argv):
    return compute_feats.main(argv + ["--no-progress"])


def test_end_to_end_global_cmvn(tmp_path):
    data = make_dir(tmp_path)
    assert run(["--data-dir", str(data), "--deltas", "2", "--cmvn", "global", "--norm-vars", "true"]) == 0
    cfg = FeatureConfig(deltas=2, cmvn="global", norm_vars=True)
    feats = {k: np.asarray(v) for k, v in kaldiio.load_scp(str(data / "feats.scp")).items()}
    assert list(feats) == ["a_utt0", "a_utt2", "b_utt1"]
    num_frames = dict(line.split() for line in (data / "utt2num_frames").read_text().splitlines())
    wav = dict(line.split() for line in (data / "wav.scp").read_text().splitlines())
    for utt, mat in feats.items():
        assert mat.shape == (int(num_frames[utt]), 120)
        np.testing.assert_allclose(mat, compute_features(read_audio(wav[utt]), cfg), rtol=1e-5, atol=1e-4)
    assert num_frames == {"a_utt0": "98", "b_utt1": "58", "a_utt2": "128"}
    meta = yaml.safe_load((data / "feats.yaml").read_text())
    assert meta["feat_dim"] == 120 and meta["num_channels"] == 1 and meta["deltas"] == 2
    stats = kaldiio.load_scp(str(data / "cmvn.scp"))
    assert list(stats) == ["global"]
    np.testing.assert_allclose(stats["global"], accumulate_cmvn_stats(np.concatenate(list(feats.values()))),
                               rtol=1e-9)
    reader = FeatureReader(data)
    assert sorted(reader.keys()) == sorted(feats) and reader.feat_dim == 120
    allnorm = np.concatenate([reader[u] for u in reader])
    np.testing.assert_allclose(allnorm.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(allnorm.std(0), 1, atol=1e-3)
    assert reader.num_frames("a_utt2") == 128


def test_speaker_cmvn_channels_layout_and_parallel_parts(tmp_path):
    data = make_dir(tmp_path)
    assert run(["--data-dir", str(data), "--preset", "asr_fbank", "--cmvn", "speaker", "--nj", "2"]) == 0
    stats = kaldiio.load_scp(str(data / "cmvn.scp"))
    assert sorted(stats) == ["a", "b"] and stats["a"][0, -1] == 98 + 128
    reader = FeatureReader(data)
    assert reader.num_channels == 3 and reader["b_utt1"].shape == (3, 58, 40)
    a_frames = np.concatenate([reader[u] for u in ("a_utt0", "a_utt2")], axis=1)
    np.testing.assert_allclose(a_frames.mean(axis=1), 0, atol=1e-4)  # per-speaker zero mean
    raw = FeatureReader(data, apply_cmvn=False)["b_utt1"]
    assert abs(raw.mean()) > 1.0


def test_segments(tmp_path):
    data = make_dir(tmp_path, durations=(2.0, 1.5), speakers=("a", "b"))
    (data / "segments").write_text("a_seg1 a_utt0 0.00 0.80\n"
                                   "a_seg2 a_utt0 0.75 2.00\n"
                                   "b_seg1 b_utt1 0.20 -1\n")
    (data / "utt2spk").write_text("a_seg1 a\na_seg2 a\nb_seg1 b\n")
    assert run(["--data-dir", str(data), "--type", "mfcc", "--num-ceps", "13", "--num-mel-bins", "23"]) == 0
    feats = kaldiio.load_scp(str(data / "feats.scp"))
    assert list(feats) == ["a_seg1", "a_seg2", "b_seg1"]
    cfg = FeatureConfig(type="mfcc", num_ceps=13, num_mel_bins=23)
    rec0 = read_audio(str(tmp_path / "rec0.wav"))
    np.testing.assert_allclose(feats["a_seg2"], compute_features(rec0[12000:32000], cfg), rtol=1e-5, atol=1e-3)
    nf = dict(line.split() for line in (data / "utt2num_frames").read_text().splitlines())
    assert nf == {"a_seg1": "78", "a_seg2": "123", "b_seg1": "128"}  # 0.8 s, 1.25 s, 1.3 s


def test_resume_skips_finished_parts_and_noop_rerun(tmp_path):
    data = make_dir(tmp_path)
    argv = ["--data-dir", str(data), "--nj", "2"]
    # A job runner ran part 1 only (as if the run died before part 2): nothing is trusted yet.
    assert run(argv + ["--job", "1"]) == 0
    part1 = data / "data" / "raw_feats.1.ark"
    assert part1.is_file() and not (data / "feats.scp").exists() and not (data / "feats.yaml").exists()
    mtime1 = part1.stat().st_mtime_ns
    assert run(argv) == 0
    part2 = data / "data" / "raw_feats.2.ark"
    assert part1.stat().st_mtime_ns == mtime1  # not recomputed
    assert (data / "feats.yaml").is_file() and len(kaldiio.load_scp(str(data / "feats.scp"))) == 3
    # Part 2 was killed after its ark was renamed but before its done marker: redone.
    (data / "data" / "raw_feats.2.done").unlink()
    (data / "feats.yaml").unlink()
    mtime2 = part2.stat().st_mtime_ns
    assert run(argv) == 0
    assert part1.stat().st_mtime_ns == mtime1 and part2.stat().st_mtime_ns != mtime2
    # Same config on a finished dir: nothing is touched.
    stamp = (data / "feats.yaml").stat().st_mtime_ns
    mtime2 = part2.stat().st_mtime_ns
    assert run(argv) == 0
    assert (data / "feats.yaml").stat().st_mtime_ns == stamp and part2.stat().st_mtime_ns == mtime2
    # Only the CMVN changed: the arks stay, the stats and feats.yaml are redone.
    assert run(argv + ["--norm-vars", "true"]) == 0
    assert part1.stat().st_mtime_ns == mtime1 and (data / "feats.yaml").stat().st_mtime_ns != stamp
    assert yaml.safe_load((data / "feats.yaml").read_text())["norm_vars"] is True
    # Another feature config recomputes the arks.
    assert run(argv + ["--num-mel-bins", "30"]) == 0
    assert part1.stat().st_mtime_ns != mtime1
    assert FeatureReader(data).feat_dim == 30


def test_wrong_sample_rate_is_a_clear_error(tmp_path, capsys):
    data = make_dir(tmp_path)
    write_wav(tmp_path / "rec1.wav", tone_noise(0.6, 1, sr=8000), 8000)  # line 3 of wav.scp: b_utt1
    assert run(["--data-dir", str(data)]) == 1
    err = capsys.readouterr().err
    assert f"{data / 'wav.scp'}:3:" in err and "'b_utt1'" in err
    assert "8000 Hz" in err and "--resample true" in err
    assert not (data / "feats.scp").exists() and not (data / "feats.yaml").exists()
    # The fix the message names works.
    assert run(["--data-dir", str(data), "--resample", "true"]) == 0
    assert FeatureReader(data).num_frames("b_utt1") == 58


def test_missing_wav_leaves_nothing_trusted(tmp_path, capsys):
    data = make_dir(tmp_path)
    assert run(["--data-dir", str(data)]) == 0  # a finished dir ...
    (tmp_path / "rec2.wav").unlink()             # ... whose audio then goes missing (a_utt2, line 2)
    assert run(["--data-dir", str(data), "--deltas", "1"]) == 1
    err = capsys.readouterr().err
    assert f"{data / 'wav.scp'}:2:" in err and "'a_utt2'" in err and "does not exist" in err
    assert "fix:" in err
    for name in ("feats.scp", "feats.yaml", "utt2num_frames", "cmvn.scp"):
        assert not (data / name).exists(), name
    with pytest.raises(ValueError, match="feats.yaml"):
        FeatureReader(data)


def test_bad_segments_line_and_config(tmp_path, capsys):
    data = make_dir(tmp_path)
    (data / "segments").write_text("x1 a_utt0 0.0 0.5\nx2 nosuchrec 0 1\n")
    assert run(["--data-dir", str(data)]) == 1
    err = capsys.readouterr().err
    assert f"{data / 'segments'}:2:" in err and "nosuchrec" in err
    (data / "segments").unlink()
    assert run(["--data-dir", str(data), "--high-freq", "9000"]) == 1
    assert "high_freq" in capsys.readouterr().err


def test_config_file_section_preset_and_cli_override(tmp_path):
    data = make_dir(tmp_path, durations=(1.0,), speakers=("a",))
    conf = tmp_path / "train.yaml"
    conf.write_text("features:\n  preset: kws_mfcc\n  num_ceps: 20\nmodel:\n  name: res15\n")
    assert run(["--data-dir", str(data), "--config", str(conf), "--deltas", "1"]) == 0
    meta = yaml.safe_load((data / "feats.yaml").read_text())
    assert (meta["type"], meta["num_ceps"], meta["high_freq"], meta["deltas"], meta["feat_dim"]) == \
        ("mfcc", 20, 4000.0, 1, 40)
    assert FeatureReader(data)["a_utt0"].shape == (101, 40)
    # A finished dir's feats.yaml reproduces its config: another dir made from it matches.
    other = tmp_path / "other"
    other.mkdir()
    (other / "wav.scp").write_text((data / "wav.scp").read_text())
    assert run(["--data-dir", str(other), "--config", str(data / "feats.yaml")]) == 0
    np.testing.assert_array_equal(FeatureReader(other)["a_utt0"], FeatureReader(data)["a_utt0"])


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_rerun_recomputes_a_missing_or_cut_ark(tmp_path, damage):
    # Before: feats.yaml alone said "up to date", so the rerun did nothing and reading failed later.
    import os

    from nasr.utils.io import FormatError

    data = make_dir(tmp_path)
    assert run(["--data-dir", str(data), "--cmvn", "global"]) == 0
    ark = data / "data" / "raw_feats.1.ark"
    if damage == "delete":
        ark.unlink()
    else:
        os.truncate(ark, ark.stat().st_size - 100)
    with pytest.raises(FormatError, match=r"feats\.scp:\d+: ark .*raw_feats\.1\.ark.*rerun python -m nasr.bin.compute_feats"):
        FeatureReader(data)
    assert run(["--data-dir", str(data), "--cmvn", "global"]) == 0
    reader = FeatureReader(data)
    assert all(reader[u].shape[0] == reader.num_frames(u) for u in reader)


def test_a_second_feature_job_on_one_data_dir_is_refused(tmp_path, capsys):
    # Before: both jobs wrote the same parts and one of them crashed.
    import os

    from nasr.utils.lock import dir_lock

    data = make_dir(tmp_path)
    with dir_lock(data, what="data dir"):
        assert run(["--data-dir", str(data)]) == 1
    err = capsys.readouterr().err
    assert f"pid {os.getpid()} on host" in err and "in use by another job" in err
    assert not (data / "feats.yaml").exists()
    assert run(["--data-dir", str(data)]) == 0  # released: the next job runs


def test_stereo_needs_channel(tmp_path, capsys):
    data = make_dir(tmp_path, durations=(0.5,), speakers=("a",))
    stereo = np.stack([tone_noise(0.5, 3), tone_noise(0.5, 4)], axis=1)
    write_wav(tmp_path / "rec0.wav", stereo, SR)
    assert run(["--data-dir", str(data)]) == 1
    assert "rec0.wav' has 2 channels" in capsys.readouterr().err
    assert run(["--data-dir", str(data), "--channel", "1", "--cmvn", "none"]) == 0
    got = np.asarray(kaldiio.load_scp(str(data / "feats.scp"))["a_utt0"])
    want = compute_features(read_audio(str(tmp_path / "rec0.wav"), channel=1), FeatureConfig(channel=1))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
