"""CTC training and greedy-decoding evaluation for the ASR networks (search and evaluation).

Both network kinds end in the per-frame "ctc" head (nasr.nas.asr_head) and emit (N, T/4, V)
log-posteriors: two reduction cells each halve time, rounding up, so an utterance of L frames owns
ceil(ceil(L/2)/2) = ceil(L/4) output frames; a stride-2 stem halves once more. The network says
how many valid frames each input length gives (`model.output_lengths`, read by
`model_output_lengths`); frames past that are padding and are hidden from the loss and the decoder.

`ctc_loss` is torch's CTC (blank = unit 0) averaged over the batch after dividing each
utterance's loss by its label length (torch's "mean"), with zero_infinity so that one impossible
alignment cannot turn the whole step into NaN.
"""
from __future__ import annotations

import time
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

import nasr.nas.asr_head  # noqa: F401  (registers the "ctc" head)
from nasr.asr.ctc_decode import greedy_decode
from nasr.asr.units import BLANK_ID
from nasr.data.asr_dataset import AsrBatch
from nasr.nas.ops import halved_lengths
from nasr.train.loop import WaitClock, autocast_context
from nasr.utils.device import backward_step
from nasr.utils.log import progress

NUM_REDUCTIONS = 2  # the ASR network's two reduction cells (1/3 and 2/3 of the depth)


def output_lengths(x_lens: torch.Tensor, num_reductions: int = NUM_REDUCTIONS) -> torch.Tensor:
    """Valid output frames per utterance after `num_reductions` stride-2 cells (each rounds up)."""
    return halved_lengths(x_lens, num_reductions)


def model_output_lengths(model, x_lens: torch.Tensor) -> torch.Tensor:
    """Valid output frames per utterance for `model` (unwrapping DDP): its own `output_lengths`
    when it has one (a stride-2 stem or another subsampling), else two ceil-halvings."""
    net = getattr(model, "module", model)
    own = getattr(net, "output_lengths", None)
    return own(x_lens) if own is not None else output_lengths(x_lens)


