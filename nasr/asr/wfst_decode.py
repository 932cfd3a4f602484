"""WFST decoding of CTC log-posteriors over a TLG graph with kaldi-decoder's FasterDecoder.

    dec = WfstDecoder("data/lang_syllable/graph", beam=16, units_path="data/lang_syllable/units.txt")
    words = dec.decode(log_probs)        # log_probs: (T, V) CTC log-posteriors, V = len(units.txt)

Blank skipping: a frame whose blank posterior exceeds `blank_skip_threshold` carries no unit, so
it is dropped before the search -- except the first frame of each run of such frames, which is
kept because a blank between two equal units ("a <blk> a") is what makes them two units rather than
one; dropping it would change the CTC collapse. CTC outputs are mostly long blank runs, so this
still removes most frames.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence

import kaldi_decoder
import kaldifst
import numpy as np

from nasr.asr.graph import (TLG_FST, TOKENS_TXT, WORDS_TXT, check_units, read_symbol_table)
from nasr.asr.units import Units
from nasr.utils.io import FormatError

log = logging.getLogger(__name__)


def skip_blank_frames(log_probs: np.ndarray, threshold: Optional[float], blank_id: int = 0) -> np.ndarray:
    """Drop frames with blank posterior > threshold, keeping the first frame of every such run."""
    if threshold is None or len(log_probs) == 0:
        return log_probs
    is_blank = log_probs[:, blank_id] > np.log(threshold)
    prev_blank = np.concatenate([[False], is_blank[:-1]])
    return log_probs[~(is_blank & prev_blank)]


class WfstDecoder:
    """Viterbi beam search over TLG (kaldi_decoder.FasterDecoder + DecodableCtc); returns words."""

    def __init__(self, graph_dir, beam: float = 16.0, max_active: int = 7000, min_active: int = 20,
                 acoustic_scale: float = 1.0, blank_skip_threshold: Optional[float] = None,
                 units_path=None):
        self.graph_dir = Path(graph_dir)
        tlg = self.graph_dir / TLG_FST
        if not tlg.is_file():
            raise FormatError(tlg, None, "no decoding graph",
                              f"build it with python -m nasr.bin.make_tlg --out {self.graph_dir}")
        if units_path is not None:
            check_units(self.graph_dir, units_path)
        self.num_units = len(Units.load(self.graph_dir / TOKENS_TXT))
        self.id2word = read_symbol_table(self.graph_dir / WORDS_TXT)
        self.fst = kaldifst.StdVectorFst.read(str(tlg))
        self.options = kaldi_decoder.FasterDecoderOptions(beam=beam, max_active=max_active,
                                                          min_active=min_active)
        self.acoustic_scale = acoustic_scale
        self.blank_skip_threshold = blank_skip_threshold
        self.decoder = kaldi_decoder.FasterDecoder(self.fst, self.options)

    def decode(self, log_probs) -> List[str]:
        """Best word sequence for one utterance's (T, V) CTC log-posteriors (numpy or torch)."""
        x = np.asarray(log_probs.detach().cpu() if hasattr(log_probs, "detach") else log_probs,
                       dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.num_units:
            raise ValueError(f"log-posteriors of shape {tuple(x.shape)} do not match the graph's "
                             f"{self.num_units} units ({self.graph_dir / TOKENS_TXT}) "
                             "(fix: decode with the graph built from the model's units.txt)")
        x = skip_blank_frames(x, self.blank_skip_threshold)
        if len(x) == 0:
            return []
        if self.acoustic_scale != 1.0:
            x = x * np.float32(self.acoustic_scale)
        decodable = kaldi_decoder.DecodableCtc(np.ascontiguousarray(x))
        self.decoder.decode(decodable)
        ok, lattice = self.decoder.get_best_path()
        if not ok:
            log.warning("no surviving path reached the end; try a larger --beam")
            return []
        ok, _, olabels, _ = kaldifst.get_linear_symbol_sequence(lattice)
        return [self.id2word[w] for w in olabels if w != 0]

    def decode_batch(self, log_probs: Sequence, lengths: Optional[Sequence[int]] = None) -> List[List[str]]:
        """Decode a (N, T, V) batch (or a list of (T_i, V) arrays); `lengths` trims the padding."""
        out = []
        for i, x in enumerate(log_probs):
            if lengths is not None:
                x = x[: int(lengths[i])]
            out.append(self.decode(x))
        return out
