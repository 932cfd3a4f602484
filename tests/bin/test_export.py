"""nasr.bin.export (issue 15, item 4): every kind of trained network becomes an ONNX file whose
onnxruntime outputs match torch's within 1e-4; bad inputs give one line naming the file and the fix."""
import json

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from nasr.bin import export, train
from nasr.deploy.export import load_trained
from nasr.train.checkpoint import save_checkpoint
from nasr.utils.cli import cli_main
from nasr.utils.profile import count_params

ort = pytest.importorskip("onnxruntime", reason="onnxruntime checks the export: pip install -e .[test]")

CTC_GENOTYPE = {"space": "asr_revised",
                "normal": [["sep_conv_3x3", 0], ["conv_7x1_1x7", 1], ["max_pool_3x3", 0], ["dil_sep_conv_3x3", 2]],
                "normal_concat": [2, 3],
                "reduce": [["max_pool_3x3", 0], ["avg_pool_3x3", 1], ["sep_conv_5x5", 2], ["dil_sep_conv_5x5", 0]],
                "reduce_concat": [2, 3]}


def check_with_onnxruntime(exp, net_inputs):
    """Run the written model.onnx here (not through the exporter's own check) against torch."""
    net = load_trained(exp)
    sess = ort.InferenceSession(str(exp / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    feed = {i.name: x.numpy() for i, x in zip(sess.get_inputs(), net_inputs)}
    with torch.no_grad():
        want = net.module(*net_inputs).numpy()
    got = sess.run(None, feed)[0]
    assert got.shape == want.shape
    return float(np.abs(got - want).max())


def test_a_trained_darts_kws_network_exports_and_matches_torch(tmp_path, kws_corpus):
    train_dir, _, genotype = kws_corpus
    cfg = tmp_path / "train_tiny.yaml"
    cfg.write_text("model: {name: darts_net, C: 4, layers: 3, stem_stride: 2, auxiliary: true}\n"
                   "epochs: 1\nbatch_size: 6\n")
    exp = tmp_path / "exp"
    assert train.main(["--config", str(cfg), "--train-data", str(train_dir), "--exp-dir", str(exp),
                       "--device", "cpu", "--genotype", str(genotype)]) == 0
    assert export.main(["--exp-dir", str(exp), "--format", "onnx", "--repeats", "3"]) == 0
    rec = json.loads((exp / "export" / "export.json").read_text())
    assert rec["kind"] == "kws" and rec["parity"]["max_abs_diff"] < 1e-4
    assert rec["params"] == count_params(load_trained(exp).module.model)  # the auxiliary head is not exported
    assert rec["latency"]["torch_ms"] > 0 and rec["latency"]["onnxruntime_ms"] > 0
    assert rec["parity"]["inputs"][1][0] == 2  # a second batch size went through the same graph
    t, f = yaml.safe_load((exp / "config.yaml").read_text())["input_size"]
    x = torch.randn(3, 1, t, f)
    assert check_with_onnxruntime(exp, (x,)) < 1e-4


def _ctc_exp(tmp_path):
    """An exp dir as nasr.bin.train_ctc leaves it: config.yaml (model:, data:) and best.pt."""
    from nasr.models.registry import build_model

    exp = tmp_path / "exp_ctc"
    exp.mkdir()
    (exp / "genotype.json").write_text(json.dumps(CTC_GENOTYPE))
    model_cfg = {"name": "darts_net", "genotype": str(exp / "genotype.json"), "C": 4, "layers": 3,
                 "reduction": "thirds", "head": "ctc"}
    data = {"in_channels": 3, "feat_dim": 40, "num_units": 11, "lang": "data/lang_char"}
    (exp / "config.yaml").write_text(yaml.safe_dump({"model": model_cfg, "data": data}))
    torch.manual_seed(0)
    model = build_model(dict(model_cfg, in_channels=3, num_classes=11, freq_dim=40))
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    save_checkpoint(exp / "best.pt", {"model": model.state_dict(), "epoch": 1})
    return exp


def test_a_ctc_network_exports_with_a_dynamic_time_axis(tmp_path):
    exp = _ctc_exp(tmp_path)
    assert export.main(["--exp-dir", str(exp), "--repeats", "3"]) == 0
    rec = json.loads((exp / "export" / "export.json").read_text())
    assert rec["kind"] == "ctc" and rec["parity"]["max_abs_diff"] < 1e-4
    # An utterance of another length (odd, 3.57 s) through the same graph.
    assert check_with_onnxruntime(exp, (torch.randn(2, 3, 357, 40),)) < 1e-4


def _tower_exp(tmp_path, members=2):
    from nasr.tower.tower import TowerNet

    exp = tmp_path / "exp_tower"
    blocks = ["svdf_16_4", "lstm_12", "rnn_8", "proj_8"]
    for i in range(1, members + 1):
        torch.manual_seed(i)
        model = TowerNet(blocks, 20, 5)
        d = exp / f"member-{i}"
        d.mkdir(parents=True)
        (d / "train.json").write_text(json.dumps({"member": i, "blocks": blocks, "input_dim": 20,
                                                  "class_names": list("abcde")}))
        save_checkpoint(d / "model.pt", {"model": model.state_dict(), "blocks": blocks})
    (exp / "config.yaml").write_text("task: lid\n")
    return exp


def test_a_tower_ensemble_exports_as_one_graph_averaging_its_members(tmp_path):
    exp = _tower_exp(tmp_path)
    assert export.main(["--exp-dir", str(exp), "--repeats", "3"]) == 0
    rec = json.loads((exp / "export" / "export.json").read_text())
    assert rec["kind"] == "tower" and rec["members"] == 2 and rec["parity"]["max_abs_diff"] < 1e-4
    # and its streaming form, one frame per call, checked against the full-utterance logits
    assert (exp / "export" / "model_stream.onnx").is_file()
    assert rec["stream"]["frames"] == 100 and rec["stream"]["max_abs_diff"] < 1e-4
    assert check_with_onnxruntime(exp, (torch.randn(3, 250, 20),)) < 1e-4
    # The graph is the average: one member alone gives other logits.
    net1 = load_trained(exp, members=1)
    x = torch.randn(1, 100, 20)
    with torch.no_grad():
        assert not torch.allclose(net1.module(x), load_trained(exp).module(x))


@pytest.mark.parametrize("case, expected", [
    ("no_dir", "exp dir does not exist (fix: check --exp-dir"),
    ("no_best", "best.pt: checkpoint does not exist (fix: finish the training"),
    ("bad_format", "--format tflite: unknown export format (fix: use one of: onnx)"),
    ("no_config", "config.yaml: missing: not a training exp dir"),
    ("corrupt_best", "best.pt: corrupt or unreadable checkpoint"),
])
def test_bad_inputs_give_one_line_naming_the_file_and_the_fix(tmp_path, monkeypatch, capsys, case, expected):
    exp = _ctc_exp(tmp_path)
    argv = ["--exp-dir", str(exp)]
    if case == "no_dir":
        argv = ["--exp-dir", str(tmp_path / "nowhere")]
    elif case == "no_best":
        (exp / "best.pt").unlink()
    elif case == "bad_format":
        argv += ["--format", "tflite"]
    elif case == "no_config":
        (exp / "config.yaml").unlink()
    elif case == "corrupt_best":
        (exp / "best.pt").write_bytes(b"not a checkpoint")
    monkeypatch.setattr("sys.argv", ["export", *argv])
    assert cli_main(export.main, "export") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("export: error: ") and expected in err and "\n" not in err
    assert not (exp / "export").exists()


def test_dfsmn_san_exports_for_any_batch_and_length(tmp_path):
    """DFSMN-SAN was exported for batch 1 and 100 frames only: nn.MultiheadAttention's reshapes, the
    frame stacking's length branch and the mask's length were frozen at the traced shape."""
    from nasr.models.registry import build_model

    exp = tmp_path / "exp_dfsmn"
    exp.mkdir()
    mc = {"name": "dfsmn_san", "num_dfsmn": 2, "num_san": 1, "hidden": 64, "proj": 32, "heads": 4}
    (exp / "config.yaml").write_text(yaml.safe_dump(
        {"model": mc, "data": {"in_channels": 3, "feat_dim": 40, "num_units": 11, "lang": "data/lang_char"}}))
    torch.manual_seed(0)
    model = build_model(dict(mc, in_channels=3, num_classes=11, freq_dim=40)).eval()
    for name, p in model.named_parameters():
        if name.endswith((".back", ".ahead")):  # the FIR taps start at zero: give them weight
            nn.init.normal_(p, std=0.3)
    save_checkpoint(exp / "best.pt", {"model": model.state_dict()})
    assert export.main(["--exp-dir", str(exp), "--repeats", "3"]) == 0
    rec = json.loads((exp / "export" / "export.json").read_text())
    assert rec["parity"]["max_abs_diff"] < 1e-4 and "static_shape" not in rec
    assert rec["inputs"]["feats"] == {"0": "batch", "2": "time"} and rec["inputs"]["feats_lens"] == {"0": "batch"}
    session = ort.InferenceSession(str(exp / "export" / "model.onnx"), providers=["CPUExecutionProvider"])
    for frames, lens in ((137, [137, 90]), (64, [64, 61, 5]), (101, [101])):
        x = torch.randn(len(lens), 3, frames, 40)
        got = session.run(None, {"feats": x.numpy(), "feats_lens": np.array(lens, dtype=np.int64)})[0]
        with torch.no_grad():
            want, _ = model(x, torch.tensor(lens))
        assert got.shape == tuple(want.shape)
        for i, n in enumerate(model.output_lengths(torch.tensor(lens)).tolist()):  # the valid frames of each utterance
            assert np.abs(got[i, :n] - want[i, :n].numpy()).max() < 1e-4
