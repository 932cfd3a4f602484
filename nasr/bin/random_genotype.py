"""Draw a random genotype from a search's op space under the same op caps (a random-architecture
baseline row: retrained at the searched cell's budget, it tells whether the search beat chance).

The space, the cell size and the caps are read from the search config (and profile), so the draw
is from exactly the space the search derived its genotype from. Writes the genotype JSON and, beside it,
`random.json` (space, seed, caps, command), by which the report knows the row is a random draw.

e.g.: python -m nasr.bin.random_genotype --config conf/search_nas1.yaml --profile conf/synth.yaml \
        --seed 2 --out exp/random_nas1_arch2/genotype.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nasr.nas.random_genotype import random_genotype
from nasr.utils.config import load_config
from nasr.utils.io import write_json


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="the search's YAML (space, model.steps, op caps)")
    p.add_argument("--profile", default=None, help="YAML with per-config overrides (conf/synth.yaml)")
    p.add_argument("--space", default=None, help="op space (default: the config's `space`)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", required=True, help="genotype JSON to write")
    p.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    # Read only: the search step that owns this config checks its keys.
    cfg = load_config(args.config, args.override, None, profile=args.profile)
    space = args.space or cfg.get("space")
    if not space:
        raise ValueError(f"{args.config}: no `space` (fix: add `space: nas1` or pass --space)")
    m = cfg.get("model") or {}
    # search.py names the normal cell's caps max_ops, P-DARTS max_ops_normal.
    g = random_genotype(space, args.seed, steps=int(m.get("steps", 4)), multiplier=int(m.get("multiplier", 4)),
                        max_ops=cfg.get("max_ops") or cfg.get("max_ops_normal"),
                        max_ops_reduce=cfg.get("max_ops_reduce"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    g.save(args.out)
    # Beside the genotype, as search.json is beside a searched one: the report tells the rows apart.
    write_json(Path(args.out).parent / "random.json", {
        "space": space, "seed": args.seed, "max_ops": cfg.get("max_ops") or cfg.get("max_ops_normal"),
        "max_ops_reduce": cfg.get("max_ops_reduce"),
        "command": " ".join(["python -m nasr.bin.random_genotype"] + (argv if argv is not None else sys.argv[1:]))})
    print(f"wrote {args.out}: {g.to_json()}", end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
