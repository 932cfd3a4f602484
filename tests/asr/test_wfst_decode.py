"""WFST and beam-search decoding of hand-made CTC posteriors over a tiny TLG."""
import numpy as np
import pytest

from nasr.asr.ctc_decode import greedy_decode
from nasr.asr.graph import UnitMismatchError, make_tlg
from nasr.asr.ngram import train_ngram
from nasr.asr.wfst_decode import WfstDecoder, skip_blank_frames

UNITS = ["<blk>", "<unk>", "ba1", "ma1", "ma3", "shi4"]
BLK, UNK, BA1, MA1, MA3, SHI4 = range(6)
# B is a prefix of A; X and Z are homophones; Y differs from X only by tone.
LEXICON = "A ba1 ma1\nB ba1\nC shi4\nX ma1\nY ma3\nZ ma1\n"
TEXT = ["A C", "C X", "C X", "C X", "B C", "A C X", "Y", "Z C", "C A"]
WORD_UNITS = {"A": [BA1, MA1], "B": [BA1], "C": [SHI4], "X": [MA1], "Y": [MA3], "Z": [MA1]}


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wfst")
    lang = tmp / "lang"
    lang.mkdir()
    (lang / "units.txt").write_text("".join(f"{u} {i}\n" for i, u in enumerate(UNITS)))
    (lang / "lexicon.txt").write_text(LEXICON)
    train_ngram([t.split() for t in TEXT], order=3).write_arpa(tmp / "lm.arpa")
    make_tlg(lang, tmp / "lm.arpa", tmp / "graph")
    return lang, tmp / "lm.arpa", tmp / "graph"


def posteriors(frames):
    """frames: list of unit ids (a confident frame) or {unit: prob} dicts (the rest spread evenly)."""
    x = np.zeros((len(frames), len(UNITS)))
    for t, f in enumerate(frames):
        f = {f: 0.97} if isinstance(f, int) else f
        rest = (1.0 - sum(f.values())) / (len(UNITS) - len(f))
        x[t] = rest
        for u, p in f.items():
            x[t, u] = p
    return np.log(x).astype(np.float32)


def units_of(words):
    return [u for w in words for u in WORD_UNITS[w]]


def greedy(x):
    return greedy_decode(x[None])[0]


@pytest.mark.parametrize("frames,words", [
    ([BLK, BA1, BA1, BLK, MA1, BLK, SHI4, BLK], ["A", "C"]),
    ([BLK, SHI4, BLK, BA1, MA1, MA1, BLK], ["C", "A"]),
    ([BA1, BLK, SHI4, SHI4, BLK], ["B", "C"]),
    ([SHI4, BLK, SHI4, BLK], ["C", "C"]),   # a blank separates a repeated unit
])
def test_decodes_clear_posteriors(graph, frames, words):
    lang, _, g = graph
    dec = WfstDecoder(g, units_path=lang / "units.txt")
    assert dec.decode(posteriors(frames)) == words
    assert units_of(words) == greedy(posteriors(frames))


def test_lexicon_fixes_greedy_unit_error(graph):
    lang, _, g = graph
    # ma3 slightly beats ma1 after ba1: greedy reads "ba1 ma3 shi4", which no word sequence spells
    # (A = ba1 ma1); the lexicon makes it A C.
    frames = [BLK, BA1, BLK, {MA3: 0.5, MA1: 0.45}, BLK, SHI4, BLK]
    x = posteriors(frames)
    assert greedy(x) == [BA1, MA3, SHI4]
    words = WfstDecoder(g, units_path=lang / "units.txt").decode(x)
    assert words == ["A", "C"]
    assert units_of(words) == [BA1, MA1, SHI4]


def test_lm_fixes_greedy_word_error(graph):
    lang, _, g = graph
    # After C the LM strongly prefers X (ma1) over Y (ma3); the acoustics slightly prefer ma3.
    x = posteriors([BLK, SHI4, BLK, {MA3: 0.5, MA1: 0.45}, BLK])
    assert greedy(x) == [SHI4, MA3]
    assert WfstDecoder(g).decode(x) == ["C", "X"]
    # With the acoustics scaled up far enough the LM no longer overrides them.
    assert WfstDecoder(g, acoustic_scale=50.0).decode(x) == ["C", "Y"]


def test_blank_skipping():
    x = posteriors([BLK, BLK, BLK, SHI4, BLK, BLK, SHI4, BLK])
    kept = skip_blank_frames(x, 0.9)
    # one blank kept per run: b s b s b
    assert kept.shape[0] == 5
    assert greedy(kept) == greedy(x) == [SHI4, SHI4]
    assert skip_blank_frames(x, None) is x


def test_blank_skipping_decodes_same(graph):
    lang, _, g = graph
    x = posteriors([BLK] * 5 + [BA1, BA1] + [BLK] * 4 + [MA1] + [BLK] * 6 + [SHI4] + [BLK] * 5)
    plain = WfstDecoder(g).decode(x)
    skipping = WfstDecoder(g, blank_skip_threshold=0.95)
    assert skipping.decode(x) == plain == ["A", "C"]


def test_unit_mismatch_refused(graph, tmp_path):
    _, _, g = graph
    other = tmp_path / "units.txt"
    other.write_text("".join(f"{u} {i}\n" for i, u in enumerate(UNITS[:-1] + ["si4"])))
    with pytest.raises(UnitMismatchError, match="another unit set"):
        WfstDecoder(g, units_path=other)
    with pytest.raises(ValueError, match="do not match the graph's 6 units"):
        WfstDecoder(g).decode(np.zeros((4, 7), np.float32))


def test_beam_search_with_lm(graph):
    from nasr.asr.beam_search import CtcPrefixBeamSearch

    lang, arpa, _ = graph
    dec = CtcPrefixBeamSearch(lang, arpa, beam_size=16)
    assert dec.decode(posteriors([BLK, BA1, BA1, BLK, MA1, BLK, SHI4, BLK])) == ["A", "C"]
    assert dec.decode(posteriors([SHI4, SHI4, BLK, SHI4, SHI4])) == ["C", "C"]  # repeats collapse
    # The lexicon fixes greedy's unit error, the LM picks X over Y after C.
    assert dec.decode(posteriors([BLK, BA1, BLK, {MA3: 0.5, MA1: 0.45}, BLK, SHI4, BLK])) == ["A", "C"]
    x = posteriors([BLK, SHI4, BLK, {MA3: 0.5, MA1: 0.45}, BLK])
    assert dec.decode(x) == ["C", "X"]
    assert CtcPrefixBeamSearch(lang, arpa, lm_weight=0.02).decode(x) == ["C", "Y"]
    assert CtcPrefixBeamSearch(lang, arpa, blank_skip_threshold=0.9).decode(x) == ["C", "X"]
