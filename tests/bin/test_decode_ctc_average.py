"""decode_ctc's avg-last-N.pt: reused only while it is newer than the epochs it averages."""
import os

import torch

from nasr.bin.decode_ctc import averaged_checkpoint
from nasr.train.checkpoint import load_checkpoint, save_checkpoint


def _epoch(exp, e, value, mtime):
    path = exp / f"epoch-{e}.pt"
    save_checkpoint(path, {"model": {"w": torch.full((2,), float(value))}, "epoch": e})
    os.utime(path, (mtime, mtime))


def test_average_is_redone_after_an_epoch_is_retrained(tmp_path):
    for e, v in ((1, 0.0), (2, 2.0), (3, 4.0)):
        _epoch(tmp_path, e, v, 1000 + e)
    out = averaged_checkpoint(tmp_path, 2)
    assert torch.allclose(load_checkpoint(out)["model"]["w"], torch.tensor([3.0, 3.0]))
    os.utime(out, (2000, 2000))
    assert averaged_checkpoint(tmp_path, 2) == out  # same epochs, newer file: reused
    # Before: epochs 2-3 retrained (same numbers, new weights) still gave the old average.
    _epoch(tmp_path, 3, 8.0, 3000)
    assert torch.allclose(load_checkpoint(averaged_checkpoint(tmp_path, 2))["model"]["w"], torch.tensor([5.0, 5.0]))
