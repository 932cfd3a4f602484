"""CTC prefix beam search with a lexicon and an ARPA n-gram LM, via flashlight-text's LexiconDecoder.

flashlight-text's PyPI wheel is built without KenLM, so the ARPA model is served to it through its
Python `LM` interface by `ArpaLM` (nasr.asr.ngram.NgramLM queries, natural-log scores). The search
walks a trie of the lexicon's pronunciations (unit ids), scores complete words with the LM, and
smears the best unigram score over the trie for early pruning -- the same decoder torchaudio's
`ctc_decoder` wraps.

    dec = LexiconBeamSearch("data/lang_syllable", "data/lm/lm.arpa", beam_size=50, lm_weight=1.0)
    words = dec.decode(log_probs)   # (T, V) CTC log-posteriors
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from nasr.asr.lexicon import read_lexicon
from nasr.asr.ngram import BOS, EOS, UNK, NgramLM
from nasr.asr.units import Units

try:  # optional dependency: the beam-search decoder is one of three; the others work without it
    from flashlight.lib.text.decoder import (LM, CriterionType, LexiconDecoder, LexiconDecoderOptions,
                                             LMState, SmearingMode, Trie)
    HAVE_FLASHLIGHT = True
except ImportError:  # pragma: no cover - exercised only where flashlight-text is missing
    HAVE_FLASHLIGHT = False
    LM = object

# Score for an LM that gives a word no probability (a word outside G after vocabulary restriction).
NO_PROB = -1e4


class ArpaLM(LM):
    """flashlight `LM` over an NgramLM: a state is a word context, remembered per LMState object."""

    def __init__(self, ngram: NgramLM, words: List[str]):
        LM.__init__(self)
        self.ngram = ngram
        self.words = words
        self.contexts: Dict[object, Tuple[str, ...]] = {}
        self.max_context = max(ngram.order - 1, 0)

    def _logprob(self, word: str, context: Tuple[str, ...]) -> float:
        lp = self.ngram.logprob(word, context)
        return NO_PROB if lp == -math.inf else lp

    def start(self, start_with_nothing: bool):
        state = LMState()
        self.contexts = {state: () if start_with_nothing else (BOS,)}
        return state

    def score(self, state, usr_token_idx: int):
        context = self.contexts[state]
        word = self.words[usr_token_idx]
        child = state.child(usr_token_idx)
        if child not in self.contexts:
            self.contexts[child] = (context + (word,))[-self.max_context:] if self.max_context else ()
        return child, self._logprob(word, context)

    def finish(self, state):
        context = self.contexts[state]
        child = state.child(len(self.words))  # a child index no word uses: the end of sentence
        self.contexts.setdefault(child, context)
        return child, self._logprob(EOS, context)


class LexiconBeamSearch:
    """Lexicon-constrained CTC beam search with an ARPA LM (flashlight-text)."""

    def __init__(self, lang_dir, arpa, beam_size: int = 50, beam_size_token: Optional[int] = None,
                 beam_threshold: float = 25.0, lm_weight: float = 1.0, word_score: float = 0.0,
                 unk_score: float = -math.inf, log_add: bool = False):
        if not HAVE_FLASHLIGHT:
            raise ImportError("beam search needs flashlight-text (fix: pip install flashlight-text)")
        lang_dir = Path(lang_dir)
        self.units = Units.load(lang_dir / "units.txt")
        lexicon = read_lexicon(lang_dir / "lexicon.txt")
        self.ngram = NgramLM.read_arpa(arpa) if not isinstance(arpa, NgramLM) else arpa
        self.words = sorted(lexicon.entries, key=lambda w: w.encode("utf-8"))
        if UNK not in lexicon:
            self.words.append(UNK)
        self.unk_word = self.words.index(UNK)
        self.lm = ArpaLM(self.ngram, self.words)
        blank = self.units.blank_id
        # CTC has no silence unit; flashlight then treats the blank as the silence token.
        self.trie = Trie(len(self.units), blank)
        start = self.lm.start(False)
        for i, w in enumerate(self.words):
            for pron in lexicon.entries.get(w, []):
                _, score = self.lm.score(start, i)
                self.trie.insert(self.units.encode(pron), i, score)
        self.trie.smear(SmearingMode.MAX)
        self.options = LexiconDecoderOptions(
            beam_size=beam_size, beam_size_token=beam_size_token or len(self.units),
            beam_threshold=beam_threshold, lm_weight=lm_weight, word_score=word_score,
            unk_score=unk_score, sil_score=0.0, log_add=log_add, criterion_type=CriterionType.CTC)
        self.decoder = LexiconDecoder(self.options, self.trie, self.lm, blank, blank, self.unk_word,
                                      [], False)

    def decode(self, log_probs) -> List[str]:
        x = np.ascontiguousarray(
            np.asarray(log_probs.detach().cpu() if hasattr(log_probs, "detach") else log_probs,
                       dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != len(self.units):
            raise ValueError(f"log-posteriors of shape {tuple(x.shape)} do not match the "
                             f"{len(self.units)} units of {self.units.path}")
        if len(x) == 0:
            return []
        results = self.decoder.decode(x.ctypes.data, x.shape[0], x.shape[1])
        if not results:
            return []
        return [self.words[i] for i in results[0].words if i >= 0]
