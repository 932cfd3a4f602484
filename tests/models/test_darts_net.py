import pytest
import torch

from nasr.models.darts_net import DartsNetwork
from nasr.nas.genotype import DARTS_V2, Genotype
from nasr.nas.ops import count_parameters

KWS_GENOTYPE = Genotype(
    space="nas1",
    normal=[("sep_conv_3x3", 0), ("conv_3x3_dil2", 1), ("skip_connect", 0), ("sep_conv_5x5", 2),
            ("avg_pool_3x3", 1), ("conv_5x5_dil2", 3), ("max_pool_3x3", 0), ("sep_conv_3x3", 4)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("skip_connect", 1), ("conv_5x5_dil2", 2), ("avg_pool_3x3", 0),
            ("sep_conv_3x3", 1), ("skip_connect", 3), ("max_pool_3x3", 4), ("conv_3x3_dil2", 2)],
    reduce_concat=[2, 3, 4, 5],
)


def test_darts_v2_cifar_parameter_count_matches_darts():
    net = DartsNetwork(DARTS_V2, in_channels=3, num_classes=10, C=36, layers=20,
                       reduction="thirds", auxiliary=True)
    n = count_parameters(net)  # DARTS leaves the auxiliary head out of its count
    # DARTS's train.py prints "param size = 3.349342MB" for this network; the paper says 3.3M
    assert n == 3_349_342
    assert round(n / 1e6, 1) == 3.3
    assert count_parameters(net, exclude=None) > n
    net.eval()
    logits, aux = net(torch.randn(1, 3, 32, 32))
    assert logits.shape == (1, 10) and aux is None


def test_kws_network_on_odd_inputs_with_aux_and_drop_path():
    torch.manual_seed(0)
    net = DartsNetwork(KWS_GENOTYPE, in_channels=1, num_classes=12, C=8, layers=6,
                       reduction="every_two", auxiliary=True, drop_path_prob=0.2)
    assert [i for i, c in enumerate(net.cells) if c.reduction] == [2, 5]
    assert net.auxiliary_index == 2
    x = torch.randn(3, 1, 101, 40)
    assert net.forward_features(x).shape == (3, 4 * 32, 26, 10)
    net.train()
    logits, aux = net(x)
    assert logits.shape == (3, 12) and aux.shape == (3, 12)
    (logits.sum() + 0.4 * aux.sum()).backward()
    assert net.stem[0].weight.grad.abs().sum() > 0
    net.eval()
    logits, aux = net(x)
    assert aux is None


def test_drop_path_probability_is_settable_and_used_only_in_training():
    torch.manual_seed(0)
    net = DartsNetwork(KWS_GENOTYPE, 1, 4, C=4, layers=3, reduction="thirds")
    x = torch.randn(4, 1, 21, 10)
    net.train()
    net.drop_path_prob = 0.0
    torch.testing.assert_close(net(x)[0], net(x)[0])
    net.drop_path_prob = 0.5
    torch.manual_seed(1)
    a = net(x)[0]
    torch.manual_seed(2)
    b = net(x)[0]
    assert not torch.allclose(a, b)
    net.eval()
    torch.testing.assert_close(net(x)[0], net(x)[0])


def test_three_channel_thirds_input_and_errors():
    net = DartsNetwork(KWS_GENOTYPE, 3, 7, C=4, layers=5, reduction="thirds", freq_dim=40)
    assert net.out_freq == 10
    net.eval()
    assert net(torch.randn(2, 3, 37, 40))[0].shape == (2, 7)
    with pytest.raises(ValueError, match=r"expected input \(N, 3, T, F\)"):
        net(torch.randn(2, 1, 37, 40))
    with pytest.raises(TypeError, match="Genotype"):
        DartsNetwork(KWS_GENOTYPE.to_dict(), 3, 7, C=4, layers=5)


def test_built_by_name_from_a_genotype_file(tmp_path):
    registry = pytest.importorskip("nasr.models.registry")
    path = tmp_path / "genotype.json"
    KWS_GENOTYPE.save(path)
    net = registry.build_model({"name": "darts_net", "genotype": str(path), "num_classes": 12,
                                "C": 4, "layers": 3, "reduction": "thirds"})
    assert isinstance(net, DartsNetwork) and net.genotype == KWS_GENOTYPE


def test_stem_stride_two_halves_time_and_frequency_before_the_cells():
    import torch

    from nasr.models.darts_net import DartsNetwork
    from nasr.nas.genotype import DARTS_V2

    full = DartsNetwork(DARTS_V2, 1, 12, 4, 3, reduction="every_two", freq_dim=40)
    half = DartsNetwork(DARTS_V2, 1, 12, 4, 3, reduction="every_two", freq_dim=40, stem_stride=2)
    x = torch.randn(2, 1, 101, 40)
    assert full.forward_features(x).shape[-2:] == (51, 20)
    assert half.forward_features(x).shape[-2:] == (26, 10)
    assert half.out_freq == 10
    logits, _ = half(x)
    assert logits.shape == (2, 12)
