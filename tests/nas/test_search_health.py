import pytest
import torch
from torch import nn

from nasr.bin import search
from nasr.nas.health import alpha_health, batch_statistics, near_uniform_warning, search_health
from nasr.nas.search_model import SearchNetwork
from nasr.nas.spaces import get_space


def tiny_supernet():
    torch.manual_seed(0)
    return SearchNetwork(1, 3, C=4, layers=2, op_names=get_space("nas1"), reduction="every_two",
                         steps=2, multiplier=2, stem_multiplier=1)


class SignNet(nn.Module):
    """Class 1 iff the normalised input is positive: right only if BatchNorm centres the batch."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(1, affine=False)

    def forward(self, x):
        z = self.bn(x).mean(dim=(1, 2, 3))
        return torch.stack([-z, z], dim=-1)


def test_supernet_is_scored_with_batch_statistics_and_running_stats_stay():
    # Features moved far from the (stale) running statistics, as a fast-changing supernet's are.
    y = torch.tensor([0, 1] * 8)
    x = 10.0 + (2 * y.float() - 1).view(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    model = SignNet()
    model.train()
    before = model.bn.running_mean.clone(), model.bn.running_var.clone()
    r = search.evaluate_supernet(model, [(x, y)], torch.device("cpu"), False)
    assert r["acc"] == 1.0  # eval mode's running statistics (mean 0, var 1) give 0.5 here
    assert torch.equal(model.bn.running_mean, before[0]) and torch.equal(model.bn.running_var, before[1])
    assert model.training and model.bn.momentum == 0.1


def test_batch_statistics_keeps_other_modules_in_eval_mode():
    model = nn.Sequential(nn.BatchNorm1d(2), nn.Dropout(0.5))
    with batch_statistics(model):
        assert model[0].training and not model[1].training
    assert model.training


def test_alpha_health_uniform_warns_and_decided_does_not():
    net = tiny_supernet()
    with torch.no_grad():
        net.alphas_normal.zero_()
        net.alphas_reduce.zero_()
    h = search_health(net, net.genotype("nas1"))
    assert h["mean_entropy_ratio"] == pytest.approx(1.0)
    assert h["uniform_weight"] == pytest.approx(1 / 8) and h["mean_top_weight"] == pytest.approx(1 / 8)
    assert sum(h["op_counts"]["normal"].values()) == 4
    assert "near uniform" in near_uniform_warning(h)
    with torch.no_grad():
        net.alphas_normal[:, 4] = 3.0
        net.alphas_reduce[:, 4] = 3.0
    h = alpha_health(net)
    assert h["mean_entropy_ratio"] < 0.8 and h["mean_top_weight"] > 0.7
    assert near_uniform_warning(h) is None


def test_masked_ops_count_against_the_ops_left():
    net = tiny_supernet()
    mask = torch.zeros_like(net.mask_normal)
    mask[:, :2] = True
    with torch.no_grad():
        net.alphas_normal.zero_()
        net.alphas_reduce.zero_()
    net.set_op_mask(normal=mask)
    h = alpha_health(net)
    assert h["entropy_ratio"]["normal"] == pytest.approx([1.0] * 5)
    assert h["top_weight"]["normal"] == pytest.approx([0.5] * 5)


def test_best_epoch_is_picked_among_epochs_that_trained_alphas():
    hist = [{"epoch": 1, "alphas_trained": False, "valid": {"acc": 0.9, "loss": 0.1}},
            {"epoch": 2, "alphas_trained": True, "valid": {"acc": 0.5, "loss": 1.0}},
            {"epoch": 3, "alphas_trained": True, "valid": {"acc": 0.6, "loss": 1.0}}]
    assert search.pick_best(hist)["epoch"] == 3


def test_alpha_half_is_augmented_only_when_configured(monkeypatch):
    calls = []
    monkeypatch.setattr(search, "make_dataset",
                        lambda dirs, labels, augment, seed, max_utts=None: calls.append((dirs, augment)) or (dirs, None))
    cfg = dict(search.DEFAULTS)
    search.make_search_datasets(["tr"], ["va"], ["a"], cfg)
    assert calls == [(["tr"], cfg["augment"]), (["va"], None), (["tr"], None)]
    calls.clear()
    search.make_search_datasets(["tr"], ["va"], ["a"], dict(cfg, augment_alpha=True))
    assert calls[1] == (["va"], cfg["augment"])
