import copy
import math

import pytest
import torch

from nasr.data.asr_dataset import AsrBatch
from nasr.nas.genotype import Genotype
from nasr.nas.pdarts import (DEFAULTS, alpha_entropy, dropout_at, op_counts, parse_stages,
                             run_pdarts)
from nasr.nas.search_model import SearchNetwork
from nasr.train.ctc import batch_ctc_loss


def tiny_cfg(**kw):
    cfg = copy.deepcopy(DEFAULTS)
    cfg["stages"] = [{"layers": 3, "ops_per_edge": 8, "dropout": 0.1},
                     {"layers": 4, "ops_per_edge": 5, "dropout": 0.1},
                     {"layers": 5, "ops_per_edge": 3, "dropout": 0.1}]
    cfg["epochs_per_stage"] = 3
    cfg["warmup_epochs"] = 1
    cfg["model"] = {"C": 4}
    cfg.update(kw)
    return cfg


def test_paper_defaults():
    st = parse_stages(DEFAULTS)
    assert [s.layers for s in st] == [5, 11, 17]
    assert [s.ops_per_edge for s in st] == [8, 5, 3]
    assert [s.dropout for s in st] == [0.1, 0.1, 0.1]
    assert DEFAULTS["epochs_per_stage"] == 15 and DEFAULTS["warmup_epochs"] == 6
    assert DEFAULTS["optim"]["lr"] == 0.01 and DEFAULTS["optim"]["lr_min"] == 0.0
    assert DEFAULTS["max_ops_normal"] == {"avg_pool_3x3": 2}


@pytest.mark.parametrize("bad, msg", [
    ({"stages": [{"layers": 5, "ops_per_edge": 6, "dropout": 0.1}]}, "all 8 ops"),
    ({"stages": [{"layers": 5, "ops_per_edge": 8, "dropout": 0.1},
                 {"layers": 8, "ops_per_edge": 9, "dropout": 0.1}]}, "never more"),
    ({"stages": [{"layers": 5, "ops_per_edge": 8, "dropout": 1.5}]}, "dropout"),
    ({"stages": [{"layers": 5, "ops_per_edge": 8}]}, "lacks dropout"),
    ({"warmup_epochs": 20}, "warmup_epochs"),
])
def test_bad_stage_configs(bad, msg):
    cfg = copy.deepcopy(DEFAULTS)
    cfg.update(bad)
    with pytest.raises(ValueError, match=msg):
        parse_stages(cfg)


def test_dropout_decays_exponentially_from_initial_rate():
    rates = [dropout_at(0.1, 0.2, e) for e in range(15)]
    assert rates[0] == pytest.approx(0.1)
    assert all(b < a for a, b in zip(rates, rates[1:]))
    assert rates[5] / rates[0] == pytest.approx(math.exp(-1.0))


