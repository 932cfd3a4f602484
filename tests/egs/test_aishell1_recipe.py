"""End to end: egs/aishell1/run.sh --synth true on a tiny corpus with a tiny profile, every stage,
both op spaces (ASRNET-A and ASRNET-B), 1 epoch per P-DARTS stage and 1 training epoch."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs" / "aishell1"

TINY = """
pdarts_asr_revised: &search
  stages:
    - {layers: 3, ops_per_edge: 8, dropout: 0.1}
    - {layers: 3, ops_per_edge: 5, dropout: 0.1}
    - {layers: 4, ops_per_edge: 3, dropout: 0.1}
  epochs_per_stage: 1
  warmup_epochs: 0
  model: {C: 4, pc_k: 1}
  batch_size: 4
  pick: {steps: 2, batch_size: 4, model: {C: 4, layers: 3}}
pdarts_darts: *search
train_asrnet_b: &train
  model: {C: 4, layers: 3}
  epochs: 1
  batch_size: 4
train_asrnet_a: *train
"""


def test_synth_recipe_end_to_end_tiny(tmp_path):
    work = tmp_path / "a1"
    work.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "conf", "local", "utils"):
        (work / name).symlink_to(RECIPE / name)
    (tmp_path / "tiny.yaml").write_text(TINY)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    cmd = ["bash", "run.sh", "--synth", "true", "--synth-speakers", "2 1 1", "--synth-utts", "4",
           "--unit", "char", "--seeds", "2", "--search-set", "data/train",
           "--profile", str(tmp_path / "tiny.yaml")]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    for space in ("asr_revised", "darts"):
        sdir = work / f"exp/pdarts_{space}"
        genotype = json.loads((sdir / "genotype.json").read_text())
        assert genotype["space"] == space and len(genotype["normal"]) == 8
        seeds = json.loads((sdir / "seeds.json").read_text())
        assert [s["seed"] for s in seeds["seeds"]] == [1, 2]
        assert all(0.0 <= s["dev_ter"] for s in seeds["seeds"]) and "dev TER" in seeds["picked_by"]
        assert all((sdir / f"seed-{s}/genotype.json").is_file() for s in (1, 2))
        assert (sdir / "seed-1/health.png").is_file()
        assert sum(op == "avg_pool_3x3" for op, _ in genotype["normal"]) <= 2
    assert (work / "data/train_sp/feats.scp").is_file()
    results = json.loads((work / "exp/results.json").read_text())
    assert {r["system"] for r in results["systems"]} == {"train_asrnet_a", "train_asrnet_b"}
    table = (work / "RESULTS.md").read_text()
    for r in results["systems"]:
        assert f"{100 * r['token_accuracy']:.2f}" in table
        assert r["cer_summary"].startswith("%CER ")
    summary = (work / "exp/train_asrnet_b/decode_test/char/summary").read_text()
    assert summary.startswith("%CER ")
    # A finished retrain resumes from its checkpoint instead of starting over.
    proc2 = subprocess.run(cmd + ["--stage", "5", "--stop-stage", "5"], cwd=work, env=env,
                           capture_output=True, text=True)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    assert "resumed from" in proc2.stderr
