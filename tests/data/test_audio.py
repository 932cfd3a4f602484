import numpy as np
import pytest

from nasr.data.audio import AudioError, read_audio, speed_pipe, write_wav


def test_missing_file_says_so(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        read_audio(str(tmp_path / "nope.wav"))


def test_pipe_segments_and_speed(tmp_path):
    wav = tmp_path / "a.wav"
    write_wav(wav, 0.3 * np.sin(np.arange(16000) / 7.0), 16000)
    assert read_audio(f"cat {wav} |").shape == (16000,)
    assert read_audio(str(wav), start=0.25, end=0.75).shape == (8000,)
    # speed 0.9 plays slower: 1/0.9 as long, as sox speed does
    assert abs(len(read_audio(speed_pipe(0.9, str(wav)))) - 16000 / 0.9) < 2
    assert abs(len(read_audio(speed_pipe(1.1, f"cat {wav} |"))) - 16000 / 1.1) < 2


def test_sample_rate_mismatch(tmp_path):
    wav = tmp_path / "a.wav"
    write_wav(wav, np.zeros(8000), 8000)
    with pytest.raises(AudioError, match="8000 Hz but 16000 Hz"):
        read_audio(str(wav), sample_rate=16000)
    assert read_audio(str(wav), sample_rate=16000, resample_to_rate=True).shape == (16000,)


def test_stereo_is_an_error_unless_a_channel_is_chosen(tmp_path):
    # Before: the first channel was taken without a word.
    wav = tmp_path / "st.wav"
    left, right = 0.1 * np.ones(800), -0.2 * np.ones(800)
    write_wav(wav, np.stack([left, right], axis=1), 16000)
    with pytest.raises(AudioError, match=r"st\.wav' has 2 channels but mono audio is expected.*--channel"):
        read_audio(str(wav))
    np.testing.assert_allclose(read_audio(str(wav), channel=1), right, atol=1e-4)
    with pytest.raises(AudioError, match="--channel 2 does not exist"):
        read_audio(str(wav), channel=2)


def test_a_wav_shorter_than_its_header_is_an_error_naming_the_file(tmp_path):
    # Before: libsndfile returned the samples that were there, as if the recording were shorter.
    import os

    wav = tmp_path / "cut.wav"
    write_wav(wav, 0.1 * np.ones(16000), 16000)
    os.truncate(wav, wav.stat().st_size - 1000)
    with pytest.raises(AudioError, match=r"cut\.wav' is cut short: its header promises 32000 bytes .* 31000"):
        read_audio(str(wav))
    with pytest.raises(AudioError, match="cut short"):
        read_audio(f"cat {wav} |")
