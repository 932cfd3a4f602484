"""What the network a search derives will cost on a device, per op: the cost table, its expected
value under the alphas (differentiable), and the penalty a constrained search adds to its alpha loss.

A cost table describes one *target network*: the scaffolding a genotype is stacked into for
deployment (stem, C, cells, reduction placement, head) at one input size, e.g. the 6-cell C=16 KWS
network on 101x40 MFCC. For every cell position and every edge it holds each candidate op's
parameters, MACs and measured latency (batch 1; per device: ``latency_ms: {"cpu": ..., "cuda": ...}``),
and it holds the parts every genotype has (stem, each cell's two 1x1 preprocessing convs, the head).
So the cost of any genotype's network is a sum of table entries (`derived_cost`), equal to what
nasr.utils.profile counts on the built network for parameters and MACs; latency is the sum of the
ops' measured latencies, a predictor in the manner of FBNet's lookup table (ops run one after the
other on a phone's core; the sum ignores cache effects between ops).

The expected cost of a supernet (`ExpectedCost`) weighs each op by its softmax weight among the ops
derivation can pick (`none` is never derived, and masked ops are off), and each edge into node i by
2/(i+2): derivation keeps 2 of node i's i+2 inputs, and the expectation takes them as equally
likely. The target network's cells share the normal and the reduce alphas, as in the search, so the
table need not have the supernet's depth (P-DARTS's stages have 5, 11, 17 cells; the table the
network's depth that will be deployed).

Table JSON (written by nasr.bin.profile_ops)::

    {"format": "nasr-cost-table", "version": 1, "space": "nas1", "ops": [...],
     "network": {"in_channels": 1, "input_size": [101, 40], "num_classes": 12, "C": 16, "layers": 6, ...},
     "devices": {"cpu": {"name": "CPU (...)", "threads": 1, "repeats": 30, "torch": "2.13.0+cpu"}},
     "fixed": {"stem": COST, "head": COST},
     "cells": [{"index": 0, "reduction": false, "C": 16, "size": [101, 40], "preprocess": COST,
                "edges": [{"edge": 0, "node": 0, "input": 0, "stride": 1, "ops": {"sep_conv_3x3": COST, ...}}, ...]},
               ...]}
    COST = {"params": int, "macs": int, "latency_ms": {"cpu": float}}
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F

from nasr.nas.genotype import Genotype, num_edges
from nasr.nas.ops import OPS, unknown_op_message
from nasr.nas.spaces import OP_SPACES
from nasr.utils.io import FormatError

FORMAT, VERSION = "nasr-cost-table", 1
METRICS = ("params", "macs", "latency")
NETWORK_KEYS = ("in_channels", "input_size", "num_classes", "C", "layers", "reduction", "steps", "multiplier",
                "stem_multiplier", "stem_stride", "head")
# The `cost:` section of a search config (nasr.bin.search, nasr.bin.search_pdarts); null = off.
COST_DEFAULTS = {"table": None, "metric": "params", "target": None, "weight": 1.0, "device": None}


# ----------------------------------------------------------------------------------------------
# the table

class CostTable:
    """A validated cost table (see the module docstring); `source` names it in every error."""

    def __init__(self, data: Mapping, source: str = "<cost table>"):
        self.source = str(source)
        self.data = dict(data)
        self._validate()

    @classmethod
    def load(cls, path) -> "CostTable":
        path = Path(path)
        if not path.is_file():
            raise FormatError(path, None, "cost table does not exist",
                              "write it with python -m nasr.bin.profile_ops --space S --input-size TxF ... --out "
                              f"{path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise FormatError(path, e.lineno, f"not valid JSON: {e.msg}",
                              "rewrite it with python -m nasr.bin.profile_ops") from None
        return cls(data, str(path))

    def _error(self, problem: str, fix: str = "rewrite it with python -m nasr.bin.profile_ops") -> FormatError:
        return FormatError(self.source, None, problem, fix)

    def _validate(self) -> None:
        d = self.data
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise self._error(f"not a cost table of format {FORMAT} version {VERSION} "
                              f"(got format {d.get('format')!r}, version {d.get('version')!r})")
        for key in ("space", "ops", "network", "devices", "fixed", "cells"):
            if key not in d:
                raise self._error(f"lacks '{key}'")
        if d["space"] not in OP_SPACES:
            raise self._error(f"unknown op space '{d['space']}' (known: {', '.join(OP_SPACES)})")
        for op in d["ops"]:
            if op not in OPS:
                raise self._error(f"names {unknown_op_message(op)}",
                                  "profile the space again with python -m nasr.bin.profile_ops")
        missing = [k for k in NETWORK_KEYS if k not in d["network"]]
        if missing:
            raise self._error(f"'network' lacks {', '.join(missing)}")
        n_edges = num_edges(int(d["network"]["steps"]))
        if len(d["cells"]) != int(d["network"]["layers"]):
            raise self._error(f"has {len(d['cells'])} cells but its network has {d['network']['layers']} layers")
        for cell in d["cells"]:
            if len(cell["edges"]) != n_edges:
                raise self._error(f"cell {cell['index']} has {len(cell['edges'])} edges, expected {n_edges}")
            for e in cell["edges"]:
                unknown = [op for op in e["ops"] if op not in OPS]
                if unknown:
                    raise self._error(f"cell {cell['index']} edge {e['edge']}: "
                                      + "; ".join(unknown_op_message(o) for o in unknown))
                absent = [op for op in d["ops"] if op not in e["ops"]]
                if absent:
                    raise self._error(f"cell {cell['index']} edge {e['edge']} has no entry for {', '.join(absent)}")

    # -- accessors --------------------------------------------------------------------------------
    @property
    def space(self) -> str:
        return self.data["space"]

    @property
    def ops(self) -> List[str]:
        return list(self.data["ops"])

    @property
    def network(self) -> Dict:
        return dict(self.data["network"])

    @property
    def devices(self) -> List[str]:
        return list(self.data["devices"])

    @property
    def steps(self) -> int:
        return int(self.data["network"]["steps"])

    def value(self, entry: Mapping, metric: str, device: Optional[str]) -> float:
        if metric == "latency":
            return float(entry["latency_ms"][device])
        return float(entry[metric])

    def resolve_device(self, metric: str, device: Optional[str]) -> Optional[str]:
        """The device whose latencies `metric: latency` reads: `device`, or the table's only one."""
        if metric not in METRICS:
            raise ValueError(f"unknown cost metric '{metric}' (known: {', '.join(METRICS)})")
        if metric != "latency":
            return None
        timed = self.devices
        if device is None:
            if len(timed) != 1:
                raise self._error(f"holds latencies of {len(timed) or 'no'} devices ({', '.join(timed)})",
                                  "name one with cost.device" if timed else
                                  "profile with python -m nasr.bin.profile_ops without --no-latency")
            return timed[0]
        if device not in timed:
            raise self._error(f"has no latencies measured on '{device}' (it has: {', '.join(timed) or 'none'})",
                              f"run python -m nasr.bin.profile_ops --device {device} --out {self.source}")
        return device

    def fixed_cost(self, metric: str, device: Optional[str] = None) -> float:
        """Stem, head and every cell's preprocessing: what every genotype's network has."""
        fixed = sum(self.value(v, metric, device) for v in self.data["fixed"].values())
        return fixed + sum(self.value(c["preprocess"], metric, device) for c in self.data["cells"])

    def check_compatible(self, space: str, steps: int, multiplier: Optional[int] = None, what: str = "search") -> None:
        """Refuse a table profiled for another op space or cell shape than the `what` uses."""
        if space != self.space:
            raise self._error(f"profiled for op space '{self.space}', but the {what} uses '{space}'",
                              f"profile '{space}': python -m nasr.bin.profile_ops --space {space} ...")
        if steps != self.steps:
            raise self._error(f"profiled for cells of {self.steps} steps, but the {what} uses {steps}",
                              f"profile with --steps {steps}")
        if multiplier is not None and multiplier != int(self.data["network"]["multiplier"]):
            raise self._error(f"profiled for cells that concatenate {self.data['network']['multiplier']} nodes, "
                              f"but the {what}'s concatenate {multiplier}", f"profile with --multiplier {multiplier}")


