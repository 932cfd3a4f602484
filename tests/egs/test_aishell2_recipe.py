"""End to end: egs/aishell2/run.sh on the path a researcher takes, without --synth: a tiny corpus laid
out as the AISHELL-2 release (iOS/data/{wav.scp,trans.txt,wav/} and AISHELL-DEV-TEST-SET/iOS/{dev,test};
made by the recipe's own `--synth true` stage 0) given with --corpus-dir, every stage with a tiny
profile (pypinyin lexicon, 5-gram LM, TLG, BMUF training on 2 gloo CPU processes, checkpoint
averaging, greedy + WFST decoding, Table 2 report), then the bad-input guards of the recipe's steps."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "egs" / "aishell2"

TINY = """
train_asrnet_b:
  model: {C: 4, layers: 3}
  epochs: 2
  batch_size: 4
  bmuf: {block_size: 2}
train_dfsmn_san:
  model: {num_dfsmn: 2, num_san: 1, hidden: 32, proj: 16, heads: 2, lookback_order: 2, lookahead_order: 2}
  epochs: 2
  batch_size: 4
  bmuf: {block_size: 2}
"""


def run(cmd, cwd, env):
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("a2")
    work = tmp / "a2"
    work.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "conf", "local", "utils"):
        (work / name).symlink_to(RECIPE / name)
    (tmp / "tiny.yaml").write_text(TINY)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               PYTHONPATH=str(ROOT))
    made = run(["bash", "run.sh", "--synth", "true", "--synth-speakers", "3 1 1", "--synth-utts", "6",
                "--stop-stage", "0"], work, env)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    corpus = tmp / "AISHELL-2"
    (work / "corpus/synth_aishell2").rename(corpus)
    (corpus / ".done").unlink()  # the synthesizer's marker: not part of the release
    genotype = RECIPE / "conf/synth_genotypes/pdarts_asr_revised/genotype.json"
    cmd = ["bash", "run.sh", "--corpus-dir", str(corpus), "--nets", "asrnet_b dfsmn_san", "--genotype",
           str(genotype), "--unit", "char", "--profile", str(tmp / "tiny.yaml"), "--average", "2",
           "--nj", "2", "--lm-order", "3", "--cpu-workers", "2", "--speed-perturb", "false",
           "--train-seeds", "2", "--random-archs", "1", "--search-config", str(ROOT / "egs/aishell1/conf/pdarts_asr_revised.yaml")]
    proc = run(cmd, work, env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return work, env, cmd, proc


def test_every_stage_and_the_report(recipe):
    work, env, cmd, proc = recipe
    assert "uses the shipped synthetic-corpus genotype" not in proc.stderr + proc.stdout
    assert (work / "data/local/lexicon.txt").stat().st_size > 0
    assert (work / "data/lm/lm.arpa").read_text().startswith("\n\\data\\") or \
        "\\data\\" in (work / "data/lm/lm.arpa").read_text()
    assert (work / "data/lang_char/graph/TLG.fst").is_file()
    for net in ("asrnet_b", "dfsmn_san"):
        exp = work / f"exp/train_{net}"
        train = json.loads((exp / "train.json").read_text())
        assert train["workers"] == 2 and train["distributed"] == "bmuf"
        assert (exp / "avg-last-2.pt").is_file()
        res = json.loads((exp / "decode_test/results.json").read_text())
        assert res["wfst"]["summary"].startswith("%CER ")
        assert res["cer_summary"].startswith("%CER ")
    results = json.loads((work / "exp/results.json").read_text())
    assert {r["system"] for r in results["systems"]} == {"train_asrnet_b", "train_asrnet_b_seed2", "train_dfsmn_san",
                                                         "train_dfsmn_san_seed2", "train_random_asr_revised_arch1"}
    table = (work / "RESULTS.md").read_text()
    assert "DFSMN-SAN" in table and "ASRNET-B (L=3,C=4)" in table
    assert "random asr_revised cell (seed 1) (L=3,C=4)" in table
    assert "the 1 random architectures' mean" in table  # the searched cell's margin over chance
    # two seeds per network: the verdicts are over their mean ± std
    assert re.search(r"`train_asrnet_b` \(2 run\(s\), [\d.]+ ± [\d.]+\) (beats|trails|ties) `train_dfsmn_san` "
                     r"\(2 run\(s\)", table), table
    assert "--train-seeds 2" in table
    assert "--random-archs 1" in table  # the command that makes these rows, not the default's 3
    for r in results["systems"]:
        assert f"{r['wfst']['cer']:.2f}" in table
    assert "AISHELL-2)" in table and "--corpus-dir" in table


def test_synth_falls_back_to_the_shipped_genotype(recipe):
    # Without ../aishell1 beside the scratch copy, --synth true uses the shipped genotype, loudly.
    work, env, _, _ = recipe
    proc = run(["bash", "run.sh", "--synth", "true", "--stage", "4", "--stop-stage", "4"], work, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "uses the shipped synthetic-corpus genotype" in proc.stderr + proc.stdout


def test_a_rerun_of_the_finished_recipe_redoes_nothing(recipe):
    work, env, cmd, _ = recipe
    done = [work / f"data/{s}/feats.scp" for s in ("train", "dev", "test")] + [
        work / "data/lang_char/lang.json", work / "data/lm/lm.arpa", work / "data/lang_char/graph/TLG.fst"] + [
        work / f"exp/{e}/decode_test/results.json" for e in ("train_asrnet_b", "train_asrnet_b_seed2", "train_dfsmn_san",
                                                            "train_dfsmn_san_seed2", "train_random_asr_revised_arch1")]
    done += sorted((work / "exp").rglob("*.pt"))
    before = {p: p.stat().st_mtime_ns for p in done}
    again = run(cmd + ["--stage", "1", "--stop-stage", "6"], work, env)
    assert again.returncode == 0, again.stderr[-3000:]
    out = again.stdout + again.stderr
    assert out.count("features are up to date") == 3
    # lang dir, LM, graph and the five decodes
    assert out.count("is up to date") == 8, out[-3000:]
    assert {p: p.stat().st_mtime_ns for p in done} == before


def single_process_validation(work, exp, epoch):
    """Score epoch-N.pt on data/dev in this one process, as the sharded validation should have."""
    import torch

    from nasr.bin.train_ctc import build_ctc_model
    from nasr.data.asr_dataset import AsrDataset
    from nasr.train.checkpoint import load_checkpoint
    from nasr.train.ctc import validate_ctc

    st = load_checkpoint(exp / f"epoch-{epoch}.pt")
    cfg, d = st["config"], st["config"]["data"]
    if not Path(cfg["model"].get("genotype") or ".").is_absolute() and cfg["model"].get("genotype"):
        cfg["model"]["genotype"] = str(work / cfg["model"]["genotype"])
    model = build_ctc_model(cfg, d["in_channels"], d["feat_dim"], d["num_units"])
    model.load_state_dict(st["model"])
    dev = AsrDataset(work / "data/dev", work / "data/lang_char", max_frames=None, return_utt=True)
    return validate_ctc(model, dev, torch.device("cpu"))


@pytest.mark.parametrize("net", ["asrnet_b", "dfsmn_san"])
def test_sharded_validation_scores_the_checkpointed_model(recipe, net):
    # Both BMUF workers score half the dev set each; the all-reduced figures must be those of the
    # checkpoint (global model W and rank 0's BatchNorm statistics) scored by one process.
    work, _, _, _ = recipe
    exp = work / f"exp/train_{net}"
    train = json.loads((exp / "train.json").read_text())
    last = train["history"][-1]
    ref = single_process_validation(work, exp, last["epoch"])
    assert ref["utts"] == len((work / "data/dev/utt2spk").read_text().splitlines())
    assert last["valid_loss"] == pytest.approx(ref["loss"], rel=1e-4)
    assert last["valid_ter"] == pytest.approx(ref["ter"], abs=1e-9)


def test_genotype_from_another_op_space_is_refused(recipe):
    work, env, cmd, _ = recipe
    darts = RECIPE / "conf/synth_genotypes/pdarts_darts/genotype.json"
    proc = run(cmd + ["--stage", "5", "--stop-stage", "5", "--nets", "asrnet_b", "--genotype", str(darts)],
               work, env)
    assert proc.returncode != 0
    assert "op space 'darts'" in proc.stderr and "names space 'asr_revised'" in proc.stderr


def test_graph_of_another_unit_set_is_refused(recipe, tmp_path):
    work, env, _, _ = recipe
    graph = tmp_path / "graph"
    shutil.copytree(work / "data/lang_char/graph", graph)
    (graph / "units.sha256").write_text("0" * 64 + "\n")
    out = work / "exp/train_dfsmn_san/decode_mismatch"
    proc = run([sys.executable, "-m", "nasr.bin.decode_ctc", "--exp-dir", "exp/train_dfsmn_san",
                "--data", "data/test", "--name", "mismatch", "--checkpoint", "avg-last-2.pt",
                "--graph", str(graph)], work, env)
    assert proc.returncode == 1
    assert "built for another unit set" in proc.stderr
    assert not (out / "results.json").exists() and not (out / "hyp").exists()


def test_missing_genotype_without_synth_names_the_command(recipe):
    work, env, _, _ = recipe
    proc = run(["bash", "run.sh", "--stage", "4", "--stop-stage", "4", "--nets", "asrnet_b",
                "--genotype", "nowhere/genotype.json"], work, env)
    assert proc.returncode != 0
    assert "./run.sh --spaces asr_revised --stop-stage 4" in proc.stderr


def test_killed_worker_stops_the_job_and_the_checkpoint_resumes(recipe, tmp_path):
    """torchrun with 2 BMUF workers; one is SIGKILLed after the first checkpoint: the job ends
    with an error instead of hanging, and --resume continues from the newest epoch-N.pt."""
    import signal
    import time

    work, env, _, _ = recipe
    prof = tmp_path / "long.yaml"
    prof.write_text(TINY.replace("epochs: 2", "epochs: 40"))
    exp = tmp_path / "exp_kill"
    train = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
             "-m", "nasr.bin.train_ctc", "--config", "conf/train_dfsmn_san.yaml", "--profile", str(prof),
             "--train-data", "data/train", "--lang", "data/lang_char", "--exp-dir", str(exp),
             "--device", "cpu", "--distributed", "bmuf", "--resume"]
    proc = subprocess.Popen(train, cwd=work, env=dict(env, TORCHELASTIC_ERROR_FILE=str(tmp_path / "err.json")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180  # generous: a loaded shared machine
        while not (exp / "epoch-1.pt").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "training never wrote epoch-1.pt"
            time.sleep(0.2)
        # The workers are the agent's children; kill the second one without any goodbye.
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(children) == 2, children
        os.kill(int(sorted(children, key=int)[1]), signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0
    assert "nasr.bin.train_ctc FAILED" in err or "ChildFailedError" in err or "lost worker" in err, err[-2000:]
    done = max(int(p.stem.split("-")[1]) for p in exp.glob("epoch-*.pt"))
    assert done < 40
    # Resume on one process with fewer epochs left: it starts after the newest checkpoint.
    resume = run([sys.executable, "-m", "nasr.bin.train_ctc", "--config", "conf/train_dfsmn_san.yaml",
                  "--profile", str(prof), "--train-data", "data/train", "--lang", "data/lang_char",
                  "--exp-dir", str(exp), "--device", "cpu", "--resume", "--allow-config-change",
                  "--override", f"epochs={done + 1}"],
                 work, env)
    assert resume.returncode == 0, resume.stderr[-2000:]
    assert f"resumed from {exp}/epoch-{done}.pt" in resume.stderr
    assert (exp / f"epoch-{done + 1}.pt").is_file()


def test_ddp_beside_bmuf(recipe, tmp_path):
    """--distributed ddp: gradient all-reduce every step on 2 gloo processes, rank 0 writes.
    ASRNET-B has BatchNorm: DDP leaves each worker its own running statistics after the last step."""
    work, env, _, _ = recipe
    prof = tmp_path / "one.yaml"
    prof.write_text(TINY.replace("epochs: 2", "epochs: 1"))
    exp = tmp_path / "exp_ddp"
    proc = run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "nasr.bin.train_ctc", "--config", "conf/train_asrnet_b.yaml", "--profile", str(prof),
                "--genotype", "conf/synth_genotypes/pdarts_asr_revised/genotype.json",
                "--train-data", "data/train", "--valid-data", "data/dev", "--lang", "data/lang_char",
                "--exp-dir", str(exp), "--device", "cpu", "--distributed", "ddp"], work, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    train = json.loads((exp / "train.json").read_text())
    assert train["distributed"] == "ddp" and train["workers"] == 2
    assert (exp / "log/train.log").is_file() and (exp / "log/train.rank-1.log").is_file()
    assert "valid_loss" in train["history"][0]
    ref = single_process_validation(work, exp, 1)
    assert train["history"][0]["valid_loss"] == pytest.approx(ref["loss"], rel=1e-4)
    assert train["history"][0]["valid_ter"] == pytest.approx(ref["ter"], abs=1e-9)


def test_wfst_and_prefix_beam_decode_in_one_pass(recipe):
    # Both LM decoders run batch by batch inside the forward pass (no set-wide posteriors kept).
    work, env, _, _ = recipe
    proc = run([sys.executable, "-m", "nasr.bin.decode_ctc", "--exp-dir", "exp/train_dfsmn_san",
                "--data", "data/test", "--name", "both", "--checkpoint", "avg-last-2.pt",
                "--graph", "data/lang_char/graph", "--arpa", "data/lm/lm.arpa"], work, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((work / "exp/train_dfsmn_san/decode_both/results.json").read_text())
    assert res["wfst"]["summary"].startswith("%CER ") and res["beam"]["summary"].startswith("%CER ")
    assert res["wfst"]["seconds"] > 0 and res["beam"]["seconds"] > 0 and res["beam"]["arpa"] == "data/lm/lm.arpa"
    assert (work / "exp/train_dfsmn_san/decode_both/beam/hyp").is_file()
