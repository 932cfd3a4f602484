"""Hand-designed KWS baselines: published sizes, shapes, the (logits, aux) convention, registry."""
import importlib.util

import pytest
import torch

from nasr.models.registry import MODELS, build_model
from nasr.models.res15 import Res15
from nasr.models.tc_resnet import tc_resnet8, tc_resnet14
from nasr.utils.profile import count_params


def within(value, published, rel=0.02):
    return abs(value - published) <= rel * published


def test_res15_matches_published_size():
    # Tang & Lin 2018: 238K parameters at 12 classes.
    n = count_params(Res15(num_classes=12))
    assert within(n, 238_000), n
    # 45-map stem, 13 convs 45x45x3x3, linear 45->12; BN has no affine parameters.
    assert n == 9 * 45 + 13 * 45 * 45 * 9 + 45 * 12 + 12


def test_tc_resnet14_matches_published_size():
    # Choi et al. 2019: TC-ResNet14-1.5 has 305K parameters.
    assert within(count_params(tc_resnet14(num_classes=12)), 305_000)
    # And TC-ResNet8 (k=1) has 66K: the same block code at another depth/width.
    assert within(count_params(tc_resnet8(num_classes=12)), 66_000)


@pytest.mark.parametrize("name", ["res15", "tc_resnet14"])
def test_forward_shape_and_calling_convention(name):
    torch.manual_seed(0)
    model = build_model({"name": name, "num_classes": 12})
    logits, aux = model(torch.randn(2, 1, 101, 40))
    assert logits.shape == (2, 12)
    assert aux is None
    assert torch.isfinite(logits).all()


def test_res15_keeps_resolution_and_uses_residuals():
    model = Res15(num_classes=3).eval()
    shapes = []
    for conv in model.convs:
        conv.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[2:])))
    model(torch.randn(1, 1, 101, 40))
    # Padding == dilation keeps every map at the input size.
    assert shapes == [(101, 40)] * 13
    assert [c.dilation[0] for c in model.convs] == [1, 1, 1, 2, 2, 2, 4, 4, 4, 8, 8, 8, 16]


def test_tc_resnet_reads_coefficients_as_channels():
    model = tc_resnet14(num_classes=5, num_features=40).eval()
    x = torch.randn(1, 1, 101, 40)
    # Permuting time must change the output (it is a temporal model), but the first conv must see
    # all 40 coefficients as channels.
    assert model.stem.in_channels == 40
    assert model.stem.kernel_size == (3,)
    logits, _ = model(x)
    logits_flipped, _ = model(x.flip(2))
    assert not torch.allclose(logits, logits_flipped)
    with pytest.raises(ValueError, match="40 features"):
        model(torch.randn(1, 1, 101, 13))


def test_tc_resnet_folds_input_channels_into_features():
    model = tc_resnet14(num_classes=4, num_features=40, in_channels=3)
    assert model.stem.in_channels == 120
    logits, _ = model(torch.randn(2, 3, 50, 40))
    assert logits.shape == (2, 4)


def test_registry_errors_are_clear():
    with pytest.raises(ValueError, match=r"unknown model name 'nope' \(known: .*res15.*tc_resnet14"):
        build_model({"name": "nope"})
    with pytest.raises(ValueError, match="no 'name'"):
        build_model({"num_classes": 12})
    with pytest.raises(ValueError, match="does not take widht"):
        build_model({"name": "res15", "widht": 3})
    assert {"res15", "tc_resnet14", "darts_net"} <= set(MODELS)


def test_registry_ignores_input_description():
    model = build_model({"name": "res15", "num_classes": 7, "input_size": [101, 40]})
    assert model.classifier.out_features == 7


def test_baselines_train_one_step():
    torch.manual_seed(0)
    for name in ("res15", "tc_resnet14"):
        model = build_model({"name": name, "num_classes": 3})
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(4, 1, 40, 40), torch.tensor([0, 1, 2, 0])
        before = [p.detach().clone() for p in model.parameters()]
        logits, _ = model(x)
        torch.nn.functional.cross_entropy(logits, y).backward()
        opt.step()
        changed = sum(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
        assert changed == len(before), name


darts_available = pytest.mark.skipif(
    importlib.util.find_spec("nasr.models.darts_net") is None,
    reason="nasr.models.darts_net not written yet")


@darts_available
def test_registry_builds_darts_net_from_path_dict_or_genotype(tmp_path):
    from nasr.nas.genotype import DARTS_V2, Genotype

    path = tmp_path / "g.json"
    path.write_text(DARTS_V2.to_json())
    x = torch.randn(2, 1, 16, 16)
    sizes = set()
    for spec in (str(path), DARTS_V2.to_dict(), DARTS_V2):
        model = build_model({"name": "darts_net", "genotype": spec, "in_channels": 1,
                             "num_classes": 5, "channels": 4, "layers": 3, "auxiliary": True})
        model.train()
        logits, aux = model(x)
        assert logits.shape == (2, 5) and aux is not None and aux.shape == (2, 5)
        model.eval()
        assert model(x)[1] is None
        sizes.add(count_params(model))
    assert len(sizes) == 1  # the three spellings build the same network
    assert isinstance(DARTS_V2, Genotype)
    with pytest.raises(ValueError, match="disagree"):
        build_model({"name": "darts_net", "genotype": DARTS_V2, "num_classes": 5,
                     "C": 4, "channels": 8})
    with pytest.raises(FileNotFoundError):
        build_model({"name": "darts_net", "genotype": str(tmp_path / "missing.json"),
                     "num_classes": 5, "C": 4})