def derived_cost(table: CostTable, genotype: Genotype, metric: str = "params", device: Optional[str] = None) -> float:
    """Cost of the target network stacked from `genotype`: fixed parts plus each cell's chosen ops."""
    device = table.resolve_device(metric, device)
    table.check_compatible(genotype.space, genotype.steps, len(genotype.normal_concat), "genotype")
    total = table.fixed_cost(metric, device)
    for cell in table.data["cells"]:
        gene = genotype.reduce if cell["reduction"] else genotype.normal
        start = 0
        for node in range(genotype.steps):
            for op, j in gene[2 * node:2 * node + 2]:
                total += table.value(cell["edges"][start + j]["ops"][op], metric, device)
            start += node + 2
    return total


def edge_selection_weights(steps: int) -> torch.Tensor:
    """2/(i+2) for each edge into node i: derivation keeps 2 of its i+2 inputs."""
    return torch.tensor([2.0 / (node + 2) for node in range(steps) for _ in range(node + 2)])


class ExpectedCost:
    """E[cost] of the target network under a SearchNetwork's alphas, differentiable in the alphas."""

    def __init__(self, table: CostTable, metric: str = "params", device: Optional[str] = None):
        self.table, self.metric = table, metric
        self.device = table.resolve_device(metric, device)
        self.fixed = table.fixed_cost(metric, self.device)
        # Per cell type: the cost of each op on each edge, summed over the cells of that type.
        n_edges = num_edges(table.steps)
        self.sums: Dict[str, List[Dict[str, float]]] = {}
        for kind, is_red in (("normal", False), ("reduce", True)):
            per_edge = [{op: 0.0 for op in table.ops} for _ in range(n_edges)]
            for cell in table.data["cells"]:
                if cell["reduction"] == is_red:
                    for e, edge in enumerate(cell["edges"]):
                        for op, entry in edge["ops"].items():
                            per_edge[e][op] += table.value(entry, metric, self.device)
            self.sums[kind] = per_edge
        self.edge_factor = edge_selection_weights(table.steps)
        self._matrices: Dict = {}

    def _matrix(self, kind: str, edge_ops: Sequence[Sequence[str]], device) -> torch.Tensor:
        key = (kind, tuple(tuple(ops) for ops in edge_ops), str(device))
        if key not in self._matrices:
            rows = []
            for e, ops in enumerate(edge_ops):
                missing = [op for op in ops if op not in self.sums[kind][e]]
                if missing:
                    raise self.table._error(f"has no entry for {', '.join(missing)} (the search's ops)",
                                            "profile the search's op space with python -m nasr.bin.profile_ops")
                rows.append([self.sums[kind][e][op] for op in ops])
            self._matrices[key] = torch.tensor(rows, dtype=torch.float32, device=device)
        return self._matrices[key]

    def __call__(self, model) -> torch.Tensor:
        if model.steps != self.table.steps:
            self.table.check_compatible(self.table.space, model.steps)
        total = None
        for kind, alphas, mask in (("normal", model.alphas_normal, model.mask_normal),
                                   ("reduce", model.alphas_reduce, model.mask_reduce)):
            edge_ops = model.edge_ops[kind]
            derivable = mask & torch.tensor([[op != "none" for op in ops] for ops in edge_ops], device=mask.device)
            w = F.softmax(alphas.float().masked_fill(~derivable, float("-inf")), dim=-1)
            w = torch.nan_to_num(w, nan=0.0)  # an edge with only `none` left derives nothing
            cost = self._matrix(kind, edge_ops, alphas.device)
            part = ((w * cost).sum(-1) * self.edge_factor.to(alphas.device)).sum()
            total = part if total is None else total + part
        return total + self.fixed


