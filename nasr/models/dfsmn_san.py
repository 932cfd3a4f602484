"""DFSMN-SAN: the hand-designed CTC acoustic model the P-DARTS transfer paper compares against
(You et al., ICASSP 2020: "10 DFSMN components and 2 multi-head self-attention sublayers" on
AISHELL-2, 30 and 3 on the 10k-hour set).

    frames (N, C, T, D) -> flatten C*D per frame -> stack `subsample` frames (T/4, like the searched
    network's two reductions) -> linear to `proj`
    -> num_dfsmn DFSMN components (Zhang et al. 2018), each:
           h  = ReLU(W x + b)                     hidden layer, `hidden` units
           p  = V h                               linear projection, `proj` units
           m  = p + sum_{i=1..N1} a_i * p[t - s1*i] + sum_{j=1..N2} c_j * p[t + s2*j]
                                                  bidirectional FIR memory (per-dimension taps)
           x' = x + m                             skip connection between memory blocks
       with a self-attention sublayer x' = x + MHA(LayerNorm(x)) after the components named by
       `san_positions` (default: spread evenly, the last one on top)
    -> linear to the vocabulary -> log-softmax: per-frame CTC log-probabilities.

Padding: frames at or past a sequence's length are zeroed before every memory block and hidden
from attention, so a padded batch gives the valid frames exactly what each utterance gives alone
(the look-ahead taps at the end of an utterance read zeros either way).

The defaults (hidden 1536, proj 384, memory 10 back / 10 ahead at the 40 ms frame rate, 8 heads,
120-dim input, 1434 units) come to about 14 M parameters, the paper's 14.4 M row of Table 2.
"""
from __future__ import annotations

import inspect
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(N, max_len) bool, True on valid frames."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class FirMemory(nn.Module):
    """Vectorised bidirectional FIR memory: per-dimension taps on the past (order N1, stride s1)
    and the future (order N2, stride s2), plus the current frame. Depthwise dilated convolutions
    compute the taps; the input must already be zero on padded frames."""

    def __init__(self, dim: int, lookback_order: int, lookahead_order: int, lookback_stride: int = 1,
                 lookahead_stride: int = 1):
        super().__init__()
        for name, v, lo in (("lookback_order", lookback_order, 0), ("lookahead_order", lookahead_order, 0),
                            ("lookback_stride", lookback_stride, 1), ("lookahead_stride", lookahead_stride, 1)):
            if int(v) != v or v < lo:
                raise ValueError(f"DFSMN memory: {name}={v} must be an integer >= {lo}")
        self.n1, self.n2, self.s1, self.s2 = lookback_order, lookahead_order, lookback_stride, lookahead_stride
        # Taps start at zero: a fresh memory block is the identity on p, as in the FSMN papers'
        # practice of letting the memory grow from the projection.
        self.back = nn.Parameter(torch.zeros(dim, 1, lookback_order)) if lookback_order else None
        self.ahead = nn.Parameter(torch.zeros(dim, 1, lookahead_order)) if lookahead_order else None

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        """p: (N, T, dim) -> (N, T, dim)."""
        x = p.transpose(1, 2)  # (N, dim, T) for conv1d
        out = x
        T = x.shape[-1]
        if self.back is not None:
            # output[t] = sum_k back[k] * x[t - s1*(N1 - k)], k = 0..N1-1  ->  offsets s1..s1*N1
            xb = F.pad(x, (self.n1 * self.s1, 0))[..., :T + (self.n1 - 1) * self.s1]
            out = out + F.conv1d(xb, self.back, dilation=self.s1, groups=x.shape[1])
        if self.ahead is not None:
            # output[t] = sum_k ahead[k] * x[t + s2*(k + 1)]  ->  offsets s2..s2*N2
            xa = F.pad(x, (0, self.n2 * self.s2))[..., self.s2:]
            out = out + F.conv1d(xa, self.ahead, dilation=self.s2, groups=x.shape[1])
        return out.transpose(1, 2)


class DfsmnComponent(nn.Module):
    """Hidden layer, linear projection, FIR memory; the caller adds the skip connection."""

    def __init__(self, proj: int, hidden: int, memory: dict, dropout: float):
        super().__init__()
        self.hidden = nn.Linear(proj, hidden)
        self.project = nn.Linear(hidden, proj, bias=False)
        self.memory = FirMemory(proj, **memory)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        p = self.project(self.dropout(F.relu(self.hidden(x))))
        p = p * valid.unsqueeze(-1).to(p.dtype)  # the bias made padded frames non-zero
        return self.memory(p)


