"""nasr.bin.report_ctc: random-architecture rows grouped with mean ± std, compared only with the
searched network of their own space, and only at equal budgets."""
import json

import yaml

from nasr.bin import report_ctc


def write_run(exp, system, tok, genotype, epochs=6):
    d = exp / system
    (d / "decode_test").mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"epochs": epochs, "optim": {"lr_min": 0.0}}))
    (d / "train.json").write_text(json.dumps({"epochs": epochs, "train_data": ["data/train_sp"]}))
    (d / "decode_test" / "results.json").write_text(json.dumps({
        "model": "darts_net", "params": 1e5, "cells": 3, "channels": 4, "token_accuracy": tok, "cer": 100 * (1 - tok),
        "epochs": epochs, "train_seconds": 60.0, "genotype_source": str(genotype),
        "token_summary": f"%TER {100 * (1 - tok):.2f} [ x ]", "eval_command": "x"}))


def make(tmp_path, random_epochs=6):
    exp = tmp_path / "exp"
    for space, net, tok in (("asr_revised", "asrnet_b", 0.70), ("darts", "asrnet_a", 0.60)):
        s = exp / f"pdarts_{space}"
        s.mkdir(parents=True)
        (s / "search.json").write_text(json.dumps({"space": space, "device_hours": 0.1, "device": "CPU"}))
        write_run(exp, f"train_{net}", tok, s / "genotype.json")
        for k, t in ((1, tok - 0.05), (2, tok - 0.07), (3, tok - 0.03)):
            r = exp / f"random_{space}_arch{k}"
            r.mkdir()
            (r / "random.json").write_text(json.dumps({"space": space, "seed": k}))
            write_run(exp, f"train_random_{space}_arch{k}", t, r / "genotype.json", random_epochs)
    return exp


def test_random_rows_per_space_with_margin(tmp_path):
    exp = make(tmp_path)
    out = tmp_path / "RESULTS.md"
    assert report_ctc.main(["--exp-root", str(exp), "--out", str(out)]) == 0
    text = out.read_text()
    assert "| train_random_asr_revised (random) | 3 archs | asr_revised |" in text
    assert "65.00 ± 2.00 | 65.00, 63.00, 67.00 |" in text
    assert ("`train_asrnet_b` (1 run(s), 70.00) beats the 3 random architectures' mean (3 run(s), "
            "65.00 ± 2.00) by 5.00 points (outside their spread ± 2.00)") in text
    assert "`train_asrnet_b` vs `train_random_darts`" not in text
    assert "`train_asrnet_b` (1 run(s), 70.00) beats the 3 random architectures' mean (3 run(s), 55.00" not in text


def test_no_margin_over_random_rows_trained_longer(tmp_path):
    exp = make(tmp_path, random_epochs=9)
    out = tmp_path / "RESULTS.md"
    assert report_ctc.main(["--exp-root", str(exp), "--out", str(out)]) == 0
    assert "`train_asrnet_b` vs `train_random_asr_revised`: no verdict, the budgets differ (epochs 6 vs 9)" in out.read_text()
