import numpy as np
import pytest
import torch

from nasr.bin import compute_feats
from nasr.data.audio import write_wav
from nasr.data.features import FeatureConfig, FeatureReader, compute_features
from nasr.data.lid_dataset import (LidDataset, collate_lid, make_lang2id, make_lid_loader,
                                   read_utt2lang)
from nasr.utils.io import FormatError, write_table

SR = 16000
# utt -> (language, seconds): 2.5 s gives 248 frames, 5 s gives 498 (> 400, so it gets cropped)
UTTS = {"vidA__U__S0---0001.000-0006.000": ("de", 5.0),
        "vidA__U__S1---0010.000-0012.500": ("de", 2.5),
        "vidB__U__S0---0003.000-0008.000": ("en", 5.0),
        "vidC__U__S0---0000.000-0002.500": ("fr", 2.5)}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lid")
    rng = np.random.default_rng(0)
    d = root / "data" / "train"
    wav_scp, utt2spk, utt2lang = {}, {}, {}
    for k, (utt, (lang, seconds)) in enumerate(UTTS.items()):
        n = int(seconds * SR)
        t = np.arange(n) / SR
        x = 0.3 * np.sin(2 * np.pi * (150 + 80 * k) * t * (1 + 0.2 * t)) + 0.02 * rng.standard_normal(n)
        path = root / f"{utt}.wav"
        write_wav(path, x.astype(np.float32), SR)
        wav_scp[utt], utt2spk[utt], utt2lang[utt] = str(path), utt.split("__U__")[0], lang
    spk2utt = {}
    for utt, spk in sorted(utt2spk.items()):
        spk2utt.setdefault(spk, []).append(utt)
    write_table(d / "wav.scp", wav_scp)
    write_table(d / "utt2spk", utt2spk)
    write_table(d / "utt2lang", utt2lang)
    write_table(d / "spk2utt", {s: " ".join(u) for s, u in spk2utt.items()})
    assert compute_feats.main(["--data-dir", str(d), "--preset", "lid_fbank", "--nj", "1"]) in (0, None)
    return d


def test_lid_fbank_preset_is_40_log_mel_every_10ms_without_deltas():
    cfg = FeatureConfig.preset("lid_fbank")
    assert (cfg.type, cfg.num_mel_bins, cfg.frame_length_ms, cfg.frame_shift_ms) == ("fbank", 40, 25.0, 10.0)
    assert cfg.deltas == 0 and cfg.layout == "concat" and cfg.feat_dim == 40
    assert (cfg.cmvn, cfg.norm_vars) == ("global", True)
    # 4 s at 16 kHz, Kaldi framing with snip_edges: 1 + (64000 - 400) // 160 = 398 frames
    feats = compute_features(np.random.default_rng(1).standard_normal(4 * SR).astype(np.float32) * 0.1, cfg)
    assert feats.shape == (398, 40) and np.isfinite(feats).all()


def test_read_utt2lang_and_lang2id(tmp_path):
    p = tmp_path / "utt2lang"
    p.write_text("u1 en\nu2 de\nu3 en\n")
    assert read_utt2lang(p) == {"u1": "en", "u2": "de", "u3": "en"}
    assert make_lang2id(read_utt2lang(p).values()) == {"de": 0, "en": 1}
    # C order: upper case sorts before lower case, whatever the input order
    assert make_lang2id(["zh", "en", "Zz", "en"]) == {"Zz": 0, "en": 1, "zh": 2}
    with pytest.raises(ValueError, match="no languages"):
        make_lang2id([])

    p.write_text("u1 en\nu2 de fr\n")
    with pytest.raises(FormatError, match=r"utt2lang:2: expected '<utt> <lang>'"):
        read_utt2lang(p)
    p.write_text("u1 en\nu2\n")
    with pytest.raises(FormatError, match=r"utt2lang:2"):
        read_utt2lang(p)
    p.write_text("u1 en\nu1 de\n")
    with pytest.raises(FormatError, match=r"utt2lang:2: duplicate utterance 'u1'"):
        read_utt2lang(p)
    with pytest.raises(FormatError, match="missing"):
        read_utt2lang(tmp_path / "nope")


def test_eval_items_are_the_first_frames_with_cmvn_applied(data_dir):
    lang2id = make_lang2id(read_utt2lang(data_dir / "utt2lang").values())
    ds = LidDataset(data_dir, lang2id, max_frames=400, train=False)
    assert len(ds) == 4 and ds.feat_dim == 40 and ds.num_classes == 3
    assert ds.class_names == ["de", "en", "fr"]
    assert ds.class_counts() == {"de": 2, "en": 1, "fr": 1}
    reader = FeatureReader(data_dir)
    for i, utt in enumerate(ds.utts):
        x, y, name = ds[i]
        assert name == utt and y == lang2id[UTTS[utt][0]]
        full = reader[utt]
        assert x.dtype == torch.float32 and x.shape == (min(400, len(full)), 40)
        np.testing.assert_allclose(x.numpy(), full[:400], rtol=1e-6, atol=1e-6)
    # whole utterances when uncapped
    assert ds.num_frames == [len(reader[u]) for u in ds.utts]
    assert LidDataset(data_dir, lang2id, max_frames=None)[0][0].shape[0] == 498


