"""Export a trained network to ONNX, check it against torch with onnxruntime, time both per clip.

Any trained exp dir: a KWS network of nasr.bin.train (DARTS net, Res15, TC-ResNet), a CTC network
of nasr.bin.train_ctc, or a tower ensemble of nasr.bin.tower_ensemble train (see nasr.deploy.export).
Writes <out-dir>/model.onnx and <out-dir>/export.json (inputs, outputs, the largest difference
between onnxruntime's and torch's outputs, and the median latency of one 1 s clip, batch 1, in
torch and in onnxruntime with the same thread count). An export whose outputs differ from torch's
by more than --tolerance exits 1 (the file is kept, for inspection).

A tower also gets <out-dir>/model_stream.onnx: one frame and the carried state in, the logits so far
and the new state out (nasr.deploy.stream), checked frame by frame against the full-utterance logits.

e.g.: python -m nasr.bin.export --exp-dir exp/train_nas1 --format onnx
      python -m nasr.bin.export --exp-dir exp/ensemble_b1 --format onnx --members 3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nasr.utils.cli import cli_main
from nasr.utils.io import FormatError, write_json


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nasr.bin.export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-dir", required=True, help="training exp dir (config.yaml + best.pt, or member-*/)")
    p.add_argument("--format", default="onnx", help="export format (onnx)")
    p.add_argument("--out-dir", default=None, help="where model.onnx goes (default: <exp-dir>/export)")
    p.add_argument("--checkpoint", default="best.pt", help="file in --exp-dir, or a path")
    p.add_argument("--members", type=int, default=None, help="towers: average the first N members (default all)")
    p.add_argument("--frames", type=int, default=None,
                   help="frames of the timed clip (default: the KWS training clip, else 100 = 1 s)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for both torch and onnxruntime timing")
    p.add_argument("--repeats", type=int, default=50, help="timed forward passes (median reported)")
    p.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed |onnx - torch|")
    p.add_argument("--no-check", action="store_true", help="export only: no onnxruntime check or timing")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    from nasr.deploy.export import FORMATS

    if args.format not in FORMATS:
        raise FormatError(f"--format {args.format}", None, "unknown export format",
                          f"use one of: {', '.join(FORMATS)}")
    for name in ("threads", "repeats", "opset"):
        if getattr(args, name) < 1:
            raise FormatError(f"--{name} {getattr(args, name)}", None, "must be >= 1")
    return run(args, argv)


def run(args, argv) -> int:
    import platform

    import torch

    from nasr.deploy.export import (export_onnx, export_stream_onnx, latencies, load_trained, onnxruntime_session,
                                    parity, stream_parity, streaming_module)
    from nasr.utils.device import describe_device
    from nasr.utils.log import setup_logging

    exp = Path(args.exp_dir)
    net = load_trained(exp, args.checkpoint, args.members, args.frames)  # every check before a write
    out = Path(args.out_dir) if args.out_dir else exp / "export"
    log = setup_logging(out / "log" / "export.log")
    command = " ".join(["python -m nasr.bin.export"] + (argv if argv is not None else sys.argv[1:]))
    log.info("%s", command)
    path = export_onnx(net, out / "model.onnx", opset=args.opset)
    from nasr.nas.ops import count_parameters

    params = count_parameters(net.module)  # DARTS's auxiliary head is trained, never exported
    record = {"exp_dir": str(exp), "kind": net.kind, "checkpoint": net.checkpoint, **net.info,
              "params": params, "onnx": str(path), "bytes": path.stat().st_size, "format": "onnx",
              "opset": args.opset, "exporter": "torch.onnx.export(dynamo=False)",
              "inputs": {n: net.dynamic_axes.get(n, {}) for n in net.input_names},
              "example_input": list(net.example[0].shape), "outputs": net.output_names,
              "torch": torch.__version__, "python": platform.python_version(), "command": command}
    log.info("%s network (%s, %d params) -> %s (%d bytes)", net.kind, net.info.get("model"), params, path,
             record["bytes"])
    stream_path = None
    if streaming_module(net) is not None:
        stream_path = export_stream_onnx(net, out / "model_stream.onnx", opset=args.opset)
        record["onnx_stream"] = str(stream_path)
        log.info("streaming form (one frame + state per call) -> %s", stream_path)
    rc = 0
    if not args.no_check:
        try:
            session = onnxruntime_session(path, args.threads)
        except ImportError:
            log.error("onnxruntime is not installed: nothing checked or timed (fix: pip install onnxruntime, "
                      "or pass --no-check)")
            return 1
        import onnxruntime

        try:
            check = parity(net, session)
        except RuntimeError as e:
            log.error("%s (kept at %s for inspection)", e, path)
            return 1
        timing = latencies(net, session, args.threads, args.repeats)
        record.update(onnxruntime=onnxruntime.__version__, parity=check, latency=timing,
                      device=describe_device(torch.device("cpu")))
        log.info("parity: max |onnxruntime - torch| = %.3g over inputs %s (tolerance %g)", check["max_abs_diff"],
                 check["inputs"], args.tolerance)
        log.info("latency per %d-frame clip, batch 1, %d thread(s), median of %d: torch %.3f ms, onnxruntime "
                 "%.3f ms", net.clip_frames, args.threads, args.repeats, timing["torch_ms"], timing["onnxruntime_ms"])
        if stream_path is not None:
            sc = stream_parity(net, onnxruntime_session(stream_path, args.threads), args.threads, args.repeats)
            record["stream"] = sc
            log.info("streaming: max |frame-by-frame onnxruntime - full-utterance torch| = %.3g over %d frames; "
                     "%.4f ms per frame", sc["max_abs_diff"], sc["frames"], sc["onnxruntime_ms_per_frame"])
            check = dict(check, max_abs_diff=max(check["max_abs_diff"], sc["max_abs_diff"]))
        if not check["max_abs_diff"] <= args.tolerance:
            log.error("onnxruntime's outputs differ from torch's by %.3g > %g: the export is wrong "
                      "(kept at %s for inspection)", check["max_abs_diff"], args.tolerance, path)
            rc = 1
    write_json(out / "export.json", record)
    return rc


if __name__ == "__main__":
    sys.exit(cli_main(main, "export"))
