"""Ensembling (tower-search paper, Algorithm 3): retrain the best tower p times from scratch, each
with its own seed (initialisation and data order), and average their logits with w_i = 1/p.

Layout of an ensemble dir:
    <exp>/member-<i>/model.pt      trained weights of member i (written last: marks it complete)
    <exp>/member-<i>/train.json    tower, hyperparameters, seed, steps, curve, seconds
Members are independent, so a job runner trains them in parallel (JOB=1:p).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from nasr.tower.search import predict, train_kwargs, train_steps
from nasr.tower.store import Candidate, CandidateStore, StoreError
from nasr.tower.tower import TowerNet, tower_params
from nasr.utils.io import read_json, write_json

log = logging.getLogger("nasr")


def best_candidate(store: CandidateStore) -> Candidate:
    """BESTCANDIDATE(A): the evaluated candidate of lowest validation loss."""
    best = store.best(1)
    if not best:
        raise StoreError(f"{store.location}: no evaluated candidate yet (fix: run the tower search stage first)")
    return best[0]


def member_dir(exp_dir, member: int) -> Path:
    return Path(exp_dir) / f"member-{member}"


def member_seed(seed: int, member: int) -> int:
    return int(seed) * 1000 + int(member)


def train_member(exp_dir, member: int, blocks: Sequence[str], hparams: Dict, train_ds, valid_ds,
                 class_names: List[str], *, steps: int, eval_every: int, seed: int, source: Dict) -> Dict:
    """Train member `member` from scratch (TRAIN in Algorithm 3); skipped when already complete for
    the same tower, hyperparameters and step count."""
    from nasr.train.checkpoint import save_checkpoint

    out = member_dir(exp_dir, member)
    if (out / "model.pt").is_file() and (out / "train.json").is_file():
        info = read_json(out / "train.json")
        before = (info["blocks"], info["hparams"], info["steps"])
        if before == (list(blocks), dict(hparams), steps):
            log.info("member %d resumed from %s (already trained)", member, out)
            return info
        log.warning("member %d in %s was trained as (tower, hyperparameters, steps) %s, now %s: retraining",
                    member, out, before, (list(blocks), dict(hparams), steps))
        # model.pt marks a member complete: without this, a kill between the new train.json and the
        # new model.pt would leave the old tower's weights passing for the new tower's.
        (out / "model.pt").unlink()
    s = member_seed(seed, member)
    torch.manual_seed(s)
    input_dim = int(train_ds[0][0].shape[-1])
    model = TowerNet(blocks, input_dim, len(class_names), dropout=float(hparams["dropout"]))
    t0 = time.time()
    curve, result = train_steps(model, train_ds, valid_ds, steps=steps, seed=s, eval_every=eval_every,
                                progress=f"member {member}", **train_kwargs(hparams))
    info = {"member": member, "blocks": list(blocks), "hparams": dict(hparams), "seed": s, "steps": steps,
            "input_dim": input_dim, "class_names": list(class_names),
            "params": tower_params(blocks, input_dim, len(class_names)), "curve": curve,
            "valid": result, "train_seconds": time.time() - t0, "source": source}
    write_json(out / "train.json", info)
    save_checkpoint(out / "model.pt", {"model": model.state_dict(), **{k: info[k] for k in
                                       ("blocks", "input_dim", "class_names", "hparams", "seed")}})
    return info


def load_members(exp_dir, max_members: Optional[int] = None) -> List[Tuple[Dict, TowerNet]]:
    """Trained members in member order (1, 2, ...), each (train.json, model)."""
    from nasr.train.checkpoint import load_checkpoint

    members = []
    for d in sorted(Path(exp_dir).glob("member-*"), key=lambda p: int(p.name.split("-")[1])):
        if not (d / "model.pt").is_file():
            continue
        info = read_json(d / "train.json")
        state = load_checkpoint(d / "model.pt")
        model = TowerNet(info["blocks"], info["input_dim"], len(info["class_names"]))
        model.load_state_dict(state["model"])
        model.eval()
        members.append((info, model))
        if max_members and len(members) == max_members:
            break
    if not members:
        raise FileNotFoundError(f"{exp_dir}: no trained member (member-*/model.pt) "
                                f"(fix: run python -m nasr.bin.tower_ensemble train first)")
    names = members[0][0]["class_names"]
    for info, _ in members[1:]:
        if info["class_names"] != names:
            raise ValueError(f"{exp_dir}/member-{info['member']}: other classes than member-1 "
                             f"(fix: retrain every member on the same training set)")
    return members


def ensemble_logits(member_logits: Sequence[np.ndarray], weights: Optional[Sequence[float]] = None) -> np.ndarray:
    """f = sum_i w_i h_i (eq. 2) with w_i = 1/p unless weights are given."""
    p = len(member_logits)
    w = [1.0 / p] * p if weights is None else list(weights)
    return sum(wi * np.asarray(h, dtype=np.float64) for wi, h in zip(w, member_logits))


def predict_members(members: Sequence[Tuple[Dict, TowerNet]], ds) -> Tuple[List[np.ndarray], np.ndarray, List[str]]:
    logits, labels, utts = [], None, None
    for _, model in members:
        lg, lb, ut = predict(model, ds)
        logits.append(lg)
        labels, utts = lb, ut
    return logits, labels, utts
