import pytest
import torch
import torch.nn.functional as F

from nasr.nas.genotype import Genotype
from nasr.nas.search_model import MixedOp, SearchNetwork
from nasr.nas.spaces import get_space


def test_kws_search_network_forward_backward_reaches_alphas_and_weights():
    torch.manual_seed(0)
    net = SearchNetwork(1, 12, 16, 6, get_space("nas1"), reduction="every_two")
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [2, 5]
    x = torch.randn(2, 1, 101, 40)
    feats = net.forward_features(x)
    assert feats.shape == (2, 4 * 64, 26, 10)
    logits = net.head(feats)
    assert logits.shape == (2, 12)
    F.cross_entropy(logits, torch.tensor([1, 7])).backward()
    for a in net.arch_parameters():
        assert a.shape == (14, 8) and a.grad is not None and a.grad.abs().sum() > 0
    stem_w = net.stem[0].weight
    assert stem_w.grad is not None and stem_w.grad.abs().sum() > 0
    ids = {id(p) for p in net.weight_parameters()}
    assert not any(id(a) in ids for a in net.arch_parameters())
    assert len(net.weight_parameters()) + 2 == len(list(net.parameters()))


def _small(space="darts", **kw):
    torch.manual_seed(0)
    return SearchNetwork(1, 5, 4, 3, get_space(space), reduction="thirds", **kw)


def test_alpha_init_softmax_genotype_and_new():
    net = _small()
    assert net.alphas_normal.abs().max() < 1e-2
    w_n, w_r = net.alpha_softmax()
    torch.testing.assert_close(w_n.sum(1), torch.ones(14))
    g = net.genotype("darts")
    assert isinstance(g, Genotype) and g.space == "darts" and len(g.normal) == 8
    other = net.new()
    assert other is not net
    torch.testing.assert_close(other.alphas_normal, net.alphas_normal)
    with torch.no_grad():
        other.alphas_normal.add_(1.0)
    assert not torch.equal(other.alphas_normal, net.alphas_normal)


def test_3d_input_and_wrong_channels():
    net = _small()
    assert net(torch.randn(2, 21, 10)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"expected input \(N, 1, T, F\)"):
        net(torch.randn(2, 3, 21, 10))


def test_none_and_zero_weight_ops_are_not_computed():
    net = _small()
    calls = {}

    def counter(name):
        def hook(mod, inp, out):
            calls[name] = calls.get(name, 0) + 1
        return hook

    edge = net.cells[0].edges[0]
    for name, op in zip(edge.op_names, edge.ops):
        # The fused edge calls an op's layers, not the op: count the op's first conv.
        first_conv = next((m for m in op.modules() if isinstance(m, torch.nn.Conv2d)), op)
        first_conv.register_forward_hook(counter(name))
    net(torch.randn(2, 1, 21, 10))
    assert "none" not in calls and calls["sep_conv_3x3"] == 1
    mask = torch.ones(14, 8, dtype=torch.bool)
    mask[:, get_space("darts").index("sep_conv_3x3")] = False
    net.set_op_mask(normal=mask)
    calls.clear()
    net(torch.randn(2, 1, 21, 10))
    assert "sep_conv_3x3" not in calls and calls["dil_sep_conv_3x3"] == 1
    assert net.alpha_softmax()[0][:, 4].abs().sum() == 0
    assert all(op != "sep_conv_3x3" for op, _ in net.genotype("darts").normal)
    with pytest.raises(ValueError, match="every op of some edge"):
        net.set_op_mask(normal=torch.zeros(14, 8, dtype=torch.bool))


def test_edge_with_only_none_gives_zeros_of_strided_shape():
    op = MixedOp(4, 2, ["none"])
    out = op(torch.randn(2, 4, 21, 9), torch.ones(1))
    assert out.shape == (2, 4, 11, 5) and out.abs().sum() == 0


