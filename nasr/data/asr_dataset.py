"""A torch Dataset of (features, unit ids) over a featurised ASR data dir, its collate and a
length-bucketed batch sampler.

* Features come from the data dir's feats.scp through FeatureReader: (C, T, D) float32, e.g.
  static/Δ/ΔΔ log-mel as 3 channels for the `asr_fbank` preset, CMVN applied.
* Unit ids come from the transcript (`text`) converted once, at construction, by a lang dir's
  Tokenizer (nasr.asr.units): per item only one ark read and one tensor wrap remain, so a
  DataLoader keeps up with training (bench/ measures the wait).
* Utterances over `max_frames` (the paper: 1024) are left out, and so are those too short for
  CTC after the network's time reduction: T // subsampling must be at least the label length plus
  the number of adjacent repeats (each needs a blank between).  Both are logged with counts.
* `collate` pads T up to a multiple of `pad_multiple` (4: two reduction cells each halve time).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from nasr.asr.units import OovError, Tokenizer, load_tokenizer
from nasr.data.features import FeatureReader
from nasr.utils.io import FormatError, iter_table

log = logging.getLogger(__name__)

DEFAULT_MAX_FRAMES = 1024


def ctc_min_frames(ids: Sequence[int]) -> int:
    """Output frames CTC needs for a label sequence: its length plus one blank per adjacent repeat."""
    repeats = sum(1 for a, b in zip(ids[:-1], ids[1:]) if a == b)
    return len(ids) + repeats


class AsrDataset(Dataset):
    """Items `(feats (C, T, D) float32 tensor, ids int64 tensor)`; with `return_utt`, also the
    utterance id.

    data_dir: featurised data dir (feats.scp, utt2num_frames, feats.yaml, text).
    lang: a lang dir path or a Tokenizer.  oov: override the lang dir's OOV policy
    (`skip-utt` drops those utterances, counted in the log).
    max_frames: longer utterances are dropped (None keeps all); subsampling: the network's
    time reduction, for the CTC length check (1 disables it).
    """

    def __init__(self, data_dir, lang: Union[str, Path, Tokenizer], max_frames: Optional[int] = DEFAULT_MAX_FRAMES,
                 subsampling: int = 4, oov: Optional[str] = None, return_utt: bool = False,
                 apply_cmvn: bool = True):
        self.data_dir = Path(data_dir)
        self.tokenizer = lang if isinstance(lang, Tokenizer) else load_tokenizer(lang, oov=oov)
        if oov is not None and isinstance(lang, Tokenizer):
            self.tokenizer.oov = oov
        self.reader = FeatureReader(self.data_dir, apply_cmvn=apply_cmvn)
        self.return_utt = return_utt
        self.max_frames = max_frames
        self.subsampling = subsampling
        text_path = self.data_dir / "text"
        if not text_path.is_file():
            raise FormatError(text_path, None, "missing: an ASR data dir needs transcripts",
                              "run the data preparation stage")
        utts: List[str] = []
        targets: List[np.ndarray] = []
        frames: List[int] = []
        dropped = {"no_features": 0, "oov": 0, "too_long": 0, "too_short_for_ctc": 0}
        seen = set()
        for lineno, utt, words in iter_table(text_path):
            if utt in seen:  # it would be trained on and scored twice
                raise FormatError(text_path, lineno, f"duplicate utterance '{utt}'",
                                  f"keep one line per utterance (utils/fix_data_dir.sh {self.data_dir})")
            seen.add(utt)
            if utt not in self.reader:
                dropped["no_features"] += 1
                continue
            try:
                ids = self.tokenizer.encode(words)
            except OovError as e:
                raise FormatError(text_path, lineno, str(e),
                                  "extend the lexicon, or use --oov map-to-unk / skip-utt") from None
            if ids is None:
                dropped["oov"] += 1
                continue
            n = self.reader.num_frames(utt)
            if max_frames is not None and n > max_frames:
                dropped["too_long"] += 1
                continue
            if subsampling > 1 and math.ceil(n / subsampling) < ctc_min_frames(ids):
                dropped["too_short_for_ctc"] += 1
                continue
            utts.append(utt)
            targets.append(np.asarray(ids, dtype=np.int64))
            frames.append(n)
        self.utts = utts
        self.targets = targets
        self.num_frames = frames
        self.dropped = dropped
        kept = len(utts)
        log.info("%s: %d utterances; dropped %d over %s frames, %d too short for CTC at 1/%d "
                 "frame rate, %d with OOVs (skip-utt), %d without features",
                 self.data_dir, kept, dropped["too_long"], max_frames, dropped["too_short_for_ctc"],
                 subsampling, dropped["oov"], dropped["no_features"])
        if self.tokenizer.stats.oov_words and self.tokenizer.oov != "skip-utt":
            log.warning("%s: %s (mapped to <unk>)", self.data_dir, self.tokenizer.stats.describe())
        if kept == 0:
            raise FormatError(text_path, None, "no utterance is left after filtering "
                              f"({', '.join(f'{k}: {v}' for k, v in dropped.items())})",
                              "raise max_frames, or check feats.scp and the lang dir")

    @property
    def num_units(self) -> int:
        return len(self.tokenizer.units)

    def __len__(self) -> int:
        return len(self.utts)

    def __getitem__(self, index: int):
        utt = self.utts[index]
        feats = torch.from_numpy(np.ascontiguousarray(self.reader[utt], dtype=np.float32))
        ids = torch.from_numpy(self.targets[index])
        return (feats, ids, utt) if self.return_utt else (feats, ids)


class AsrBatch(NamedTuple):
    x: torch.Tensor            # (N, C, T, D) float32, T a multiple of pad_multiple
    x_lens: torch.Tensor       # (N,) int64: frames before padding
    targets: torch.Tensor      # (sum target_lens,) int64: every label sequence, concatenated
    target_lens: torch.Tensor  # (N,) int64


def collate(items, pad_multiple: int = 4):
    """Pad a list of dataset items into an AsrBatch (plus the list of utterance ids when the items
    carry them: `(batch, utts)`).  Padding frames are zeros: the mean after CMVN."""
    # Built in numpy: torch's intra-op threads make a small fill/copy wait for busy cores (20 ms
    # instead of 0.02 ms per batch on a loaded 2-core machine when collating in the main process).
    feats = [np.asarray(it[0]) for it in items]
    lens = np.array([f.shape[-2] for f in feats], dtype=np.int64)
    t_pad = -(-int(lens.max()) // pad_multiple) * pad_multiple
    c, _, d = feats[0].shape
    x = np.zeros((len(items), c, t_pad, d), dtype=np.float32)
    for i, f in enumerate(feats):
        x[i, :, : f.shape[-2]] = f
    labels = [np.asarray(it[1], dtype=np.int64) for it in items]
    targets = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    target_lens = np.array([len(lab) for lab in labels], dtype=np.int64)
    batch = AsrBatch(torch.from_numpy(x), torch.from_numpy(lens), torch.from_numpy(targets),
                     torch.from_numpy(target_lens))
    if len(items[0]) > 2:
        return batch, [it[2] for it in items]
    return batch


class AsrCollate:
    """`collate` with a fixed pad multiple, picklable for DataLoader workers."""

    def __init__(self, pad_multiple: int = 4):
        self.pad_multiple = pad_multiple

    def __call__(self, items):
        return collate(items, self.pad_multiple)


class BucketBatchSampler(Sampler):
    """Batches of similar length: sort by length, cut into `num_buckets` equal-count buckets,
    shuffle within each bucket, batch, shuffle the batches.

    batch_size: utterances per batch, or max_frames: the padded frames per batch
    (batch size x longest item) stay within it (an item longer than that is a batch of its own).
    Every index appears exactly once per epoch.  With batch_size, buckets hold whole batches, so
    at most one batch is short (drop_last drops it).
    The order depends only on (seed, epoch): call `set_epoch` each epoch.  With num_replicas > 1
    (distributed / BMUF workers) replica `rank` takes every num_replicas-th batch, and all replicas
    get the same number of batches (the few left over are dropped that epoch).
    """

    def __init__(self, lengths: Sequence[int], batch_size: Optional[int] = None,
                 max_frames: Optional[int] = None, num_buckets: int = 10, shuffle: bool = True,
                 seed: int = 0, epoch: int = 0, drop_last: bool = False,
                 num_replicas: int = 1, rank: int = 0):
        if (batch_size is None) == (max_frames is None):
            raise ValueError("give exactly one of batch_size and max_frames")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be positive, got {num_buckets}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.batch_size = batch_size
        self.max_frames = max_frames
        self.num_buckets = num_buckets
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = epoch
        self.drop_last = drop_last
        self.num_replicas = num_replicas
        self.rank = rank
        self._cache = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches_of(self, indices: np.ndarray) -> List[List[int]]:
        batches: List[List[int]] = []
        if self.batch_size is not None:
            for start in range(0, len(indices), self.batch_size):
                batches.append(indices[start:start + self.batch_size].tolist())
            if self.drop_last and batches and len(batches[-1]) < self.batch_size:
                batches.pop()
            return batches
        current: List[int] = []
        longest = 0
        for i in indices.tolist():
            n = int(self.lengths[i])
            if current and max(longest, n) * (len(current) + 1) > self.max_frames:
                batches.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, n)
        if current:
            batches.append(current)
        return batches

    def _buckets(self, order: np.ndarray) -> List[np.ndarray]:
        n = len(order)
        if self.batch_size is not None:
            # Bucket sizes are whole batches, so only the last bucket can end in a short batch
            # (otherwise a small set cut into many buckets gives many half-empty batches).
            size = -(-n // self.num_buckets)
            size = max(self.batch_size, -(-size // self.batch_size) * self.batch_size)
            return [order[k:k + size] for k in range(0, n, size)]
        return np.array_split(order, min(self.num_buckets, max(n, 1)))

    def batches(self) -> List[List[int]]:
        """This replica's batches for the current epoch (cached per epoch)."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self.lengths)
        # Random tie-break among equal lengths, so equal-length items do not always share a batch.
        tie = rng.permutation(n) if self.shuffle else np.arange(n)
        order = np.lexsort((tie, self.lengths))
        batches: List[List[int]] = []
        for bucket in self._buckets(order):
            if self.shuffle:
                bucket = rng.permutation(bucket)
            batches.extend(self._batches_of(bucket))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        if self.num_replicas > 1:
            per_replica = len(batches) // self.num_replicas
            batches = batches[self.rank: per_replica * self.num_replicas: self.num_replicas]
        self._cache = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[List[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.batches())
