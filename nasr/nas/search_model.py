"""The DARTS super-network: every cell edge is a softmax-weighted mixture of candidate ops.

Layout (DARTS's, on (N, C, T, F) speech features): a 3x3 conv stem, `layers` cells of which some are
reduction cells (placement by name: "every_two" for the KWS paper, "thirds" for DARTS/ASR), then a
head chosen by name. The body (`forward_features`) and the head are separate so a per-frame ASR head
plugs in where the utterance classifier sits.

Alphas are registered parameters (named ``alphas_normal`` / ``alphas_reduce``, and with PC-DARTS's
partial channels the edge weights ``betas_normal`` / ``betas_reduce``) so that `.to()`,
`state_dict()` and checkpoints carry them; the weight optimizer must therefore be given
`weight_parameters()`, never `parameters()`.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Mapping, Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from nasr.nas import sep_body
from nasr.nas.batchnorm import BatchNorm2d, batch_norm, module_batch_norm, update_running_stats
from nasr.nas.genotype import Genotype, derive_genotype, expand_edge_ops, num_edges
from nasr.nas.ops import (OPS, POOLING_OPS, FactorizedReduce, ReLUConvBN, Zero, build_head,
                          build_op, halved_lengths, make_stem, reduced_size, reduction_indices,
                          unknown_op_message)


# Parameter-name prefixes of the architecture parameters (never given to the weight optimizer).
ARCH_PREFIXES = ("alphas_", "betas_")


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channels across `groups` (ShuffleNet), so the next edge sees other channels.
    The output keeps the input's memory format: a channels-last map is shuffled as (N, T, F, C),
    since reshaping the (N, C, T, F) view would return it contiguous (NCHW), and every later op
    of the search network would then mix the two formats (their slow paths: 6x for a ReLU's
    backward)."""
    n, c, t, f = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        nhwc = x.permute(0, 2, 3, 1)
        return nhwc.view(n, t, f, groups, c // groups).transpose(3, 4).reshape(n, t, f, c).permute(0, 3, 1, 2)
    return x.view(n, groups, c // groups, t, f).transpose(1, 2).reshape(n, c, t, f)


def _leaves(module: nn.Module) -> List[nn.Module]:
    """The leaf modules of nested nn.Sequentials, in call order."""
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in _leaves(child)]
    return [module]


def _op_plan(name: str, op: nn.Module):
    """How the fused edge runs `op`: ``(takes_relu, body, bn)`` with
    ``op(x) == bn(body(relu(x) if takes_relu else x))`` (body: modules applied in order, or the
    op itself when it has a `body` method); None for `none`. A leading ReLU is the one every conv
    op of an edge shares; a trailing BatchNorm takes the op's weight as its scale."""
    if name == "none":
        return None
    if isinstance(op, FactorizedReduce):
        return (True, op, op.bn)
    leaves = _leaves(op)
    takes_relu = isinstance(leaves[0], nn.ReLU)
    bn = leaves[-1] if isinstance(leaves[-1], nn.BatchNorm2d) and len(leaves) > 1 else None
    body = leaves[int(takes_relu):len(leaves) - (bn is not None)]
    return (takes_relu, body, bn)


def scaled_batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, scale: Optional[torch.Tensor] = None,
                      update_stats: bool = True) -> torch.Tensor:
    """``scale * bn(x)`` in one pass: the scale (a 0-dim tensor, e.g. an op's softmax weight) is
    the BatchNorm's affine weight, so the weighted sum of an edge costs no extra pass over the
    op's output forward or backward; running statistics are updated exactly as `bn(x)` does.
    ``update_stats=False`` (a recomputation in backward: `recomputed_edge`) computes the same
    output and autograd graph but updates copies of the running statistics, not the module's."""
    weight, bias = bn.weight, bn.bias
    if scale is not None:
        # A materialised weight: torch 2.13's channels-last CPU BatchNorm backward reads a stride-0
        # (expanded) weight wrongly (wrong input gradients, found by tests/nas/test_fused_edges.py).
        weight = scale.expand(x.size(1)).contiguous() if weight is None else weight * scale
        bias = None if bias is None else bias * scale
    return module_batch_norm(bn, x, weight, bias, update_stats)