def _batches(n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        x = torch.randn(2, 3, 16, 8, generator=g)
        out.append(AsrBatch(x, torch.tensor([16, 13]), torch.randint(1, 6, (4,), generator=g),
                            torch.tensor([2, 2])))
    return out


def _build(layers, op_names, op_dropout):
    return SearchNetwork(3, 6, 4, layers, op_names, reduction="thirds", head="ctc", freq_dim=8,
                         op_dropout=op_dropout)


def test_three_stages_shrink_ops_grow_depth_and_cap_avg_pool(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_cfg()
    train, valid = _batches(2, 0), _batches(2, 1)
    built = []

    def build(layers, op_names, op_dropout):
        net = _build(layers, op_names, op_dropout)
        built.append(net)
        return net

    # bias the alphas towards avg pooling so the cap has something to do
    def loss_fn(model, batch):
        loss = batch_ctc_loss(model, batch)
        col = [i for i, ops in enumerate(model.edge_ops["normal"][0]) if ops == "avg_pool_3x3"]
        if col:
            loss = loss - 5.0 * model.alphas_normal[:, col[0]].sum()
        return loss

    def vloss(model):
        with torch.no_grad():
            model.eval()
            return float(sum(batch_ctc_loss(model, b) for b in valid) / len(valid))

    r = run_pdarts(cfg, build, lambda e: train, lambda e: valid, loss_fn, vloss, tmp_path,
                   torch.device("cpu"))
    assert [len(n.cells) for n in built] == [3, 4, 5]
    assert [len(n.edge_ops["normal"][0]) for n in built] == [8, 5, 3]
    assert [len(n.edge_ops["reduce"][0]) for n in built] == [8, 5, 3]
    # alpha ranking: stage 2's ops on an edge are stage 1's strongest ones
    w1 = built[0].alpha_softmax()[0][0].tolist()
    ranked = sorted(range(8), key=lambda i: -w1[i])[:5]
    assert set(built[1].edge_ops["normal"][0]) == {built[0].edge_ops["normal"][0][i] for i in ranked}
    g = r["genotype"]
    assert isinstance(g, Genotype)
    assert sum(op == "avg_pool_3x3" for op, _ in g.normal) <= 2
    assert len(r["history"]) == 9
    # the first epoch of each stage trains weights only; dropout decays within a stage
    assert [h["alphas_trained"] for h in r["history"][:3]] == [False, True, True]
    assert r["history"][0]["op_dropout"] == pytest.approx(0.1)
    assert r["history"][2]["op_dropout"] < r["history"][1]["op_dropout"] < 0.1
    for h in r["history"]:
        assert len(h["entropy"]["normal"]) == 14
        assert sum(h["op_counts"]["normal"].values()) == 8
    assert (tmp_path / "health.png").stat().st_size > 1000
    assert (tmp_path / "stage-3" / "result.json").is_file()
    # a second run resumes every finished stage and rebuilds nothing
    built.clear()
    r2 = run_pdarts(cfg, build, lambda e: train, lambda e: valid, loss_fn, vloss, tmp_path,
                    torch.device("cpu"))
    assert built == [] and r2["genotype"].to_dict() == g.to_dict()


def test_op_dropout_only_on_named_ops():
    net = _build(3, ["none", "avg_pool_3x3", "sep_conv_3x3", "dil_sep_conv_3x3", "max_pool_3x3",
                     "sep_conv_5x5", "dil_sep_conv_5x5", "conv_7x1_1x7"],
                 {"avg_pool_3x3": 0.1, "dil_sep_conv_3x3": 0.1, "dil_sep_conv_5x5": 0.1})
    edge = net.cells[0].edges[0]
    assert edge.op_dropout == {"avg_pool_3x3": 0.1, "dil_sep_conv_3x3": 0.1, "dil_sep_conv_5x5": 0.1}


def test_entropy_and_counts():
    net = _build(3, ["none", "max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5",
                     "dil_sep_conv_3x3", "dil_sep_conv_5x5", "conv_7x1_1x7"], {})
    with torch.no_grad():
        net.alphas_normal.zero_()
    ent = alpha_entropy(net)
    assert ent["normal"][0] == pytest.approx(math.log(8))
    g = net.genotype("asr_revised")
    assert sum(op_counts(g)["reduce"].values()) == 8


def test_search_ending_with_uniform_alphas_warns(tmp_path, caplog):
    torch.manual_seed(0)
    # one weights-only epoch: the alphas keep their near-uniform initial values
    cfg = tiny_cfg(stages=[{"layers": 3, "ops_per_edge": 8, "dropout": 0.0}], epochs_per_stage=1,
                   warmup_epochs=1)
    train, valid = _batches(1, 0), _batches(1, 1)

    def vloss(model):
        return 0.0

    with caplog.at_level("WARNING", logger="nasr"):
        run_pdarts(cfg, _build, lambda e: train, lambda e: valid, batch_ctc_loss, vloss, tmp_path,
                   torch.device("cpu"))
    assert "alphas end near uniform" in caplog.text and "read off noise" in caplog.text
