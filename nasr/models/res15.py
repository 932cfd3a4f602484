"""Res15: the deep residual KWS network of Tang & Lin (2018), the regular-convolution baseline of
the DARTS-KWS paper.

Layout (as in the authors' honk code): one 3x3 conv to 45 maps, then 13 dilated 3x3 convs whose
dilation grows as 2**floor(i/3), a residual connection closing every second conv (6 blocks; the
13th conv follows the last block without a shortcut), ReLU before
and batch norm *without* affine parameters after each conv, global average pooling and one linear
layer.  Padding equals the dilation so every conv keeps the T x F size of the input; the growing
dilation gives a receptive field that covers the whole 1 s utterance without pooling.

Size at 12 classes: 237,882 parameters (paper: 238K).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn


class Res15(nn.Module):
    """Res15 keyword classifier.

    Input: (N, in_channels, T, F) features, e.g. (N, 1, 101, 40) MFCC.
    Output: ``(logits, None)`` -- nasr models all return ``(logits, aux_logits_or_None)`` so the
    training loop can call ``logits, aux = model(x)`` whatever the network.
    """

    def __init__(self, num_classes: int = 12, in_channels: int = 1, channels: int = 45,
                 num_layers: int = 13, dilation_period: int = 3):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"Res15 needs num_layers >= 1, got {num_layers}")
        self.num_classes = num_classes
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for i in range(num_layers):
            dilation = 2 ** (i // dilation_period)
            self.convs.append(nn.Conv2d(channels, channels, 3, padding=dilation,
                                        dilation=dilation, bias=False))
            # No affine: honk's Res15 relies on the following conv to rescale, and the published
            # parameter count (238K) does not include BN scales/shifts.
            self.norms.append(nn.BatchNorm2d(channels, affine=False))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if x.dim() != 4:
            raise ValueError(f"Res15 expects (N, C, T, F) input, got shape {tuple(x.shape)}")
        x = torch.relu(self.stem(x))
        shortcut = x
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms), 1):
            y = torch.relu(conv(x))
            if i % 2 == 0:  # close a residual block every second conv
                y = y + shortcut
                shortcut = y
            x = norm(y)
        x = x.mean(dim=(2, 3))
        return self.classifier(x), None
