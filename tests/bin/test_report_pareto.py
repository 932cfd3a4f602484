"""report_pareto (issue 15, item 3): accuracy against parameters and latency, one figure and one
RESULTS.md section, rewritten in place on a rerun."""
import json

import pytest

from nasr.bin import report_pareto
from nasr.utils.io import FormatError


def system(root, name, acc, params, onnx_ms):
    d = root / name
    (d / "decode_test").mkdir(parents=True)
    (d / "export").mkdir()
    (d / "decode_test" / "results.json").write_text(json.dumps({"acc": acc, "params": params, "macs": 10 * params}))
    (d / "export" / "export.json").write_text(json.dumps({"latency": {"torch_ms": 2 * onnx_ms, "onnxruntime_ms": onnx_ms,
                                                                      "threads": 1, "clip_frames": 101}}))


def test_the_figure_and_the_section_show_every_exported_system(tmp_path):
    exp = tmp_path / "exp"
    system(exp, "train_nas1_seed1", 0.91, 82000, 4.0)
    system(exp, "train_nas1_params40000", 0.88, 39000, 2.5)
    system(exp, "train_tc_resnet14_seed1", 0.85, 300000, 0.4)
    (exp / "train_res15_seed1" / "decode_test").mkdir(parents=True)  # scored but not exported: left out
    results = tmp_path / "RESULTS.md"
    results.write_text("# Speech Commands\n\n| system | acc |\n|---|---|\n")
    assert report_pareto.main(["--exp-root", str(exp), "--results", str(results)]) == 0
    text = results.read_text()
    assert text.startswith("# Speech Commands\n") and "![accuracy against parameters and latency](RESULTS_pareto.png)" in text
    assert "| train_nas1_params40000 | searched with a budget | 88.00% | 39,000 | 390,000 | 5.000 | 2.500 |" in text
    assert "train_res15" not in text and (tmp_path / "RESULTS_pareto.png").stat().st_size > 1000
    rows = [line for line in text.splitlines() if line.startswith("| train_")]
    assert [r.split(" | ")[0] for r in rows] == ["| train_nas1_params40000", "| train_nas1_seed1",
                                                 "| train_tc_resnet14_seed1"]
    # a rerun replaces the section instead of adding a second one
    assert report_pareto.main(["--exp-root", str(exp), "--results", str(results)]) == 0
    assert results.read_text() == text


def test_nothing_to_plot_is_an_error_naming_the_fix(tmp_path):
    with pytest.raises(FormatError, match="evaluate and export the trained networks first"):
        report_pareto.main(["--exp-root", str(tmp_path), "--results", str(tmp_path / "R.md")])
