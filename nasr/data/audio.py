"""Reading audio the way Kaldi's wav.scp describes it.

A wav.scp value is either a path (`/data/a.wav`) or a shell pipe that writes a wav file to stdout
(`sox a.flac -t wav - |`).  Speed perturbation writes pipes of the form

    python -m nasr.data.audio --speed 0.9 <inner entry> |

which any shell can run; `read_audio` recognises that exact form and applies it in-process, so that
perturbed training sets cost no process start per utterance.
"""
from __future__ import annotations

import argparse
import io
import os
import shlex
import subprocess
import sys
from fractions import Fraction
from typing import Optional

import numpy as np
import soundfile as sf

SPEED_PREFIX = "python -m nasr.data.audio --speed"


class AudioError(RuntimeError):
    """Audio that cannot be read or does not match the configured sample rate."""


def is_pipe(spec: str) -> bool:
    return spec.rstrip().endswith("|")


def speed_pipe(factor: float, inner: str) -> str:
    """The wav.scp value that plays `inner` (a path or pipe) at `factor` times the speed."""
    inner_cmd = inner.rstrip()[:-1].strip() if is_pipe(inner) else shlex.quote(inner)
    if is_pipe(inner):
        inner_cmd = shlex.quote(inner_cmd + " |")
    return f"{SPEED_PREFIX} {factor:g} {inner_cmd} |"


def resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    if orig_sr == new_sr:
        return x
    from scipy.signal import resample_poly

    frac = Fraction(new_sr, orig_sr).limit_denominator(1000)
    return resample_poly(x, frac.numerator, frac.denominator).astype(np.float32)


def change_speed(x: np.ndarray, factor: float) -> np.ndarray:
    """Sox `speed` semantics: play `factor` times faster (tempo and pitch), same sample rate.
    Duration becomes len/factor, as Kaldi's perturb_data_dir_speed.sh assumes."""
    if factor == 1.0:
        return x
    from scipy.signal import resample_poly

    frac = Fraction(1.0 / factor).limit_denominator(100)  # 0.9 -> 10/9, 1.1 -> 10/11
    return resample_poly(x, frac.numerator, frac.denominator).astype(np.float32)


# A wav written to a pipe cannot seek back to fill in its data size: writers leave 0 or a huge value.
STREAMED_WAV_SIZES = (0, 0xFFFFFFFF, 0x7FFFF000)


def wav_shortfall(head: bytes, size: int) -> Optional[str]:
    """For a RIFF/WAVE file of `size` bytes whose first bytes are `head`: what is missing when its
    header promises more sample bytes than the file holds (a cut copy or download), else None.
    libsndfile reads such a file without a word, as if the recording were shorter."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, n = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if chunk == b"data":
            if n in STREAMED_WAV_SIZES:
                return None
            have = size - (pos + 8)
            return f"its header promises {n} bytes of samples but it holds {have}" if have < n else None
        pos += 8 + n + (n & 1)
    return None


def check_wav_file(path: str) -> None:
    """AudioError naming the file when it is a wav cut short (header check: reads 64 KiB at most)."""
    with open(path, "rb") as f:
        head = f.read(65536)
    problem = wav_shortfall(head, os.path.getsize(path))
    if problem:
        raise AudioError(f"audio file '{path}' is cut short: {problem} (fix: copy or download it again, "
                         f"or remove the recording and run utils/fix_data_dir.sh)")


def _decode(data: bytes, what: str):
    problem = wav_shortfall(data[:65536], len(data))
    if problem:
        raise AudioError(f"audio from {what} is cut short: {problem}")
    try:
        x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types; all mean "not audio"
        raise AudioError(f"cannot decode audio from {what}: {e}") from None
    return x, sr


def _read_raw(spec: str):
    spec = spec.strip()
    if spec.startswith(SPEED_PREFIX) and is_pipe(spec):
        args = shlex.split(spec[: -1])
        factor, inner = float(args[4]), args[5]  # python -m nasr.data.audio --speed F ENTRY
        x, sr = _read_raw(inner)
        return change_speed(x, factor), sr
    if is_pipe(spec):
        cmd = spec[:-1].strip()
        proc = subprocess.run(cmd, shell=True, capture_output=True)
        if proc.returncode != 0:
            raise AudioError(f"command '{cmd}' failed with exit code {proc.returncode}: "
                             f"{proc.stderr.decode(errors='replace').strip()[:300]}")
        return _decode(proc.stdout, f"command '{cmd}'")
    if not os.path.exists(spec):  # soundfile reports a missing file only as a generic "System error"
        raise AudioError(f"audio file '{spec}' does not exist")
    check_wav_file(spec)
    try:
        x, sr = sf.read(spec, dtype="float32", always_2d=True)
    except Exception as e:
        raise AudioError(f"cannot read audio file '{spec}': {e}") from None
    return x, sr


def pick_channel(x: np.ndarray, channel: int, spec: str) -> np.ndarray:
    """Kaldi's --channel: -1 expects mono (several channels are an error: which one is the
    speech is not ours to guess), 0, 1, ... take that channel."""
    n = x.shape[1]
    if channel < 0:
        if n != 1:
            raise AudioError(f"'{spec}' has {n} channels but mono audio is expected (fix: pass --channel C "
                             f"with C in 0..{n - 1} to take one channel, or downmix the recording)")
        return x[:, 0]
    if channel >= n:
        raise AudioError(f"'{spec}' has {n} channel(s), so --channel {channel} does not exist "
                         f"(fix: use a channel in 0..{n - 1})")
    return x[:, channel]


def read_audio(spec: str, sample_rate: Optional[int] = None, resample_to_rate: bool = False,
               start: Optional[float] = None, end: Optional[float] = None, channel: int = -1) -> np.ndarray:
    """Read one wav.scp value as float32 samples in [-1, 1].

    `sample_rate`: the configured rate; a different rate is an error unless `resample_to_rate`.
    `start`/`end`: seconds, as in a Kaldi `segments` file (end <= 0 or None means to the end).
    `channel`: -1 for mono audio (anything else is an error), or the channel to take.
    """
    x, sr = _read_raw(spec)
    x = pick_channel(x, channel, spec)
    if sample_rate is not None and sr != sample_rate:
        if not resample_to_rate:
            raise AudioError(f"'{spec}' has sample rate {sr} Hz but {sample_rate} Hz is configured "
                             f"(resample it, or pass --resample true)")
        x, sr = resample(x, sr, sample_rate), sample_rate
    if start is not None:
        b = int(round(start * sr))
        e = len(x) if end is None or end <= 0 else int(round(end * sr))
        if b >= len(x) or e <= b:
            raise AudioError(f"segment [{start}, {end}] s is outside '{spec}' ({len(x) / sr:.2f} s)")
        x = x[b:e]
    return np.ascontiguousarray(x, dtype=np.float32)


def write_wav(path_or_file, x: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM, the format of every corpus this project handles."""
    sf.write(path_or_file, np.clip(x, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Write a speed-perturbed copy of a wav.scp entry to stdout "
                                            "(used as a wav.scp pipe).")
    p.add_argument("--speed", type=float, required=True)
    p.add_argument("entry", help="a wav path or a wav.scp pipe ending in '|'")
    a = p.parse_args(argv)
    x, sr = _read_raw(a.entry)
    buf = io.BytesIO()
    write_wav(buf, change_speed(x, a.speed), sr)
    sys.stdout.buffer.write(buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
