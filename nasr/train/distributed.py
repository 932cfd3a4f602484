"""torch.distributed set-up for training: one process per device, launched by `torchrun`.

    ctx = init_distributed(mode="bmuf", device="auto", timeout_s=600)
    model, optimizer = wrap_for_training(model, optimizer, ctx, block_size=16)
    sampler = make_sampler(dataset, ctx, shuffle=True, seed=0)
    ...
    with guard_collective("training step"):     # DDP all-reduces inside backward()
        loss.backward(); optimizer.step()
    ...
    cleanup()

`mode` picks how workers cooperate: "bmuf" (blockwise model-update filtering, nasr.train.bmuf),
"ddp" (gradient all-reduce every step, torch's DistributedDataParallel) or "single" (one process).
torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) says where this
process stands; without it (a plain `python -m ...`) everything degrades to one process.

A worker that dies must not leave the others blocked in a collective forever: the process group
gets a finite timeout, and collectives run under `guard_collective`, which turns the backend's
error into a WorkerLostError naming the ranks that stopped answering and saying how to resume.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

log = logging.getLogger("nasr")

MODES = ("bmuf", "ddp", "single")

# Store keys the survivors of a failed collective write so they can tell who is still there.
_ALIVE_PREFIX = "nasr/alive_after_failure"


class WorkerLostError(RuntimeError):
    """A collective failed because another worker died or stopped answering."""


@dataclass
class DistContext:
    """Where this process stands in the job. `mode` is "single" whenever world_size is 1."""
    mode: str
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    timeout_s: float = 1800.0
    # What a user should do after a lost worker; trainers set it to name their exp dir.
    resume_hint: str = "rerun the training stage with --resume to continue from the newest epoch-N.pt"

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_CTX: Optional[DistContext] = None


def _env_int(name: str, default: Optional[int]) -> Optional[int]:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer "
                         f"(fix: launch with torchrun, which sets it, or unset it)") from None


def env_world() -> Tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} WORLD_SIZE={world_size}: rank must be in [0, world_size) "
                         f"(fix: launch with torchrun --nproc-per-node N rather than setting them by hand)")
    return rank, world_size, local_rank


def init_distributed(mode: str = "bmuf", device: str = "auto", timeout_s: float = 1800.0,
                     backend: Optional[str] = None) -> DistContext:
    """Join the process group torchrun describes; returns (and remembers) the DistContext.

    Backend: nccl for CUDA devices, gloo for CPU, unless `backend` is given. `timeout_s` bounds
    how long any collective waits for a missing worker before the job fails."""
    global _CTX
    if mode not in MODES:
        raise ValueError(f"distributed mode {mode!r} is not one of {list(MODES)} (fix: --dist-mode bmuf|ddp|single)")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s={timeout_s} must be positive (fix: give the seconds a collective may wait)")
    rank, world_size, local_rank = env_world()

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {device} asked for, but CUDA is not available (fix: --device cpu)")
        if dev.index is None:
            # One process per GPU: torchrun's LOCAL_RANK picks this process's GPU.
            if local_rank >= torch.cuda.device_count():
                raise RuntimeError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are "
                                   f"visible (fix: torchrun --nproc-per-node <= the number of GPUs)")
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)

    if world_size == 1:
        if mode != "single":
            log.info("distributed mode %s with one process: plain single-process training", mode)
        _CTX = DistContext(mode="single", device=dev, timeout_s=timeout_s)
        return _CTX
    if mode == "single":
        raise ValueError(f"WORLD_SIZE={world_size} but the distributed mode is 'single': every process would "
                         f"train its own copy (fix: --dist-mode bmuf or ddp, or launch one process)")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not os.environ.get(name):
            raise RuntimeError(f"WORLD_SIZE={world_size} but {name} is not set "
                               f"(fix: launch with torchrun, which sets MASTER_ADDR and MASTER_PORT)")

    from nasr.utils.device import plan_device

    backend = backend or plan_device(dev, amp="off").dist_backend  # nccl on CUDA, gloo on CPU
    if backend == "nccl":
        # Without async error handling a NCCL collective whose peer died blocks forever; with it
        # the watchdog aborts the communicator once the timeout passes and the process exits.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    kwargs = {}
    if backend == "nccl":
        kwargs["device_id"] = dev
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
    _CTX = DistContext(mode=mode, rank=rank, world_size=world_size, local_rank=local_rank,
                       backend=backend, device=dev, timeout_s=timeout_s)
    log.info("rank %d/%d (local %d) joined: backend %s, device %s, mode %s, timeout %.0f s",
             rank, world_size, local_rank, backend, dev, mode, timeout_s)
    return _CTX


def context() -> DistContext:
    """The DistContext of init_distributed, or a single-process one if it was never called."""
    if _CTX is not None:
        return _CTX
    if dist.is_available() and dist.is_initialized():
        # A process group someone else created (tests, notebooks): describe it as best we can.
        return DistContext(mode="bmuf", rank=dist.get_rank(), world_size=dist.get_world_size(),
                           backend=dist.get_backend())
    return DistContext(mode="single")


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on the process that writes logs, checkpoints and reports (rank 0)."""
    return get_rank() == 0