class MixedOp(nn.Module):
    """One cell edge: sum_k w_k * op_k(x) over the candidate ops of this edge.

    `none` contributes exactly zero, so it is never computed (its alpha still competes in the
    softmax). Ops whose weight is exactly 0 (masked by a search stage) are skipped too.
    With ``pc_k > 1`` (PC-DARTS partial channels) only the first C/pc_k channels go through the ops;
    the rest bypass the edge (max-pooled when it strides) and channels are shuffled afterwards.
    `op_dropout` {op name: p} drops elements of the named ops' outputs while training (P-DARTS's
    operation-level dropout); change it between epochs with `set_op_dropout`.

    ``fused`` (the default) computes the same sum with fewer passes over memory: the conv ops of an
    edge take one shared ReLU of the input (`accumulate`: one per input state of a cell), and each
    weight w_k is the scale of the op's final BatchNorm instead of a separate multiply. Same
    modules, parameters and state dict; ``fused=False`` is the plain per-op loop (the reference
    the tests and bench/search_step.py compare against). ``recompute_sep_convs`` (fused only)
    runs each sep_conv's body as `nasr.nas.sep_body.sep_conv_body`: it keeps one map of the op for
    backward instead of four and computes the rest again there.
    """

    def __init__(self, C: int, stride: int, op_names: Sequence[str], pc_k: int = 1,
                 op_dropout: Optional[Mapping[str, float]] = None, fused: bool = True,
                 recompute_sep_convs: bool = False):
        super().__init__()
        if pc_k < 1 or C % pc_k:
            raise ValueError(f"pc_k={pc_k} must be >= 1 and divide the channel count {C}")
        self.op_names = list(op_names)
        self.stride = stride
        self.pc_k = pc_k
        self.C_ops = C // pc_k
        self.fused = fused
        self.recompute_sep_convs = recompute_sep_convs
        self.ops = nn.ModuleList()
        for name in self.op_names:
            op = build_op(name, self.C_ops, stride, affine=False)
            if name in POOLING_OPS:
                op = nn.Sequential(op, BatchNorm2d(self.C_ops, affine=False))
            self.ops.append(op)
        # A plain list: the modules stay registered once, under `ops`.
        self._plan = [_op_plan(name, op) for name, op in zip(self.op_names, self.ops)]
        self.zero = Zero(stride)
        # ceil_mode so odd T/F agree with the ops' ceil(n/2) outputs.
        self.bypass_pool = nn.MaxPool2d(2, 2, ceil_mode=True) if pc_k > 1 and stride == 2 else None
        self.op_dropout: Dict[str, float] = {}
        self.set_op_dropout(op_dropout or {})

    def set_op_dropout(self, op_dropout: Mapping[str, float]) -> None:
        for name, p in op_dropout.items():
            if name not in OPS:  # a retired name here would silently drop no op's output
                raise ValueError(f"op dropout: {unknown_op_message(name)}")
            if not 0.0 <= p < 1.0:
                raise ValueError(f"op dropout for '{name}' must be in [0, 1), got {p}")
        self.op_dropout = {k: float(v) for k, v in op_dropout.items()}

    def pool_ops(self, active: Optional[Sequence[bool]] = None) -> List[int]:
        """Indices of the pooling ops (pool, then a non-affine BatchNorm) of this edge that run."""
        return [k for k, name in enumerate(self.op_names)
                if name in POOLING_OPS and (active is None or active[k])]

    def runs_any(self, active: Optional[Sequence[bool]] = None) -> bool:
        """Does any op of this edge run (not `none`, not masked)?"""
        return any(plan is not None and (active is None or active[k]) for k, plan in enumerate(self._plan))

    def accumulate(self, xa: torch.Tensor, relu_xa, weights: torch.Tensor,
                   active: Optional[Sequence[bool]] = None, scale: Optional[torch.Tensor] = None,
                   acc: Optional[torch.Tensor] = None, update_stats: bool = True,
                   pooled: Optional[Mapping[int, torch.Tensor]] = None) -> Optional[torch.Tensor]:
        """Add ``scale * sum_k w_k op_k(xa)`` to `acc` (in place when `acc` is given; None when no
        op runs). `xa` is the input the ops see (the first C/pc_k channels with partial channels);
        `relu_xa()` returns its ReLU, computed once by the caller for every edge that reads `xa`.
        ``update_stats=False``: the BatchNorms leave their running statistics alone (a recomputation).
        `pooled` {op index: output}: ops whose output the caller computed (`_StateInput.pool`)."""
        for k, plan in enumerate(self._plan):
            if plan is None or (active is not None and not active[k]):
                continue
            takes_relu, body, bn = plan
            w = weights[k] if scale is None else weights[k] * scale
            y = relu_xa() if takes_relu else xa
            if pooled is not None and k in pooled:
                y = pooled[k] * w
            elif isinstance(body, FactorizedReduce):
                y = body.body(y)
            elif self.recompute_sep_convs and sep_body.applies(body, y):
                y = sep_body.sep_conv_body(body, y, update_stats)
            else:
                for m in body:
                    y = m(y) if update_stats or not isinstance(m, nn.BatchNorm2d) else (
                        scaled_batch_norm(m, y, update_stats=False))
            if pooled is None or k not in pooled:
                y = scaled_batch_norm(bn, y, w, update_stats) if bn is not None else w * y
            p = self.op_dropout.get(self.op_names[k], 0.0)
            if p > 0.0 and self.training:
                y = F.dropout(y, p=p, training=True)
            # In place: no op saves its output for backward (autograd would refuse otherwise).
            acc = y if acc is None else acc.add_(y)
        return acc

    def bypass(self, x: torch.Tensor) -> torch.Tensor:
        """The channels past C/pc_k, which skip the ops (max-pooled when the edge strides)."""
        rest = x[:, self.C_ops:]
        return rest if self.bypass_pool is None else self.bypass_pool(rest)

    def forward(self, x: torch.Tensor, weights: torch.Tensor,
                active: Optional[Sequence[bool]] = None) -> torch.Tensor:
        xa = x[:, :self.C_ops] if self.pc_k > 1 else x
        if self.fused:
            relu_cache = []

            def relu_xa():
                if not relu_cache:
                    relu_cache.append(F.relu(xa))
                return relu_cache[0]

            out = self.accumulate(xa, relu_xa, weights, active)
        else:
            out = self._reference_sum(xa, weights, active)
        if out is None:  # every op is `none` or masked: the edge carries nothing
            out = self.zero(xa)
        if self.pc_k > 1:
            out = channel_shuffle(torch.cat([out, self.bypass(x)], dim=1), self.pc_k)
        return out

    def _reference_sum(self, xa, weights, active):
        """The unfused sum: every op on its own, its output multiplied by its weight."""
        out = None
        for k, (name, op) in enumerate(zip(self.op_names, self.ops)):
            if name == "none" or (active is not None and not active[k]):
                continue
            y = op(xa)
            p = self.op_dropout.get(name, 0.0)
            if p > 0.0 and self.training:
                y = F.dropout(y, p=p, training=True)
            y = weights[k] * y
            out = y if out is None else out + y
        return out


