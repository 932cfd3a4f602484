"""End to end: egs/lid/run.sh on the path a researcher takes, without --synth: a tiny corpus laid out
as VoxLingua107 (<lang>/<video>__U__S<n>---<start>-<end>.wav; made by the recipe's own `--synth
true` stage 0) given with --corpus-dir; prep, features, 2 parallel trainers on one store, ensemble
p=1,2 + baselines, evaluate, report with a tiny profile.  Then reruns redo nothing."""
import shutil
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs" / "lid"

TINY = """
tower_b1:
  blocks: [rnn_8, proj_8, svdf_8_4, lstm_8]
  max_frames: 60
  search: {max_blocks: 2, explore_m: 1, train_steps: 4, eval_every: 2, max_candidates: 4}
  train: {batch_size: 8}
  tune: {batch_size: [8], startup_trials: 1}
  ensemble: {train_steps: 4, eval_every: 2}
"""


@pytest.mark.timeout(900)
def test_lid_recipe_on_a_voxlingua107_tree(tmp_path):
    work = tmp_path / "lid"
    work.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "conf", "local", "utils"):
        (work / name).symlink_to(RECIPE / name)
    (tmp_path / "tiny.yaml").write_text(TINY)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    synth = ["bash", "run.sh", "--synth", "true", "--synth-langs", "en de", "--synth-utts", "8",
             "--synth-speakers", "4"]
    proc = subprocess.run(synth + ["--stop-stage", "0"], cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    corpus = tmp_path / "voxlingua107"
    shutil.copytree(work / "corpus/synth_lid", corpus, ignore=shutil.ignore_patterns(".done"))
    # The languages are there: stage 0 fetches nothing (download stays on, as by default).
    cmd = ["bash", "run.sh", "--corpus-dir", str(corpus), "--langs", "en de", "--ensemble-members", "2",
           "--baseline-towers", "conf/baseline_lstm_small.json conf/baseline_lstm_medium.json",
           "--profile", str(tmp_path / "tiny.yaml")]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("already holds wav files; skipping") == 2

    con = sqlite3.connect(work / "exp/search_b1/store.db")
    rows = con.execute("SELECT status, trainer_id FROM tower_candidates").fetchall()
    assert len(rows) == 4 and {s for s, _ in rows} == {"done"}
    for job in (1, 2):  # both trainers ran (which of them claimed what depends on start-up times)
        assert "Ended (code 0)" in (work / f"exp/search_b1/log/trainer.{job}.log").read_text()
    results = json.loads((work / "exp/results.json").read_text())
    got = {(r["system"], r["p"]) for r in results["systems"]}
    assert got == {("ensemble_b1", 1), ("ensemble_b1", 2), ("baseline_lstm_small", 1), ("baseline_lstm_medium", 1)}
    table = (work / "RESULTS.md").read_text()
    for r in results["systems"]:
        assert f"{100 * r['acc']:.2f}" in table
    assert (work / "RESULTS_curves.png").is_file()
    assert (work / "exp/ensemble_b1/decode_test_p2/confusion.txt").is_file()
    assert f"({corpus})" in table
    # Rerunning data prep and features on the same corpus keeps the data dirs and their features.
    feats = {s: (work / f"data/{s}/feats.scp").stat().st_mtime_ns for s in ("train", "dev", "test")}
    again = subprocess.run(cmd + ["--stop-stage", "2"], cwd=work, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("features are up to date") == 3
    assert {s: (work / f"data/{s}/feats.scp").stat().st_mtime_ns for s in ("train", "dev", "test")} == feats
    # Rerunning the search with its budget spent claims nothing more.
    proc2 = subprocess.run(cmd + ["--stage", "3", "--stop-stage", "3"], cwd=work, env=env,
                           capture_output=True, text=True)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert con.execute("SELECT COUNT(*) FROM tower_candidates").fetchone()[0] == 4
    con.close()
    # Stage 0 again with other corpus options: the corpus is made again, not silently reused
    # (before, .done was a bare marker and --synth-utts was ignored).
    before = len(list((work / "corpus/synth_lid").rglob("*.wav")))
    proc3 = subprocess.run([c if c != "8" else "6" for c in synth] + ["--stage", "0", "--stop-stage", "0"],
                           cwd=work, env=env, capture_output=True, text=True)
    assert proc3.returncode == 0, proc3.stderr[-3000:]
    assert "making it again" in proc3.stdout + proc3.stderr
    assert len(list((work / "corpus/synth_lid").rglob("*.wav"))) == before * 6 // 8
