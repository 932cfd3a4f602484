"""Accuracy against size and against measured latency: one figure for the searched networks (with
and without a deployment budget) and the baselines, and a section of RESULTS.md that shows it.

Reads, for every <exp-root>/train_*/ that has both, decode_<set>/results.json (accuracy, params,
written by nasr.bin.evaluate or tower_ensemble evaluate --format kws) and export/export.json (the
latency per clip of nasr.bin.export). Writes the figure and replaces the section "## Deployment:
accuracy against size and latency" of --results (appending it when absent), so a rerun after the
report stage gives the same file.

e.g.: python -m nasr.bin.report_pareto --exp-root exp --set test --results RESULTS.md
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Dict, List

from nasr.utils.cli import cli_main
from nasr.utils.io import FormatError, atomic_write, read_json

SECTION = "## Deployment: accuracy against size and latency"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nasr.bin.report_pareto", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-root", default="exp")
    p.add_argument("--set", default="test", help="the decode_<set> scored")
    p.add_argument("--results", default="RESULTS.md", help="markdown file whose deployment section is rewritten")
    p.add_argument("--figure", default=None, help="PNG (default: <results stem>_pareto.png beside it)")
    p.add_argument("--note", default="", help="a line under the section title (e.g. the command)")
    return p


def group_of(name: str) -> str:
    """searched (a budget: train_<space>_<metric><target>), searched, random or baseline."""
    if re.match(r"^train_nas\d+(_l\d+)?_(params|macs|latency)[0-9.]+", name):
        return "searched with a budget"
    if re.match(r"^train_nas\d+(_l\d+)?_seed\d+$", name):
        return "searched"
    if name.startswith("train_random_"):
        return "random architecture"
    return "baseline"


def collect(exp_root, test_set: str) -> List[Dict]:
    rows = []
    for d in sorted(Path(exp_root).glob("train_*")):
        res, exp = d / f"decode_{test_set}" / "results.json", d / "export" / "export.json"
        if not (res.is_file() and exp.is_file()):
            continue
        r, e = read_json(res), read_json(exp)
        lat = e.get("latency") or {}
        rows.append({"system": d.name, "group": group_of(d.name), "acc": r["acc"], "params": r["params"],
                     "macs": r.get("macs"), "torch_ms": lat.get("torch_ms"), "onnx_ms": lat.get("onnxruntime_ms"),
                     "threads": lat.get("threads"), "clip_frames": lat.get("clip_frames")})
    return rows


def plot(rows: List[Dict], path) -> None:
    from nasr.utils.plot import pyplot, save_figure

    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4.2))
    markers = {"searched": "o", "searched with a budget": "s", "random architecture": "x", "baseline": "^"}
    for group, marker in markers.items():
        pts = [r for r in rows if r["group"] == group]
        if not pts:
            continue
        for ax, key in zip(axes, ("params", "onnx_ms")):
            ax.scatter([r[key] for r in pts], [100 * r["acc"] for r in pts], marker=marker, label=group)
            for r in pts:
                ax.annotate(r["system"].replace("train_", ""), (r[key], 100 * r["acc"]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("parameters")
    axes[1].set_xlabel("onnxruntime latency per clip, batch 1 (ms, median)")
    for ax in axes:
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def section(rows: List[Dict], figure: str, note: str) -> str:
    lines = [SECTION, ""]
    if note:
        lines += [note, ""]
    lines += [f"![accuracy against parameters and latency]({figure})", "",
              "| system | group | accuracy | params | MACs | torch ms | onnxruntime ms |",
              "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["params"]):
        fmt = (lambda v: "-" if v is None else f"{v:.3f}")
        lines.append(f"| {r['system']} | {r['group']} | {100 * r['acc']:.2f}% | {r['params']:,} | "
                     f"{'-' if r['macs'] is None else format(r['macs'], ',')} | {fmt(r['torch_ms'])} | "
                     f"{fmt(r['onnx_ms'])} |")
    threads = sorted({r["threads"] for r in rows if r["threads"]})
    lines += ["", f"Latency: median of repeated forward passes of one clip (batch 1, {', '.join(map(str, threads))} "
              "thread(s)) by `python -m nasr.bin.export`, on the machine the recipe ran on.", ""]
    return "\n".join(lines)


def replace_section(text: str, new: str) -> str:
    """`text` with its deployment section (up to the next `## ` title) replaced by `new`, or appended."""
    start = text.find(SECTION)
    if start < 0:
        return text.rstrip("\n") + "\n\n" + new
    nxt = text.find("\n## ", start + len(SECTION))
    return text[:start] + new + ("" if nxt < 0 else "\n" + text[nxt + 1:])


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    rows = collect(args.exp_root, args.set)
    if not rows:
        raise FormatError(args.exp_root, None, f"no train_*/ dir holds both decode_{args.set}/results.json and "
                          "export/export.json", "evaluate and export the trained networks first "
                          "(nasr.bin.evaluate, nasr.bin.export)")
    results = Path(args.results)
    figure = Path(args.figure) if args.figure else results.with_name(results.stem + "_pareto.png")
    plot(rows, figure)
    text = results.read_text(encoding="utf-8") if results.is_file() else ""
    rel = figure.name if figure.parent.resolve() == results.parent.resolve() else str(figure)
    with atomic_write(results) as f:
        f.write(replace_section(text, section(rows, rel, args.note)))
    print(f"{len(rows)} systems -> {figure}, section '{SECTION[3:]}' of {results}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main, "report_pareto"))