def recomputed_edge(edge: MixedOp, xa: torch.Tensor, relu_xa: torch.Tensor, weights: torch.Tensor,
                    active: Optional[Sequence[bool]], scale: Optional[torch.Tensor],
                    pooled: Optional[Mapping[int, torch.Tensor]] = None) -> torch.Tensor:
    """``edge.accumulate`` under activation checkpointing: autograd keeps only the edge's inputs
    and runs the ops again in backward, so an edge holds none of its ops' activations between the
    forward and the backward pass. The recomputation normalises with the same batch statistics
    but leaves the running statistics alone (they are updated once, in the forward pass), and
    replays the forward's random state (op dropout draws the same mask). `pooled` outputs
    (computed once per state, outside) are inputs, kept rather than recomputed."""
    calls = []
    keys = list(pooled or {})

    def run(xa, relu_xa, weights, scale, *pools):
        first = not calls
        calls.append(1)
        return edge.accumulate(xa, lambda: relu_xa, weights, active, scale, None, update_stats=first,
                               pooled=dict(zip(keys, pools)))

    return checkpoint(run, xa, relu_xa, weights, scale, *[pooled[k] for k in keys], use_reentrant=False)


def _after_relu(preprocess: nn.Module, r: torch.Tensor) -> torch.Tensor:
    """``preprocess(x)`` given ``r = relu(x)``: a cell's preprocessing op without its ReLU."""
    if isinstance(preprocess, FactorizedReduce):
        return preprocess.bn(preprocess.body(r))
    relu, conv, bn = preprocess  # ReLUConvBN
    return bn(conv(r))


