"""Data set-up shared by the classification steps (DARTS search, retraining, baselines, scoring):
KWS data dirs with `labels.txt`, features recorded in `feats.yaml`, Honk augmentation for training."""
from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset

from nasr.data.augment import HonkAugment
from nasr.data.features import load_feature_config
from nasr.data.kws_dataset import KwsDataset, read_labels
from nasr.utils.io import FormatError, read_table

log = logging.getLogger("nasr")


def check_same_features(data_dirs: Sequence[str]):
    cfgs = [load_feature_config(d) for d in data_dirs]
    for d, c in zip(data_dirs[1:], cfgs[1:]):
        if c.to_dict() != cfgs[0].to_dict():
            raise ValueError(f"{d}/feats.yaml differs from {data_dirs[0]}/feats.yaml: every set of one "
                             f"experiment needs the same features (fix: rerun the feature stage)")
    return cfgs[0]


def load_labels(data_dirs: Sequence[str]) -> List[str]:
    labels = read_labels(Path(data_dirs[0]) / "labels.txt")
    for d in data_dirs[1:]:
        other = read_labels(Path(d) / "labels.txt")
        if other != labels:
            raise ValueError(f"{d}/labels.txt differs from {data_dirs[0]}/labels.txt "
                             f"(fix: prepare all sets in one data-prep run)")
    return labels


# Waves of an augmented training set up to this size are read into memory once (shared with the
# loader workers forked later): the synthetic corpus' 1,440 clips take 92 MB; Speech Commands'
# 65,000 take 4.2 GB and are read per item.
WAVE_CACHE_BYTES = 1 << 30


def make_dataset(data_dirs: Sequence[str], labels: List[str], augment_cfg: Optional[Dict] = None,
                 seed: int = 0, max_utts: Optional[int] = None, waves: bool = False):
    """One dataset over several data dirs; `augment_cfg` (Honk settings) turns on augmentation,
    with the noises listed in each dir's `noise.scp`. With `waves` (and augmentation) the items
    are augmented waves, for `batch_featurizer` to featurise in the training step."""
    feat_cfg = check_same_features(data_dirs)
    parts = []
    for d in data_dirs:
        augment = None
        if augment_cfg:
            augment = HonkAugment.from_scp(Path(d) / "noise.scp", sample_rate=feat_cfg.sample_rate,
                                           **augment_cfg)
        part = KwsDataset(d, labels, feat_cfg, augment=augment, seed=seed, waves=waves)
        if part.waves and part.cache_waves(WAVE_CACHE_BYTES // len(data_dirs)):
            log.info("%s: %d waves read into memory (%.0f MB)", d, len(part),
                     len(part) * part.clip_samples * 4 / 2 ** 20)
        parts.append(part)
    ds = parts[0] if len(parts) == 1 else ConcatDataset(parts)
    if max_utts is not None and len(ds) > max_utts:
        # A seeded subset, for small profiles: the search needs only a sample of the data.
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:max_utts]
        ds = Subset(ds, sorted(idx.tolist()))
    return ds, feat_cfg


def kws_parts(ds) -> List[KwsDataset]:
    if isinstance(ds, Subset):
        return kws_parts(ds.dataset)
    if isinstance(ds, ConcatDataset):
        return [p for d in ds.datasets for p in kws_parts(d)]
    return [ds]


def batch_featurizer(ds):
    """(a module turning a batch of `ds`'s waves (B, N) into features (B, 1, T, D), None), or
    (None, why the items stay features computed one by one)."""
    parts = kws_parts(ds)
    if not all(getattr(p, "waves", False) for p in parts):
        return None, "items are features"
    made = [p.batch_featurizer() for p in parts]
    for f, why in made:
        if f is None:
            return None, why
    first = made[0][0]
    for f, _ in made[1:]:
        if not (torch.equal(f.cmvn_scale, first.cmvn_scale) and torch.equal(f.cmvn_offset, first.cmvn_offset)):
            return None, "the data dirs have different CMVN stats"
    return first, None


def set_epoch(ds, epoch: int) -> None:
    """Move every KwsDataset under `ds` to `epoch` (fresh augmentation draws)."""
    if isinstance(ds, Subset):
        set_epoch(ds.dataset, epoch)
    elif isinstance(ds, ConcatDataset):
        for d in ds.datasets:
            set_epoch(d, epoch)
    elif hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)


class _EpochSampler(Sampler):
    """Indices as (epoch, index) pairs, shuffled from (seed, epoch) exactly as a DataLoader with
    ``shuffle=True, generator=torch.Generator().manual_seed(seed * 100003 + epoch)`` orders them."""

    def __init__(self, n: int, shuffle: bool, seed: int):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
            # Such a DataLoader first drew its workers' base seed from the generator: drawn and
            # dropped here, so runs (and resumes) see the order they saw before this class.
            torch.empty((), dtype=torch.int64).random_(generator=g)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = range(self.n)
        return iter([(self.epoch, i) for i in order])


