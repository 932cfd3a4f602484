"""Blockwise Model-Update Filtering (K. Chen and Q. Huo, ICASSP 2016) on torch.distributed.

Each worker runs its own optimizer on its own data for a block of `block_size` steps; then the
workers average their parameters and a block-level momentum update moves the global model:

    W_start(t-1)  the point every worker started block t from
    avg(t)        the average of the workers' parameters after the block
    G(t)     = avg(t) - W_start(t-1)                 block-level "gradient"
    Delta(t) = block_momentum * Delta(t-1) + block_lr * G(t)
    W(t)     = W(t-1) + Delta(t)                     the global model
    W_start(t) = W(t) + block_momentum * Delta(t)    with Nesterov (the paper's NBM), else W(t)

Without Nesterov W_start = W, so G = avg - W. With block_momentum 0 and block_lr 1 the update is
plain model averaging, W(t) = avg(t). The paper's rule of thumb block_momentum = 1 - 1/workers
is the default. W, not the look-ahead W_start, is the model to evaluate and to checkpoint: see
`global_state_dict()` and `global_params_in_model()`.

The local optimizer's own momentum (SGD's `momentum_buffer`) is set at each sync by
`local_momentum`: "reset" (the default, as CNTK's BMUF: resetSGDMomentum) zeroes it, "average"
replaces it by the workers' mean, "keep" leaves each worker its own. Kept across syncs, a worker's
momentum pushes the new start point on in the direction the last block already moved, and the block
momentum then adds that direction again: with short blocks the two compound (tests/train/test_bmuf.py
has a regression that diverges with "keep" and converges with "reset" under the default settings;
egs/aishell2/README.md gives the A/B on the synthetic corpus).

Every worker must call step() equally often: a worker that skips a sync would leave the others
waiting in the all-reduce until the process group's timeout (see nasr.train.distributed).
"""
from __future__ import annotations

import contextlib
import logging
from typing import Dict, Iterator, List, Optional

import torch
import torch.distributed as dist

from nasr.train.distributed import guard_collective

log = logging.getLogger("nasr")

# What a sync does to the local optimizer's momentum buffers (see the module docstring).
LOCAL_MOMENTUM = ("reset", "average", "keep")
# Optimizers whose momentum lives in the `momentum_buffer` state entry, the one reset/average touch.
_MOMENTUM_BUFFER_OPTIMIZERS = (torch.optim.SGD, torch.optim.RMSprop)


