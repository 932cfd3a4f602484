"""Data for tower training: (T, F) frame sequences with a class index, for two tasks.

    lid  featurised data dirs with `utt2lang` (nasr.data.lid_dataset; at most max_frames frames,
         a random window in training)
    kws  featurised Speech Commands data dirs with `text` + `labels.txt` (nasr.data.kws_dataset,
         1 s clips; (1, T, F) images become (T, F) sequences)

Both give batches (x (B, T, F), lengths (B,), labels (B,), utts) through `make_loader`.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from nasr.data.lid_dataset import LidDataset, collate_lid, make_lang2id, read_utt2lang

TASKS = ("lid", "kws")


class _KwsSequences(Dataset):
    """A KwsDataset's (C, T, F) items as (T, C*F) sequences with their utterance ids."""

    def __init__(self, data_dir, labels: List[str], seed: int):
        from nasr.data.features import load_feature_config
        from nasr.data.kws_dataset import KwsDataset

        self.inner = KwsDataset(data_dir, labels, load_feature_config(data_dir), seed=seed)
        self.utts = self.inner.utts
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.inner)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int):
        x, label = self.inner[index]
        return x.permute(1, 0, 2).reshape(x.shape[1], -1), label, self.utts[index]


def class_names(task: str, train_dir) -> List[str]:
    if task == "lid":
        return list(make_lang2id(read_utt2lang(Path(train_dir) / "utt2lang").values()))
    if task == "kws":
        from nasr.data.kws_dataset import read_labels

        return read_labels(Path(train_dir) / "labels.txt")
    raise ValueError(f"unknown task '{task}' (fix: use one of {', '.join(TASKS)})")


def make_dataset(task: str, data_dir, names: Sequence[str], train: bool, seed: int = 0,
                 max_frames: Optional[int] = 400, max_utts: Optional[int] = None) -> Dataset:
    """`max_utts`: a seeded subset (small search profiles look at a sample of the data)."""
    if task == "lid":
        ds: Dataset = LidDataset(data_dir, {n: i for i, n in enumerate(names)}, max_frames=max_frames,
                                 train=train, seed=seed)
    elif task == "kws":
        ds = _KwsSequences(data_dir, list(names), seed)
    else:
        raise ValueError(f"unknown task '{task}' (fix: use one of {', '.join(TASKS)})")
    if max_utts and len(ds) > max_utts:
        idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:max_utts]
        ds = Subset(ds, sorted(idx.tolist()))
    return ds


def feat_dim(ds: Dataset) -> int:
    return int(ds[0][0].shape[-1])


def utt_ids(ds: Dataset) -> List[str]:
    if isinstance(ds, Subset):
        inner = utt_ids(ds.dataset)
        return [inner[i] for i in ds.indices]
    return list(ds.utts)


def make_loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int, epoch: int = 0) -> DataLoader:
    """One epoch's loader: order and training crops depend only on (seed, epoch)."""
    inner = ds.dataset if isinstance(ds, Subset) else ds
    inner.set_epoch(epoch)
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2 ** 63))
    return DataLoader(ds, batch_size=int(batch_size), shuffle=shuffle, generator=g, num_workers=0,
                      collate_fn=collate_lid)


def iterate_steps(ds: Dataset, batch_size: int, seed: int, start_epoch: int = 0):
    """Endless shuffled batches, epoch after epoch, for step-based training: yields (epoch, batch)."""
    epoch = start_epoch
    while True:
        for batch in make_loader(ds, batch_size, True, seed, epoch):
            yield epoch, batch
        epoch += 1


def load_sets(task: str, train_dir, valid_dir, seed: int, max_frames: int,
              max_train_utts: Optional[int] = None, max_valid_utts: Optional[int] = None
              ) -> Tuple[Dataset, Dataset, List[str]]:
    names = class_names(task, train_dir)
    train = make_dataset(task, train_dir, names, True, seed, max_frames, max_train_utts)
    valid = make_dataset(task, valid_dir, names, False, seed, max_frames, max_valid_utts)
    return train, valid, names
