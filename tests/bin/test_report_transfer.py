"""Table 2 report: relative improvement over the reference, greedy TER marking, missing decodes."""
import json

from nasr.bin.report_transfer import main, relative_improvement


def write_result(root, system, **kw):
    d = root / system / "decode_test"
    d.mkdir(parents=True)
    base = {"model": "darts_net", "params": 2.5e6, "cells": 32, "channels": 30, "eval_command": "x",
            "epochs": 15, "workers": 2, "train_seconds": 7200.0, "token_accuracy": 0.9}
    base.update(kw)
    (d / "results.json").write_text(json.dumps(base))
    # what the training step records, from which the report checks the budgets are equal
    (root / system / "config.yaml").write_text(json.dumps({"epochs": base["epochs"],
                                                           "optim": {"name": "sgd", "lr_min": 0.0}}))
    (root / system / "train.json").write_text(json.dumps({"epochs": base["epochs"], "train_data": ["data/train_sp"]}))


def test_table_two_from_results(tmp_path):
    exp = tmp_path / "exp"
    write_result(exp, "train_dfsmn_san", model="dfsmn_san", params=14.4e6, cer=9.0,
                 wfst={"cer": 7.36, "summary": "%CER 7.36 [ ... ]"})
    write_result(exp, "train_asrnet_b", ter=8.0, wfst={"cer": 5.79, "summary": "%CER 5.79 [ ... ]"})
    out = tmp_path / "RESULTS.md"
    assert main(["--exp-root", str(exp), "--out", str(out), "--command", "./run.sh"]) == 0
    md = out.read_text()
    row = next(line for line in md.splitlines() if line.startswith("| ASRNET-B (L=32,C=30)"))
    # Table 2's own numbers: (7.36 - 5.79) / 7.36 = 21.3 %
    assert "| 21.3 |" in row and "8.00 TER" in row and "| 5.79 |" in row
    assert md.index("DFSMN-SAN") < md.index("ASRNET-B (L=32")
    assert "Command: `./run.sh`" in md
    results = json.loads((exp / "results.json").read_text())
    assert len(results["systems"]) == 2
    assert round(relative_improvement(5.65, 7.36), 1) == 23.2


def test_missing_decode_is_an_error(tmp_path, capsys):
    (tmp_path / "exp").mkdir()
    assert main(["--exp-root", str(tmp_path / "exp"), "--out", str(tmp_path / "R.md")]) == 1
    assert "run the decode stage" in capsys.readouterr().err
    assert not (tmp_path / "R.md").exists()


def test_rel_imp_withheld_when_budgets_differ(tmp_path):
    exp = tmp_path / "exp"
    write_result(exp, "train_dfsmn_san", model="dfsmn_san", params=14.4e6, cer=9.0, epochs=12,
                 wfst={"cer": 7.36, "summary": "%CER 7.36 [ ... ]"})
    write_result(exp, "train_asrnet_b", ter=8.0, epochs=6, wfst={"cer": 5.79, "summary": "%CER 5.79 [ ... ]"})
    out = tmp_path / "RESULTS.md"
    assert main(["--exp-root", str(exp), "--out", str(out)]) == 0
    md = out.read_text()
    row = next(line for line in md.splitlines() if line.startswith("| ASRNET-B (L=32,C=30)"))
    assert "21.3" not in row and "| 5.79 | - |" in row
    assert "Rel Imp withheld for ASRNET-B (L=32,C=30): its budget differs from DFSMN-SAN's (epochs 6 vs 12)" in md


def test_searched_cell_against_random_cells_of_its_space(tmp_path):
    exp = tmp_path / "exp"
    search = tmp_path / "search"
    search.mkdir()
    (search / "search.json").write_text(json.dumps({"space": "asr_revised", "device_hours": 0.1, "device": "cpu"}))
    write_result(exp, "train_dfsmn_san", model="dfsmn_san", params=14.4e6, cer=9.0,
                 wfst={"cer": 7.36, "summary": "%CER 7.36 [ ... ]"})
    write_result(exp, "train_asrnet_b", cer=8.0, wfst={"cer": 5.0, "summary": "%CER 5.00 [ ... ]"},
                 genotype_source=str(search / "genotype.json"))
    for k, cer in ((1, 6.0), (2, 7.0), (3, 8.0)):
        draw = tmp_path / f"random{k}"
        draw.mkdir()
        (draw / "random.json").write_text(json.dumps({"space": "asr_revised", "seed": k}))
        write_result(exp, f"train_random_asr_revised_arch{k}", cer=9.0, genotype_source=str(draw / "genotype.json"),
                     wfst={"cer": cer, "summary": f"%CER {cer} [ ... ]"})
    out = tmp_path / "RESULTS.md"
    assert main(["--exp-root", str(exp), "--out", str(out)]) == 0
    md = out.read_text()
    assert "| random asr_revised cell (seed 2) (L=32,C=30) |" in md
    assert ("- `train_asrnet_b` (1 run(s), 5.00) beats the 3 random architectures' mean (3 run(s), 7.00 ± 1.00) "
            "by 2.00 WFST CER points (outside their spread ± 1.00), at equal budgets") in md
    assert "- `train_asrnet_b` (1 run(s), 5.00) beats `train_dfsmn_san` (1 run(s), 7.36) by 2.36 WFST CER points" in md
