"""Bayesian tuning alongside the search: Optuna's TPE suggests learning rate, dropout and batch size
for every candidate, and learns from the candidate's validation loss.

The study lives in the candidate store's database (Optuna's own tables beside the store's: the same
SQLite file, or the same server database), so every trainer shares one posterior and a restarted
trainer picks it up.  Because one study sees different towers, the architecture is noise to TPE:
it learns settings that suit the towers the search visits, as the paper runs tuning in parallel to
the search.

Config (the `tune:` section):
    enabled: true
    lr: [5.24e-6, 5.24e-4]        # log-uniform range; default: a decade either side of the paper's 5.24e-5
    dropout: [0.0, 0.5]           # uniform range
    batch_size: [16, 32, 64]      # choices
    startup_trials: 5             # random suggestions before TPE models the results
"""
from __future__ import annotations

import logging
from typing import Dict, Optional, Sequence, Tuple

from nasr.tower.search import PAPER_TRAIN

STUDY_NAME = "tower_search"
# lr: log-uniform over a decade either side of the paper's tuned 5.24e-5 (geometric centre = it).
DEFAULTS = {"enabled": False, "lr": [PAPER_TRAIN["lr"] / 10, PAPER_TRAIN["lr"] * 10], "dropout": [0.0, 0.5],
            "batch_size": [16, 20, 32, 64], "startup_trials": 5}


def _storage(store):
    import optuna

    # Several trainers open one SQLite file: wait for its lock rather than fail.
    kwargs = {"connect_args": {"timeout": 120}} if store.is_sqlite else {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(store.url_for_libraries(), engine_kwargs=kwargs)


class Tuner:
    def __init__(self, store, cfg: Dict, seed: Optional[int] = None):
        """`store`: the open CandidateStore whose database holds the study."""
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
        # exists", seen in CI): one at a time.
        with store.setup_lock():
            self.study = optuna.create_study(study_name=STUDY_NAME, storage=_storage(store), sampler=sampler,
                                             direction="minimize", load_if_exists=True)

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


def tuning_summary(store) -> Dict:
    """Finished trials and the best parameters, for search.json; {} when there is no study."""
    import optuna

    # Look first: loading a study would create Optuna's tables in a store without them.
    if not store.has_table("studies"):
        return {}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=_storage(store))
    except KeyError:
        return {}
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not trials:
        return {"trials": 0}
    logging.getLogger("nasr").debug("tuning: %d trials", len(trials))
    return {"trials": len(trials), "best_params": study.best_params, "best_loss": study.best_value}