def _flat_groups(tensors: List[torch.Tensor]) -> Dict[tuple, List[int]]:
    """Indices of `tensors` grouped by (device, dtype): one collective per group, not per tensor."""
    groups: Dict[tuple, List[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    return groups


class BMUF:
    """Wraps a local optimizer; use it where the optimizer was used (zero_grad(), step()).

    Args:
        model: the worker's model (not wrapped in DDP).
        local_optimizer: the optimizer stepping the model's parameters between syncs. LR
            schedulers are attached to it, not to BMUF.
        block_size: local steps per block (N); the workers sync after every N-th step().
        block_momentum: eta in [0, 1); None means 1 - 1/world_size (0.875 for 8 workers).
        block_lr: zeta > 0, the block learning rate.
        nesterov: restart workers from W + eta*Delta (the paper's NBM) instead of W (CBM).
        average_sync_steps: the first this many syncs are plain model averaging (W = avg, Delta
            stays 0), a warm-up that lets the block momentum start from settled parameters.
        local_momentum: what each sync does to the local optimizer's momentum buffers: "reset"
            (zero them, CNTK's default), "average" (the workers' mean) or "keep" (untouched).
        process_group: the group to sync over (default: the whole job).
    """

    def __init__(self, model: torch.nn.Module, local_optimizer: torch.optim.Optimizer, block_size: int,
                 block_momentum: Optional[float] = None, block_lr: float = 1.0, nesterov: bool = True,
                 average_sync_steps: int = 0, local_momentum: str = "reset", process_group=None):
        if int(block_size) != block_size or block_size < 1:
            raise ValueError(f"block_size={block_size} must be a positive integer (local steps per block)")
        if block_lr <= 0:
            raise ValueError(f"block_lr={block_lr} must be positive")
        if average_sync_steps < 0:
            raise ValueError(f"average_sync_steps={average_sync_steps} must be >= 0")
        if local_momentum not in LOCAL_MOMENTUM:
            raise ValueError(f"local_momentum={local_momentum!r} is not one of {list(LOCAL_MOMENTUM)} "
                             f"(fix: bmuf.local_momentum: reset)")
        if local_momentum != "keep" and not isinstance(local_optimizer, _MOMENTUM_BUFFER_OPTIMIZERS):
            raise ValueError(f"local_momentum={local_momentum!r} acts on SGD's momentum buffers, but the local "
                             f"optimizer is {type(local_optimizer).__name__} (fix: bmuf.local_momentum: keep, "
                             f"or an SGD local optimizer)")
        self.model = model
        self.local_optimizer = local_optimizer
        self.process_group = process_group
        self.distributed = dist.is_available() and dist.is_initialized()
        self.world_size = dist.get_world_size(process_group) if self.distributed else 1
        self.rank = dist.get_rank(process_group) if self.distributed else 0
        self.enabled = self.world_size > 1
        if block_momentum is None:
            block_momentum = 1.0 - 1.0 / self.world_size
        if not 0.0 <= block_momentum < 1.0:
            raise ValueError(f"block_momentum={block_momentum} must be in [0, 1)")
        if not self.enabled and block_momentum != 0.0:
            log.info("BMUF with one worker: plain local training (block_momentum %.3f unused)", block_momentum)
        self.block_size = int(block_size)
        self.block_momentum = float(block_momentum)
        self.block_lr = float(block_lr)
        self.nesterov = bool(nesterov)
        self.average_sync_steps = int(average_sync_steps)
        self.local_momentum = local_momentum

        self.param_names = [n for n, _ in model.named_parameters()]
        self.params = [p for _, p in model.named_parameters()]
        self.buffers = [b for _, b in model.named_buffers()]
        # The group rank 0 in global numbering: broadcasts need a global source rank.
        self._src = (dist.get_global_rank(process_group, 0) if self.distributed and process_group is not None
                     else 0)
        if self.enabled:
            self._broadcast(self.params + self.buffers, "BMUF initial broadcast")
        self.global_params = [p.detach().clone() for p in self.params]
        self.block_delta = [torch.zeros_like(p) for p in self.params]
        self.num_updates = 0   # local optimizer steps taken
        self.num_syncs = 0     # block syncs done
        self.local_step = 0    # steps since the last sync

    # ---- optimizer interface --------------------------------------------------------------
    @property
    def param_groups(self):
        return self.local_optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.local_optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        """One local step; after every block_size-th, the block sync."""
        loss = self.local_optimizer.step(closure) if closure is not None else self.local_optimizer.step()
        self.local_step_done()
        return loss

    def local_step_done(self) -> None:
        """Count one local step (taken, or skipped by an fp16 GradScaler that stepped
        `local_optimizer` itself); after every block_size-th, the block sync. Every worker counts
        every batch, so all reach each sync at the same batch."""
        self.num_updates += 1
        self.local_step += 1
        if self.local_step >= self.block_size:
            self.sync()

    # ---- the block update -----------------------------------------------------------------
    @torch.no_grad()
    def sync(self) -> None:
        """End the current block now (also used at epoch ends so checkpoints see a synced model)."""
        if not self.enabled:
            self.local_step = 0
            self.num_syncs += 1
            return
        if self.local_step == 0 and self.num_syncs > 0:
            return  # nothing trained since the last sync
        averaged = [p.detach().clone() for p in self.params]
        self._all_reduce_mean(averaged, "BMUF block sync")
        if self.num_syncs < self.average_sync_steps:
            for w, d, a in zip(self.global_params, self.block_delta, averaged):
                w.copy_(a)
                d.zero_()
        else:
            for w, d, a in zip(self.global_params, self.block_delta, averaged):
                start = self._start_point(w, d)
                g = a - start
                d.mul_(self.block_momentum).add_(g, alpha=self.block_lr)
                w.add_(d)
        self._load_start_point()
        self._sync_buffers()
        self._sync_local_momentum()
        self.num_syncs += 1
        self.local_step = 0

    def _start_point(self, w: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        # Computed the same way wherever it is needed, so a resumed job restarts from the very
        # same bits as an uninterrupted one.
        if self.nesterov and self.block_momentum > 0:
            return w + self.block_momentum * d
        return w.clone()

    def _load_start_point(self) -> None:
        for p, w, d in zip(self.params, self.global_params, self.block_delta):
            p.data.copy_(self._start_point(w, d))

    def _sync_buffers(self) -> None:
        floats = [b for b in self.buffers if b.is_floating_point()]
        others = [b for b in self.buffers if not b.is_floating_point()]
        if floats:
            self._all_reduce_mean(floats, "BMUF buffer sync")
        if others:
            self._broadcast(others, "BMUF buffer sync")

    def _momentum_buffers(self) -> List[torch.Tensor]:
        # Every worker has taken the same steps, so every worker lists the same buffers.
        state = self.local_optimizer.state
        bufs = [state[p].get("momentum_buffer") for p in self.params if p in state]
        return [b for b in bufs if b is not None]

    def _sync_local_momentum(self) -> None:
        if self.local_momentum == "keep":
            return
        bufs = self._momentum_buffers()
        if self.local_momentum == "reset":
            for b in bufs:
                b.zero_()
        elif bufs:
            self._all_reduce_mean(bufs, "BMUF local momentum sync")

    def _all_reduce_mean(self, tensors: List[torch.Tensor], what: str) -> None:
        with guard_collective(what):
            for idx in _flat_groups(tensors).values():
                flat = torch.cat([tensors[i].reshape(-1) for i in idx])
                dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.process_group)
                flat.div_(self.world_size)
                self._unflatten(flat, [tensors[i] for i in idx])

    def _broadcast(self, tensors: List[torch.Tensor], what: str) -> None:
        with guard_collective(what), torch.no_grad():
            for idx in _flat_groups(tensors).values():
                flat = torch.cat([tensors[i].detach().reshape(-1) for i in idx])
                dist.broadcast(flat, src=self._src, group=self.process_group)
                self._unflatten(flat, [tensors[i] for i in idx])

    @staticmethod
    def _unflatten(flat: torch.Tensor, tensors: List[torch.Tensor]) -> None:
        offset = 0
        for t in tensors:
            n = t.numel()
            t.data.copy_(flat[offset:offset + n].view_as(t))
            offset += n

    # ---- the global model ----------------------------------------------------------------
    def global_state_dict(self) -> Dict[str, torch.Tensor]:
        """model.state_dict() with the global model W in place of the worker's parameters: what
        to checkpoint, evaluate, decode and average (the look-ahead start point is a training aid)."""
        if not self.enabled:
            return {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        by_id = {id(p): w for p, w in zip(self.params, self.global_params)}
        names = dict(self.model.named_parameters())
        state = {}
        for k, v in self.model.state_dict().items():
            p = names.get(k)
            state[k] = by_id[id(p)].clone() if p is not None else v.detach().clone()
        return state

    @contextlib.contextmanager
    def global_params_in_model(self) -> Iterator[torch.nn.Module]:
        """Temporarily put W into the model (for validation), then restore the worker's parameters."""
        if not self.enabled:
            yield self.model
            return
        saved = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, w in zip(self.params, self.global_params):
                p.copy_(w)
        try:
            yield self.model
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)

    # ---- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        if self.enabled:
            global_params = [w.clone() for w in self.global_params]
            delta = [d.clone() for d in self.block_delta]
        else:
            global_params = [p.detach().clone() for p in self.params]
            delta = [torch.zeros_like(p) for p in self.params]
        return {"param_names": list(self.param_names), "global_params": global_params,
                "block_delta": delta, "num_updates": self.num_updates, "num_syncs": self.num_syncs,
                "local_step": self.local_step, "block_size": self.block_size,
                "block_momentum": self.block_momentum, "block_lr": self.block_lr,
                "nesterov": self.nesterov, "local_momentum": self.local_momentum, "world_size": self.world_size,
                "local_optimizer": self.local_optimizer.state_dict()}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore W, Delta, the counters and the local optimizer, and put every worker at the
        block start point. A state saved mid-block resumes from the block's start: the local
        steps since the last sync are trained again. Hyperparameters are this object's (a resumed
        job may run on a different number of workers)."""
        missing = [k for k in ("param_names", "global_params", "block_delta", "num_updates", "num_syncs")
                   if k not in state]
        if missing:
            raise ValueError(f"BMUF state lacks {missing} (fix: resume from a checkpoint written by "
                             f"BMUF.state_dict())")
        if list(state["param_names"]) != self.param_names:
            theirs = set(state["param_names"])
            diff = sorted(theirs.symmetric_difference(self.param_names))[:5]
            raise ValueError(f"BMUF state is for another model: parameter names differ ({diff} ...) "
                             f"(fix: resume with the model config the checkpoint was trained with)")
        for name, p, w, d in zip(self.param_names, self.params, state["global_params"], state["block_delta"]):
            if w.shape != p.shape or d.shape != p.shape:
                raise ValueError(f"BMUF state: parameter {name} has shape {tuple(w.shape)} in the "
                                 f"checkpoint but {tuple(p.shape)} in the model (fix: same model config)")
        for w, d, sw, sd in zip(self.global_params, self.block_delta, state["global_params"], state["block_delta"]):
            w.copy_(sw)
            d.copy_(sd)
        for key in ("block_momentum", "block_lr", "nesterov", "block_size", "local_momentum"):
            if key in state and state[key] != getattr(self, key):
                log.info("BMUF resume: %s %s in the checkpoint, %s now", key, state[key], getattr(self, key))
        self.num_updates = int(state["num_updates"])
        self.num_syncs = int(state["num_syncs"])
        self.local_step = 0
        if "local_optimizer" in state:
            self.local_optimizer.load_state_dict(state["local_optimizer"])
        if self.enabled:
            self._load_start_point()
        else:
            for p, w in zip(self.params, self.global_params):
                p.copy_(w)
