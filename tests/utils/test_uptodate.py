"""A rerun of a finished lang/LM/graph step does nothing; a changed input, changed arguments or a
run killed before its record was written make it run again."""
import logging

from nasr.bin import make_tlg, prepare_lang, train_ngram
from nasr.utils.uptodate import Stamp

TEXT = "u1 中国 有 鱼\nu2 我们 为 中国人\nu3 学 绿 中国\nu4 中国 对 一\n"


def outputs(tmp_path):
    return [tmp_path / "lang/lang.json", tmp_path / "lm.arpa", tmp_path / "lang/graph/TLG.fst"]


def run_all(tmp_path):
    data = tmp_path / "data"
    assert prepare_lang.main(["--data", str(data), "--unit", "char", "--out", str(tmp_path / "lang")]) == 0
    assert train_ngram.main(["--text", str(data / "text"), "--order", "2", "--out", str(tmp_path / "lm.arpa")]) == 0
    make_tlg.main(["--lang", str(tmp_path / "lang"), "--arpa", str(tmp_path / "lm.arpa"),
                   "--out", str(tmp_path / "lang/graph")])
    return [p.stat().st_mtime_ns for p in outputs(tmp_path)]


def test_a_rerun_does_nothing_and_a_changed_input_reruns(tmp_path, caplog):
    (tmp_path / "data").mkdir()
    (tmp_path / "data/text").write_text(TEXT, encoding="utf-8")
    first = run_all(tmp_path)
    caplog.set_level(logging.INFO)
    assert run_all(tmp_path) == first
    assert sum("is up to date" in r.getMessage() for r in caplog.records) == 3
    # A changed transcript: lang, LM and graph are all rebuilt (each sees a changed input).
    (tmp_path / "data/text").write_text(TEXT + "u5 我们 学 鱼\n", encoding="utf-8")
    third = run_all(tmp_path)
    assert all(a != b for a, b in zip(first, third))


def test_changed_arguments_a_missing_output_or_a_killed_run_rerun(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("x")
    out = tmp_path / "out.txt"
    stamp = Stamp(tmp_path / ".done.json", {"order": 2}, inputs=[src])
    assert not stamp.is_current([out])  # never ran
    out.write_text("y")
    stamp.write()
    assert Stamp(tmp_path / ".done.json", {"order": 2}, inputs=[src]).is_current([out])
    assert not Stamp(tmp_path / ".done.json", {"order": 3}, inputs=[src]).is_current([out])
    out.unlink()
    assert not Stamp(tmp_path / ".done.json", {"order": 2}, inputs=[src]).is_current([out])
    out.write_text("y")
    stamp.clear()  # what a step does before its work: killed after this, it is redone
    assert not Stamp(tmp_path / ".done.json", {"order": 2}, inputs=[src]).is_current([out])
