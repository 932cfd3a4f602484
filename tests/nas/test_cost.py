"""The cost model (issue 15, item 1): tables that price every op at every cell position, the cost of a
derived network read off them, and the supernet's expected cost, differentiable in the alphas."""
import json

import pytest
import torch

from nasr.bin import profile_ops
from nasr.models.registry import build_model
from nasr.nas.cost import CostTable, ExpectedCost, build_cost_table, derived_cost, merge_tables
from nasr.nas.random_genotype import random_genotype
from nasr.nas.search_model import SearchNetwork
from nasr.nas.spaces import get_space
from nasr.utils.cli import cli_main
from nasr.utils.io import FormatError
from nasr.utils.profile import count_macs, count_params

NET = {"in_channels": 1, "input_size": [21, 12], "num_classes": 5, "C": 4, "layers": 3,
       "reduction": "every_two", "steps": 3, "multiplier": 3, "stem_multiplier": 3, "stem_stride": 1,
       "head": "classifier"}


@pytest.fixture(scope="module")
def table():
    return CostTable(build_cost_table("nas1", NET, devices=["cpu"], repeats=2), "<test table>")


def darts_net(genotype, net=NET):
    return build_model(dict(name="darts_net", genotype=genotype, in_channels=net["in_channels"],
                            num_classes=net["num_classes"], C=net["C"], layers=net["layers"],
                            reduction=net["reduction"], stem_stride=net["stem_stride"], head=net["head"],
                            freq_dim=net["input_size"][1]))


def test_params_and_macs_of_a_derived_network_are_what_the_built_network_counts(table):
    for seed in range(4):
        g = random_genotype("nas1", steps=3, multiplier=3, seed=seed)
        model = darts_net(g)
        assert derived_cost(table, g, "params") == count_params(model)
        assert derived_cost(table, g, "macs") == count_macs(model, (1, 21, 12))
        assert derived_cost(table, g, "latency") > 0


def test_a_ctc_network_of_the_asr_space_is_priced_exactly_too():
    net = dict(NET, reduction="thirds", head="ctc", in_channels=3, num_classes=7, input_size=[30, 10])
    t = CostTable(build_cost_table("asr_revised", net, devices=[]))
    g = random_genotype("asr_revised", steps=3, multiplier=3, seed=3)
    model = darts_net(g, net)
    assert derived_cost(t, g, "params") == count_params(model)
    assert derived_cost(t, g, "macs") == count_macs(model, (3, 30, 10))
    with pytest.raises(FormatError, match="holds latencies of no devices"):
        derived_cost(t, g, "latency")


def supernet(space="nas1"):
    return SearchNetwork(1, 5, NET["C"], NET["layers"], get_space(space), steps=3, multiplier=3)


def test_expected_cost_of_peaked_alphas_is_the_derived_networks_and_has_gradients(table):
    model = supernet()
    ops = get_space("nas1")
    with torch.no_grad():
        for a in (model.alphas_normal, model.alphas_reduce):
            a.zero_()
            a[:, ops.index("sep_conv_3x3")] = 60.0
    g = model.genotype("nas1")
    assert {op for op, _ in g.normal + g.reduce} == {"sep_conv_3x3"}
    expected = ExpectedCost(table, "params")(model)
    # sep_conv's parameters do not depend on stride: every edge of a cell costs the same, so the
    # 2-of-(i+2) edge expectation is exact here.
    assert float(expected.detach()) == pytest.approx(derived_cost(table, g, "params"), rel=1e-6)
    with torch.no_grad():
        model.alphas_normal.normal_()
    e = ExpectedCost(table, "macs")(model)
    grad, = torch.autograd.grad(e, [model.alphas_normal])
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()


def test_none_is_never_priced_as_free_since_derivation_never_picks_it(table):
    model = supernet()
    ops = get_space("nas1")
    with torch.no_grad():
        model.alphas_normal.zero_()
        model.alphas_reduce.zero_()
    uniform = float(ExpectedCost(table, "params")(model).detach())
    with torch.no_grad():
        model.alphas_normal[:, ops.index("none")] = 30.0
        model.alphas_reduce[:, ops.index("none")] = 30.0
    assert float(ExpectedCost(table, "params")(model).detach()) == pytest.approx(uniform, rel=1e-6)
    assert uniform > table.fixed_cost("params")


