"""Fair comparisons for the report steps: runs grouped into table rows (seeds of one model, draws
of random architectures), mean ± std with every run's figure, and the budget check that decides
whether a verdict ("searched beats baseline by x points") may be printed at all.

A run is one scored exp dir. Its row is its name without `_seedK` / `_archK` suffixes, so
`train_nas1_seed1..3` form one row and `train_random_nas1_arch1..3` another. The budget of a run
is read from what its training recorded (`config.yaml`, `train.json`), never from the recipe.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from nasr.utils.config import load_yaml
from nasr.utils.io import read_json

RUN_SUFFIX = re.compile(r"_(?:seed|arch)\d+$")
# What must be equal for two rows' figures to be compared: the examples seen (epochs over the same
# data), the augmentation, and the learning-rate schedule's shape.
BUDGET_KEYS = ("epochs", "train_data", "augment", "schedule")


def row_name(system: str) -> str:
    while RUN_SUFFIX.search(system):
        system = RUN_SUFFIX.sub("", system)
    return system


def mean_std(xs: Sequence[float]) -> Tuple[float, Optional[float]]:
    """Mean and sample standard deviation (None for one run)."""
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def run_budget(train_exp: Path) -> Dict:
    """The budget a run trained with, from its config.yaml and train.json (None where unrecorded)."""
    cfg = load_yaml(train_exp / "config.yaml") if (train_exp / "config.yaml").is_file() else {}
    info = read_json(train_exp / "train.json") if (train_exp / "train.json").is_file() else {}
    optim = cfg.get("optim") or {}
    data = info.get("train_data")
    return {"epochs": cfg.get("epochs", info.get("epochs")),
            "train_data": (sorted(Path(d).as_posix() for d in data)
                           + [f"{info.get('holdout_speakers') or 0} of the speakers held out"]) if data else None,
            # A step without an `augment` section augments nothing (data-level perturbation, as
            # speed perturbation, shows in train_data).
            "augment": cfg.get("augment", "none") if cfg else None,
            "schedule": {"optim": optim.get("name"), "decay": "cosine", "lr_min": optim.get("lr_min")}
            if optim else None}


def budget_differences(a: Dict, b: Dict) -> List[str]:
    """What differs between two budgets; an unrecorded item counts as different (cannot be checked)."""
    out = []
    for k in BUDGET_KEYS:
        if a.get(k) is None or b.get(k) is None:
            out.append(f"{k} not recorded")
        elif a[k] != b[k]:
            out.append(f"{k} {a[k]} vs {b[k]}" if k == "epochs" else f"{k} differs")
    return out


def group_runs(rows: Sequence[Dict], score: str = "acc") -> List[Dict]:
    """Rows of the table: {name, kind (searched/random/baseline), runs, scores, mean, std, budget,
    budget_mismatch (within the row)}, in the order first seen."""
    groups: Dict[str, Dict] = {}
    for r in rows:
        name = row_name(r["system"])
        g = groups.setdefault(name, {"name": name, "runs": []})
        g["runs"].append(r)
    out = []
    for g in groups.values():
        runs = sorted(g["runs"], key=lambda r: r["system"])
        first = runs[0]
        kind = ("random" if first.get("random_arch") else
                "searched" if first.get("genotype_source") or first.get("search_space") else "baseline")
        scores = [r[score] for r in runs]
        mean, std = mean_std(scores)
        budgets = [run_budget(Path(r["exp_dir"]).parent) for r in runs]
        inner = sorted({d for b in budgets[1:] for d in budget_differences(budgets[0], b)})
        out.append({**g, "runs": runs, "kind": kind, "scores": scores, "mean": mean, "std": std,
                    "budget": budgets[0], "budget_mismatch": inner})
    return out


def pm(mean: float, std: Optional[float], scale: float = 100.0, spec: str = "{:.2f}") -> str:
    return spec.format(scale * mean) + ("" if std is None else " ± " + spec.format(scale * std))


def verdicts(groups: Sequence[Dict], higher_is_better: bool = True, unit: str = "points",
             scale: float = 100.0) -> List[str]:
    """One line per searched row against every other row: the margin, or why none is stated."""
    lines = []
    for s in (g for g in groups if g["kind"] == "searched"):
        for o in (g for g in groups if g is not s):
            if o["kind"] == "random" and o["runs"][0]["random_arch"].get("space") != s["runs"][0].get("search_space"):
                continue  # random cells of another space are another search's chance level
            diffs = budget_differences(s["budget"], o["budget"]) + s["budget_mismatch"] + o["budget_mismatch"]
            if diffs:
                lines.append(f"- `{s['name']}` vs `{o['name']}`: no verdict, the budgets differ "
                             f"({'; '.join(sorted(set(diffs)))}).")
                continue
            margin = (s["mean"] - o["mean"]) * (1 if higher_is_better else -1)
            word = "beats" if margin > 0 else "trails" if margin < 0 else "ties"
            spread = "" if o["std"] is None else (
                f" ({'within' if abs(margin) <= o['std'] else 'outside'} their spread ± {scale * o['std']:.2f})")
            what = (f"the {len(o['runs'])} random architectures' mean" if o["kind"] == "random"
                    else f"`{o['name']}`")
            lines.append(f"- `{s['name']}` ({len(s['runs'])} run(s), {pm(s['mean'], s['std'], scale)}) {word} "
                         f"{what} ({len(o['runs'])} run(s), {pm(o['mean'], o['std'], scale)}) by "
                         f"{scale * abs(margin):.2f} {unit}{spread}, at equal budgets "
                         f"({s['budget']['epochs']} epochs, same data, augmentation and schedule).")
    return lines


__all__ = ["row_name", "mean_std", "run_budget", "budget_differences", "group_runs", "pm", "verdicts"]
