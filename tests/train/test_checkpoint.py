import torch

import pytest

from nasr.train.checkpoint import (CheckpointError, average_checkpoints, latest_checkpoint, load_checkpoint,
                                   save_checkpoint)


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
