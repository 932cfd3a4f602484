"""Model size and compute: trainable parameters and multiply-accumulates (MACs).

Parameters are what the papers tabulate beside accuracy; the auxiliary head that DARTS trains with
is dropped at test time, so it is excluded by default.  MACs come from one real forward pass under
``torch.utils.flop_counter.FlopCounterMode``, which counts the matrix products of convolutions and
linear layers (2 FLOPs per multiply-add); batch norm, activations and pooling are not counted,
which matches how the KWS papers report multiplies.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, Iterable, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module, exclude: Iterable[str] = ("auxiliary",)) -> int:
    """Number of trainable parameters, skipping those whose dotted name starts with any prefix
    in `exclude` (default: the DARTS auxiliary head, named ``auxiliary*``)."""
    prefixes = tuple(exclude or ())
    return int(sum(p.numel() for name, p in model.named_parameters()
                   if p.requires_grad and not (prefixes and name.startswith(prefixes))))


def _check_shape(input_shape: Sequence[int]) -> tuple:
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"input_shape must be a non-empty list of positive sizes "
                         f"(per example, without the batch dimension), got {tuple(input_shape)}")
    return shape


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """MACs of one forward pass on a single example of shape `input_shape` (no batch dimension,
    e.g. ``(1, 101, 40)``), run in eval mode without gradients.

    The model's train/eval mode is restored afterwards.  Eval mode matters: it turns off drop-path
    and auxiliary heads, so the count is what inference costs.
    """
    shape = _check_shape(input_shape)
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    x = torch.zeros((1,) + shape, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def profile(model: nn.Module, input_shape: Sequence[int],
            exclude: Iterable[str] = ("auxiliary",)) -> Dict[str, int]:
    """``{"params": count_params(model, exclude), "macs": count_macs(model, input_shape)}``."""
    return {"params": count_params(model, exclude), "macs": count_macs(model, input_shape)}


def latency_ms(fn: Callable[[], object], repeats: int = 30, warmup: int = 3,
               sync: Callable[[], object] | None = None) -> Dict[str, float]:
    """Wall time of `fn()` in milliseconds: ``{"median", "min", "repeats"}`` over `repeats` calls
    after `warmup` untimed ones. The median, not the mean: on a shared machine a few calls are
    slowed by other jobs. `sync` (e.g. torch.cuda.synchronize) runs before each clock read, so
    asynchronous devices are timed to the end of their work."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(max(warmup, 0)):
        fn()
    if sync is not None:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(1000.0 * (time.perf_counter() - t0))
    return {"median": statistics.median(times), "min": min(times), "repeats": repeats}


def format_count(n: int) -> str:
    """Human-readable count in the papers' style: 237882 -> '237.9K', 3.3e6 -> '3.30M'."""
    n = int(n)
    if abs(n) >= 10 ** 9:
        return f"{n / 1e9:.2f}G"
    if abs(n) >= 10 ** 6:
        return f"{n / 1e6:.2f}M"
    if abs(n) >= 10 ** 3:
        return f"{n / 1e3:.1f}K"
    return str(n)
