"""A torch Dataset over a featurised language-identification data dir (`utt2lang` holds the label).

Each item is (features (T, F) float32, language index, utterance id) with T <= max_frames: the
paper feeds at most 400 frames of 40 log-mel filterbanks (4 s).  Training items are a random
window of max_frames frames, drawn from a generator seeded with (seed, epoch, index), so an epoch
is the same whatever the worker count or the order, and `set_epoch` moves every window on;
evaluation items are the first max_frames frames, so scores are reproducible.  Shorter
utterances are kept whole; `collate_lid` zero-pads a batch and hands the true lengths on.

Features come from the dir's `feats.scp` through FeatureReader (its CMVN applied).  Languages map
to indices through one `lang2id` built from the training set (`make_lang2id`) and used for every
set, so that index k means the same language in training, search and evaluation.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nasr.data.datadir import c_order
from nasr.data.features import FeatureReader
from nasr.utils.io import FormatError, iter_table

UTT2LANG = "utt2lang"


def read_utt2lang(path) -> Dict[str, str]:
    """utt -> language code from a Kaldi `utt2lang` table (`<utt> <lang>` per line)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, None, "missing", "run the LID data preparation (local/lid/prepare.py)")
    out: Dict[str, str] = {}
    for lineno, utt, rest in iter_table(path):
        fields = rest.split()
        if len(fields) != 1:
            raise FormatError(path, lineno, f"expected '<utt> <lang>', got {(utt + ' ' + rest).strip()!r}",
                              "write one utterance id and one language code per line")
        if utt in out:
            raise FormatError(path, lineno, f"duplicate utterance '{utt}'",
                              f"keep one line per utterance (utils/fix_data_dir.sh {path.parent})")
        out[utt] = fields[0]
    return out


def make_lang2id(langs: Iterable[str]) -> Dict[str, int]:
    """Language code -> class index, in C (byte) order of the codes: the same set always gives the
    same indices, whatever order the utterances came in."""
    unique = sorted(set(langs), key=c_order)
    if not unique:
        raise ValueError("make_lang2id: no languages given (fix: pass the training set's utt2lang values)")
    return {lang: i for i, lang in enumerate(unique)}


