"""Batched Kaldi features in torch against kaldi-native-fbank, and the KWS items they replace."""
import numpy as np
import pytest
import torch

from nasr.data.batch_features import BatchFeatures, supports
from nasr.data.features import PRESETS, FeatureConfig, compute_features


@pytest.mark.parametrize("cfg", [PRESETS["kws_mfcc"], FeatureConfig(type="fbank", cmvn="none"),
                                 FeatureConfig(type="mfcc", num_ceps=13, num_mel_bins=23, cmvn="none")],
                         ids=["kws_mfcc", "fbank", "mfcc13"])
def test_batched_features_match_kaldi_native_fbank(cfg):
    rng = np.random.default_rng(0)
    waves = (rng.standard_normal((3, 16000)) * np.array([[0.3], [0.01], [0.0001]])).astype(np.float32)
    ref = np.stack([compute_features(w, cfg) for w in waves])
    got = BatchFeatures(cfg)(torch.from_numpy(waves))
    assert got.shape == (3, 1) + ref.shape[1:]
    np.testing.assert_allclose(got[:, 0].numpy(), ref, atol=2e-3, rtol=1e-4)


def test_cmvn_is_applied_and_unsupported_settings_are_named():
    cfg = FeatureConfig(type="fbank", cmvn="global", norm_vars=True)
    scale, offset = np.full(40, 0.5, np.float32), np.full(40, -1.0, np.float32)
    w = torch.randn(1, 16000) * 0.1
    np.testing.assert_allclose(BatchFeatures(cfg, scale, offset)(w), BatchFeatures(cfg)(w) * 0.5 - 1.0, rtol=1e-5)
    assert supports(FeatureConfig(deltas=2)) == "deltas"
    assert supports(FeatureConfig(dither=1.0)) is not None
    with pytest.raises(ValueError, match="speaker"):
        BatchFeatures(FeatureConfig(cmvn="speaker"))
