"""DFSMN-SAN baseline: shapes, lengths, gradients, size scaling, padding invariance, memory taps."""
from __future__ import annotations

import pytest
import torch

from nasr.models.dfsmn_san import DfsmnSan, FirMemory, build_dfsmn_san, default_san_positions

SMALL = dict(vocab_size=11, in_channels=3, feat_dim=8, num_dfsmn=3, num_san=1, hidden=32, proj=16,
             lookback_order=3, lookahead_order=2, lookback_stride=2, lookahead_stride=1, heads=2, dropout=0.0)


def randomize_memory(model):
    """Taps start at zero; give them values so the tests exercise the temporal mixing."""
    torch.manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, FirMemory):
                for t in (m.back, m.ahead):
                    if t is not None:
                        t.normal_(0, 0.5)
    return model


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_shapes_and_lengths():
    model = build_dfsmn_san(dict(SMALL, name="dfsmn_san"))
    x = torch.randn(3, 3, 37, 8)
    lens = torch.tensor([37, 20, 5])
    logp, out_lens = model(x, lens)
    assert logp.shape == (3, 10, 11)                  # ceil(37 / 4)
    assert out_lens.tolist() == [10, 5, 2]            # ceil(len / 4)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(3, 10), atol=1e-5)
    # 4-frame aligned input (the paper pads to it): exactly T/4
    logp, out_lens = model(torch.randn(2, 3, 32, 8), torch.tensor([32, 32]))
    assert logp.shape[1] == 8 and out_lens.tolist() == [8, 8]


def test_padding_does_not_change_valid_outputs():
    model = randomize_memory(DfsmnSan(**SMALL)).eval()
    torch.manual_seed(0)
    short = torch.randn(1, 3, 18, 8)
    alone, alone_len = model(short, torch.tensor([18]))
    # the same utterance in a padded batch, the padding filled with garbage (not zeros)
    batch = torch.randn(2, 3, 41, 8) * 10
    batch[0, :, :18] = short[0]
    padded, lens = model(batch, torch.tensor([18, 41]))
    assert lens[0] == alone_len[0] == 5
    assert torch.allclose(padded[0, :5], alone[0], atol=1e-5)
    # without the masks inside the network, the look-ahead of the last valid frames would read
    # the bias-made values of the 6 padded frames that the batch has and the lone utterance has not
    assert padded.shape[1] == 11


def test_memory_mixes_time_in_both_directions_with_orders_and_strides():
    mem = FirMemory(1, lookback_order=2, lookahead_order=2, lookback_stride=3, lookahead_stride=2)
    with torch.no_grad():
        mem.back.copy_(torch.tensor([[[10.0, 100.0]]]))   # taps at t-6 and t-3
        mem.ahead.copy_(torch.tensor([[[1000.0, 10000.0]]]))  # taps at t+2 and t+4
    x = torch.zeros(1, 20, 1)
    x[0, 10, 0] = 1.0
    y = mem(x)[0, :, 0]
    # an impulse at 10 shows at 10 (itself), 13 and 16 (look-back), 8 and 6 (look-ahead)
    assert y[10] == 1 and y[13] == 100 and y[16] == 10 and y[8] == 1000 and y[6] == 10000
    assert int((y != 0).sum()) == 5


