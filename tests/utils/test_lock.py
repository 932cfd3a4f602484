"""One writer per directory: nasr.utils.lock and the entry points that hold it."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nasr.utils.lock import LOCK_NAME, LockError, dir_lock

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
HOLD = ("import sys, time\nfrom nasr.utils.lock import dir_lock\n"
        "with dir_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n")


def hold_in_child(directory):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_job_fails_at_once_naming_the_holder(tmp_path):
    child = hold_in_child(tmp_path)
    try:
        t0 = time.time()
        with pytest.raises(LockError) as e:
            with dir_lock(tmp_path, what="exp dir"):
                pass
        assert time.time() - t0 < 5
        msg = str(e.value)
        assert f"pid {child.pid} on host {socket.gethostname()}" in msg and "time.sleep" not in msg
        assert "-c" in msg and str(tmp_path) in msg and "exp dir is in use" in msg
    finally:
        child.kill()
        child.wait()


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path):
    child = hold_in_child(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert f"pid {child.pid}" in (tmp_path / LOCK_NAME).read_text()  # left behind by kill -9
    with dir_lock(tmp_path):
        assert f"pid {os.getpid()}" in (tmp_path / LOCK_NAME).read_text()
    assert not (tmp_path / LOCK_NAME).exists()
    with dir_lock(tmp_path):  # released: the next job gets it
        pass


def _args(tmp_path, exp):
    conf = tmp_path / "conf.yaml"
    conf.write_text("epochs: 1\n")
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    return {"train": ["--config", str(conf), "--train-data", str(data), "--exp-dir", str(exp)],
            "search": ["--config", str(conf), "--train-data", str(data), "--valid-data", str(data),
                       "--exp-dir", str(exp)],
            "search_pdarts": ["--config", str(conf), "--train-data", str(data), "--lang", str(data),
                              "--exp-dir", str(exp)],
            "train_ctc": ["--config", str(conf), "--train-data", str(data), "--lang", str(data),
                          "--exp-dir", str(exp)]}


@pytest.mark.parametrize("step", ["train", "search", "search_pdarts", "train_ctc"])
def test_training_and_search_refuse_an_exp_dir_in_use(tmp_path, step):
    # Before: two trainings on one exp dir both trained (9 epoch lines in the log for 6 epochs).
    import importlib

    exp = tmp_path / "exp"
    main = importlib.import_module(f"nasr.bin.{step}").main
    with dir_lock(exp, what="exp dir"):
        with pytest.raises(LockError, match=f"pid {os.getpid()}"):
            main(_args(tmp_path, exp)[step])
    assert sorted(p.name for p in exp.iterdir()) == []  # nothing written: no log/, no config.yaml


@pytest.mark.parametrize("step,missing", [("train", "config"), ("search", "data"), ("evaluate", "exp"),
                                          ("decode_ctc", "exp")])
def test_missing_inputs_give_one_line_and_leave_no_log_dir(tmp_path, step, missing):
    exp = tmp_path / "exp"
    args = _args(tmp_path, exp)
    if step in ("evaluate", "decode_ctc"):
        args[step] = ["--exp-dir", str(exp), "--data", str(tmp_path / "data")]
    if missing == "config":
        (tmp_path / "conf.yaml").unlink()
    elif missing == "data":
        (tmp_path / "data").rmdir()
    proc = subprocess.run([sys.executable, "-m", f"nasr.bin.{step}", *args[step]], env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"{step}: error: ") and "does not exist" in lines[0] and "fix:" in lines[0]
    assert not exp.exists()
