import numpy as np
import pytest
import torch

from nasr.data.audio import write_wav
from nasr.data.augment import HonkAugment
from nasr.data.features import FeatureConfig, compute_features
from nasr.data.kws_dataset import KwsDataset, read_labels
from nasr.utils.io import FormatError, write_table

SR = 16000
LABELS = ["yes", "no", "_unknown_", "_silence_"]


@pytest.fixture
def cfg():
    return FeatureConfig.preset("kws_mfcc")


@pytest.fixture
def data_dir(tmp_path):
    """Four word clips (one of them half a second), one noise recording cut into two silence clips."""
    rng = np.random.default_rng(0)
    audio = tmp_path / "audio"
    audio.mkdir()
    d = tmp_path / "data" / "train"
    clips = {"aaaa0001-yes-0": ("yes", SR), "aaaa0001-no-0": ("no", SR),
             "bbbb0002-cat-0": ("_unknown_", SR), "bbbb0002-yes-0": ("yes", SR // 2)}
    wav_scp, text, utt2spk, segments = {}, {}, {}, {}
    for utt, (label, n) in clips.items():
        path = audio / f"{utt}.wav"
        t = np.arange(n) / SR
        write_wav(path, (0.3 * np.sin(2 * np.pi * (200 + 100 * len(wav_scp)) * t)
                         + 0.01 * rng.standard_normal(n)).astype(np.float32), SR)
        wav_scp[utt], text[utt], utt2spk[utt] = str(path), label, utt.split("-")[0]
        segments[utt] = f"{utt} 0.000 {n / SR:.5f}"
    noise_path = audio / "noise.wav"
    write_wav(noise_path, (0.2 * rng.standard_normal(4 * SR)).astype(np.float32), SR)
    wav_scp["noise_white"] = str(noise_path)
    for k, start in enumerate((0.5, 2.25)):
        utt = f"noise_white-_silence_-train{k:05d}"
        text[utt], utt2spk[utt] = "_silence_", "noise_white"
        segments[utt] = f"noise_white {start:.3f} {start + 1:.3f}"
    spk2utt = {}
    for utt, spk in sorted(utt2spk.items()):
        spk2utt.setdefault(spk, []).append(utt)
    for name, table in (("wav.scp", wav_scp), ("text", text), ("utt2spk", utt2spk),
                        ("segments", segments), ("spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})):
        write_table(d / name, table)
    (d / "labels.txt").write_text("".join(f"{lab}\n" for lab in LABELS))
    write_table(d / "noise.scp", {"noise_white": str(noise_path)})
    return d


def test_items_have_the_paper_shape_and_label_indices(data_dir, cfg):
    ds = KwsDataset(data_dir, LABELS, cfg)
    assert len(ds) == 6
    text = dict(line.split() for line in (data_dir / "text").read_text().splitlines())
    for i in range(len(ds)):
        x, y = ds[i]
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
        assert tuple(x.shape) == (1, 101, 40)
        assert torch.isfinite(x).all()
        assert LABELS[y] == text[ds.utts[i]]
    assert ds.class_counts() == {"yes": 2, "no": 1, "_unknown_": 1, "_silence_": 2}
    assert list(ds.class_counts()) == LABELS
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=6)))
    assert tuple(batch[0].shape) == (6, 1, 101, 40)


def test_on_the_fly_features_match_compute_features_and_honour_segments(data_dir, cfg):
    ds = KwsDataset(data_dir, None, cfg)  # labels from labels.txt
    assert ds.labels == LABELS
    from nasr.data.audio import read_audio
    i = ds.utts.index("noise_white-_silence_-train00001")
    noise = read_audio(str(data_dir.parent.parent / "audio" / "noise.wav"))
    want = compute_features(noise[int(2.25 * SR):int(3.25 * SR)], cfg)
    assert np.allclose(ds[i][0][0].numpy(), want, atol=1e-5)
    # a half-second clip is zero-padded to one second
    j = ds.utts.index("bbbb0002-yes-0")
    assert len(ds.read_wave(j)) == SR and np.all(ds.read_wave(j)[SR // 2:] == 0)


def test_precomputed_features_are_served_and_agree_with_wavs(data_dir, cfg):
    compute_feats = pytest.importorskip("nasr.bin.compute_feats")
    on_the_fly = KwsDataset(data_dir, LABELS, cfg)
    expected = [on_the_fly[i][0].numpy() for i in range(len(on_the_fly))]
    compute_feats.compute_data_dir(data_dir, cfg, progress=False)
    ds = KwsDataset(data_dir, LABELS, cfg)
    assert ds.has_features
    for i in range(len(ds)):
        x, y = ds[i]
        assert tuple(x.shape) == (1, 101, 40) and y == on_the_fly.targets[i]
        if ds.utts[i] == "bbbb0002-yes-0":
            # stored: 51 frames of the half second, padded with silence frames; away from the
            # boundary it equals featurising the zero-padded wave
            assert np.allclose(x.numpy()[0, :45], expected[i][0, :45], atol=1e-4)
            assert np.allclose(x.numpy()[0, 56:], expected[i][0, 56:], atol=1e-4)
        else:
            assert np.allclose(x.numpy(), expected[i], atol=1e-4)
    other = cfg.replace(num_ceps=13)
    with pytest.raises(ValueError, match="another config"):
        KwsDataset(data_dir, LABELS, other)


def test_augmentation_is_deterministic_per_seed_epoch_and_index(data_dir, cfg):
    aug = HonkAugment.from_scp(data_dir / "noise.scp")
    a = KwsDataset(data_dir, LABELS, cfg, augment=aug, seed=5)
    b = KwsDataset(data_dir, LABELS, cfg, augment=aug, seed=5)
    plain = KwsDataset(data_dir, LABELS, cfg)
    a.set_epoch(3)
    b.set_epoch(3)
    first = [a[i][0] for i in range(len(a))]
    # another dataset object, another access order: the same clips
    for i in reversed(range(len(b))):
        assert torch.equal(b[i][0], first[i])
    assert tuple(first[0].shape) == (1, 101, 40)
    assert any(not torch.allclose(first[i], plain[i][0]) for i in range(len(a)))
    a.set_epoch(4)
    fourth = [a[i][0] for i in range(len(a))]
    assert sum(not torch.equal(x, y) for x, y in zip(first, fourth)) >= len(a) - 1
    a.set_epoch(3)
    assert all(torch.equal(a[i][0], first[i]) for i in range(len(a)))
    other_seed = KwsDataset(data_dir, LABELS, cfg, augment=aug, seed=6)
    other_seed.set_epoch(3)
    assert any(not torch.equal(other_seed[i][0], first[i]) for i in range(len(a)))
    assert [a[i][1] for i in range(len(a))] == plain.targets


def test_bad_labels_are_reported_with_file_and_line(data_dir, cfg, tmp_path):
    with pytest.raises(FormatError, match=r"text:\d+: label '_unknown_' is not one of"):
        KwsDataset(data_dir, ["yes", "no", "_silence_"], cfg)
    bad = tmp_path / "labels.txt"
    bad.write_text("yes\nno\nyes\n")
    with pytest.raises(FormatError, match=r"labels.txt:3: label 'yes' repeats"):
        read_labels(bad)
    with pytest.raises(FileNotFoundError, match="data preparation"):
        KwsDataset(tmp_path / "nowhere", LABELS, cfg)
    with pytest.raises(ValueError, match="cmvn=global"):
        KwsDataset(data_dir, LABELS, cfg.replace(cmvn="global"))


def test_duplicate_utterances_are_refused(data_dir, cfg):
    # Before: a repeated text line was one more item: evaluate scored 8 utterances as [ 1 / 9 ].
    text = data_dir / "text"
    first = text.read_text().splitlines()[0]
    text.write_text(first + "\n" + text.read_text())
    with pytest.raises(FormatError, match=r"text:2: duplicate utterance '.*fix_data_dir"):
        KwsDataset(data_dir, LABELS, cfg)


def test_wave_items_featurised_in_a_batch_equal_the_per_item_features(data_dir, cfg):
    """The augmented waves the loader hands out, featurised a batch at a time in the step, are the
    per-item features of the same augmentation draws (cached waves or read per item alike)."""
    aug = HonkAugment.from_scp(data_dir / "noise.scp")
    per_item = KwsDataset(data_dir, LABELS, cfg, augment=aug, seed=5)
    waves = KwsDataset(data_dir, LABELS, cfg, augment=aug, seed=5, waves=True)
    assert waves.cache_waves(1 << 20) and not KwsDataset(data_dir, LABELS, cfg, augment=aug,
                                                         waves=True).cache_waves(1000)
    featurize, why = waves.batch_featurizer()
    assert why is None
    for d in (per_item, waves):
        d.set_epoch(2)
    batch = torch.stack([waves[i][0] for i in range(len(waves))])
    assert batch.shape == (len(waves), SR)
    want = torch.stack([per_item[i][0] for i in range(len(per_item))])
    np.testing.assert_allclose(featurize(batch).numpy(), want.numpy(), atol=2e-3, rtol=1e-4)
    assert [waves[i][1] for i in range(len(waves))] == per_item.targets
    # without augmentation the items stay (stored or computed) features
    assert KwsDataset(data_dir, LABELS, cfg, waves=True)[0][0].shape == (1, 101, 40)
