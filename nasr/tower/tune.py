"""Bayesian tuning alongside the search: Optuna's TPE suggests learning rate, dropout and batch size
for every candidate, and learns from the candidate's validation loss.

The study lives in the candidate store's SQLite file (Optuna's own tables beside the store's), so
every trainer shares one posterior and a restarted trainer picks it up.  Because one study sees
different towers, the architecture is noise to TPE: it learns settings that suit the towers the
search visits, as the paper runs tuning in parallel to the search.

Config (the `tune:` section):
    enabled: true
    lr: [1.0e-4, 1.0e-2]          # log-uniform range
    dropout: [0.0, 0.5]           # uniform range
    batch_size: [16, 32, 64]      # choices
    startup_trials: 5             # random suggestions before TPE models the results
"""
from __future__ import annotations

import fcntl
import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

STUDY_NAME = "tower_search"
DEFAULTS = {"enabled": False, "lr": [1.0e-4, 1.0e-2], "dropout": [0.0, 0.5], "batch_size": [16, 32, 64],
            "startup_trials": 5}


def storage_url(store_path) -> str:
    return f"sqlite:///{Path(store_path).resolve()}"


class Tuner:
    def __init__(self, store_path, cfg: Dict, seed: Optional[int] = None):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.cfg = {**DEFAULTS, **(cfg or {})}
        for key in ("lr", "dropout"):
            lo, hi = self.cfg[key]
            if not 0 <= lo < hi:
                raise ValueError(f"tune.{key}: range {self.cfg[key]} must be [low, high] with 0 <= low < high")
        sampler = optuna.samplers.TPESampler(n_startup_trials=int(self.cfg["startup_trials"]), seed=seed,
                                             constant_liar=True)  # trainers running at once spread out
        # Trainers starting together would both create Optuna's tables ("table studies already
        # exists", seen in CI): one at a time, under an exclusive lock beside the store.
        lock_path = Path(f"{store_path}.tune.lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                # Several trainers open one SQLite file: wait for its lock rather than fail.
                storage = optuna.storages.RDBStorage(storage_url(store_path),
                                                     engine_kwargs={"connect_args": {"timeout": 120}})
                self.study = optuna.create_study(study_name=STUDY_NAME, storage=storage, sampler=sampler,
                                                 direction="minimize", load_if_exists=True)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def ask(self, cand_id: int, blocks: Sequence[str]) -> Tuple[object, Dict]:
        trial = self.study.ask()
        trial.set_user_attr("candidate", int(cand_id))
        trial.set_user_attr("blocks", list(blocks))
        lo, hi = self.cfg["lr"]
        params = {"lr": trial.suggest_float("lr", float(lo), float(hi), log=True),
                  "dropout": trial.suggest_float("dropout", *map(float, self.cfg["dropout"])),
                  "batch_size": int(trial.suggest_categorical("batch_size", [int(b) for b in self.cfg["batch_size"]])),
                  "trial": trial.number}
        return trial, params

    def tell(self, trial, loss: Optional[float]) -> None:
        import optuna

        if trial is None:
            return
        if loss is None:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, float(loss))

    def best_params(self) -> Dict:
        try:
            return dict(self.study.best_params)
        except ValueError:  # no finished trial yet
            return {}


def tuning_summary(store_path) -> Dict:
    """Finished trials and the best parameters, for search.json; {} when there is no study."""
    import sqlite3

    import optuna

    # Read-only look first: loading a study would create Optuna's tables in a store without them.
    con = sqlite3.connect(f"file:{Path(store_path).resolve()}?mode=ro", uri=True)
    try:
        has_study = con.execute("SELECT 1 FROM sqlite_master WHERE name='studies'").fetchone() is not None
    finally:
        con.close()
    if not has_study:
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url(store_path))
    except KeyError:
        return {}
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not trials:
        return {"trials": 0}
    logging.getLogger("nasr").debug("tuning: %d trials", len(trials))
    return {"trials": len(trials), "best_params": study.best_params, "best_loss": study.best_value}
