"""End to end: egs/speech_commands/run.sh on the path a researcher takes, without --synth: a tiny
corpus laid out exactly as Speech Commands (word folders, _background_noise_/, validation_list.txt,
testing_list.txt; made by the recipe's own `--synth true` stage 0) given with --corpus-dir, every
stage to the report with a tiny profile; then a rerun of the finished recipe redoes nothing."""
import json
import os
import re
import shutil
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
  batch_size: 16
train_tc_resnet14:
  epochs: 1
  batch_size: 16
"""


def run(cmd, cwd, env):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def scratch_recipe(root: Path) -> Path:
    work = root / "sc"
    work.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "conf", "local", "utils"):
        (work / name).symlink_to(RECIPE / name)
    return work


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sc")
    work = scratch_recipe(tmp)
    (tmp / "tiny.yaml").write_text(TINY)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    made = run(["bash", "run.sh", "--synth", "true", "--synth-speakers", "10", "--stop-stage", "0"], work, env)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    corpus = tmp / "speech_commands_v0.01"
    (work / "corpus/synth_speech_commands").rename(corpus)
    (corpus / ".done").unlink()  # the synthesizer's marker: not part of the release
    # Res15 is left out as --synth true does (it alone would double the test's time); 2 seeds, 2 random draws.
    cmd = ["bash", "run.sh", "--corpus-dir", str(corpus), "--profile", str(tmp / "tiny.yaml"),
           "--baselines", "tc_resnet14", "--seeds", "2", "--random-archs", "2"]
    proc = run(cmd, work, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, env, cmd, corpus, proc


def test_real_corpus_path_end_to_end(recipe):
    work, _, _, corpus, proc = recipe
    assert f"corpus already in {corpus}" in proc.stdout + proc.stderr  # nothing downloaded
    genotype = json.loads((work / "exp/search_nas1/genotype.json").read_text())
    assert genotype["space"] == "nas1" and len(genotype["normal"]) == 8
    assert list((work / "exp/search_nas1").glob("cells*.dot"))
    results = json.loads((work / "exp/results.json").read_text())
    systems = {r["system"] for r in results["systems"]}
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
    for system in systems:
        hist = json.loads((work / "exp" / system / "history.json").read_text())
        assert all("valid" in h for h in hist), system
        assert "held out" in json.loads((work / "exp" / system / "train.json").read_text())["checkpoint_selection"]
    assert "## Selection" in table and "health.json" in " ".join(p.name for p in (work / "exp/search_nas1").iterdir())
    assert f"({corpus})" in table and f"--corpus-dir {corpus}" in table  # says what it was run on
    labels = (work / "data/labels.txt").read_text().split()
    assert labels[:10] == "yes no up down left right on off go stop".split()
    assert labels[10:] == ["_unknown_", "_silence_"]


def test_rerun_of_a_finished_recipe_redoes_nothing(recipe):
    work, env, cmd, _, _ = recipe
    sets = ("train", "valid", "test")
    feats = {s: (work / f"data/{s}/feats.scp").stat().st_mtime_ns for s in sets}
    ckpts = {p: p.stat().st_mtime_ns for p in (work / "exp").rglob("*.pt")}
    assert ckpts
    # Stages 0-4: data prep, features, search and retraining (evaluation and report are cheap).
    proc = run(cmd + ["--stop-stage", "4"], work, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert log.count("is unchanged: kept as it is") == 3
    assert log.count("features are up to date") == 3
    assert {s: (work / f"data/{s}/feats.scp").stat().st_mtime_ns for s in sets} == feats
    assert {p: p.stat().st_mtime_ns for p in (work / "exp").rglob("*.pt")} == ckpts
    assert "resumed from" in log


def test_version_v0_02_with_the_official_lists(recipe, tmp_path):
    """v0.02 has the same layout with five more words; --split official reads its lists."""
    _, env, _, corpus, _ = recipe
    v2 = tmp_path / "speech_commands_v0.02"
    v2.mkdir()
    for p in corpus.iterdir():
        (v2 / p.name).symlink_to(p)
    (v2 / "validation_list.txt").unlink()
    shutil.copy(corpus / "validation_list.txt", v2 / "validation_list.txt")
    (v2 / "forward").mkdir()  # one of the words v0.02 added
    clip = next((corpus / "cat").glob("*.wav"))
    shutil.copy(clip, v2 / "forward" / clip.name)
    with open(v2 / "validation_list.txt", "a") as f:
        f.write(f"forward/{clip.name}\n")
    work = scratch_recipe(tmp_path)
    proc = run(["bash", "run.sh", "--corpus-dir", str(v2), "--version", "v0.02", "--split", "official",
                "--keywords", "yes,no,forward", "--stop-stage", "1"], work, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    test_wavs = (work / "data/test/wav.scp").read_text()
    for rel in (v2 / "testing_list.txt").read_text().split():
        if rel.split("/")[0] in ("yes", "no"):
            assert rel in test_wavs
    assert f"forward/{clip.name}" in (work / "data/valid/wav.scp").read_text()
    assert (work / "data/labels.txt").read_text().split() == ["yes", "no", "forward", "_unknown_", "_silence_"]


def test_stage_8_pareto_on_the_finished_recipe(recipe):
    """Stage 8 on the tiny run: one budgeted search, retrained, every network exported, the figure and
    its table added to RESULTS.md under the command that made them (it printed `./run.sh ...`)."""
    work, env, cmd, corpus, _ = recipe
    proc = run(cmd + ["--stage", "8", "--pareto-targets", "3000"], work, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (work / "RESULTS.md").read_text()
    assert "## Deployment" in table and (work / "RESULTS_pareto.png").stat().st_size > 0
    assert (f"Command: `cd egs/speech_commands && ./run.sh --corpus-dir {corpus} --version v0.01 --split paper "
            f"--seeds 2 --stage 8 --pareto-targets \"3000\"`") in table
    assert f"./run.sh --corpus-dir {corpus} --version v0.01 --split paper --seeds 2`" in table  # stage 7's
    assert "| train_nas1_params3000 | searched with a budget |" in table
    assert (work / "exp/train_nas1_params3000/decode_test/results.json").exists()
    # The main table has the budgeted network's row too (stage 7 ran before it was scored).
    main_table = table.split("## Deployment")[0]
    assert "| train_nas1_params3000 |" in main_table and table.count("## Deployment") == 1
