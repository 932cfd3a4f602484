"""nasr.data.features: fbank/MFCC against kaldi-native-fbank, Kaldi deltas, CMVN, layouts, config."""
import kaldi_native_fbank as knf
import numpy as np
import pytest

from nasr.data.features import (FeatureConfig, accumulate_cmvn_stats, add_deltas, apply_cmvn,
                                compute_features, to_layout)


def speechlike(seconds=1.0, sr=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(t.size)
    return (x / np.abs(x).max() * 0.8).astype(np.float32)


# --- deltas -----------------------------------------------------------------------------------

def kaldi_deltas_reference(feats, order, window):
    """A literal transcription of Kaldi's DeltaFeatures (feature-functions.cc): windows built by
    nested loops, then for every frame and order a clamped weighted sum over input frames."""
    scales = [[1.0]]
    for i in range(1, order + 1):
        prev = scales[i - 1]
        prev_offset = (len(prev) - 1) // 2
        cur_offset = prev_offset + window
        cur = [0.0] * (len(prev) + 2 * window)
        normalizer = sum(j * j for j in range(-window, window + 1))
        for j in range(-window, window + 1):
            for k in range(-prev_offset, prev_offset + 1):
                cur[j + k + cur_offset] += j * prev[k + prev_offset]
        scales.append([c / normalizer for c in cur])
    num_frames, dim = feats.shape
    out = np.zeros((num_frames, dim * (order + 1)))
    for t in range(num_frames):
        for i in range(order + 1):
            max_offset = (len(scales[i]) - 1) // 2
            for j in range(-max_offset, max_offset + 1):
                src = min(max(t + j, 0), num_frames - 1)
                out[t, i * dim:(i + 1) * dim] += scales[i][j + max_offset] * feats[src]
    return out


@pytest.mark.parametrize("order,window", [(2, 2), (1, 2), (2, 1), (1, 3)])
def test_deltas_match_kaldi_reference(order, window):
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((23, 5)).astype(np.float32)
    ours = add_deltas(feats, order, window)
    assert ours.shape == (23, 5 * (order + 1)) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, kaldi_deltas_reference(feats.astype(np.float64), order, window),
                               rtol=1e-5, atol=1e-5)
    # An independent implementation of the same Kaldi code.
    np.testing.assert_allclose(ours, knf.compute_deltas(knf.DeltaOptions(order=order, window=window), feats),
                               rtol=1e-5, atol=1e-5)


def test_deltas_formula_and_edges():
    rng = np.random.default_rng(2)
    c = rng.standard_normal((30, 3)).astype(np.float64)
    out = add_deltas(c.astype(np.float32), 2, 2)
    n = np.array([1, 2])
    # delta_t = sum_n n (c_{t+n} - c_{t-n}) / (2 sum n^2), with frames past the ends replicated.
    idx = lambda t: np.clip(t, 0, len(c) - 1)
    delta = np.stack([sum(k * (c[idx(t + k)] - c[idx(t - k)]) for k in n) / 10.0 for t in range(len(c))])
    np.testing.assert_allclose(out[:, 3:6], delta, atol=1e-5)
    # Away from the edges delta-delta is the same operator applied to the deltas; at the edges
    # Kaldi filters the replicated *input* frames instead, which differs.
    dd_interior = np.stack([sum(k * (delta[t + k] - delta[t - k]) for k in n) / 10.0 for t in range(4, 26)])
    np.testing.assert_allclose(out[4:26, 6:9], dd_interior, atol=1e-5)
    # A constant signal has zero deltas everywhere, edges included.
    const = add_deltas(np.ones((7, 2), np.float32), 2, 2)
    np.testing.assert_allclose(const[:, 2:], 0.0, atol=1e-7)


def test_deltas_short_inputs():
    assert add_deltas(np.zeros((0, 4), np.float32), 2, 2).shape == (0, 12)
    one = add_deltas(np.full((1, 2), 3.0, np.float32), 2, 2)
    np.testing.assert_allclose(one, [[3, 3, 0, 0, 0, 0]], atol=1e-6)


# --- fbank / mfcc -----------------------------------------------------------------------------

def knf_direct(wave, opts, computer):
    f = computer(opts)
    f.accept_waveform(16000, wave * 32768)
    f.input_finished()
    return np.stack([f.get_frame(i) for i in range(f.num_frames_ready)])


def test_fbank_matches_knf():
    wave = speechlike(1.3)
    cfg = FeatureConfig(type="fbank", num_mel_bins=40, low_freq=20, high_freq=-400)
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.mel_opts.num_bins = 40
    opts.mel_opts.high_freq = -400
    expected = knf_direct(wave, opts, knf.OnlineFbank)
    ours = compute_features(wave, cfg)
    assert ours.shape == expected.shape == (128, 40) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-4)


