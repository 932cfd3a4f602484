"""The per-frame CTC head of the ASR network (the paper's Fig. 1, right): no global pooling.

The cells' output (N, C_out, T/4, F_out) is read frame by frame: each of the T/4 frames is the
flattened (C_out * F_out) vector, fed through a few fully connected layers and a log-softmax over
the units (blank included). The paper replaces DARTS's average pooling with "several fully
connected layers, following with the softmax layer"; it gives no sizes, so the hidden width and
depth are constructor arguments with small defaults.

Registered in nasr.nas.ops.HEADS as "ctc", so both the search network and the evaluation network
take `head="ctc"` (they must be built with `freq_dim`, the input's feature dimension).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from nasr.nas.ops import register_head

DEFAULT_HIDDEN = 512
DEFAULT_FC_LAYERS = 2


class CtcHead(nn.Module):
    """(N, C, T', F') body output -> (N, T', num_classes) log-posteriors."""

    def __init__(self, C_out: int, F_out: Optional[int], num_classes: int,
                 hidden: int = DEFAULT_HIDDEN, fc_layers: int = DEFAULT_FC_LAYERS,
                 dropout: float = 0.0):
        super().__init__()
        if F_out is None:
            raise ValueError("the ctc head needs the body's frequency size: build the network "
                             "with freq_dim=<feature dimension> (e.g. 40)")
        if fc_layers < 1:
            raise ValueError(f"fc_layers must be >= 1, got {fc_layers}")
        self.in_dim = C_out * F_out
        layers = []
        dim = self.in_dim
        for _ in range(fc_layers - 1):
            layers += [nn.Linear(dim, hidden), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            dim = hidden
        self.fc = nn.Sequential(*layers)
        self.output = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t, f = x.shape
        if c * f != self.in_dim:
            raise ValueError(f"ctc head built for C*F = {self.in_dim}, got {c}x{f} (was freq_dim "
                             f"the input's feature dimension?)")
        # (N, C, T, F) -> (N, T, C*F): every output frame sees all channels and bins of its frame.
        frames = x.permute(0, 2, 1, 3).reshape(n, t, c * f)
        return torch.log_softmax(self.output(self.fc(frames)).float(), dim=-1)


@register_head("ctc")
def build_ctc_head(C_out: int, F_out: Optional[int], num_classes: int) -> CtcHead:
    return CtcHead(C_out, F_out, num_classes)


__all__ = ["CtcHead", "build_ctc_head", "DEFAULT_HIDDEN", "DEFAULT_FC_LAYERS"]
