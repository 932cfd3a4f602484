"""Tower search (tower-search paper, Algorithms 1 and 2): select, mutate, transfer, train, evaluate.

One trainer runs `run_trainer`; several run at once on one candidate store (nasr.tower.store) and
never wait for each other: each picks the best tower evaluated so far when it is free.

Algorithm 2 (MUTATE) on the candidates C:
    a <- argmin_{a in C} L(a)
    if |a| < floor(|C| / M) and |a| < K:  b <- a + [random block]       (grow)
    else:                                 b <- a with one random block replaced by a random block
With C empty the first tower is one random block.  M (default 5) is the exploration needed per depth:
a tower of depth k grows only once C holds (k + 1) * M candidates.  A mutation never repeats a tower
already in A (evaluated, or being trained by another trainer) while an untried one is in reach: the
draw is uniform over the untried towers of the chosen branch (the paper's draw, conditioned on being
new), then of the other branch (a replace when every extension of a is taken, a grow below K when every
replacement is); only when a's whole neighbourhood is taken is a tower trained again.  Without this,
a best tower that stays best keeps growing into the same |B| children (the synthetic LID run trained
one two-block tower 4 times in 30 candidates).
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from nasr.tower.data import iterate_steps, make_loader
from nasr.tower.store import Candidate, CandidateStore
from nasr.tower.tower import TowerNet, tower_params, transfer
from nasr.utils.log import progress as show_progress

log = logging.getLogger("nasr")


@dataclass
class SearchSettings:
    block_set: List[str]
    max_blocks: int = 4          # K
    explore_m: int = 5           # M


def select_candidates(done: Sequence[Candidate]) -> List[Candidate]:
    """SELECTCANDIDATES(A): every evaluated candidate (a failed or lost one has no loss)."""
    return [c for c in done if c.status == "done" and c.loss is not None and math.isfinite(c.loss)]


def mutate(candidates: Sequence[Candidate], settings: SearchSettings, rng: random.Random,
           taken: Sequence[Sequence[str]] = ()) -> Tuple[Optional[Candidate], List[str], str]:
    """MUTATE(C) -> (a or None, b, "init" | "grow" | "replace"); `taken`: towers not to repeat."""
    taken_set = {tuple(t) for t in taken}

    def draw(towers: List[List[str]]) -> Optional[List[str]]:
        new = [t for t in towers if tuple(t) not in taken_set]
        return rng.choice(new) if new else None

    blocks = settings.block_set
    if not candidates:
        singles = [[u] for u in blocks]
        return None, draw(singles) or rng.choice(singles), "init"
    a = min(candidates, key=lambda c: (c.loss, c.id))
    depth = len(a.blocks)
    grown = [list(a.blocks) + [u] for u in blocks] if depth < settings.max_blocks else []
    replaced = [a.blocks[:i] + [u] + a.blocks[i + 1:] for i in range(depth) for u in blocks if u != a.blocks[i]]
    grow = depth < len(candidates) // settings.explore_m and depth < settings.max_blocks
    branches = [("grow", grown), ("replace", replaced)] if grow else [("replace", replaced), ("grow", grown)]
    for how, towers in branches:
        b = draw(towers)
        if b is not None:
            return a, b, how
    # a's whole neighbourhood is taken: train one of the chosen branch again (new seed, new hparams).
    how, towers = branches[0] if branches[0][1] else branches[1]
    return a, rng.choice(towers) if towers else list(a.blocks), how


# --- TRAIN and EVAL ---------------------------------------------------------------------------

@torch.no_grad()
def predict(model: nn.Module, ds, batch_size: int = 64) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Logits (N, K), labels (N,) and utterance ids over a dataset, in its order."""
    model.eval()
    logits, labels, utts = [], [], []
    for x, lengths, y, u in make_loader(ds, batch_size, False, 0):
        logits.append(model(x, lengths).float().numpy())
        labels.append(y.numpy())
        utts += u
    return np.concatenate(logits), np.concatenate(labels), utts


def evaluate(model: nn.Module, ds, batch_size: int = 64) -> Dict[str, float]:
    """EVAL: mean cross-entropy (the search's loss L) and accuracy on a held-out set."""
    logits, labels, _ = predict(model, ds, batch_size)
    loss = nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels).long()).item()
    return {"loss": float(loss), "acc": float((logits.argmax(1) == labels).mean())}


