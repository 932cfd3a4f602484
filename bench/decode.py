"""Decoding speed: greedy vs WFST (TLG, kaldi-decoder) vs lexicon CTC prefix beam search (Python),
on the same stored CTC outputs, one CPU thread.

Usage:
  python bench/decode.py [--utts 200] [--seconds 5] [--fps 25] [--units 400] [--words 3000]
      [--order 5] [--prune 1e-7] [--beam 16] [--max-active 7000] [--blank-skip 0.95]
      [--beam-utts 50] [--seed 0]

e.g.:
  python bench/decode.py --utts 200

Builds a synthetic lang dir (units.txt with `--units` syllable-like units, a lexicon of `--words`
words of 1-3 units with homophones), a Markov-chain text of 5000 sentences (test utterances are
fresh samples of the same chain), a pruned 5-gram ARPA
(nasr.asr.ngram) and TLG (nasr.asr.graph); then makes `--utts` utterances of `--seconds` s at
`--fps` frames/s (the model's rate after 4x subsampling): each unit a 1-3 frame spike in a blank
background, the posteriors noisy log-softmax logits, and 15% of spikes giving the top score to a
wrong unit (so that greedy makes errors and the LM has something to fix).
Prints, per decoder, the real-time factor (decode time / audio time) and the word error rate against
the synthetic truth, the graph's size (states, arcs, bytes), and the WFST RTF at the default beam
against the target 0.05 (PASS/FAIL).
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

TARGET_WFST_RTF = 0.05


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--utts", type=int, default=200)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--fps", type=float, default=25.0, help="CTC frames per second (after subsampling)")
    p.add_argument("--units", type=int, default=400, help="units besides <blk> and <unk>")
    p.add_argument("--words", type=int, default=3000)
    p.add_argument("--sentences", type=int, default=5000, help="LM training sentences")
    p.add_argument("--order", type=int, default=5)
    p.add_argument("--prune", type=float, default=1e-7)
    p.add_argument("--beam", type=float, default=16.0)
    p.add_argument("--max-active", type=int, default=7000)
    p.add_argument("--blank-skip", type=float, default=0.95, help="also time WFST with this blank skip")
    p.add_argument("--prefix-beam", type=int, default=16, help="beam size of the prefix beam search")
    p.add_argument("--beam-utts", type=int, default=50, help="utterances for the (pure Python) beam search")
    p.add_argument("--confusion", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    return p


def make_lang(root: Path, num_units: int, num_words: int, rng: random.Random):
    units = ["<blk>", "<unk>"] + [f"s{i}" for i in range(num_units)]
    lang = root / "lang"
    lang.mkdir(parents=True)
    (lang / "units.txt").write_text("".join(f"{u} {i}\n" for i, u in enumerate(units)))
    lexicon = {}
    for i in range(num_words):
        n = rng.choice([1, 2, 2, 2, 3])
        lexicon[f"w{i}"] = [f"s{rng.randrange(num_units)}" for _ in range(n)]
    (lang / "lexicon.txt").write_text("".join(f"{w} {' '.join(p)}\n" for w, p in lexicon.items()))
    return lang, units, lexicon


def make_text(lexicon, num_sentences: int, rng: random.Random):
    """A sparse Markov chain over a Zipfian vocabulary: each word has a few likely successors."""
    words = list(lexicon)
    zipf = [1.0 / (i + 1) for i in range(len(words))]
    successors = {w: rng.choices(words, zipf, k=5) for w in words}
    def sample():
        w = rng.choices(words, zipf)[0]
        s = [w]
        for _ in range(rng.randint(2, 14)):
            w = rng.choice(successors[w]) if rng.random() < 0.8 else rng.choices(words, zipf)[0]
            s.append(w)
        return s

    return [sample() for _ in range(num_sentences)], sample


def make_posteriors(words, lexicon, unit2id, num_frames, confusion, nrng: np.random.Generator):
    """(T, V) log-posteriors for a word sequence fitted into num_frames."""
    V = len(unit2id)
    ids = [unit2id[u] for w in words for u in lexicon[w]]
    logits = nrng.normal(0.0, 1.0, size=(num_frames, V)).astype(np.float32)
    logits[:, 0] += 12.0  # blank background: posterior ~0.99, as a trained CTC model's
    slot = num_frames / max(len(ids), 1)
    for k, u in enumerate(ids):
        start = int(k * slot + nrng.integers(0, max(1, int(slot) - 3)))
        for t in range(start, min(num_frames, start + int(nrng.integers(1, 4)))):
            logits[t, 0] -= 12.0
            logits[t, u] += 6.0
            if nrng.random() < confusion:  # a confusable unit takes the top score
                logits[t, int(nrng.integers(2, V))] += 7.0
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def wer(refs, hyps) -> float:
    import kaldialign

    errs = sum(kaldialign.edit_distance(r, h)["total"] for r, h in zip(refs, hyps))
    return 100.0 * errs / max(1, sum(len(r) for r in refs))


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    import torch

    torch.set_num_threads(1)
    from nasr.asr.ctc_decode import greedy_decode
    from nasr.asr.graph import make_tlg
    from nasr.asr.ngram import train_ngram
    from nasr.asr.wfst_decode import WfstDecoder

    rng = random.Random(args.seed)
    nrng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lang, units, lexicon = make_lang(root, args.units, args.words, rng)
        unit2id = {u: i for i, u in enumerate(units)}
        sentences, sample_sentence = make_text(lexicon, args.sentences, rng)
        t0 = time.perf_counter()
        lm = train_ngram(sentences, order=args.order, prune=args.prune)
        lm.write_arpa(root / "lm.arpa")
        t_lm = time.perf_counter() - t0
        t0 = time.perf_counter()
        info = make_tlg(lang, root / "lm.arpa", root / "graph")
        t_graph = time.perf_counter() - t0

        frames = int(args.seconds * args.fps)
        refs, posts = [], []
        for _ in range(args.utts):
            s = sample_sentence()  # new sentences from the LM text's source, not its copies
            n_units = sum(len(lexicon[w]) for w in s)
            while n_units > frames // 3:  # keep about 3 frames per unit at most
                s = s[:-1]
                n_units = sum(len(lexicon[w]) for w in s)
            refs.append(s)
            posts.append(make_posteriors(s, lexicon, unit2id, frames, args.confusion, nrng))
        audio = args.utts * args.seconds
        id2unit = units
        # A word's units are ambiguous (homophones), so greedy output is scored on units.
        ref_units = [[u for w in r for u in lexicon[w]] for r in refs]

        rows = []
        t0 = time.perf_counter()
        greedy = [greedy_decode(torch.from_numpy(x)[None])[0] for x in posts]
        rows.append(("greedy", (time.perf_counter() - t0) / audio,
                     wer(ref_units, [[id2unit[i] for i in g] for g in greedy]), "unit ER"))

        def run_wfst(name, **kw):
            dec = WfstDecoder(root / "graph", beam=args.beam, max_active=args.max_active,
                              units_path=lang / "units.txt", **kw)
            t0 = time.perf_counter()
            hyps = [dec.decode(x) for x in posts]
            rtf = (time.perf_counter() - t0) / audio
            rows.append((name, rtf, wer(refs, hyps), "WER"))
            rows.append((name, rtf, wer(ref_units, [[u for w in h for u in lexicon[w]] for h in hyps]),
                         "unit ER"))
            return rtf

        from nasr.asr.wfst_decode import skip_blank_frames

        kept = sum(len(skip_blank_frames(x, args.blank_skip)) for x in posts) / (frames * len(posts))
        wfst_rtf = run_wfst(f"wfst beam={args.beam:g}")
        run_wfst(f"wfst beam={args.beam:g} blank-skip={args.blank_skip:g} ({100 * kept:.0f}% frames)",
                 blank_skip_threshold=args.blank_skip)
        from nasr.asr.beam_search import CtcPrefixBeamSearch

        bs = CtcPrefixBeamSearch(lang, root / "lm.arpa", beam_size=args.prefix_beam)
        n = min(args.beam_utts, args.utts)
        t0 = time.perf_counter()
        hyps = [bs.decode(x) for x in posts[:n]]
        rtf = (time.perf_counter() - t0) / (n * args.seconds)
        rows.append((f"prefix beam search {args.prefix_beam} ({n} utts)", rtf, wer(refs[:n], hyps), "WER"))

    print(f"synthetic: {args.utts} utts x {args.seconds:g} s at {args.fps:g} frames/s, "
          f"{len(units)} units, {args.words} words, {args.order}-gram pruned at {args.prune:g} "
          f"(n-grams {lm.num_ngrams()}), 1 thread")
    print(f"LM training {t_lm:.1f} s, TLG build {t_graph:.1f} s")
    print(f"TLG: {info['TLG']['states']} states, {info['TLG']['arcs']} arcs, {info['TLG']['bytes']} bytes; "
          f"G: {info['G']['states']} states, {info['G']['arcs']} arcs")
    print(f"{'decoder':45s} {'RTF':>9s} {'error %':>8s}")
    for name, rtf, err, kind in rows:
        print(f"{name:45s} {rtf:9.5f} {err:7.2f} ({kind})")
    ok = wfst_rtf <= TARGET_WFST_RTF
    print(f"WFST RTF at beam {args.beam:g}: {wfst_rtf:.5f} vs target {TARGET_WFST_RTF}: "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
