"""The tower entry points in-process on a tiny featurised LID set: search with 2 trainers in turn,
ensemble train/evaluate, report, and the bad-input paths (unknown block, unparsable tower, foreign store)."""
import json
import sqlite3

import numpy as np
import pytest
import torch

from nasr.bin import compute_feats, report_lid, tower_ensemble, tower_search
from nasr.data.audio import write_wav
from nasr.tower.store import CandidateStore

LANGS = {"aa": 300.0, "bb": 900.0}


def make_set(root, name, n, seed):
    d = root / name
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    wav, u2s, u2l = [], [], []
    for lang, f0 in LANGS.items():
        for i in range(n):
            utt = f"{lang}-{name}-{i:02d}"
            t = np.arange(int(16000 * 0.6)) / 16000
            x = 0.3 * np.sin(2 * np.pi * f0 * (1 + 0.05 * rng.standard_normal()) * t) + 0.01 * rng.standard_normal(t.size)
            path = root / "wav" / f"{utt}.wav"
            path.parent.mkdir(exist_ok=True)
            write_wav(path, x.astype(np.float32), 16000)
            wav.append(f"{utt} {path}")
            u2s.append(f"{utt} {utt}")
            u2l.append(f"{utt} {lang}")
    for fname, lines in (("wav.scp", wav), ("utt2spk", u2s), ("spk2utt", u2s), ("utt2lang", u2l)):
        (d / fname).write_text("\n".join(sorted(lines)) + "\n")
    assert compute_feats.main(["--data-dir", str(d), "--preset", "lid_fbank", "--nj", "1", "--no-progress"]) == 0
    return d


@pytest.fixture(scope="module")
def lid_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("lid")
    cfg = root / "tower.yaml"
    cfg.write_text("task: lid\nblocks: [rnn_8, proj_8, svdf_8_4]\nmax_frames: 50\n"
                   "search: {max_blocks: 2, explore_m: 1, train_steps: 6, eval_every: 3}\n"
                   "train: {lr: 0.01, dropout: 0.1, batch_size: 4}\n"
                   "tune: {enabled: true, batch_size: [4], startup_trials: 1}\n"
                   "ensemble: {train_steps: 8, eval_every: 4}\n")
    return root, cfg, make_set(root, "train", 6, 0), make_set(root, "dev", 3, 1)


def test_search_ensemble_report(lid_sets, tmp_path, store_location):
    """On an SQLite file and on a PostgreSQL server (the store of trainers on many machines)."""
    root, cfg, train, dev = lid_sets
    exp = tmp_path / "search"
    common = ["--config", str(cfg), "--train-data", str(train), "--valid-data", str(dev), "--exp-dir", str(exp),
              "--store", store_location]
    for trainer in ("1", "2"):
        assert tower_search.main(common + ["--trainer-id", trainer, "--max-candidates", str(2 * int(trainer))]) == 0
    with CandidateStore(store_location) as s:
        cands = s.candidates()
        assert [c.status for c in cands] == ["done"] * 4 and {c.trainer_id for c in cands} == {"1", "2"}
        assert all(c.hparams["batch_size"] == 4 and "trial" in c.hparams for c in cands)
        grown = [c for c in cands if c.mutation == "grow"]
        assert grown and all(c.transferred == 1 for c in grown)  # parent's block copied
    search = json.loads((exp / "search.json").read_text())
    assert search["candidates"] == {"done": 4} and search["tuning"]["trials"] == 4
    tower = json.loads((exp / "tower.json").read_text())
    assert tower["loss"] == min(c.loss for c in cands)

    ens = tmp_path / "ens"
    for m in (1, 2):
        assert tower_ensemble.main(["train", "--config", str(cfg), "--store", store_location, "--train-data",
                                    str(train), "--valid-data", str(dev), "--exp-dir", str(ens), "--member", str(m)]) == 0
    seeds = [json.loads((ens / f"member-{m}" / "train.json").read_text())["seed"] for m in (1, 2)]
    assert seeds[0] != seeds[1]
    assert tower_ensemble.main(["evaluate", "--exp-dir", str(ens), "--data", str(dev), "--name", "test",
                                "--num-members", "1,2"]) == 0
    r2 = json.loads((ens / "decode_test_p2" / "results.json").read_text())
    r1 = json.loads((ens / "decode_test_p1" / "results.json").read_text())
    assert r2["p"] == 2 and r2["params"] == 2 * r1["params"] and r2["num"] == 6
    assert (ens / "decode_test_p2" / "summary").read_text().startswith("%ACC")
    out = tmp_path / "RESULTS.md"
    assert report_lid.main(["--exp-root", str(tmp_path), "--search-dir", str(exp), "--store", store_location,
                            "--out", str(out)]) == 0
    text = out.read_text()
    assert "| ens | " in text and f"{100 * r2['acc']:.2f}" in text and (tmp_path / "RESULTS_curves.png").is_file()


