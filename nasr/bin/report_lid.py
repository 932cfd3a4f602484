"""Regenerate the LID recipe's RESULTS.md and exp/results.json from the files on disk, like the
tower-search paper's Tables 1 and 3 and Figure 3:

  Table 1  every scored system (`<exp>/decode_<set>_p<p>/results.json`): tower, p, accuracy, Cavg,
           EER, parameters (an ensemble of p towers counts p times the parameters)
  Table 3  the top candidates of the search (validation loss after the search's training steps)
           beside the baseline's validation loss after as many steps
  Figure 3 validation accuracy against training steps for those candidates and the baseline
           (RESULTS_curves.png beside RESULTS.md)

e.g.: python -m nasr.bin.report_lid --exp-root exp --search-dir exp/tower_search_b1 --baseline exp/baseline_lstm
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

from nasr.utils.io import atomic_write, read_json, write_json
from nasr.utils.report import fmt, markdown_table, preamble, say_dropped_rows, summary_section


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp-root", default="exp")
    p.add_argument("--set", default="test", help="scored set whose results are tabulated")
    p.add_argument("--search-dir", required=True, help="tower search dir (its store.db and search.json)")
    p.add_argument("--store", default=None, help="default: SEARCH_DIR/store.db")
    p.add_argument("--baseline", default=None, help="the baseline's exp dir (member-1/train.json)")
    p.add_argument("--top", type=int, default=5, help="candidates in Table 3 and the figure")
    p.add_argument("--out", default="RESULTS.md")
    p.add_argument("--json-out", default=None, help="default: <exp-root>/results.json")
    p.add_argument("--title", default="Language identification: tower search")
    p.add_argument("--note", default="")
    return p


def collect_systems(exp_root: Path, set_name: str) -> List[Dict]:
    rows = []
    for path in sorted(exp_root.glob(f"*/decode_{set_name}_p*/results.json")):
        r = read_json(path)
        rows.append({"system": path.parent.parent.name, "p": r["p"], "tower": r["tower"], "blocks": r["blocks"],
                     "acc": r["acc"], "cavg": r.get("cavg"), "eer": r.get("eer"), "num": r["num"],
                     "correct": int(round(r["acc"] * r["num"])), "params": r["params"], "macs": r.get("macs"),
                     "member_accs": r.get("member_accs"), "train_steps": r.get("train_steps"),
                     "train_seconds": r.get("train_seconds"), "hparams": r.get("hparams"),
                     "source": r.get("source", {}), "eval_command": r.get("eval_command"),
                     "exp_dir": str(path.parent)})
    return rows


def value_at_step(curve: List, step: int, index: int) -> Optional[float]:
    """The curve's value (1: acc, 2: loss) at the last evaluation at or before `step`."""
    points = [pt for pt in curve if pt[0] <= step]
    return points[-1][index] if points else None


def budget_note(systems: List[Dict]) -> str:
    """Whether the rows may be compared: every tower trained as many steps with the same
    hyperparameters (the scored files record both)."""
    steps = {r.get("train_steps") for r in systems}
    hparams = {repr(sorted((r.get("hparams") or {}).items())) for r in systems}
    if None in steps or len(steps) > 1 or len(hparams) > 1:
        return (f"Budgets differ (train steps per tower {sorted(map(str, steps))}; "
                f"{len(hparams)} hyperparameter settings): compare the rows with care.")
    return (f"Equal budgets: every tower, ensemble member and baseline trained {steps.pop()} steps with the "
            f"same hyperparameters ({', '.join(f'{k} {v:.3g}' if isinstance(v, float) else f'{k} {v}' for k, v in (systems[0].get('hparams') or {}).items())}).")


