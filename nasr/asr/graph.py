"""CTC decoding graphs: TLG = T (CTC topology) o L (lexicon) o G (n-gram LM), built with kaldifst.

Label spaces (OpenFst reserves 0 for epsilon, so every CTC unit id is shifted by one on the input
side; `kaldi_decoder.DecodableCtc` undoes the shift when it reads the log-posteriors):

    units.txt ids      0 = <blk>, 1..V-1 the units
    TLG input labels   unit id + 1  (so <blk> is 1); token disambiguation symbols #k are V + 1 + k
                       while building and become epsilon (0) in the written TLG
    TLG output labels  word ids of words.txt (<eps> 0, the lexicon words, #0, <s>, </s>)

Recipe (Kaldi's mkgraph order, icefall's CTC topology):
  G   ARPA -> FST by kaldilm (arpa2fst, backoff arcs on #0, <s>/</s> as epsilon)
  L   lexicon FST without silence (CTC needs none); homophones and pronunciations that prefix
      another one get #1, #2, ... so that L o G can be determinized; a #0:#0 self-loop at every
      state passes G's backoff symbol through
  LG  = minimize_encoded(determinize_star(L o G))
  T   the standard (full) CTC topology: one state per unit, all final; entering state k emits unit
      k, staying in k (self-loop) emits nothing, the blank state emits nothing; so "a a" without a
      blank between collapses and "a <blk> a" is two units. Each state has #k:#k loops so that
      L's disambiguation symbols reach TLG's input side, where determinization needs them.
  TLG = minimize_encoded(determinize_star(T o LG)), then the #k input labels set to epsilon and the
      arcs sorted by input label.

A graph dir holds TLG.fst, G.fst, words.txt, tokens.txt (a copy of units.txt), units.sha256 (the
fingerprint of the unit set the graph was built for) and graph.json (sizes and options).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import kaldifst

from nasr.asr.lexicon import Lexicon, read_lexicon
from nasr.asr.ngram import BOS, EOS, UNK, NgramLM
from nasr.asr.units import Units
from nasr.utils.io import FormatError, write_json

log = logging.getLogger(__name__)

TLG_FST = "TLG.fst"
G_FST = "G.fst"
WORDS_TXT = "words.txt"
TOKENS_TXT = "tokens.txt"
UNITS_SHA = "units.sha256"
GRAPH_JSON = "graph.json"
OOV_POLICIES = ("skip", "error")


class UnitMismatchError(ValueError):
    """A graph built for another unit set than the model's."""


def units_fingerprint(units_path) -> str:
    """SHA-256 of units.txt in canonical form (`unit id` lines), so whitespace changes do not matter
    but any change of unit, id or order does."""
    units = Units.load(units_path)
    canon = "".join(f"{u} {i}\n" for i, u in enumerate(units.id2unit))
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()


def check_units(graph_dir, units_path) -> None:
    """Raise UnitMismatchError when `graph_dir` was built from a different units.txt."""
    graph_dir = Path(graph_dir)
    sha_file = graph_dir / UNITS_SHA
    if not sha_file.is_file():
        raise FormatError(sha_file, None, "missing: cannot tell which unit set the graph was built for",
                          f"rebuild it with python -m nasr.bin.make_tlg --out {graph_dir}")
    expected = sha_file.read_text(encoding="utf-8").split()[0]
    got = units_fingerprint(units_path)
    if got != expected:
        raise UnitMismatchError(
            f"{graph_dir / TLG_FST} was built for another unit set than {units_path} "
            f"(sha256 {expected[:12]}... in {sha_file}, {got[:12]}... for {units_path}) "
            f"(fix: rebuild the graph from the model's lang dir: python -m nasr.bin.make_tlg "
            f"--lang <lang dir of the model> --arpa <lm.arpa> --out {graph_dir})")


# ---------------------------------------------------------------------------------------------
# pieces


def add_lexicon_disambig(entries: Sequence[Tuple[str, Tuple[str, ...]]]
                         ) -> Tuple[List[Tuple[str, Tuple[str, ...]]], int]:
    """Append #1, #2, ... to pronunciations that are shared (homophones) or that are a proper prefix
    of another pronunciation (Kaldi's add_lex_disambig.pl). Returns (entries, max disambig index)."""
    pron_count = Counter(p for _, p in entries)
    prefixes = set()
    for _, p in entries:
        for k in range(1, len(p)):
            prefixes.add(p[:k])
    next_index: Dict[Tuple[str, ...], int] = defaultdict(int)
    out = []
    max_disambig = 0
    for word, p in entries:
        if pron_count[p] > 1 or p in prefixes:
            next_index[p] += 1
            max_disambig = max(max_disambig, next_index[p])
            out.append((word, p + (f"#{next_index[p]}",)))
        else:
            out.append((word, p))
    return out, max_disambig


