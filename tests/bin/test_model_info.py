"""python -m nasr.bin.model_info on baseline configs and on a genotype."""
import importlib.util
import json

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
               ["sep_conv_3x3", 1], ["skip_connect", 0], ["skip_connect", 0], ["dil_conv_3x3", 2]],
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
