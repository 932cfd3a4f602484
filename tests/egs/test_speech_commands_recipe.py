"""End to end: egs/speech_commands/run.sh --synth true with a tiny profile, every stage."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs" / "speech_commands"

TINY = """
search_nas1:
  model: {C: 4, layers: 3, stem_stride: 2}
  epochs: 1
  batch_size: 16
  max_train_utts: 64
  max_valid_utts: 64
train_nas1:
  model: {C: 4, layers: 3, stem_stride: 2}
  epochs: 1
  batch_size: 16
train_res15:
  epochs: 1
train_tc_resnet14:
  epochs: 1
"""


@pytest.mark.timeout(900)
def test_synth_recipe_end_to_end(tmp_path):
    work = tmp_path / "sc"
    work.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "conf", "local", "utils"):
        (work / name).symlink_to(RECIPE / name)
    (tmp_path / "tiny.yaml").write_text(TINY)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = ["bash", "run.sh", "--synth", "true", "--synth-speakers", "10", "--profile", str(tmp_path / "tiny.yaml"),
           "--seeds", "2", "--random-archs", "2"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    genotype = json.loads((work / "exp/search_nas1/genotype.json").read_text())
    assert genotype["space"] == "nas1" and len(genotype["normal"]) == 8
    assert (work / "exp/search_nas1/cells_normal.dot").is_file() or list((work / "exp/search_nas1").glob("cells*.dot"))
    results = json.loads((work / "exp/results.json").read_text())
    systems = {r["system"] for r in results["systems"]}
    # --synth true leaves Res15 out (it cannot get the searched network's epochs in the small profile)
    assert systems == {"train_nas1_seed1", "train_nas1_seed2", "train_tc_resnet14_seed1",
                       "train_tc_resnet14_seed2", "train_random_nas1_arch1", "train_random_nas1_arch2"}
    assert yaml.safe_load((work / "exp/train_nas1_seed2/config.yaml").read_text())["seed"] == 2
    draws = [json.loads((work / f"exp/random_nas1_arch{k}/genotype.json").read_text()) for k in (1, 2)]
    assert draws[0] != draws[1] and all(d["space"] == "nas1" for d in draws)
    table = (work / "RESULTS.md").read_text()
    for r in results["systems"]:
        assert f"{100 * r['acc']:.2f}" in table
    assert "| 2 seeds |" in table and "| 2 archs |" in table and "random (nas1)" in table
    # every model trained the same epochs on the same data: verdicts, no "budgets differ"
    assert "no verdict" not in table
    assert re.search(r"`train_nas1` \(2 run\(s\), [\d.]+ ± [\d.]+\) (beats|trails|ties) the 2 random "
                     r"architectures' mean", table)
    # every trained model validates on held-out training speakers each epoch; best.pt is picked there
    for run in systems:
        hist = json.loads((work / "exp" / run / "history.json").read_text())
        assert all("valid" in h for h in hist), run
        assert "held out" in json.loads((work / "exp" / run / "train.json").read_text())["checkpoint_selection"]
    assert "## Selection" in table and "health.json" in " ".join(p.name for p in (work / "exp/search_nas1").iterdir())
    # Rerunning a finished recipe is a no-op for the expensive stages (resumed from disk).
    proc2 = subprocess.run(cmd + ["--stage", "3", "--stop-stage", "3"], cwd=work, env=env,
                           capture_output=True, text=True)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert "resumed from" in proc2.stderr
