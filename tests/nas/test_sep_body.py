"""`sep_conv_body` (a sep_conv's body as one autograd node keeping one map) computes what the
op's modules compute: output, input and weight gradients, BN1's running statistics; with the
weights' gradients asked for (weight step) and without (alpha step: its own input-gradient path)."""
import pytest
import torch

from nasr.nas import sep_body
from nasr.nas.ops import OPS


def _body(name, C, stride):
    op = OPS[name](C, stride, False)
    leaves = [m for unit in op for m in unit]
    return leaves[1:-1]  # without the leading ReLU (shared in an edge) and the last BatchNorm


def _run(body, r, use_fn, weights_too, update_stats=True):
    r = r.detach().requires_grad_()
    if use_fn:
        out = sep_body.sep_conv_body(body, r, update_stats)
    else:
        out = r
        for m in body:
            out = m(out)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(
        memory_format=torch.channels_last if r.is_contiguous(memory_format=torch.channels_last)
        else torch.contiguous_format)
    params = [m.weight for m in body if isinstance(m, torch.nn.Conv2d)]
    grads = torch.autograd.grad(out, [r] + params if weights_too else [r], g)
    return out.detach(), grads


@pytest.mark.parametrize("name,C,stride,size,channels_last", [
    ("sep_conv_3x3", 4, 1, (13, 11), True), ("sep_conv_5x5", 8, 2, (13, 11), True),
    ("sep_conv_3x3", 12, 2, (10, 8), False), ("sep_conv_5x5", 3, 1, (9, 7), True)])
@pytest.mark.parametrize("weights_too", [True, False])
def test_sep_conv_body_matches_the_modules(name, C, stride, size, channels_last, weights_too):
    torch.manual_seed(0)
    ref = _body(name, C, stride)
    mine = _body(name, C, stride)
    for a, b in zip(ref, mine):
        b.load_state_dict(a.state_dict())
    r = torch.relu(torch.randn(3, C, *size))
    if channels_last:
        r = r.contiguous(memory_format=torch.channels_last)
    assert sep_body.applies(mine, r.requires_grad_())
    out_ref, g_ref = _run(ref, r, False, weights_too)
    out, g = _run(mine, r, True, weights_too)
    torch.testing.assert_close(out, out_ref, rtol=1e-4, atol=1e-5)
    assert len(g) == len(g_ref) == (5 if weights_too else 1)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    bn_ref, bn = ref[2], mine[2]
    torch.testing.assert_close(bn.running_mean, bn_ref.running_mean)
    torch.testing.assert_close(bn.running_var, bn_ref.running_var)
    assert int(bn.num_batches_tracked) == int(bn_ref.num_batches_tracked) == 1


def test_sep_conv_body_can_leave_running_statistics_alone():
    body = _body("sep_conv_3x3", 4, 1)
    bn = body[2]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    _run(body, torch.randn(2, 4, 6, 5), True, True, update_stats=False)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]


def test_applies_only_to_a_training_step_of_an_undilated_sep_conv():
    body = _body("sep_conv_3x3", 4, 1)
    r = torch.randn(2, 4, 6, 5, requires_grad=True)
    assert sep_body.applies(body, r)
    dilated = [m for m in OPS["dil_sep_conv_3x3"](4, 1, False)][1:] + [torch.nn.ReLU()] + body[4:]
    assert not sep_body.applies(dilated, r)  # a dilated depthwise conv: not this function's
    assert not sep_body.applies(body[:4], r)
    with torch.no_grad():
        assert not sep_body.applies(body, r)
    body[2].eval()  # evaluation normalises with running statistics: the modules' job
    assert not sep_body.applies(body, r)