class LidDataset(Dataset):
    """Utterances of a featurised data dir with their language indices; see the module docstring.

    data_dir: holds utt2lang and feats.scp/feats.yaml (python -m nasr.bin.compute_feats).
    lang2id: language code -> index (`make_lang2id` on the training set).
    max_frames: frames per item at most (None or 0: whole utterances).
    train: random crop (seeded per epoch) instead of the first max_frames frames.
    """

    def __init__(self, data_dir, lang2id: Dict[str, int], max_frames: Optional[int] = 400,
                 train: bool = False, seed: int = 0):
        self.data_dir = Path(data_dir)
        self.lang2id = dict(lang2id)
        self.id2lang = {i: lang for lang, i in self.lang2id.items()}
        if sorted(self.id2lang) != list(range(len(self.lang2id))):
            raise ValueError(f"lang2id {self.lang2id} does not map onto 0..{len(self.lang2id) - 1} "
                             "(fix: build it with make_lang2id)")
        self.max_frames = int(max_frames) if max_frames else None
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames={max_frames} must be positive (or None for whole utterances)")
        self.train = bool(train)
        self.seed = int(seed)
        self.epoch = 0

        utt2lang_path = self.data_dir / UTT2LANG
        utt2lang = read_utt2lang(utt2lang_path)
        if not utt2lang:
            raise FormatError(utt2lang_path, None, "is empty", "the data preparation produced no utterances")
        reader = FeatureReader(self.data_dir)
        if reader.num_channels != 1:
            raise ValueError(f"features in {self.data_dir} have layout 'channels' ({reader.num_channels} "
                             "channels); LID towers read (T, F) frames (fix: compute them with "
                             "--preset lid_fbank or layout concat)")
        self.feat_dim = reader.feat_dim
        self.utts: List[str] = sorted(utt2lang, key=c_order)
        self.targets: List[int] = []
        self.num_frames: List[int] = []
        linenos = {utt: n for n, utt, _ in iter_table(utt2lang_path)}
        for utt in self.utts:
            lang = utt2lang[utt]
            if lang not in self.lang2id:
                raise FormatError(utt2lang_path, linenos[utt],
                                  f"language '{lang}' of '{utt}' is not one of the {len(self.lang2id)} "
                                  f"languages of the model ({', '.join(self.lang2id)})",
                                  "use the language list of the training set, or drop these utterances")
            if utt not in reader:
                raise FormatError(self.data_dir / "feats.scp", None, f"has no features for '{utt}'",
                                  f"recompute features (python -m nasr.bin.compute_feats --data-dir "
                                  f"{self.data_dir}) or run utils/fix_data_dir.sh {self.data_dir}")
            if reader.num_frames(utt) < 1:
                raise FormatError(self.data_dir / "utt2num_frames", None, f"'{utt}' has no frames",
                                  f"drop it (utils/fix_data_dir.sh) or recompute its features")
            self.targets.append(self.lang2id[lang])
            self.num_frames.append(reader.num_frames(utt))
        # The reader holds open ark handles; it is rebuilt lazily in each DataLoader worker.
        self._reader: Optional[FeatureReader] = reader

    # -- sizes and labels -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.utts)

    @property
    def num_classes(self) -> int:
        return len(self.lang2id)

    @property
    def class_names(self) -> List[str]:
        return [self.id2lang[i] for i in range(len(self.id2lang))]

    def class_counts(self) -> Dict[str, int]:
        """Utterances per language, in index order (zero for a language this set lacks)."""
        counts = Counter(self.targets)
        return {lang: counts[i] for i, lang in enumerate(self.class_names)}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    # -- reading --------------------------------------------------------------------------------
    @property
    def reader(self) -> FeatureReader:
        if self._reader is None:
            self._reader = FeatureReader(self.data_dir)
        return self._reader

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_reader"] = None  # not picklable across processes; reopened on first use
        return state

    def window(self, index: int) -> Tuple[int, int]:
        """(start, end) frames of the item: a seeded random crop in training, else the start."""
        total = self.num_frames[index]
        if self.max_frames is None or total <= self.max_frames:
            return 0, total
        if not self.train:
            return 0, self.max_frames
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = int(rng.integers(0, total - self.max_frames + 1))
        return start, start + self.max_frames

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int, str]:
        utt = self.utts[index]
        start, end = self.window(index)
        raw = self.reader.raw(utt)
        if raw.shape[0] != self.num_frames[index]:
            raise FormatError(self.data_dir / "utt2num_frames", None,
                              f"says {self.num_frames[index]} frames for '{utt}' but feats.scp holds "
                              f"{raw.shape[0]}", f"recompute features for {self.data_dir}")
        feats = self.reader.normalise(utt, raw[start:end])
        # stored features can come back as read-only views, which torch must not wrap
        feats = np.require(feats, np.float32, ["C_CONTIGUOUS", "WRITEABLE"])
        return torch.from_numpy(feats), self.targets[index], utt


def collate_lid(batch: Sequence[Tuple[torch.Tensor, int, str]]
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, List[str]]:
    """Items -> (x (B, T_max, F) zero-padded after each utterance's end, lengths (B,),
    labels (B,), utterance ids)."""
    if not batch:
        raise ValueError("collate_lid: empty batch")
    feats, labels, utts = zip(*batch)
    dims = {f.shape[1] for f in feats}
    if len(dims) != 1:
        raise ValueError(f"collate_lid: items have different feature dims {sorted(dims)}")
    lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
    x = torch.zeros(len(feats), int(lengths.max()), dims.pop(), dtype=torch.float32)
    for i, f in enumerate(feats):
        x[i, :f.shape[0]] = f
    return x, lengths, torch.tensor(labels, dtype=torch.long), list(utts)


def make_lid_loader(dataset: LidDataset, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0,
                    num_workers: int = 0) -> DataLoader:
    """A DataLoader for one epoch: the order (when shuffling) and the training crops depend only on
    (seed, epoch).  Make a new loader per epoch: workers are not persistent, so each gets a copy of
    the dataset with this epoch set."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    dataset.set_epoch(epoch)
    generator = torch.Generator()
    # Two different (seed, epoch) pairs must not share a stream, so mix them rather than add them.
    generator.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2 ** 63))
    return DataLoader(dataset, batch_size=int(batch_size), shuffle=bool(shuffle), generator=generator,
                      num_workers=int(num_workers), collate_fn=collate_lid, drop_last=False,
                      persistent_workers=False)
