"""Progress of long loops: a bar on a terminal, log lines (nothing redrawn) in a log file."""
import io
import logging
import re
import sys
from pathlib import Path

import torch

from nasr.utils.log import LogProgress, progress

ROOT = Path(__file__).resolve().parents[2]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_and_a_file_gets_log_lines(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", Terminal())
    bar = progress(range(3), desc="x")
    assert not isinstance(bar, LogProgress) and list(bar) == [0, 1, 2]
    assert "\r" in sys.stderr.getvalue()

    log_file = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log_file)
    caplog.set_level(logging.INFO, logger="nasr.progress")
    bar = progress(range(4), desc="train epoch 1", unit="batch", interval=0.0)
    for _ in bar:  # ends with the loop, as tqdm does
        bar.set_postfix(loss="0.500")
    assert log_file.getvalue() == ""
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5  # one per batch at interval 0, then the end
    assert re.match(r"train epoch 1: 1/4 batch in \d+ s \(.* batch/s\) loss=0\.500$", lines[0])
    assert lines[-1].startswith("train epoch 1 done: 4/4 batch")


def test_a_short_loop_logs_nothing_and_disable_shows_nothing(monkeypatch, caplog):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    caplog.set_level(logging.INFO, logger="nasr.progress")
    with progress(total=10, desc="features") as bar:  # interval 60 s: done well within it
        bar.update(10)
    monkeypatch.setattr(sys, "stderr", Terminal())
    with progress(total=10, disable=True, interval=0.0) as bar:
        bar.update(10)
    assert caplog.records == [] and sys.stderr.getvalue() == ""


def test_the_training_loop_redraws_nothing_into_a_log_file(capsys):
    from nasr.train.loop import train_one_epoch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x), None

    model = Net()
    data = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1])) for _ in range(3)]
    train_one_epoch(model, data, torch.optim.SGD(model.parameters(), lr=0.1), torch.device("cpu"), epoch=1)
    err = capsys.readouterr().err
    assert "\r" not in err, err


def test_loops_show_progress_only_through_nasr_utils_log():
    """One place decides bar or log lines: no other module drives tqdm itself."""
    users = [str(p.relative_to(ROOT)) for d in ("nasr", "bench", "local") for p in (ROOT / d).rglob("*.py")
             if re.search(r"^\s*(from tqdm|import tqdm)", p.read_text(), re.M)]
    assert users == ["nasr/utils/log.py"]