def render(systems, top, baseline, search, title, note, set_name, png_name) -> str:
    from nasr.tower.tower import tower_str

    lines = preamble(title, "nasr.bin.report_lid", note)
    lines += [f"## Final results on `{set_name}` (like Table 1)", ""]
    lines += markdown_table(
        ["system", "tower", "p", "acc (%)", "Cavg", "EER (%)", "params", "train steps per tower",
         "train time (h)"],
        [[r["system"], r["tower"], str(r["p"]), f"{100 * r['acc']:.2f} ({r['correct']}/{r['num']})",
          fmt(r["cavg"], "{:.4f}"), fmt(None if r["eer"] is None else 100 * r["eer"], "{:.2f}"),
          f"{r['params'] / 1e3:.1f}K", fmt(r.get("train_steps")),
          fmt(None if r.get("train_seconds") is None else r["train_seconds"] / 3600, "{:.3f}")]
         for r in sorted(systems, key=lambda r: (r["system"], r["p"]))])
    lines += ["", budget_note(systems)]
    if search:
        lines += ["", "## Search", "",
                  f"- block set `{search['space']}`; candidates {search['candidates']}; "
                  f"{search['device_hours']:.3f} device-hours ({search['device']}), "
                  f"{search.get('wall_seconds', 0) / 60:.1f} min wall from the first claim to the last result"]
        tuning = search.get("tuning") or {}
        if tuning.get("best_params"):
            bp = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in tuning["best_params"].items())
            lines.append(f"- TPE tuning: {tuning['trials']} trials, best {bp} (loss {tuning['best_loss']:.4f})")
    lines += ["", "## Top architectures of the search (like Table 3)", "",
              "Validation loss after each candidate's search training (parameters transferred from its parent).", "",
              "| iteration | architecture | loss | acc (%) | params | mutation of |", "|---|---|---|---|---|---|"]
    for c in top:
        lines.append(f"| {c.id} | {tower_str(c.blocks)} | {c.loss:.4f} | {100 * c.acc:.2f} | {c.params / 1e3:.1f}K "
                     f"| {fmt(c.parent_id)} ({c.mutation}, {c.transferred} block(s) transferred) |")
    if baseline:
        lines.append(f"| baseline | {tower_str(baseline['blocks'])} | {fmt(baseline['loss_at_search_steps'], '{:.4f}')} "
                     f"| {fmt(None if baseline['acc_at_search_steps'] is None else 100 * baseline['acc_at_search_steps'], '{:.2f}')} "
                     f"| {baseline['params'] / 1e3:.1f}K | trained from scratch |")
    if png_name:
        lines += ["", f"![validation accuracy against training steps]({png_name})"]
    lines += ["", "## Commands", ""]
    if search and search.get("command"):
        lines.append(f"- search (one trainer): `{search['command']}`")
    for r in systems:
        if r["p"] == 1 and r["source"].get("command"):
            lines.append(f"- `{r['system']}` member: `{r['source']['command']}`")
        if r.get("eval_command") and r["p"] == max(x["p"] for x in systems if x["system"] == r["system"]):
            lines.append(f"- `{r['system']}` scoring: `{r['eval_command']}`")
    lines += [""] + summary_section([f"%ACC {100 * r['acc']:.2f} [ {r['correct']} / {r['num']} ] {r['exp_dir']}"
                                     for r in systems])
    return "\n".join(lines)


def plot_curves(top, baseline, search_steps, out_png: Path) -> bool:
    if not top and not baseline:
        return False
    from nasr.tower.tower import tower_str
    from nasr.utils.plot import pyplot, save_figure

    fig, ax = pyplot().subplots(figsize=(8, 4.5))
    for c in top:
        if c.curve:
            ax.plot([p[0] for p in c.curve], [100 * p[1] for p in c.curve], marker="o", ms=3,
                    label=f"iteration {c.id}: {tower_str(c.blocks)}")
    if baseline and baseline["curve"]:
        pts = [p for p in baseline["curve"] if p[0] <= search_steps] or baseline["curve"]
        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], "k--", label=f"baseline: {tower_str(baseline['blocks'])}")
    ax.set_xlabel("training steps")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("top candidates of the tower search (like Figure 3)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_png)
    return True


def main(argv=None) -> int:
    from nasr.tower.store import CandidateStore, StoreError

    args = get_parser().parse_args(argv)
    exp_root, search_dir = Path(args.exp_root), Path(args.search_dir)
    systems = collect_systems(exp_root, args.set)
    if not systems:
        print(f"no {exp_root}/*/decode_{args.set}_p*/results.json found (run the evaluate stage first)", file=sys.stderr)
        return 1
    try:
        store = CandidateStore(args.store or search_dir / "store.db", create=False)
    except StoreError as e:
        print(f"report_lid: {e}", file=sys.stderr)
        return 1
    top = store.best(args.top)
    store.close()
    search = read_json(search_dir / "search.json") if (search_dir / "search.json").is_file() else None
    cfg_steps = max((c.steps or 0) for c in top) if top else 0
    baseline = None
    if args.baseline:
        info = read_json(Path(args.baseline) / "member-1" / "train.json")
        baseline = {"blocks": info["blocks"], "params": info["params"], "curve": info["curve"],
                    "loss_at_search_steps": value_at_step(info["curve"], cfg_steps, 2),
                    "acc_at_search_steps": value_at_step(info["curve"], cfg_steps, 1)}
    png = Path(args.out).with_name(Path(args.out).stem + "_curves.png")
    has_png = plot_curves(top, baseline, cfg_steps, png)
    text = render(systems, top, baseline, search, args.title, args.note, args.set, png.name if has_png else None)
    say_dropped_rows(Path(args.out), text)
    with atomic_write(args.out) as f:
        f.write(text)
    write_json(args.json_out or exp_root / "results.json", {
        "set": args.set, "systems": systems, "search": search,
        "top_candidates": [{"iteration": c.id, "blocks": c.blocks, "loss": c.loss, "acc": c.acc, "params": c.params,
                            "curve": c.curve, "hparams": c.hparams} for c in top],
        "baseline": baseline})
    print(f"wrote {args.out} ({len(systems)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
