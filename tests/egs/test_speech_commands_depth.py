"""Depth 12 (the KWS paper's NAS1 with 12 cells and 16 channels: 281K parameters): the shipped
config places its reduction cells so that the paper's size is reachable by a NAS1 genotype, and
run.sh --layers picks the config of that depth."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nasr.models.registry import build_model
from nasr.nas.genotype import Genotype
from nasr.nas.ops import count_parameters
from nasr.utils.config import load_config

RECIPE = Path(__file__).resolve().parents[2] / "egs" / "speech_commands"
PAPER_NAS1_L12_C16 = 281_000


def uniform_genotype(normal_op: str, reduce_op: str) -> Genotype:
    def cell(op):
        return [(op, j) for _ in range(4) for j in (0, 1)]
    return Genotype("nas1", cell(normal_op), [2, 3, 4, 5], cell(reduce_op), [2, 3, 4, 5])


def params(config: Path, genotype: Genotype, **model) -> int:
    cfg = load_config(config)["model"]
    cfg.update(genotype=genotype, num_classes=12, in_channels=1, **model)
    return count_parameters(build_model(cfg))


@pytest.mark.parametrize("space", ["nas1", "nas2"])
def test_depth_12_config_has_two_reductions(space):
    cfg = load_config(RECIPE / "conf" / f"train_{space}_l12.yaml")["model"]
    six = load_config(RECIPE / "conf" / f"train_{space}.yaml")["model"]
    assert cfg["layers"] == 12 and cfg["C"] == six["C"] == 16
    g = uniform_genotype("max_pool_3x3", "max_pool_3x3")  # in both spaces
    cfg.update(genotype=Genotype(space, g.normal, [2, 3, 4, 5], g.reduce, [2, 3, 4, 5]),
               num_classes=12, in_channels=1)
    assert build_model(cfg).reduction_cells == [4, 8]


def test_depth_12_placement_reaches_the_papers_size():
    """The lightest NAS1 cells (pools only) and cells of separable 3x3 convs bracket 281K at the
    shipped placement; a reduction after every two normal cells (4 reductions) cannot get there."""
    config = RECIPE / "conf" / "train_nas1_l12.yaml"
    lightest = uniform_genotype("max_pool_3x3", "max_pool_3x3")
    separable = uniform_genotype("sep_conv_3x3", "sep_conv_3x3")
    assert params(config, lightest) < PAPER_NAS1_L12_C16 < params(config, separable)
    assert params(config, lightest, reduction="every_two") > 2 * PAPER_NAS1_L12_C16


def test_run_sh_layers_picks_the_config_of_that_depth(tmp_path):
    work = tmp_path / "sc"
    work.mkdir()
    for name in ("run.sh", "path.sh", "cmd.sh", "conf", "local", "utils"):
        (work / name).symlink_to(RECIPE / name)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    # Stage 4 with no search output: the command it would run fails on the missing genotype, naming
    # the exp dir of the 12-cell network.
    proc = subprocess.run(["bash", "run.sh", "--layers", "12", "--stage", "4", "--stop-stage", "4"],
                          cwd=work, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "conf/train_nas1_l12.yaml" in out, out
    proc = subprocess.run(["bash", "run.sh", "--layers", "7"], cwd=work, env=env, capture_output=True, text=True)
    assert proc.returncode != 0 and "no conf/train_nas1_l7.yaml" in proc.stderr
    assert not (work / "exp" / "train_nas1_l7").exists()
