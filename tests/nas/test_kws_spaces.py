"""The KWS paper's op spaces: the dilated convolution is a regular one, NAS2 has no separable conv,
and the retired name `dil_conv_*` (DARTS's dilated separable conv) is refused with its new name."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from nasr.models.darts_net import DartsNetwork
from nasr.nas.genotype import Genotype
from nasr.nas.ops import build_op
from nasr.nas.search_model import SearchNetwork
from nasr.nas.spaces import get_space
from nasr.utils.io import FormatError

REPO = Path(__file__).resolve().parents[2]


def grouped_convs(module: nn.Module):
    return [name for name, m in module.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1]


def test_dilated_conv_of_the_kws_spaces_is_one_dense_conv_at_dilation_2():
    for name, k in (("conv_3x3_dil2", 3), ("conv_5x5_dil2", 5)):
        convs = [m for m in build_op(name, 6, 1, affine=True).modules() if isinstance(m, nn.Conv2d)]
        assert len(convs) == 1
        assert convs[0].groups == 1 and convs[0].dilation == (2, 2)
        assert convs[0].weight.shape == (6, 6, k, k)
    for space in ("nas1", "nas2"):
        assert not any(op.startswith("dil_sep_conv") for op in get_space(space))
    # DARTS's dilated separable conv stays in the DARTS-derived spaces under its own name.
    for space in ("darts", "asr_revised"):
        assert {"dil_sep_conv_3x3", "dil_sep_conv_5x5"} <= set(get_space(space))
    dil_sep = [m for m in build_op("dil_sep_conv_3x3", 6, 1, True).modules() if isinstance(m, nn.Conv2d)]
    assert [c.groups for c in dil_sep] == [6, 1] and dil_sep[0].dilation == (2, 2)


def test_nas2_supernet_and_derived_network_have_no_grouped_convolution():
    torch.manual_seed(0)
    net = SearchNetwork(1, 4, 4, 3, get_space("nas2"), reduction="thirds")
    assert net.cells and not grouped_convs(net)
    with torch.no_grad():  # make the dilated convs win every edge so that the derived net uses them
        net.alphas_normal[:, get_space("nas2").index("conv_5x5_dil2")] = 2.0
        net.alphas_reduce[:, get_space("nas2").index("conv_3x3_dil2")] = 2.0
    genotype = net.genotype("nas2")
    assert {op for op, _ in genotype.normal} == {"conv_5x5_dil2"}
    derived = DartsNetwork(genotype, 1, 4, C=4, layers=3, reduction="thirds")
    assert not grouped_convs(derived)
    assert derived(torch.randn(2, 1, 21, 10))[0].shape == (2, 4)


def test_old_dil_conv_genotype_is_refused_naming_the_new_op(tmp_path):
    old = {"space": "darts",
           "normal": [["sep_conv_3x3", 0], ["dil_conv_3x3", 1]] * 4, "normal_concat": [2, 3, 4, 5],
           "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]] * 4, "reduce_concat": [2, 3, 4, 5]}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old, indent=1))
    with pytest.raises(FormatError) as e:
        Genotype.load(path)
    msg = str(e.value)
    assert str(path) in msg and "dil_conv_3x3" in msg and "dil_sep_conv_3x3" in msg
    assert "conv_3x3_dil2" in msg  # and what the KWS spaces use instead
    with pytest.raises(ValueError, match="dil_sep_conv_5x5"):
        build_op("dil_conv_5x5", 4, 1, True)
    with pytest.raises(ValueError, match="dil_sep_conv_3x3"):  # e.g. an old P-DARTS dropout_ops list
        SearchNetwork(1, 4, 4, 2, get_space("darts"), op_dropout={"dil_conv_3x3": 0.1})


def test_shipped_genotypes_load():
    shipped = sorted(REPO.glob("egs/*/conf/**/genotype*.json"))
    assert shipped  # egs/aishell2/conf/synth_genotypes/*
    for path in shipped:
        Genotype.load(path)
