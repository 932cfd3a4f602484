"""Train an ARPA word n-gram LM (interpolated modified Kneser-Ney, Stolcke pruning) on a Kaldi text.

Usage:
  python -m nasr.bin.train_ngram --text TEXT --out LM.arpa [--order 5] [--prune 1e-7]
      [--lexicon lexicon.txt --oov unk|skip]

e.g.:
  python -m nasr.bin.train_ngram --text data/train/text --order 5 --prune 1e-7 --out data/lm/lm.arpa

TEXT is a Kaldi text file: `utt-id word word ...`. With --lexicon, words missing from the lexicon are
counted and reported, then mapped to <unk> (--oov unk, default) or their sentences dropped
(--oov skip). The ARPA file is written atomically.
"""
from __future__ import annotations

import argparse
import logging
import sys

from nasr.asr.ngram import EmptyTextError, map_oov, read_kaldi_text, train_ngram
from nasr.asr.lexicon import read_lexicon
from nasr.utils.uptodate import Stamp

log = logging.getLogger("nasr.train_ngram")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", required=True, help="Kaldi text file (first field: utterance id)")
    p.add_argument("--out", required=True, help="output ARPA file")
    p.add_argument("--order", type=int, default=5)
    p.add_argument("--prune", type=float, default=0.0,
                   help="Stolcke relative-entropy threshold (0: no pruning; 1e-7 as in Kaldi recipes)")
    p.add_argument("--lexicon", default=None, help="lexicon.txt (word unit unit ...): report/handle OOVs")
    p.add_argument("--oov", choices=("unk", "skip"), default="unk",
                   help="words not in --lexicon: map to <unk>, or drop their sentences")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return run(args)
    except (EmptyTextError, FileNotFoundError, ValueError) as e:  # FormatError is a ValueError
        # Nothing was written: the ARPA file only appears, atomically, once the model is trained.
        log.error("%s", e)
        return 1


def run(args) -> int:
    done = Stamp(str(args.out) + ".done.json", vars(args), inputs=[args.text, args.lexicon], what=args.out)
    if done.is_current(outputs=[args.out]):
        return 0
    done.clear()
    sentences = read_kaldi_text(args.text)
    if args.lexicon:
        sentences, oov = map_oov(sentences, read_lexicon(args.lexicon).words(), args.oov)
        if oov:
            top = ", ".join(f"{w} ({c})" for w, c in oov.most_common(10))
            log.warning("%d OOV tokens (%d types) in %s not in %s; policy '%s'; most frequent: %s",
                        sum(oov.values()), len(oov), args.text, args.lexicon, args.oov, top)
        if not sentences:
            raise EmptyTextError(f"{args.text}: no sentence left after dropping OOV sentences "
                                 f"(fix: use --oov unk or complete {args.lexicon})")
    lm = train_ngram(sentences, order=args.order, prune=args.prune, source=args.text)
    lm.write_arpa(args.out)
    log.info("wrote %s: order %d, n-grams per order %s", args.out, lm.order, lm.num_ngrams())
    done.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
