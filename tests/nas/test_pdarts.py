import copy
import math
import weakref

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


def test_dropout_restarts_at_p0_when_the_alphas_start_then_decays_exponentially():
    # The paper's stage: 15 epochs, 6 weight-only. The reference code's schedule: linear decay over
    # the warm-up, then p0 again at the first alpha epoch, exp(-0.2 per epoch) from there.
    rates = [dropout_at(0.1, 0.2, e, 6, 15) for e in range(15)]
    assert rates[0] == pytest.approx(0.1 * 14 / 15)
    assert all(b < a for a, b in zip(rates[:6], rates[1:6]))
    assert rates[6] == pytest.approx(0.1)
    assert rates[11] == pytest.approx(0.1 * math.exp(-1.0))
    assert all(b < a for a, b in zip(rates[6:], rates[7:]))
    assert rates[14] == pytest.approx(0.1 * math.exp(-1.6))   # was 0.1 * exp(-2.8) = 0.006


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
    assert all(0.0 <= h["data_wait_frac"] <= 1.0 for h in r["history"])  # logged per epoch
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
    # the first epoch of each stage trains weights only; the dropout restarts at p0 with the
    # alphas and decays from there
    assert [h["alphas_trained"] for h in r["history"][:3]] == [False, True, True]
    assert r["history"][0]["op_dropout"] == pytest.approx(0.1 * 2 / 3)
    assert r["history"][1]["op_dropout"] == pytest.approx(0.1)
    assert r["history"][2]["op_dropout"] == pytest.approx(0.1 * math.exp(-0.2))
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


def test_alpha_batches_are_streamed_not_kept(tmp_path):
    """Each alpha batch is made when the architect asks for it and freed after its step: the
    number alive at once stays at a batch or two however long the alpha half is."""
    torch.manual_seed(0)
    cfg = tiny_cfg(epochs_per_stage=1, warmup_epochs=0,
                   stages=[{"layers": 3, "ops_per_edge": 8, "dropout": 0.1}])
    alive = weakref.WeakSet()
    most_alive = []

    def fresh_valid(epoch):  # a loader: new tensors for every batch of every pass
        for i in range(6):
            b = _batches(1, 10 + i)[0]
            alive.add(b.x)
            yield b

    def loss_fn(model, batch):
        most_alive.append(len(alive))
        return batch_ctc_loss(model, batch)

    run_pdarts(cfg, _build, lambda e: _batches(9, 0), fresh_valid, loss_fn, lambda m: 0.0, tmp_path,
               torch.device("cpu"))
    assert len(most_alive) >= 9   # 9 alpha steps: a pass and a half of the alpha half
    assert max(most_alive) <= 2


def test_alpha_stream_restarts_the_pass_and_rejects_an_empty_half():
    from nasr.nas.pdarts import alpha_batch_stream

    passes = []

    def valid(epoch):
        passes.append(epoch)
        return iter([1, 2, 3])

    stream = alpha_batch_stream(valid, 4)
    assert [next(stream) for _ in range(7)] == [1, 2, 3, 1, 2, 3, 1]
    assert passes == [4, 4, 4]
    with pytest.raises(ValueError, match="no batch"):
        next(alpha_batch_stream(lambda e: iter([]), 0))