def test_bad_tables_are_refused_naming_the_file_and_the_fix(tmp_path, table):
    path = tmp_path / "cost.json"
    data = json.loads(json.dumps(table.data))
    data["cells"][1]["edges"][2]["ops"]["dil_conv_3x3"] = data["cells"][1]["edges"][2]["ops"].pop("conv_3x3_dil2")
    path.write_text(json.dumps(data))
    with pytest.raises(FormatError, match=r"cost.json: cell 1 edge 2: op 'dil_conv_3x3' was renamed"):
        CostTable.load(path)
    with pytest.raises(FormatError, match=r"cost table does not exist \(fix: write it with python -m "
                                          r"nasr.bin.profile_ops"):
        CostTable.load(tmp_path / "none.json")
    g = random_genotype("nas2", steps=3, multiplier=3, seed=0)
    with pytest.raises(FormatError, match=r"profiled for op space 'nas1', but the genotype uses 'nas2' "
                                          r"\(fix: profile 'nas2'"):
        derived_cost(table, g, "params")
    with pytest.raises(FormatError, match=r"has no latencies measured on 'cuda' \(it has: cpu\)"):
        ExpectedCost(table, "latency", "cuda")
    with pytest.raises(FormatError, match="profiled for cells of 3 steps, but the search uses 4"):
        ExpectedCost(table, "params")(SearchNetwork(1, 5, 4, 3, get_space("nas1")))


def test_profile_ops_writes_a_table_and_adds_a_device_to_it(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cost_cpu.json"
    argv = ["--space", "nas1", "--input-size", "21x12", "--num-classes", "5", "--C", "4", "--layers", "3",
            "--steps", "3", "--multiplier", "3", "--repeats", "2", "--out", str(out)]
    assert profile_ops.main(argv) == 0
    t = CostTable.load(out)
    assert t.devices == ["cpu"] and t.network["input_size"] == [21, 12]
    assert t.data["cells"][2]["reduction"] and t.data["cells"][2]["edges"][0]["stride"] == 2
    # Another device's latencies join the same file (a fake device name stands in for cuda here).
    fake = json.loads(json.dumps(t.data).replace('"cpu"', '"cuda"'))
    merged = merge_tables(t.data, fake, str(out))
    assert sorted(merged["devices"]) == ["cpu", "cuda"]
    assert merged["cells"][0]["edges"][0]["ops"]["sep_conv_3x3"]["latency_ms"]["cuda"] == \
        t.data["cells"][0]["edges"][0]["ops"]["sep_conv_3x3"]["latency_ms"]["cpu"]
    # A table of another network at --out is refused before anything is measured.
    monkeypatch.setattr("sys.argv", ["profile_ops", *argv[:-2], "--C", "8", "--out", str(out)])
    before = out.read_bytes()
    assert cli_main(profile_ops.main, "profile_ops") == 1
    assert "holds the table of another space or network" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_the_architect_descends_a_latency_budget_and_stops_once_the_derived_network_meets_it(table):
    from nasr.nas.architect import Architect
    from nasr.nas.cost import CostPenalty

    torch.manual_seed(0)
    model = supernet()
    floor = table.fixed_cost("latency", "cpu")
    start = derived_cost(table, model.genotype("nas1"), "latency")
    target = floor + 0.3 * (start - floor)
    penalty = CostPenalty(table, "latency", target, 1.0, "nas1")
    # no data term: only the budget moves the alphas
    arch = Architect(model, lambda m, b: 0.0 * sum(a.sum() for a in m.arch_parameters()), lr=0.1, penalty=penalty)
    steps = 0
    while penalty.derived(model) > target and steps < 100:
        arch.step(None, None)
        steps += 1
    assert 0 < steps < 100 and penalty.derived(model) <= target < start
    assert penalty.last["active"] and penalty.last["derived"] > target  # the last step was still over
    before = [a.detach().clone() for a in model.arch_parameters()]
    term = penalty(model)
    assert not term.requires_grad and float(term) == 0.0 and not penalty.last["active"]
    arch.optimizer.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(model.arch_parameters(), before))