class SearchCell(nn.Module):
    """A DAG of 2 inputs and `steps` nodes; every node sums MixedOps from all earlier states.

    `op_names` is one op list for every edge, or one list per edge (P-DARTS stages keep a different
    subset per edge). The output concatenates the last `multiplier` nodes.
    ``recompute_edges`` (fused edges only) recomputes each edge's ops in backward instead of
    keeping their activations (`recomputed_edge`): PC-DARTS's memory saving, taken further.
    """

    def __init__(self, steps: int, multiplier: int, C_pp: int, C_p: int, C: int, reduction: bool,
                 reduction_prev: bool, op_names, pc_k: int = 1,
                 op_dropout: Optional[Mapping[str, float]] = None, fused: bool = True,
                 recompute_edges: bool = False, recompute_sep_convs: bool = False):
        super().__init__()
        self.reduction = reduction
        self.fused = fused
        self.recompute_edges = recompute_edges and fused
        self.pc_k = pc_k
        self.C_ops = C // pc_k
        self.steps = steps
        self.multiplier = multiplier
        # A previous reduction halved s1 but not s0: s0 must be halved here to match.
        self.preprocess0 = (FactorizedReduce(C_pp, C, affine=False) if reduction_prev
                            else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False))
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        n_edges = num_edges(steps)
        if op_names and isinstance(op_names[0], str):
            edge_ops = [list(op_names)] * n_edges
        else:
            edge_ops = [list(ops) for ops in op_names]
        if len(edge_ops) != n_edges:
            raise ValueError(f"a cell of {steps} steps has {n_edges} edges, got {len(edge_ops)} op lists")
        self.edge_ops = edge_ops
        self.edges = nn.ModuleList()
        for i in range(steps):
            for j in range(i + 2):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(C, stride, edge_ops[len(self.edges)], pc_k, op_dropout, fused,
                                          recompute_sep_convs))

    def forward(self, s0, s1, weights: torch.Tensor, active: Optional[List[List[bool]]] = None,
                edge_weights: Optional[torch.Tensor] = None, relu_inputs: bool = False):
        """`edge_weights` (one per edge, PC-DARTS's normalised betas) scale each edge's output.
        ``relu_inputs``: s0 and s1 are already passed through a ReLU (both preprocessing ops start
        with one; `SearchNetwork` computes it once per cell output, which two cells read)."""
        if relu_inputs:
            states = [_after_relu(self.preprocess0, s0), _after_relu(self.preprocess1, s1)]
        else:
            states = [self.preprocess0(s0), self.preprocess1(s1)]
        node = self._fused_node if self.fused else self._reference_node
        offset = 0
        inputs = []
        for _ in range(self.steps):
            s = node(states, inputs, offset, weights, active, edge_weights)
            offset += len(states)
            states.append(s)
        return torch.cat(states[-self.multiplier:], dim=1)

    def _reference_node(self, states, inputs, offset, weights, active, edge_weights):
        """A node as the sum of its edges' outputs, every edge on its own."""
        s = None
        for j, h in enumerate(states):
            e = offset + j
            y = self.edges[e](h, weights[e], None if active is None else active[e])
            if edge_weights is not None:
                y = edge_weights[e] * y
            s = y if s is None else s + y
        return s

    def _fused_node(self, states, inputs, offset, weights, active, edge_weights):
        """The same sum, accumulated in one tensor: a state's ReLU (and with partial channels its
        op channels and pooled bypass) is computed once for every edge that reads it. With partial
        channels the edges' op parts and bypass parts are summed apart and joined, shuffled, once
        per node (concatenation and shuffle are linear, the same for every edge)."""
        while len(inputs) < len(states):
            inputs.append(_StateInput(states[len(inputs)], self.C_ops if self.pc_k > 1 else None))
        acc, rest = None, None
        recompute = self.recompute_edges and torch.is_grad_enabled()
        for j, inp in enumerate(inputs):
            e = offset + j
            edge = self.edges[e]
            beta = None if edge_weights is None else edge_weights[e]
            act = None if active is None else active[e]
            # Training: every edge reading this state gets the same normalised pool outputs.
            pooled = {k: inp.pool(edge, k) for k in edge.pool_ops(act)} if edge.training else None
            if not recompute:
                acc = edge.accumulate(inp.xa, inp.relu, weights[e], act, beta, acc, pooled=pooled)
            elif edge.runs_any(act):
                y = recomputed_edge(edge, inp.xa, inp.relu(), weights[e], act, beta, pooled)
                acc = y if acc is None else acc + y
            if self.pc_k > 1:
                r = inp.bypass(edge)
                r = r if beta is None else beta * r
                rest = r if rest is None else rest + r
        if acc is None:  # every op of every edge is `none` or masked
            acc = self.edges[offset].zero(inputs[0].xa)
        if self.pc_k > 1:
            acc = channel_shuffle(torch.cat([acc, rest], dim=1), self.pc_k)
        return acc