# ----------------------------------------------------------------------------------------------
# the penalty

def check_cost_config(v) -> None:
    """The `cost:` section of a search config: null (off) or {table, metric, target, weight, device}."""
    from nasr.utils.config import UnknownKeyError

    if v is None:
        return
    if not isinstance(v, Mapping):
        raise ValueError(f"must be null (off) or a mapping with keys {', '.join(COST_DEFAULTS)}, got {v!r}")
    for k in v:
        if k not in COST_DEFAULTS:
            raise UnknownKeyError(k, list(COST_DEFAULTS), " (cost: takes table, metric, target, weight, device)")
    if not isinstance(v.get("table"), str) or not v["table"]:
        raise ValueError("cost.table must be the path of a cost table (python -m nasr.bin.profile_ops writes it)")
    metric = v.get("metric", COST_DEFAULTS["metric"])
    if metric not in METRICS:
        raise ValueError(f"cost.metric {metric!r} is not one of {', '.join(METRICS)}")
    target = v.get("target")
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not target > 0:
        raise ValueError(f"cost.target must be a number > 0 (parameters, MACs or ms), got {target!r}")
    weight = v.get("weight", COST_DEFAULTS["weight"])
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise ValueError(f"cost.weight must be a number >= 0, got {weight!r}")


def resolve_cost_config(v) -> Optional[Dict]:
    """The section with every key filled in (None stays None: no penalty)."""
    if v is None:
        return None
    return {**COST_DEFAULTS, **dict(v)}


