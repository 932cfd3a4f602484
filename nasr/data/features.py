"""Acoustic features the Kaldi way: fbank / MFCC (kaldi-native-fbank), deltas, CMVN.

`compute_features` turns one waveform into a (T, D) float32 matrix; it is what
`python -m nasr.bin.compute_feats` writes to arks and what training calls on the fly after
augmentation, so it keeps the kaldi-native-fbank option objects between calls.

On disk (a "featurised" data dir):

    <data>/feats.scp          utt -> ark offset of a 2-D (T, D_total) float32 matrix (Kaldi's format)
    <data>/utt2num_frames     utt -> T
    <data>/cmvn.scp           "global" or speaker id -> 2 x (D_total+1) float64 Kaldi CMVN stats
    <data>/feats.yaml         the resolved FeatureConfig + feat_dim + num_channels, written LAST

`FeatureReader` reads such a dir back: CMVN applied, and shaped (T, D) for layout "concat" or
(C, T, D/C) for layout "channels" (static, delta, delta-delta as image channels).
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import numpy as np

FEATS_YAML = "feats.yaml"
FEATS_SCP = "feats.scp"
UTT2NUM_FRAMES = "utt2num_frames"
CMVN_SCP = "cmvn.scp"
GLOBAL_CMVN_KEY = "global"

FEATURE_TYPES = ("fbank", "mfcc")
LAYOUTS = ("concat", "channels")
CMVN_TYPES = ("none", "global", "speaker")
# Kaldi reads 16-bit PCM as raw integer values; its log-energy floors and dither assume that scale.
INT16_SCALE = 32768.0
# Kaldi's ApplyCmvn floors the variance here (and warns) rather than dividing by zero.
VARIANCE_FLOOR = 1.0e-20


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """Feature extraction settings. Frequencies in Hz, times in ms, Kaldi semantics throughout.

    high_freq: 0 means Nyquist, a negative value is an offset below Nyquist (Kaldi).
    snip_edges: Kaldi's option; true keeps only frames that fit in the signal (1 + (N - L) // S
      frames), false pads by reflection to round(N / S) frames.
    center: pad frame_length/2 reflected samples at both ends first (librosa / Honk `center=True`);
      with snip_edges true this gives 1 + N // S frames, the 101 frames per second of the KWS papers.
    deltas: 0, 1 or 2; the stored matrix is [static, delta, delta-delta] along the feature axis.
    layout: how readers shape it: "concat" (T, D) or "channels" (deltas+1, T, D/(deltas+1)).
    cmvn: "none", "global" (one set of stats, key "global") or "speaker" (keyed by utt2spk).
    resample: resample audio with another sample rate instead of failing.
    channel: Kaldi's --channel: -1 expects mono audio (a multi-channel recording is an error),
      0, 1, ... take that channel.
    """

    type: str = "fbank"
    sample_rate: int = 16000
    num_mel_bins: int = 40
    num_ceps: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    low_freq: float = 20.0
    high_freq: float = 0.0
    dither: float = 0.0
    snip_edges: bool = True
    center: bool = False
    use_energy: bool = False
    cepstral_lifter: float = 22.0
    deltas: int = 0
    delta_window: int = 2
    layout: str = "concat"
    cmvn: str = "global"
    norm_vars: bool = False
    resample: bool = False
    channel: int = -1

    # Fields that change what is written to the arks; cmvn/norm_vars/layout only change how the
    # stored matrices are normalised and shaped, so they never force a recompute of the arks.
    RAW_FIELDS = ("type", "sample_rate", "num_mel_bins", "num_ceps", "frame_length_ms",
                  "frame_shift_ms", "low_freq", "high_freq", "dither", "snip_edges", "center",
                  "use_energy", "cepstral_lifter", "deltas", "delta_window", "resample", "channel")

    def __post_init__(self):
        def bad(field, problem, fix):
            raise ValueError(f"feature config: {field}={getattr(self, field)!r} {problem} (fix: {fix})")

        if self.type not in FEATURE_TYPES:
            bad("type", "is not a known feature type", f"use one of {', '.join(FEATURE_TYPES)}")
        if self.layout not in LAYOUTS:
            bad("layout", "is not a known layout", f"use one of {', '.join(LAYOUTS)}")
        if self.cmvn not in CMVN_TYPES:
            bad("cmvn", "is not a known CMVN type", f"use one of {', '.join(CMVN_TYPES)}")
        if self.deltas not in (0, 1, 2):
            bad("deltas", "is not a delta order", "use 0, 1 or 2")
        for name in ("sample_rate", "num_mel_bins", "num_ceps", "delta_window"):
            if int(getattr(self, name)) < 1:
                bad(name, "must be a positive integer", "give a value >= 1")
        if self.frame_length_ms <= 0 or self.frame_shift_ms <= 0:
            bad("frame_length_ms" if self.frame_length_ms <= 0 else "frame_shift_ms",
                "must be positive", "give a length in milliseconds, e.g. 25 and 10")
        if self.channel < -1:
            bad("channel", "is not a channel", "use -1 (mono audio expected) or a channel index 0, 1, ...")
        if self.dither < 0:
            bad("dither", "must be >= 0", "use 0 for deterministic features")
        nyquist = self.sample_rate / 2.0
        high = self.high_freq if self.high_freq > 0 else nyquist + self.high_freq
        if not (0.0 <= self.low_freq < high <= nyquist):
            bad("high_freq", f"gives a band [{self.low_freq}, {high}] Hz outside (0, {nyquist}] Hz "
                f"at {self.sample_rate} Hz", "keep 0 <= low_freq < high_freq <= sample_rate/2 "
                "(high_freq 0 = Nyquist, negative = offset from Nyquist)")
        if self.type == "mfcc" and self.num_ceps > self.num_mel_bins:
            bad("num_ceps", f"exceeds num_mel_bins={self.num_mel_bins}",
                "use num_ceps <= num_mel_bins")

    # --- construction / serialisation -------------------------------------------------------

    @classmethod
    def field_names(cls):
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "FeatureConfig":
        """Build from a mapping; an optional `preset` key names the base the other keys override."""
        d = dict(d or {})
        preset = d.pop("preset", None)
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"feature config: unknown key(s) {', '.join(unknown)} "
                             f"(fix: use only {', '.join(cls.field_names())})")
        base = cls.preset(preset) if preset else cls()
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in d:
                kwargs[f.name] = _coerce(f.name, d[f.name], type(getattr(base, f.name)))
        return dataclasses.replace(base, **kwargs)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "FeatureConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def preset(cls, name: str, **overrides) -> "FeatureConfig":
        if name not in PRESETS:
            raise ValueError(f"unknown feature preset '{name}' (fix: use one of {', '.join(PRESETS)})")
        return dataclasses.replace(PRESETS[name], **overrides)

    # --- derived sizes ------------------------------------------------------------------------

    @property
    def base_dim(self) -> int:
        """Dimension of the static features (before deltas)."""
        if self.type == "mfcc":
            return self.num_ceps
        return self.num_mel_bins + (1 if self.use_energy else 0)

    @property
    def feat_dim(self) -> int:
        """Columns of the stored (T, D_total) matrix."""
        return self.base_dim * (self.deltas + 1)

    @property
    def num_channels(self) -> int:
        return self.deltas + 1 if self.layout == "channels" else 1

    def raw_dict(self) -> Dict[str, Any]:
        return {k: getattr(self, k) for k in self.RAW_FIELDS}


def _coerce(name: str, value, want: type):
    """YAML and the command line give strings / ints where floats or bools are meant."""
    if want is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError(f"feature config: {name}={value!r} is not a boolean (fix: use true or false)")
    if want in (int, float):
        try:
            out = want(value)
        except (TypeError, ValueError):
            raise ValueError(f"feature config: {name}={value!r} is not a number "
                             f"(fix: give a {want.__name__})") from None
        if want is int and out != float(value):
            raise ValueError(f"feature config: {name}={value!r} is not an integer (fix: give an integer)")
        return out
    return str(value)


PRESETS: Dict[str, FeatureConfig] = {
    # DARTS-KWS (Honk preprocessing): 40 MFCCs from 40 mel bins over 20 Hz - 4 kHz, 30 ms windows
    # every 10 ms, 101 frames per 1 s clip. Kaldi framing gives 98 (snip_edges) or 100 frames;
    # Honk's librosa framing (centre padding) gives 101, so `center` is on. The paper names no
    # normalisation, hence cmvn none.
    "kws_mfcc": FeatureConfig(type="mfcc", num_mel_bins=40, num_ceps=40, frame_length_ms=30.0,
                              frame_shift_ms=10.0, low_freq=20.0, high_freq=4000.0,
                              snip_edges=True, center=True, deltas=0, layout="concat", cmvn="none"),
    # P-DARTS ASR: 40-dim log-mel with first and second derivatives, fed as 3 input channels;
    # global mean/variance normalisation as end-to-end recipes (ESPnet) do.
    "asr_fbank": FeatureConfig(type="fbank", num_mel_bins=40, frame_length_ms=25.0,
                               frame_shift_ms=10.0, deltas=2, layout="channels", cmvn="global",
                               norm_vars=True),
    # Tower-search LID: 40 log-mel every 10 ms over 25 ms windows, no deltas, (T, 40) frames
    # (the dataset caps T at 400). Global mean/variance CMVN from the set's own stats: a
    # VoxLingua107 "speaker" is a YouTube video, whose channel is correlated with its language, so
    # per-speaker CMVN would hand the classifier (or hide from it) a channel cue the test set
    # lacks; and per-utterance CMVN over a few seconds also removes language-dependent spectral
    # balance. Global stats only put the inputs on a scale the network trains well on.
    "lid_fbank": FeatureConfig(type="fbank", num_mel_bins=40, frame_length_ms=25.0,
                               frame_shift_ms=10.0, deltas=0, layout="concat", cmvn="global",
                               norm_vars=True),
}


# --- extraction -------------------------------------------------------------------------------

class FeatureExtractor:
    """Holds the kaldi-native-fbank options for one config; call it on float waves in [-1, 1]."""

    def __init__(self, cfg: FeatureConfig):
        import kaldi_native_fbank as knf

        self.cfg = cfg
        frame_opts = knf.FrameExtractionOptions(
            samp_freq=float(cfg.sample_rate), frame_shift_ms=float(cfg.frame_shift_ms),
            frame_length_ms=float(cfg.frame_length_ms), dither=float(cfg.dither),
            snip_edges=bool(cfg.snip_edges))
        mel_opts = knf.MelBanksOptions(num_bins=int(cfg.num_mel_bins), low_freq=float(cfg.low_freq),
                                       high_freq=float(cfg.high_freq))
        if cfg.type == "fbank":
            self.opts = knf.FbankOptions(frame_opts=frame_opts, mel_opts=mel_opts,
                                         use_energy=bool(cfg.use_energy))
            self._computer = knf.OnlineFbank
        else:
            self.opts = knf.MfccOptions(frame_opts=frame_opts, mel_opts=mel_opts,
                                        num_ceps=int(cfg.num_ceps), use_energy=bool(cfg.use_energy),
                                        cepstral_lifter=float(cfg.cepstral_lifter))
            self._computer = knf.OnlineMfcc
        self.frame_length = int(round(cfg.sample_rate * cfg.frame_length_ms / 1000.0))
        self.dim = cfg.base_dim

    def static(self, wave: np.ndarray) -> np.ndarray:
        """(T, base_dim) float32 static features, no deltas."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"expected a 1-D waveform, got shape {wave.shape}")
        if self.cfg.center and wave.size > 0:
            pad = self.frame_length // 2
            wave = np.pad(wave, pad, mode="reflect" if wave.size > pad else "edge")
        computer = self._computer(self.opts)  # stateful: one per utterance, options reused
        computer.accept_waveform(float(self.cfg.sample_rate), wave * np.float32(INT16_SCALE))
        computer.input_finished()
        num_frames = computer.num_frames_ready
        out = np.empty((num_frames, self.dim), dtype=np.float32)
        # kaldi-native-fbank only hands out one frame at a time; the copy is ~1 us per frame,
        # a few percent of the FFT work, so this loop is not worth replacing.
        for t in range(num_frames):
            out[t] = computer.get_frame(t)
        return out

    def __call__(self, wave: np.ndarray) -> np.ndarray:
        feats = self.static(wave)
        if self.cfg.deltas:
            feats = add_deltas(feats, self.cfg.deltas, self.cfg.delta_window)
        return feats


