"""TC-ResNet (Choi et al. 2019, "Temporal convolution for real-time keyword spotting on mobile
devices"), the temporal-convolution baseline of the DARTS-KWS paper.

The MFCC map is read as a 1-D sequence over time whose channels are the cepstral coefficients, so
every conv is a k x 1 temporal conv (implemented as Conv1d).  That keeps the whole frequency axis in
the first layer's receptive field, which is why the network can be shallow and cheap.

TC-ResNet14-k: a 3x1 conv to 16k channels, then six residual blocks of 9x1 convs with widths
(24, 24, 32, 32, 48, 48) * k; the first block of each width halves time with stride 2 and adds a
1x1 conv + BN + ReLU projection on the shortcut.  Global average pooling over time and a linear layer.
The paper's "3x1 temporal conv" is the first layer; its released code and its parameter counts
(TC-ResNet8: 66K, TC-ResNet14-1.5: 305K) use 9x1 kernels inside the blocks.

Size at 12 classes, k=1.5, 40 coefficients: 302,964 parameters (paper: 305K).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import nn


class TemporalResidualBlock(nn.Module):
    """conv(k) -> BN -> ReLU -> conv(k) -> BN, plus shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride,
                               padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm1d(out_channels),
                nn.ReLU(inplace=True),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class TCResNet(nn.Module):
    """TC-ResNet over (N, in_channels, T, F) input; the F coefficients (times in_channels, e.g.
    static + deltas) become the conv channels.

    Output: ``(logits, None)``, the nasr calling convention ``logits, aux = model(x)``.
    """

    def __init__(self, num_classes: int = 12, num_features: int = 40, in_channels: int = 1,
                 width_mult: float = 1.5, stem_channels: int = 16,
                 block_channels: Sequence[int] = (24, 24, 32, 32, 48, 48),
                 stem_kernel: int = 3, block_kernel: int = 9):
        super().__init__()
        self.num_classes = num_classes
        self.num_features = num_features
        self.in_channels = in_channels
        widths = [int(round(c * width_mult)) for c in block_channels]
        stem_out = int(round(stem_channels * width_mult))
        # The paper's stem is bias-free and has no BN: the first block's BN follows directly.
        self.stem = nn.Conv1d(in_channels * num_features, stem_out, stem_kernel,
                              padding=stem_kernel // 2, bias=False)
        blocks = []
        prev = stem_out
        for i, width in enumerate(widths):
            # A width change starts a new stage, which also halves the time resolution.
            starts_stage = i == 0 or width != widths[i - 1]
            blocks.append(TemporalResidualBlock(prev, width, block_kernel, 2 if starts_stage else 1))
            prev = width
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(prev, num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if x.dim() != 4:
            raise ValueError(f"TCResNet expects (N, C, T, F) input, got shape {tuple(x.shape)}")
        n, c, t, f = x.shape
        if c != self.in_channels or f != self.num_features:
            raise ValueError(f"TCResNet was built for {self.in_channels} input channel(s) x "
                             f"{self.num_features} features, got input of shape {tuple(x.shape)}")
        # (N, C, T, F) -> (N, C*F, T): coefficients as channels, time as the sequence axis.
        x = x.permute(0, 1, 3, 2).reshape(n, c * f, t)
        x = self.blocks(self.stem(x))
        x = x.mean(dim=2)
        return self.classifier(x), None


def tc_resnet14(num_classes: int = 12, num_features: int = 40, in_channels: int = 1,
                width_mult: float = 1.5) -> TCResNet:
    """TC-ResNet14-k (k = width_mult; the paper's best is k = 1.5)."""
    return TCResNet(num_classes=num_classes, num_features=num_features, in_channels=in_channels,
                    width_mult=width_mult)


def tc_resnet8(num_classes: int = 12, num_features: int = 40, in_channels: int = 1,
               width_mult: float = 1.0) -> TCResNet:
    """TC-ResNet8-k: one block per width (24, 32, 48) * k."""
    return TCResNet(num_classes=num_classes, num_features=num_features, in_channels=in_channels,
                    width_mult=width_mult, block_channels=(24, 32, 48))
