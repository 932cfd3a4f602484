"""Regenerate a recipe's RESULTS.md and exp/results.json from the score files on disk.

Every row comes from a `decode_<set>/results.json` written by nasr.bin.evaluate; search cost comes
from the `search.json` of the search that produced the genotype. Nothing is typed in by hand.

e.g.: python -m nasr.bin.report --exp-root exp --set test --out RESULTS.md --title "Speech Commands"
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List

from nasr.utils.io import read_json
from nasr.utils.compare import group_runs, pm, row_name, verdicts
from nasr.utils.report import (add_report_args, collect_results, commands_section, fmt, hours,
                               markdown_table, preamble, summary_section, write_report)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_report_args(p)


def row_label(g) -> str:
    r = g["runs"][0]
    if g["kind"] == "random":
        return f"random ({r['random_arch']['space']})"
    return f"{r['model']} ({r['search_space']})" if r["search_space"] else r["model"]


def spread(values, spec: str) -> str:
    """One figure, or min-max when the runs of a row differ (random architectures)."""
    lo, hi = min(values), max(values)
    return spec.format(lo) if lo == hi else f"{spec.format(lo)}-{spec.format(hi)}"


def render(rows, title: str, note: str, set_name: str) -> str:
    groups = sorted(group_runs(rows), key=lambda g: -g["mean"])
    header = ["model", "system", "runs", "cells", "channels", "params", "MACs", "acc (%) mean ± std",
              "acc (%) per run", "search cost (device-hours)", "search device", "train epochs",
              "train time per run (h)", "train device"]
    table = []
    for g in groups:
        runs = g["runs"]
        r = runs[0]
        searched = r["model"] == "darts_net"
        seconds = [x["train_seconds"] for x in runs if x.get("train_seconds") is not None]
        table.append([
            row_label(g), g["name"], f"{len(runs)} {'arch' if g['kind'] == 'random' else 'seed'}{'s' if len(runs) > 1 else ''}",
            fmt(r.get("cells") if searched else None), fmt(r.get("channels") if searched else None),
            spread([x["params"] / 1e3 for x in runs], "{:.1f}") + "K",
            spread([x["macs"] / 1e6 for x in runs], "{:.2f}") + "M", pm(g["mean"], g["std"]),
            ", ".join(f"{100 * x['acc']:.2f}" for x in runs),
            fmt(r["search_device_hours"], "{:.3f}"), fmt(r["search_device"]),
            spread([x.get("epochs") or 0 for x in runs], "{}") if all(x.get("epochs") for x in runs) else "-",
            hours(sum(seconds) / len(seconds) if seconds else None), fmt(r.get("device"))])
    lines = preamble(title, "nasr.bin.report", note) + [f"Accuracy on `{set_name}` ({groups_total(groups)}).", ""]
    lines += markdown_table(header, table) + [""]
    lines += ["Runs: `seeds` = one architecture trained with that many seeds; `archs` = that many "
              "random architectures drawn from the searched space under the search's op caps "
              "(`nasr.bin.random_genotype`), one seed each. Mean ± sample std over the runs.", ""]
    lines += ["## Verdicts", ""] + (verdicts(groups) or ["- no searched row"]) + [""]
    lines += selection_section(rows) + commands_section(rows)
    lines += summary_section([f"%ACC {100 * r['acc']:.2f} [ {r['correct']} / {r['total']} ] {r['exp_dir']}"
                              for r in rows])
    return "\n".join(lines)


def groups_total(groups) -> str:
    return f"{len(groups)} rows, {sum(len(g['runs']) for g in groups)} trained models"


def selection_section(rows) -> List[str]:
    """How each architecture and checkpoint was picked: on validation data only, never on `test`."""
    lines = ["## Selection", ""]
    searches = sorted({r["genotype_source"] for r in rows if r.get("search_space") and r.get("genotype_source")})
    for src in searches:
        s = read_json(Path(src).parent / "search.json")
        lines.append(f"- genotype `{src}`: epoch {s['best_epoch']} of the search, picked on "
                     f"{s.get('selected_on', 'supernet accuracy on the alpha half (validation data)')}"
                     + (f". Warning: {s['warning']}" if s.get("warning") else ""))
    rules = sorted({r.get("checkpoint_selection") or "not recorded" for r in rows})
    lines.append(f"- checkpoints: {'; '.join(rules)}. The test set is scored once per model, after "
                 "training, and picks nothing.")
    return lines + [""]


def curve_series(exp_root: Path) -> List[dict]:
    """Per run with a `history.json`: {panel (search/train), row, run, split (train/valid), epochs,
    acc (%)}. A search's splits are its weight half and its alpha half; a trained model's are its
    training data (augmented) and its validation data."""
    out = []
    for path in sorted(exp_root.glob("*/history.json")):
        hist = read_json(path)
        name = path.parent.name
        panel = "search" if name.startswith("search") else "train"
        for split in ("train", "valid"):
            pts = [(h["epoch"], 100 * h[split]["acc"]) for h in hist if split in h]
            if pts:
                out.append({"panel": panel, "row": row_name(name), "run": name, "split": split,
                            "epochs": [e for e, _ in pts], "acc": [a for _, a in pts]})
    return out


def plot_curves(exp_root: Path, out_png: Path) -> bool:
    """Training accuracy (solid) beside validation accuracy (dashed) per epoch, for every search
    and every trained model; one colour per table row (the seeds of a model share it)."""
    series = curve_series(exp_root)
    if not series:
        return False
    from nasr.utils.plot import pyplot, save_figure

    fig, axes = pyplot().subplots(1, 2, figsize=(12, 4.5))
    panels = {"search": axes[0], "train": axes[1]}
    colours, labelled = {}, set()
    for c in series:
        colour = colours.setdefault(c["row"], f"C{len(colours) % 10}")
        label = c["row"] if (c["panel"], c["row"]) not in labelled else None
        labelled.add((c["panel"], c["row"]))
        panels[c["panel"]].plot(c["epochs"], c["acc"], color=colour, lw=1, label=label,
                                ls="-" if c["split"] == "train" else "--", marker="" if c["split"] == "train" else ".")
    axes[0].set_title("search: supernet on weight half (solid), alpha half (dashed)")
    axes[1].set_title("training (solid, augmented) and validation (dashed)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
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
        text += f"\n![training and validation accuracy per epoch]({png.name})\n"
    write_report(Path(args.out), text, Path(args.json_out or exp_root / "results.json"), args.set, rows)
    print(f"wrote {args.out} ({len(rows)} systems)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