@functools.lru_cache(maxsize=16)
def get_extractor(cfg: FeatureConfig) -> FeatureExtractor:
    return FeatureExtractor(cfg)


def compute_features(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """One waveform (float32 in [-1, 1], cfg.sample_rate) -> (T, cfg.feat_dim) float32."""
    return get_extractor(cfg)(wave)


@functools.lru_cache(maxsize=8)
def delta_scales(order: int, window: int):
    """Kaldi's DeltaFeatures windows: scales[0] = [1]; scales[i] = scales[i-1] convolved with
    j / (2 sum_{n=1..N} n^2), j = -N..N. Returns a tuple of arrays of length 1 + 2 i N."""
    first = np.arange(-window, window + 1, dtype=np.float64) / (2.0 * sum(n * n for n in range(1, window + 1)))
    scales = [np.ones(1)]
    for _ in range(order):
        scales.append(np.convolve(scales[-1], first))
    return tuple(scales)


def add_deltas(feats: np.ndarray, order: int = 2, window: int = 2) -> np.ndarray:
    """Kaldi `add-deltas`: (T, D) -> (T, D * (order + 1)) = [x, delta, delta-delta, ...].

    Each order is one filter over the original frames (not delta applied to clamped deltas), with
    frames beyond the ends replicated, exactly as Kaldi's DeltaFeatures::Process.
    """
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2:
        raise ValueError(f"add_deltas expects a (T, D) matrix, got shape {feats.shape}")
    if order < 0 or window < 1:
        raise ValueError(f"add_deltas: order={order} must be >= 0 and window={window} >= 1")
    num_frames, dim = feats.shape
    out = np.empty((num_frames, dim * (order + 1)), dtype=np.float32)
    out[:, :dim] = feats
    if order == 0 or num_frames == 0:
        return out
    max_offset = order * window
    padded = np.concatenate([np.repeat(feats[:1], max_offset, axis=0), feats,
                             np.repeat(feats[-1:], max_offset, axis=0)]).astype(np.float64)
    scales = delta_scales(order, window)
    for i in range(1, order + 1):
        half = i * window
        acc = np.zeros((num_frames, dim), dtype=np.float64)
        for j, scale in enumerate(scales[i]):
            if scale != 0.0:
                start = max_offset - half + j
                acc += scale * padded[start:start + num_frames]
        out[:, i * dim:(i + 1) * dim] = acc
    return out


def to_layout(feats: np.ndarray, num_channels: int) -> np.ndarray:
    """(T, C*d) stored matrix -> (C, T, d) for the channels layout; (T, D) unchanged when C = 1."""
    if num_channels == 1:
        return feats
    num_frames, dim = feats.shape
    if dim % num_channels:
        raise ValueError(f"feature dim {dim} is not divisible into {num_channels} channels")
    return np.ascontiguousarray(feats.reshape(num_frames, num_channels, dim // num_channels)
                                .transpose(1, 0, 2))


# --- CMVN (Kaldi stats format) ----------------------------------------------------------------

def accumulate_cmvn_stats(feats: np.ndarray, stats: Optional[np.ndarray] = None) -> np.ndarray:
    """Kaldi CMVN stats, 2 x (D+1) float64: row 0 = per-dim sums then the frame count,
    row 1 = per-dim sums of squares then 0. Adds into `stats` when given."""
    feats = np.asarray(feats)
    dim = feats.shape[1]
    if stats is None:
        stats = np.zeros((2, dim + 1), dtype=np.float64)
    elif stats.shape != (2, dim + 1):
        raise ValueError(f"CMVN stats shape {stats.shape} does not fit {dim}-dim features")
    f64 = feats.astype(np.float64, copy=False)
    stats[0, :dim] += f64.sum(axis=0)
    stats[0, dim] += feats.shape[0]
    stats[1, :dim] += np.einsum("td,td->d", f64, f64)
    return stats


def cmvn_transform(stats: np.ndarray, norm_vars: bool):
    """(scale, offset) float32 vectors with normalised = feats * scale + offset (Kaldi ApplyCmvn)."""
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim != 2 or stats.shape[0] not in (1, 2) or (norm_vars and stats.shape[0] != 2):
        raise ValueError(f"CMVN stats of shape {stats.shape} are not Kaldi stats "
                         f"({'2' if norm_vars else '1 or 2'} x (D+1))")
    dim = stats.shape[1] - 1
    count = stats[0, dim]
    if count < 1.0:
        raise ValueError(f"CMVN stats hold a count of {count} frames; cannot normalise")
    mean = stats[0, :dim] / count
    if not norm_vars:
        return np.ones(dim, np.float32), (-mean).astype(np.float32)
    var = np.maximum(stats[1, :dim] / count - mean * mean, VARIANCE_FLOOR)
    scale = 1.0 / np.sqrt(var)
    return scale.astype(np.float32), (-mean * scale).astype(np.float32)


def apply_cmvn(feats: np.ndarray, stats: np.ndarray, norm_vars: bool = False) -> np.ndarray:
    """Mean (and variance, if norm_vars) normalisation of (T, D) feats with Kaldi stats."""
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[1] != stats.shape[1] - 1:
        raise ValueError(f"CMVN stats for dim {stats.shape[1] - 1} do not fit features of shape "
                         f"{feats.shape}")
    scale, offset = cmvn_transform(stats, norm_vars)
    if norm_vars:
        return feats * scale + offset
    return feats + offset


# --- reading a featurised data dir ------------------------------------------------------------

def read_feats_yaml(data_dir) -> Dict[str, Any]:
    from nasr.utils.config import load_yaml
    from nasr.utils.io import FormatError

    path = Path(data_dir) / FEATS_YAML
    if not path.is_file():
        raise FormatError(path, None, "missing: the data dir has no (complete) features",
                          f"run python -m nasr.bin.compute_feats --data-dir {data_dir}")
    return load_yaml(path)


def ark_problem(scp_path) -> Optional[str]:
    """None when every ark an scp names exists and holds its last matrix whole; otherwise what is
    wrong, naming the ark and the scp line.  Arks are written front to back, so a missing or cut ark
    shows at its last entry: one matrix is read per ark, not the whole set."""
    import kaldiio

    from nasr.utils.io import iter_table

    last: Dict[str, tuple] = {}  # ark -> (offset, lineno, utt)
    for lineno, utt, value in iter_table(scp_path):
        ark, _, offset = value.rpartition(":")
        if not ark or not offset.isdigit():
            return f"{scp_path}:{lineno}: '{value}' is not `<ark path>:<byte offset>`"
        if int(offset) >= last.get(ark, (-1,))[0]:
            last[ark] = (int(offset), lineno, utt)
    for ark, (offset, lineno, utt) in last.items():
        if not Path(ark).is_file():
            return f"{scp_path}:{lineno}: ark {ark} (of '{utt}') does not exist"
        try:
            kaldiio.load_mat(f"{ark}:{offset}")
        except Exception as e:  # noqa: BLE001  (kaldiio reports a cut matrix as whatever numpy said)
            return (f"{scp_path}:{lineno}: ark {ark} is cut short or corrupt: the matrix of '{utt}' at byte "
                    f"{offset} cannot be read ({type(e).__name__}: {e}; the file has {Path(ark).stat().st_size} bytes)")
    return None


def load_feature_config(data_dir) -> FeatureConfig:
    """The FeatureConfig a featurised data dir was made with (from its feats.yaml)."""
    meta = read_feats_yaml(data_dir)
    return FeatureConfig.from_dict({k: v for k, v in meta.items() if k in FeatureConfig.field_names()})


class FeatureReader(Mapping):
    """utt -> features of a featurised data dir, CMVN-normalised and shaped by the stored layout.

    Shapes: (T, D) for layout "concat", (C, T, D/C) for "channels".
    """

    def __init__(self, data_dir, apply_cmvn: bool = True):
        import kaldiio

        from nasr.utils.io import FormatError, read_table

        self.data_dir = Path(data_dir)
        meta = read_feats_yaml(self.data_dir)
        self.config = FeatureConfig.from_dict(
            {k: v for k, v in meta.items() if k in FeatureConfig.field_names()})
        self.feat_dim = int(meta.get("feat_dim", self.config.feat_dim))
        self.num_channels = int(meta.get("num_channels", self.config.num_channels))
        for scp in (FEATS_SCP,) + ((CMVN_SCP,) if apply_cmvn and self.config.cmvn != "none" else ()):
            if not (self.data_dir / scp).is_file():
                continue  # reported below, or by read_table, with its own fix
            problem = ark_problem(self.data_dir / scp)
            if problem:  # before any training or scoring: kaldiio's own errors do not name the file
                raise FormatError(problem, None, "the features on disk are incomplete",
                                  f"rerun python -m nasr.bin.compute_feats --data-dir {self.data_dir} "
                                  f"(it recomputes missing or cut arks)")
        self._feats = kaldiio.load_scp(str(self.data_dir / FEATS_SCP))
        self._num_frames = {u: int(n) for u, n in read_table(self.data_dir / UTT2NUM_FRAMES).items()}
        self._transforms: Dict[str, tuple] = {}
        self._utt2key: Optional[Dict[str, str]] = None
        self.apply_cmvn = apply_cmvn and self.config.cmvn != "none"
        if self.apply_cmvn:
            cmvn_scp = self.data_dir / CMVN_SCP
            if not cmvn_scp.is_file():
                raise FormatError(cmvn_scp, None, f"missing but feats.yaml says cmvn={self.config.cmvn}",
                                  f"rerun python -m nasr.bin.compute_feats --data-dir {self.data_dir}")
            stats = {k: np.asarray(v) for k, v in kaldiio.load_scp(str(cmvn_scp)).items()}
            self._transforms = {k: cmvn_transform(s, self.config.norm_vars) for k, s in stats.items()}
            if self.config.cmvn == "speaker":
                utt2spk_path = self.data_dir / "utt2spk"
                self._utt2key = read_table(utt2spk_path)
                for utt in self._num_frames:
                    spk = self._utt2key.get(utt)
                    if spk is None or spk not in self._transforms:
                        raise FormatError(utt2spk_path, None,
                                          f"utterance '{utt}' has no speaker with CMVN stats",
                                          "rerun compute_feats after fixing utt2spk")
            elif GLOBAL_CMVN_KEY not in self._transforms:
                raise FormatError(cmvn_scp, None, f"no '{GLOBAL_CMVN_KEY}' entry",
                                  "rerun python -m nasr.bin.compute_feats")

    def cmvn_key(self, utt: str) -> str:
        return self._utt2key[utt] if self._utt2key is not None else GLOBAL_CMVN_KEY

    def normalise(self, utt: str, feats: np.ndarray) -> np.ndarray:
        """Apply this dir's CMVN for `utt` to (T, D) features (e.g. recomputed after augmentation)."""
        if not self.apply_cmvn:
            return feats
        scale, offset = self._transforms[self.cmvn_key(utt)]
        return feats * scale + offset if self.config.norm_vars else feats + offset

    def raw(self, utt: str) -> np.ndarray:
        """The stored (T, D_total) matrix, no CMVN."""
        return np.asarray(self._feats[utt], dtype=np.float32)

    def __getitem__(self, utt: str) -> np.ndarray:
        return to_layout(self.normalise(utt, self.raw(utt)), self.num_channels)

    def __iter__(self) -> Iterator[str]:
        return iter(self._num_frames)

    def __len__(self) -> int:
        return len(self._num_frames)

    def __contains__(self, utt) -> bool:
        return utt in self._num_frames

    def num_frames(self, utt: str) -> int:
        return self._num_frames[utt]
