"""nasr.bin.train keeps its experiment record trustworthy (issue 12): strict configs, a refused
resume changes nothing, best.pt is checked against the history, and a killed run resumes exactly."""
import json

import pytest
import torch

from nasr.bin import train
from nasr.train.checkpoint import CheckpointError, load_checkpoint
from nasr.train.resume import ConfigChangeError
from nasr.utils.io import FormatError

DARTS = "model: {name: darts_net, C: 4, layers: 3, stem_stride: 2, drop_path_prob: 0.3}\n"
SMALL = "model: {name: tc_resnet8, width_mult: 0.5}\n"


def run(tmp_path, corpus, body, *extra, valid=False, genotype=None, exp="exp"):
    train_dir, valid_dir, default_genotype = corpus
    cfg = tmp_path / "train_tiny.yaml"
    cfg.write_text(body + "batch_size: 6\nkeep_last: 5\n")
    argv = ["--config", str(cfg), "--train-data", str(train_dir), "--exp-dir", str(tmp_path / exp),
            "--device", "cpu", "--genotype", str(genotype or default_genotype), *extra]
    if valid:
        argv += ["--valid-data", str(valid_dir)]
    return train.main(argv)


def snapshot(exp):
    return {p.name: p.read_bytes() for p in sorted(exp.iterdir())
            if p.name in ("config.yaml", "genotype.json", "best.pt") or p.name.startswith("epoch-")}


def test_a_typo_in_a_key_is_an_error_naming_file_line_and_closest_key(tmp_path, kws_corpus):
    with pytest.raises(FormatError, match=r"train_tiny.yaml:2: unknown config key 'epohcs' "
                                          r"\(fix: did you mean 'epochs'\?\)"):
        run(tmp_path, kws_corpus, SMALL + "epohcs: 1\n")
    with pytest.raises(FormatError) as e:
        run(tmp_path, kws_corpus, SMALL, "--override", "epochz=5", "optim.lrr=9")
    assert "--override epochz=5: unknown config key 'epochz' (fix: did you mean 'epochs'?)" in str(e.value)
    assert "--override optim.lrr=9: unknown config key 'optim.lrr' (fix: did you mean 'optim.lr'?)" in str(e.value)
    with pytest.raises(FormatError, match=r"train_tiny.yaml:1: unknown config key 'model.width_mul'.*"
                                          r"'model.width_mult'"):
        run(tmp_path, kws_corpus, "model: {name: tc_resnet8, width_mul: 0.5}\n")
    with pytest.raises(FormatError, match=r"'batch_size' must be a positive integer, got 0"):
        run(tmp_path, kws_corpus, SMALL, "--override", "batch_size=0")
    assert not (tmp_path / "exp" / "config.yaml").exists()


def test_a_refused_resume_leaves_the_exp_dir_byte_identical(tmp_path, kws_corpus):
    exp = tmp_path / "exp"
    assert run(tmp_path, kws_corpus, DARTS + "epochs: 1\n") == 0
    before = snapshot(exp)
    assert set(before) == {"config.yaml", "genotype.json", "best.pt", "epoch-1.pt"}
    other = tmp_path / "other_genotype.json"
    g = json.loads(kws_corpus[2].read_text())
    g["normal"][0] = ["sep_conv_5x5", 0]
    other.write_text(json.dumps(g))
    # Another model width and genotype: refused, naming both.
    with pytest.raises(ConfigChangeError, match=r"model\.C: 4 -> 6.*genotype\.json"):
        run(tmp_path, kws_corpus, DARTS + "epochs: 1\n", "--override", "model.C=6", genotype=other)
    assert snapshot(exp) == before
    # Allowed, but the checkpoint does not fit the wider model: still nothing written.
    with pytest.raises(CheckpointError, match="does not fit"):
        run(tmp_path, kws_corpus, DARTS + "epochs: 1\n", "--override", "model.C=6", "--allow-config-change",
            genotype=other)
    assert snapshot(exp) == before
    # More epochs change the lr schedule: refused, then allowed and logged.
    with pytest.raises(ConfigChangeError, match=r"epochs: 1 -> 2"):
        run(tmp_path, kws_corpus, DARTS + "epochs: 2\n")
    assert snapshot(exp) == before
    assert run(tmp_path, kws_corpus, DARTS + "epochs: 2\n", "--allow-config-change") == 0
    assert "epochs: 1 -> 2" in (exp / "config_changes.log").read_text()
    assert load_checkpoint(exp / "epoch-2.pt")["epoch"] == 2


