"""Every shipped step config under egs/*/conf loads under the strict rules, alone and with its
recipe's synth profile (a typo in a shipped config would otherwise fail only in a recipe run)."""
from pathlib import Path

import pytest

from nasr.bin import search, search_pdarts, train, train_ctc, tower_search
from nasr.utils.config import load_config

ROOT = Path(__file__).resolve().parents[2]
# The step that reads each config, by file-name prefix.
STEPS = {"search_": search, "pdarts_": search_pdarts, "tower_": tower_search}
CTC_RECIPES = ("aishell1", "aishell2")


def step_of(path: Path):
    for prefix, step in STEPS.items():
        if path.name.startswith(prefix):
            return step
    if path.name.startswith("train_"):
        return train_ctc if path.parent.parent.name in CTC_RECIPES else train
    return None


CONFIGS = sorted(p for p in ROOT.glob("egs/*/conf/*.yaml") if step_of(p) is not None)


def test_every_step_config_is_covered():
    names = {p.relative_to(ROOT).as_posix() for p in CONFIGS}
    assert "egs/speech_commands/conf/train_nas1.yaml" in names and len(names) >= 15


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shipped_config_loads_strictly(path):
    step = step_of(path)
    profile = path.parent / "synth.yaml"
    for prof in (None, profile if profile.is_file() else None):
        cfg = load_config(path, (), step.DEFAULTS, profile=prof, free=getattr(step, "FREE", ()), checks=step.CHECKS)
        if step is search_pdarts:
            search_pdarts.parse_stages(cfg)
