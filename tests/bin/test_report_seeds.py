"""nasr.bin.report: seeds and random architectures as rows with mean ± std, verdicts only at
equal budgets (read from each run's config.yaml and train.json), selection stated."""
import json

import yaml

from nasr.bin import report

AUG = {"p_noise": 0.8, "noise_volume": 0.1, "shift_ms": 100.0}


def write_run(root, system, acc, model="darts_net", epochs=10, genotype=None, data=("data/train", "data/valid")):
    exp = root / system
    (exp / "decode_test").mkdir(parents=True)
    cfg = {"model": {"name": model}, "epochs": epochs, "augment": AUG,
           "optim": {"name": "sgd", "lr": 0.05, "lr_min": 0.0}}
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg))
    (exp / "train.json").write_text(json.dumps({"train_data": list(data), "epochs": epochs}))
    total = 200
    (exp / "decode_test" / "results.json").write_text(json.dumps({
        "model": model, "cells": 3, "channels": 8, "params": 1000, "macs": 2e6, "acc": acc,
        "correct": round(acc * total), "total": total, "epochs": epochs, "train_seconds": 36.0,
        "device": "CPU", "genotype_source": genotype, "checkpoint_selection": "last epoch",
        "train_command": "python -m nasr.bin.train ...", "eval_command": "python -m nasr.bin.evaluate ..."}))


def make_exp(tmp_path, res15_epochs=10):
    exp = tmp_path / "exp"
    search = exp / "search_nas1"
    search.mkdir(parents=True)
    (search / "genotype.json").write_text("{}")
    (search / "search.json").write_text(json.dumps({
        "space": "nas1", "device_hours": 0.1, "device": "CPU", "best_epoch": 5,
        "selected_on": "supernet accuracy on the alpha half (validation data, batch statistics)"}))
    for k, acc in zip((1, 2, 3), (0.90, 0.92, 0.91)):
        write_run(exp, f"train_nas1_seed{k}", acc, genotype=str(search / "genotype.json"))
    for k, acc in zip((1, 2, 3), (0.80, 0.84, 0.82)):
        write_run(exp, f"train_tc_resnet14_seed{k}", acc, model="tc_resnet14")
    write_run(exp, "train_res15_seed1", 0.5, model="res15", epochs=res15_epochs)
    for k, acc in zip((1, 2, 3), (0.85, 0.87, 0.89)):
        d = exp / f"random_nas1_arch{k}"
        d.mkdir()
        (d / "genotype.json").write_text("{}")
        (d / "random.json").write_text(json.dumps({"space": "nas1", "seed": k}))
        write_run(exp, f"train_random_nas1_arch{k}", acc, genotype=str(d / "genotype.json"))
    return exp


def test_seeds_and_random_archs_become_rows_with_mean_std(tmp_path):
    exp = make_exp(tmp_path, res15_epochs=3)
    out = tmp_path / "RESULTS.md"
    assert report.main(["--exp-root", str(exp), "--out", str(out)]) == 0
    text = out.read_text()
    rows = [l for l in text.splitlines() if l.startswith("| ") and "system" not in l]
    assert len(rows) == 4
    nas1 = next(l for l in rows if "train_nas1 " in l)
    assert "3 seeds" in nas1 and "91.00 ± 1.00" in nas1 and "90.00, 92.00, 91.00" in nas1
    rnd = next(l for l in rows if "random (nas1)" in l)
    assert "3 archs" in rnd and "87.00 ± 2.00" in rnd
    # equal budgets: a verdict with the margin; the random row's mean and spread
    assert "`train_nas1` (3 run(s), 91.00 ± 1.00) beats `train_tc_resnet14`" in text
    assert "by 9.00 points (outside their spread ± 2.00)" in text
    assert "beats the 3 random architectures' mean (3 run(s), 87.00 ± 2.00) by 4.00 points (outside" in text
    assert "| 1 seed |" in text
    # Res15 trained 3 epochs against 10: no verdict, and the reason
    assert "`train_nas1` vs `train_res15`: no verdict, the budgets differ (epochs 10 vs 3)" in text
    assert "beats `train_res15`" not in text
    # selection on validation data only, said in the report
    assert "picked on supernet accuracy on the alpha half (validation data" in text
    assert "checkpoints: last epoch" in text


def test_other_training_data_means_no_verdict(tmp_path):
    exp = make_exp(tmp_path)
    (exp / "train_tc_resnet14_seed2" / "train.json").write_text(json.dumps({"train_data": ["data/train"]}))
    out = tmp_path / "RESULTS.md"
    assert report.main(["--exp-root", str(exp), "--out", str(out)]) == 0
    text = out.read_text()
    assert "`train_nas1` vs `train_tc_resnet14`: no verdict, the budgets differ (train_data differs)" in text
    assert "beats `train_res15`" in text  # res15 at 10 epochs now: equal budgets


def test_curves_show_validation_beside_training_for_every_trained_model(tmp_path):
    exp = make_exp(tmp_path)
    hist = [{"epoch": e, "train": {"acc": 0.1 * e}, "valid": {"acc": 0.08 * e}} for e in (1, 2)]
    for run in ("train_nas1_seed1", "train_nas1_seed2", "train_tc_resnet14_seed1", "search_nas1"):
        (exp / run / "history.json").write_text(json.dumps(hist))
    series = report.curve_series(exp)
    got = {(c["panel"], c["run"], c["split"]) for c in series}
    for run in ("train_nas1_seed1", "train_nas1_seed2", "train_tc_resnet14_seed1"):
        assert {("train", run, "train"), ("train", run, "valid")} <= got
    assert {("search", "search_nas1", "train"), ("search", "search_nas1", "valid")} <= got
    assert {c["row"] for c in series if c["run"].startswith("train_nas1")} == {"train_nas1"}
    out = tmp_path / "RESULTS.md"
    assert report.main(["--exp-root", str(exp), "--out", str(out)]) == 0
    assert (tmp_path / "RESULTS_curves.png").stat().st_size > 1000
    assert "![training and validation accuracy per epoch](RESULTS_curves.png)" in out.read_text()
