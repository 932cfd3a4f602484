"""RESULTS.md like the ASR paper's Table 1 and exp/results.json, regenerated from score files.

Rows come from every `exp/*/decode_<set>/results.json` written by nasr.bin.decode_ctc; the search
cost from the `search.json` beside the genotype the model was trained from. Nothing is typed in.

e.g.: python -m nasr.bin.report_ctc --exp-root exp --set test --out RESULTS.md --title "AISHELL-1"
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nasr.utils.report import (add_report_args, collect_results, commands_section, fmt, hours,
                               markdown_table, preamble, summary_section, write_report)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_report_args(p)


def render(rows, title, note, set_name) -> str:
    header = ["architecture", "space", "L", "C", "params (M)", "token acc (%)", "greedy CER (%)",
              "search cost (h)", "train cost (h)", "device"]
    table = [[r["system"], fmt(r["search_space"]), fmt(r.get("cells")), fmt(r.get("channels")),
              f"{r['params'] / 1e6:.2f}", f"{100 * r['token_accuracy']:.2f}", fmt(r.get("cer"), "{:.2f}"),
              fmt(r["search_device_hours"], "{:.3f}"), hours(r.get("train_seconds")), fmt(r.get("device"))]
             for r in sorted(rows, key=lambda r: -r["token_accuracy"])]
    lines = preamble(title, "nasr.bin.report_ctc", note)
    lines += [f"Token accuracy = 1 - (S + D + I) / N over the model's units on `{set_name}` (greedy "
              "CTC decoding, no LM); CER over characters where the units spell characters.", ""]
    lines += markdown_table(header, table) + [""] + commands_section(rows)
    lines += summary_section([line for r in rows for line in (r["token_summary"], r.get("cer_summary")) if line])
    return "\n".join(lines)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    root = Path(args.exp_root)
    rows = collect_results(root, args.set)
    if not rows:
        print(f"no {root}/*/decode_{args.set}/results.json (run the evaluate stage first)", file=sys.stderr)
        return 1
    write_report(Path(args.out), render(rows, args.title, args.note, args.set),
                 Path(args.json_out or root / "results.json"), args.set, rows)
    print(f"wrote {args.out} ({len(rows)} systems)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
