"""Prepare a lang dir: CTC units, a unit lexicon and the training text in units.

Usage:
  python -m nasr.bin.prepare_lang --data DATA_DIR --unit syllable|char|bpe --out LANG_DIR
      [--lexicon LEXICON] [--bpe-size N] [--oov map-to-unk|skip-utt|error]

e.g.:
  python -m nasr.bin.prepare_lang --data data/train --lexicon data/local/lexicon.txt \\
      --unit syllable --out data/lang_syllable

Units:
  syllable  the paper's CI-syllable units: the toned Mandarin syllables of the lexicon (phone-style
            entries `zh ong1 g uo2` are joined into `zhong1 guo2`), plus English phones without
            stress when the lexicon has English words, plus the blank.  All syllables of the lexicon
            are units, not only those of the training text, so dev/test words are covered too.
  char      the characters of the training text (runs of Latin letters/digits are one unit).
  bpe       sentencepiece BPE trained on the training text (--bpe-size pieces at most).

Writes into LANG_DIR: units.txt (`<blk> 0`, `<unk> 1`, units...), lexicon.txt (word -> units),
text_units (the training utterances in units), oov_counts.txt, bpe.model (bpe), and lang.json last:
a lang dir without lang.json is unfinished and no reader accepts it.

OOV words (syllable: not in the lexicon and not splittable into lexicon words by maximum
matching) are counted in the log and in oov_counts.txt; --oov chooses what happens to them.
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

from nasr.asr.lexicon import Lexicon, read_lexicon, syllable_lexicon, write_lexicon
from nasr.asr.units import (BLANK, OOV_POLICIES, UNIT_TYPES, UNK, OovError, Tokenizer, Units,
                            split_chars)
from nasr.utils.io import FormatError, atomic_write, iter_table, write_json

log = logging.getLogger("nasr.prepare_lang")


def read_text(data_dir: Path) -> Dict[str, tuple]:
    """utt -> (line number, transcript) of DATA_DIR/text."""
    path = data_dir / "text"
    if not path.is_file():
        raise FormatError(path, None, "missing", "run the data preparation stage first")
    out = {}
    for lineno, utt, rest in iter_table(path):
        if utt in out:
            raise FormatError(path, lineno, f"duplicate utterance '{utt}'", f"utils/fix_data_dir.sh {data_dir}")
        out[utt] = (lineno, rest)
    if not out:
        raise FormatError(path, None, "is empty", "the data preparation produced no transcripts")
    return out


def train_bpe(texts: List[str], out_dir: Path, vocab_size: int):
    """Train sentencepiece BPE on the transcripts; saves out_dir/bpe.model, returns the processor."""
    import sentencepiece as spm

    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        corpus = Path(tmp) / "text.txt"
        corpus.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        spm.SentencePieceTrainer.train(
            input=str(corpus), model_prefix=str(Path(tmp) / "bpe"), model_type="bpe",
            vocab_size=vocab_size,
            # Mandarin has thousands of characters: cover all, or rare ones would map to <unk>.
            character_coverage=1.0,
            # A small corpus cannot fill a large vocabulary; take what it has instead of failing.
            hard_vocab_limit=False,
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1, unk_piece=UNK,
            num_threads=1, minloglevel=2)
        model = (Path(tmp) / "bpe.model").read_bytes()
    with atomic_write(out_dir / "bpe.model", mode="wb") as f:
        f.write(model)
    return spm.SentencePieceProcessor(model_file=str(out_dir / "bpe.model"))


def build_units(unit_type: str, texts: List[str], lexicon: Optional[Lexicon], out_dir: Path,
                bpe_size: int):
    """(unit list without blank/unk, unit lexicon, sentencepiece processor or None)."""
    sp = None
    if unit_type == "syllable":
        unit_lex = syllable_lexicon(lexicon)
        units = unit_lex.units()
    elif unit_type == "char":
        units = sorted({c for t in texts for c in split_chars(t)}, key=lambda u: u.encode("utf-8"))
        unit_lex = None
    else:
        sp = train_bpe(texts, out_dir, bpe_size)
        units = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if not sp.is_unknown(i)]
        unit_lex = None
    if unit_lex is None:
        # The words of the training text (and of the given lexicon) spelled in the units, for the
        # later lexicon FST; a word with a character outside the units cannot be spelled.
        words = {w for t in texts for w in t.split()}
        if lexicon is not None:
            words |= set(lexicon.words())
        unit_set = set(units)
        unit_lex = Lexicon()
        unspellable = 0
        for w in sorted(words, key=lambda w: w.encode("utf-8")):
            pron = split_chars(w) if unit_type == "char" else sp.encode(w, out_type=str)
            if pron and all(p in unit_set for p in pron):
                unit_lex.add(w, pron)
            else:
                unspellable += 1
        if unspellable:
            log.info("lexicon: %d words use characters outside the units and are left out", unspellable)
    units = [u for u in units if u not in (BLANK, UNK)]
    return units, unit_lex, sp


def prepare_lang(data_dir, out_dir, unit_type: str, lexicon_path=None, bpe_size: int = 500,
                 oov: str = "map-to-unk") -> Dict:
    """Write the lang dir (see module doc); returns the lang.json content."""
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if unit_type not in UNIT_TYPES:
        raise ValueError(f"--unit must be one of {', '.join(UNIT_TYPES)}, got '{unit_type}'")
    if oov not in OOV_POLICIES:
        raise ValueError(f"--oov must be one of {', '.join(OOV_POLICIES)}, got '{oov}'")
    if unit_type == "syllable" and lexicon_path is None:
        raise ValueError("--unit syllable needs --lexicon (word -> syllables or initial/final phones)")
    if unit_type == "bpe" and bpe_size < 2:
        raise ValueError(f"--bpe-size must be at least 2, got {bpe_size}")
    text = read_text(data_dir)
    lexicon = read_lexicon(lexicon_path) if lexicon_path is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    # An older lang.json would vouch for files this run is about to replace.
    (out_dir / "lang.json").unlink(missing_ok=True)

    texts = [t for _, t in text.values()]
    units, unit_lex, sp = build_units(unit_type, texts, lexicon, out_dir, bpe_size)
    inventory = Units([BLANK, UNK] + units)

    # Convert with map-to-unk to count every OOV; the policy is applied afterwards so that an
    # error reports the total, not just the first one.
    tok = Tokenizer(unit_type, inventory, lexicon=unit_lex, sp_model=sp, oov="map-to-unk")
    converted: Dict[str, List[str]] = {}
    first_oov = None
    for utt, (lineno, t) in text.items():
        before = tok.stats.oov_tokens
        converted[utt] = tok(t)
        if tok.stats.oov_tokens > before:
            if first_oov is None:
                first_oov = (lineno, utt)
            if oov == "skip-utt":
                del converted[utt]
    stats = tok.stats
    if stats.oov_words:
        log.warning("OOV: %s (policy %s)", stats.describe(), oov)
        if oov == "error":
            lineno, utt = first_oov
            raise OovError(str(FormatError(
                data_dir / "text", lineno,
                f"utterance '{utt}' has a word outside the {unit_type} lexicon/units; "
                f"{stats.describe()}",
                "add the words to the lexicon, or pass --oov map-to-unk / --oov skip-utt")))
    else:
        log.info("OOV: none in %d utterances%s", stats.utts,
                 f" ({stats.segmented} out-of-lexicon words split into lexicon words)"
                 if stats.segmented else "")
    if oov == "skip-utt" and stats.oov_utts:
        log.info("skip-utt: %d utterances left out of text_units", stats.oov_utts)
    if not converted:
        raise FormatError(data_dir / "text", None, "no utterance is left after OOV handling",
                          "use a lexicon that covers the text, or --oov map-to-unk")

    # Coverage check: every unit the training text uses is in units.txt (the bpe/char inventories
    # come from that text; syllables come from the lexicon the text was spelled with).
    used = {u for us in converted.values() for u in us}
    missing = sorted(used - set(inventory.unit2id))
    if missing:
        raise RuntimeError(f"internal error: units {missing[:5]} used by the text are not in units.txt")

    inventory.write(out_dir / "units.txt")
    write_lexicon(out_dir / "lexicon.txt", unit_lex)
    with atomic_write(out_dir / "text_units") as f:
        for utt in sorted(converted, key=lambda u: u.encode("utf-8")):
            f.write(f"{utt} {' '.join(converted[utt])}\n")
    with atomic_write(out_dir / "oov_counts.txt") as f:
        for w, n in sorted(stats.oov_words.items(), key=lambda kv: (-kv[1], kv[0].encode("utf-8"))):
            f.write(f"{w} {n}\n")
    unused = len(set(units) - used)
    info = {
        "unit_type": unit_type,
        "num_units": len(inventory),
        "blank": BLANK, "blank_id": 0, "unk": UNK, "unk_id": inventory.unk_id,
        "oov": oov,
        "data": str(data_dir),
        "lexicon": str(lexicon_path) if lexicon_path is not None else None,
        "bpe_size": bpe_size if unit_type == "bpe" else None,
        "utterances": len(text),
        "utterances_kept": len(converted),
        "oov_tokens": stats.oov_tokens,
        "oov_words": len(stats.oov_words),
        "oov_utterances": stats.oov_utts,
        "segmented_words": stats.segmented,
        "units_unused_in_training_text": unused,
    }
    if unit_type == "syllable":
        english = [u for u in units if u.isupper()]
        info["mandarin_syllables"] = len(units) - len(english)
        info["english_phones"] = len(english)
        log.info("units: %d (blank, unk, %d Mandarin syllables, %d English phones); %d unused in "
                 "the training text", len(inventory), len(units) - len(english), len(english), unused)
    else:
        log.info("units: %d (blank, unk and %d %s units)", len(inventory), len(units), unit_type)
    write_json(out_dir / "lang.json", info)
    return info


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="e.g.: python -m nasr.bin.prepare_lang --data data/train "
               "--lexicon data/local/lexicon.txt --unit syllable --out data/lang_syllable",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="training data dir (its `text` is read)")
    parser.add_argument("--lexicon", default=None,
                        help="word lexicon (required for syllable units; optional for char/bpe: its "
                             "words are added to the unit lexicon)")
    parser.add_argument("--unit", choices=UNIT_TYPES, default="syllable", help="unit type")
    parser.add_argument("--out", required=True, help="lang dir to write")
    parser.add_argument("--bpe-size", type=int, default=500, help="sentencepiece vocabulary size (bpe)")
    parser.add_argument("--oov", choices=OOV_POLICIES, default="map-to-unk",
                        help="what to do with out-of-vocabulary words (also the default of datasets "
                             "reading this lang dir)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from nasr.utils.log import setup_logging

    from nasr.utils.uptodate import Stamp

    args = get_parser().parse_args(argv)
    setup_logging()
    out = Path(args.out)
    done = Stamp(out / ".done.json", vars(args), inputs=[Path(args.data) / "text", args.lexicon], what=out)
    if done.is_current(outputs=[out / "lang.json"]):
        return 0
    done.clear()
    try:
        prepare_lang(args.data, args.out, args.unit, args.lexicon, args.bpe_size, args.oov)
    except (ValueError, RuntimeError) as e:  # FormatError and OovError are ValueErrors
        log.error("%s", e)
        return 1
    done.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