class _AtEpoch(Dataset):
    """`ds` read at the epoch each index carries: a loader worker's copy of the dataset then draws
    that epoch's augmentation without being told between epochs."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        epoch, index = key
        set_epoch(self.ds, epoch)
        return self.ds[index]


class EpochLoader:
    """A DataLoader built once for many epochs: its worker processes persist (a loader made per
    epoch forks them again every epoch) and load the next epoch's first batches while the last
    one is evaluated (`prefetch`), and `at(epoch)` gives the epoch's batches: the shuffle order is reproducible from (seed,
    epoch) after a resume and the workers draw that epoch's augmentation. `pin_memory` (a
    DevicePlan's, on CUDA) gives page-locked batches that copy to the GPU without blocking."""

    def __init__(self, ds, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0,
                 drop_last: bool = False, pin_memory: bool = False, persistent: bool = True):
        self.ds = ds
        self.sampler = _EpochSampler(len(ds), shuffle, seed)
        # Its own generator for the workers' base seed: the global RNG (dropout, ...) is not drawn.
        self.loader = DataLoader(_AtEpoch(ds), batch_size=batch_size, sampler=self.sampler,
                                 generator=torch.Generator().manual_seed(seed),
                                 num_workers=num_workers, drop_last=drop_last,
                                 persistent_workers=persistent and num_workers > 0, pin_memory=pin_memory)
        self._next = None  # (epoch, batches) started by `prefetch`

    def at(self, epoch: int):
        """The batches of `epoch` (an iterable of len() batches, iterated once)."""
        if self._next is not None and self._next[0] == epoch:
            batches, self._next = self._next[1], None
            return batches
        self.sampler.epoch = int(epoch)
        set_epoch(self.ds, epoch)  # the main process's copy too (num_workers 0, callers)
        return _Batches(iter(self.loader), len(self.loader))

    def prefetch(self, epoch: int) -> None:
        """Start the workers on `epoch`'s first batches now (e.g. before an evaluation), so that
        the epoch does not open waiting for them; `at(epoch)` then continues from there."""
        if self.loader.num_workers > 0:
            self._next = None
            self._next = (epoch, self.at(epoch))


class _Batches:
    """One pass over a loader: an iterator with the loader's len() (progress bars need it)."""

    def __init__(self, it, n: int):
        self.it, self.n = it, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return self.it


def make_loader(ds, batch_size: int, shuffle: bool, seed: int, epoch: int = 0, num_workers: int = 0,
                drop_last: bool = False, pin_memory: bool = False) -> _Batches:
    """A loader for one pass at `epoch` (an evaluation); its workers end with it."""
    return EpochLoader(ds, batch_size, shuffle, seed, num_workers, drop_last, pin_memory,
                       persistent=False).at(epoch)


def full_batches(n: int, batch_size: int, source) -> int:
    """Steps per epoch when the short last batch is dropped.  Zero is an error, not an epoch that
    trains nothing: a paper config (batch 100) on a small data dir would otherwise "finish" with
    untrained weights and a table row."""
    if n < batch_size:
        raise FormatError(source, None, f"{n} examples make no full batch of batch_size {batch_size}, "
                          "so an epoch would train 0 steps",
                          f"use more data, or a smaller batch (e.g. --override batch_size={max(1, n // 2)})")
    return n // batch_size


def dataset_speakers(ds) -> List[str]:
    """The speaker (utt2spk) of every example of `ds`, in index order; "<dir>:<spk>" keeps the
    speakers of different dirs apart."""
    if isinstance(ds, Subset):
        inner = dataset_speakers(ds.dataset)
        return [inner[i] for i in ds.indices]
    if isinstance(ds, ConcatDataset):
        return [s for d in ds.datasets for s in dataset_speakers(d)]
    utt2spk = read_table(Path(ds.data_dir) / "utt2spk")
    missing = [u for u in ds.utts if u not in utt2spk]
    if missing:
        raise FormatError(Path(ds.data_dir) / "utt2spk", None, f"no speaker for utterance '{missing[0]}' "
                          f"({len(missing)} missing)", "run utils/fix_data_dir.sh on the data dir")
    return [f"{ds.data_dir}:{utt2spk[u]}" for u in ds.utts]


def speaker_holdout(ds, frac: float) -> Tuple[List[int], List[int]]:
    """(kept, held out) example indices of `ds`: a fraction `frac` of its speakers held out whole.

    The draw is fixed (not the training seed), so every model and every seed of one recipe trains
    on the same examples and is validated on the same held-out speakers."""
    speakers = dataset_speakers(ds)
    distinct = sorted(set(speakers))
    n_out = max(1, round(frac * len(distinct))) if frac > 0 else 0
    if n_out >= len(distinct):
        raise ValueError(f"holdout_speakers {frac} would hold out all {len(distinct)} speakers "
                         "(fix: a fraction such as 0.1)")
    out = set(random.Random("holdout_speakers").sample(distinct, n_out))
    kept = [i for i, s in enumerate(speakers) if s not in out]
    held = [i for i, s in enumerate(speakers) if s in out]
    return kept, held


def input_shape(ds) -> tuple:
    x, _ = ds[0]
    return tuple(x.shape)