class _StateInput:
    """What the edges leaving one cell state read, each computed at most once: the op input `xa`
    (the first `C_ops` channels with partial channels), its ReLU, the pooled bypass, and in
    training the pooling ops' outputs: a pool has no weights and its BatchNorm (non-affine,
    batch statistics) none either, so BN(pool(xa)) is the same tensor on every edge that reads
    this state; only each edge's running statistics are its own."""

    def __init__(self, h: torch.Tensor, C_ops: Optional[int]):
        self.h = h
        if C_ops is None:
            self.xa = h
        else:
            fmt = (torch.channels_last if h.is_contiguous(memory_format=torch.channels_last)
                   else torch.contiguous_format)
            self.xa = h[:, :C_ops].contiguous(memory_format=fmt)
        self._relu = None
        self._pooled = None
        self._pools: Dict[str, tuple] = {}

    def pool(self, edge: MixedOp, k: int) -> torch.Tensor:
        """BN(pool(xa)) of `edge`'s pooling op `k` in training mode; updates that op's running
        statistics as its own BatchNorm would."""
        _, body, bn = edge._plan[k]
        name = edge.op_names[k]
        if name not in self._pools:
            y = body[0](self.xa)
            # Scratch running statistics with momentum 1: the one BatchNorm call leaves the batch
            # mean and unbiased variance in them (fp32, as BatchNorm's own, also under bf16
            # autocast), so the statistics cost no second pass over y.
            mean = torch.zeros(y.size(1), dtype=torch.float32, device=y.device)
            var = torch.ones_like(mean)
            out = batch_norm(y, mean, var, None, None, True, 1.0, bn.eps)
            self._pools[name] = (out, mean, var)
        out, mean, var = self._pools[name]
        update_running_stats(bn, mean, var)
        return out

    def relu(self) -> torch.Tensor:
        if self._relu is None:
            self._relu = F.relu(self.xa)
        return self._relu

    def bypass(self, edge: MixedOp) -> torch.Tensor:
        if edge.bypass_pool is None:
            return edge.bypass(self.h)
        if self._pooled is None:
            self._pooled = edge.bypass(self.h)
        return self._pooled


