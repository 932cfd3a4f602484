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
