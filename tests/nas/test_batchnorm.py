import pytest
import torch
from torch import nn

from nasr.nas import batchnorm
from nasr.nas.batchnorm import BatchNorm2d

CL = torch.channels_last


@pytest.mark.parametrize("shape,affine,momentum", [
    ((8, 12, 13, 10), True, 0.1),    # numel a multiple of lcm(12, 64): the 192-wide rows
    ((3, 4, 7, 5), False, 0.1),      # not: rows of C
    ((5, 6, 9, 4), True, None),      # cumulative moving average
    ((2, 12, 51, 20), False, 0.3)])
def test_row_kernel_matches_batchnorm(shape, affine, momentum):
    """Output, input/weight/bias gradients and running statistics against nn.BatchNorm2d over
    three training steps, inputs with a large mean (the variance is computed centred)."""
    torch.manual_seed(0)
    C = shape[1]
    fast = BatchNorm2d(C, affine=affine, momentum=momentum).to(memory_format=CL)
    ref = nn.BatchNorm2d(C, affine=affine, momentum=momentum)
    ref.load_state_dict(fast.state_dict())  # the same state dict
    if affine:
        with torch.no_grad():
            for p in (fast.weight, fast.bias):
                p.uniform_(0.5, 1.5)
        ref.load_state_dict(fast.state_dict())
    for _ in range(3):
        x = (torch.randn(shape) * 3 + 20).contiguous(memory_format=CL).requires_grad_(True)
        y = fast(x)
        assert "RowBatchNorm" in type(y.grad_fn).__name__  # the row kernel ran
        y_ref = ref(x)
        torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
        g = torch.randn_like(y)
        params = [x] + ([fast.weight, fast.bias] if affine else [])
        params_ref = [x] + ([ref.weight, ref.bias] if affine else [])
        for a, b in zip(torch.autograd.grad(y, params, g), torch.autograd.grad(y_ref, params_ref, g)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    for name, buf in fast.named_buffers():
        torch.testing.assert_close(buf, dict(ref.named_buffers())[name], rtol=1e-5, atol=1e-5)
    fast.eval(), ref.eval()
    x = torch.randn(shape).contiguous(memory_format=CL)
    torch.testing.assert_close(fast(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["16 channels", "nchw", "eval", "bf16", "native switch"])
def test_other_inputs_go_to_the_native_batchnorm(case, monkeypatch):
    C = 16 if case == "16 channels" else 12
    bn = BatchNorm2d(C)
    x = torch.randn(4, C, 6, 5)
    if case != "nchw":
        x = x.contiguous(memory_format=CL)
    if case == "eval":
        bn.eval()
    if case == "bf16":
        x = x.bfloat16()
    if case == "native switch":
        monkeypatch.setattr(batchnorm, "native", True)
    y = bn(x.requires_grad_(True))
    assert "RowBatchNorm" not in type(y.grad_fn).__name__


def test_output_can_be_added_to_in_place():
    """The fused edges accumulate ops' outputs in place: the row kernel's output is no view."""
    torch.manual_seed(0)
    bn, ref = BatchNorm2d(4), nn.BatchNorm2d(4)
    x = torch.randn(2, 4, 5, 3).contiguous(memory_format=CL).requires_grad_(True)
    y = bn(x).add_(x)
    g = torch.autograd.grad(y.square().sum(), x)[0]
    g_ref = torch.autograd.grad(ref(x).add_(x).square().sum(), x)[0]
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-4)
