"""RESULTS.md like the ASR paper's Table 1 and exp/results.json, regenerated from score files.

Rows come from every `exp/*/decode_<set>/results.json` written by nasr.bin.decode_ctc; the search
cost from the `search.json` beside the genotype the model was trained from. Nothing is typed in.

e.g.: python -m nasr.bin.report_ctc --exp-root exp --set test --out RESULTS.md --title "AISHELL-1"
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nasr.utils.compare import group_runs, pm, verdicts
from nasr.utils.report import (add_report_args, collect_results, commands_section, fmt, hours,
                               markdown_table, preamble, summary_section, write_report)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_report_args(p)


def render(rows, title, note, set_name) -> str:
    groups = sorted(group_runs(rows, score="token_accuracy"), key=lambda g: -g["mean"])
    header = ["architecture", "runs", "space", "L", "C", "params (M)", "token acc (%) mean ± std",
              "token acc (%) per run", "greedy CER (%) mean", "search cost (h)", "epochs",
              "train cost per run (h)", "device"]
    table = []
    for g in groups:
        runs, r = g["runs"], g["runs"][0]
        space = r["random_arch"]["space"] if g["kind"] == "random" else r["search_space"]
        cers = [x["cer"] for x in runs if x.get("cer") is not None]
        seconds = [x["train_seconds"] for x in runs if x.get("train_seconds") is not None]
        table.append([
            g["name"] + (" (random)" if g["kind"] == "random" else ""),
            f"{len(runs)} {'arch' if g['kind'] == 'random' else 'run'}{'s' if len(runs) > 1 else ''}",
            fmt(space), fmt(r.get("cells")), fmt(r.get("channels")),
            f"{sum(x['params'] for x in runs) / len(runs) / 1e6:.2f}", pm(g["mean"], g["std"]),
            ", ".join(f"{100 * x:.2f}" for x in g["scores"]),
            fmt(sum(cers) / len(cers) if cers else None, "{:.2f}"), fmt(r["search_device_hours"], "{:.3f}"),
            fmt(r.get("epochs")), hours(sum(seconds) / len(seconds) if seconds else None), fmt(r.get("device"))])
    lines = preamble(title, "nasr.bin.report_ctc", note)
    lines += [f"Token accuracy = 1 - (S + D + I) / N over the model's units on `{set_name}` (greedy "
              "CTC decoding, no LM); CER over characters where the units spell characters. `archs`: "
              "random genotypes from the same space under the search's op caps (nasr.bin.random_genotype), "
              "trained with the searched network's config.", ""]
    lines += markdown_table(header, table) + [""]
    lines += ["## Verdicts (token accuracy)", ""] + (verdicts(groups) or ["- no searched row"]) + [""]
    lines += commands_section(rows)
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
