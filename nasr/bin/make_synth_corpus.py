"""Make a synthetic corpus shaped like a real release, spoken by eSpeak NG.

Usage: python -m nasr.bin.make_synth_corpus <corpus> [options] <out-dir>
 e.g.: python -m nasr.bin.make_synth_corpus speech_commands --num-speakers 40 --nj 2 corpora/sc_synth
       python -m nasr.bin.make_synth_corpus aishell1 --num-speakers 20 4 4 corpora/aishell1_synth
       python -m nasr.bin.make_synth_corpus aishell2 --num-speakers 20 2 2 corpora/aishell2_synth
       python -m nasr.bin.make_synth_corpus lid --languages en de fr es it pt nl sv pl ru corpora/lid

The corpus is built in a temp folder beside <out-dir> and renamed into place when complete, with a
`.done` marker holding the arguments; a rerun with the same arguments does nothing, and a folder
made with other arguments is never overwritten.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from nasr.data.synth import CorpusExistsError

log = logging.getLogger("make_synth_corpus")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m nasr.bin.make_synth_corpus",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    sub = p.add_subparsers(dest="corpus", required=True, metavar="corpus")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--seed", type=int, default=0, help="corpus seed (default: %(default)s)")
        sp.add_argument("--nj", type=int, default=1,
                        help="worker processes; synthesis is CPU bound (default: %(default)s)")
        sp.add_argument("out_dir", help="folder to create")

    sc = sub.add_parser("speech_commands", help="Speech Commands v0.01 layout (30 words)")
    sc.add_argument("--num-speakers", type=int, default=40, help="(default: %(default)s)")
    sc.add_argument("--utts-per-word", type=int, default=1,
                    help="clips of each word per speaker (default: %(default)s)")
    sc.add_argument("--words", nargs="+", default=None,
                    help="word folders to make (default: the 30 official v0.01 words)")
    sc.add_argument("--noise-seconds", type=float, default=30.0,
                    help="length of each _background_noise_ file (default: %(default)s)")
    sc.add_argument("--snr-db", type=float, nargs=2, default=(10.0, 30.0), metavar=("LOW", "HIGH"),
                    help="range of per-clip SNRs in dB (default: 10 30)")
    common(sc)

    for name, default_spk, what in (("aishell1", (20, 4, 4), "AISHELL-1 layout (data_aishell/, "
                                     "resource_aishell/)"),
                                    ("aishell2", (20, 2, 2), "AISHELL-2 iOS layout with "
                                     "AISHELL-DEV-TEST-SET")):
        a = sub.add_parser(name, help=what)
        a.add_argument("--num-speakers", type=int, nargs=3, default=default_spk,
                       metavar=("TRAIN", "DEV", "TEST"),
                       help=f"speakers per set (default: {' '.join(map(str, default_spk))})")
        a.add_argument("--utts-per-speaker", type=int, default=20, help="(default: %(default)s)")
        a.add_argument("--vocab-size", type=int, default=600,
                       help="Mandarin words sentences are drawn from (default: %(default)s)")
        if name == "aishell1":
            a.add_argument("--missing-audio", type=int, default=0,
                           help="transcript lines left without a wav (default: %(default)s)")
            a.add_argument("--missing-transcript", type=int, default=0,
                           help="wavs left without a transcript line (default: %(default)s)")
        common(a)

    lid = sub.add_parser("lid", help="VoxLingua107 layout (<lang>/<video>__U__S<n>---<t>.wav)")
    lid.add_argument("--languages", nargs="+", default=None,
                     help="ISO 639-1 codes (default: en de fr es it pt nl sv pl ru tr fi)")
    lid.add_argument("--utts-per-language", type=int, default=40, help="(default: %(default)s)")
    lid.add_argument("--num-speakers-per-language", type=int, default=8,
                     help="(default: %(default)s)")
    common(lid)
    return p


def build(args: argparse.Namespace) -> bool:
    if args.corpus == "speech_commands":
        from nasr.data.synth.speech_commands import WORDS, make_speech_commands

        return make_speech_commands(args.out_dir, num_speakers=args.num_speakers,
                                    utts_per_word=args.utts_per_word, words=args.words or WORDS,
                                    noise_seconds=args.noise_seconds, snr_db=tuple(args.snr_db),
                                    seed=args.seed, num_workers=args.nj)
    if args.corpus == "aishell1":
        from nasr.data.synth.aishell import make_aishell1

        return make_aishell1(args.out_dir, num_speakers=args.num_speakers,
                             utts_per_speaker=args.utts_per_speaker, vocab_size=args.vocab_size,
                             seed=args.seed, num_workers=args.nj, missing_audio=args.missing_audio,
                             missing_transcript=args.missing_transcript)
    if args.corpus == "aishell2":
        from nasr.data.synth.aishell import make_aishell2

        return make_aishell2(args.out_dir, num_speakers=args.num_speakers,
                             utts_per_speaker=args.utts_per_speaker, vocab_size=args.vocab_size,
                             seed=args.seed, num_workers=args.nj)
    from nasr.data.synth.lid import DEFAULT_LANGUAGES, make_lid

    return make_lid(args.out_dir, languages=args.languages or DEFAULT_LANGUAGES,
                    utts_per_language=args.utts_per_language,
                    num_speakers_per_language=args.num_speakers_per_language, seed=args.seed,
                    num_workers=args.nj)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    log.info("%s", " ".join(sys.argv) if argv is None else "make_synth_corpus " + " ".join(argv))
    start = time.time()
    try:
        made = build(args)
    except (CorpusExistsError, ValueError) as e:
        log.error("%s", e)
        return 1
    if made:
        log.info("wrote %s corpus to %s in %.1f s", args.corpus, args.out_dir, time.time() - start)
    else:
        log.info("%s already holds this %s corpus; nothing to do", args.out_dir, args.corpus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
