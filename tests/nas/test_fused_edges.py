"""The fused search network (shared ReLU per state, op weights folded into the BatchNorms, one
accumulated sum per node) computes what the plain per-op loop computes: same loss, same gradient
of every weight, alpha and beta, same BatchNorm running statistics, from the same weights."""
import pytest
import torch
import torch.nn.functional as F

from nasr.nas.search_model import SearchNetwork
from nasr.nas.spaces import get_space


def _pair(space, pc_k=1, **kw):
    nets = []
    for fused in (False, True):
        torch.manual_seed(0)
        nets.append(SearchNetwork(1, 5, 4, 3, get_space(space), reduction="thirds", pc_k=pc_k,
                                  fused_edges=fused, **kw))
    nets[1].load_state_dict(nets[0].state_dict())
    return nets


def _grads(net, x, y):
    net.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    return loss, {n: p.grad for n, p in net.named_parameters()}


# Between them every op (nas1: FactorizedReduce as skip at stride 2, pools with BN, dense dilated
# convs; asr_revised: dilated separable convs, 1x7-7x1), full and partial channels; odd input sizes
# so that the strided bypass pooling is exercised. The network is channels-last, as in the search.
# Recomputed edges (ops run again in backward) must give the same gradients and update the running
# statistics once per forward. In training, the pooling ops' outputs are shared by the edges that
# read one state (nas1 and darts have both pools).
# Partial channels recompute the sep_convs' bodies by default (nasr.nas.sep_body); without them
# only when asked (darts: sep_convs next to dilated separable ones).
@pytest.mark.parametrize("space,pc_k,recompute,sep", [
    ("nas1", 1, False, None), ("asr_revised", 1, False, None), ("nas1", 2, False, None),
    ("nas1", 2, True, None), ("asr_revised", 1, True, None), ("nas1", 2, False, False),
    ("darts", 1, False, True)])
def test_fused_edges_match_the_plain_loop(space, pc_k, recompute, sep):
    ref, fused = _pair(space, pc_k, recompute_edges=recompute, recompute_sep_convs=sep)
    assert fused.cells[0].edges[0].recompute_sep_convs == (pc_k > 1 if sep is None else sep)
    x = torch.randn(4, 1, 13, 11, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():  # alphas (and betas) away from uniform, so that every weight matters
        for a, b in zip(ref.arch_parameters(), fused.arch_parameters()):
            a.copy_(torch.randn(a.shape, generator=torch.Generator().manual_seed(2)))
            b.copy_(a)
    loss_ref, g_ref = _grads(ref, x, y)
    loss_fused, g_fused = _grads(fused, x, y)
    torch.testing.assert_close(loss_fused, loss_ref, rtol=1e-5, atol=1e-6)
    assert g_ref.keys() == g_fused.keys()
    for name in g_ref:
        assert (g_ref[name] is None) == (g_fused[name] is None), name
        if g_ref[name] is not None:
            torch.testing.assert_close(g_fused[name], g_ref[name], rtol=1e-4, atol=1e-5, msg=name)
    for (name, a), (_, b) in zip(ref.named_buffers(), fused.named_buffers()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)  # running stats, counts
    ref.eval(), fused.eval()
    with torch.no_grad():
        torch.testing.assert_close(fused(x), ref(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("recompute,sep", [(False, False), (True, False), (False, True)])
def test_fused_edges_with_op_dropout_and_masks(recompute, sep):
    # Recomputed edges must replay the forward's dropout masks in backward.
    ref, fused = _pair("darts", op_dropout={"sep_conv_3x3": 0.3, "max_pool_3x3": 0.2},
                       recompute_edges=recompute, recompute_sep_convs=sep)
    mask = torch.ones(14, 8, dtype=torch.bool)
    mask[::2, 5] = False
    mask[1::3, 1] = False  # max_pool_3x3 off on some edges: their running statistics stay put
    for net in (ref, fused):
        net.set_op_mask(normal=mask)
    x, y = torch.randn(2, 1, 10, 9), torch.tensor([1, 4])
    torch.manual_seed(3)
    loss_ref, g_ref = _grads(ref, x, y)
    torch.manual_seed(3)  # the same dropout draws, in the same order
    loss_fused, g_fused = _grads(fused, x, y)
    torch.testing.assert_close(loss_fused, loss_ref, rtol=1e-5, atol=1e-6)
    for name in ("alphas_normal", "alphas_reduce", "cells.0.edges.3.ops.4.0.1.weight"):
        torch.testing.assert_close(g_fused[name], g_ref[name], rtol=1e-4, atol=1e-5, msg=name)
    for (name, a), (_, b) in zip(ref.named_buffers(), fused.named_buffers()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


def test_new_keeps_the_switch():
    assert SearchNetwork(1, 5, 4, 3, get_space("darts"), fused_edges=False).new().cells[0].fused is False
    net = SearchNetwork(1, 5, 4, 3, get_space("darts"), pc_k=2, recompute_edges=True)
    assert net.cells[0].recompute_edges and net.new().cells[0].recompute_edges
    assert not SearchNetwork(1, 5, 4, 3, get_space("darts"), pc_k=2).new().cells[0].recompute_edges
    net = SearchNetwork(1, 5, 4, 3, get_space("darts"), recompute_sep_convs=True)
    assert net.new().cells[0].edges[0].recompute_sep_convs


def test_channel_shuffle_interleaves_and_keeps_channels_last():
    from nasr.nas.search_model import channel_shuffle
    x = torch.arange(2 * 8 * 3 * 5, dtype=torch.float32).view(2, 8, 3, 5)
    y = channel_shuffle(x, 4)
    # output channel j*groups + i is input channel i*(C/groups) + j
    assert [int(y[0, c, 0, 0]) // 15 for c in range(8)] == [0, 2, 4, 6, 1, 3, 5, 7]
    cl = channel_shuffle(x.contiguous(memory_format=torch.channels_last), 4)
    # A contiguous (NCHW) result sent every later op of a PC-DARTS cell down torch's mixed-format
    # paths (a ReLU's backward 6x slower).
    assert cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(cl, y)
