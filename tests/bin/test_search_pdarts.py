"""nasr.bin.search_pdarts: halves by original utterance, the seed picked by its derived network's
dev TER after the same brief training."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nasr.bin import search_pdarts
from nasr.bin.compute_feats import compute_data_dir
from nasr.bin.prepare_lang import prepare_lang
from nasr.data.audio import write_wav
from nasr.data.datadir import DataDir, combine_data, load_data_dir, perturb_speed, write_data_dir
from nasr.data.features import FeatureConfig
from nasr.nas.search_model import SearchNetwork
from nasr.nas.spaces import get_space
from nasr.utils.io import FormatError

ROOT = Path(__file__).resolve().parents[2]
SR = 16000
WORDS = ["中国", "楼市", "成交", "的"]
LEXICON = "中国 zhong1 guo2\n楼市 lou2 shi4\n成交 cheng2 jiao1\n的 de5\n"


def _originals(root: Path, name: str, n: int, seed: int) -> Path:
    """A data dir of n one-second utterances from 3 speakers, with wav files and transcripts."""
    rng = np.random.default_rng(seed)
    wav_scp, text, utt2spk = {}, {}, {}
    for i in range(n):
        utt = f"{name}s{i % 3}-u{i:02d}"
        path = root / "wav" / f"{utt}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, (0.1 * rng.standard_normal(SR)).astype(np.float32), SR)
        wav_scp[utt], utt2spk[utt] = str(path), f"{name}s{i % 3}"
        text[utt] = " ".join(WORDS[(i + k) % 4] for k in range(2))
    data = root / "data" / name
    write_data_dir(DataDir(utt2spk=utt2spk, wav_scp=wav_scp, text=text), data)
    return data


def test_halves_never_share_an_original_utterance(tmp_path):
    """On train + its sp0.9-/sp1.1- copies as utils/perturb_data_dir_speed.sh and
    utils/combine_data.sh write them, an original and its copies always land in the same half."""
    train = _originals(tmp_path, "train", 30, 0)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    for f in ("0.9", "1.1"):
        subprocess.run(["bash", str(ROOT / "utils/perturb_data_dir_speed.sh"), f, str(train),
                        str(tmp_path / f"data/train_sp{f}")], check=True, env=env, capture_output=True)
    subprocess.run(["bash", str(ROOT / "utils/combine_data.sh"), str(tmp_path / "data/train_sp"), str(train),
                    str(tmp_path / "data/train_sp0.9"), str(tmp_path / "data/train_sp1.1")],
                   check=True, env=env, capture_output=True)
    sp = tmp_path / "data/train_sp"
    utts = load_data_dir(sp).utts
    assert len(utts) == 90 and any(u.startswith("sp0.9-") for u in utts)
    originals = search_pdarts.original_utterances(sp, utts)
    for seed in (1, 2, 3):
        weights, alphas = search_pdarts.split_halves(originals, seed)
        assert sorted(weights + alphas) == list(range(90))
        assert not {originals[i] for i in weights} & {originals[i] for i in alphas}
        assert len(weights) == len(alphas) == 45   # 15 originals x 3 copies each side
        half_of = {utts[i]: "w" for i in weights} | {utts[i]: "a" for i in alphas}
        assert all(half_of[f"sp{f}-{u}"] == half_of[u] for u in load_data_dir(train).utts for f in ("0.9", "1.1"))
    # the split is a function of the seed alone
    assert search_pdarts.split_halves(originals, 1) == search_pdarts.split_halves(originals, 1)
    assert search_pdarts.split_halves(originals, 1) != search_pdarts.split_halves(originals, 2)


def test_speed_perturbed_ids_without_utt2uniq_are_refused(tmp_path):
    with pytest.raises(FormatError, match=r"utt2uniq: missing, but 1 utterance ids look speed-perturbed"):
        search_pdarts.original_utterances(tmp_path, ["a1", "sp0.9-a1"])
    assert search_pdarts.original_utterances(tmp_path, ["a1", "b1"]) == ["a1", "b1"]
    (tmp_path / "utt2uniq").write_text("sp0.9-a1 a1\n")
    with pytest.raises(FormatError, match=r"utt2uniq: 1 utterances have no line \(e.g. 'a1'\)"):
        search_pdarts.original_utterances(tmp_path, ["a1", "sp0.9-a1"])


@pytest.fixture(scope="module")
def featurised(tmp_path_factory):
    root = tmp_path_factory.mktemp("pdarts_data")
    train = _originals(root, "train", 8, 0)
    dev = _originals(root, "dev", 4, 1)
    perturb_speed(train, root / "data/train_sp1.1", 1.1)
    combine_data(root / "data/train_sp", [train, root / "data/train_sp1.1"])
    for d in (root / "data/train_sp", dev):
        compute_data_dir(d, FeatureConfig.preset("asr_fbank"), progress=False)
    (root / "lexicon.txt").write_text(LEXICON, encoding="utf-8")
    prepare_lang(train, root / "lang", "syllable", root / "lexicon.txt")
    cfg = root / "tiny.yaml"
    cfg.write_text("space: asr_revised\n"
                   "stages: [{layers: 3, ops_per_edge: 8, dropout: 0.1}]\n"
                   "epochs_per_stage: 1\nwarmup_epochs: 0\n"
                   "model: {C: 4}\nbatch_size: 4\n"
                   "pick: {steps: 2, batch_size: 4, model: {C: 4, layers: 3}}\n")
    return root


def _search(root, exp, *extra):
    return search_pdarts.main(["--config", str(root / "tiny.yaml"), "--train-data", str(root / "data/train_sp"),
                               "--valid-data", str(root / "data/dev"), "--lang", str(root / "lang"),
                               "--exp-dir", str(exp), "--seeds", "2", "--device", "cpu", *extra])


def test_seeds_are_picked_by_dev_ter_after_the_same_brief_training(featurised, tmp_path):
    exp = tmp_path / "exp"
    assert _search(featurised, exp) == 0
    seeds = json.loads((exp / "seeds.json").read_text())
    assert [s["seed"] for s in seeds["seeds"]] == [1, 2]
    picks = [json.loads((exp / f"seed-{s}/pick.json").read_text()) for s in (1, 2)]
    assert [p["steps"] for p in picks] == [2, 2] and all(p["dev_utts"] == 4 for p in picks)
    assert [s["dev_ter"] for s in seeds["seeds"]] == [p["dev_ter"] for p in picks]
    best = min(seeds["seeds"], key=lambda s: (s["dev_ter"], s["dev_loss"], s["seed"]))
    assert seeds["best_seed"] == best["seed"] and "dev TER" in seeds["picked_by"]
    assert (exp / "genotype.json").read_text() == (exp / f"seed-{best['seed']}/genotype.json").read_text()
    log = (exp / "log/search.log").read_text()
    assert "dev TER per seed: seed 1 " in log and f"-> seed {best['seed']}" in log
    assert "by original utterance" in log


def test_the_supernet_valid_loss_does_not_pick(featurised, tmp_path, monkeypatch):
    """Seed 1's supernet has the lower valid loss, seed 2's derived network the lower dev TER:
    seed 2 wins."""
    genotype = SearchNetwork(3, 6, 4, 3, get_space("asr_revised"), head="ctc", freq_dim=8).genotype("asr_revised")
    monkeypatch.setattr(search_pdarts, "search_one_seed", lambda cfg, dataset, halves, seed, exp, device, resume: {
        "genotype": genotype, "valid_loss": {1: 0.1, 2: 5.0}[seed], "search_seconds": 0.0})
    ters = iter([0.9, 0.2])   # scored in seed order
    monkeypatch.setattr(search_pdarts, "score_genotype", lambda cfg, genotype, dataset, dev, device: {
        "dev_ter": next(ters), "dev_loss": 1.0, "dev_utts": len(dev), "train_loss": 1.0, "steps": 2,
        "seconds": 0.0})
    assert _search(featurised, tmp_path / "exp") == 0
    seeds = json.loads((tmp_path / "exp/seeds.json").read_text())
    assert seeds["best_seed"] == 2
    assert [s["dev_ter"] for s in seeds["seeds"]] == [0.9, 0.2]


def test_several_seeds_need_a_dev_set(featurised, tmp_path):
    with pytest.raises(SystemExit, match="--valid-data"):
        search_pdarts.main(["--config", str(featurised / "tiny.yaml"), "--train-data",
                            str(featurised / "data/train_sp"), "--lang", str(featurised / "lang"),
                            "--exp-dir", str(tmp_path), "--seeds", "2", "--device", "cpu"])