def test_mfcc_matches_knf_and_deltas_appended():
    wave = speechlike(0.7, seed=3)
    cfg = FeatureConfig(type="mfcc", num_mel_bins=23, num_ceps=13, frame_length_ms=25,
                        frame_shift_ms=10, snip_edges=False, deltas=2)
    opts = knf.MfccOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = False
    opts.mel_opts.num_bins = 23
    opts.num_ceps = 13
    opts.use_energy = False
    expected = knf_direct(wave, opts, knf.OnlineMfcc)
    ours = compute_features(wave, cfg)
    assert ours.shape == (70, 39) == (expected.shape[0], cfg.feat_dim)
    np.testing.assert_allclose(ours[:, :13], expected, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(ours, add_deltas(expected, 2, 2), rtol=1e-4, atol=1e-3)


def test_kws_preset_gives_101_by_40():
    cfg = FeatureConfig.preset("kws_mfcc")
    feats = compute_features(speechlike(1.0), cfg)
    assert feats.shape == (101, 40)
    assert np.isfinite(feats).all()
    # Kaldi's own framings of a 1 s clip with 30 ms windows, for the record: 98 and 100.
    assert compute_features(speechlike(1.0), cfg.replace(center=False)).shape == (98, 40)
    assert compute_features(speechlike(1.0), cfg.replace(center=False, snip_edges=False)).shape == (100, 40)


def test_asr_preset_three_channels():
    cfg = FeatureConfig.preset("asr_fbank")
    feats = compute_features(speechlike(1.0), cfg)
    assert feats.shape == (98, 120) and cfg.num_channels == 3 and cfg.feat_dim == 120
    chans = to_layout(feats, cfg.num_channels)
    assert chans.shape == (3, 98, 40)
    np.testing.assert_array_equal(chans[0], feats[:, :40])
    np.testing.assert_array_equal(chans[1], feats[:, 40:80])
    np.testing.assert_array_equal(chans[2], feats[:, 80:])
    assert to_layout(feats, 1) is feats


def test_high_freq_limits_the_band():
    # A tone above 4 kHz is invisible to a 20-4000 Hz filterbank but not to a full-band one.
    t = np.arange(16000) / 16000
    tone = (0.5 * np.sin(2 * np.pi * 6000 * t)).astype(np.float32)
    full = compute_features(tone, FeatureConfig(num_mel_bins=40))
    low = compute_features(tone, FeatureConfig(num_mel_bins=40, high_freq=4000))
    assert full.max() - low.max() > 5.0


# --- CMVN -------------------------------------------------------------------------------------

def test_cmvn_stats_format():
    rng = np.random.default_rng(4)
    feats = (rng.standard_normal((50, 6)) * 3 + 7).astype(np.float32)
    stats = accumulate_cmvn_stats(feats)
    assert stats.shape == (2, 7) and stats.dtype == np.float64
    np.testing.assert_allclose(stats[0, :6], feats.astype(np.float64).sum(0), rtol=1e-10)
    assert stats[0, 6] == 50 and stats[1, 6] == 0
    np.testing.assert_allclose(stats[1, :6], (feats.astype(np.float64) ** 2).sum(0), rtol=1e-10)
    np.testing.assert_allclose(stats, knf.compute_cmvn_stats(feats), rtol=1e-10)
    # Accumulating in two halves gives the same stats.
    halves = accumulate_cmvn_stats(feats[25:], accumulate_cmvn_stats(feats[:25]))
    np.testing.assert_allclose(halves, stats, rtol=1e-12)


def test_apply_cmvn_normalises():
    rng = np.random.default_rng(5)
    feats = (rng.standard_normal((400, 4)) * [1, 2, 5, 0.1] + [3, -2, 10, 0]).astype(np.float32)
    stats = accumulate_cmvn_stats(feats)
    mv = apply_cmvn(feats, stats, norm_vars=True)
    np.testing.assert_allclose(mv.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(mv.std(0), 1, atol=1e-4)
    m = apply_cmvn(feats, stats, norm_vars=False)
    np.testing.assert_allclose(m.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(m.std(0), feats.std(0), rtol=1e-4)
    np.testing.assert_allclose(mv, knf.apply_cmvn(stats, knf.CmvnOptions(norm_vars=True), feats),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="do not fit"):
        apply_cmvn(feats[:, :3], stats)
    with pytest.raises(ValueError, match="count of 0"):
        apply_cmvn(feats, np.zeros((2, 5)))


# --- config -----------------------------------------------------------------------------------

def test_config_round_trip_and_errors():
    cfg = FeatureConfig.preset("kws_mfcc")
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["high_freq"] == 4000.0 and cfg.feat_dim == 40
    over = FeatureConfig.from_dict({"preset": "kws_mfcc", "deltas": "1", "norm_vars": "true"})
    assert over.deltas == 1 and over.norm_vars is True and over.type == "mfcc" and over.feat_dim == 80
    with pytest.raises(ValueError, match="unknown key"):
        FeatureConfig.from_dict({"num_bins": 40})
    with pytest.raises(ValueError, match="high_freq"):
        FeatureConfig(high_freq=9000)
    with pytest.raises(ValueError, match="num_ceps"):
        FeatureConfig(type="mfcc", num_mel_bins=23, num_ceps=40)
    with pytest.raises(ValueError, match="deltas"):
        FeatureConfig(deltas=3)
    with pytest.raises(ValueError, match="preset"):
        FeatureConfig.preset("nope")
    assert FeatureConfig(high_freq=-400).to_dict()["high_freq"] == -400
