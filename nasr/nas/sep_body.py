"""A separable convolution's body as one autograd node that keeps one map of it for backward.

`SepConv` is ReLU, then two units of depthwise conv, pointwise conv, BatchNorm, with a ReLU between
them. Inside a search edge the leading ReLU is shared by the edge's ops and the last BatchNorm
takes the op's alpha weight (`search_model.MixedOp`), which leaves the body
``dw1 -> pw1 -> BN1 -> ReLU -> dw2 -> pw2``. Run op by op, autograd keeps four maps of it for
backward (dw1's output, pw1's, the ReLU's, dw2's), the largest share of a PC-DARTS supernet's
activations. `sep_conv_body` keeps one: BN1's normalised output (BN1 is never affine in a
search), with its inverse std. The input gradient needs nothing else (the alpha step of a
first-order search asks for no weight gradient, so it computes nothing again); where the
weight gradients are wanted it computes dw1's and dw2's outputs again, two depthwise convs over
the op's channels. Same outputs, gradients and running statistics as the modules
(tests/nas/test_sep_body.py).

Used by the search network's fused edges with ``recompute_sep_convs`` (on by default with
PC-DARTS's partial channels; bench/search_step.py measures both).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from nasr.nas.batchnorm import channel_sum, update_running_stats
from nasr.nas.ops import depthwise_input_grad


def _body_modules(body):
    """(dw1, pw1, bn1, dw2, pw2) when `body` is a SepConv's body without its first ReLU and last
    BatchNorm (undilated depthwise convs, pointwise convs without bias, a non-affine BN1); else None."""
    if len(body) != 6 or not isinstance(body[3], nn.ReLU):
        return None
    dw1, pw1, bn1, _, dw2, pw2 = body
    convs = (dw1, pw1, dw2, pw2)
    if not all(type(c) is nn.Conv2d and c.bias is None and c.dilation == (1, 1) for c in convs):
        return None
    if not (dw1.groups == dw1.in_channels == dw2.groups and pw1.kernel_size == pw2.kernel_size == (1, 1)
            and dw2.stride == (1, 1)):
        return None
    if not isinstance(bn1, nn.BatchNorm2d) or bn1.affine:
        return None
    return dw1, pw1, bn1, dw2, pw2


def applies(body, x: torch.Tensor) -> bool:
    """Does `sep_conv_body` run this body on `x` (a training step with autograd on)?"""
    mods = _body_modules(body)
    return (mods is not None and mods[2].training and torch.is_grad_enabled() and x.requires_grad
            and x.dim() == 4 and not torch.is_autocast_enabled(x.device.type)
            and not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()))


def sep_conv_body(body, r: torch.Tensor, update_stats: bool = True) -> torch.Tensor:
    """The body's output on `r` (the op's ReLU of its input); BN1's running statistics are updated
    as the module does, unless ``update_stats=False``. Call only where `applies(body, r)`."""
    dw1, pw1, bn1, dw2, pw2 = _body_modules(body)
    return _SepBodyFn.apply(r, dw1.weight, pw1.weight, dw2.weight, pw2.weight, dw1.stride,
                            dw1.padding, dw2.padding, bn1, update_stats)


def _will_run(node) -> bool:
    """Will the running backward pass execute `node` (a weight's gradient accumulator)?"""
    if node is None:
        return False
    will_execute = getattr(torch._C, "_will_engine_execute_node", None)  # private: may go away
    if will_execute is None:
        return True
    try:
        return will_execute(node)
    except RuntimeError:  # torch.autograd.grad() with this weight among its inputs: it is wanted
        return True


def _pointwise_input_grad(grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.conv2d(grad_out, weight.transpose(0, 1))


class _SepBodyFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, r, dw1, pw1, dw2, pw2, stride, padding1, padding2, bn1, update_stats):
        C = r.size(1)
        u = F.conv2d(F.conv2d(r, dw1, None, stride, padding1, 1, C), pw1)
        M = u.numel() // C
        mean = channel_sum(u).div_(M)
        xhat = u.sub_(mean.view(1, -1, 1, 1))  # in place: u is not needed again
        var = channel_sum(xhat, square=True).div_(M)
        invstd = torch.rsqrt(var + bn1.eps)
        if update_stats:
            update_running_stats(bn1, mean, var * (M / max(M - 1, 1)))
        xhat.mul_(invstd.view(1, -1, 1, 1))
        out = F.conv2d(F.conv2d(xhat.relu(), dw2, None, 1, padding2, 1, C), pw2)
        ctx.save_for_backward(r, xhat, invstd, dw1, pw1, dw2, pw2)
        ctx.conf = (stride, padding1, padding2)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        r, xhat, invstd, dw1, pw1, dw2, pw2 = ctx.saved_tensors
        stride, padding1, padding2 = ctx.conf
        need_r = ctx.needs_input_grad[0]
        # Whether this backward pass computes the weights' gradients at all: needs_input_grad only
        # says they require grad, also in the alpha step, which asks autograd for the alphas' alone.
        need_w = any(_will_run(node) for node, _ in ctx.next_functions[1:5])
        C = r.size(1)
        cb = torch.ops.aten.convolution_backward
        one, zero = [1, 1], [0, 0]
        g_dw1 = g_pw1 = g_dw2 = g_pw2 = None
        with torch.no_grad():
            g_t2 = _pointwise_input_grad(grad_out, pw2)
            if need_w:  # the weight step: the maps the weight gradients read, computed again
                r2 = xhat.relu()
                g_pw2 = cb(grad_out, F.conv2d(r2, dw2, None, 1, padding2, 1, C), pw2, None, one, zero,
                           one, False, zero, 1, [False, True, False])[1]
                g_r2, g_dw2, _ = cb(g_t2, r2, dw2, None, one, list(padding2), one, False, zero, C,
                                    [True, True, False])
                del r2
            else:  # the alpha step: input gradients only, nothing to compute again
                g_r2 = depthwise_input_grad(g_t2, dw2, xhat.shape, 1, padding2, 1)
            del g_t2
            # ReLU, then BN1 without affine: g_u = invstd * (g - mean(g) - xhat * mean(g * xhat))
            g = torch.ops.aten.threshold_backward(g_r2, xhat, 0)  # ReLU's own backward kernel
            del g_r2
            M = g.numel() // C
            mean_g = channel_sum(g).div_(M)
            mean_gx = channel_sum(g * xhat).div_(M)
            g_u = g.sub_(mean_g.view(1, -1, 1, 1)).sub_(xhat * mean_gx.view(1, -1, 1, 1))
            g_u.mul_(invstd.view(1, -1, 1, 1))
            g_t1 = _pointwise_input_grad(g_u, pw1)
            if need_w:
                t1 = F.conv2d(r, dw1, None, stride, padding1, 1, C)
                g_pw1 = cb(g_u, t1, pw1, None, one, zero, one, False, zero, 1, [False, True, False])[1]
                del t1
            del g_u
            if need_w:
                g_r, g_dw1, _ = cb(g_t1, r, dw1, None, list(stride), list(padding1), one, False, zero, C,
                                   [need_r, True, False])
            else:
                g_r = depthwise_input_grad(g_t1, dw1, r.shape, stride, padding1, 1) if need_r else None
        return g_r, g_dw1, g_pw1, g_dw2, g_pw2, None, None, None, None, None


__all__ = ["applies", "sep_conv_body"]
