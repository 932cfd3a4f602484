"""Kaldi fbank / MFCC for a batch of equal-length waves in torch, on whatever device they are on.

The KWS training items are augmented waves (noise and a time shift drawn per epoch, the Honk
recipe), so their features cannot be precomputed. Featurising them one by one in the data loader
(kaldi-native-fbank, ~2 ms per 1 s clip here) cost 4-5x TC-ResNet14's own step per example: the
step waited on data for ~80% of its time, and on 2 cores more loader workers cannot close that gap.
`BatchFeatures` computes the same features for the whole batch inside the step (one batched FFT
and two matrix products; on a GPU almost free), so the loader only reads and augments waves.

It follows kaldi-native-fbank's computation (Kaldi's `compute-fbank-feats` / `compute-mfcc-feats`):
frames of `frame_length` every `frame_shift` samples (snip_edges), DC offset removed, pre-emphasis
0.97, Povey window, zero-padded to a power of two, power spectrum, Kaldi's triangular mel banks
(bins up to Nyquist, exclusive), log floored at float epsilon; MFCC: Kaldi's DCT matrix and cepstral
lifter, c0 kept (use_energy false). Waves are scaled to 16-bit integer range first, as Kaldi reads
PCM. `tests/data/test_batch_features.py` checks it against kaldi-native-fbank.
Settings it does not reproduce (dither, snip_edges false, use_energy, deltas, speaker CMVN) are
refused by `supports`.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch

from nasr.data.features import INT16_SCALE, FeatureConfig

PREEMPH = 0.97


def supports(cfg: FeatureConfig) -> Optional[str]:
    """None if BatchFeatures computes `cfg`'s features, else why not."""
    if cfg.dither:
        return "dither is random per sample"
    if not cfg.snip_edges:
        return "snip_edges false"
    if cfg.use_energy:
        return "use_energy"
    if cfg.deltas:
        return "deltas"
    if cfg.cmvn == "speaker":
        return "per-speaker CMVN"
    return None


def _mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


class BatchFeatures(torch.nn.Module):
    """(B, N) float waves in [-1, 1] -> (B, 1, T, D) features (CMVN applied when given)."""

    def __init__(self, cfg: FeatureConfig, cmvn_scale: Optional[np.ndarray] = None,
                 cmvn_offset: Optional[np.ndarray] = None):
        super().__init__()
        why = supports(cfg)
        if why:
            raise ValueError(f"batched features cannot reproduce this feature config: {why}")
        self.cfg = cfg
        sr = cfg.sample_rate
        self.frame_length = int(sr * cfg.frame_length_ms / 1000.0)
        self.frame_shift = int(sr * cfg.frame_shift_ms / 1000.0)
        self.n_fft = 1 << (self.frame_length - 1).bit_length()
        i = np.arange(self.frame_length)
        window = (0.5 - 0.5 * np.cos(2 * math.pi * i / (self.frame_length - 1))) ** 0.85
        nb = cfg.num_mel_bins
        high = cfg.high_freq if cfg.high_freq > 0 else sr / 2 + cfg.high_freq
        mel_low, mel_high = _mel(cfg.low_freq), _mel(high)
        delta = (mel_high - mel_low) / (nb + 1)
        mel = _mel(np.arange(self.n_fft // 2) * sr / self.n_fft)
        banks = np.zeros((self.n_fft // 2 + 1, nb))
        for b in range(nb):
            left, centre, right = mel_low + b * delta, mel_low + (b + 1) * delta, mel_low + (b + 2) * delta
            up, down = (mel - left) / (centre - left), (right - mel) / (right - centre)
            banks[:-1, b] = np.where((mel > left) & (mel < right), np.where(mel <= centre, up, down), 0.0)
        self.register_buffer("window", torch.tensor(window, dtype=torch.float32), persistent=False)
        self.register_buffer("banks", torch.tensor(banks, dtype=torch.float32), persistent=False)
        if cfg.type == "mfcc":
            k, n = cfg.num_ceps, nb
            dct = np.sqrt(2.0 / n) * np.cos(math.pi / n * (np.arange(n)[None, :] + 0.5) * np.arange(k)[:, None])
            dct[0] = np.sqrt(1.0 / n)
            if cfg.cepstral_lifter:
                q = cfg.cepstral_lifter
                dct *= (1.0 + 0.5 * q * np.sin(math.pi * np.arange(k) / q))[:, None]
            self.register_buffer("dct", torch.tensor(dct.T, dtype=torch.float32), persistent=False)
        else:
            self.dct = None
        self.cmvn = cmvn_scale is not None or cmvn_offset is not None
        dim = cfg.base_dim
        scale = np.ones(dim) if cmvn_scale is None else np.asarray(cmvn_scale)
        offset = np.zeros(dim) if cmvn_offset is None else np.asarray(cmvn_offset)
        self.register_buffer("cmvn_scale", torch.tensor(scale, dtype=torch.float32), persistent=False)
        self.register_buffer("cmvn_offset", torch.tensor(offset, dtype=torch.float32), persistent=False)

    @torch.no_grad()
    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        x = waves.float() * INT16_SCALE
        if self.cfg.center:
            pad = self.frame_length // 2
            x = torch.nn.functional.pad(x[:, None], (pad, pad), mode="reflect")[:, 0]
        frames = x.unfold(1, self.frame_length, self.frame_shift)  # (B, T, L), a view
        frames = frames - frames.mean(-1, keepdim=True)
        frames = torch.cat([frames[..., :1] * (1.0 - PREEMPH), frames[..., 1:] - PREEMPH * frames[..., :-1]], -1)
        spec = torch.fft.rfft(frames * self.window, n=self.n_fft)
        power = spec.real.square() + spec.imag.square()
        feats = torch.log(torch.clamp(power @ self.banks, min=float(np.finfo(np.float32).eps)))
        if self.dct is not None:
            feats = feats @ self.dct
        if self.cmvn:
            feats = feats * self.cmvn_scale + self.cmvn_offset
        return feats[:, None]
