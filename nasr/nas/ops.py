"""Candidate operations of the DARTS cell search space, over 2-D feature maps (N, C, T, F).

Every op is built by one factory signature ``factory(C, stride, affine) -> nn.Module`` and keeps the
channel count; stride 2 halves both T and F rounding up (ceil), so that odd speech inputs such as
101x40 MFCC frames reduce to 51x20 in every op alike and the outputs of a cell's edges can be summed.

The module also holds the network scaffolding that the search network and the evaluation network
share: the stem, where the reduction cells go, and the heads chosen by name.
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, List, Sequence, Union

import torch
from torch import nn
import torch.nn.functional as F

from nasr.nas.batchnorm import BatchNorm2d


# ----------------------------------------------------------------------------------------------
# building blocks

class ReLUConvBN(nn.Sequential):
    """ReLU, a regular convolution, BatchNorm: the unit every DARTS convolution is made of.

    With dilation 2 it is the KWS paper's dilated convolution, which "introduces a dilation rate
    (set to two in our experiments) to the regular convolution"."""

    def __init__(self, C_in: int, C_out: int, kernel_size, stride, padding, affine: bool = True,
                 dilation: int = 1):
        conv = (DilatedConv2d(C_in, C_out, kernel_size, stride, padding, dilation) if dilation > 1
                else nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False))
        super().__init__(nn.ReLU(inplace=False), conv, BatchNorm2d(C_out, affine=affine))


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def depthwise_input_grad(grad_out: torch.Tensor, weight: torch.Tensor, input_size, stride,
                         padding, dilation) -> torch.Tensor:
    """The input gradient of a depthwise convolution computed as a forward depthwise convolution:
    the output gradient, spread back onto the input grid (zeros between the strided positions),
    correlated with the spatially flipped kernel. The same sums as the convolution's own backward;
    on CPU, oneDNN's backward-data for dilated depthwise kernels is 6-15x slower than this (see
    `DilatedConv2d`)."""
    C = weight.size(0)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    kh, kw = weight.shape[-2:]
    eh, ew = dh * (kh - 1), dw * (kw - 1)
    H, W = input_size[-2:]
    N, _, Ho, Wo = grad_out.shape
    flipped = weight.flip(2, 3)
    if (sh, sw) == (1, 1) and (Ho, Wo) == (H, W) and 2 * ph == eh and 2 * pw == ew:
        return F.conv2d(grad_out, flipped, padding=(eh - ph, ew - pw), dilation=(dh, dw), groups=C)
    # grad_in[h] = sum_i grad_out[(h + p - i*d) / s] * w[i]: place grad_out[ho] at row
    # (e - p) + s*ho of a zero grid of H + e rows, then an unpadded correlation with w flipped.
    fmt = (torch.channels_last if grad_out.is_contiguous(memory_format=torch.channels_last)
           else torch.contiguous_format)
    grid = torch.empty(N, C, H + eh, W + ew, dtype=grad_out.dtype, device=grad_out.device,
                       memory_format=fmt).zero_()
    oh, ow = eh - ph, ew - pw
    grid[:, :, oh:oh + sh * Ho:sh, ow:ow + sw * Wo:sw] = grad_out
    return F.conv2d(grid, flipped, dilation=(dh, dw), groups=C)