def test_train_crops_are_seeded_per_epoch_and_windows_of_the_utterance(data_dir):
    lang2id = make_lang2id(["de", "en", "fr"])
    ds = LidDataset(data_dir, lang2id, max_frames=100, train=True, seed=3)
    full = FeatureReader(data_dir)[ds.utts[0]]
    starts = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        x, _, _ = ds[0]
        start, end = ds.window(0)
        assert end - start == 100 and x.shape == (100, 40)
        np.testing.assert_allclose(x.numpy(), full[start:end], rtol=1e-6, atol=1e-6)
        starts.add(start)
        # the same (seed, epoch, index) gives the same crop in another copy of the dataset
        other = LidDataset(data_dir, lang2id, max_frames=100, train=True, seed=3)
        other.set_epoch(epoch)
        assert other.window(0) == (start, end)
    assert len(starts) > 1, "crops must move with the epoch"
    other_seed = LidDataset(data_dir, lang2id, max_frames=100, train=True, seed=4)

    def windows(d):
        out = []
        for epoch in range(6):
            d.set_epoch(epoch)
            out.append(d.window(0))
        return out

    assert windows(other_seed) != windows(ds), "the seed must change the crops"
    # utterances shorter than max_frames are whole, at every epoch
    wide = LidDataset(data_dir, lang2id, max_frames=300, train=True, seed=3)
    short = wide.utts.index("vidA__U__S1---0010.000-0012.500")
    for epoch in range(3):
        wide.set_epoch(epoch)
        assert wide.window(short) == (0, 248) and wide[short][0].shape == (248, 40)


def test_unknown_language_is_a_clear_error(data_dir):
    with pytest.raises(FormatError, match=r"utt2lang:\d+: language 'fr' .* not one of the 2 languages"):
        LidDataset(data_dir, make_lang2id(["de", "en"]))
    with pytest.raises(ValueError, match="make_lang2id"):
        LidDataset(data_dir, {"de": 0, "en": 2, "fr": 3})


def test_missing_features_is_a_clear_error(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "utt2lang").write_text("u1 en\n")
    with pytest.raises(FormatError, match="compute_feats"):
        LidDataset(d, {"en": 0})


def test_collate_pads_with_zeros_and_keeps_lengths():
    a, b = torch.ones(3, 2), 2 * torch.ones(5, 2)
    x, lengths, labels, utts = collate_lid([(a, 1, "u1"), (b, 0, "u2")])
    assert x.shape == (2, 5, 2) and x.dtype == torch.float32
    assert lengths.tolist() == [3, 5] and lengths.dtype == torch.long
    assert labels.tolist() == [1, 0] and labels.dtype == torch.long and utts == ["u1", "u2"]
    assert torch.equal(x[0, :3], a) and torch.equal(x[0, 3:], torch.zeros(2, 2))
    assert torch.equal(x[1], b)
    with pytest.raises(ValueError, match="feature dims"):
        collate_lid([(a, 0, "u1"), (torch.ones(2, 3), 0, "u2")])


def test_loader_order_depends_only_on_seed_and_epoch(data_dir):
    lang2id = make_lang2id(["de", "en", "fr"])
    ds = LidDataset(data_dir, lang2id, max_frames=120, train=True, seed=0)

    def order(seed, epoch, workers=0):
        return [u for _, _, _, utts in make_lid_loader(ds, 1, True, seed, epoch, workers) for u in utts]

    assert order(0, 0) == order(0, 0)
    orders = {tuple(order(0, e)) for e in range(8)}
    assert len(orders) > 1 and all(sorted(o) == sorted(UTTS) for o in orders)
    assert [u for *_, utts in make_lid_loader(ds, 3, False) for u in utts] == ds.utts
    # worker processes see the epoch the loader was made for: same crops as in-process
    x0 = torch.cat([x.flatten() for x, *_ in make_lid_loader(ds, 2, False, 0, 5, 0)])
    x2 = torch.cat([x.flatten() for x, *_ in make_lid_loader(ds, 2, False, 0, 5, 2)])
    assert torch.equal(x0, x2)
    x, lengths, labels, utts = next(iter(make_lid_loader(ds, 4, False, 0, 0)))
    assert x.shape == (4, 120, 40) and lengths.tolist() == [120] * 4