class SearchNetwork(nn.Module):
    """Stem, `layers` SearchCells sharing two alpha matrices (normal, reduce), and a named head.

    Input x is (N, in_channels, T, F); a 3-D (N, T, F) input is taken as one channel.
    `op_names` is the op list of the space, or {"normal": [ops per edge], "reduce": [...]}.
    `freq_dim` (F of the input) lets heads that need the output's frequency size (per-frame ASR
    heads) know it; the classifier head does not need it. `channels_last` keeps activations NHWC
    (faster on CPU; outputs are numerically the same). `recompute_edges` and `recompute_sep_convs`
    trade step time for memory (`SearchCell`, `MixedOp`); `recompute_sep_convs` None means on
    with partial channels (pc_k > 1), whose point is memory, and off without.
    """

    def __init__(self, in_channels: int, num_classes: int, C: int, layers: int, op_names,
                 reduction="every_two", steps: int = 4, multiplier: int = 4,
                 stem_multiplier: int = 3, stem_stride: int = 1, pc_k: int = 1, head: str = "classifier",
                 freq_dim: Optional[int] = None,
                 op_dropout: Optional[Mapping[str, float]] = None, channels_last: bool = True,
                 fused_edges: bool = True, recompute_edges: bool = False,
                 recompute_sep_convs: Optional[bool] = None):
        super().__init__()
        self._init_kwargs = dict(
            in_channels=in_channels, num_classes=num_classes, C=C, layers=layers,
            op_names=copy.deepcopy(op_names), reduction=copy.deepcopy(reduction), steps=steps,
            multiplier=multiplier, stem_multiplier=stem_multiplier, stem_stride=stem_stride, pc_k=pc_k, head=head,
            freq_dim=freq_dim, op_dropout=dict(op_dropout or {}), channels_last=channels_last,
            fused_edges=fused_edges, recompute_edges=recompute_edges,
            recompute_sep_convs=recompute_sep_convs)
        if recompute_sep_convs is None:  # PC-DARTS is the memory-saving mode: it trades time there
            recompute_sep_convs = pc_k > 1
        self.recompute_sep_convs = recompute_sep_convs
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.steps = steps
        self.multiplier = multiplier
        n_edges = num_edges(steps)
        self.edge_ops = {cell: expand_edge_ops(op_names, n_edges, cell) for cell in ("normal", "reduce")}
        self.op_names = op_names
        self.reduction_cells = reduction_indices(layers, reduction)

        C_curr = stem_multiplier * C
        self.stem = make_stem(in_channels, C_curr, stem_stride)
        C_pp, C_p, C_curr = C_curr, C_curr, C
        self.cells = nn.ModuleList()
        reduction_prev = False
        for i in range(layers):
            is_reduction = i in self.reduction_cells
            if is_reduction:
                C_curr *= 2
            cell = SearchCell(steps, multiplier, C_pp, C_p, C_curr, is_reduction, reduction_prev,
                              self.edge_ops["reduce" if is_reduction else "normal"], pc_k, op_dropout,
                              fused_edges, recompute_edges, recompute_sep_convs)
            self.cells.append(cell)
            reduction_prev = is_reduction
            C_pp, C_p = C_p, multiplier * C_curr
        self.out_channels = C_p
        # Stride-2 stages along time (and frequency): the reduction cells, plus a stride-2 stem.
        self.time_reductions = len(self.reduction_cells) + (stem_stride == 2)
        self.out_freq = reduced_size(freq_dim, self.time_reductions)
        self.head = build_head(head, C_p, self.out_freq, num_classes)

        n_ops = {cell: len(ops[0]) for cell, ops in self.edge_ops.items()}
        self.alphas_normal = nn.Parameter(1e-3 * torch.randn(n_edges, n_ops["normal"]))
        self.alphas_reduce = nn.Parameter(1e-3 * torch.randn(n_edges, n_ops["reduce"]))
        # PC-DARTS's edge normalisation: with partial channels an edge's op mixture sees only
        # 1/pc_k of the channels, so which edges a node keeps is also learned, by one beta per edge
        # (softmax over the edges into the same node); architecture parameters like the alphas.
        self.pc_k = pc_k
        if pc_k > 1:
            self.betas_normal = nn.Parameter(1e-3 * torch.randn(n_edges))
            self.betas_reduce = nn.Parameter(1e-3 * torch.randn(n_edges))
        # Ops a search stage has switched off (False); their softmax weight is exactly 0.
        self.register_buffer("mask_normal", torch.ones(n_edges, n_ops["normal"], dtype=torch.bool))
        self.register_buffer("mask_reduce", torch.ones(n_edges, n_ops["reduce"], dtype=torch.bool))
        # NHWC runs this net's many small and depthwise convs and its pools ~2.5x faster on CPU.
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    # -- parameters -----------------------------------------------------------------------------
    def arch_parameters(self) -> List[nn.Parameter]:
        """The alphas, then (PC-DARTS, pc_k > 1) the betas: what the architect optimises."""
        if self.pc_k > 1:
            return [self.alphas_normal, self.alphas_reduce, self.betas_normal, self.betas_reduce]
        return [self.alphas_normal, self.alphas_reduce]

    def weight_parameters(self) -> List[nn.Parameter]:
        return [p for _, p in self.named_weight_parameters()]

    def named_weight_parameters(self):
        return [(n, p) for n, p in self.named_parameters() if not n.startswith(ARCH_PREFIXES)]

    def alpha_softmax(self) -> List[torch.Tensor]:
        """[normal, reduce] op weights per edge (masked ops get exactly 0)."""
        return [F.softmax(a.masked_fill(~m, float("-inf")), dim=-1)
                for a, m in ((self.alphas_normal, self.mask_normal),
                             (self.alphas_reduce, self.mask_reduce))]

    def edge_weights(self) -> Optional[List[torch.Tensor]]:
        """[normal, reduce] weight of each edge: the betas, softmax over the edges into each node
        (PC-DARTS); None without partial channels (every edge weighs 1)."""
        if self.pc_k == 1:
            return None
        out = []
        for betas in (self.betas_normal, self.betas_reduce):
            per_node, start = [], 0
            for node in range(self.steps):
                per_node.append(F.softmax(betas[start:start + node + 2], dim=-1))
                start += node + 2
            out.append(torch.cat(per_node))
        return out

    def set_op_mask(self, normal: torch.Tensor | None = None, reduce: torch.Tensor | None = None):
        """Switch ops off (False) per edge; each edge must keep at least one op."""
        for name, mask in (("normal", normal), ("reduce", reduce)):
            if mask is None:
                continue
            mask = torch.as_tensor(mask, dtype=torch.bool)
            buf = getattr(self, f"mask_{name}")
            if mask.shape != buf.shape:
                raise ValueError(f"{name} op mask has shape {tuple(mask.shape)}, expected {tuple(buf.shape)}")
            if not bool(mask.any(dim=1).all()):
                raise ValueError(f"{name} op mask switches off every op of some edge")
            buf.copy_(mask)

    def set_op_dropout(self, op_dropout: Mapping[str, float]) -> None:
        """Operation-level dropout {op name: p} on every edge (e.g. decayed each epoch)."""
        for m in self.modules():
            if isinstance(m, MixedOp):
                m.set_op_dropout(op_dropout)
        self._init_kwargs["op_dropout"] = dict(op_dropout)

    def op_dropout_state(self) -> Dict[str, float]:
        return dict(self._init_kwargs["op_dropout"])

    # -- forward --------------------------------------------------------------------------------
    def output_lengths(self, x_lens: torch.Tensor) -> torch.Tensor:
        """Valid output frames of each input length (the CTC head's T' = ceil(T / 2^reductions))."""
        return halved_lengths(x_lens, self.time_reductions)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3 and self.in_channels == 1:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(f"expected input (N, {self.in_channels}, T, F), got {tuple(x.shape)}")
        w_normal, w_reduce = self.alpha_softmax()
        e_normal, e_reduce = self.edge_weights() or (None, None)
        # One host sync per cell type; lets every edge skip ops with weight exactly 0.
        act_normal, act_reduce = (w_normal != 0).tolist(), (w_reduce != 0).tolist()
        s = self.stem(x)
        if self.channels_last:
            s = s.contiguous(memory_format=torch.channels_last)
        # Every cell output is read by the next two cells' preprocessing ops, which both start with
        # a ReLU: fused cells take it computed once (one pass, and one map kept for backward,
        # fewer per cell); plain cells (the reference) each compute their own.
        fused = all(cell.fused for cell in self.cells)
        s0 = s1 = F.relu(s) if fused else s
        for i, cell in enumerate(self.cells):
            w, act, e = (w_reduce, act_reduce, e_reduce) if cell.reduction else (w_normal, act_normal, e_normal)
            s = cell(s0, s1, w, act, e, relu_inputs=fused)
            s0, s1 = s1, (F.relu(s) if fused and i + 1 < len(self.cells) else s)
        return s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    # -- search bookkeeping -----------------------------------------------------------------------
    def genotype(self, space_name: str, max_ops: Optional[Mapping[str, int]] = None,
                 max_ops_reduce: Optional[Mapping[str, int]] = None) -> Genotype:
        alphas = [a.detach().masked_fill(~m, float("-inf"))
                  for a, m in ((self.alphas_normal, self.mask_normal),
                               (self.alphas_reduce, self.mask_reduce))]
        edges = self.edge_weights()
        if edges is not None:
            edges = [e.detach() for e in edges]
        return derive_genotype(alphas[0], alphas[1], self.edge_ops, space_name, steps=self.steps,
                               multiplier=self.multiplier, max_ops=max_ops,
                               max_ops_reduce=max_ops_reduce, edge_weights=edges)

    def top_ops_per_edge(self, k: int, always_keep: Sequence[str] = ()) -> Dict[str, List[List[str]]]:
        """Per-edge op lists holding each edge's `k` strongest ops (softmax weight), for the next,
        smaller search stage (P-DARTS's search-space approximation). Ops in `always_keep` present
        on an edge are kept first. The result is a valid `op_names` for a new SearchNetwork."""
        out = {}
        for cell, weights in zip(("normal", "reduce"), self.alpha_softmax()):
            lists = []
            for ops, w in zip(self.edge_ops[cell], weights.detach().cpu().tolist()):
                if not 1 <= k <= len(ops):
                    raise ValueError(f"k={k} must be in 1..{len(ops)} (ops per edge now)")
                order = sorted(range(len(ops)), key=lambda i: (ops[i] not in always_keep, -w[i]))
                lists.append([ops[i] for i in sorted(order[:k])])  # keep the space's op order
            out[cell] = lists
        return out

    def new(self) -> "SearchNetwork":
        """A fresh network of the same shape with the same alphas and masks (for unrolling)."""
        other = SearchNetwork(**copy.deepcopy(self._init_kwargs))
        other = other.to(self.alphas_normal.device)
        with torch.no_grad():
            for mine, theirs in zip(self.arch_parameters(), other.arch_parameters()):
                theirs.copy_(mine)
            other.mask_normal.copy_(self.mask_normal)
            other.mask_reduce.copy_(self.mask_reduce)
        return other


__all__ = ["MixedOp", "SearchCell", "SearchNetwork", "channel_shuffle", "ARCH_PREFIXES"]
