"""nasr.data.asr_dataset: shapes, filters, padding to a multiple of 4, the bucket sampler."""
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from nasr.asr.units import load_tokenizer
from nasr.bin.compute_feats import compute_data_dir
from nasr.bin.prepare_lang import prepare_lang
from nasr.data.asr_dataset import (AsrBatch, AsrCollate, AsrDataset, BucketBatchSampler, collate,
                                   ctc_min_frames)
from nasr.data.audio import write_wav
from nasr.data.datadir import DataDir, write_data_dir
from nasr.data.features import FeatureConfig
from nasr.utils.io import FormatError

SR = 16000
# utt -> (seconds, transcript).  At 10 ms per frame: ~0.5 s = 48 frames, 2.0 s = 198, 11 s = 1098.
UTTS = {
    "s1-a": (0.5, "中国 楼市"),
    "s1-b": (1.0, "楼市 成交"),
    "s1-c": (2.0, "中国 的 楼市 成交"),
    "s2-a": (11.0, "中国"),                               # over 1024 frames
    "s2-b": (0.2, "中国 的 楼市 成交 中国 的 楼市 成交"),  # 18 frames: too short for 16 syllables at 1/4
    "s2-c": (1.5, "成交 的 中国"),
}
LEXICON = "中国 zhong1 guo2\n楼市 lou2 shi4\n成交 cheng2 jiao1\n的 de5\n"


@pytest.fixture(scope="module")
def asr_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("asr")
    rng = np.random.default_rng(0)
    wav_scp = {}
    for utt, (secs, _) in UTTS.items():
        path = root / "wav" / f"{utt}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, (0.1 * rng.standard_normal(int(secs * SR))).astype(np.float32), SR)
        wav_scp[utt] = str(path)
    data = root / "data" / "train"
    write_data_dir(DataDir(utt2spk={u: u.split("-")[0] for u in UTTS}, wav_scp=wav_scp,
                           text={u: t for u, (_, t) in UTTS.items()}), data)
    compute_data_dir(data, FeatureConfig.preset("asr_fbank"), progress=False)
    lexicon = root / "lexicon.txt"
    lexicon.write_text(LEXICON, encoding="utf-8")
    prepare_lang(data, root / "lang", "syllable", lexicon)
    return data, root / "lang"


def test_items_and_filters(asr_dir, caplog):
    data, lang = asr_dir
    with caplog.at_level("INFO"):
        ds = AsrDataset(data, lang)
    assert sorted(ds.utts) == ["s1-a", "s1-b", "s1-c", "s2-c"]
    assert ds.dropped["too_long"] == 1 and ds.dropped["too_short_for_ctc"] == 1
    assert "dropped 1 over 1024 frames, 1 too short for CTC" in caplog.text
    feats, ids = ds[ds.utts.index("s1-c")]
    assert feats.dtype == torch.float32 and feats.shape[0] == 3 and feats.shape[2] == 40
    assert feats.shape[1] == ds.num_frames[ds.utts.index("s1-c")]
    units = load_tokenizer(lang).units
    assert units.decode(ids.tolist()) == ["zhong1", "guo2", "de5", "lou2", "shi4", "cheng2", "jiao1"]
    assert ids.dtype == torch.int64
    everything = AsrDataset(data, lang, max_frames=None, subsampling=1)
    assert len(everything) == len(UTTS)
    assert AsrDataset(data, lang, max_frames=200).dropped["too_long"] == 1  # s2-a only (s1-c: 198)
    with pytest.raises(FormatError, match="no utterance is left"):
        AsrDataset(data, lang, max_frames=10)
    utt_ds = AsrDataset(data, lang, return_utt=True)
    assert utt_ds[0][2] == utt_ds.utts[0]


def test_ctc_min_frames():
    assert ctc_min_frames([1, 2, 3]) == 3
    assert ctc_min_frames([1, 1, 2, 2, 2]) == 8
    assert ctc_min_frames([]) == 0