def test_bad_inputs_fail_clearly(lid_sets, tmp_path, capsys):
    root, cfg, train, dev = lid_sets
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text(cfg.read_text().replace("svdf_8_4", "gru_8"))
    args = ["--train-data", str(train), "--valid-data", str(dev), "--exp-dir", str(tmp_path / "x")]
    assert tower_search.main(["--config", str(bad_cfg)] + args) == 1
    assert "unknown block 'gru_8'" in capsys.readouterr().err

    foreign = tmp_path / "foreign.db"
    con = sqlite3.connect(foreign)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    before = foreign.read_bytes()
    assert tower_search.main(["--config", str(cfg), "--store", str(foreign)] + args) == 1
    assert "not a candidate store" in capsys.readouterr().err and foreign.read_bytes() == before

    tower = tmp_path / "t.json"
    tower.write_text('{"blocks": [\n"rnn_8",\n]}')
    assert tower_ensemble.main(["train", "--config", str(cfg), "--tower", str(tower), "--train-data", str(train),
                                "--valid-data", str(dev), "--exp-dir", str(tmp_path / "e"), "--member", "1"]) == 1
    assert "t.json:3: tower JSON does not parse" in capsys.readouterr().err


def test_member_retrained_for_another_tower_never_keeps_the_old_weights(lid_sets, tmp_path, monkeypatch):
    # Before: a member dir retrained for another tower kept the old model.pt until the new one was
    # saved, so a kill right after the new train.json left old weights passing for the new tower.
    from nasr.tower import ensemble
    from nasr.tower.data import load_sets

    root, cfg, train, dev = lid_sets
    train_ds, valid_ds, names = load_sets("lid", train, dev, 1, 50, None, None)
    hp = {"lr": 0.01, "dropout": 0.0, "batch_size": 4}
    kw = dict(steps=2, eval_every=2, seed=1, source={})
    ensemble.train_member(tmp_path, 1, ["rnn_8"], hp, train_ds, valid_ds, names, **kw)

    def killed(*a, **k):
        raise KeyboardInterrupt("killed after train.json")

    monkeypatch.setattr("nasr.train.checkpoint.save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        ensemble.train_member(tmp_path, 1, ["proj_8"], hp, train_ds, valid_ds, names, **kw)
    monkeypatch.undo()
    assert not (tmp_path / "member-1" / "model.pt").exists()
    info = ensemble.train_member(tmp_path, 1, ["proj_8"], hp, train_ds, valid_ds, names, **kw)
    (member, model), = ensemble.load_members(tmp_path)
    assert info["blocks"] == member["blocks"] == ["proj_8"] and "blocks.0.conv.weight" in model.state_dict()


def test_search_goes_on_when_a_trainer_is_killed(lid_sets, tmp_path):
    """Two trainer processes; one is killed (SIGKILL) mid-training.  The other marks its candidate
    lost at its next claim and finishes the budget; nothing else is lost."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root, cfg, train, dev = lid_sets
    exp = tmp_path / "search"
    common = ["--config", str(cfg), "--train-data", str(train), "--valid-data", str(dev), "--exp-dir", str(exp)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    doomed = subprocess.Popen([sys.executable, "-m", "nasr.bin.tower_search", *common, "--trainer-id", "1",
                               "--override", "search.train_steps=1000000", "--override", "tune.enabled=false"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            if (exp / "store.db").is_file():
                with CandidateStore(exp / "store.db") as s:
                    if s.counts().get("running"):
                        break
            time.sleep(0.5)
        else:
            pytest.fail("the first trainer never claimed a candidate")
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(30)
    finally:
        doomed.kill()
    assert tower_search.main(common + ["--trainer-id", "2", "--max-candidates", "3"]) == 0
    with CandidateStore(exp / "store.db") as s:
        cands = s.candidates()
    assert [(c.trainer_id, c.status) for c in cands] == [("1", "lost"), ("2", "done"), ("2", "done"), ("2", "done")]
    assert "process ended" in cands[0].error


def test_training_follows_the_staircase_schedule(lid_sets):
    # lr x 0 from the middle on: the second half's Adam steps move nothing, so the weights are those
    # of training the first half alone (and differ from training on without the decay).
    from nasr.tower.data import load_sets
    from nasr.tower.search import train_steps
    from nasr.tower.tower import TowerNet

    _, _, train, dev = lid_sets
    train_ds, valid_ds, names = load_sets("lid", train, dev, 1, 50, None, None)

    def trained(steps, **schedule):
        torch.manual_seed(0)
        model = TowerNet(["rnn_8", "proj_8"], int(train_ds[0][0].shape[-1]), len(names), dropout=0.1)
        train_steps(model, train_ds, valid_ds, steps=steps, lr=0.01, batch_size=4, seed=3, eval_every=100,
                    **schedule)
        return model.state_dict()

    half, decayed, undecayed = trained(4), trained(8, lr_decay=0.0, lr_decay_times=1), trained(8)
    assert all(torch.equal(half[k], decayed[k]) for k in half)
    assert not all(torch.equal(half[k], undecayed[k]) for k in half)


def test_member_is_retrained_when_its_hyperparameters_change(lid_sets, tmp_path):
    # Before: only the tower was compared, so a baseline given new hyperparameters kept its old weights.
    from nasr.tower import ensemble
    from nasr.tower.data import load_sets

    _, _, train, dev = lid_sets
    train_ds, valid_ds, names = load_sets("lid", train, dev, 1, 50, None, None)
    kw = dict(steps=2, eval_every=2, seed=1, source={})
    first = ensemble.train_member(tmp_path, 1, ["rnn_8"], {"lr": 0.01, "dropout": 0.0, "batch_size": 4},
                                  train_ds, valid_ds, names, **kw)
    again = ensemble.train_member(tmp_path, 1, ["rnn_8"], {"lr": 0.01, "dropout": 0.0, "batch_size": 4},
                                  train_ds, valid_ds, names, **kw)
    assert again["train_seconds"] == first["train_seconds"]          # resumed, not retrained
    tuned = ensemble.train_member(tmp_path, 1, ["rnn_8"], {"lr": 0.003, "dropout": 0.0, "batch_size": 4},
                                  train_ds, valid_ds, names, **kw)
    assert tuned["hparams"]["lr"] == 0.003
    (member, _), = ensemble.load_members(tmp_path)
    assert member["hparams"]["lr"] == 0.003


def test_baseline_takes_the_searched_hyperparameters(lid_sets, tmp_path):
    root, cfg, train, dev = lid_sets
    exp = tmp_path / "search"
    store = str(exp / "store.db")
    assert tower_search.main(["--config", str(cfg), "--train-data", str(train), "--valid-data", str(dev),
                              "--exp-dir", str(exp), "--store", store, "--max-candidates", "2"]) == 0
    tower = tmp_path / "baseline.json"
    tower.write_text('{"blocks": ["rnn_8", "rnn_8"]}')
    base = tmp_path / "baseline"
    assert tower_ensemble.main(["train", "--config", str(cfg), "--tower", str(tower), "--hparams-from", store,
                                "--train-data", str(train), "--valid-data", str(dev), "--exp-dir", str(base),
                                "--member", "1"]) == 0
    with CandidateStore(store) as s:
        best = s.best(1)[0]
    info = json.loads((base / "member-1" / "train.json").read_text())
    assert info["blocks"] == ["rnn_8", "rnn_8"] and info["source"]["hparams_candidate"] == best.id
    assert {k: info["hparams"][k] for k in ("lr", "dropout", "batch_size")} == \
        {k: best.hparams[k] for k in ("lr", "dropout", "batch_size")}
    assert tower_ensemble.main(["train", "--config", str(cfg), "--store", store, "--hparams-from", store,
                                "--train-data", str(train), "--valid-data", str(dev), "--exp-dir",
                                str(tmp_path / "x"), "--member", "1"]) == 1


def test_a_search_whose_candidates_all_fail_exits_non_zero(lid_sets, tmp_path, capsys, monkeypatch):
    # Before: exit 0 with {'failed': 2}, and a rerun said only that the budget was spent.
    root, cfg, train, dev = lid_sets

    def broken(*a, **k):
        raise ValueError("input_dim mismatch in block 0")

    monkeypatch.setattr("nasr.tower.search.train_candidate", broken)
    args = ["--config", str(cfg), "--train-data", str(train), "--valid-data", str(dev),
            "--exp-dir", str(tmp_path / "s"), "--max-candidates", "2"]
    for _ in range(2):  # the first run, then a rerun on the spent budget
        assert tower_search.main(args) == 1
        err = capsys.readouterr().err
        assert "all 2 candidate(s) failed" in err and "ValueError: input_dim mismatch in block 0" in err


def test_a_second_trainer_with_a_live_trainers_id_is_refused(lid_sets, tmp_path, capsys):
    import os

    from nasr.utils.lock import LOCK_NAME, dir_lock

    root, cfg, train, dev = lid_sets
    exp = tmp_path / "s"
    args = ["--config", str(cfg), "--train-data", str(train), "--valid-data", str(dev), "--exp-dir", str(exp),
            "--max-candidates", "1", "--trainer-id", "3"]
    with dir_lock(exp, name=f"{LOCK_NAME}.trainer-3"):
        assert tower_search.main(args) == 1
    err = capsys.readouterr().err
    assert "trainer id '3' is in use" in err and f"pid {os.getpid()}" in err and "--trainer-id" in err
    assert not (exp / "store.db").exists()
    assert tower_search.main(args[:-1] + ["4"]) == 0  # another id on the same exp dir and store runs


def _make_read_only(path):
    """Read-only even for root (chattr +i) where the file system allows; None where it cannot."""
    import os
    import subprocess

    if os.geteuid() != 0:
        path.chmod(0o444)
        path.parent.chmod(0o555)
        return lambda: (path.parent.chmod(0o755), path.chmod(0o644))
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        return None
    return lambda: subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_store_gives_a_clear_message(lid_sets, tmp_path, capsys):
    # Before: a raw sqlite3.OperationalError traceback.
    root, cfg, train, dev = lid_sets
    store = tmp_path / "store.db"
    CandidateStore(store).close()
    undo = _make_read_only(store)
    if undo is None:
        pytest.skip("cannot make a file read-only for root here (no chattr +i)")
    try:
        for tune in ("true", "false"):
            assert tower_search.main(["--config", str(cfg), "--train-data", str(train), "--valid-data", str(dev),
                                      "--exp-dir", str(tmp_path / "s"), "--store", str(store),
                                      "--override", f"tune.enabled={tune}", "--max-candidates", "1"]) == 1
            err = capsys.readouterr().err
            assert f"{store}: the candidate store is read-only" in err and "fix: make" in err, err
    finally:
        undo()
