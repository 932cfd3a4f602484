"""Device selection, a human-readable device name for search-cost reporting, and the device plan:
every speed setting a training or search loop takes from the device it runs on.

    device = get_device(args.device)
    plan = plan_device(device, amp=cfg["amp"], bf16=cfg["bf16"])
    plan.apply()                                  # cudnn.benchmark on CUDA
    loader = DataLoader(ds, ..., pin_memory=plan.pin_memory)
    x = plan.to(x)                                # non-blocking from pinned memory on CUDA
    with plan.autocast():
        loss = ...
    plan.backward_step(loss, optimizer, params, grad_clip)   # GradScaler with fp16

What the plan decides, from the device type alone (never from a card's name):

| setting | CUDA | CPU |
|---|---|---|
| autocast (`amp: auto`) | bf16 where `torch.cuda.is_bf16_supported()`, | bf16 only when the config's |
|                        | else fp16 with a GradScaler                   | `bf16` is true (paper: fp32) |
| pin_memory, non-blocking copies | yes | no (nothing to overlap) |
| cudnn.benchmark | yes (fixed input shapes per step kind) | n/a |
| torch.distributed backend | nccl | gloo |

`amp: bf16 | fp16 | off` forces a choice; fp16 is refused on CPU (no GradScaler there, and CPU fp16
matmuls are slower than fp32), bf16 on a CUDA card without it.
"""
from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from typing import Iterable, Optional

import torch

AMP_CHOICES = ("auto", "bf16", "fp16", "off")


def get_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name} asked for, but CUDA is not available (fix: --device cpu)")
    return dev


def describe_device(device: torch.device) -> str:
    """e.g. 'NVIDIA H100 80GB HBM3' or 'CPU (2 threads, AMD EPYC ...)'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU ({torch.get_num_threads()} threads of {os.cpu_count()} cores, {model})"


def copy_to(t: torch.Tensor, device) -> torch.Tensor:
    """`t` on `device`; non-blocking to a CUDA device (from pinned memory it overlaps the step)."""
    device = torch.device(device)
    return t.to(device, non_blocking=device.type == "cuda")


def cuda_bf16_supported() -> bool:
    """Whether this CUDA card computes in bf16 (Ampere and newer); a seam for tests."""
    return bool(torch.cuda.is_bf16_supported())


@dataclass(frozen=True)
class DevicePlan:
    device: torch.device
    amp_dtype: Optional[torch.dtype]  # None: fp32
    grad_scaler: bool                 # fp16 needs loss scaling; bf16 has fp32's exponent range
    pin_memory: bool
    non_blocking: bool
    cudnn_benchmark: bool
    dist_backend: str

    @property
    def amp_name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "off"}[self.amp_dtype]

    def describe(self) -> str:
        parts = [f"{self.device.type}: autocast {self.amp_name}"]
        if self.grad_scaler:
            parts.append("GradScaler")
        if self.pin_memory:
            parts.append("pin_memory + non-blocking copies")
        if self.cudnn_benchmark:
            parts.append("cudnn.benchmark")
        parts.append(f"distributed backend {self.dist_backend}")
        return ", ".join(parts)

    def apply(self) -> None:
        """Process-wide settings: cudnn.benchmark picks the fastest conv algorithm per shape (the
        KWS inputs have one shape; the ASR buckets a handful)."""
        if self.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True

    def autocast(self, enabled: bool = True):
        if self.amp_dtype is None or not enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def to(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self.device, non_blocking=self.non_blocking)

    def make_scaler(self):
        """A GradScaler for fp16, else None."""
        if not self.grad_scaler:
            return None
        return torch.amp.GradScaler(self.device.type)


def plan_device(device, amp: str = "auto", bf16: bool = False,
                bf16_supported: Optional[bool] = None) -> DevicePlan:
    """The DevicePlan for `device` (a torch.device or its name); see the module docstring.

    `bf16` is the configs' older switch: on CPU, `amp: auto` follows it. `bf16_supported` overrides
    the CUDA capability query (tests)."""
    dev = torch.device(device)
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp '{amp}' is not one of {list(AMP_CHOICES)}")
    if dev.type == "cuda":
        supported = cuda_bf16_supported() if bf16_supported is None else bool(bf16_supported)
        if amp == "auto":
            amp = "bf16" if supported else "fp16"
        if amp == "bf16" and not supported:
            raise ValueError(f"amp bf16 asked for, but {dev} has no bf16 (fix: amp=fp16 or amp=auto)")
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]
        return DevicePlan(dev, dtype, grad_scaler=dtype is torch.float16, pin_memory=True, non_blocking=True,
                          cudnn_benchmark=True, dist_backend="nccl")
    if amp == "fp16":
        raise ValueError(f"amp fp16 is for CUDA devices, not {dev} (fix: amp=bf16, or amp=auto with bf16: true)")
    if amp == "auto":
        amp = "bf16" if bf16 else "off"
    dtype = torch.bfloat16 if amp == "bf16" else None
    return DevicePlan(dev, dtype, grad_scaler=False, pin_memory=False, non_blocking=False,
                      cudnn_benchmark=False, dist_backend="gloo")


def backward_step(loss: torch.Tensor, optimizer, scaler=None, params: Optional[Iterable] = None,
                  grad_clip: float = 0.0) -> bool:
    """loss.backward(), gradient clipping, optimizer.step(), through `scaler` when there is one
    (unscaled before clipping, so the clip norm means what it says). Returns whether the step was
    taken (a GradScaler skips steps with inf/NaN gradients and lowers its scale).

    A BMUF stepper (it has `local_optimizer`) counts the step even when the scaler skips it, so
    every worker reaches its block syncs at the same batch."""
    if scaler is None:
        loss.backward()
        if grad_clip and params is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        return True
    inner = getattr(optimizer, "local_optimizer", None)
    target = inner if inner is not None else optimizer
    scaler.scale(loss).backward()
    scaler.unscale_(target)
    if grad_clip and params is not None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scale = scaler.get_scale()
    scaler.step(target)
    scaler.update()
    if inner is not None:
        optimizer.local_step_done()
    return scaler.get_scale() >= scale


__all__ = ["AMP_CHOICES", "DevicePlan", "backward_step", "copy_to", "cuda_bf16_supported", "describe_device",
           "get_device", "plan_device"]
