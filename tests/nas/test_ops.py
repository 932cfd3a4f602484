import pytest
import torch

from nasr.nas.ops import (OPS, FactorizedReduce, build_head, build_op, reduced_size,
                          reduction_indices)
from nasr.nas.spaces import OP_SPACES, get_space

ALL_SPACE_OPS = sorted({op for ops in OP_SPACES.values() for op in ops})


@pytest.mark.parametrize("name", ALL_SPACE_OPS)
def test_every_op_keeps_shape_at_stride1_and_halves_with_ceil_at_stride2(name):
    torch.manual_seed(0)
    x = torch.randn(2, 8, 101, 40)
    assert build_op(name, 8, 1, affine=True)(x).shape == (2, 8, 101, 40)
    assert build_op(name, 8, 2, affine=True)(x).shape == (2, 8, 51, 20)
    # after one reduction the map is 51x20: odd T again
    y = torch.randn(2, 8, 51, 20)
    assert build_op(name, 8, 2, affine=False)(y).shape == (2, 8, 26, 10)


def test_factorized_reduce_on_even_input_matches_darts_slicing():
    torch.manual_seed(0)
    fr = FactorizedReduce(4, 8)
    x = torch.randn(1, 4, 32, 32)
    xr = torch.relu(x)
    conv = torch.nn.functional.conv2d  # DARTS's op: two 1x1 stride-2 convs
    expected = fr.bn(torch.cat([conv(xr, fr.conv_1.weight, stride=2),
                                conv(xr[:, :, 1:, 1:], fr.conv_2.weight, stride=2)], dim=1))
    torch.testing.assert_close(fr(x), expected)