class CostPenalty:
    """weight * log(E[cost] / target), applied while the network that would be derived now (the
    argmax genotype, under the search's op caps) costs more than the target; 0 once it meets it.

    Why this form: the log-ratio is scale-free, so one weight means the same for parameters, MACs
    and milliseconds, and its gradient weight/E * dE/dalpha pushes by relative cost, as FBNet's
    log-latency term does. Unlike FBNet's (always on) the pressure stops once the derived network
    meets the target, so a budget is a ceiling, not a goal (TuNAS's |T/T0 - 1| also pushes cheap
    networks up), and the cross-entropy is free to spend what is left of it. The gate reads the
    derived network, not E[cost]: near-uniform alphas price every op at the average, far from the
    one network derivation keeps. The target sets when the pressure stops, not its strength (the
    gradient of log(E/T) does not depend on T)."""

    def __init__(self, table: CostTable, metric: str, target: float, weight: float, space: str,
                 device: Optional[str] = None, max_ops=None, max_ops_reduce=None):
        table.check_compatible(space, table.steps)
        self.table, self.metric, self.target, self.weight = table, metric, float(target), float(weight)
        self.space, self.max_ops, self.max_ops_reduce = space, max_ops, max_ops_reduce
        self.expected = ExpectedCost(table, metric, device)
        self.device = self.expected.device
        self.last: Dict = {}

    @classmethod
    def from_config(cls, cfg: Optional[Mapping], space: str, max_ops=None, max_ops_reduce=None):
        """None when `cfg` (the resolved `cost:` section) is off."""
        if cfg is None:
            return None
        return cls(CostTable.load(cfg["table"]), cfg["metric"], cfg["target"], cfg["weight"], space,
                   cfg.get("device"), max_ops, max_ops_reduce)

    def derived(self, model) -> float:
        genotype = model.genotype(self.space, max_ops=self.max_ops, max_ops_reduce=self.max_ops_reduce)
        return derived_cost(self.table, genotype, self.metric, self.device)

    def __call__(self, model) -> torch.Tensor:
        expected = self.expected(model)
        derived = self.derived(model)
        active = derived > self.target
        self.last = {"metric": self.metric, "target": self.target, "expected": float(expected.detach()),
                     "derived": derived, "active": active}
        if not active or self.weight == 0.0:
            return expected.new_zeros(())
        return self.weight * torch.log(expected / self.target)

    def summary(self, model) -> Dict:
        """Expected and derived cost now (for logs and history records)."""
        with torch.no_grad():
            expected = float(self.expected(model))
        return {"metric": self.metric, "target": self.target, "weight": self.weight, "expected": expected,
                "derived": self.derived(model), "device": self.device}


