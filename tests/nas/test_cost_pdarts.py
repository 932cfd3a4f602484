"""The deployment budget in P-DARTS (issue 15, item 2): the same penalty in every stage's alpha loss
makes the derived network meet a tight parameter target that the unconstrained search exceeds."""
import copy

import pytest
import torch
import torch.nn.functional as F

from nasr.nas.cost import CostPenalty, CostTable, build_cost_table, derived_cost
from nasr.nas.pdarts import DEFAULTS, run_pdarts
from nasr.nas.search_model import SearchNetwork

# The deployed network: 5 cells of C=4 on 3x16x8 inputs, 6 classes (a classifier head: the stage
# loop does not care what the loss is).
NET = {"in_channels": 3, "input_size": [16, 8], "num_classes": 6, "C": 4, "layers": 5, "reduction": "thirds",
       "steps": 4, "multiplier": 4, "stem_multiplier": 3, "stem_stride": 1, "head": "classifier"}


pytestmark = pytest.mark.usefixtures("one_thread")


def cfg():
    c = copy.deepcopy(DEFAULTS)
    c["stages"] = [{"layers": 3, "ops_per_edge": 8, "dropout": 0.1}, {"layers": 4, "ops_per_edge": 4, "dropout": 0.1}]
    c.update(epochs_per_stage=2, warmup_epochs=0, model={"C": 4})
    c["arch"] = dict(c["arch"], lr=0.1)
    return c


def search(tmp_path, penalty):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(4, 3, 16, 8, generator=g), torch.randint(0, 6, (4,), generator=g)) for _ in range(6)]
    train, valid = data[:3], data[3:]

    def build(layers, op_names, op_dropout):
        return SearchNetwork(3, 6, 4, layers, op_names, reduction="thirds", op_dropout=op_dropout)

    def loss_fn(model, batch):
        return F.cross_entropy(model(batch[0]), batch[1])

    return run_pdarts(cfg(), build, lambda e: train, lambda e: valid, loss_fn, lambda m: 0.0, tmp_path,
                      torch.device("cpu"), penalty=penalty)


def test_pdarts_with_a_tight_parameter_target_derives_a_network_within_it(tmp_path):
    table = CostTable(build_cost_table("asr_revised", NET, devices=[]))
    target = 1.15 * table.fixed_cost("params")  # every edge a pooling op is the floor
    c = cfg()
    penalty = CostPenalty(table, "params", target, 10.0, "asr_revised", max_ops=c["max_ops_normal"],
                          max_ops_reduce=c["max_ops_reduce"])
    free = derived_cost(table, search(tmp_path / "free", None)["genotype"], "params")
    r = search(tmp_path / "budget", penalty)
    constrained = derived_cost(table, r["genotype"], "params")
    print(f"target {target:.0f}: unconstrained {free:.0f}, constrained {constrained:.0f}")
    assert free > 1.10 * target
    assert constrained <= 1.10 * target
    assert [h["cost"]["target"] for h in r["history"]] == [target] * 4
    assert r["history"][-1]["cost"]["derived"] == constrained
