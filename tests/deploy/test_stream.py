"""Streaming towers (issue 15, item 5): RNN/LSTM/SVDF/PROJ towers run frame by frame with carried
state, and after every frame give the logits of the full-utterance forward pass on the frames so far."""
import numpy as np
import pytest
import torch

from nasr.deploy.stream import StreamingTower
from nasr.tower.tower import TowerNet

BLOCKS = ["svdf_16_4", "lstm_12", "rnn_8", "proj_8", "svdf_8_1"]


def tower(seed, blocks=BLOCKS):
    torch.manual_seed(seed)
    return TowerNet(blocks, 20, 5, dropout=0.3).eval()


def test_frame_by_frame_logits_are_the_full_utterance_logits_after_every_frame():
    t = tower(0)
    feats = torch.randn(2, 37, 20)
    streamed = StreamingTower(t).run(feats)
    with torch.no_grad():
        full = torch.stack([t(feats[:, :n]) for n in range(1, 38)], dim=1)
    assert streamed.shape == (2, 37, 5)
    assert torch.allclose(streamed, full, atol=1e-5, rtol=0)
    # the state matters: a stream that forgot it (fresh state every frame) is far off
    fresh = StreamingTower(t)
    with torch.no_grad():
        last, *_ = fresh(feats[:, -1], *fresh.initial_state(2))
    assert not torch.allclose(last, full[:, -1], atol=1e-3)


def test_an_ensemble_streams_as_the_average_of_its_members():
    members = [tower(1), tower(2, ["lstm_8", "svdf_6_3"])]
    feats = torch.randn(1, 25, 20)
    with torch.no_grad():
        want = sum(m(feats) for m in members) / 2
    assert torch.allclose(StreamingTower(members).run(feats)[:, -1], want, atol=1e-5, rtol=0)


def test_the_streaming_form_exports_to_onnx_and_matches_frame_by_frame(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime runs the export: pip install -e .[test]")
    from nasr.deploy.export import TowerEnsemble, TrainedNetwork, export_stream_onnx, onnxruntime_session, stream_parity

    module = TowerEnsemble([tower(3)]).eval()
    feats = torch.randn(1, 30, 20)
    net = TrainedNetwork("tower", module, (feats,), ["feats"], ["logits"], {"feats": {0: "batch", 1: "time"}},
                         30, "member-1/model.pt")
    path = export_stream_onnx(net, tmp_path / "model_stream.onnx")
    check = stream_parity(net, onnxruntime_session(path), repeats=3)
    assert check["frames"] == 30 and check["max_abs_diff"] < 1e-4
    # a batch of 3 streams through the same graph
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    stream = StreamingTower(list(module.members))
    x = torch.randn(3, 12, 20)
    state = [s.numpy() for s in stream.initial_state(3)]
    names = [i.name for i in sess.get_inputs()]
    for t in range(12):
        logits, *state = sess.run(None, dict(zip(names, [x[:, t].numpy(), *state])))
    with torch.no_grad():
        assert np.abs(logits - module(x).numpy()).max() < 1e-4