class _DepthwiseConvFn(torch.autograd.Function):
    """A depthwise convolution whose input gradient is `depthwise_input_grad`."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation)
        return F.conv2d(x, weight, None, stride, padding, dilation, weight.size(0))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.conf
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = depthwise_input_grad(grad_out, weight, x.shape, stride, padding, dilation)
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, list(_pair(stride)), list(_pair(padding)),
                list(_pair(dilation)), False, [0, 0], weight.size(0), [False, True, False])[1]
        return grad_x, grad_w, None, None, None


def subsampled_conv_args(stride, padding, dilation):
    """``(strides, padding, dilation)`` when a convolution strided by a divisor of its dilation
    and padding can run as a stride-1 convolution of its input subsampled by the stride: it reads
    only every s-th row and column (taps at ``s*o - p + d*i``), so
    ``conv(x, s, p, d) == conv(x[..., ::s, ::s], 1, p/s, d/s)``: the same sums and the same output
    size, ``ceil(n/s) + 2p/s - (d/s)(k-1)``; None when it cannot (no stride, or s does not divide
    d and p)."""
    strides, pads, dils = _pair(stride), _pair(padding), _pair(dilation)
    if strides == (1, 1) or any(d % s or p % s for s, p, d in zip(strides, pads, dils)):
        return None
    return (strides, tuple(p // s for s, p in zip(strides, pads)),
            tuple(d // s for s, d in zip(strides, dils)))


class DilatedConv2d(nn.Conv2d):
    """A dilated convolution, dense (the KWS spaces' `conv_*_dil2`) or depthwise (`dil_sep_conv_*`),
    without bias: an nn.Conv2d with the same parameters and state dict, computed on two faster paths
    where torch 2.13's CPU kernels are slow:

    * strided by its dilation (a reduction cell's stride-2 edges): as an undilated stride-1
      convolution of the input subsampled by 2 (`subsampled_conv_args`; the same sums, on every
      device). oneDNN's backward of stride-2 dilated convs costs 3-8x their forward; forward and
      backward together take 2-2.6x less time this way for dense kernels (64x24x51x20 5x5: 28.5 vs
      10.9 ms, 2 threads), 1.2-4x for depthwise ones over 8-24 channels (16 channels 3x3: 0.86x);
    * otherwise, depthwise over at least 8 channels while training on CPU: the input gradient from
      `depthwise_input_grad` (oneDNN's backward-data for dilated depthwise kernels took 3.1-23 ms
      where this takes 0.5-1.9 ms at 16x16x101x40; under 8 channels it gave 0.95x in P-DARTS's
      synth-size search, so they stay on nn.Conv2d's path).

    Elsewhere it is nn.Conv2d's forward. `native = True` (class-wide) switches both paths off, for
    comparison (bench/search_step.py)."""

    native = False

    def __init__(self, C_in: int, C_out: int, kernel_size, stride, padding, dilation, groups: int = 1):
        super().__init__(C_in, C_out, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=False)
        self.subsampled = subsampled_conv_args(self.stride, self.padding, self.dilation)

    def forward(self, x):
        if self.native:
            return super().forward(x)
        if self.subsampled is not None:
            (sh, sw), padding, dilation = self.subsampled
            return F.conv2d(x[:, :, ::sh, ::sw], self.weight, None, 1, padding, dilation, self.groups)
        if (self.groups != self.in_channels or self.in_channels < 8 or self.out_channels != self.in_channels
                or x.device.type != "cpu" or not torch.is_grad_enabled() or torch.jit.is_tracing()
                or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()):
            return super().forward(x)
        weight = self.weight
        if torch.is_autocast_enabled("cpu"):  # a custom Function is not autocast: cast as conv2d would
            dtype = torch.get_autocast_dtype("cpu")
            x, weight = x.to(dtype), weight.to(dtype)
            with torch.autocast("cpu", enabled=False):
                return _DepthwiseConvFn.apply(x, weight, self.stride, self.padding, self.dilation)
        return _DepthwiseConvFn.apply(x, weight, self.stride, self.padding, self.dilation)


def depthwise_conv(C: int, kernel_size: int, stride: int, padding: int, dilation: int) -> nn.Conv2d:
    """The depthwise convolution of the separable ops (a `DilatedConv2d` when dilated)."""
    if dilation > 1:
        return DilatedConv2d(C, C, kernel_size, stride, padding, dilation, groups=C)
    return nn.Conv2d(C, C, kernel_size, stride=stride, padding=padding, groups=C, bias=False)


class DilSepConv(nn.Sequential):
    """ReLU, a dilated depthwise convolution, a pointwise convolution, BatchNorm (DARTS's
    `dil_conv`, here `dil_sep_conv`; with dilation 1 it is one half of a SepConv)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 dilation: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            depthwise_conv(C_in, kernel_size, stride, padding, dilation),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two ReLU-depthwise-pointwise-BN units; only the first one strides (as in DARTS)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True):
        super().__init__(
            DilSepConv(C_in, C_in, kernel_size, stride, padding, 1, affine),
            DilSepConv(C_in, C_out, kernel_size, 1, padding, 1, affine),
        )


class Conv7x1_1x7(nn.Sequential):
    """ReLU, a 1x7 then a 7x1 convolution, BatchNorm (the ASR paper's revised-space op).

    The 1x7 kernel runs along F and strides F, the 7x1 kernel runs along T and strides T, so the
    op reduces both axes exactly like the other ops.
    """

    def __init__(self, C: int, stride: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            BatchNorm2d(C, affine=affine),
        )


class Identity(nn.Module):
    def forward(self, x):
        return x


class Zero(nn.Module):
    """The `none` op: no connection. Returns zeros of the strided output shape without computing."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        n, c, t, f = x.shape
        s = self.stride
        return x.new_zeros((n, c, -(-t // s), -(-f // s)))


class _PhaseSubsample(torch.autograd.Function):
    """``x[:, :, ::2, ::2]`` and ``x[:, :, 1::2, 1::2]`` (the two sample grids of FactorizedReduce),
    each contiguous in x's memory format, with one backward for both: a zero map of x's size with
    the two gradients written into their grids. Sliced by autograd, each of the four slices' backward
    fills its own zero map and the two full-size gradients are added (8 passes over a 4C-channel
    map where this takes 1 and two quarter-size writes)."""

    @staticmethod
    def forward(ctx, x):
        fmt = (torch.channels_last if x.is_contiguous(memory_format=torch.channels_last)
               else torch.contiguous_format)
        ctx.shape, ctx.fmt = x.shape, fmt
        return (x[:, :, ::2, ::2].contiguous(memory_format=fmt),
                x[:, :, 1::2, 1::2].contiguous(memory_format=fmt))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_even, grad_odd):
        like = grad_even if grad_even is not None else grad_odd
        grad = torch.empty(ctx.shape, dtype=like.dtype, device=like.device, memory_format=ctx.fmt).zero_()
        if grad_even is not None:
            grad[:, :, ::2, ::2] = grad_even
        if grad_odd is not None:
            grad[:, :, 1::2, 1::2] = grad_odd
        return grad


class FactorizedReduce(nn.Module):
    """Halve T and F with two offset 1x1 stride-2 convolutions whose outputs are concatenated.

    The second branch sees the input shifted by one sample; DARTS slices ``x[:, :, 1:, 1:]``, which
    on an odd size gives one row fewer than the first branch. Padding one zero row/column at the end
    before the shift makes both branches ceil(n/2) long, and on even sizes is exactly DARTS's op.
    """

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even output channel count, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        # A 1x1 stride-2 conv is a 1x1 conv of the input subsampled by 2; written that way because
        # torch 2.13's CPU backward of 1x1 stride-2 convs on channels_last inputs aborts for some
        # shapes (e.g. 12 channels at 64x40: double free). Same parameters as DARTS's op.
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, bias=False)
        self.bn = BatchNorm2d(C_out, affine=affine)

    @staticmethod
    def _subsample(x):
        fmt = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        return x[:, :, ::2, ::2].contiguous(memory_format=fmt)

    def body(self, x):
        """The op between its ReLU and its BatchNorm: ``forward(x) == bn(body(relu(x)))`` (the
        search network feeds a ReLU shared by an edge's ops and folds the op weight into the BN)."""
        if torch.onnx.is_in_onnx_export():
            # An exported graph serves any length: the pad on the input needs no shape-dependent
            # branch (the one below would freeze the example's odd/even sizes into the graph).
            return torch.cat([self.conv_1(self._subsample(x)),
                              self.conv_2(self._subsample(F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]))], dim=1)
        if (x.requires_grad and torch.is_grad_enabled() and not torch.jit.is_tracing()
                and not torch.jit.is_scripting() and not torch.compiler.is_compiling()):
            even, odd = _PhaseSubsample.apply(x)
        else:
            even, odd = self._subsample(x), self._subsample(x[:, :, 1:, 1:])
        a, b = self.conv_1(even), self.conv_2(odd)
        # The zero row/column padded at the end: a 1x1 conv without bias maps zeros to zeros, so
        # it is padded onto the quarter-size output, not the full input (whose pad, shifted slice
        # and their backward were ~13% of the derived KWS network's training step).
        dt, df = a.shape[2] - b.shape[2], a.shape[3] - b.shape[3]
        if dt or df:
            fmt = (torch.channels_last if a.is_contiguous(memory_format=torch.channels_last)
                   else torch.contiguous_format)
            b = F.pad(b, (0, df, 0, dt)).contiguous(memory_format=fmt)
        return torch.cat([a, b], dim=1)

    def forward(self, x):
        return self.bn(self.body(self.relu(x)))


# ----------------------------------------------------------------------------------------------
# the op registry

OpFactory = Callable[[int, int, bool], nn.Module]

OPS: Dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "skip_connect": lambda C, stride, affine: (
        Identity() if stride == 1 else FactorizedReduce(C, C, affine=affine)),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(
        3, stride=stride, padding=1, count_include_pad=False),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine=affine),
    # DARTS's dilated separable convolutions (DARTS calls them dil_conv_*): darts, asr_revised.
    "dil_sep_conv_3x3": lambda C, stride, affine: DilSepConv(C, C, 3, stride, 2, 2, affine=affine),
    "dil_sep_conv_5x5": lambda C, stride, affine: DilSepConv(C, C, 5, stride, 4, 2, affine=affine),
    "conv_3x3": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine=affine),
    "conv_5x5": lambda C, stride, affine: ReLUConvBN(C, C, 5, stride, 2, affine=affine),
    # The KWS paper's dilated convolution: a regular (dense) convolution at dilation 2: nas1, nas2.
    "conv_3x3_dil2": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 2, affine=affine, dilation=2),
    "conv_5x5_dil2": lambda C, stride, affine: ReLUConvBN(C, C, 5, stride, 4, affine=affine, dilation=2),
    "conv_7x1_1x7": lambda C, stride, affine: Conv7x1_1x7(C, stride, affine=affine),
}