class SelfAttentionSublayer(nn.Module):
    """Pre-norm multi-head self-attention with a residual; padded frames are never attended to.

    The projections are nn.MultiheadAttention's parameters (so checkpoints keep its layout), but the
    attention is computed here with reshapes over the head dimensions only: nn.MultiheadAttention's
    own forward reshapes by the batch and time sizes, which the ONNX exporter freezes at the traced
    shape, and the exported model then failed on any other length."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"DFSMN-SAN: proj={dim} is not divisible by heads={heads} "
                             f"(fix: choose proj a multiple of heads)")
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def attend(self, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(N, T, dim) -> (N, T, dim): softmax(q k^T / sqrt(d_head)) v per head, keys masked by `valid`."""
        qkv = F.linear(y, self.attn.in_proj_weight, self.attn.in_proj_bias)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=valid[:, None, None, :],
                                           dropout_p=self.attn.dropout if self.training else 0.0)
        return self.attn.out_proj(o.transpose(1, 2).flatten(2))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.attend(self.norm(x), valid))


def default_san_positions(num_dfsmn: int, num_san: int) -> List[int]:
    """1-based DFSMN indices after which a SAN sublayer sits: evenly spread, the last on top
    (10 and 2 -> [5, 10]; 30 and 3 -> [10, 20, 30])."""
    return [num_dfsmn * (k + 1) // num_san for k in range(num_san)]


class DfsmnSan(nn.Module):
    """forward(x (N, C, T, D), x_lens (N,)) -> (log_probs (N, ceil(T/subsample), vocab), out_lens)."""

    def __init__(self, vocab_size: int, in_channels: int = 3, feat_dim: int = 40, num_dfsmn: int = 10,
                 num_san: int = 2, hidden: int = 1536, proj: int = 384, lookback_order: int = 10,
                 lookahead_order: int = 10, lookback_stride: int = 1, lookahead_stride: int = 1,
                 heads: int = 8, subsample: int = 4, dropout: float = 0.1,
                 san_positions: Optional[Sequence[int]] = None):
        super().__init__()
        for name, v in (("vocab_size", vocab_size), ("in_channels", in_channels), ("feat_dim", feat_dim),
                        ("num_dfsmn", num_dfsmn), ("hidden", hidden), ("proj", proj), ("heads", heads),
                        ("subsample", subsample)):
            if int(v) != v or v < 1:
                raise ValueError(f"DFSMN-SAN: {name}={v} must be a positive integer")
        if num_san < 0:
            raise ValueError(f"DFSMN-SAN: num_san={num_san} must be >= 0")
        if san_positions is None:
            san_positions = default_san_positions(num_dfsmn, num_san) if num_san else []
        san_positions = [int(i) for i in san_positions]
        if len(san_positions) != num_san or any(not 1 <= i <= num_dfsmn for i in san_positions):
            raise ValueError(f"DFSMN-SAN: san_positions={san_positions} must list num_san={num_san} "
                             f"DFSMN indices in 1..{num_dfsmn} (fix: fix the list or leave it out)")
        self.in_channels, self.feat_dim, self.subsample = in_channels, feat_dim, subsample
        self.vocab_size = vocab_size
        memory = dict(lookback_order=lookback_order, lookahead_order=lookahead_order,
                      lookback_stride=lookback_stride, lookahead_stride=lookahead_stride)
        self.input_proj = nn.Linear(in_channels * feat_dim * subsample, proj)
        self.dfsmn = nn.ModuleList(DfsmnComponent(proj, hidden, memory, dropout) for _ in range(num_dfsmn))
        # san[str(i)] follows DFSMN component i (1-based); a ModuleDict keeps the layout readable.
        self.san = nn.ModuleDict({str(i): SelfAttentionSublayer(proj, heads, dropout) for i in san_positions})
        self.san_positions = san_positions
        self.output_norm = nn.LayerNorm(proj)
        self.output = nn.Linear(proj, vocab_size)

    def output_lengths(self, x_lens: torch.Tensor) -> torch.Tensor:
        return torch.div(x_lens + self.subsample - 1, self.subsample, rounding_mode="floor")

    def stack_frames(self, x: torch.Tensor, x_lens: torch.Tensor) -> torch.Tensor:
        """(N, C, T, D) -> (N, ceil(T/s), s*C*D), frames past each length zeroed first so that the
        last partial group holds the same zeros the utterance would get alone."""
        s, t = self.subsample, x.shape[2]
        frames = x.permute(0, 2, 1, 3).flatten(2)
        frames = frames * length_mask(x_lens, t).unsqueeze(-1).to(frames.dtype)
        # Pad s - 1 zero frames and keep whole groups, with no branch on the length and reshapes by
        # -1 and s only: a traced (ONNX) graph then holds for every length and batch size.
        frames = F.pad(frames, (0, 0, 0, s - 1))[:, :(t + s - 1) // s * s]
        return frames.unflatten(1, (-1, s)).flatten(2)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[3] != self.feat_dim:
            raise ValueError(f"DFSMN-SAN expects (N, {self.in_channels}, T, {self.feat_dim}) features, got "
                             f"{tuple(x.shape)} (fix: set in_channels/feat_dim in the model config to the "
                             f"features' deltas and bins)")
        x_lens = x_lens.to(device=x.device, dtype=torch.long)
        if x_lens.shape != (x.shape[0],) or (x_lens < 1).any() or (x_lens > x.shape[2]).any():
            raise ValueError(f"DFSMN-SAN: x_lens {x_lens.tolist()} must hold one length in 1..{x.shape[2]} "
                             f"per utterance")
        out_lens = self.output_lengths(x_lens)
        h = self.input_proj(self.stack_frames(x, x_lens))
        # The output length from the input's (not h.shape[1]): the ONNX exporter folded h's traced
        # size into a constant, and the exported mask then held only for the traced length.
        valid = length_mask(out_lens, (x.shape[2] + self.subsample - 1) // self.subsample)
        h = h * valid.unsqueeze(-1).to(h.dtype)
        for i, component in enumerate(self.dfsmn, start=1):
            h = h + component(h, valid)
            if str(i) in self.san:
                h = self.san[str(i)](h, valid)
        logits = self.output(self.output_norm(h))
        return F.log_softmax(logits.float(), dim=-1), out_lens


def build_dfsmn_san(cfg: Optional[Mapping[str, Any]] = None, **kwargs) -> DfsmnSan:
    """A DfsmnSan from a `model:` config mapping (its `name` key ignored) and/or keyword arguments;
    unknown keys are an error that lists the accepted ones."""
    settings = dict(cfg or {})
    settings.pop("name", None)
    settings.update(kwargs)
    accepted = [p for p in inspect.signature(DfsmnSan.__init__).parameters if p != "self"]
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise ValueError(f"dfsmn_san does not take {', '.join(unknown)} (it takes: {', '.join(accepted)})")
    if "vocab_size" not in settings:
        raise ValueError("dfsmn_san: vocab_size is missing (fix: set it to the number of CTC units incl. blank)")
    return DfsmnSan(**settings)


def infer_lengths(x: torch.Tensor) -> torch.Tensor:
    """Frames up to the last one that is not all zero, per utterance of (N, C, T, D) features.

    Batches are zero-padded after CMVN (nasr.data.asr_dataset.AsrCollate), and a real frame whose
    every channel and bin is exactly 0.0 after mean normalisation does not occur in practice; so
    the trailing all-zero frames are the padding. Used only when the caller gives no lengths."""
    nonzero = x.detach().ne(0).any(dim=3).any(dim=1)  # (N, T)
    t = torch.arange(1, x.shape[2] + 1, device=x.device)
    return (nonzero.long() * t).amax(dim=1).clamp(min=1)


class DfsmnSanCtc(DfsmnSan):
    """DFSMN-SAN under the registry's calling convention, as nasr.train.ctc drives every CTC model:
    ``forward(x, x_lens=None) -> (log_probs, None)`` and ``output_lengths(x_lens)``.

    Without `x_lens` the lengths are read off the zero padding (`infer_lengths`), so that padded
    frames stay masked out of the memory blocks and the attention as they are with explicit lengths."""

    takes_lengths = True  # nasr.train.ctc passes the batch's x_lens

    def forward(self, x: torch.Tensor, x_lens: Optional[torch.Tensor] = None):  # type: ignore[override]
        if x_lens is None:
            x_lens = infer_lengths(x)
        log_probs, _ = super().forward(x, x_lens)
        return log_probs, None


def build_dfsmn_san_ctc(num_classes: int, in_channels: int = 3, freq_dim: int = 40, **kwargs) -> DfsmnSanCtc:
    """Registry builder: `num_classes`/`freq_dim` (what train_ctc passes every CTC model) are
    DFSMN-SAN's vocab_size/feat_dim; the other keys are DfsmnSan's (unknown ones are an error)."""
    for alias in ("vocab_size", "feat_dim"):
        if alias in kwargs:
            raise ValueError(f"dfsmn_san: {alias} comes from the data and lang dir "
                             f"(fix: remove it from the model config)")
    accepted = [p for p in inspect.signature(DfsmnSan.__init__).parameters
                if p not in ("self", "vocab_size", "feat_dim", "in_channels")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(f"dfsmn_san does not take {', '.join(unknown)} (it takes: {', '.join(accepted)})")
    return DfsmnSanCtc(vocab_size=num_classes, in_channels=in_channels, feat_dim=freq_dim, **kwargs)
