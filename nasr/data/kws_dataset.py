"""A torch Dataset over a keyword-spotting data dir (Kaldi layout, `text` holds the class label).

Each item is (features of shape (channels, frames, dims) float32, class index): an "image" of one
second of features, (1, 101, 40) MFCCs for the paper's preset (channels > 1 only for a config with
layout "channels").

* Without augmentation the features are the data dir's precomputed ones (`feats.scp`, through
  FeatureReader, CMVN as stored); a data dir without features yet is featurised on the fly from
  its wavs.
* With augmentation (training) every item is read from its wav (honouring `segments`), padded or
  trimmed to one second, augmented, featurised, and normalised with the dir's CMVN stats if it has
  any.  Clips shorter than a second are padded with the frames of digital silence, so precomputed
  and on-the-fly items have the same shape.  The random numbers come from a generator seeded
  with (seed, epoch, index): the same epoch gives the same clip whatever the worker or the order,
  and `set_epoch` moves all of them on.  Call `set_epoch` in every DataLoader worker's copy: with
  persistent workers, recreate the loader per epoch or keep them non-persistent.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from nasr.data.audio import read_audio
from nasr.data.features import FeatureConfig, FeatureReader, compute_features, to_layout
from nasr.utils.io import FormatError, iter_table, read_table

CLIP_SECONDS = 1.0

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def read_labels(path) -> List[str]:
    """A labels.txt: one class per line, in class-index order."""
    labels = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            label = line.strip()
            if not label or len(label.split()) != 1:
                raise FormatError(path, lineno, f"'{line.rstrip()}' is not one class label",
                                  "write one label per line, no blanks")
            if label in labels:
                raise FormatError(path, lineno, f"label '{label}' repeats", "list every class once")
            labels.append(label)
    if not labels:
        raise FormatError(path, None, "holds no labels", "rerun data preparation")
    return labels


class KwsDataset(Dataset):
    """Keyword-spotting examples of a data dir; see the module docstring.

    `labels`: the class list (index = position), or a path to a labels.txt; None reads
    `<data_dir>/labels.txt`.  `feature_cfg`: a FeatureConfig or a dict for FeatureConfig.from_dict.
    """

    def __init__(self, data_dir, labels: Union[Sequence[str], str, Path, None], feature_cfg,
                 augment: Optional[Augment] = None, seed: int = 0, waves: bool = False):
        self.data_dir = Path(data_dir)
        if labels is None:
            labels = self.data_dir / "labels.txt"
        self.labels: List[str] = read_labels(labels) if isinstance(labels, (str, Path)) else list(labels)
        self.label_index: Dict[str, int] = {lab: i for i, lab in enumerate(self.labels)}
        self.cfg = feature_cfg if isinstance(feature_cfg, FeatureConfig) else FeatureConfig.from_dict(feature_cfg)
        self.sample_rate = int(getattr(self.cfg, "sample_rate", 16000))
        self.clip_samples = int(round(CLIP_SECONDS * self.sample_rate))
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        # With augmentation: items are the augmented waves (N,), featurised a batch at a time in
        # the training step (batch_featurizer), not one by one here.
        self.waves = bool(waves) and augment is not None
        self._wave_cache: Optional[List[np.ndarray]] = None

        self.utts: List[str] = []
        self.targets: List[int] = []
        text_path = self.data_dir / "text"
        if not text_path.is_file():
            raise FileNotFoundError(f"'{text_path}' does not exist; is '{self.data_dir}' a data dir? "
                                    f"(run data preparation first)")
        seen = set()
        for lineno, utt, label in iter_table(text_path):
            if utt in seen:  # it would be trained on twice and scored twice ([ 1 / 9 ] for 8 utterances)
                raise FormatError(text_path, lineno, f"duplicate utterance '{utt}'",
                                  f"keep one line per utterance (utils/fix_data_dir.sh {self.data_dir})")
            seen.add(utt)
            if label not in self.label_index:
                raise FormatError(text_path, lineno, f"label '{label}' is not one of {self.labels}",
                                  "use the labels.txt the data was prepared with")
            self.utts.append(utt)
            self.targets.append(self.label_index[label])

        # The features one second of digital silence gives: their shape is the item shape, and their
        # frames pad a precomputed matrix of a short clip exactly as zero-padding its wave would
        # (away from the boundary frame).
        self._silence_feats = self._featurise(np.zeros(self.clip_samples, dtype=np.float32))
        self.num_frames, self.feat_dim = self._silence_feats.shape

        self._wav_scp: Optional[Dict[str, str]] = None
        self._segments: Optional[Dict[str, Tuple[str, float, float]]] = None
        self._recording_cache: Dict[str, np.ndarray] = {}
        self._shared_recordings: set = set()
        self._reader: Optional[FeatureReader] = None
        # feats.yaml is written last by the feature step, so it marks complete features.
        self.has_features = (self.data_dir / "feats.yaml").is_file()
        if self.has_features:
            stored = self.reader.config
            if stored.raw_dict() != self.cfg.raw_dict():
                diff = {k: (v, self.cfg.raw_dict()[k]) for k, v in stored.raw_dict().items()
                        if self.cfg.raw_dict()[k] != v}
                raise ValueError(f"the features in {self.data_dir} were computed with another config "
                                 f"(stored vs wanted: {diff}); recompute them or use their config")
        elif self.cfg.cmvn != "none":
            raise ValueError(f"feature config asks for cmvn={self.cfg.cmvn}, but {self.data_dir} has no "
                             f"features and so no CMVN stats; run python -m nasr.bin.compute_feats "
                             f"--data-dir {self.data_dir} first, or use cmvn none")

    # -- sizes and labels -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.utts)

    def class_counts(self) -> Dict[str, int]:
        """Examples per class, in class-index order (zero for a class the dir lacks)."""
        counts = Counter(self.targets)
        return {lab: counts[i] for i, lab in enumerate(self.labels)}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- reading ----------------------------------------------------------------------------
    @property
    def reader(self) -> FeatureReader:
        if self._reader is None:
            self._reader = FeatureReader(self.data_dir)
        return self._reader

    def _featurise(self, wave: np.ndarray) -> np.ndarray:
        feats = np.asarray(compute_features(wave.astype(np.float32, copy=False), self.cfg), dtype=np.float32)
        if feats.ndim != 2:
            raise ValueError(f"compute_features returned shape {feats.shape}, expected (frames, dims)")
        return feats

    def _load_tables(self) -> None:
        wav_path = self.data_dir / "wav.scp"
        self._wav_scp = read_table(wav_path)
        self._segments = {}
        seg_path = self.data_dir / "segments"
        if seg_path.is_file():
            uses = Counter()
            for lineno, utt, rest in iter_table(seg_path):
                parts = rest.split()
                if len(parts) != 3:
                    raise FormatError(seg_path, lineno, "expected `utt recording start end`",
                                      "fix the segments file")
                rec = parts[0]
                if rec not in self._wav_scp:
                    raise FormatError(seg_path, lineno, f"recording '{rec}' is not in {wav_path}",
                                      "add it to wav.scp or drop the segment")
                try:
                    self._segments[utt] = (rec, float(parts[1]), float(parts[2]))
                except ValueError:
                    raise FormatError(seg_path, lineno, "start/end are not numbers",
                                      "write times in seconds") from None
                uses[rec] += 1
            # Recordings cut into several utterances (the background noise) are kept in memory,
            # instead of reading a minute of audio for every one-second silence clip.
            self._shared_recordings = {rec for rec, n in uses.items() if n > 1}

    def _recording(self, rec: str) -> np.ndarray:
        if rec in self._recording_cache:
            return self._recording_cache[rec]
        x = read_audio(self._wav_scp[rec], sample_rate=self.sample_rate, channel=self.cfg.channel)
        if rec in self._shared_recordings:
            self._recording_cache[rec] = x
        return x

    def cache_waves(self, max_bytes: int) -> bool:
        """Read every utterance's one-second wave into memory now, if they fit in `max_bytes`
        (float32): loader workers forked later share them, and an epoch reads no audio."""
        need = len(self) * self.clip_samples * 4
        if need > max_bytes:
            return False
        self._wave_cache = [self.read_wave(i) for i in range(len(self))]
        return True

    def read_wave(self, index: int) -> np.ndarray:
        """The utterance's samples, zero-padded or trimmed (at the end) to one second."""
        if self._wave_cache is not None:
            return self._wave_cache[index]
        if self._wav_scp is None:
            self._load_tables()
        utt = self.utts[index]
        if utt in self._segments:
            rec, start, end = self._segments[utt]
            x = self._recording(rec)
            b = int(round(start * self.sample_rate))
            e = len(x) if end <= 0 else int(round(end * self.sample_rate))
            x = x[b:e]
        elif utt in self._wav_scp:
            x = read_audio(self._wav_scp[utt], sample_rate=self.sample_rate, channel=self.cfg.channel)
        else:
            raise KeyError(f"utterance '{utt}' of {self.data_dir / 'text'} is neither in "
                           f"{self.data_dir / 'wav.scp'} nor in its segments (run utils/fix_data_dir.sh)")
        if len(x) >= self.clip_samples:
            return np.ascontiguousarray(x[:self.clip_samples], dtype=np.float32)
        return np.pad(x, (0, self.clip_samples - len(x))).astype(np.float32, copy=False)

    def _fit_frames(self, feats: np.ndarray, utt: str) -> np.ndarray:
        if feats.ndim != 2 or feats.shape[1] != self.feat_dim:
            raise ValueError(f"features of '{utt}' in {self.data_dir} have shape {feats.shape}, but the "
                             f"feature config gives {self.feat_dim} dims; recompute the features")
        if len(feats) >= self.num_frames:
            return feats[:self.num_frames]
        return np.concatenate([feats, self._silence_feats[len(feats):]], axis=0)

    def features(self, index: int) -> np.ndarray:
        """(channels, frames, dims) float32 for one item, augmented when the dataset augments."""
        utt = self.utts[index]
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            feats = self._featurise(self.augment(self.read_wave(index), rng))
        elif self.has_features:
            feats = self.reader.raw(utt)
        else:
            feats = self._featurise(self.read_wave(index))
        # Pad before CMVN: the padding frames are raw features of silence.
        feats = self._fit_frames(feats, utt)
        if self.has_features:
            feats = self.reader.normalise(utt, feats)
        feats = to_layout(feats, self.cfg.num_channels)
        return feats if feats.ndim == 3 else feats[None]

    def batch_featurizer(self):
        """(BatchFeatures for this dir's features, None), or (None, why not)."""
        from nasr.data.batch_features import BatchFeatures, supports

        why = supports(self.cfg)
        if why:
            return None, why
        scale = offset = None
        if self.has_features and self.reader.apply_cmvn:
            scale, offset = self.reader._transforms[self.reader.cmvn_key(self.utts[0])]
            if not self.reader.config.norm_vars:
                scale = None
        return BatchFeatures(self.cfg, scale, offset), None

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        if self.waves:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            wave = np.require(self.augment(self.read_wave(index), rng), np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
            return torch.from_numpy(wave), self.targets[index]
        # stored features can come back as read-only views, which torch must not wrap
        feats = np.require(self.features(index), np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
        return torch.from_numpy(feats), self.targets[index]
