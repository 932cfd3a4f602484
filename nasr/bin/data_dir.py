"""Kaldi data-dir tools behind the utils/*.sh wrappers.

    python -m nasr.bin.data_dir validate [--no-feats] [--no-text] [--no-wav] [--no-audio-check] data/train
    python -m nasr.bin.data_dir fix [--utt-extra-files "a b"] [--spk-extra-files "c"] data/train
    python -m nasr.bin.data_dir subset (--first N | --last N | --utt-list F | --spk-list F | --random N) src dst
    python -m nasr.bin.data_dir split [--per-utt] data/train 8
    python -m nasr.bin.data_dir combine data/all data/a data/b
    python -m nasr.bin.data_dir perturb-speed 0.9 data/train data/train_sp0.9
    python -m nasr.bin.data_dir utt2spk-to-spk2utt [utt2spk ...] > spk2utt     (stdin when no file)
    python -m nasr.bin.data_dir spk2utt-to-utt2spk [spk2utt ...] > utt2spk

Bad input exits 1 with one message naming the file, the line and the fix (no traceback).
"""
from __future__ import annotations

import argparse
import io
import logging
import sys
from typing import Iterable, Iterator, List, Optional

from nasr.data import datadir as dd
from nasr.utils.io import FormatError


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nasr.bin.data_dir", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    v = sub.add_parser("validate", help="check a data dir (Kaldi's validate_data_dir.sh rules)")
    v.add_argument("--no-feats", action="store_true", help="do not check feats.scp/cmvn.scp even if present")
    v.add_argument("--no-text", action="store_true", help="text may be absent")
    v.add_argument("--no-wav", action="store_true", help="wav.scp (and segments) may be absent")
    v.add_argument("--no-audio-check", action="store_true",
                   help="do not open the audio of every wav.scp entry (faster on huge sets)")
    v.add_argument("data")

    f = sub.add_parser("fix", help="sort, dedupe, keep utterances present in every file (fix_data_dir.sh)")
    f.add_argument("--utt-extra-files", default="", help="more utterance-keyed files to filter (blank-separated)")
    f.add_argument("--spk-extra-files", default="", help="more speaker-keyed files to filter (blank-separated)")
    f.add_argument("--keep-missing-audio", action="store_true",
                   help="keep utterances whose wav.scp path does not exist")
    f.add_argument("data")

    s = sub.add_parser("subset", help="subset by first/last N, id list, speaker list or random N")
    sel = s.add_mutually_exclusive_group(required=True)
    sel.add_argument("--first", type=int)
    sel.add_argument("--last", type=int)
    sel.add_argument("--utt-list")
    sel.add_argument("--spk-list")
    sel.add_argument("--random", type=int, dest="random_n", metavar="N")
    s.add_argument("--seed", type=int, default=777, help="for --random")
    s.add_argument("src")
    s.add_argument("dst")

    sp = sub.add_parser("split", help="split into <data>/split<N>/<k> (by speaker) or split<N>utt/<k>")
    sp.add_argument("--per-utt", action="store_true", help="split by utterance (default: by speaker, as Kaldi)")
    sp.add_argument("data")
    sp.add_argument("num_to_split", type=int)

    c = sub.add_parser("combine", help="union of data dirs; duplicate utterance ids are errors")
    c.add_argument("dst")
    c.add_argument("srcs", nargs="+")

    ps = sub.add_parser("perturb-speed", help="speed-perturbed copy with sp<factor>- ids")
    ps.add_argument("factor", type=float)
    ps.add_argument("src")
    ps.add_argument("dst")

    for name, what in (("utt2spk-to-spk2utt", "utt2spk"), ("spk2utt-to-utt2spk", "spk2utt")):
        t = sub.add_parser(name, help=f"convert {what} read from files or stdin, to stdout")
        t.add_argument("inputs", nargs="*", help=f"{what} files (default: stdin)")
    return p


def _input_lines(paths: List[str]) -> Iterator[str]:
    if not paths:
        # explicit UTF-8: ids and transcripts are in any script, whatever the locale (path.sh sets LC_ALL=C)
        yield from io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
        return
    for path in paths:
        with open(path, encoding="utf-8") as f:
            yield from f


def _write_lines(lines: Iterable[str]) -> None:
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
    try:
        for line in lines:
            out.write(line)
    finally:
        out.flush()
        out.detach()


def run(args: argparse.Namespace) -> int:
    if args.command == "validate":
        summary = dd.validate_data_dir(args.data, check_audio=not args.no_audio_check, no_text=args.no_text,
                                       no_wav=args.no_wav, no_feats=args.no_feats)
        rates = summary["sample_rates"]
        print(f"Successfully validated data-directory {args.data}: {summary['utterances']} utterances, "
              f"{summary['speakers']} speakers, {summary['recordings']} recordings"
              + (f", sample rate {'/'.join(map(str, rates))} Hz" if rates else ""))
    elif args.command == "fix":
        dd.fix_data_dir(args.data, utt_extra_files=args.utt_extra_files.split(),
                        spk_extra_files=args.spk_extra_files.split(),
                        drop_missing_audio=not args.keep_missing_audio)
    elif args.command == "subset":
        dd.subset_data_dir(args.src, args.dst, first=args.first, last=args.last, utt_list=args.utt_list,
                           spk_list=args.spk_list, random_n=args.random_n, seed=args.seed)
    elif args.command == "split":
        dd.split_data(args.data, args.num_to_split, by_speaker=not args.per_utt)
    elif args.command == "combine":
        dd.combine_data(args.dst, args.srcs)
    elif args.command == "perturb-speed":
        dd.perturb_speed(args.src, args.dst, args.factor)
    elif args.command == "utt2spk-to-spk2utt":
        _write_lines(dd.stream_utt2spk_to_spk2utt(_input_lines(args.inputs)))
    elif args.command == "spk2utt-to-utt2spk":
        _write_lines(dd.stream_spk2utt_to_utt2spk(_input_lines(args.inputs)))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        return run(args)
    except BrokenPipeError:  # `... | head`: not an error of ours
        return 0
    except (FormatError, ValueError, OSError) as e:
        # UnicodeDecodeError is a ValueError: a non-UTF-8 input lands here too, without a traceback
        print(f"{args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
