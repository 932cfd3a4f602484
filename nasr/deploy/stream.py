"""Streaming towers: a TowerNet run frame by frame with its state carried between calls.

Every tower block is causal (nasr.tower.blocks), so a tower can run on a device as the frames come:
RNN and LSTM blocks carry their hidden (and cell) state, an SVDF block the last d-1 outputs of its
feature filter (its time filter's memory), a PROJ block nothing; the utterance-level mean the head
reads is a running sum and a frame count. After the t-th frame the logits are those of the whole
tower on the first t frames: identical to the full-utterance forward pass on them.

`StreamingTower.forward(frame, *state) -> (logits, *new_state)` is a pure function of tensors, so it
exports to ONNX as it is (nasr.bin.export writes it beside the full-utterance graph of a tower):

    state = tower.initial_state(batch)
    for frame in frames:                  # (N, F) each
        logits, *state = tower(frame, *state)

The convolutional KWS networks (DARTS cells, Res15, TC-ResNet) are not streamable this way: their
convolutions see future frames and their pooling spans the clip.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
from torch import nn

from nasr.tower.blocks import ProjBlock, RecurrentBlock, SvdfBlock
from nasr.tower.tower import TowerNet


class StreamingTower(nn.Module):
    """One frame in, the logits so far out; `members` towers averaged (an ensemble) if more than one."""

    def __init__(self, towers: Sequence[TowerNet]):
        super().__init__()
        if isinstance(towers, TowerNet):
            towers = [towers]
        self.towers = nn.ModuleList(towers)
        for t in self.towers:
            for b in t.blocks:
                if not isinstance(b, (RecurrentBlock, SvdfBlock, ProjBlock)):
                    raise TypeError(f"block {type(b).__name__} has no streaming form")

    def state_names(self) -> List[str]:
        names = []
        for m, t in enumerate(self.towers):
            for i, b in enumerate(t.blocks):
                if isinstance(b, RecurrentBlock):
                    names.append(f"m{m}_b{i}_h")
                    if isinstance(b.rnn, nn.LSTM):
                        names.append(f"m{m}_b{i}_c")
                elif isinstance(b, SvdfBlock) and b.memory > 1:
                    names.append(f"m{m}_b{i}_memory")
            names += [f"m{m}_sum"]
        return names + ["frames"]

    def initial_state(self, batch: int = 1) -> List[torch.Tensor]:
        """Zeros: no frame seen (what the full forward pass starts from)."""
        p = next(self.parameters())
        state = []
        for t in self.towers:
            for b in t.blocks:
                if isinstance(b, RecurrentBlock):
                    state.append(p.new_zeros(1, batch, b.out_dim))
                    if isinstance(b.rnn, nn.LSTM):
                        state.append(p.new_zeros(1, batch, b.out_dim))
                elif isinstance(b, SvdfBlock) and b.memory > 1:
                    state.append(p.new_zeros(batch, b.out_dim, b.memory - 1))
            state.append(p.new_zeros(batch, t.blocks[-1].out_dim))
        return state + [p.new_zeros(batch, 1)]

    def forward(self, frame: torch.Tensor, *state: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """frame (N, F), state as initial_state gives it -> (logits (N, K), *new state)."""
        state = list(state)
        new: List[torch.Tensor] = []
        k = 0
        frames = state[-1] + 1.0
        logits = None
        for t in self.towers:
            x = frame
            for b in t.blocks:
                if isinstance(b, RecurrentBlock):
                    if isinstance(b.rnn, nn.LSTM):
                        y, (h, c) = b.rnn(x.unsqueeze(1), (state[k], state[k + 1]))
                        new += [h, c]
                        k += 2
                    else:
                        y, h = b.rnn(x.unsqueeze(1), state[k])
                        new.append(h)
                        k += 1
                    x = y.squeeze(1)
                elif isinstance(b, SvdfBlock):
                    f = b.feature_filter(x).unsqueeze(-1)                        # (N, k, 1)
                    window = torch.cat([state[k], f], dim=-1) if b.memory > 1 else f
                    if b.memory > 1:
                        new.append(window[:, :, 1:])
                        k += 1
                    x = torch.relu(b.time_filter(window)).squeeze(-1)           # (N, k)
                else:  # ProjBlock: a kernel-1 convolution per frame
                    x = b.conv(x.unsqueeze(-1)).squeeze(-1)
            total = state[k] + x
            new.append(total)
            k += 1
            out = t.head(total / frames)
            logits = out if logits is None else logits + out
        return (logits / len(self.towers), *new, frames)

    @torch.no_grad()
    def run(self, feats: torch.Tensor) -> torch.Tensor:
        """Feed (N, T, F) one frame at a time; (N, T, K): the logits after every frame."""
        state = self.initial_state(feats.shape[0])
        outs = []
        for i in range(feats.shape[1]):
            logits, *state = self(feats[:, i], *state)
            outs.append(logits)
        return torch.stack(outs, dim=1)


__all__ = ["StreamingTower"]