def test_collate_pads_to_multiple_of_four(asr_dir):
    data, lang = asr_dir
    ds = AsrDataset(data, lang)
    items = [ds[i] for i in range(len(ds))]
    batch = collate(items)
    assert isinstance(batch, AsrBatch)
    x, x_lens, targets, target_lens = batch
    lens = [it[0].shape[1] for it in items]
    assert x_lens.tolist() == lens
    assert x.shape[:2] == (len(items), 3) and x.shape[3] == 40
    assert x.shape[2] % 4 == 0 and max(lens) <= x.shape[2] < max(lens) + 4
    assert target_lens.tolist() == [len(it[1]) for it in items]
    assert torch.equal(targets, torch.cat([it[1] for it in items]))
    for i, it in enumerate(items):
        assert torch.equal(x[i, :, : lens[i]], it[0])
        assert not x[i, :, lens[i]:].any()  # padding is zeros
    (batch8, utts) = collate([ds_item + ("u",) for ds_item in items[:2]], pad_multiple=8)
    assert batch8.x.shape[2] % 8 == 0 and utts == ["u", "u"]


def test_dataloader_with_bucket_sampler(asr_dir):
    data, lang = asr_dir
    ds = AsrDataset(data, lang)
    sampler = BucketBatchSampler(ds.num_frames, batch_size=2, num_buckets=2, seed=1)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=AsrCollate(4), num_workers=0)
    seen = 0
    for batch in loader:
        assert batch.x.shape[2] % 4 == 0
        seen += batch.x.shape[0]
    assert seen == len(ds)


@pytest.mark.parametrize("kwargs", [{"batch_size": 7}, {"max_frames": 900}])
def test_bucket_sampler_covers_every_index_once_and_is_deterministic(kwargs):
    rng = np.random.default_rng(0)
    lengths = rng.integers(50, 800, size=205).tolist()
    sampler = BucketBatchSampler(lengths, num_buckets=5, seed=3, **kwargs)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(sampler) == len(batches)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths)))  # each index exactly once
        if "max_frames" in kwargs:
            for b in batches:
                assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= kwargs["max_frames"]
        else:
            sizes = Counter(len(b) for b in batches)
            assert sizes[7] == len(batches) - 1 and sizes[205 % 7] == 1  # only one short batch
        epochs.append(batches)
    assert epochs[0] != epochs[1]  # reshuffled per epoch
    again = BucketBatchSampler(lengths, num_buckets=5, seed=3, epoch=1, **kwargs)
    assert list(again) == epochs[1]  # same (seed, epoch) -> same batches
    other_seed = BucketBatchSampler(lengths, num_buckets=5, seed=4, epoch=1, **kwargs)
    assert list(other_seed) != epochs[1]


def test_bucket_sampler_small_set_keeps_full_batches():
    sampler = BucketBatchSampler(list(range(17)), batch_size=4, num_buckets=10, seed=0)
    assert sorted(len(b) for b in sampler) == [1, 4, 4, 4, 4]
    dropped = BucketBatchSampler(list(range(17)), batch_size=4, num_buckets=10, drop_last=True)
    assert [len(b) for b in dropped] == [4, 4, 4, 4]


def test_bucket_sampler_groups_similar_lengths():
    lengths = list(range(1000))
    sampler = BucketBatchSampler(lengths, batch_size=10, num_buckets=10, seed=0)
    for b in sampler:
        spread = max(lengths[i] for i in b) - min(lengths[i] for i in b)
        assert spread < 100  # within one bucket of 100 consecutive lengths
    plain = list(BucketBatchSampler(lengths, batch_size=10, num_buckets=10, shuffle=False))
    assert plain[0] == list(range(10))


def test_bucket_sampler_replicas_and_errors():
    lengths = [10] * 50
    parts = [list(BucketBatchSampler(lengths, batch_size=4, num_buckets=1, seed=0, num_replicas=2, rank=r))
             for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == 6  # 13 batches: one left over this epoch
    assert not {i for b in parts[0] for i in b} & {i for b in parts[1] for i in b}
    with pytest.raises(ValueError, match="exactly one"):
        BucketBatchSampler(lengths)
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler(lengths, batch_size=2, num_replicas=2, rank=2)


def test_duplicate_utterances_are_refused(asr_dir, tmp_path):
    # Before: a repeated text line was trained on and scored twice.
    import shutil

    data, lang = asr_dir
    copy = tmp_path / "train"
    shutil.copytree(data, copy)
    lines = (copy / "text").read_text(encoding="utf-8").splitlines()
    (copy / "text").write_text("\n".join(lines[:2] + lines[1:]) + "\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"text:3: duplicate utterance 's1-b'"):
        AsrDataset(copy, lang)
