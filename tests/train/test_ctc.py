import math

import pytest
import torch

from nasr.asr.ctc_decode import greedy_decode
from nasr.data.asr_dataset import AsrBatch
from nasr.models.darts_net import DartsNetwork
from nasr.nas.asr_head import CtcHead
from nasr.nas.genotype import Genotype
from nasr.nas.ops import HEADS
from nasr.nas.search_model import SearchNetwork
from nasr.nas.spaces import get_space
from nasr.train.ctc import (batch_ctc_loss, ctc_loss, evaluate_ctc, output_lengths,
                            train_ctc_epoch)

GENO = Genotype(space="asr_revised",
                normal=[("sep_conv_3x3", 0), ("conv_7x1_1x7", 1), ("avg_pool_3x3", 0),
                        ("dil_sep_conv_3x3", 2), ("sep_conv_5x5", 1), ("max_pool_3x3", 3),
                        ("dil_sep_conv_5x5", 4), ("sep_conv_3x3", 0)],
                normal_concat=[2, 3, 4, 5],
                reduce=[("max_pool_3x3", 0), ("sep_conv_3x3", 1), ("avg_pool_3x3", 2),
                        ("conv_7x1_1x7", 0), ("dil_sep_conv_3x3", 1), ("sep_conv_3x3", 3),
                        ("max_pool_3x3", 4), ("sep_conv_5x5", 2)],
                reduce_concat=[2, 3, 4, 5])


def test_ctc_head_registered_and_per_frame():
    assert "ctc" in HEADS
    head = CtcHead(8, 10, 7)
    x = torch.randn(2, 8, 5, 10)
    y = head(x)
    assert y.shape == (2, 5, 7)
    assert torch.allclose(y.exp().sum(-1), torch.ones(2, 5), atol=1e-5)
    # frames are independent: changing frame 3 leaves the other frames' outputs unchanged
    x2 = x.clone()
    x2[:, :, 3] += 1.0
    y2 = head(x2)
    assert torch.allclose(y[:, [0, 1, 2, 4]], y2[:, [0, 1, 2, 4]])
    assert not torch.allclose(y[:, 3], y2[:, 3])
    with pytest.raises(ValueError, match="freq_dim"):
        CtcHead(8, None, 7)


def test_output_lengths_match_two_ceil_halvings():
    assert output_lengths(torch.tensor([1, 4, 5, 8, 9, 13])).tolist() == [1, 1, 2, 2, 3, 4]


@pytest.mark.parametrize("layers", [3, 5])
def test_evaluation_network_quarter_frame_rate(layers):
    net = DartsNetwork(GENO, in_channels=3, num_classes=11, C=4, layers=layers, reduction="thirds",
                       head="ctc", freq_dim=40)
    assert len(net.reduction_cells) == 2
    x = torch.randn(2, 3, 24, 40)
    logp, aux = net(x)
    assert aux is None and logp.shape == (2, 6, 11)


def test_search_network_ctc_head():
    net = SearchNetwork(3, 9, 4, 3, get_space("asr_revised"), reduction="thirds", head="ctc",
                        freq_dim=20)
    out = net(torch.randn(2, 3, 16, 20))
    assert out.shape == (2, 4, 9)


def test_ctc_loss_matches_hand_computed_single_frame():
    # One output frame, one label: loss = -log p(label)
    lp = torch.log_softmax(torch.tensor([[[0.0, 1.0, 2.0]]]), -1)
    loss = ctc_loss(lp, torch.tensor([1]), torch.tensor([2]), torch.tensor([1]))
    assert loss.item() == pytest.approx(-lp[0, 0, 2].item(), rel=1e-5)
    with pytest.raises(ValueError, match="exceed"):
        ctc_loss(lp, torch.tensor([2]), torch.tensor([2]), torch.tensor([1]))


