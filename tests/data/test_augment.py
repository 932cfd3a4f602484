import numpy as np
import pytest

from nasr.data.audio import write_wav
from nasr.data.augment import HonkAugment, load_noise_scp
from nasr.utils.io import FormatError

SR = 16000


def test_shift_stays_within_100_ms_and_zero_fills():
    aug = HonkAugment([], p_noise=0.0, shift_ms=100)
    wave = np.ones(SR, dtype=np.float32)
    rng = np.random.default_rng(0)
    zeros = []
    for _ in range(2000):
        out = aug(wave, rng)
        assert out.shape == wave.shape and out.dtype == np.float32
        n_zero = int((out == 0).sum())
        # a shift of s samples leaves exactly |s| zeros at one end and the rest untouched
        assert n_zero <= 1600
        assert np.all(out[n_zero:] == 1) or np.all(out[:SR - n_zero] == 1)
        zeros.append(n_zero)
    # shifts spread over the whole range U[-1600, 1600] samples
    assert max(zeros) > 1500 and min(zeros) < 100
    assert len(set(zeros)) > 1000


def test_shift_direction_both_ways():
    aug = HonkAugment([], p_noise=0.0, shift_ms=100)
    wave = np.zeros(SR, dtype=np.float32)
    wave[SR // 2] = 0.5
    rng = np.random.default_rng(1)
    positions = [int(np.argmax(aug(wave, rng))) - SR // 2 for _ in range(3000)]
    assert min(positions) >= -1600 and max(positions) <= 1600
    assert min(positions) < -1400 and max(positions) > 1400
    assert abs(np.mean(positions)) < 100  # centred


def test_noise_added_with_probability_0_8_and_volume_at_most_0_1():
    noise = np.ones(3 * SR, dtype=np.float32)
    aug = HonkAugment([noise], p_noise=0.8, noise_volume=0.1, shift_ms=0)
    silence = np.zeros(SR, dtype=np.float32)
    rng = np.random.default_rng(2)
    outs = [aug(silence, rng) for _ in range(4000)]
    noisy = np.array([np.any(o != 0) for o in outs])
    assert abs(noisy.mean() - 0.8) < 0.03
    levels = np.array([o.max() for o in outs if np.any(o != 0)])
    assert levels.max() <= 0.1 + 1e-6
    assert 0.04 < levels.mean() < 0.06  # U[0, 0.1]


def test_noise_crop_is_a_slice_of_one_recording():
    ramp = np.arange(5 * SR, dtype=np.float32)  # integers: exact in float32
    aug = HonkAugment([ramp], p_noise=1.0)
    rng = np.random.default_rng(3)
    crop = aug.noise_crop(SR, rng)
    assert len(crop) == SR
    assert np.all(np.diff(crop) == 1)
    # a recording shorter than the clip wraps round instead of failing
    short = HonkAugment([np.ones(100, dtype=np.float32)])
    assert len(short.noise_crop(SR, rng)) == SR


def test_same_rng_state_gives_same_output():
    rng0 = np.random.default_rng(4)
    noises = [rng0.standard_normal(2 * SR).astype(np.float32) * 0.3 for _ in range(2)]
    aug = HonkAugment(noises)
    wave = rng0.standard_normal(SR).astype(np.float32) * 0.1
    a = aug(wave, np.random.default_rng([7, 1, 5]))
    b = aug(wave, np.random.default_rng([7, 1, 5]))
    c = aug(wave, np.random.default_rng([7, 2, 5]))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    before = wave.copy()
    aug(wave, np.random.default_rng(0))
    assert np.array_equal(wave, before)


def test_output_is_clipped():
    aug = HonkAugment([np.ones(SR, dtype=np.float32)], p_noise=1.0, noise_volume=0.1, shift_ms=0)
    out = aug(np.full(SR, 0.99, dtype=np.float32), np.random.default_rng(0))
    assert out.max() <= 1.0


def test_from_scp_reads_noise_recordings(tmp_path):
    paths = []
    for i, secs in enumerate([2, 3]):
        p = tmp_path / f"n{i}.wav"
        write_wav(p, np.full(secs * SR, 0.25, dtype=np.float32), SR)
        paths.append(p)
    scp = tmp_path / "noise.scp"
    scp.write_text("".join(f"noise_{i} {p}\n" for i, p in enumerate(paths)))
    waves = load_noise_scp(scp)
    assert [len(w) for w in waves] == [2 * SR, 3 * SR]
    aug = HonkAugment.from_scp(scp, p_noise=1.0, shift_ms=0)
    out = aug(np.zeros(SR, dtype=np.float32), np.random.default_rng(0))
    assert np.allclose(out, out[0]) and 0 <= out[0] <= 0.025 + 1e-4

    empty = tmp_path / "empty.scp"
    empty.write_text("")
    with pytest.raises(FormatError, match="empty.scp"):
        HonkAugment.from_scp(empty)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="p_noise"):
        HonkAugment([], p_noise=1.5)
    with pytest.raises(ValueError, match="empty"):
        HonkAugment([np.zeros(0, dtype=np.float32)])