# Ops without learnable weights: the search network follows them with a non-affine BN (DARTS does,
# so that their scale is comparable with the BN-terminated conv ops when the alphas weigh them).
POOLING_OPS = ("max_pool_3x3", "avg_pool_3x3")


# Op names no longer in OPS. `dil_conv_*` meant DARTS's dilated *separable* conv everywhere, also in
# the KWS spaces, which now use the paper's regular dilated conv; the name is retired rather than
# given a new meaning, so an old genotype or config is refused, never silently read as another net.
RETIRED_OPS: Dict[str, str] = {
    "dil_conv_3x3": ("op 'dil_conv_3x3' was renamed: DARTS's dilated separable conv is now "
                     "'dil_sep_conv_3x3' (spaces darts, asr_revised: same op, rename it), and the "
                     "KWS spaces nas1/nas2 use the regular dilated conv 'conv_3x3_dil2' instead "
                     "(another op: search again)"),
    "dil_conv_5x5": ("op 'dil_conv_5x5' was renamed: DARTS's dilated separable conv is now "
                     "'dil_sep_conv_5x5' (spaces darts, asr_revised: same op, rename it), and the "
                     "KWS spaces nas1/nas2 use the regular dilated conv 'conv_5x5_dil2' instead "
                     "(another op: search again)"),
}