def barrier(what: str = "barrier") -> None:
    if get_world_size() == 1:
        return
    with guard_collective(what):
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast_buffers(model: torch.nn.Module, src: int = 0) -> None:
    """Give every worker rank `src`'s buffers (BatchNorm running statistics) before the workers score
    one model together (sharded validation): DDP re-broadcasts buffers only at the start of a
    forward, so after the last step each worker holds its own (BMUF averages them at every sync)."""
    if get_world_size() == 1:
        return
    with guard_collective("buffer broadcast"), torch.no_grad():
        for b in model.buffers():
            dist.broadcast(b, src)


def cleanup(wait_for_others: bool = True, leave_timeout_s: float = 30.0) -> None:
    """Leave the process group (safe to call when none was joined).

    Rank 0 hosts the rendezvous store; if it tears down while another rank is still inside its own
    teardown, gloo aborts that rank (SIGABRT, "terminate called without an active exception"; seen
    in the BMUF resume test, even after a barrier). So with `wait_for_others` all ranks meet at a
    barrier, the other ranks leave first and say so through the store, and rank 0 leaves last."""
    global _CTX
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        store = None
        if wait_for_others and world > 1:
            with guard_collective("shutdown barrier"):
                dist.barrier()
            store = dist.distributed_c10d._get_default_store()
            if rank == 0:
                deadline = time.monotonic() + leave_timeout_s
                while store.add("nasr_ranks_left", 0) < world - 1 and time.monotonic() < deadline:
                    time.sleep(0.05)
        if store is not None and rank != 0:
            dist.destroy_process_group()
            store.add("nasr_ranks_left", 1)
        else:
            dist.destroy_process_group()
    _CTX = None


# ---------------------------------------------------------------------------------------------
# Lost workers

def _store():
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # private API, or no default group: the diagnosis then says less
        return None


def _looks_like_lost_peer(err: BaseException) -> bool:
    if isinstance(err, getattr(dist, "DistError", ())):
        return True
    text = str(err).lower()
    return any(s in text for s in ("connection closed", "connection reset", "timed out", "timeout",
                                   "broken pipe", "gloo", "nccl", "peer", "socket"))


def find_lost_ranks(grace_s: float = 2.0) -> Tuple[Optional[List[int]], str]:
    """After a failed collective: which ranks are gone? Each survivor marks itself alive in the
    rendezvous store and, after `grace_s` for the others to do the same, the unmarked are lost.

    Returns (lost ranks or None when the store itself is unreachable, a note for the message)."""
    rank, world_size = get_rank(), get_world_size()
    store = _store()
    if store is None:
        return None, "no rendezvous store to ask which worker is gone"
    try:
        store.set_timeout(datetime.timedelta(seconds=max(grace_s, 1.0)))
        store.set(f"{_ALIVE_PREFIX}/{rank}", "1")
        deadline = time.monotonic() + grace_s
        keys = [f"{_ALIVE_PREFIX}/{r}" for r in range(world_size)]
        while True:
            alive = [r for r, k in enumerate(keys) if store.check([k])]
            if len(alive) == world_size or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        return [r for r in range(world_size) if r not in alive], ""
    except Exception as e:
        # Without torchrun's agent the store lives in rank 0's process: unreachable means rank 0 died.
        return None, (f"the rendezvous store at {os.environ.get('MASTER_ADDR', '?')}:"
                      f"{os.environ.get('MASTER_PORT', '?')} is unreachable too ({type(e).__name__}), "
                      f"so the process hosting it (rank 0 unless torchrun's agent hosts it) is gone")


