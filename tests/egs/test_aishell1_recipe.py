"""End to end: egs/aishell1/run.sh on the path a researcher takes, without --synth: a tiny corpus laid
out as the AISHELL-1 release unpacked by hand (data_aishell/wav/<speaker>.tar.gz,
data_aishell/transcript/aishell_transcript_v0.8.txt, resource_aishell/lexicon.txt; made by the
recipe's own `--synth true` stage 0 and packed per speaker) given with --corpus-dir, with the
paper's syllable units: every stage, both op spaces (ASRNET-A and ASRNET-B), 2 search seeds,
1 epoch per P-DARTS stage and 1 training epoch.  Then reruns redo nothing."""
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
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


def pack_like_the_release(corpus: Path) -> None:
    """data_aishell.tgz holds one archive per speaker: wav/S0002.tar.gz -> train/S0002/*.wav."""
    wav = corpus / "data_aishell" / "wav"
    for subset in ("train", "dev", "test"):
        for spk in sorted((wav / subset).iterdir()):
            with tarfile.open(wav / f"{spk.name}.tar.gz", "w:gz") as t:
                t.add(spk, arcname=f"{subset}/{spk.name}")
        shutil.rmtree(wav / subset)
    (corpus / ".done").unlink()  # the synthesizer's marker: not part of the release


def test_recipe_on_an_aishell1_tree(tmp_path):
    work = tmp_path / "a1"
    work.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "conf", "local", "utils"):
        (work / name).symlink_to(RECIPE / name)
    (tmp_path / "tiny.yaml").write_text(TINY)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    made = subprocess.run(["bash", "run.sh", "--synth", "true", "--synth-speakers", "2 1 1", "--synth-utts", "4",
                           "--stop-stage", "0"], cwd=work, env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    corpus = tmp_path / "aishell"
    (work / "corpus/synth_aishell1").rename(corpus)
    pack_like_the_release(corpus)
    cmd = ["bash", "run.sh", "--corpus-dir", str(corpus), "--seeds", "2", "--search-set", "data/train",
           "--profile", str(tmp_path / "tiny.yaml"), "--random-archs", "1", "--train-seeds", "2"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "unpacked 4 per-speaker archive(s)" in proc.stdout + proc.stderr
    assert not list((corpus / "data_aishell" / "wav").glob("*.tar.gz"))
    assert (work / "data/lang_syllable").is_dir()  # the paper's units, from resource_aishell/lexicon.txt

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
    assert {r["system"] for r in results["systems"]} == {
        "train_asrnet_a", "train_asrnet_a_seed2", "train_asrnet_b", "train_asrnet_b_seed2",
        "train_random_asr_revised_arch1", "train_random_darts_arch1"}
    table = (work / "RESULTS.md").read_text()
    # a random-architecture row per space, compared with that space's searched network only
    assert "| train_random_asr_revised (random) | 1 arch | asr_revised |" in table
    # two retraining seeds per searched network: its row is their mean ± std
    assert re.search(r"`train_asrnet_b` \(2 run\(s\), [\d.]+ ± [\d.]+\) (beats|trails|ties) the 1 random", table)
    assert "`train_asrnet_b` vs `train_random_darts`" not in table and "| train_asrnet_b | 2 runs |" in table
    assert f"({corpus})" in table and f"--corpus-dir {corpus} --unit syllable --train-seeds 2" in table
    for r in results["systems"]:
        assert f"{100 * r['token_accuracy']:.2f}" in table
        assert r["unit_type"] == "syllable"
    summary = (work / "exp/train_asrnet_b/decode_test/summary").read_text()
    assert summary.startswith("%TER ")
    # Rerunning the finished recipe: data prep, speed perturbation and features keep what they
    # made (no feature is computed again), the search and the retraining resume from disk, the
    # lang dir and the decodes are up to date.
    sets = ("train", "train_sp", "dev", "test")
    feats = {s: (work / f"data/{s}/feats.scp").stat().st_mtime_ns for s in sets}
    ckpts = {p: p.stat().st_mtime_ns for p in (work / "exp").rglob("*.pt")}
    decodes = {p: p.stat().st_mtime_ns for p in (work / "exp").glob("*/decode_test/results.json")}
    proc2 = subprocess.run(cmd + ["--stop-stage", "6"], cwd=work, env=env, capture_output=True, text=True)
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    log = proc2.stdout + proc2.stderr
    assert log.count("features are up to date") == 4
    assert {s: (work / f"data/{s}/feats.scp").stat().st_mtime_ns for s in sets} == feats
    assert {p: p.stat().st_mtime_ns for p in (work / "exp").rglob("*.pt")} == ckpts
    assert "resumed from" in log
    assert log.count("is up to date") == 1 + 6  # lang dir; 2 x 2 seeds + 2 random decodes
    assert {p: p.stat().st_mtime_ns for p in (work / "exp").glob("*/decode_test/results.json")} == decodes
