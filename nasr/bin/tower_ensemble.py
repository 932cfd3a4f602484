"""Algorithm 3 of the tower-search paper: retrain the best tower of the store p times from scratch
(own seed: initialisation and data order) and score the logit average (w_i = 1/p).

  train     train ensemble member --member I (a job runner runs I = 1..p in parallel); the tower is
            the best candidate of --store, or a hand-designed one from --tower (a baseline)
  evaluate  score the first p members for every p in --num-members on a data dir:
            <exp-dir>/decode_<name>_p<p>/{results.json, confusion.txt, scores, summary}
            (--format kws: one <exp-dir>/decode_<name>/ with the fields nasr.bin.report reads)

e.g.: python -m nasr.bin.tower_ensemble train --config conf/tower_b1.yaml --store exp/tower_search_b1/store.db \\
          --train-data data/train --valid-data data/dev --exp-dir exp/ensemble_b1 --member 1
      python -m nasr.bin.tower_ensemble evaluate --exp-dir exp/ensemble_b1 --data data/test --num-members 1,2,3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from nasr.utils.io import FormatError


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one ensemble member")
    t.add_argument("--config", required=True, help="the search config (its ensemble: section)")
    t.add_argument("--profile", default=None)
    t.add_argument("--override", action="append", default=[])
    t.add_argument("--train-data", required=True)
    t.add_argument("--valid-data", required=True)
    t.add_argument("--exp-dir", required=True)
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--store", help="take BESTCANDIDATE from this candidate store")
    src.add_argument("--tower", help="a tower JSON file (hand-designed baseline)")
    t.add_argument("--hparams-from", default=None, metavar="STORE",
                   help="with --tower: train with the hyperparameters of this store's best candidate (tuned by "
                        "the search's TPE), so a baseline is not compared on worse settings")
    t.add_argument("--member", type=int, required=True, help="member number (1-based; seeds differ)")
    e = sub.add_parser("evaluate", help="score the averaged members on a data dir")
    e.add_argument("--exp-dir", required=True)
    e.add_argument("--data", required=True)
    e.add_argument("--name", default=None, help="set name (default: the data dir's name)")
    e.add_argument("--num-members", default="1,2,3", help="ensemble sizes p to score, e.g. 1,2,3")
    e.add_argument("--task", default=None, help="lid or kws (default: the config.yaml in --exp-dir)")
    e.add_argument("--format", choices=["lid", "kws"], default="lid",
                   help="lid: decode_<name>_p<p> per p; kws: decode_<name> (p = max) as nasr.bin.report reads")
    return p


def _command(argv) -> str:
    return " ".join(["python -m nasr.bin.tower_ensemble"] + (argv if argv is not None else sys.argv[1:]))


def _best_of(location):
    """BESTCANDIDATE of a store: (candidate, its hyperparameters without TPE's trial number, store)."""
    from nasr.tower.ensemble import best_candidate
    from nasr.tower.store import CandidateStore

    store = CandidateStore(location, create=False)
    try:
        best = best_candidate(store)
    finally:
        store.close()
    return best, {k: v for k, v in best.hparams.items() if k != "trial"}, store


def train(args, argv) -> int:
    from nasr.bin.tower_search import resolve_config
    from nasr.tower.data import load_sets
    from nasr.tower.ensemble import train_member
    from nasr.tower.store import StoreError
    from nasr.tower.tower import load_tower, save_tower
    from nasr.utils.config import save_config
    from nasr.utils.log import setup_logging

    exp = Path(args.exp_dir)
    # Not member.N.log: the job runner writes its own log there (two writers would interleave).
    log = setup_logging(exp / "log" / f"train_member.{args.member}.log")
    log.info("%s", _command(argv))
    cfg = resolve_config(args)
    hparams = dict(cfg["train"])
    if args.hparams_from and args.store:
        print("tower_ensemble: --hparams-from goes with --tower (with --store the best candidate's "
              "hyperparameters are used already)", file=sys.stderr)
        return 1
    try:
        if args.store:
            best, tuned, store = _best_of(args.store)
            blocks, source = best.blocks, {"store": store.location, "candidate": best.id, "loss": best.loss}
            if store.is_sqlite:  # the search writes its tower.json beside its store file
                source["tower_file"] = str(Path(args.store).parent / "tower.json")
            hparams.update(tuned)
        else:
            blocks, meta = load_tower(args.tower)
            source = {"tower": args.tower}
            hparams.update(meta.get("hparams", {}))
            if args.hparams_from:
                best, tuned, store = _best_of(args.hparams_from)
                hparams.update(tuned)
                source.update(hparams_from=store.location, hparams_candidate=best.id)
    except (FormatError, StoreError) as e:
        print(f"tower_ensemble: {e}", file=sys.stderr)
        return 1
    save_config(cfg, exp / "config.yaml")
    save_tower(exp / "tower.json", blocks, hparams=hparams, **source)
    torch.set_num_threads(int(cfg["threads"]))
    s, ens = cfg["search"], cfg["ensemble"]
    train_ds, valid_ds, names = load_sets(cfg["task"], args.train_data, args.valid_data, int(cfg["seed"]),
                                          int(cfg["max_frames"]), None, s.get("max_valid_utts"))
    log.info("member %d: tower %s, %s, %d steps", args.member, blocks, hparams, ens["train_steps"])
    info = train_member(exp, args.member, blocks, hparams, train_ds, valid_ds, names,
                        steps=int(ens["train_steps"]), eval_every=int(ens["eval_every"]), seed=int(cfg["seed"]),
                        source={**source, "command": _command(argv)})
    wait = info["valid"].get("data_wait_frac")  # absent from a member trained before it was recorded
    log.info("member %d: valid acc %.4f loss %.4f%s", args.member, info["valid"]["acc"], info["valid"]["loss"],
             f" (data wait {100 * wait:.0f}%)" if wait is not None else "")
    return 0


def evaluate(args, argv) -> int:
    from nasr.tower.data import make_dataset
    from nasr.tower.ensemble import ensemble_logits, load_members, predict_members
    from nasr.tower.tower import tower_macs, tower_str
    from nasr.train.lid_metrics import lid_scores, write_lid_report
    from nasr.utils.config import load_yaml
    from nasr.utils.io import atomic_write, write_json, write_table
    from nasr.utils.log import setup_logging

    exp = Path(args.exp_dir)
    name = args.name or Path(args.data).name
    log = setup_logging(exp / "log" / f"decode_{name}.log")
    cfg = load_yaml(exp / "config.yaml")
    task = args.task or cfg.get("task", "lid")
    sizes = sorted({int(p) for p in args.num_members.split(",") if p.strip()})
    members = load_members(exp, max(sizes))
    names = members[0][0]["class_names"]
    ds = make_dataset(task, args.data, names, train=False, max_frames=int(cfg.get("max_frames", 400)))
    logits, labels, utts = predict_members(members, ds)
    frames = int(cfg.get("max_frames", 400))
    for p in sizes:
        if p > len(members):
            log.warning("only %d member(s) trained: p=%d skipped", len(members), p)
            continue
        f = ensemble_logits(logits[:p])
        scores = lid_scores(f, labels, names)
        info = members[0][0]
        extra = {
            "exp_dir": str(exp), "set": name, "p": p, "blocks": info["blocks"], "tower": tower_str(info["blocks"]),
            "params": sum(m[0]["params"] for m in members[:p]),
            "macs": p * tower_macs(info["blocks"], info["input_dim"], len(names), frames),
            "member_accs": [float((lg.argmax(1) == labels).mean()) for lg in logits[:p]],
            "train_steps": info["steps"], "train_seconds": sum(m[0]["train_seconds"] for m in members[:p]),
            "source": info.get("source", {}), "hparams": info["hparams"], "eval_command": _command(argv),
        }
        if args.format == "lid":
            out = exp / f"decode_{name}_p{p}"
            write_lid_report(out, scores, utts, f, labels, names, extra)
            summary = (out / "summary").read_text().splitlines()[0]
        else:
            if p != max(sizes) or p > len(members):
                continue
            out = exp / f"decode_{name}"
            hyps = f.argmax(1)
            correct = int((hyps == labels).sum())
            write_table(out / "hyp", {u: names[h] for u, h in zip(utts, hyps.tolist())})
            write_table(out / "errs", {u: f"ref={names[r]} hyp={names[h]}"
                                       for u, r, h in zip(utts, labels.tolist(), hyps.tolist()) if r != h})
            summary = f"%ACC {100 * scores['acc']:.2f} [ {correct} / {len(labels)} ] {out}"
            train_json = exp / "train.json"
            src = info.get("source", {})
            write_json(out / "results.json", {
                **extra, "model": "tower", "acc": scores["acc"], "correct": correct, "total": int(len(labels)),
                "labels": names, "confusion": scores["confusion"], "epochs": None,
                "device": "CPU", "genotype_source": src.get("tower_file") or src.get("store"),
                "train_command": src.get("command"),
                "train_json": str(train_json) if train_json.is_file() else None})
            with atomic_write(out / "summary") as fh:
                fh.write(summary + "\n")
        log.info("%s", summary)
        print(summary)
    return 0


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return train(args, argv) if args.command == "train" else evaluate(args, argv)


if __name__ == "__main__":
    sys.exit(main())