def lost_worker_message(what: str, err: BaseException, grace_s: float = 2.0) -> str:
    rank, world_size = get_rank(), get_world_size()
    lost, note = find_lost_ranks(grace_s)
    if lost:
        who = f"lost worker rank(s) {', '.join(map(str, lost))} of {world_size}"
    elif lost is None:
        who = f"lost contact with the other workers ({note})"
    else:
        who = "a collective with the other workers failed although all of them still answer"
    ctx = context()
    timeout = f"{ctx.timeout_s:.0f} s" if _CTX is not None else "the process-group timeout"
    return (f"rank {rank}: {who} during {what} ({type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}); "
            f"the job stops instead of waiting (collective timeout {timeout}). "
            f"The last checkpoint written before the failure can be resumed: {ctx.resume_hint}")


@contextlib.contextmanager
def guard_collective(what: str, grace_s: float = 2.0) -> Iterator[None]:
    """Run collectives; a failure caused by a dead or hung peer becomes a WorkerLostError whose
    message names the lost ranks and the way to resume. Other errors pass through unchanged."""
    try:
        yield
    except WorkerLostError:
        raise
    except Exception as e:
        if get_world_size() > 1 and _looks_like_lost_peer(e):
            msg = lost_worker_message(what, e, grace_s)
            log.error("%s", msg)
            raise WorkerLostError(msg) from e
        raise


# ---------------------------------------------------------------------------------------------
# Data and model wrapping

def make_sampler(dataset, ctx: Optional[DistContext] = None, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False):
    """A sampler giving this worker its share of `dataset`, the same count on every worker
    (a worker with one batch more would wait in its next collective until the timeout).
    Call `sampler.set_epoch(epoch)` each epoch for a new shuffle that all workers agree on."""
    ctx = ctx or context()
    if ctx.world_size > 1:
        from torch.utils.data.distributed import DistributedSampler
        return DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle,
                                  seed=seed, drop_last=drop_last)
    return _EpochSampler(len(dataset), shuffle, seed)


class _EpochSampler(torch.utils.data.Sampler):
    """Single-process counterpart of DistributedSampler: same set_epoch() and seed behaviour."""

    def __init__(self, n: int, shuffle: bool, seed: int):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        if not self.shuffle:
            return iter(range(self.n))
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def shard_batches(batches: Sequence, rank: int, world_size: int) -> list:
    """This worker's share of a list of batches (e.g. length-bucketed index lists), round robin.
    Counts are equalised by repeating batches from the start, so every worker steps equally often."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, {world_size})")
    if not batches:
        raise ValueError("no batches to shard (fix: check that the data dir is not empty)")
    per_worker = -(-len(batches) // world_size)
    padded = list(batches) + [batches[i % len(batches)] for i in range(per_worker * world_size - len(batches))]
    return padded[rank::world_size]


def wrap_for_training(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      ctx: Optional[DistContext] = None, **bmuf_kwargs):
    """(model, optimizer) ready for ctx.mode: DDP wraps the model; BMUF wraps the optimizer (its
    step() syncs every block); single returns both unchanged. `bmuf_kwargs` go to BMUF."""
    ctx = ctx or context()
    if ctx.mode == "ddp" and ctx.is_distributed:
        from torch.nn.parallel import DistributedDataParallel
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids), optimizer
    if ctx.mode == "bmuf" and ctx.is_distributed:
        from nasr.train.bmuf import BMUF
        return model, BMUF(model, optimizer, **bmuf_kwargs)
    return model, optimizer


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare model inside a DDP wrapper (for checkpoints and evaluation)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