def build_ctc_topo(num_units: int, disambig_ids: Sequence[int] = ()) -> kaldifst.StdVectorFst:
    """Standard CTC topology over units 0..num_units-1 (0 = blank), labels shifted by one."""
    fst = kaldifst.StdVectorFst()
    for _ in range(num_units):
        fst.set_final(state=fst.add_state(), weight=0)
    fst.start = 0
    for src in range(num_units):
        for dst in range(num_units):
            # Entering unit dst's state emits dst, except a self-loop (a repeat) and the blank.
            olabel = 0 if (src == dst or dst == 0) else dst + 1
            fst.add_arc(state=src, arc=kaldifst.StdArc(dst + 1, olabel, 0, dst))
        for d in disambig_ids:
            # #k:#k (not eps:#k): the symbol must reach TLG's input side, or homophones make
            # T o LG non-functional and determinization fails; it becomes epsilon afterwards.
            fst.add_arc(state=src, arc=kaldifst.StdArc(d, d, 0, src))
    return fst


def build_lexicon_fst(entries: Sequence[Tuple[str, Tuple[str, ...]]], token2label: Dict[str, int],
                      word2id: Dict[str, int]) -> kaldifst.StdVectorFst:
    """L without silence: a loop state, one chain per pronunciation, the word on the first arc."""
    fst = kaldifst.StdVectorFst()
    loop = fst.add_state()
    fst.start = loop
    fst.set_final(state=loop, weight=0)
    for word, pron in entries:
        src = loop
        for k, unit in enumerate(pron):
            dst = loop if k == len(pron) - 1 else fst.add_state()
            fst.add_arc(state=src, arc=kaldifst.StdArc(token2label[unit], word2id[word] if k == 0 else 0, 0, dst))
            src = dst
    return fst


def fst_size(fst) -> Tuple[int, int]:
    states = fst.num_states
    arcs = sum(fst.num_arcs(s) for s in range(states))
    return states, arcs


# ---------------------------------------------------------------------------------------------
# the whole graph


