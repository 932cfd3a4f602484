"""Write the cost table of an op space: every op's parameters, MACs and measured latency (batch 1,
median of --repeats) at every cell position of a target network (see nasr.nas.cost).

The target network is the one a searched genotype will be deployed as: give its scaffolding with
the options below (the defaults are the KWS paper's 6-cell C=16 network) or read it from a training
config's `model:` section with --config. With --out naming an existing table of the same space
and network, the device's latencies are added to it (one file, keyed by device).

e.g.: python -m nasr.bin.profile_ops --space nas1 --input-size 101x40 --num-classes 12 --device cpu \\
        --out exp/cost_cpu.json
      python -m nasr.bin.profile_ops --space nas1 --config conf/train_nas1.yaml --input-size 101x40 \\
        --num-classes 12 --out exp/cost_nas1.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nasr.utils.cli import cli_main
from nasr.utils.io import FormatError


def get_parser() -> argparse.ArgumentParser:
    from nasr.bin.model_info import _input_size_arg

    p = argparse.ArgumentParser(prog="python -m nasr.bin.profile_ops", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", required=True, help="op space (nas1, nas2, darts, asr_revised)")
    p.add_argument("--input-size", type=_input_size_arg, default=None,
                   help="TxF of one input, e.g. 101x40 (default: the --config's input_size)")
    p.add_argument("--config", default=None,
                   help="a training config, e.g. a trained exp dir's resolved config.yaml: its model: section "
                        "(and input_size) give the network")
    p.add_argument("--in-channels", type=int, default=None, help="input maps (default: config's, else 1)")
    p.add_argument("--num-classes", type=int, default=None, help="outputs (default: config's, else 12)")
    p.add_argument("--C", type=int, default=None, help="initial channels (default: config's, else 16)")
    p.add_argument("--layers", type=int, default=None, help="cells (default: config's, else 6)")
    p.add_argument("--reduction", default=None, help="every_two | thirds (default: config's, else every_two)")
    p.add_argument("--stem-stride", type=int, default=None, help="1 or 2 (default: config's, else 1)")
    p.add_argument("--stem-multiplier", type=int, default=None)
    p.add_argument("--steps", type=int, default=4, help="intermediate nodes per cell")
    p.add_argument("--multiplier", type=int, default=4, help="nodes a cell concatenates")
    p.add_argument("--head", default=None, help="classifier | ctc (default: config's, else classifier)")
    p.add_argument("--device", default="cpu", help="where latency is measured: cpu, cuda, cuda:1")
    p.add_argument("--no-latency", action="store_true", help="parameters and MACs only (no timing)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs per op (median written)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads while timing")
    p.add_argument("--out", required=True, help="the table (JSON)")
    return p


DEFAULT_NETWORK = {"in_channels": 1, "num_classes": 12, "C": 16, "layers": 6, "reduction": "every_two",
                   "stem_stride": 1, "stem_multiplier": 3, "head": "classifier"}


def network_from_args(args) -> dict:
    from nasr.nas.spaces import OP_SPACES
    from nasr.utils.config import load_yaml

    if args.space not in OP_SPACES:
        raise FormatError(f"--space {args.space}", None, "unknown op space", f"use one of: {', '.join(OP_SPACES)}")
    net = dict(DEFAULT_NETWORK)
    size = args.input_size
    if args.config:
        if not Path(args.config).is_file():
            raise FormatError(args.config, None, "config file does not exist", "check the --config path")
        model = load_yaml(args.config).get("model")
        if not isinstance(model, dict) or model.get("name") != "darts_net":
            raise FormatError(args.config, None, "no `model:` section of a darts_net",
                              "point --config at a training config of a searched network (model: {name: darts_net})")
        if "channels" in model:
            net["C"] = model["channels"]
        net.update({k: model[k] for k in net if k in model})
        cfg_size = load_yaml(args.config).get("input_size", model.get("input_size"))
        if size is None and cfg_size is not None:
            from nasr.bin.model_info import parse_input_size

            size = parse_input_size(cfg_size)
    if size is None:
        raise FormatError("--input-size", None, "no input size given", "pass --input-size TxF, e.g. 101x40, or a "
                          "--config that records input_size (a trained exp dir's config.yaml does)")
    for key in ("in_channels", "num_classes", "C", "layers", "reduction", "stem_stride", "stem_multiplier", "head"):
        if getattr(args, key) is not None:
            net[key] = getattr(args, key)
    net.update(input_size=list(size), steps=args.steps, multiplier=args.multiplier)
    return net


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    for name in ("repeats", "threads", "steps", "multiplier"):
        if getattr(args, name) < 1:
            raise FormatError(f"--{name} {getattr(args, name)}", None, "must be >= 1")
    network = network_from_args(args)
    import time

    import torch

    from nasr.nas.cost import CostTable, build_cost_table, merge_tables
    from nasr.utils.device import get_device
    from nasr.utils.io import write_json
    from nasr.utils.log import setup_logging

    devices = [] if args.no_latency else [str(get_device(args.device))]
    out = Path(args.out)
    old = None
    if out.is_file():  # checked before measuring: a mismatch is refused at once
        old = CostTable.load(out).data
        if old["space"] != args.space or old["network"] != network:
            raise FormatError(out, None, f"holds the table of another space or network ({old['space']}, "
                              f"{old['network']})", "write to another --out, or delete it")
    log = setup_logging(None)
    command = " ".join(["python -m nasr.bin.profile_ops"] + (argv if argv is not None else sys.argv[1:]))
    log.info("%s", command)
    log.info("profiling op space %s in %s on %s", args.space, network, ", ".join(devices) or "no device (no latency)")
    t0 = time.time()
    table = build_cost_table(args.space, network, devices, repeats=args.repeats, threads=args.threads)
    if old is not None:
        table = merge_tables(old, table, str(out))
    table["command"] = command
    write_json(out, table)
    t = CostTable(table, str(out))
    log.info("%s: %d cells x %d edges x %d ops, fixed parts %d params; %d distinct (op, channels, size, stride) measured in %.1f s "
             "(torch %s)", out, len(table["cells"]), len(table["cells"][0]["edges"]), len(table["ops"]),
             t.fixed_cost("params"), table["distinct_measured"], time.time() - t0,
             torch.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "profile_ops"))
