"""python -m nasr.bin.model_info on baseline configs and on a genotype."""
import importlib.util
import json
from pathlib import Path

import pytest

from nasr.bin import model_info


def run_json(argv, capsys):
    model_info.main(argv + ["--json"])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # exactly one JSON object, nothing else on stdout
    return json.loads(out[0])


def test_json_on_baseline_config(tmp_path, capsys):
    cfg = tmp_path / "train_res15.yaml"
    cfg.write_text("input_size: [101, 40]\nmodel:\n  name: res15\n  num_classes: 12\n")
    info = run_json(["--config", str(cfg)], capsys)
    assert info["name"] == "res15"
    assert info["input_size"] == [101, 40]
    assert info["params"] == 237882
    # 13 convs 45x45x3x3 + stem over 101x40 positions + the linear layer.
    assert info["macs"] == (13 * 45 * 45 * 9 + 45 * 9) * 101 * 40 + 45 * 12


def test_input_size_under_model_and_overrides(tmp_path, capsys):
    cfg = tmp_path / "tc.yaml"
    cfg.write_text("model:\n  name: tc_resnet14\n  num_classes: 12\n  input_size: 101x40\n")
    info = run_json(["--config", str(cfg)], capsys)
    assert info["name"] == "tc_resnet14"
    assert abs(info["params"] - 305_000) <= 0.02 * 305_000
    small = run_json(["--config", str(cfg), "--input-size", "51x40", "--num-classes", "2"], capsys)
    assert small["input_size"] == [51, 40]
    assert small["macs"] < info["macs"]
    assert small["params"] == info["params"] - 10 * (72 + 1)  # 10 fewer classes x (72 weights + bias)


def test_table_output(capsys):
    model_info.main(["--model", "res15", "--input-size", "101x40"])
    out = capsys.readouterr().out
    assert "params" in out and "237,882" in out and "MACs" in out


def test_config_errors_name_the_file(tmp_path, capsys):
    no_model = tmp_path / "a.yaml"
    no_model.write_text("input_size: [101, 40]\n")
    with pytest.raises(SystemExit):
        model_info.main(["--config", str(no_model)])
    assert "a.yaml" in capsys.readouterr().err
    no_size = tmp_path / "b.yaml"
    no_size.write_text("model:\n  name: res15\n")
    with pytest.raises(SystemExit):
        model_info.main(["--config", str(no_size)])
    err = capsys.readouterr().err
    assert "b.yaml" in err and "input_size" in err
    unknown = tmp_path / "c.yaml"
    unknown.write_text("input_size: [101, 40]\nmodel:\n  name: res16\n")
    with pytest.raises(SystemExit):
        model_info.main(["--config", str(unknown)])
    assert "unknown model name 'res16'" in capsys.readouterr().err


DARTS_V2 = {
    "space": "darts",
    "normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 1], ["sep_conv_3x3", 0], ["sep_conv_3x3", 1],
               ["sep_conv_3x3", 1], ["skip_connect", 0], ["skip_connect", 0], ["dil_sep_conv_3x3", 2]],
    "normal_concat": [2, 3, 4, 5],
    "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["skip_connect", 2], ["max_pool_3x3", 1],
               ["max_pool_3x3", 0], ["skip_connect", 2], ["skip_connect", 2], ["max_pool_3x3", 1]],
    "reduce_concat": [2, 3, 4, 5],
}


@pytest.mark.skipif(importlib.util.find_spec("nasr.models.darts_net") is None,
                    reason="nasr.models.darts_net not written yet")
def test_darts_v2_genotype_size(tmp_path, capsys):
    path = tmp_path / "darts_v2.json"
    path.write_text(json.dumps(DARTS_V2))
    info = run_json(["--genotype", str(path), "--layers", "20", "--channels", "36",
                     "--num-classes", "10", "--in-channels", "3", "--input-size", "32x32",
                     "--reduction", "thirds", "--auxiliary"], capsys)
    # DARTS (Liu et al. 2019), CIFAR-10: 3.3M parameters, auxiliary head not counted.
    assert info["name"] == "darts_net"
    assert abs(info["params"] - 3.3e6) <= 0.03 * 3.3e6, info
    assert info["aux_params"] > 0
    assert info["macs"] > 0


def all_sep_conv_genotype(path):
    cell = [["sep_conv_3x3", j] for _ in range(4) for j in (0, 1)]
    path.write_text(json.dumps({"space": "darts", "normal": cell, "normal_concat": [2, 3, 4, 5],
                                "reduce": cell, "reduce_concat": [2, 3, 4, 5]}))
    return path


@pytest.mark.parametrize("layers,channels,paper", [(17, 32, 6.6e6), (32, 38, 12.1e6)])
def test_asr_network_counts_at_the_papers_asrnet_a_scale(tmp_path, capsys, layers, channels, paper):
    """ASRNET-A's sizes (pdarts-asr-transfer Table 1: L=17, C=32, 6.6M; Table 2: L=32, C=38,
    12.1M) for the evaluation network with every edge sep_conv_3x3 on 3x40 inputs with 1,434
    outputs. The one assumption is the CTC head's width, which the paper does not give: one hidden
    fully connected layer of 512 units (nasr.nas.asr_head defaults), then the output layer."""
    genotype = all_sep_conv_genotype(tmp_path / "g.json")
    cfg = tmp_path / "train_asrnet_a.yaml"
    cfg.write_text(f"model: {{name: darts_net, C: {channels}, layers: {layers}, reduction: thirds, "
                   "head: ctc, auxiliary: false}\n")
    # Only MACs depend on the frame count: 4 frames (one after the two halvings) keep the test fast.
    info = run_json(["--config", str(cfg), "--genotype", str(genotype), "--input-size", "4x40"], capsys)
    assert info["in_channels"] == 3 and info["num_classes"] == 1434 and info["input_size"] == [4, 40]
    assert abs(info["params"] - paper) <= 0.02 * paper, info


def test_shipped_ctc_config_with_genotype_uses_the_papers_input(tmp_path, capsys):
    root = Path(__file__).resolve().parents[2]
    genotype = all_sep_conv_genotype(tmp_path / "g.json")
    small = run_json(["--config", str(root / "egs/aishell1/conf/train_asrnet_a.yaml"),
                      "--genotype", str(genotype), "--input-size", "4x40", "--num-classes", "100"],
                     capsys)
    assert small["num_classes"] == 100 and small["in_channels"] == 3
    with pytest.raises(SystemExit):
        model_info.main(["--model", "res15", "--genotype", str(genotype)])
    assert "--model cannot be combined" in capsys.readouterr().err