def make_tlg(lang_dir, arpa, out_dir, oov: str = "skip", max_order: int = -1) -> dict:
    """Build out_dir/{TLG.fst, G.fst, words.txt, tokens.txt, units.sha256, graph.json} from
    lang_dir/{units.txt, lexicon.txt} and an ARPA LM. Returns the graph.json content.

    oov: what to do with LM words missing from the lexicon: "skip" drops the n-grams that contain
    them (and renormalises), "error" stops. Either way their count is reported.
    Outputs are written to a temporary dir and moved into place at the end: a failed build leaves
    no partial graph dir that a decoder would trust.
    """
    if oov not in OOV_POLICIES:
        raise ValueError(f"unknown OOV policy '{oov}' (fix: use one of {', '.join(OOV_POLICIES)})")
    lang_dir, out_dir = Path(lang_dir), Path(out_dir)
    units_path = lang_dir / "units.txt"
    units = Units.load(units_path)
    lexicon: Lexicon = read_lexicon(lang_dir / "lexicon.txt")

    entries: List[Tuple[str, Tuple[str, ...]]] = []
    for word, prons in lexicon.entries.items():
        if word in (BOS, EOS, "<eps>", "#0") or word.startswith("#"):
            raise FormatError(lexicon.path, None, f"reserved symbol '{word}' used as a word",
                              "remove it from the lexicon")
        for p in prons:
            bad = [u for u in p if u not in units]
            if bad:
                raise FormatError(lexicon.path, None, f"word '{word}' uses unit '{bad[0]}' missing from "
                                  f"{units_path}", "rebuild the lang dir so units.txt covers the lexicon")
            if units.blank_id in units.encode(p):
                raise FormatError(lexicon.path, None, f"word '{word}' uses the blank unit",
                                  "the blank cannot be part of a pronunciation")
            entries.append((word, tuple(p)))

    lm = NgramLM.read_arpa(arpa)
    lm_words = [w for w in lm.vocab if w not in (BOS, EOS, UNK)]
    missing = [w for w in lm_words if w not in lexicon]
    if UNK in lm.vocab and UNK not in lexicon:
        # <unk> has no pronunciation: a CTC graph cannot emit it, its n-grams are dropped quietly.
        log.info("%s has no pronunciation in %s: dropping its n-grams", UNK, lexicon.path)
    if missing:
        msg = (f"{len(missing)} of {len(lm_words)} LM words in {arpa} are not in {lexicon.path} "
               f"(e.g. {', '.join(sorted(missing)[:10])})")
        if oov == "error":
            raise ValueError(msg + " (fix: complete the lexicon, or --oov skip to drop their n-grams)")
        log.warning("%s; dropping their n-grams (--oov skip)", msg)
    if missing or (UNK in lm.vocab and UNK not in lexicon):
        lm = lm.restrict_vocab(lexicon.words())

    # words.txt: <eps>, the lexicon words in C order, then #0 <s> </s> (Kaldi's layout).
    words = sorted(lexicon.entries, key=lambda w: w.encode("utf-8"))
    word2id = {"<eps>": 0}
    for w in words + ["#0", BOS, EOS]:
        word2id[w] = len(word2id)

    disambig_entries, max_disambig = add_lexicon_disambig(entries)
    num_units = len(units)
    token2label = {u: i + 1 for i, u in enumerate(units.id2unit)}
    disambig_labels = [num_units + 1 + k for k in range(max_disambig + 1)]  # #0..#max
    for k, label in enumerate(disambig_labels):
        token2label[f"#{k}"] = label

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        with open(tmp / WORDS_TXT, "w", encoding="utf-8") as f:
            for w, i in word2id.items():
                f.write(f"{w} {i}\n")
        shutil.copyfile(units_path, tmp / TOKENS_TXT)
        (tmp / UNITS_SHA).write_text(units_fingerprint(units_path) + "  units.txt\n", encoding="utf-8")

        arpa_for_g = tmp / "lm.restricted.arpa"
        lm.write_arpa(arpa_for_g)
        import kaldilm

        g_text = kaldilm.arpa2fst(input_arpa=str(arpa_for_g), disambig_symbol="#0",
                                  read_symbol_table=str(tmp / WORDS_TXT), max_order=max_order)
        os.unlink(arpa_for_g)
        G = kaldifst.compile(s=g_text, acceptor=False)
        G.write(str(tmp / G_FST))

        L = build_lexicon_fst(disambig_entries, token2label, word2id)
        kaldifst.add_self_loops(L, isyms=[token2label["#0"]], osyms=[word2id["#0"]])
        kaldifst.arcsort(L, sort_type="olabel")
        kaldifst.arcsort(G, sort_type="ilabel")
        LG = kaldifst.compose(L, G)
        kaldifst.determinize_star(LG)  # returns True only when stopped by max_states (unlimited)
        kaldifst.minimize_encoded(LG)
        kaldifst.arcsort(LG, sort_type="ilabel")

        T = build_ctc_topo(num_units, disambig_labels)
        kaldifst.arcsort(T, sort_type="olabel")
        TLG = kaldifst.compose(T, LG)
        kaldifst.determinize_star(TLG)
        kaldifst.minimize_encoded(TLG)
        first_disambig = disambig_labels[0]
        for state in kaldifst.StateIterator(TLG):
            for arc in kaldifst.ArcIterator(TLG, state):
                if arc.ilabel >= first_disambig:
                    arc.ilabel = 0  # disambiguation symbols only served determinization
        kaldifst.arcsort(TLG, sort_type="ilabel")
        TLG.write(str(tmp / TLG_FST))

        states, arcs = fst_size(TLG)
        info = {
            "lang_dir": str(lang_dir), "arpa": str(arpa), "oov": oov,
            "lm_words_missing_from_lexicon": len(missing),
            "num_units": num_units, "num_words": len(words), "max_disambig": max_disambig,
            "TLG": {"states": states, "arcs": arcs, "bytes": (tmp / TLG_FST).stat().st_size},
            "G": dict(zip(("states", "arcs"), fst_size(G))),
        }
        write_json(tmp / GRAPH_JSON, info)
        # Replace the old graph dir only now that every file is complete.
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.rename(out_dir, old / "g")
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("TLG: %d states, %d arcs, %d bytes -> %s", states, arcs, info["TLG"]["bytes"], out_dir)
    return info


def read_symbol_table(path) -> Dict[int, str]:
    """id -> symbol of a `symbol id` table (words.txt)."""
    table: Dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 2 or not fields[1].isdigit():
                raise FormatError(path, lineno, f"expected 'symbol id', got '{line.rstrip()}'",
                                  "regenerate the graph dir with nasr.bin.make_tlg")
            table[int(fields[1])] = fields[0]
    return table
