"""BatchNorm for the DARTS ops, with a CPU kernel for channels-last maps whose channel count is not
a multiple of 8.

torch 2.13's channels-last CPU BatchNorm vectorises over channels: with 4 or 12 channels (PC-DARTS
ops at C/4, the synthetic profiles' C=12 networks) its training forward and backward took 4-12x
longer per element than at 16 channels (2 threads). `batch_norm` then views the map as a (rows, L)
matrix, L a common multiple of the channel count and 64, so every reduction and update runs over
long contiguous rows: per-channel sums are column sums of that matrix folded onto the channels.
At multiples of 8 channels this was slower than torch's (0.2-0.5x), so those stay torch's. Same statistics
(two-pass variance), same running-statistics update (unbiased variance, momentum) and the same
gradients as F.batch_norm up to float rounding (tests/nas/test_batchnorm.py).
Anything else (other channel counts, NCHW, eval mode, bf16, CUDA, export/tracing) is F.batch_norm.
`native = True` (module-wide) sends everything to F.batch_norm, for comparison (bench/).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
import torch.nn.functional as F

native = False


def _rows(x: torch.Tensor):
    """A channels-last (N, C, H, W) map as a (rows, L) matrix whose columns cycle through the
    channels, and L // C."""
    C = x.size(1)
    L = math.lcm(C, 64)
    if x.numel() % L:
        L = C
    return x.permute(0, 2, 3, 1).reshape(-1, L), L // C


def _fold(col: torch.Tensor, C: int) -> torch.Tensor:
    return col.view(-1, C).sum(0)


def channel_sum(x: torch.Tensor, square: bool = False) -> torch.Tensor:
    """Per-channel sum of a (N, C, H, W) map (of its squares with `square`), over long rows when
    it is channels-last (`_rows`)."""
    C = x.size(1)
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        x2, _ = _rows(x)
        col = torch.linalg.vector_norm(x2, 2, dim=0).square_() if square else x2.sum(0)
        return _fold(col, C)
    return (x * x if square else x).sum((0, 2, 3))


def update_running_stats(bn: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor, var: torch.Tensor) -> None:
    """What a training-mode `bn` does to its running statistics given a batch's per-channel
    `mean` and unbiased `var` (the running variance is unbiased)."""
    if not (bn.track_running_stats and bn.running_mean is not None):
        return
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        m = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        bn.running_mean.mul_(1 - m).add_(mean, alpha=m)
        bn.running_var.mul_(1 - m).add_(var, alpha=m)


class _RowBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum: float, eps: float):
        C = x.size(1)
        M = x.numel() // C
        x2, rep = _rows(x)
        mean = _fold(x2.sum(0), C).div_(M)
        # The output is its own tensor, not a view (callers add to it in place), written as rows.
        y = torch.empty_like(x, memory_format=torch.channels_last)
        y2 = y.permute(0, 2, 3, 1).view(x2.shape)
        torch.sub(x2, mean.repeat(rep), out=y2)  # centred first: the variance without cancellation
        var = _fold(torch.linalg.vector_norm(y2, 2, dim=0).square_(), C).div_(M)
        invstd = torch.rsqrt(var + eps)
        scale = invstd if weight is None else invstd * weight
        y2.mul_(scale.repeat(rep))
        if bias is not None:
            y2.add_(bias.repeat(rep))
        if running_mean is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
                running_var.mul_(1 - momentum).add_(var * (M / (M - 1)), alpha=momentum)
        ctx.save_for_backward(x, mean, invstd, weight)
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, mean, invstd, weight = ctx.saved_tensors
        C = x.size(1)
        M = x.numel() // C
        x2, rep = _rows(x)
        g2, _ = _rows(grad_out.contiguous(memory_format=torch.channels_last))
        sum_g = _fold(g2.sum(0), C)
        sum_g_xhat = invstd * (_fold((g2 * x2).sum(0), C) - mean * sum_g)
        scale = invstd if weight is None else invstd * weight
        # dx = scale * (g - mean(g) - xhat * mean(g * xhat)) = a*g + b*x + c, per channel
        b = -scale * invstd * sum_g_xhat / M
        c = -scale * sum_g / M - mean * b
        gx2 = torch.addcmul(torch.addcmul(c.repeat(rep), x2, b.repeat(rep)), g2, scale.repeat(rep))
        N, _, H, W = x.shape
        grad_x = gx2.view(N, H, W, C).permute(0, 3, 1, 2) if ctx.needs_input_grad[0] else None
        grad_w = sum_g_xhat if weight is not None and ctx.needs_input_grad[1] else None
        grad_b = sum_g if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None, None


def _row_kernel_applies(x: torch.Tensor, training: bool, running_mean) -> bool:
    return (not native and training and x.dim() == 4 and x.device.type == "cpu"
            and x.dtype == torch.float32 and x.size(1) % 8 != 0 and x.numel() > x.size(1)
            and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
            and (running_mean is None or running_mean.dtype == torch.float32)
            and not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export()
                     or torch.compiler.is_compiling()))


def batch_norm(x: torch.Tensor, running_mean: Optional[torch.Tensor], running_var: Optional[torch.Tensor],
               weight: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """F.batch_norm, by the row kernel where that is faster (see the module docstring)."""
    if _row_kernel_applies(x, training, running_mean):
        return _RowBatchNorm.apply(x, weight, bias, running_mean, running_var, momentum, eps)
    return F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)


def module_batch_norm(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor, weight: Optional[torch.Tensor],
                      bias: Optional[torch.Tensor], update_stats: bool = True) -> torch.Tensor:
    """What `bn(x)` computes, with the given affine weight and bias (e.g. scaled by an op's alpha
    weight) and, with ``update_stats=False``, the module's running statistics left alone (a
    recomputation in backward normalises with the batch statistics again but updates copies)."""
    momentum = 0.0 if bn.momentum is None else bn.momentum
    counts = bn.training and bn.track_running_stats and bn.num_batches_tracked is not None
    if counts and update_stats:
        bn.num_batches_tracked.add_(1)
    if counts and bn.momentum is None:  # cumulative moving average
        momentum = 1.0 / float(bn.num_batches_tracked)
    use_batch_stats = bn.training or bn.running_mean is None
    track = not bn.training or bn.track_running_stats
    mean, var = (bn.running_mean, bn.running_var) if track else (None, None)
    if mean is not None and bn.training and not update_stats:
        mean, var = mean.clone(), var.clone()
    return batch_norm(x, mean, var, weight, bias, use_batch_stats, momentum, bn.eps)


class BatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d (same parameters, buffers and state dict) computed by `batch_norm`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        return module_batch_norm(self, x, self.weight, self.bias)


__all__ = ["BatchNorm2d", "batch_norm", "channel_sum", "module_batch_norm", "update_running_stats"]