# ----------------------------------------------------------------------------------------------
# profiling: writing a table

def _measure(module, shape, devices: Sequence[str], repeats: int, threads: int) -> Dict:
    """params, MACs (batch 1) and the median latency on each device of `module` on an input of `shape`."""
    from torch.utils.flop_counter import FlopCounterMode

    from nasr.utils.profile import latency_ms

    module = module.eval()
    params = int(sum(p.numel() for p in module.parameters() if p.requires_grad))
    x = torch.randn((1,) + tuple(shape))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(x)
    out = {"params": params, "macs": int(counter.get_total_flops()) // 2, "latency_ms": {}}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for dev in devices:
            m = module.to(dev)
            xd = x.to(dev)
            if xd.dim() == 4:  # the networks run channels-last (nasr.nas.ops)
                m = m.to(memory_format=torch.channels_last)
                xd = xd.contiguous(memory_format=torch.channels_last)
            sync = torch.cuda.synchronize if dev.startswith("cuda") else None
            with torch.inference_mode():
                out["latency_ms"][dev] = latency_ms(lambda: m(xd), repeats=repeats, warmup=3, sync=sync)["median"]
        module.to("cpu")
    finally:
        torch.set_num_threads(before)
    return out


def network_layout(network: Mapping) -> Dict:
    """The shapes at every position of the target network: the stem's input, per cell its channels,
    the sizes of its two inputs and its edges' strides, and the head's input."""
    from nasr.nas.ops import reduction_indices

    def half(size):
        return [-(-size[0] // 2), -(-size[1] // 2)]

    n = network
    size = [int(v) for v in n["input_size"]]
    stem_in = [int(n["in_channels"])] + size
    if int(n["stem_stride"]) == 2:
        size = half(size)
    C_curr = int(n["stem_multiplier"]) * int(n["C"])
    C_pp, C_p, C_curr = C_curr, C_curr, int(n["C"])
    size_pp = size_p = size
    reductions = reduction_indices(int(n["layers"]), n["reduction"])
    cells, red_prev = [], False
    for i in range(int(n["layers"])):
        red = i in reductions
        if red:
            C_curr *= 2
        edges = []
        for node in range(int(n["steps"])):
            for j in range(node + 2):
                stride = 2 if red and j < 2 else 1
                edges.append({"edge": len(edges), "node": node, "input": j, "stride": stride,
                              "size": size_p if stride == 2 or not red else half(size_p)})
        cells.append({"index": i, "reduction": red, "reduction_prev": red_prev, "C": C_curr, "C_pp": C_pp,
                      "C_p": C_p, "size_pp": size_pp, "size": size_p, "edges": edges})
        out = half(size_p) if red else size_p
        size_pp, size_p = size_p, out
        C_pp, C_p = C_p, int(n["multiplier"]) * C_curr
        red_prev = red
    return {"stem_in": stem_in, "stem_out": int(n["stem_multiplier"]) * int(n["C"]), "cells": cells,
            "head_in": [C_p] + size_p}


def build_cost_table(space: str, network: Mapping, devices: Sequence[str] = ("cpu",), repeats: int = 30,
                     threads: int = 1, progress=None) -> Dict:
    """Profile every op of `space` at every cell position of the target `network` (NETWORK_KEYS).

    Ops at the same (op, channels, size, stride) cost the same, so each is measured once and its
    figures are written at every position it occurs. `devices` [] gives a table without latencies."""
    from nasr.nas.ops import FactorizedReduce, ReLUConvBN, build_head, build_op, make_stem
    from nasr.nas.spaces import get_space
    from nasr.utils.device import describe_device

    ops = get_space(space)
    missing = [k for k in NETWORK_KEYS if k not in network]
    if missing:
        raise ValueError(f"network description lacks {', '.join(missing)}")
    layout = network_layout(network)
    cache: Dict = {}

    def measure(key, make, shape):
        if key not in cache:
            cache[key] = _measure(make(), shape, devices, repeats, threads)
            if progress is not None:
                progress(key)
        return cache[key]

    fixed = {"stem": measure(("stem",), lambda: make_stem(int(network["in_channels"]), layout["stem_out"],
                                                          int(network["stem_stride"])), layout["stem_in"])}
    C_p, T, F_out = layout["head_in"]
    fixed["head"] = measure(("head", network["head"]), lambda: build_head(network["head"], C_p, F_out,
                                                                          int(network["num_classes"])),
                            layout["head_in"])
    cells = []
    for c in layout["cells"]:
        C = c["C"]
        if c["reduction_prev"]:
            pre0 = measure(("fr", c["C_pp"], C, *c["size_pp"]), lambda: FactorizedReduce(c["C_pp"], C),
                           [c["C_pp"]] + c["size_pp"])
        else:
            pre0 = measure(("rcb", c["C_pp"], C, *c["size_pp"]), lambda: ReLUConvBN(c["C_pp"], C, 1, 1, 0),
                           [c["C_pp"]] + c["size_pp"])
        pre1 = measure(("rcb", c["C_p"], C, *c["size"]), lambda: ReLUConvBN(c["C_p"], C, 1, 1, 0),
                       [c["C_p"]] + c["size"])
        preprocess = {"params": pre0["params"] + pre1["params"], "macs": pre0["macs"] + pre1["macs"],
                      "latency_ms": {d: pre0["latency_ms"][d] + pre1["latency_ms"][d] for d in devices}}
        edges = []
        for e in c["edges"]:
            entry = {}
            for op in ops:
                entry[op] = measure(("op", op, C, *e["size"], e["stride"]),
                                    lambda: build_op(op, C, e["stride"], affine=True), [C] + e["size"])
            edges.append({"edge": e["edge"], "node": e["node"], "input": e["input"], "stride": e["stride"],
                          "size": e["size"], "ops": entry})
        cells.append({"index": c["index"], "reduction": c["reduction"], "C": C, "size": c["size"],
                      "preprocess": preprocess, "edges": edges})
    dev_info = {}
    for d in devices:
        dev_info[d] = {"name": describe_device(torch.device(d)), "threads": threads, "repeats": repeats,
                       "batch": 1, "torch": torch.__version__, "measured": len(cache)}
    table = {"format": FORMAT, "version": VERSION, "space": space, "ops": ops,
             "network": {k: network[k] for k in NETWORK_KEYS}, "devices": dev_info, "distinct_measured": len(cache),
             "fixed": fixed, "cells": cells}
    CostTable(table)  # what is written must read back
    return table


def merge_tables(old: Mapping, new: Mapping, source: str) -> Dict:
    """`old` with `new`'s devices added (or replaced): one file keeps every device's latencies.
    Refused when the two describe other spaces or networks."""
    if old.get("space") != new["space"] or old.get("network") != new["network"]:
        raise FormatError(source, None, f"holds a table of another space or network (space {old.get('space')}, "
                          f"network {old.get('network')})", "write to another --out, or delete it")
    out = json.loads(json.dumps(old))
    for dev, info in new["devices"].items():
        out["devices"][dev] = info
        pairs = [(out["fixed"][k], new["fixed"][k]) for k in new["fixed"]]
        for oc, nc in zip(out["cells"], new["cells"]):
            pairs.append((oc["preprocess"], nc["preprocess"]))
            for oe, ne in zip(oc["edges"], nc["edges"]):
                pairs += [(oe["ops"][op], ne["ops"][op]) for op in ne["ops"]]
        for o, n in pairs:
            o["latency_ms"][dev] = n["latency_ms"][dev]
    return out


__all__ = ["CostTable", "ExpectedCost", "CostPenalty", "derived_cost", "edge_selection_weights",
           "check_cost_config", "resolve_cost_config", "build_cost_table", "network_layout", "merge_tables", "METRICS", "COST_DEFAULTS", "FORMAT", "VERSION"]
