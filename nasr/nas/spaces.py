"""Named operation spaces: the candidate op list a search relaxes over, chosen by name in configs.

The order of a list is the column order of the alphas, so it is part of the format of an alpha
history; append new spaces rather than reorder existing ones.
"""
from __future__ import annotations

from typing import Dict, List

from nasr.nas.ops import OPS

OP_SPACES: Dict[str, List[str]] = {
    # DARTS (Liu et al. 2019), the original 8 primitives in DARTS's order (DARTS's dil_conv_* are
    # dilated separable convs: dil_sep_conv_* here).
    "darts": [
        "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
        "sep_conv_3x3", "sep_conv_5x5", "dil_sep_conv_3x3", "dil_sep_conv_5x5",
    ],
    # KWS paper, NAS1: "separable convolutions, dilated convolutions and pooling" plus identity and
    # zero. The paper's Table 1 (the exact list) did not survive in our copy, so NAS1 is taken from
    # its prose: DARTS's 8 primitives in DARTS's order, except that the dilated convolution is the
    # paper's, which "introduces a dilation rate (set to two in our experiments) to the regular
    # convolution" (one dilated op for both spaces among the paper's 7 candidate operations).
    "nas1": [
        "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
        "sep_conv_3x3", "sep_conv_5x5", "conv_3x3_dil2", "conv_5x5_dil2",
    ],
    # KWS paper, NAS2: NAS1 with regular convolutions in place of the separable ones (the ops Res15
    # uses), to test the search against ResNet-style models built from the same ops; it "does not
    # use any temporal convolutions or separable convolutions".
    "nas2": [
        "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
        "conv_3x3", "conv_5x5", "conv_3x3_dil2", "conv_5x5_dil2",
    ],
    # ASR paper's revised space: skip_connect (rarely chosen for ASR, destabilising) replaced by a
    # 1x7-then-7x1 convolution (large receptive field, few sequential modules).
    "asr_revised": [
        "none", "max_pool_3x3", "avg_pool_3x3",
        "sep_conv_3x3", "sep_conv_5x5", "dil_sep_conv_3x3", "dil_sep_conv_5x5", "conv_7x1_1x7",
    ],
}

# Every op of every space must be buildable; fail at import rather than mid-search.
for _space, _ops in OP_SPACES.items():
    _unknown = [o for o in _ops if o not in OPS]
    assert not _unknown, f"op space '{_space}' names unknown ops {_unknown}"


def get_space(name: str) -> List[str]:
    """The op list of space `name` (a fresh copy, safe to modify)."""
    try:
        return list(OP_SPACES[name])
    except KeyError:
        raise ValueError(f"unknown op space '{name}' (known spaces: {', '.join(OP_SPACES)})") from None