def _toy_batches(n_batches=6, seed=0):
    """Utterances whose unit sequence is written into the features, so a net can learn it."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for b in range(n_batches):
        xs, tgts, tl = [], [], []
        for _ in range(2):
            labels = torch.randint(1, 5, (3,), generator=g)
            while labels[0] == labels[1] or labels[1] == labels[2]:
                labels = torch.randint(1, 5, (3,), generator=g)
            x = torch.zeros(3, 24, 8)
            for k, lab in enumerate(labels.tolist()):
                x[:, 8 * k + 2:8 * k + 6, 2 * (lab - 1):2 * lab] = 3.0
            xs.append(x)
            tgts.append(labels)
            tl.append(3)
        batch = AsrBatch(torch.stack(xs), torch.tensor([24, 24]), torch.cat(tgts), torch.tensor(tl))
        batches.append((batch, [f"u{b}_{i}" for i in range(2)]))
    return batches


def test_ctc_training_lowers_loss_and_decodes():
    torch.manual_seed(0)
    net = DartsNetwork(GENO, in_channels=3, num_classes=5, C=4, layers=3, reduction="thirds",
                       head="ctc", freq_dim=8)
    data = _toy_batches()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    before, _, _ = evaluate_ctc(net, data, torch.device("cpu"))
    for _ in range(15):
        stats = train_ctc_epoch(net, [b for b, _ in data], opt, torch.device("cpu"))
    after, hyps, refs = evaluate_ctc(net, data, torch.device("cpu"))
    assert after["loss"] < 0.5 * before["loss"]
    assert set(hyps) == set(refs) and len(refs) == 12
    assert all(len(r) == 3 for r in refs.values())
    assert 0.0 <= stats["wait_fraction"] < 1.0 and math.isfinite(stats["loss"])
    assert sum(h == refs[u] for u, h in hyps.items()) >= 6


def test_batch_ctc_loss_is_architect_loss_fn():
    net = SearchNetwork(3, 5, 4, 3, get_space("asr_revised"), reduction="thirds", head="ctc",
                        freq_dim=8)
    batch = _toy_batches(1)[0][0]
    loss = batch_ctc_loss(net, batch)
    g = torch.autograd.grad(loss, net.arch_parameters())
    assert all(t.abs().sum() > 0 for t in g)


def test_greedy_decode_respects_output_lengths():
    lp = torch.full((1, 4, 3), -10.0)
    lp[0, :, 1] = 0.0
    lp[0, 2:, 2] = 1.0
    assert greedy_decode(lp, output_lengths(torch.tensor([16])))[0] == [1, 2]
    assert greedy_decode(lp, output_lengths(torch.tensor([8])))[0] == [1]


@pytest.mark.parametrize("stem_stride", [1, 2])
def test_network_output_lengths_follow_the_stem_stride(stem_stride):
    # A stride-2 stem adds a third halving: the loss must use ceil(T/8) frames, not ceil(T/4)
    # (with the fixed two-halving lengths, ctc_loss saw more frames than the network emitted).
    torch.manual_seed(0)
    net = DartsNetwork(GENO, in_channels=3, num_classes=6, C=4, layers=3, reduction="thirds",
                       head="ctc", freq_dim=16, stem_stride=stem_stride)
    x_lens = torch.tensor([37, 21])
    x = torch.randn(2, 3, 40, 16)
    log_probs, _ = net(x)
    halvings = 2 + (stem_stride == 2)
    assert net.output_lengths(x_lens).tolist() == [math.ceil(n / 2 ** halvings) for n in (37, 21)]
    assert log_probs.size(1) == math.ceil(40 / 2 ** halvings)
    batch = AsrBatch(x, x_lens, torch.tensor([1, 2, 3, 1]), torch.tensor([2, 2]))
    loss = batch_ctc_loss(net, batch)
    assert torch.isfinite(loss)
    loss.backward()


def test_models_that_take_lengths_get_the_batch_lengths():
    # DFSMN-SAN masks padding itself: it must see x_lens, not guess them from zero frames.
    from nasr.models.registry import build_model

    torch.manual_seed(0)
    model = build_model({"name": "dfsmn_san", "num_classes": 6, "in_channels": 3, "freq_dim": 8,
                         "num_dfsmn": 2, "num_san": 1, "hidden": 16, "proj": 8, "heads": 2,
                         "lookback_order": 2, "lookahead_order": 1})
    seen = []
    inner = model.forward
    model.forward = lambda x, x_lens=None: (seen.append(x_lens), inner(x, x_lens))[1]
    x = torch.randn(2, 3, 12, 8)
    batch = AsrBatch(x, torch.tensor([12, 7]), torch.tensor([1, 2, 3]), torch.tensor([2, 1]))
    assert torch.isfinite(batch_ctc_loss(model, batch))
    assert seen and seen[0].tolist() == [12, 7]