def test_gradients_reach_every_parameter():
    model = randomize_memory(DfsmnSan(**SMALL))
    logp, out_lens = model(torch.randn(2, 3, 24, 8), torch.tensor([24, 13]))
    targets = torch.tensor([[1, 2, 3], [4, 5, 0]])
    loss = torch.nn.functional.ctc_loss(logp.transpose(0, 1), targets, out_lens, torch.tensor([3, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_parameter_count_scales_with_config():
    base = n_params(DfsmnSan(**SMALL))
    assert n_params(DfsmnSan(**dict(SMALL, num_dfsmn=6))) > base
    assert n_params(DfsmnSan(**dict(SMALL, num_san=2, num_dfsmn=3))) > base
    assert n_params(DfsmnSan(**dict(SMALL, hidden=64))) > base
    # each extra DFSMN component costs exactly one component's parameters
    one = DfsmnSan(**SMALL).dfsmn[0]
    assert n_params(DfsmnSan(**dict(SMALL, num_dfsmn=4))) - base == n_params(one)
    # memory orders add proj taps each
    assert n_params(DfsmnSan(**dict(SMALL, lookback_order=5))) - base == 2 * 16 * SMALL["num_dfsmn"]
    # the AISHELL-2 default is near the paper's 14.4 M (1434 units: 1394 syllables, 39 phones, blank)
    paper = n_params(DfsmnSan(vocab_size=1434))
    assert 13.0e6 < paper < 15.5e6


def test_san_positions_and_config_errors():
    assert default_san_positions(10, 2) == [5, 10]
    assert default_san_positions(30, 3) == [10, 20, 30]
    assert DfsmnSan(**dict(SMALL, num_san=2, num_dfsmn=4)).san_positions == [2, 4]
    with pytest.raises(ValueError, match="san_positions"):
        DfsmnSan(**dict(SMALL, san_positions=[7]))
    with pytest.raises(ValueError, match="divisible"):
        DfsmnSan(**dict(SMALL, heads=3))
    with pytest.raises(ValueError, match="does not take"):
        build_dfsmn_san(dict(SMALL, layers=3))
    with pytest.raises(ValueError, match="vocab_size"):
        build_dfsmn_san({"num_dfsmn": 2})
    model = DfsmnSan(**SMALL)
    with pytest.raises(ValueError, match="in_channels/feat_dim"):
        model(torch.randn(1, 1, 12, 8), torch.tensor([12]))
    with pytest.raises(ValueError, match="x_lens"):
        model(torch.randn(1, 3, 12, 8), torch.tensor([13]))


def test_registry_builds_ctc_convention_and_infers_padding():
    from nasr.models.registry import build_model
    cfg = {k: v for k, v in SMALL.items() if k not in ("vocab_size", "in_channels", "feat_dim")}
    model = build_model(dict(cfg, name="dfsmn_san", num_classes=11, in_channels=3, freq_dim=8))
    randomize_memory(model).eval()
    x = torch.randn(2, 3, 24, 8)
    x[1, :, 13:] = 0.0                               # zero padding as the ASR collate leaves it
    lens = torch.tensor([24, 13])
    out, aux = model(x)
    assert aux is None and out.shape == (2, 6, 11)
    ref, _ = model(x, lens)
    assert torch.allclose(out, ref, atol=1e-6)       # padding found without explicit lengths
    assert model.output_lengths(lens).tolist() == [6, 4]
    alone, _ = model(x[1:, :, :13])                  # the padded utterance alone: same valid frames
    assert torch.allclose(out[1, :4], alone[0], atol=1e-5)
    with pytest.raises(ValueError, match="does not take"):
        build_model(dict(cfg, name="dfsmn_san", num_classes=11, layers=3))
    with pytest.raises(ValueError, match="comes from the data"):
        build_model(dict(cfg, name="dfsmn_san", num_classes=11, vocab_size=11))


def test_attention_matches_torch_multihead_attention():
    """The sublayer computes attention itself (so that ONNX export keeps time dynamic) from
    nn.MultiheadAttention's parameters: it must give what that module's forward gives, padded keys
    masked, so that checkpoints trained before keep their outputs."""
    from nasr.models.dfsmn_san import SelfAttentionSublayer

    torch.manual_seed(0)
    layer = SelfAttentionSublayer(32, 4, dropout=0.0).eval()
    x = torch.randn(3, 11, 32)
    valid = torch.arange(11)[None, :] < torch.tensor([11, 7, 2])[:, None]
    y = layer.norm(x)
    want, _ = layer.attn(y, y, y, key_padding_mask=~valid, need_weights=False)
    torch.testing.assert_close(layer(x, valid), x + want, rtol=1e-5, atol=1e-6)
    layer.train()  # the autograd path too
    torch.testing.assert_close(layer(x, valid), x + layer.attn(y, y, y, key_padding_mask=~valid,
                                                                need_weights=False)[0], rtol=1e-5, atol=1e-6)
