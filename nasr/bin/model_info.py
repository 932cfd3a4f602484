"""Print a model's trainable parameters and MACs (one forward pass, batch 1, eval mode).

Usage:
  python -m nasr.bin.model_info --config conf/train_res15.yaml [--json]
  python -m nasr.bin.model_info --genotype exp/search/genotype.json --layers 20 --channels 36 \\
      --num-classes 10 --in-channels 3 --input-size 32x32 [--reduction thirds] [--auxiliary] [--json]
  python -m nasr.bin.model_info --model tc_resnet14 --num-classes 12 --input-size 101x40
  python -m nasr.bin.model_info --config conf/train_asrnet_a.yaml --genotype G.json [--json]

e.g.:
  python -m nasr.bin.model_info --model res15 --input-size 101x40 --json

A config is a YAML file with a `model:` section as given to nasr.models.registry.build_model; the
input size is `model.input_size` or a top-level `input_size` ([T, F] or "TxF"), and the input
channel count `model.in_channels` or a top-level `in_channels` (default 1).
The auxiliary head (DARTS) is trained but not used at test time, so `params` leaves it out;
`aux_params` says how many parameters it holds.
A CTC network (`head: ctc`) whose config does not describe its input gets the ASR paper's: 3 input
maps (filterbank, first- and second-order derivatives as channels) of 40 bins, 1024 frames (the
paper's longest training utterance; only MACs depend on it) and 1,434 outputs (1394 syllables, 39
English phones and a blank); --in-channels, --input-size and --num-classes override them.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple


from nasr.utils.config import load_yaml
from nasr.utils.io import FormatError

AUX_PREFIXES = ("auxiliary",)
# The ASR paper's input and output units (pdarts-asr-transfer, section 4.1), for CTC configs that
# leave them to the data: they are what the paper's parameter counts (Tables 1, 2) are counted at.
CTC_PAPER_INPUT = {"in_channels": 3, "input_size": (1024, 40), "num_classes": 1434}


def parse_input_size(text) -> Tuple[int, int]:
    """'101x40', '101,40', [101, 40] -> (101, 40)."""
    if isinstance(text, (list, tuple)):
        parts = list(text)
    else:
        parts = str(text).lower().replace(",", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 2 or any(d <= 0 for d in size):
        raise ValueError(f"input size '{text}' is not two positive integers HxW (e.g. 101x40)")
    return size  # type: ignore[return-value]


def _input_size_arg(text: str) -> Tuple[int, int]:
    try:
        return parse_input_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nasr.bin.model_info",
        description="Print the trainable parameters and MACs of a model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="e.g.: python -m nasr.bin.model_info --model res15 --input-size 101x40 --json")
    parser.add_argument("--config", help="YAML with a `model:` section (as for training)")
    parser.add_argument("--genotype", help="genotype JSON: alone, builds the darts_net evaluation "
                                           "network of the options below; with --config, sets its "
                                           "model.genotype (as the training scripts' --genotype)")
    parser.add_argument("--model", help="a registered model name with its default settings")
    parser.add_argument("--layers", type=int, default=8, help="darts_net: number of cells")
    parser.add_argument("--channels", type=int, default=16, help="darts_net: initial channels C")
    parser.add_argument("--reduction", default="every_two",
                        help="darts_net: reduction cell placement: every_two | thirds")
    parser.add_argument("--auxiliary", action="store_true", help="darts_net: add the auxiliary head")
    parser.add_argument("--num-classes", type=int, default=None,
                        help="output classes (default: the config's, else 12)")
    parser.add_argument("--in-channels", type=int, default=None,
                        help="input feature maps, e.g. 3 for static+deltas (default: config's, else 1)")
    parser.add_argument("--input-size", type=_input_size_arg, default=None,
                        help="HxW of one input, e.g. 101x40 (T frames x F features); "
                             "overrides the config's")
    parser.add_argument("--device", default="cpu", help="where to run the forward pass")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def check_sources(args: argparse.Namespace) -> None:
    """One model source: --config (optionally with --genotype), --genotype, or --model."""
    if args.model and (args.config or args.genotype):
        raise ValueError("--model cannot be combined with --config or --genotype")
    if not (args.config or args.genotype or args.model):
        raise ValueError("give one of --config, --genotype or --model")


def model_spec_from_args(args: argparse.Namespace) -> Tuple[Dict[str, Any], Tuple[int, int]]:
    """The `model:` dict and the HxW input size described by the command line."""
    check_sources(args)
    if args.config:
        cfg = load_yaml(args.config)
        model_cfg = cfg.get("model")
        if not isinstance(model_cfg, dict):
            raise FormatError(args.config, None, "no `model:` mapping",
                              "add a `model:` section with `name:` and the model's settings")
        model_cfg = dict(model_cfg)
        if args.genotype:
            model_cfg["genotype"] = args.genotype
        ctc = model_cfg.get("head") == "ctc"
        raw_size = model_cfg.get("input_size", cfg.get("input_size"))
        if raw_size is None and ctc:
            raw_size = CTC_PAPER_INPUT["input_size"]
        if args.input_size is not None:
            size = args.input_size
        elif raw_size is None:
            raise FormatError(args.config, None, "no input size",
                              "add `input_size: [T, F]` at top level or under `model:`, "
                              "or pass --input-size TxF")
        else:
            try:
                size = parse_input_size(raw_size)
            except ValueError as e:
                raise FormatError(args.config, None, str(e), "write `input_size: [T, F]`") from None
        if "in_channels" not in model_cfg and "in_channels" in cfg:
            model_cfg["in_channels"] = cfg["in_channels"]
        if ctc:
            # The per-frame head reads C * F of the body's output: F is the input's bins.
            model_cfg["freq_dim"] = size[1]
            for key in ("in_channels", "num_classes"):
                model_cfg.setdefault(key, CTC_PAPER_INPUT[key])
        if args.in_channels is not None:
            model_cfg["in_channels"] = args.in_channels
        if args.num_classes is not None:
            model_cfg["num_classes"] = args.num_classes
        return model_cfg, size

    size = args.input_size
    if size is None:
        raise ValueError("--input-size HxW is required with --genotype and --model")
    model_cfg: Dict[str, Any] = {"num_classes": 12 if args.num_classes is None else args.num_classes,
                                 "in_channels": 1 if args.in_channels is None else args.in_channels}
    if args.genotype:
        model_cfg.update(name="darts_net", genotype=args.genotype, C=args.channels,
                         layers=args.layers, reduction=args.reduction, auxiliary=args.auxiliary)
    else:
        model_cfg["name"] = args.model
        if args.model.startswith("tc_resnet"):
            # TC-ResNet's conv channels are the feature coefficients: match the input's F.
            model_cfg["num_features"] = size[1]
    return model_cfg, size


def model_info(model_cfg: Dict[str, Any], input_size: Sequence[int],
               device: str = "cpu") -> Dict[str, Any]:
    """Build the model and measure it: {name, input_size, in_channels, params, aux_params, macs}."""
    from nasr.models.registry import build_model
    from nasr.utils.profile import count_macs, count_params

    model = build_model(model_cfg).to(device)
    in_channels = int(model_cfg.get("in_channels", 1))
    params = count_params(model, exclude=AUX_PREFIXES)
    return {
        "name": model_cfg.get("name"),
        "input_size": [int(d) for d in input_size],
        "in_channels": in_channels,
        "num_classes": model_cfg.get("num_classes"),
        "params": params,
        "aux_params": count_params(model, exclude=()) - params,
        "macs": count_macs(model, (in_channels,) + tuple(input_size)),
    }


def format_table(info: Dict[str, Any]) -> str:
    from nasr.utils.profile import format_count

    h, w = info["input_size"]
    rows = [("model", str(info["name"])),
            ("input", f"{info['in_channels']} x {h} x {w}"),
            ("outputs", str(info["num_classes"])),
            ("params", f"{info['params']:,} ({format_count(info['params'])})"),
            ("MACs", f"{info['macs']:,} ({format_count(info['macs'])})")]
    if info.get("aux_params"):
        rows.insert(3, ("aux params", f"{info['aux_params']:,} (auxiliary head, not counted above)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        model_cfg, size = model_spec_from_args(args)
        info = model_info(model_cfg, size, device=args.device)
    except (FormatError, ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        # One clear line instead of a traceback: these are all problems with the given input.
        parser.error(str(e))
    if args.json:
        print(json.dumps(info))
    else:
        print(format_table(info))
    sys.stdout.flush()
    return info


if __name__ == "__main__":
    main()