def unknown_op_message(name: str) -> str:
    """Why `name` is not an op: retired (with its new name) or unknown (with the known ones)."""
    if name in RETIRED_OPS:
        return RETIRED_OPS[name]
    return f"unknown op '{name}' (known ops: {', '.join(OPS)})"


def build_op(name: str, C: int, stride: int, affine: bool) -> nn.Module:
    """Build the op `name`; an unknown name is an error that lists the known ones."""
    try:
        factory = OPS[name]
    except KeyError:
        raise ValueError(unknown_op_message(name)) from None
    if stride not in (1, 2):
        raise ValueError(f"op '{name}': stride must be 1 or 2, got {stride}")
    return factory(C, stride, affine)


# ----------------------------------------------------------------------------------------------
# scaffolding shared by the search network and the evaluation network

ReductionSpec = Union[str, Sequence[int]]


def reduction_indices(layers: int, reduction: ReductionSpec) -> List[int]:
    """Indices of the reduction cells among `layers` cells.

    "every_two": two normal cells then a reduction cell, repeated (the KWS paper: 6 cells -> 2, 5).
    "thirds": at layers//3 and 2*layers//3 (DARTS and the ASR paper).
    A list of ints: those indices.
    """
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    if isinstance(reduction, str):
        if reduction == "every_two":
            return [i for i in range(layers) if i % 3 == 2]
        if reduction == "thirds":
            return sorted({layers // 3, 2 * layers // 3})
        raise ValueError(f"unknown reduction placement '{reduction}' "
                         f"(known: every_two, thirds, or a list of cell indices)")
    indices = sorted({int(i) for i in reduction})
    bad = [i for i in indices if not 0 <= i < layers]
    if bad:
        raise ValueError(f"reduction cell indices {bad} are outside 0..{layers - 1}")
    return indices


def reduced_size(n: int | None, num_reductions: int) -> int | None:
    """Length of an axis after `num_reductions` stride-2 cells (each rounds up)."""
    if n is None:
        return None
    for _ in range(num_reductions):
        n = -(-n // 2)
    return n


def halved_lengths(lens: torch.Tensor, num_halvings: int) -> torch.Tensor:
    """Valid frames per utterance after `num_halvings` stride-2 stages (stem or reduction cell;
    each rounds up, as a 3x3 stride-2 conv with padding 1 does)."""
    lens = torch.as_tensor(lens, dtype=torch.long)
    for _ in range(num_halvings):
        lens = torch.div(lens + 1, 2, rounding_mode="floor")
    return lens


def make_stem(in_channels: int, C_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution + BatchNorm in front of the first cell (DARTS's CIFAR stem).

    stride 2 halves time and frequency before the cells: the papers use 1; small CPU profiles use 2
    because the cells' cost is dominated by memory traffic at the input resolution (~4x cheaper)."""
    if stride not in (1, 2):
        raise ValueError(f"stem stride must be 1 or 2, got {stride}")
    return nn.Sequential(
        nn.Conv2d(in_channels, C_out, 3, stride=stride, padding=1, bias=False),
        BatchNorm2d(C_out),
    )


class ClassifierHead(nn.Module):
    """Global average pooling over (T, F) and a Linear layer: one label per utterance."""

    def __init__(self, C_in: int, F_in: int | None, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C_in, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(x).flatten(1))


# A head factory takes (C_out, F_out, num_classes): channels and frequency bins of the body's
# output (F_out may be None when the network was built without `freq_dim`) and the label count.
HEADS: Dict[str, Callable[[int, int | None, int], nn.Module]] = {
    "classifier": ClassifierHead,
}


def register_head(name: str):
    """Decorator that adds a head factory to HEADS under `name` (e.g. a per-frame CTC head)."""
    def deco(factory):
        if name in HEADS and HEADS[name] is not factory:
            raise ValueError(f"head '{name}' is already registered")
        HEADS[name] = factory
        return factory
    return deco


# Heads that register themselves when their module is imported (the module imports this one, so
# it cannot be imported here at load time); build_head imports it on first use, so every tool that
# builds a network from a config (training, scoring, model_info) knows them.
HEAD_MODULES: Dict[str, str] = {"ctc": "nasr.nas.asr_head"}


def build_head(name: str, C_out: int, F_out: int | None, num_classes: int) -> nn.Module:
    if name not in HEADS and name in HEAD_MODULES:
        importlib.import_module(HEAD_MODULES[name])
    try:
        factory = HEADS[name]
    except KeyError:
        known = ", ".join(sorted(set(HEADS) | set(HEAD_MODULES)))
        raise ValueError(f"unknown head '{name}' (known heads: {known})") from None
    return factory(C_out, F_out, num_classes)


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of a branch with probability `drop_prob`, rescaling the kept ones."""
    if drop_prob <= 0.0:
        return x
    keep = 1.0 - drop_prob
    mask = torch.empty((x.size(0), 1, 1, 1), dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask.div_(keep)  # one pass over x, not two


def count_parameters(module: nn.Module, exclude: str | None = "auxiliary") -> int:
    """Number of parameters, leaving out those whose name contains `exclude` (DARTS's convention)."""
    return sum(p.numel() for n, p in module.named_parameters()
               if exclude is None or exclude not in n)


__all__ = [
    "OPS", "POOLING_OPS", "RETIRED_OPS", "unknown_op_message", "build_op", "ReLUConvBN",
    "DilSepConv", "SepConv", "Conv7x1_1x7",
    "Identity", "Zero", "FactorizedReduce", "reduction_indices", "reduced_size", "make_stem",
    "ClassifierHead", "HEADS", "register_head", "build_head", "drop_path", "count_parameters",
]
