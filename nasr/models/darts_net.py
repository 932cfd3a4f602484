"""The evaluation network stacked from a searched genotype (DARTS's NetworkCIFAR on speech maps).

Same scaffolding as the search network (nasr.nas.ops: stem, reduction placement, named heads), but
each cell edge is the single op the genotype chose, with affine BatchNorm, and drop-path
regularises training. `forward(x)` returns ``(logits, aux_logits or None)``; the auxiliary head
(DARTS's, after the reduction cell at about 2/3 of the depth) only runs while training.
"""
from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from nasr.nas.genotype import Genotype
from nasr.nas.ops import (FactorizedReduce, Identity, ReLUConvBN, build_head, build_op, drop_path,
                          halved_lengths, make_stem, reduced_size, reduction_indices)


class Cell(nn.Module):
    """One normal or reduction cell of a genotype: node i = op(a) + op(b) over two earlier states."""

    def __init__(self, genotype: Genotype, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        # A previous reduction halved s1 but not s0: s0 must be halved here to match.
        self.preprocess0 = (FactorizedReduce(C_pp, C) if reduction_prev
                            else ReLUConvBN(C_pp, C, 1, 1, 0))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        edges = genotype.reduce if reduction else genotype.normal
        self.concat = list(genotype.reduce_concat if reduction else genotype.normal_concat)
        self.steps = len(edges) // 2
        self.multiplier = len(self.concat)
        self.op_names = [op for op, _ in edges]
        self.indices = [j for _, j in edges]
        self.ops = nn.ModuleList(
            build_op(op, C, 2 if reduction and j < 2 else 1, affine=True) for op, j in edges)
        self.drop_path_prob = 0.0

    def forward(self, s0, s1, drop_prob: Optional[float] = None):
        p = self.drop_path_prob if drop_prob is None else drop_prob
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            s = None
            for k in (2 * i, 2 * i + 1):
                op = self.ops[k]
                h = op(states[self.indices[k]])
                # DARTS drops whole paths except identities, which carry no parameters to regularise.
                if self.training and p > 0.0 and not isinstance(op, Identity):
                    h = drop_path(h, p)
                s = h if s is None else s + h
            states.append(s)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHead(nn.Module):
    """DARTS's CIFAR auxiliary classifier. DARTS pools the 8x8 map with a 5x5/3 window to 2x2;
    adaptive pooling to 2x2 gives the same shape from any (T, F), e.g. 26x10 speech maps."""

    def __init__(self, C: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((2, 2)),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def auxiliary_position(layers: int, reductions: List[int]) -> int:
    """Cell after which the auxiliary head reads: DARTS's 2*layers//3 (its second reduction cell
    under "thirds"); with other placements, the last reduction cell at or before that depth."""
    target = 2 * layers // 3
    before = [i for i in reductions if i <= target]
    return before[-1] if before else target


class DartsNetwork(nn.Module):
    def __init__(self, genotype: Genotype, in_channels: int, num_classes: int, C: int, layers: int,
                 reduction="every_two", auxiliary: bool = False, drop_path_prob: float = 0.0,
                 stem_multiplier: int = 3, stem_stride: int = 1, head: str = "classifier", freq_dim: Optional[int] = None,
                 channels_last: bool = True, auxiliary_index: Optional[int] = None):
        super().__init__()
        if not isinstance(genotype, Genotype):
            raise TypeError(f"genotype must be a Genotype (use Genotype.load(path)), got "
                            f"{type(genotype).__name__}")
        self.genotype = genotype
        self.in_channels = in_channels
        self.reduction_cells = reduction_indices(layers, reduction)
        self.drop_path_prob = drop_path_prob
        self.auxiliary_index = (auxiliary_position(layers, self.reduction_cells)
                                if auxiliary_index is None else auxiliary_index)

        C_curr = stem_multiplier * C
        self.stem = make_stem(in_channels, C_curr, stem_stride)
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        C_aux = None
        for i in range(layers):
            is_reduction = i in self.reduction_cells
            if is_reduction:
                C_curr *= 2
            cell = Cell(genotype, C_pp, C_p, C_curr, is_reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = is_reduction
            C_pp, C_p = C_p, cell.multiplier * C_curr
            if i == self.auxiliary_index:
                C_aux = C_p
        self.out_channels = C_p
        # Stride-2 stages along time (and frequency): the reduction cells, plus a stride-2 stem.
        self.time_reductions = len(self.reduction_cells) + (stem_stride == 2)
        self.out_freq = reduced_size(freq_dim, self.time_reductions)
        self.head = build_head(head, C_p, self.out_freq, num_classes)
        self.auxiliary_head = AuxiliaryHead(C_aux, num_classes) if auxiliary and C_aux else None
        # NHWC runs the depthwise/separable convs and pools ~2.5x faster on CPU.
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _body(self, x):
        if x.dim() == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, T, F), got {tuple(x.shape)}")
        s0 = s1 = self.stem(x)
        if self.channels_last:
            s0 = s1 = s0.contiguous(memory_format=torch.channels_last)
        aux_in = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.auxiliary_index:
                aux_in = s1
        return s1, aux_in

    def output_lengths(self, x_lens: torch.Tensor) -> torch.Tensor:
        """Valid output frames of each input length (the CTC head's T' = ceil(T / 2^reductions))."""
        return halved_lengths(x_lens, self.time_reductions)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._body(x)[0]

    def forward(self, x: torch.Tensor):
        features, aux_in = self._body(x)
        logits_aux = None
        if self.auxiliary_head is not None and self.training and aux_in is not None:
            logits_aux = self.auxiliary_head(aux_in)
        return self.head(features), logits_aux


__all__ = ["Cell", "AuxiliaryHead", "DartsNetwork", "auxiliary_position"]
