"""Feature pipeline overhead: compute_feats end to end vs bare kaldi-native-fbank.

Usage:
  python bench/features.py [--seconds 600] [--file-seconds 3] [--preset asr_fbank] [--repeats 3]

e.g.:
  python bench/features.py --seconds 120

Writes `seconds` of synthetic speech-like audio (harmonic tones with a wandering pitch and a
syllable-rate envelope, plus noise) as 16-bit wavs in a temp dir, then times
  (a) bare: kaldi-native-fbank static features on the waveforms already in memory, and
  (b) pipeline: `python -m nasr.bin.compute_feats --nj 1` on that data dir (read wav, features,
      deltas, per-utterance CMVN stats, ark/scp writing, merge, cmvn.scp, feats.yaml).
Prints the real-time factor of each (processing time / audio time, best of --repeats) and the
ratio pipeline / bare, which should stay <= 1.5 (PASS/FAIL): the pipeline must not cost much
more than the feature computation it wraps.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

TARGET_RATIO = 1.5


def speechlike(seconds: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    pitch = 120 + 40 * np.sin(2 * np.pi * rng.uniform(0.2, 0.8) * t + rng.uniform(0, 6.28))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t), 0, None) ** 2
    x = voiced * envelope + 0.02 * rng.standard_normal(n)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def make_corpus(root: Path, total_seconds: float, file_seconds: float, sample_rate: int):
    from nasr.data.audio import write_wav

    rng = np.random.default_rng(0)
    data = root / "data"
    data.mkdir(parents=True)
    num_files = max(1, int(round(total_seconds / file_seconds)))
    waves, lines = [], []
    for i in range(num_files):
        x = speechlike(file_seconds, sample_rate, rng)
        path = root / "wav" / f"utt{i:05d}.wav"
        path.parent.mkdir(exist_ok=True)
        write_wav(path, x, sample_rate)
        waves.append(np.clip(x, -1, 1))
        lines.append(f"utt{i:05d} {path}\n")
    (data / "wav.scp").write_text("".join(lines))
    (data / "utt2spk").write_text("".join(f"utt{i:05d} spk{i % 10}\n" for i in range(num_files)))
    return data, waves


def time_bare(waves, cfg) -> float:
    """kaldi-native-fbank alone, the waveforms already in memory (static features only)."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = cfg.sample_rate
    opts.frame_opts.dither = 0.0
    opts.frame_opts.frame_length_ms = cfg.frame_length_ms
    opts.frame_opts.frame_shift_ms = cfg.frame_shift_ms
    opts.mel_opts.num_bins = cfg.num_mel_bins
    start = time.perf_counter()
    for x in waves:
        fb = knf.OnlineFbank(opts)
        fb.accept_waveform(cfg.sample_rate, x * 32768)
        fb.input_finished()
        np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)])
    return time.perf_counter() - start


def time_pipeline(data: Path, preset: str) -> float:
    from nasr.bin import compute_feats

    for name in ("feats.yaml", "feats.scp", "utt2num_frames", "cmvn.scp"):
        (data / name).unlink(missing_ok=True)
    shutil.rmtree(data / "data", ignore_errors=True)
    start = time.perf_counter()
    rc = compute_feats.main(["--data-dir", str(data), "--preset", preset, "--nj", "1", "--no-progress"])
    elapsed = time.perf_counter() - start
    if rc != 0:
        raise SystemExit(f"compute_feats failed with exit code {rc}")
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=600.0, help="total audio (default 200 x 3 s)")
    parser.add_argument("--file-seconds", type=float, default=3.0, help="length of each file")
    parser.add_argument("--preset", default="asr_fbank", help="FeatureConfig preset (fbank type)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the best is kept")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and say where")
    args = parser.parse_args(argv)

    from nasr.data.features import FeatureConfig

    cfg = FeatureConfig.preset(args.preset)
    if cfg.type != "fbank":
        parser.error(f"--preset {args.preset} is {cfg.type}; the bare baseline computes fbank")
    root = Path(tempfile.mkdtemp(prefix="nasr_bench_features_"))
    try:
        data, waves = make_corpus(root, args.seconds, args.file_seconds, cfg.sample_rate)
        audio_seconds = sum(len(x) for x in waves) / cfg.sample_rate
        bare, pipe = [], []
        for _ in range(args.repeats):  # interleaved, so that load from other processes hits both
            bare.append(time_bare(waves, cfg))
            pipe.append(time_pipeline(data, args.preset))
        b, p = min(bare), min(pipe)
        ratio = p / b
        print(f"audio: {len(waves)} files, {audio_seconds:.0f} s; preset {args.preset} "
              f"(fbank {cfg.num_mel_bins}, deltas {cfg.deltas}, cmvn {cfg.cmvn}); best of {args.repeats}")
        print(f"bare kaldi-native-fbank      : {b:7.3f} s  RTF {b / audio_seconds:.5f}")
        print(f"compute_feats pipeline, nj 1 : {p:7.3f} s  RTF {p / audio_seconds:.5f}")
        print(f"ratio pipeline / bare        : {ratio:.2f}  (target <= {TARGET_RATIO}) "
              f"{'PASS' if ratio <= TARGET_RATIO else 'FAIL'}")
        if args.keep:
            print(f"kept {root}")
        return 0 if ratio <= TARGET_RATIO else 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