@pytest.mark.parametrize("size", [(13, 11), (12, 11), (13, 10)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_factorized_reduce_on_odd_input_pads_then_shifts(size, channels_last):
    # The definition: pad one zero row/column at the end, shift by one, two 1x1 stride-2 convs;
    # the op pads the second conv's output instead. Same output and gradients.
    torch.manual_seed(0)
    fr = FactorizedReduce(4, 8)
    x = torch.randn(2, 4, *size)
    if channels_last:
        fr, x = fr.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    y = fr.body(x)
    conv = torch.nn.functional.conv2d
    xd = x.detach().contiguous().requires_grad_()
    shifted = torch.nn.functional.pad(xd, (0, 1, 0, 1))[:, :, 1:, 1:]
    expected = torch.cat([conv(xd, fr.conv_1.weight.detach().contiguous(), stride=2),
                          conv(shifted, fr.conv_2.weight.detach().contiguous(), stride=2)], dim=1)
    torch.testing.assert_close(y, expected)
    g = torch.randn(expected.shape)
    y.backward(g)
    expected.backward(g)
    torch.testing.assert_close(x.grad, xd.grad)
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_none_op_is_zero_and_strided():
    out = build_op("none", 4, 2, False)(torch.randn(1, 4, 7, 5))
    assert out.shape == (1, 4, 4, 3) and out.abs().sum() == 0


def test_unknown_op_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown op 'sep_conv_9x9'.*sep_conv_3x3"):
        build_op("sep_conv_9x9", 4, 1, True)


def test_spaces_and_errors():
    assert get_space("darts") == ["none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                                  "sep_conv_3x3", "sep_conv_5x5", "dil_sep_conv_3x3", "dil_sep_conv_5x5"]
    assert "conv_3x3" in get_space("nas2") and "sep_conv_3x3" not in get_space("nas2")
    assert "skip_connect" not in get_space("asr_revised")
    assert "conv_7x1_1x7" in get_space("asr_revised")
    assert all(op in OPS for op in ALL_SPACE_OPS)
    with pytest.raises(ValueError, match="unknown op space 'nas3'.*nas1"):
        get_space("nas3")


def test_reduction_placement():
    assert reduction_indices(6, "every_two") == [2, 5]
    assert reduction_indices(12, "every_two") == [2, 5, 8, 11]
    assert reduction_indices(20, "thirds") == [6, 13]
    assert reduction_indices(8, [5, 2]) == [2, 5]
    with pytest.raises(ValueError, match="outside"):
        reduction_indices(4, [4])
    with pytest.raises(ValueError, match="unknown reduction"):
        reduction_indices(4, "halves")
    assert reduced_size(40, 2) == 10 and reduced_size(101, 2) == 26 and reduced_size(None, 2) is None


def test_unknown_head():
    with pytest.raises(ValueError, match="unknown head 'no_such_head'.*classifier"):
        build_head("no_such_head", 8, 10, 5)


def test_factorized_reduce_backward_on_channels_last_does_not_crash():
    """Regression: a 1x1 stride-2 conv's CPU backward on channels_last input aborted the process
    (double free) for 12 channels at 64x40 in torch 2.13; run it in a child so a crash fails here."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import torch
        from nasr.nas.ops import FactorizedReduce
        cl = torch.channels_last
        m = FactorizedReduce(12, 12).to(memory_format=cl)
        x = torch.randn(2, 12, 64, 40).contiguous(memory_format=cl).requires_grad_()
        y = m(x)
        assert y.shape == (2, 12, 32, 20)
        y.sum().backward()
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]



@pytest.mark.parametrize("size,k,stride,channels_last", [
    ((101, 40), 3, 1, True), ((101, 40), 5, 2, True), ((51, 20), 3, 2, False), ((7, 9), 5, 2, True),
    ((6, 8), 3, 2, True), ((5, 5), 5, 1, False)])
def test_depthwise_input_grad_matches_the_convolutions_own(size, k, stride, channels_last):
    """`_DepthwiseConvFn`'s input gradient (a forward convolution over the zero-spread output
    gradient) and weight gradient against nn.Conv2d's backward with the same weights: odd and even
    sizes, both strides, both memory formats."""
    from nasr.nas.ops import _DepthwiseConvFn

    torch.manual_seed(0)
    pad = 2 * (k - 1) // 2
    plain = torch.nn.Conv2d(6, 6, k, stride=stride, padding=pad, dilation=2, groups=6, bias=False)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    plain = plain.to(memory_format=fmt)
    x = torch.randn(3, 6, *size).contiguous(memory_format=fmt).requires_grad_(True)
    weight = plain.weight.detach().clone().requires_grad_(True)
    y = _DepthwiseConvFn.apply(x, weight, stride, pad, 2)
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad(y, (x, weight), g)
    y_ref = plain(x)
    gx_ref, gw_ref = torch.autograd.grad(y_ref, (x, plain.weight), g)
    assert torch.equal(y, y_ref)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-5, atol=1e-5)
    assert gx.shape == x.shape


@pytest.mark.parametrize("channels,groups,k,stride,size,path", [
    (8, 8, 3, 1, (101, 40), "input_grad"), (12, 12, 5, 1, (7, 9), "input_grad"),
    (4, 4, 3, 1, (9, 8), "conv2d"),  # under 8 channels: nn.Conv2d's own path
    (6, 1, 3, 1, (9, 8), "conv2d"),  # dense, unstrided
    (6, 1, 5, 2, (51, 20), "subsampled"), (6, 1, 3, 2, (7, 9), "subsampled"),
    (8, 8, 5, 2, (6, 8), "subsampled"), (4, 4, 3, 2, (101, 40), "subsampled")])
def test_dilated_conv_matches_nn_conv2d_on_every_path(channels, groups, k, stride, size, path):
    """`DilatedConv2d` against nn.Conv2d with the same state dict: outputs, input and weight
    gradients, for dense and depthwise kernels on the path each shape takes (a stride-2 conv at
    dilation 2 as an undilated conv of the subsampled input; the depthwise input gradient as a
    forward conv; nn.Conv2d's own), at odd and even sizes, in both memory formats."""
    from nasr.nas.ops import DilatedConv2d, subsampled_conv_args

    pad = k - 1  # dilation 2, "same" padding
    assert (subsampled_conv_args(stride, pad, 2) is not None) == (path == "subsampled")
    for fmt in (torch.channels_last, torch.contiguous_format):
        torch.manual_seed(0)
        fast = DilatedConv2d(channels, channels, k, stride, pad, 2, groups=groups).to(memory_format=fmt)
        plain = torch.nn.Conv2d(channels, channels, k, stride=stride, padding=pad, dilation=2,
                                groups=groups, bias=False).to(memory_format=fmt)
        plain.load_state_dict(fast.state_dict())  # same parameters, same state-dict keys
        x = torch.randn(3, channels, *size).contiguous(memory_format=fmt).requires_grad_(True)
        y, y_ref = fast(x), plain(x)
        assert ("DepthwiseConv" in type(y.grad_fn).__name__) == (path == "input_grad")
        assert y.shape == y_ref.shape
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        g = torch.randn_like(y)
        gx, gw = torch.autograd.grad(y, (x, fast.weight), g)
        gx_ref, gw_ref = torch.autograd.grad(y_ref, (x, plain.weight), g)
        torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(gw, gw_ref, rtol=1e-4, atol=1e-4)


def test_subsampled_conv_args_only_where_the_taps_fall_on_the_stride():
    from nasr.nas.ops import subsampled_conv_args

    assert subsampled_conv_args(2, 4, 2) == ((2, 2), (2, 2), (1, 1))
    assert subsampled_conv_args(1, 2, 2) is None  # no stride
    assert subsampled_conv_args(2, 1, 2) is None  # odd padding: the taps fall on odd rows
    assert subsampled_conv_args(2, 2, 1) is None  # dilation 1: every row read
    assert subsampled_conv_args(2, 0, 4) == ((2, 2), (0, 0), (2, 2))  # still dilated after
    assert subsampled_conv_args((2, 1), 2, 2) == ((2, 1), (1, 2), (1, 2))


def test_subsampled_conv_gives_the_strided_convs_output_at_every_size():
    """The output size rule of `subsampled_conv_args` (ceil(n/s) + 2p/s - (d/s)(k-1)) against
    nn.Conv2d's, odd and even sizes, valid and same padding."""
    from nasr.nas.ops import DilatedConv2d

    torch.manual_seed(0)
    for n in (5, 6, 9, 10, 17):
        for k, pad, dil in ((3, 0, 2), (3, 2, 2), (5, 4, 2), (3, 4, 4)):
            fast = DilatedConv2d(3, 3, k, 2, pad, dil)
            assert fast.subsampled is not None
            x = torch.randn(2, 3, n, n + 3)
            ref = torch.nn.functional.conv2d(x, fast.weight, None, 2, pad, dil)
            torch.testing.assert_close(fast(x), ref, rtol=1e-5, atol=1e-5)


def test_dilated_depthwise_conv_under_bf16_autocast_and_without_grad():
    from nasr.nas.ops import OPS, DilatedConv2d, DilSepConv

    torch.manual_seed(0)
    op = DilSepConv(8, 8, 3, 1, 2, 2)
    assert isinstance(op[1], DilatedConv2d)  # the dil_sep_convs use it,
    assert type(DilSepConv(8, 8, 3, 1, 1, 1)[1]) is torch.nn.Conv2d  # the sep_convs not,
    assert isinstance(OPS["conv_5x5_dil2"](8, 2, True)[1], DilatedConv2d)  # the KWS dilated convs do
    small = DilSepConv(4, 4, 3, 1, 2, 2)  # under 8 channels: still dilated
    assert small[1].dilation == (2, 2) and small(torch.randn(2, 4, 9, 8)).shape == (2, 4, 9, 8)
    conv = op[1]
    x = torch.randn(2, 8, 9, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
    assert y.dtype == torch.bfloat16  # cast as autocast casts conv2d
    gx, gw = torch.autograd.grad(y.float().sum(), (x, conv.weight))
    assert gx.dtype == torch.float32 and gw.dtype == torch.float32
    ref = torch.autograd.grad(conv(x).sum(), (x,))[0]
    torch.testing.assert_close(gx, ref, rtol=0.05, atol=0.05)
    with torch.no_grad():
        assert torch.equal(conv(x), torch.nn.functional.conv2d(x, conv.weight, None, 1, 2, 2, 8))


def test_drop_path_zeroes_whole_samples_and_rescales_the_kept_ones():
    from nasr.nas.ops import drop_path

    torch.manual_seed(0)
    x = torch.rand(400, 3, 2, 2) + 0.5
    y = drop_path(x, 0.25)
    kept = (y != 0).flatten(1)
    assert (kept.all(1) | (~kept).all(1)).all()  # a sample is kept or dropped whole
    torch.testing.assert_close(y[kept.all(1)], x[kept.all(1)] / 0.75)
    assert 0.65 < kept.all(1).float().mean() < 0.85
    assert drop_path(x, 0.0) is x
