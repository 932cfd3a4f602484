"""On-the-fly waveform augmentation for keyword spotting, as in Honk (Tang & Lin, 2018) and the
DARTS-KWS paper: "we first add background noise to each sample with 80% probability at each epoch,
followed by a random t-second time shift where t is sampled from UNIFORM[-100, 100] [ms]".

Every random draw comes from the `rng` the caller passes, so a dataset that seeds it from
(seed, epoch, index) gets the same augmented clip back whatever the worker or the order.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np

from nasr.data.audio import read_audio
from nasr.utils.io import FormatError, read_table


class HonkAugment:
    """Mix a random crop of background noise (probability `p_noise`, amplitude U[0, noise_volume]),
    then shift in time by U[-shift_ms, shift_ms] with zero fill.  The output has the input's length."""

    def __init__(self, noise_waves: Sequence[np.ndarray], p_noise: float = 0.8,
                 noise_volume: float = 0.1, shift_ms: float = 100.0, sample_rate: int = 16000):
        if not 0.0 <= p_noise <= 1.0:
            raise ValueError(f"p_noise must be in [0, 1], got {p_noise}")
        if noise_volume < 0 or shift_ms < 0:
            raise ValueError(f"noise_volume and shift_ms must be >= 0, got {noise_volume}, {shift_ms}")
        self.noise_waves: List[np.ndarray] = [np.asarray(w, dtype=np.float32).reshape(-1)
                                              for w in noise_waves]
        if any(len(w) == 0 for w in self.noise_waves):
            raise ValueError("a background noise wave is empty")
        self.p_noise = p_noise
        self.noise_volume = noise_volume
        self.max_shift = int(round(shift_ms * sample_rate / 1000))
        self.sample_rate = sample_rate

    @classmethod
    def from_scp(cls, noise_scp, sample_rate: int = 16000, **kwargs) -> "HonkAugment":
        """Load the noise recordings a data dir's `noise.scp` lists (`rec-id wav-path-or-pipe`)."""
        waves = load_noise_scp(noise_scp, sample_rate)
        if not waves:
            raise FormatError(noise_scp, None, "lists no noise recordings",
                              "rerun data preparation with the corpus's background noise")
        return cls(waves, sample_rate=sample_rate, **kwargs)

    def noise_crop(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` consecutive samples of a random noise recording from a random offset (wrapping round
        a recording shorter than `n`)."""
        noise = self.noise_waves[int(rng.integers(len(self.noise_waves)))]
        if len(noise) < n:
            noise = np.resize(noise, n)  # repeats the recording
        start = int(rng.integers(0, len(noise) - n + 1))
        return noise[start:start + n]

    def shift(self, wave: np.ndarray, samples: int) -> np.ndarray:
        """Delay by `samples` (advance when negative), zero-filling what comes into the window."""
        out = np.zeros_like(wave)
        if samples >= 0:
            out[samples:] = wave[:len(wave) - samples]
        else:
            out[:samples] = wave[-samples:]
        return out

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        wave = np.asarray(wave, dtype=np.float32)
        # Draw everything up front so that the same rng state always consumes the same numbers,
        # whether or not noise ends up mixed in.
        add_noise = rng.random() < self.p_noise
        volume = rng.uniform(0.0, self.noise_volume)
        samples = int(rng.integers(-self.max_shift, self.max_shift + 1))
        if add_noise and self.noise_waves and len(wave):
            wave = np.clip(wave + volume * self.noise_crop(len(wave), rng), -1.0, 1.0)
        if samples and len(wave):
            wave = self.shift(wave, max(-len(wave), min(len(wave), samples)))
        return wave.astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return (f"HonkAugment(noises={len(self.noise_waves)}, p_noise={self.p_noise}, "
                f"noise_volume={self.noise_volume}, max_shift={self.max_shift} samples)")


def load_noise_scp(noise_scp: str | Path, sample_rate: int = 16000) -> List[np.ndarray]:
    """The waves a `noise.scp` lists, at `sample_rate`."""
    return [read_audio(spec, sample_rate=sample_rate) for spec in read_table(noise_scp).values()]