def test_a_stale_or_empty_best_pt_is_rebuilt_on_rerun(tmp_path, kws_corpus):
    exp = tmp_path / "exp"
    assert run(tmp_path, kws_corpus, SMALL + "epochs: 2\n") == 0  # no valid data: best = last epoch
    # A kill between writing epoch-2.pt and best.pt leaves best.pt at epoch 1.
    (exp / "best.pt").write_bytes((exp / "epoch-1.pt").read_bytes())
    assert run(tmp_path, kws_corpus, SMALL + "epochs: 2\n") == 0
    assert (exp / "best.pt").read_bytes() == (exp / "epoch-2.pt").read_bytes()
    (exp / "best.pt").write_bytes(b"")
    assert run(tmp_path, kws_corpus, SMALL + "epochs: 2\n") == 0
    assert (exp / "best.pt").read_bytes() == (exp / "epoch-2.pt").read_bytes()


class Killed(Exception):
    pass


def test_a_run_killed_after_an_epoch_resumes_to_the_same_weights(tmp_path, kws_corpus, monkeypatch):
    # Drop-path draws from torch's RNG in every step from epoch 2 on (its rate ramps up from 0).
    body = DARTS + "epochs: 3\n"
    assert run(tmp_path, kws_corpus, body, exp="unbroken") == 0
    prune = train.prune_checkpoints

    def kill_after_epoch_2(exp, keep):
        if (exp / "epoch-2.pt").exists():
            raise Killed()
        prune(exp, keep)

    with monkeypatch.context() as m:
        m.setattr(train, "prune_checkpoints", kill_after_epoch_2)
        with pytest.raises(Killed):
            run(tmp_path, kws_corpus, body, exp="killed")
    assert not (tmp_path / "killed" / "epoch-3.pt").exists()
    assert run(tmp_path, kws_corpus, body, exp="killed") == 0
    a = load_checkpoint(tmp_path / "unbroken" / "epoch-3.pt")["model"]
    b = load_checkpoint(tmp_path / "killed" / "epoch-3.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_a_batch_larger_than_the_data_is_an_error_not_an_epoch_of_zero_steps(tmp_path, kws_corpus):
    # 12 training clips, drop_last: batch 100 (the paper's) used to "train" 0 steps per epoch and
    # write a best.pt of untrained weights.
    with pytest.raises(FormatError, match=r"data/train: 12 examples make no full batch of batch_size 100, so "
                                          r"an epoch would train 0 steps \(fix: .*batch_size=6\)"):
        run(tmp_path, kws_corpus, SMALL + "epochs: 1\n", "--override", "batch_size=100")
    assert not (tmp_path / "exp" / "best.pt").exists()


def test_a_search_half_smaller_than_a_batch_is_an_error(tmp_path, kws_corpus):
    from nasr.bin import search

    train_dir, valid_dir, _ = kws_corpus
    cfg = tmp_path / "search_tiny.yaml"
    cfg.write_text("space: nas1\nepochs: 1\nbatch_size: 8\nmodel: {C: 4, layers: 2, steps: 2, multiplier: 2}\n")
    # valid has 6 clips: the alpha half makes no batch of 8.
    with pytest.raises(FormatError, match=r"data/valid: 6 examples make no full batch of batch_size 8"):
        search.main(["--config", str(cfg), "--train-data", str(train_dir), "--valid-data", str(valid_dir),
                     "--exp-dir", str(tmp_path / "search"), "--device", "cpu"])
    assert not (tmp_path / "search" / "config.yaml").exists()
