import torch

import pytest

from nasr.train.checkpoint import (CheckpointError, average_checkpoints, ensure_best, latest_checkpoint,
                                   load_checkpoint, restore_rng_states, rng_states, save_checkpoint)


def test_round_trip_and_latest(tmp_path):
    m = torch.nn.Linear(3, 2)
    for e in (1, 2, 3):
        save_checkpoint(tmp_path / f"epoch-{e}.pt", {"model": m.state_dict(), "epoch": e})
    assert latest_checkpoint(tmp_path).name == "epoch-3.pt"
    assert load_checkpoint(tmp_path / "epoch-2.pt")["epoch"] == 2


def test_corrupt_checkpoint_is_named_and_skipped(tmp_path):
    m = torch.nn.Linear(3, 2)
    save_checkpoint(tmp_path / "epoch-1.pt", {"model": m.state_dict(), "epoch": 1})
    (tmp_path / "epoch-2.pt").write_bytes(b"\x80garbage")
    with pytest.raises(CheckpointError, match=r"epoch-2\.pt: corrupt"):
        load_checkpoint(tmp_path / "epoch-2.pt")
    # A resume falls back to the newest checkpoint that loads.
    assert latest_checkpoint(tmp_path).name == "epoch-1.pt"


def test_average(tmp_path):
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path / "a.pt", {"model": a.state_dict()})
    save_checkpoint(tmp_path / "b.pt", {"model": b.state_dict()})
    avg = average_checkpoints([tmp_path / "a.pt", tmp_path / "b.pt"])
    assert torch.allclose(avg["weight"], (a.weight + b.weight) / 2)


def test_load_model_state_names_the_checkpoint_and_the_fix_on_a_shape_mismatch(tmp_path):
    # A changed config under the same exp dir used to surface as torch's bare size-mismatch list.
    from nasr.train.checkpoint import CheckpointError, load_model_state

    path = tmp_path / "exp" / "epoch-1.pt"
    save_checkpoint(path, {"model": torch.nn.Linear(4, 3).state_dict()})
    state = load_checkpoint(path)
    other = torch.nn.Linear(5, 3)
    with pytest.raises(CheckpointError, match=r"epoch-1\.pt: checkpoint does not fit this model .*weight "
                                              r"\[3, 4\] in the checkpoint vs \[3, 5\] here.*fix:"):
        load_model_state(other, state, path)
    same = torch.nn.Linear(4, 3)
    load_model_state(same, state, path)
    assert torch.equal(same.weight, state["model"]["weight"])


def _best_is_first(history):
    return history[0]["epoch"]


def test_best_pt_is_rebuilt_from_the_history_or_refused(tmp_path):
    m = torch.nn.Linear(3, 2)
    history = [{"epoch": 1}, {"epoch": 2}]
    for e in (1, 2):
        save_checkpoint(tmp_path / f"epoch-{e}.pt", {"model": m.state_dict(), "epoch": e, "history": history[:e]})
    assert "is missing" in ensure_best(tmp_path, history, _best_is_first)
    assert load_checkpoint(tmp_path / "best.pt")["epoch"] == 1
    assert ensure_best(tmp_path, history, _best_is_first) is None  # right already: untouched
    (tmp_path / "best.pt").write_bytes(b"\x80garbage")
    assert "unreadable" in ensure_best(tmp_path, history, _best_is_first)
    # Stale (epoch 2 where the history says 1) and epoch-1.pt pruned: refused, not left as it is.
    (tmp_path / "best.pt").write_bytes((tmp_path / "epoch-2.pt").read_bytes())
    (tmp_path / "epoch-1.pt").unlink()
    with pytest.raises(CheckpointError, match=r"best\.pt holds epoch 2 but the epoch history says the best "
                                              r"epoch is 1, and it cannot be rebuilt: .*epoch-1\.pt"):
        ensure_best(tmp_path, history, _best_is_first)


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    import random

    import numpy as np

    torch.manual_seed(3)
    save_checkpoint(tmp_path / "epoch-1.pt", {"model": {}, "rng": rng_states()})
    want = (torch.rand(3), np.random.rand(), random.random())
    restore_rng_states(load_checkpoint(tmp_path / "epoch-1.pt")["rng"])
    got = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(want[0], got[0]) and want[1:] == got[1:]
