"""Lexicon-constrained CTC prefix beam search with an ARPA word n-gram LM (pure Python).

    dec = CtcPrefixBeamSearch("data/lang_syllable", "data/lm/lm.arpa", beam_size=16, lm_weight=1.0)
    words = dec.decode(log_probs)   # (T, V) CTC log-posteriors

Why not flashlight-text: its PyPI wheel has no KenLM, and its LexiconDecoder, given CTC units with
no word-boundary (silence) token -- our syllable units -- re-emits a word on every repeated frame of
its last unit (tested: 160% WER without an LM on the synthetic bench), so it is not used.

The search (Graves' CTC prefix search, as in Hannun et al. 2014, with a lexicon): a hypothesis is
(completed words, units of the word in progress); it keeps the probability of its unit prefix
ending in blank (pb) and in a non-blank (pnb). A unit may extend a hypothesis only along a
pronunciation in the lexicon trie; when the units in progress spell a word, the hypothesis also
branches into "word completed", scored by the LM (`lm_weight` x ln p(word | history) +
`word_score`). Hypotheses are ranked by acoustic + LM score and cut to `beam_size` per frame; only
the `token_beam` best units of a frame (plus blank) are expanded. While a word is in progress the
ranking adds the best unigram score of the words it can still become (flashlight's MAX smearing). At the end `</s>` is scored and
only hypotheses with no word in progress count.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from nasr.asr.lexicon import read_lexicon
from nasr.asr.ngram import BOS, EOS, NgramLM
from nasr.asr.units import Units
from nasr.asr.wfst_decode import skip_blank_frames

NEG_INF = -math.inf
# LM score for a lexicon word the LM does not know (no unigram and no <unk>): effectively never.
NO_PROB = -1e4


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


class _TrieNode:
    __slots__ = ("children", "words", "lookahead")

    def __init__(self):
        self.children: Dict[int, "_TrieNode"] = {}
        self.words: List[str] = []  # words whose pronunciation ends here (homophones: several)
        self.lookahead = 0.0  # best unigram log-prob of a word below this node


class CtcPrefixBeamSearch:
    """CTC prefix beam search over lexicon words with an n-gram LM (see the module docstring)."""

    def __init__(self, lang_dir, arpa, beam_size: int = 16, lm_weight: float = 1.0,
                 word_score: float = 0.0, token_beam: int = 8,
                 blank_skip_threshold: Optional[float] = None):
        lang_dir = Path(lang_dir)
        self.units = Units.load(lang_dir / "units.txt")
        lexicon = read_lexicon(lang_dir / "lexicon.txt")
        self.lm = arpa if isinstance(arpa, NgramLM) else NgramLM.read_arpa(arpa)
        self.beam_size, self.lm_weight, self.word_score = beam_size, lm_weight, word_score
        self.token_beam, self.blank_skip_threshold = token_beam, blank_skip_threshold
        self.root = _TrieNode()
        for word, prons in lexicon.entries.items():
            for pron in prons:
                node = self.root
                for u in self.units.encode(pron):
                    node = node.children.setdefault(u, _TrieNode())
                node.words.append(word)
        self._smear(self.root)
        self.root.lookahead = 0.0
        self._lm_cache: Dict[Tuple[Tuple[str, ...], str], float] = {}

    def _smear(self, node: _TrieNode) -> float:
        best = max((self._unigram(w) for w in node.words), default=NEG_INF)
        for child in node.children.values():
            best = max(best, self._smear(child))
        node.lookahead = best
        return best

    def _unigram(self, word: str) -> float:
        lp = self.lm.logprob(word, ())
        return NO_PROB if lp == NEG_INF else lp

    def _lm_score(self, history: Tuple[str, ...], word: str) -> float:
        context = ((BOS,) + history)[-(self.lm.order - 1):] if self.lm.order > 1 else ()
        key = (context, word)
        if key not in self._lm_cache:
            lp = self.lm.logprob(word, context)
            self._lm_cache[key] = NO_PROB if lp == NEG_INF else lp
        return self._lm_cache[key]

    def decode(self, log_probs) -> List[str]:
        x = np.asarray(log_probs.detach().cpu() if hasattr(log_probs, "detach") else log_probs,
                       dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.units):
            raise ValueError(f"log-posteriors of shape {tuple(x.shape)} do not match the "
                             f"{len(self.units)} units of {self.units.path}")
        x = skip_blank_frames(x, self.blank_skip_threshold)
        blank = self.units.blank_id
        # key: (words, node, last unit) -> [pb, pnb, lm]; `node` is the trie node of the word in
        # progress (root: none), `last` the last unit of the prefix (-1 at the start).
        beams: Dict[tuple, list] = {((), id(self.root), -1): [0.0, NEG_INF, 0.0]}
        nodes = {id(self.root): self.root}
        for frame in x:
            top = np.argpartition(-frame, min(self.token_beam, len(frame) - 1))[: self.token_beam]
            candidates = [int(u) for u in top if int(u) != blank]
            p_blank = float(frame[blank])
            nxt: Dict[tuple, list] = {}

            def add(key, pb, pnb, lm):
                entry = nxt.get(key)
                if entry is None:
                    nxt[key] = [pb, pnb, lm]
                else:
                    entry[0] = _logaddexp(entry[0], pb)
                    entry[1] = _logaddexp(entry[1], pnb)

            for (words, node_id, last), (pb, pnb, lm) in beams.items():
                total = _logaddexp(pb, pnb)
                add((words, node_id, last), total + p_blank, NEG_INF, lm)  # blank
                if last >= 0:  # the last unit repeated without a blank collapses into it
                    add((words, node_id, last), NEG_INF, pnb + float(frame[last]), lm)
                node = nodes[node_id]
                for u in candidates:
                    child = node.children.get(u)
                    if child is None:
                        continue
                    # A unit equal to the last one starts a new unit only after a blank.
                    p = (pb if u == last else total) + float(frame[u])
                    nodes[id(child)] = child
                    if child.children:  # the word may go on
                        add((words, id(child), u), NEG_INF, p, lm)
                    for w in child.words:  # or end here, as each of its homophones
                        add((words + (w,), id(self.root), u), NEG_INF, p,
                            lm + self.lm_weight * self._lm_score(words, w) + self.word_score)
            # Rank with the look-ahead of the word in progress, so that a hypothesis inside a word
            # (no LM cost yet) does not push out one that has just paid for its word.
            ranked = sorted(nxt.items(), reverse=True, key=lambda kv: _logaddexp(kv[1][0], kv[1][1])
                            + kv[1][2] + self.lm_weight * nodes[kv[0][1]].lookahead)
            beams = dict(ranked[: self.beam_size])

        best, best_score = [], NEG_INF
        for (words, node_id, _), (pb, pnb, lm) in beams.items():
            if node_id != id(self.root):
                continue  # a word still in progress is not a complete hypothesis
            score = _logaddexp(pb, pnb) + lm + self.lm_weight * self._lm_score(words, EOS)
            if score > best_score:
                best, best_score = list(words), score
        return best
