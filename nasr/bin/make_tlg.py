"""Build the CTC decoding graph TLG.fst from a lang dir and an ARPA LM.

Usage:
  python -m nasr.bin.make_tlg --lang LANG_DIR --arpa LM.arpa --out GRAPH_DIR [--oov skip|error]
      [--max-order N]

e.g.:
  python -m nasr.bin.make_tlg --lang data/lang_syllable --arpa data/lm/lm.arpa --out data/lang_syllable/graph

LANG_DIR holds units.txt and lexicon.txt (nasr.bin.prepare_lang). GRAPH_DIR gets TLG.fst, G.fst,
words.txt, tokens.txt (a copy of units.txt), units.sha256 (the decoder refuses a model whose
units.txt differs) and graph.json (sizes). LM words missing from the lexicon are counted and their
n-grams dropped (--oov skip) or the build stops (--oov error). The graph dir is replaced only when
every file is complete.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nasr.asr.graph import OOV_POLICIES, make_tlg
from nasr.utils.uptodate import Stamp

log = logging.getLogger("nasr.make_tlg")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lang", required=True, help="lang dir with units.txt and lexicon.txt")
    p.add_argument("--arpa", required=True, help="ARPA n-gram LM (nasr.bin.train_ngram)")
    p.add_argument("--out", required=True, help="output graph dir")
    p.add_argument("--oov", choices=OOV_POLICIES, default="skip",
                   help="LM words missing from the lexicon: drop their n-grams, or stop")
    p.add_argument("--max-order", type=int, default=-1, help="use the LM only up to this order (-1: all)")
    return p


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # The lang dir's own files (units, lexicon), not its subdirs: the graph is usually written there.
    done = Stamp(Path(args.out) / ".done.json", vars(args), inputs=[args.lang, args.arpa], what=args.out)
    if done.is_current(outputs=[Path(args.out) / "TLG.fst"]):
        return
    done.clear()
    info = make_tlg(args.lang, args.arpa, args.out, oov=args.oov, max_order=args.max_order)
    log.info("graph %s: TLG %s; %d LM words missing from the lexicon", args.out, info["TLG"],
             info["lm_words_missing_from_lexicon"])
    done.write()


if __name__ == "__main__":
    main()
