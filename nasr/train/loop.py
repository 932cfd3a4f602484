"""The epoch loops every trainer shares: one training epoch and one evaluation pass.

Models follow one calling convention: `logits, aux = model(x)` (aux is None without an auxiliary
head); search networks return plain logits and are wrapped by the search step instead.

`amp` is the autocast dtype a DevicePlan chose (nasr.utils.device.plan_device): None for fp32,
torch.bfloat16 or torch.float16; True is read as bf16 (the configs' older `bf16` switch). With
fp16 the training loops take the plan's GradScaler."""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

from nasr.utils.device import backward_step, copy_to
from nasr.utils.log import progress


def amp_dtype(amp) -> Optional[torch.dtype]:
    if amp is True:
        return torch.bfloat16
    if amp is False or amp is None:
        return None
    if amp not in (torch.bfloat16, torch.float16):
        raise ValueError(f"amp {amp!r} is not a bool, None, torch.bfloat16 or torch.float16")
    return amp


def autocast_context(device: torch.device, amp):
    """Autocast to `amp` (see the module docstring) on `device`'s type, or nothing."""
    dtype = amp_dtype(amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


class WaitClock:
    """The share of an epoch spent waiting for the next batch: `ready()` when a batch has arrived,
    `done()` when its step has finished (the next wait starts there)."""

    def __init__(self):
        self.wait_s = self.step_s = 0.0
        self._t = time.perf_counter()

    def resume(self) -> None:
        """Start the next wait now (time since `done`, e.g. an evaluation, is neither)."""
        self._t = time.perf_counter()

    def ready(self) -> None:
        now = time.perf_counter()
        self.wait_s += now - self._t
        self._t = now

    def done(self) -> None:
        now = time.perf_counter()
        self.step_s += now - self._t
        self._t = now

    @property
    def fraction(self) -> float:
        return self.wait_s / max(self.wait_s + self.step_s, 1e-9)


def train_one_epoch(model, loader, optimizer, device, *, epoch: int, aux_weight: float = 0.0,
                    grad_clip: float = 5.0, amp=None, scaler=None, writer=None, global_step: int = 0,
                    desc: str = "train", scheduler_step: Optional[Callable] = None,
                    featurize: Optional[Callable] = None) -> Dict[str, float]:
    """One epoch; `featurize` (nasr.data.batch_features) turns a batch of waves into features on
    the device, inside the step. The returned `data_wait_frac` is the share of the epoch spent
    waiting for the loader."""
    model.train()
    tot_loss = tot_correct = tot_n = 0
    clock = WaitClock()
    bar = progress(loader, desc=f"{desc} epoch {epoch}", unit="batch")
    for x, y in bar:
        clock.ready()
        x, y = copy_to(x, device), copy_to(y, device)
        if featurize is not None:
            x = featurize(x)
        with autocast_context(device, amp):
            logits, aux = model(x)
            loss = F.cross_entropy(logits.float(), y)
            if aux is not None and aux_weight > 0:
                loss = loss + aux_weight * F.cross_entropy(aux.float(), y)
        optimizer.zero_grad(set_to_none=True)
        backward_step(loss, optimizer, scaler, model.parameters(), grad_clip)
        if scheduler_step is not None:
            scheduler_step()
        n = y.numel()
        tot_loss += loss.item() * n
        tot_correct += (logits.argmax(-1) == y).sum().item()
        tot_n += n
        global_step += 1
        if writer is not None and global_step % 10 == 0:
            writer.add_scalar("train/loss", loss.item(), global_step)
        bar.set_postfix(loss=f"{tot_loss / tot_n:.3f}", acc=f"{tot_correct / tot_n:.3f}")
        clock.done()
    return {"loss": tot_loss / max(tot_n, 1), "acc": tot_correct / max(tot_n, 1),
            "steps": global_step, "data_wait_frac": clock.fraction}


@torch.no_grad()
def predict(model, loader, device, amp=None, desc: str = "eval"):
    """Returns (logits [N, K] float32, refs [N]) in loader order."""
    model.eval()
    outs, refs = [], []
    for x, y in progress(loader, desc=desc, unit="batch"):
        with autocast_context(device, amp):
            out = model(copy_to(x, device))
        logits = out[0] if isinstance(out, tuple) else out
        outs.append(logits.float().cpu())
        refs.append(y)
    return torch.cat(outs), torch.cat(refs)


def evaluate(model, loader, device, amp=None, desc: str = "eval") -> Dict[str, float]:
    logits, refs = predict(model, loader, device, amp, desc)
    loss = F.cross_entropy(logits, refs).item()
    acc = (logits.argmax(-1) == refs).float().mean().item()
    return {"loss": loss, "acc": acc}
