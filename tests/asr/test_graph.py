"""TLG construction: disambiguation, CTC topology, OOV reporting, atomic output, unit fingerprint."""
import kaldifst
import pytest

from nasr.asr.graph import (UnitMismatchError, add_lexicon_disambig, build_ctc_topo, check_units,
                            make_tlg, read_symbol_table, units_fingerprint)
from nasr.asr.ngram import train_ngram
from nasr.bin import make_tlg as make_tlg_bin

UNITS = ["<blk>", "<unk>", "ba1", "ma1", "ma3", "shi4"]
LEXICON = "A ba1 ma1\nB ba1\nC shi4\nX ma1\nY ma3\nZ ma1\n"  # B prefixes A; X, Z homophones
TEXT = ["A C", "C X", "C X", "B C", "A C X", "Y", "Z C"]


def make_lang(tmp_path, units=UNITS, lexicon=LEXICON, text=TEXT, order=3):
    lang = tmp_path / "lang"
    lang.mkdir(exist_ok=True)
    (lang / "units.txt").write_text("".join(f"{u} {i}\n" for i, u in enumerate(units)))
    (lang / "lexicon.txt").write_text(lexicon)
    arpa = tmp_path / "lm.arpa"
    train_ngram([t.split() for t in text], order=order).write_arpa(arpa)
    return lang, arpa


def test_lexicon_disambig():
    entries = [("A", ("b", "m")), ("B", ("b",)), ("X", ("m",)), ("Z", ("m",)), ("C", ("s",))]
    out, max_d = add_lexicon_disambig(entries)
    d = dict(out)
    assert d["A"] == ("b", "m") and d["C"] == ("s",)
    assert d["B"] == ("b", "#1")                      # a prefix of A
    assert {d["X"], d["Z"]} == {("m", "#1"), ("m", "#2")}  # homophones
    assert max_d == 2


def accepts(fst, ilabels):
    """Output labels of the best path of `fst` on the input-label string, or None."""
    text = "".join(f"{i} {i + 1} {l} {l}\n" for i, l in enumerate(ilabels)) + f"{len(ilabels)}\n"
    seq = kaldifst.compile(s=text, acceptor=False)
    kaldifst.arcsort(seq, sort_type="olabel")
    kaldifst.arcsort(fst, sort_type="ilabel")
    out = kaldifst.compose(seq, fst)
    if out.num_states == 0:
        return None
    best = kaldifst.shortest_path(out)
    ok, _, olabels, _ = kaldifst.get_linear_symbol_sequence(best)
    return [o for o in olabels if o]


def test_ctc_topology_collapses_repeats_and_blanks():
    t = build_ctc_topo(4)  # blank 0, units 1..3; labels shifted by one
    assert t.num_states == 4
    # frames: blank a a blank a b  -> a a b   (ids shifted: blank=1, a=2, b=3)
    assert accepts(t, [1, 2, 2, 1, 2, 3]) == [2, 2, 3]
    assert accepts(t, [2, 2, 2]) == [2]


def test_make_tlg_files_and_oov_count(tmp_path):
    lang, arpa = make_lang(tmp_path, lexicon="A ba1 ma1\nC shi4\nX ma1\n")  # B, Y, Z missing
    info = make_tlg(lang, arpa, tmp_path / "graph")
    g = tmp_path / "graph"
    assert info["lm_words_missing_from_lexicon"] == 3
    for name in ("TLG.fst", "G.fst", "words.txt", "tokens.txt", "units.sha256", "graph.json"):
        assert (g / name).is_file(), name
    assert (g / "tokens.txt").read_text() == (lang / "units.txt").read_text()
    words = set(read_symbol_table(g / "words.txt").values())
    assert {"A", "C", "X", "#0", "<s>", "</s>", "<eps>"} == words
    assert info["TLG"]["states"] > 0 and info["TLG"]["arcs"] > 0 and info["TLG"]["bytes"] > 0
    # No disambiguation symbol survives on the input side: labels are 0 (eps) or units+1.
    tlg = kaldifst.StdVectorFst.read(str(g / "TLG.fst"))
    ilabels = {a.ilabel for s in kaldifst.StateIterator(tlg) for a in kaldifst.ArcIterator(tlg, s)}
    assert ilabels <= set(range(len(UNITS) + 1))
    with pytest.raises(ValueError, match="3 of 6 LM words"):
        make_tlg(lang, arpa, tmp_path / "graph2", oov="error")
    assert not (tmp_path / "graph2").exists()  # nothing half-built left behind


def test_lexicon_unit_missing_from_units(tmp_path):
    lang, arpa = make_lang(tmp_path, lexicon="A ba1 zz9\nC shi4\n")
    with pytest.raises(ValueError, match="zz9"):
        make_tlg(lang, arpa, tmp_path / "graph")
    assert not (tmp_path / "graph").exists()


def test_units_fingerprint_mismatch(tmp_path):
    lang, arpa = make_lang(tmp_path)
    make_tlg_bin.main(["--lang", str(lang), "--arpa", str(arpa), "--out", str(tmp_path / "graph")])
    check_units(tmp_path / "graph", lang / "units.txt")  # same set: fine
    other = tmp_path / "other_units.txt"
    other.write_text("".join(f"{u} {i}\n" for i, u in enumerate(UNITS[:4] + ["shi4", "ma3"])))
    assert units_fingerprint(other) != units_fingerprint(lang / "units.txt")
    with pytest.raises(UnitMismatchError, match="another unit set.*fix: rebuild"):
        check_units(tmp_path / "graph", other)
