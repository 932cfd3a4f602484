"""Generated background noises, deterministic from a seed.

Stand-ins for the recordings in Speech Commands' `_background_noise_/` folder: coloured noises
(white, pink, brown), a running tap (band-limited noise with a slowly wandering centre and
gurgles), a machine hum (mains harmonics over a little broadband noise) and speech babble
(several eSpeak voices talking over each other).  Every generator takes a sample count and a
`numpy.random.Generator`, and returns float32 samples scaled to a fixed RMS, so that mixing at a
given SNR is one line (`mix_at_snr`).
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np

SAMPLE_RATE = 16000
NOISE_RMS = 0.05  # about -26 dBFS: loud enough to hear, far from clipping


def _normalise(x: np.ndarray, rms: float = NOISE_RMS) -> np.ndarray:
    x = x - x.mean()
    power = float(np.sqrt(np.mean(x * x))) if len(x) else 0.0
    if power < 1e-12:
        return np.zeros(len(x), dtype=np.float32)
    return (x * (rms / power)).astype(np.float32)


def _shaped(num_samples: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples)
    freqs[0] = freqs[1] if num_samples > 1 else 1.0  # keep DC finite; _normalise removes it
    spectrum /= freqs ** (exponent / 2.0)
    return np.fft.irfft(spectrum, n=num_samples)


def white_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    return _normalise(rng.standard_normal(num_samples))


def pink_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    return _normalise(_shaped(num_samples, rng, 1.0))


def brown_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    return _normalise(_shaped(num_samples, rng, 2.0))


def _smooth_random_curve(num_samples: int, rng: np.random.Generator, points_per_second: float,
                         low: float, high: float) -> np.ndarray:
    """A slowly varying curve between low and high (linear interpolation of random knots)."""
    knots = max(2, int(num_samples / SAMPLE_RATE * points_per_second) + 2)
    values = rng.uniform(low, high, knots)
    return np.interp(np.arange(num_samples), np.linspace(0, num_samples - 1, knots), values)


def running_tap(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Water from a tap: noise in a 500-4000 Hz band whose centre wanders, plus short gurgles."""
    from scipy.signal import butter, sosfilt

    base = rng.standard_normal(num_samples)
    # Two bands mixed with a wandering weight give a slowly moving spectral centre.
    low_band = sosfilt(butter(4, [500, 1800], "bandpass", fs=SAMPLE_RATE, output="sos"), base)
    high_band = sosfilt(butter(4, [1500, 4000], "bandpass", fs=SAMPLE_RATE, output="sos"), base)
    weight = _smooth_random_curve(num_samples, rng, 2.0, 0.2, 0.8)
    x = weight * low_band + (1 - weight) * high_band
    x *= _smooth_random_curve(num_samples, rng, 6.0, 0.6, 1.0)
    # Gurgles: decaying tones at random times, the bubbly part of running water.
    t = np.arange(int(0.05 * SAMPLE_RATE)) / SAMPLE_RATE
    for _ in range(int(num_samples / SAMPLE_RATE * 8)):
        start = int(rng.integers(0, max(1, num_samples - len(t))))
        freq = rng.uniform(300, 1200)
        blip = np.sin(2 * np.pi * freq * t * (1 + 2 * t)) * np.exp(-t * rng.uniform(40, 120))
        seg = x[start:start + len(t)]
        seg += blip[:len(seg)] * rng.uniform(0.5, 2.0) * np.std(x)
    return _normalise(x)


def machine_hum(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum and its harmonics (50 or 60 Hz, drifting slightly) over pink noise, like a motor."""
    mains = rng.choice([50.0, 60.0])
    t = np.arange(num_samples) / SAMPLE_RATE
    drift = _smooth_random_curve(num_samples, rng, 0.5, -0.5, 0.5)
    phase = 2 * np.pi * np.cumsum(mains + drift) / SAMPLE_RATE
    x = np.zeros(num_samples)
    for harmonic in range(1, 9):
        x += rng.uniform(0.2, 1.0) / harmonic * np.sin(harmonic * phase + rng.uniform(0, 2 * np.pi))
    # Slow throb, as of a machine under varying load.
    x *= 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.2, 1.5) * t)
    return _normalise(_normalise(x) + 0.3 * _normalise(_shaped(num_samples, rng, 1.0)))


_BABBLE_WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from "
    "or one had by word but not what all were we when your can said there use an each which she "
    "do how their if will up other about out many then them these so some her would make like "
    "him into time has look two more write go see number no way could people my than first water "
    "been call who oil its now find long down day did get come made may part over new sound take"
).split()
_BABBLE_VOICES = ("en", "en-us", "en-gb-x-rp", "en-029", "en-gb-scotland", "de", "fr", "es")
_BABBLE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")


def babble(num_samples: int, rng: np.random.Generator, talkers: int = 5) -> np.ndarray:
    """Several talkers speaking random words at once (eSpeak voices), the cafeteria sound."""
    from . import espeak

    x = np.zeros(num_samples)
    for _ in range(talkers):
        voice = f"{rng.choice(_BABBLE_VOICES)}+{rng.choice(_BABBLE_VARIANTS)}"
        stream = np.zeros(num_samples)
        pos = int(rng.integers(0, SAMPLE_RATE // 2))
        while pos < num_samples:
            words = " ".join(rng.choice(_BABBLE_WORDS, size=int(rng.integers(4, 10))))
            speech = espeak.synthesize(words, voice, rate=int(rng.integers(140, 220)),
                                       pitch=int(rng.integers(20, 80)), seed=int(rng.integers(1 << 30)))
            seg = speech[: num_samples - pos]
            stream[pos:pos + len(seg)] += seg
            pos += len(speech) + int(rng.integers(0, SAMPLE_RATE // 4))
        x += _normalise(stream) * rng.uniform(0.5, 1.0)
    return _normalise(x)


# Kind name -> generator; the names are also the file stems in _background_noise_/.
NOISE_KINDS: Dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "white_noise": white_noise,
    "pink_noise": pink_noise,
    "brown_noise": brown_noise,
    "running_tap": running_tap,
    "machine_hum": machine_hum,
    "babble": babble,
}


def make_noise(kind: str, num_samples: int, seed) -> np.ndarray:
    """`num_samples` of noise `kind` (a key of NOISE_KINDS); `seed`: int or sequence of ints."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind '{kind}' (fix: use one of {', '.join(NOISE_KINDS)})")
    if num_samples <= 0:
        return np.zeros(0, dtype=np.float32)
    return NOISE_KINDS[kind](num_samples, np.random.default_rng(seed))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """speech + noise scaled so that the speech-to-noise power ratio is `snr_db` (same lengths).

    Speech power is measured over the samples that carry speech (above 1% of the peak), so the
    silence a keyword clip is padded with does not make the noise quieter than asked.
    """
    if len(noise) != len(speech):
        raise ValueError(f"speech has {len(speech)} samples but noise has {len(noise)}")
    active = speech[np.abs(speech) > 0.01 * (np.abs(speech).max() + 1e-12)]
    speech_power = float(np.mean(active ** 2)) if len(active) else 0.0
    noise_power = float(np.mean(noise ** 2))
    if speech_power == 0.0 or noise_power == 0.0:
        return (speech + 0 * noise).astype(np.float32)
    scale = np.sqrt(speech_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (speech + scale * noise).astype(np.float32)