# The paper's tuned settings for its best LID tower (footnote 3: "Batch size 20; dropout between
# blocks, 0.3; exponential decay, 0.86156; number of times applying step decay 4; learning rate
# 5.24e-5 and Adam optimizer"): the train: defaults of nasr.bin.tower_search, the centre of TPE's lr range.
PAPER_TRAIN = {"lr": 5.24e-5, "dropout": 0.3, "batch_size": 20, "lr_decay": 0.86156, "lr_decay_times": 4}


def staircase_lr(step: int, steps: int, lr: float, decay: float, times: int) -> float:
    """The paper's schedule (Sec. 3, footnote: "exponential decay 0.86156; number of times applying
    step decay 4"): lr is multiplied by `decay` `times` times, at steps/(times+1), 2*steps/(times+1),
    ..., so the last stretch of training runs at lr * decay**times.  `step` counts from 1."""
    if times <= 0 or decay == 1.0:
        return lr
    return lr * decay ** min(times, (step - 1) * (times + 1) // steps)


def train_kwargs(hp: Dict) -> Dict:
    """train_steps' optimiser settings from a candidate's or member's hyperparameters (the config's
    train: section, with TPE's suggestions in place)."""
    return {"lr": float(hp["lr"]), "batch_size": int(hp["batch_size"]),
            "grad_clip": float(hp.get("grad_clip", 5.0)), "weight_decay": float(hp.get("weight_decay", 0.0)),
            "lr_decay": float(hp.get("lr_decay", 1.0)), "lr_decay_times": int(hp.get("lr_decay_times", 0))}


def train_steps(model: nn.Module, train_ds, valid_ds, *, steps: int, lr: float, batch_size: int, seed: int,
                eval_every: int, grad_clip: float = 5.0, weight_decay: float = 0.0, lr_decay: float = 1.0,
                lr_decay_times: int = 0,
                progress: Optional[str] = None) -> Tuple[List[List[float]], Dict[str, float]]:
    """TRAIN for `steps` Adam steps (the paper counts steps, not epochs) on the staircase schedule,
    evaluating every `eval_every` steps.  Returns the curve [[step, valid acc, valid loss], ...] and
    the final EVAL, with `data_wait_frac`: the share of the training steps' time spent waiting
    for batches (evaluations left out)."""
    from nasr.train.loop import WaitClock

    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    curve: List[List[float]] = []
    batches = iterate_steps(train_ds, batch_size, seed)
    bar = show_progress(total=steps, desc=progress, disable=progress is None, unit="step")
    result = {"loss": float("nan"), "acc": 0.0}
    clock = WaitClock()
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = staircase_lr(step, steps, lr, lr_decay, lr_decay_times)
        model.train()
        clock.resume()
        _, (x, lengths, y, _) = next(batches)
        clock.ready()
        loss = nn.functional.cross_entropy(model(x, lengths), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at step {step} (lr {lr:g})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        clock.done()
        bar.update(1)
        if step % eval_every == 0 or step == steps:
            result = evaluate(model, valid_ds)
            curve.append([step, result["acc"], result["loss"]])
            bar.set_postfix(acc=f"{result['acc']:.3f}", loss=f"{result['loss']:.3f}")
    bar.close()
    return curve, dict(result, data_wait_frac=clock.fraction)


# --- one trainer ------------------------------------------------------------------------------

def candidate_checkpoint(exp_dir, cand_id: int) -> Path:
    return Path(exp_dir) / "candidates" / f"cand-{cand_id}.pt"


def train_candidate(store: CandidateStore, cand: Candidate, hp: Dict, train_ds, valid_ds,
                    class_names: List[str], exp_dir, *, steps: int, eval_every: int, seed: int) -> Dict[str, float]:
    """Algorithm 1, lines 5-7 for one claimed candidate: TRANSFER the parent's shared prefix, TRAIN,
    EVAL; the checkpoint is saved and the result recorded in the store.  Returns the EVAL result."""
    from nasr.train.checkpoint import load_checkpoint, save_checkpoint

    t0 = time.time()
    input_dim, num_classes = int(train_ds[0][0].shape[-1]), len(class_names)
    torch.manual_seed(seed * 7919 + cand.id)
    model = TowerNet(cand.blocks, input_dim, num_classes, dropout=float(hp["dropout"]))
    copied = 0
    if cand.parent_id is not None:
        parent = store.get(cand.parent_id)
        if parent.checkpoint and Path(parent.checkpoint).is_file():
            copied = transfer(load_checkpoint(parent.checkpoint)["model"], parent.blocks, model)
        else:
            log.warning("candidate %d: parent %d has no checkpoint; training from scratch", cand.id, cand.parent_id)
    log.info("trainer %s: candidate %d %s (%s of %s, %d block(s) transferred) lr %.2g dropout %.2f batch %d",
             cand.trainer_id, cand.id, cand.blocks, cand.mutation, cand.parent_id, copied, hp["lr"], hp["dropout"],
             hp["batch_size"])
    curve, result = train_steps(model, train_ds, valid_ds, steps=steps, seed=seed * 7919 + cand.id,
                                eval_every=eval_every, progress=f"cand {cand.id}", **train_kwargs(hp))
    ckpt = candidate_checkpoint(exp_dir, cand.id)
    save_checkpoint(ckpt, {"model": model.state_dict(), "blocks": cand.blocks, "input_dim": input_dim,
                           "num_classes": num_classes, "class_names": class_names, "hparams": hp})
    store.finish(cand.id, loss=result["loss"], acc=result["acc"],
                 params=tower_params(cand.blocks, input_dim, num_classes), steps=steps, curve=curve,
                 checkpoint=str(ckpt), train_seconds=time.time() - t0, transferred=copied)
    log.info("trainer %s: candidate %d loss %.4f acc %.4f (%.0fs, data wait %.0f%%)", cand.trainer_id, cand.id,
             result["loss"], result["acc"], time.time() - t0, 100 * result["data_wait_frac"])
    return result


def run_trainer(store: CandidateStore, settings: SearchSettings, train_ds, valid_ds, class_names: List[str],
                exp_dir, trainer_id: str, train_cfg: Dict, *, steps: int, eval_every: int, seed: int = 0,
                max_candidates: Optional[int] = None, time_budget: Optional[float] = None,
                tuner=None) -> int:
    """Algorithm 1 until the store's candidate budget or this trainer's time budget is spent.
    Returns the number of candidates this trainer evaluated."""
    lost = store.mark_lost(trainer_id)
    if lost:
        log.warning("trainer %s: %d candidate(s) it was training when it stopped are marked lost", trainer_id, lost)
    # Reproducible from the config's seed; the store's size tells a restarted trainer apart from its
    # first start, so it does not replay the same mutations.
    rng = random.Random(f"{seed}-{trainer_id}-{sum(store.counts().values())}")
    start, evaluated = time.time(), 0
    while time_budget is None or time.time() - start < time_budget:
        def propose(done, running):
            cands = select_candidates(done)
            a, b, how = mutate(cands, settings, rng, [c.blocks for c in done + running])
            return {"blocks": b, "parent_id": a.id if a else None, "mutation": how,
                    "hparams": dict(train_cfg)}

        cand = store.claim(propose, trainer_id, max_candidates)
        if cand is None:
            log.info("trainer %s: candidate budget (%s) spent", trainer_id, max_candidates)
            break
        hp = dict(cand.hparams)
        trial = None
        if tuner is not None:
            trial, suggested = tuner.ask(cand.id, cand.blocks)
            hp.update(suggested)
            store.update_hparams(cand.id, hp)
        # The heartbeat tells the other trainers (any machine) that this candidate is still alive.
        with store.keep_alive(cand.id):
            try:
                result = train_candidate(store, cand, hp, train_ds, valid_ds, class_names, exp_dir, steps=steps,
                                         eval_every=eval_every, seed=seed)
            except Exception as e:  # noqa: BLE001
                # A diverging or broken candidate is recorded (never left `running`) and the search goes on.
                log.warning("trainer %s: candidate %d failed: %s", trainer_id, cand.id, e)
                store.fail(cand.id, f"{type(e).__name__}: {e}")
                if tuner is not None:
                    tuner.tell(trial, None)
                continue
        if tuner is not None:
            tuner.tell(trial, result["loss"])
        evaluated += 1
    return evaluated
