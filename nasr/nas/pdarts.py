"""P-DARTS (Chen et al. 2019) as the ASR paper runs it: progressive stages, search-space
approximation, operation-level dropout and architecture refinement.

Every setting comes from the config (conf/pdarts_*.yaml), nothing is fixed here:

    space: asr_revised
    stages:                      # depth grows while the candidate ops per edge shrink
      - {layers: 5,  ops_per_edge: 8, dropout: 0.1}
      - {layers: 11, ops_per_edge: 5, dropout: 0.1}
      - {layers: 17, ops_per_edge: 3, dropout: 0.1}
    epochs_per_stage: 15
    warmup_epochs: 6             # weights only; the other epochs alternate alphas and weights
    dropout_ops: [dil_sep_conv_3x3, dil_sep_conv_5x5, avg_pool_3x3]
    dropout_decay: 0.2           # alpha phase: p = p0 * exp(-dropout_decay * (epoch - warmup_epochs))
    max_ops_normal: {avg_pool_3x3: 2}   # refinement of the derived normal cell
    max_ops_reduce: {}
    always_keep: []              # ops never dropped when an edge shrinks

Stage s trains a supernet of stages[s].layers cells whose edges hold stages[s].ops_per_edge ops; at
its end each edge keeps its stages[s+1].ops_per_edge strongest ops (alpha ranking); the last stage's
alphas give the genotype (one op per edge), capped by max_ops_*. The stage loop is data-agnostic:
it takes batch iterables and loss functions, so CTC search (nasr.bin.search_pdarts) and tests
drive the same code.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence

import torch

from nasr.nas.architect import Architect
from nasr.nas.genotype import Genotype
from nasr.nas.ops import POOLING_OPS
from nasr.nas.spaces import get_space
from nasr.train.loop import WaitClock
from nasr.utils.device import backward_step
from nasr.train.checkpoint import (latest_checkpoint, load_checkpoint, load_model_state, restore_rng_states,
                                   rng_states, save_checkpoint)
from nasr.utils.io import read_json, write_json

log = logging.getLogger(__name__)

DEFAULTS = {
    "space": "asr_revised",
    "stages": [{"layers": 5, "ops_per_edge": 8, "dropout": 0.1},
               {"layers": 11, "ops_per_edge": 5, "dropout": 0.1},
               {"layers": 17, "ops_per_edge": 3, "dropout": 0.1}],
    "epochs_per_stage": 15,
    "warmup_epochs": 6,
    "dropout_ops": ["dil_sep_conv_3x3", "dil_sep_conv_5x5", "avg_pool_3x3"],
    "dropout_decay": 0.2,
    "max_ops_normal": {"avg_pool_3x3": 2},
    "max_ops_reduce": {},
    "always_keep": [],
    "optim": {"lr": 0.01, "lr_min": 0.0, "momentum": 0.9, "weight_decay": 3.0e-4, "grad_clip": 5.0},
    "arch": {"lr": 6.0e-4, "betas": [0.5, 0.999], "weight_decay": 1.0e-3, "unrolled": False},
}


@dataclass
class Stage:
    layers: int
    ops_per_edge: int
    dropout: float


def parse_stages(cfg: Mapping) -> List[Stage]:
    """Validated stages: depth > 0, ops per edge in 1..|space| and never growing, dropout in [0,1)."""
    space = get_space(cfg["space"])
    raw = cfg.get("stages")
    if not raw:
        raise ValueError("pdarts config: `stages` is empty (fix: list {layers, ops_per_edge, dropout})")
    stages = []
    for i, s in enumerate(raw):
        missing = [k for k in ("layers", "ops_per_edge", "dropout") if k not in s]
        if missing:
            raise ValueError(f"pdarts config: stage {i + 1} lacks {', '.join(missing)}")
        stages.append(Stage(int(s["layers"]), int(s["ops_per_edge"]), float(s["dropout"])))
    if stages[0].ops_per_edge != len(space):
        raise ValueError(f"pdarts config: stage 1 must search all {len(space)} ops of "
                         f"'{cfg['space']}', got ops_per_edge {stages[0].ops_per_edge}")
    for i, s in enumerate(stages):
        if s.layers < 3:
            raise ValueError(f"pdarts config: stage {i + 1} has {s.layers} cells; two reduction "
                             "cells at 1/3 and 2/3 need at least 3")
        if not 0.0 <= s.dropout < 1.0:
            raise ValueError(f"pdarts config: stage {i + 1} dropout {s.dropout} is not in [0, 1)")
        if i and not 1 <= s.ops_per_edge <= stages[i - 1].ops_per_edge:
            raise ValueError(f"pdarts config: stage {i + 1} keeps {s.ops_per_edge} ops per edge; it "
                             f"must be 1..{stages[i - 1].ops_per_edge} (never more than before)")
    warm, epochs = int(cfg["warmup_epochs"]), int(cfg["epochs_per_stage"])
    if not 0 <= warm <= epochs:
        raise ValueError(f"pdarts config: warmup_epochs {warm} must be in 0..epochs_per_stage {epochs}")
    unknown = [o for o in cfg.get("dropout_ops", []) if o not in space]
    if unknown:
        log.warning("dropout_ops %s are not in space '%s' (no effect)", unknown, cfg["space"])
    return stages


def dropout_at(p0: float, decay: float, epoch: int, warmup_epochs: int, epochs: int) -> float:
    """Operation-level dropout rate in (0-based) `epoch` of a stage of `epochs` epochs.

    The paper says only that the rate "is decayed exponentially" from p0. This is the schedule of
    the P-DARTS reference code (chenxin061/pdarts train_search.py), which the paper follows:
    during the weight-only warm-up the rate falls linearly, p0 * (epochs - epoch - 1) / epochs;
    when the alphas start training it restarts at p0 and decays exponentially,
    p0 * exp(-decay * (epoch - warmup_epochs)) (the reference's scale factor is 0.2). So the alpha
    phase begins with the full rate, which is what the dropout is for: it keeps the parameter-free
    and cheap ops from winning the alphas early.
    """
    if epoch < warmup_epochs:
        return float(p0) * (epochs - epoch - 1) / epochs
    return float(p0) * math.exp(-float(decay) * (epoch - warmup_epochs))


def alpha_batch_stream(valid_batches: Callable[[int], Iterable], epoch: int) -> Iterator:
    """The alpha half's batches for `epoch`, one pass after another, for as long as the weight
    half lasts. Each batch is made when it is asked for and dropped after its step: at most the
    current batch is held (itertools.cycle would keep every batch of the pass, the whole alpha
    half at AISHELL scale). A new pass restarts valid_batches(epoch), as the reference restarts
    its valid-queue iterator."""
    while True:
        produced = False
        for batch in valid_batches(epoch):
            produced = True
            yield batch
        if not produced:
            raise ValueError(f"epoch {epoch + 1}: the alpha half gives no batch (fix: more "
                             "training utterances or a smaller batch_size)")


def op_dropout_map(dropout_ops: Sequence[str], p: float) -> Dict[str, float]:
    return {name: p for name in dropout_ops}


def alpha_entropy(model) -> Dict[str, List[float]]:
    """Entropy (nats) of each edge's op weights. High: undecided; near 0: one op dominates."""
    out = {}
    for cell, w in zip(("normal", "reduce"), model.alpha_softmax()):
        w = w.detach().double()
        out[cell] = (-(w * torch.log(w.clamp_min(1e-30))).sum(-1)).tolist()
    return out


def op_counts(genotype: Genotype) -> Dict[str, Dict[str, int]]:
    out = {}
    for cell in ("normal", "reduce"):
        counts: Dict[str, int] = {}
        for op, _ in getattr(genotype, cell):
            counts[op] = counts.get(op, 0) + 1
        out[cell] = counts
    return out


def collapse_signs(model, genotype: Genotype) -> List[str]:
    """Messages for the collapses the paper warns of: an all-pooling normal cell, and edges whose
    strongest op is `none` (the supernet learning to cut itself off)."""
    signs = []
    normal_ops = [op for op, _ in genotype.normal]
    if all(op in POOLING_OPS for op in normal_ops):
        signs.append(f"normal cell is all pooling ({', '.join(normal_ops)})")
    for cell, w in zip(("normal", "reduce"), model.alpha_softmax()):
        ops = model.edge_ops[cell]
        top_none = sum(1 for e, row in enumerate(w.tolist())
                       if ops[e][max(range(len(row)), key=row.__getitem__)] == "none")
        if top_none * 2 > len(ops):
            signs.append(f"{cell} cell: `none` is the strongest op on {top_none}/{len(ops)} edges")
    return signs


def plot_health(history: Sequence[Mapping], path) -> None:
    """PNG of search health per epoch: alpha entropy per edge (normal, reduce), count of each op in
    the current genotype, validation loss; stage boundaries as vertical lines."""
    from nasr.utils.plot import pyplot, save_figure

    if not history:
        return
    x = list(range(1, len(history) + 1))
    fig, axes = pyplot().subplots(4, 1, figsize=(9, 13), sharex=True)
    for ax, cell in zip(axes[:2], ("normal", "reduce")):
        n_edges = len(history[0]["entropy"][cell])
        for e in range(n_edges):
            ax.plot(x, [h["entropy"][cell][e] for h in history], lw=0.8)
        ax.set_ylabel("entropy (nats)")
        ax.set_title(f"alpha entropy per edge, {cell} cell")
    ops = sorted({op for h in history for c in h["op_counts"].values() for op in c})
    for op in ops:
        axes[2].plot(x, [h["op_counts"]["normal"].get(op, 0) for h in history], label=f"{op}")
        axes[2].plot(x, [h["op_counts"]["reduce"].get(op, 0) for h in history], ls=":",
                     color=axes[2].lines[-1].get_color())
    axes[2].set_title("ops in the current genotype (solid: normal, dotted: reduce)")
    axes[2].legend(fontsize=7, ncol=2)
    axes[3].plot(x, [h["valid_loss"] for h in history], marker="o")
    axes[3].set_title("validation loss")
    axes[3].set_xlabel("epoch (all stages)")
    for i in range(1, len(history)):
        if history[i]["stage"] != history[i - 1]["stage"]:
            for ax in axes:
                ax.axvline(i + 0.5, color="grey", ls="--", lw=0.8)
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


BuildNetwork = Callable[[int, object, Dict[str, float]], torch.nn.Module]


def run_pdarts(cfg: Mapping, build_network: BuildNetwork, train_batches: Callable[[int], Iterable],
               valid_batches: Callable[[int], Iterable], loss_fn: Callable,
               valid_loss: Callable[[torch.nn.Module], float], exp_dir, device,
               resume: bool = True, penalty: Callable | None = None, scaler=None,
               arch_loss_fn: Optional[Callable] = None) -> Dict:
    """Run every stage; return {"genotype", "valid_loss", "history", "search_seconds"}.

    build_network(layers, op_names, op_dropout) makes a SearchNetwork (on `device`);
    train_batches(epoch) / valid_batches(epoch) give one epoch of batches (weights / alphas halves);
    loss_fn(model, batch) is the training loss; valid_loss(model) the held-out loss after an epoch.
    Writes exp_dir/stage-N/{epoch-E.pt, genotype-E.json, result.json}, exp_dir/health.json and
    health.png. With `resume`, finished stages are read back and a stage restarts from its newest
    epoch checkpoint. `penalty(model)` (e.g. nasr.nas.cost.CostPenalty) is added to every stage's
    alpha loss; its expected and derived cost go into each epoch's record. `scaler` (a GradScaler,
    with fp16 autocast) scales the weight step; `arch_loss_fn` is the alpha step's loss (default
    `loss_fn`; see nasr.nas.architect.alpha_step_amp). Every epoch records and logs the share of
    its time spent waiting for batches of either half.
    """
    exp = Path(exp_dir)
    stages = parse_stages(cfg)
    space = cfg["space"]
    o, a = cfg["optim"], cfg["arch"]
    epochs, warm = int(cfg["epochs_per_stage"]), int(cfg["warmup_epochs"])
    caps_n, caps_r = dict(cfg.get("max_ops_normal") or {}), dict(cfg.get("max_ops_reduce") or {})
    op_names: object = get_space(space)
    history: List[Dict] = []
    search_seconds = 0.0
    genotype = None
    last_valid = float("nan")
    model = None  # the last stage trained in this run (None when every stage was done before)
    for s, stage in enumerate(stages, 1):
        sdir = exp / f"stage-{s}"
        result_path = sdir / "result.json"
        if resume and result_path.is_file():
            r = read_json(result_path)
            history.extend(r["history"])
            search_seconds += r["seconds"]
            op_names, last_valid = r["next_op_names"], r["valid_loss"]
            genotype = Genotype.from_dict(r["genotype"])
            log.info("stage %d: done before (%s), skipped", s, result_path)
            continue
        model = build_network(stage.layers, op_names,
                              op_dropout_map(cfg["dropout_ops"], stage.dropout))
        n_ops = len(model.edge_ops["normal"][0])
        if n_ops != stage.ops_per_edge:
            raise ValueError(f"stage {s}: edges hold {n_ops} ops but the config says {stage.ops_per_edge}")
        w_opt = torch.optim.SGD(model.weight_parameters(), lr=o["lr"], momentum=o["momentum"],
                                weight_decay=o["weight_decay"])
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, epochs, eta_min=o.get("lr_min", 0.0))
        architect = Architect(model, arch_loss_fn or loss_fn, lr=a["lr"], betas=tuple(a["betas"]),
                              weight_decay=a["weight_decay"], unrolled=a["unrolled"],
                              w_momentum=o["momentum"], w_weight_decay=o["weight_decay"], penalty=penalty)
        start, stage_hist, stage_seconds = 0, [], 0.0
        ckpt = latest_checkpoint(sdir) if resume else None
        if ckpt is not None:
            st = load_checkpoint(ckpt)
            load_model_state(model, st, ckpt)
            w_opt.load_state_dict(st["w_optimizer"])
            sched.load_state_dict(st["scheduler"])
            architect.load_state_dict(st["architect"])
            if scaler is not None and st.get("scaler"):
                scaler.load_state_dict(st["scaler"])
            start, stage_hist, stage_seconds = st["epoch"], st["history"], st["seconds"]
            if "rng" in st:
                restore_rng_states(st["rng"])
            log.info("stage %d: resumed from %s", s, ckpt)
        log.info("stage %d/%d: %d cells, %d ops per edge, C=%s, op dropout %.3f on %s", s, len(stages),
                 stage.layers, n_ops, cfg.get("model", {}).get("C"), stage.dropout,
                 ",".join(cfg["dropout_ops"]))
        for epoch in range(start, epochs):
            t0 = time.time()
            p = dropout_at(stage.dropout, cfg["dropout_decay"], epoch, warm, epochs)
            model.set_op_dropout(op_dropout_map(cfg["dropout_ops"], p))
            lr = sched.get_last_lr()[0]
            search_alphas = epoch >= warm
            model.train()
            tot, n = 0.0, 0
            valid_iter = alpha_batch_stream(valid_batches, epoch) if search_alphas else None
            clock = WaitClock()
            for batch in train_batches(epoch):
                if search_alphas:
                    alpha_batch = next(valid_iter)
                clock.ready()
                if search_alphas:
                    architect.step(batch, alpha_batch, lr, w_opt)
                loss = loss_fn(model, batch)
                w_opt.zero_grad(set_to_none=True)
                backward_step(loss, w_opt, scaler, model.weight_parameters(), o["grad_clip"])
                tot += float(loss.detach())
                n += 1
                clock.done()
            if valid_iter is not None:
                valid_iter.close()  # ends the pass under way (and its loader's workers) now
            sched.step()
            vloss = float(valid_loss(model))
            genotype = model.genotype(space, max_ops=caps_n, max_ops_reduce=caps_r)
            stage_seconds += time.time() - t0
            rec = {"stage": s, "epoch": epoch + 1, "lr": lr, "op_dropout": p,
                   "alphas_trained": search_alphas, "train_loss": tot / max(n, 1),
                   "data_wait_frac": clock.fraction,
                   "valid_loss": vloss, "entropy": alpha_entropy(model),
                   "op_counts": op_counts(genotype), "seconds": time.time() - t0}
            if penalty is not None and hasattr(penalty, "summary"):
                rec["cost"] = penalty.summary(model)
            stage_hist.append(rec)
            genotype.save(sdir / f"genotype-{epoch + 1}.json")
            ent = rec["entropy"]
            log.info("stage %d epoch %d/%d%s: lr %.5f drop %.3f | train %.4f valid %.4f | entropy "
                     "normal %.3f reduce %.3f | normal %s | reduce %s | %.1f s (data wait %.0f%%)", s, epoch + 1,
                     epochs,
                     "" if search_alphas else " (weights only)", lr, p, rec["train_loss"], vloss,
                     sum(ent["normal"]) / len(ent["normal"]), sum(ent["reduce"]) / len(ent["reduce"]),
                     rec["op_counts"]["normal"], rec["op_counts"]["reduce"], rec["seconds"],
                     100 * rec["data_wait_frac"])
            for sign in collapse_signs(model, genotype):
                log.warning("stage %d epoch %d: possible collapse: %s", s, epoch + 1, sign)
            save_checkpoint(sdir / f"epoch-{epoch + 1}.pt", {
                "model": model.state_dict(), "w_optimizer": w_opt.state_dict(),
                "scheduler": sched.state_dict(), "architect": architect.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "epoch": epoch + 1, "history": stage_hist, "seconds": stage_seconds, "rng": rng_states()})
            plot_health(history + stage_hist, exp / "health.png")
        history.extend(stage_hist)
        search_seconds += stage_seconds
        last_valid = stage_hist[-1]["valid_loss"] if stage_hist else float("nan")
        if s < len(stages):
            next_ops = model.top_ops_per_edge(stages[s].ops_per_edge,
                                              always_keep=cfg.get("always_keep") or ())
        else:
            next_ops = None
        genotype = model.genotype(space, max_ops=caps_n, max_ops_reduce=caps_r)
        write_json(result_path, {"stage": s, "layers": stage.layers, "ops_per_edge": n_ops,
                                 "valid_loss": last_valid, "seconds": stage_seconds,
                                 "genotype": genotype.to_dict(), "op_names": model.edge_ops,
                                 "next_op_names": next_ops, "history": stage_hist})
        op_names = next_ops
    write_json(exp / "health.json", history)
    plot_health(history, exp / "health.png")
    if model is not None:
        from nasr.nas.health import alpha_health, near_uniform_warning  # health imports this module

        warning = near_uniform_warning(alpha_health(model))
        if warning:
            log.warning("P-DARTS final stage: %s", warning)
    return {"genotype": genotype, "valid_loss": last_valid, "history": history,
            "search_seconds": search_seconds}


__all__ = ["DEFAULTS", "Stage", "parse_stages", "dropout_at", "alpha_batch_stream", "op_dropout_map",
           "alpha_entropy", "op_counts", "collapse_signs", "plot_health", "run_pdarts"]