def network_log_probs(model, x: torch.Tensor, amp=None,
                      x_lens: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(N, T', V) float32 log-posteriors from a search network (plain output) or an evaluation
    network (`(logits, aux)`). Models that mask padding themselves (`takes_lengths = True`, e.g.
    DFSMN-SAN) get the batch's `x_lens`; the convolutional networks do not need them."""
    net = getattr(model, "module", model)
    with autocast_context(x.device, amp):
        out = model(x, x_lens) if x_lens is not None and getattr(net, "takes_lengths", False) else model(x)
    if isinstance(out, tuple):
        out = out[0]
    return out.float()


def ctc_loss(log_probs: torch.Tensor, out_lens: torch.Tensor, targets: torch.Tensor,
             target_lens: torch.Tensor, blank: int = BLANK_ID) -> torch.Tensor:
    t = log_probs.size(1)
    if int(out_lens.max()) > t:
        raise ValueError(f"output lengths {out_lens.tolist()} exceed the network's {t} output frames "
                         f"(does the model's output_lengths match its subsampling?)")
    return F.ctc_loss(log_probs.transpose(0, 1), targets, out_lens, target_lens, blank=blank,
                      reduction="mean", zero_infinity=True)


def batch_to(batch, device) -> AsrBatch:
    """Move an AsrBatch (or the `(AsrBatch, utt ids)` pair collate gives for id-carrying items)."""
    if isinstance(batch, tuple) and not isinstance(batch, AsrBatch):
        batch = batch[0]
    non_blocking = torch.device(device).type == "cuda"  # from pinned memory: overlaps the step
    return AsrBatch(*(t.to(device, non_blocking=non_blocking) for t in batch))


def input_dims(dataset):
    """(channels, feature bins per channel) of an AsrDataset's items, read off its first item
    (feats.yaml's feat_dim counts all channels' bins together)."""
    feats = dataset[0][0]
    if feats.dim() != 3:
        raise ValueError(f"{dataset.data_dir}: items must be (C, T, D) features, got {tuple(feats.shape)}")
    return int(feats.shape[0]), int(feats.shape[2])


def make_loader(dataset, indices: Optional[Sequence[int]] = None, batch_size: int = 4,
                shuffle: bool = True, seed: int = 0, epoch: int = 0, num_workers: int = 0,
                drop_last: bool = False, pin_memory: bool = False):
    """Length-bucketed DataLoader over `dataset` (an AsrDataset), or over its items `indices`
    (e.g. one half of the training set in a search)."""
    from torch.utils.data import DataLoader, Subset

    from nasr.data.asr_dataset import AsrCollate, BucketBatchSampler

    if indices is not None:
        lengths = [dataset.num_frames[i] for i in indices]
        dataset = Subset(dataset, list(indices))
    else:
        lengths = list(dataset.num_frames)
    sampler = BucketBatchSampler(lengths, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                 epoch=epoch, drop_last=drop_last)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=AsrCollate(4),
                      num_workers=num_workers, persistent_workers=False, pin_memory=pin_memory)


def batch_ctc_loss(model, batch: AsrBatch, amp=None) -> torch.Tensor:
    """The CTC loss of one batch; also the `loss_fn(model, batch)` the Architect descends."""
    if isinstance(batch, tuple) and not isinstance(batch, AsrBatch):
        batch = batch[0]
    log_probs = network_log_probs(model, batch.x, amp, batch.x_lens)
    return ctc_loss(log_probs, model_output_lengths(model, batch.x_lens).to(log_probs.device), batch.targets,
                    batch.target_lens)


def train_ctc_epoch(model, loader, optimizer, device, *, grad_clip: float = 5.0, amp=None, scaler=None,
                    parameters: Optional[Sequence[torch.nn.Parameter]] = None,
                    desc: str = "train") -> Dict[str, float]:
    """One pass of SGD on the CTC loss (through `scaler`, a GradScaler, with fp16 autocast).
    Returns mean loss, utterances, seconds and the fraction of the epoch spent waiting for
    batches (the data loader's share)."""
    model.train()
    params = list(parameters) if parameters is not None else [p for p in model.parameters()]
    total = n = 0.0
    start = time.perf_counter()
    clock = WaitClock()
    bar = progress(loader, desc=desc, unit="batch")
    for batch in bar:
        clock.ready()
        batch = batch_to(batch, device)
        loss = batch_ctc_loss(model, batch, amp)
        optimizer.zero_grad(set_to_none=True)
        backward_step(loss, optimizer, scaler, params, grad_clip)
        k = batch.x.size(0)
        total += float(loss.detach()) * k
        n += k
        bar.set_postfix(loss=f"{total / n:.3f}")
        clock.done()
    seconds = time.perf_counter() - start
    return {"loss": total / max(n, 1), "utts": int(n), "seconds": seconds, "wait_fraction": clock.fraction}


@torch.no_grad()
def evaluate_ctc(model, loader, device, amp=None, desc: str = "eval"
                 ) -> Tuple[Dict[str, float], Dict[str, List[int]], Dict[str, List[int]]]:
    """CTC loss and greedy decoding over a loader that yields `(AsrBatch, utt ids)`.

    Returns ({"loss", "utts"}, {utt: hyp unit ids}, {utt: ref unit ids})."""
    model.eval()
    total = n = 0.0
    hyps: Dict[str, List[int]] = {}
    refs: Dict[str, List[int]] = {}
    for batch, utts in progress(loader, desc=desc, unit="batch"):
        batch = batch_to(batch, device)
        log_probs = network_log_probs(model, batch.x, amp, batch.x_lens)
        out_lens = model_output_lengths(model, batch.x_lens).to(log_probs.device)
        loss = ctc_loss(log_probs, out_lens, batch.targets, batch.target_lens)
        total += float(loss) * len(utts)
        n += len(utts)
        decoded = greedy_decode(log_probs, out_lens)
        offsets = torch.cumsum(batch.target_lens, 0).tolist()
        targets = batch.targets.tolist()
        for i, utt in enumerate(utts):
            hyps[utt] = decoded[i]
            refs[utt] = targets[offsets[i] - int(batch.target_lens[i]):offsets[i]]
    return {"loss": total / max(n, 1), "utts": int(n)}, hyps, refs


def validate_ctc(model, dataset, device, amp=None, num_workers: int = 0, rank: int = 0,
                 world_size: int = 1, batch_size: int = 8) -> Dict[str, float]:
    """Dev loss and token error rate over `dataset` (an AsrDataset with return_utt=True).

    With several workers each scores every `world_size`-th utterance and the sums are all-reduced,
    so the set is scored in 1/world_size of the time and every worker returns the whole set's
    figures (one worker alone would keep the others waiting at the epoch's barrier).  Every worker
    must hold the same model.  Returns {"loss", "ter", "utts"}."""
    from nasr.asr.scoring import edit_stats

    indices = list(range(rank, len(dataset), world_size))
    loss_sum = errors = tokens = 0.0
    if indices:
        loader = make_loader(dataset, indices, batch_size, False, 0, 0, num_workers,
                             pin_memory=torch.device(device).type == "cuda")
        ev, hyps, refs = evaluate_ctc(model, loader, device, amp)
        keys = sorted(refs)
        stats = edit_stats([refs[k] for k in keys], [hyps.get(k, []) for k in keys])
        loss_sum, errors, tokens = ev["loss"] * ev["utts"], stats.errors, stats.ref_tokens
    sums = torch.tensor([loss_sum, len(indices), errors, tokens], dtype=torch.float64, device=device)
    if world_size > 1:
        torch.distributed.all_reduce(sums)
    loss_sum, utts, errors, tokens = sums.tolist()
    return {"loss": loss_sum / max(utts, 1.0), "ter": errors / max(tokens, 1.0), "utts": int(utts)}


__all__ = ["NUM_REDUCTIONS", "output_lengths", "model_output_lengths", "network_log_probs", "ctc_loss", "batch_to",
           "batch_ctc_loss", "input_dims", "make_loader", "train_ctc_epoch", "evaluate_ctc", "validate_ctc"]
