"""Score hypotheses against reference transcripts: hyp, errs, summary (+ score.json).

Usage:
  python -m nasr.bin.score --ref DATA/text --hyp HYP --out-dir DIR [--unit char|token|word]
      [--name NAME] [--missing empty|skip|error] [--latin-as-word]

e.g.:
  python -m nasr.bin.score --ref data/test/text --hyp exp/train_asrnet_b/decode_test/hyp \\
      --out-dir exp/train_asrnet_b/decode_test --unit char

--unit char: %CER over characters, spaces ignored, as Kaldi's AISHELL scoring counts them (every
character a token, Latin letters and digits included; <unk>, [NOISE] whole); with --latin-as-word
a run of Latin letters/digits is one token. token: %TER over whitespace-separated units (e.g. CI
syllables); word: %WER.
Token accuracy (1 - (S+D+I)/N over those tokens) goes into score.json.  See nasr/asr/scoring.py.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, List, Optional

from nasr.asr.scoring import METRICS, write_score_files
from nasr.utils.io import FormatError, iter_table

log = logging.getLogger("nasr.score")


def read_transcripts(path, what: str) -> Dict[str, str]:
    """utt -> text; an utterance id alone on its line is an empty transcript (allowed for
    hypotheses: a decoder may output nothing)."""
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, None, f"no such {what} file",
                          "decode first" if what == "hypothesis" else "give a data dir's text file")
    out: Dict[str, str] = {}
    for lineno, utt, rest in iter_table(path):
        if utt in out:
            raise FormatError(path, lineno, f"utterance '{utt}' appears twice", "keep one line per utterance")
        out[utt] = rest
    return out


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="e.g.: python -m nasr.bin.score --ref data/test/text --hyp exp/x/decode_test/hyp "
               "--out-dir exp/x/decode_test --unit char",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True, help="reference transcripts (a data dir's text)")
    parser.add_argument("--hyp", required=True, help="hypotheses, `utt text` lines")
    parser.add_argument("--out-dir", required=True, help="where hyp, errs, summary, score.json go")
    parser.add_argument("--unit", choices=sorted(METRICS), default="char",
                        help="scoring tokens: char (CER), token (TER), word (WER)")
    parser.add_argument("--latin-as-word", action="store_true",
                        help="--unit char: score a run of Latin letters/digits as one token (default: "
                             "one token per letter, as Kaldi's AISHELL scoring)")
    parser.add_argument("--name", default=None, help="last field of the summary line (default: OUT_DIR)")
    parser.add_argument("--missing", choices=("empty", "skip", "error"), default="empty",
                        help="a reference utterance without hypothesis counts as empty (all "
                             "deletions), is skipped, or is an error")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from nasr.utils.log import setup_logging

    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        refs = read_transcripts(args.ref, "reference")
        hyps = read_transcripts(args.hyp, "hypothesis")
        out_dir = Path(args.out_dir)
        # The hypotheses may already be OUT_DIR/hyp (the decoder wrote them there): leave that file.
        same = (out_dir / "hyp").exists() and (out_dir / "hyp").resolve() == Path(args.hyp).resolve()
        write_score_files(out_dir, refs, hyps, unit=args.unit, name=args.name,
                          missing=args.missing, write_hyp=not same, latin_as_word=args.latin_as_word)
    except ValueError as e:  # FormatError is a ValueError
        log.error("%s", e)
        return 1
    print((Path(args.out_dir) / "summary").read_text(encoding="utf-8").splitlines()[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
