"""Regenerate a recipe's RESULTS.md and exp/results.json from the score files on disk.

Every row comes from a `decode_<set>/results.json` written by nasr.bin.evaluate; search cost comes
from the `search.json` of the search that produced the genotype. Nothing is typed in by hand.

e.g.: python -m nasr.bin.report --exp-root exp --set test --out RESULTS.md --title "Speech Commands"
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nasr.utils.io import read_json
from nasr.utils.report import (add_report_args, collect_results, commands_section, fmt, hours,
                               markdown_table, preamble, summary_section, write_report)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_report_args(p)


def render(rows, title: str, note: str, set_name: str) -> str:
    header = ["model", "system", "cells", "channels", "params", "MACs", "acc (%)",
              "search cost (device-hours)", "search device", "train epochs", "train time (h)", "train device"]
    table = []
    for r in sorted(rows, key=lambda r: -r["acc"]):
        searched = r["model"] == "darts_net"
        name = f"{r['model']} ({r['search_space']})" if r["search_space"] else r["model"]
        table.append([
            name, r["system"], fmt(r.get("cells") if searched else None),
            fmt(r.get("channels") if searched else None), f"{r['params'] / 1e3:.1f}K",
            f"{r['macs'] / 1e6:.2f}M", f"{100 * r['acc']:.2f} ({r['correct']}/{r['total']})",
            fmt(r["search_device_hours"], "{:.3f}"), fmt(r["search_device"]), fmt(r.get("epochs")),
            hours(r.get("train_seconds")), fmt(r.get("device"))])
    lines = preamble(title, "nasr.bin.report", note) + [f"Accuracy on `{set_name}`.", ""]
    lines += markdown_table(header, table) + [""] + commands_section(rows)
    lines += summary_section([f"%ACC {100 * r['acc']:.2f} [ {r['correct']} / {r['total']} ] {r['exp_dir']}"
                              for r in rows])
    return "\n".join(lines)


def plot_curves(exp_root: Path, out_png: Path) -> bool:
    """Accuracy per epoch of every search (supernet on its validation half) and every training run
    (training accuracy), from the `history.json` files the steps write."""
    runs = sorted(exp_root.glob("*/history.json"))
    if not runs:
        return False
    from nasr.utils.plot import pyplot, save_figure

    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4))
    for path in runs:
        hist = read_json(path)
        name = path.parent.name
        ax, key = (axes[0], "valid") if name.startswith("search") else (axes[1], "train")
        ax.plot([h["epoch"] for h in hist], [100 * h[key]["acc"] for h in hist], marker="o", label=name)
    axes[0].set_title("search: supernet accuracy on the alpha half")
    axes[1].set_title("training accuracy (augmented)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out_png)
    return True


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    exp_root = Path(args.exp_root)
    rows = collect_results(exp_root, args.set)
    if not rows:
        print(f"no {exp_root}/*/decode_{args.set}/results.json found (run the evaluate stage first)",
              file=sys.stderr)
        return 1
    text = render(rows, args.title, args.note, args.set)
    # The plot sits beside RESULTS.md (committed with it), not under exp/ (not committed).
    png = Path(args.out).with_name(Path(args.out).stem + "_curves.png")
    if plot_curves(exp_root, png):
        text += f"\n![accuracy per epoch]({png.name})\n"
    write_report(Path(args.out), text, Path(args.json_out or exp_root / "results.json"), args.set, rows)
    print(f"wrote {args.out} ({len(rows)} systems)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