def test_op_dropout_only_hits_named_ops_while_training():
    torch.manual_seed(0)
    op = MixedOp(4, 1, ["avg_pool_3x3", "max_pool_3x3"], op_dropout={"avg_pool_3x3": 0.5})
    x = torch.randn(2, 4, 9, 9)
    only_avg = torch.tensor([1.0, 0.0])
    op.train()
    dropped = op(x, only_avg)
    assert (dropped == 0).float().mean() > 0.3
    only_max = torch.tensor([0.0, 1.0])
    assert (op(x, only_max) == 0).float().mean() < 0.05
    op.eval()
    assert (op(x, only_avg) == 0).float().mean() < 0.05
    net = _small()
    net.set_op_dropout({"dil_sep_conv_3x3": 0.1})
    assert net.cells[1].edges[3].op_dropout == {"dil_sep_conv_3x3": 0.1}
    assert net.new().cells[0].edges[0].op_dropout == {"dil_sep_conv_3x3": 0.1}


def test_per_edge_op_lists():
    per_edge = {"normal": [["none", "sep_conv_3x3", "max_pool_3x3"]] * 14,
                "reduce": [["max_pool_3x3", "skip_connect", "dil_sep_conv_5x5"]] * 14}
    torch.manual_seed(0)
    net = SearchNetwork(1, 5, 4, 3, per_edge, reduction="thirds")
    assert net.alphas_normal.shape == (14, 3)
    assert net(torch.randn(2, 1, 21, 10)).shape == (2, 5)
    g = net.genotype("darts")
    assert {op for op, _ in g.reduce} <= {"max_pool_3x3", "skip_connect", "dil_sep_conv_5x5"}


def _saved_bytes(net, x):
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x).sum()
    return total[0]


def test_partial_channels_runs_and_saves_activations():
    torch.manual_seed(0)
    full = SearchNetwork(1, 5, 8, 3, get_space("darts"), reduction="thirds")
    torch.manual_seed(0)
    pc = SearchNetwork(1, 5, 8, 3, get_space("darts"), reduction="thirds", pc_k=4)
    x = torch.randn(2, 1, 21, 11)  # odd sizes: the bypass pooling must agree with the ops
    out = pc(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert pc.alphas_reduce.grad.abs().sum() > 0
    assert _saved_bytes(pc, x) < 0.5 * _saved_bytes(full, x)
    with pytest.raises(ValueError, match="pc_k"):
        SearchNetwork(1, 5, 6, 3, get_space("darts"), pc_k=4)


def test_channels_last_is_numerically_the_same():
    torch.manual_seed(0)
    a = SearchNetwork(1, 5, 4, 3, get_space("nas2"), reduction="thirds", channels_last=True)
    torch.manual_seed(0)
    b = SearchNetwork(1, 5, 4, 3, get_space("nas2"), reduction="thirds", channels_last=False)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 1, 21, 10)
    torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)


def test_top_ops_per_edge_shrinks_each_edge_for_the_next_stage():
    net = _small()
    ops = get_space("darts")
    with torch.no_grad():
        net.alphas_normal.zero_()
        net.alphas_normal[:, ops.index("dil_sep_conv_5x5")] = 3.0
        net.alphas_normal[:, ops.index("max_pool_3x3")] = 2.0
        net.alphas_normal[0, ops.index("avg_pool_3x3")] = 5.0
    kept = net.top_ops_per_edge(3, always_keep=("none",))
    assert kept["normal"][0] == ["none", "avg_pool_3x3", "dil_sep_conv_5x5"]
    assert kept["normal"][1] == ["none", "max_pool_3x3", "dil_sep_conv_5x5"]
    assert all(len(e) == 3 for e in kept["reduce"])
    smaller = SearchNetwork(1, 5, 4, 3, kept, reduction="thirds")
    assert smaller.alphas_normal.shape == (14, 3)
    with pytest.raises(ValueError, match="k=9"):
        net.top_ops_per_edge(9)
