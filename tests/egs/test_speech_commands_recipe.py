"""End to end: egs/speech_commands/run.sh --synth true with a tiny profile, every stage."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    cmd = ["bash", "run.sh", "--synth", "true", "--synth-speakers", "10", "--profile", str(tmp_path / "tiny.yaml")]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    genotype = json.loads((work / "exp/search_nas1/genotype.json").read_text())
    assert genotype["space"] == "nas1" and len(genotype["normal"]) == 8
    assert (work / "exp/search_nas1/cells_normal.dot").is_file() or list((work / "exp/search_nas1").glob("cells*.dot"))
    results = json.loads((work / "exp/results.json").read_text())
    systems = {r["system"] for r in results["systems"]}
    assert systems == {"train_nas1", "train_res15", "train_tc_resnet14"}
    table = (work / "RESULTS.md").read_text()
    for r in results["systems"]:
        assert f"{100 * r['acc']:.2f}" in table
    # Rerunning a finished recipe is a no-op for the expensive stages (resumed from disk).
    proc2 = subprocess.run(cmd + ["--stage", "3", "--stop-stage", "3"], cwd=work, env=env,
                           capture_output=True, text=True)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert "resumed from" in proc2.stderr
