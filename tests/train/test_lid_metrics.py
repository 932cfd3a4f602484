import json
import math

import numpy as np
import pytest

from nasr.train.lid_metrics import (detection_llrs, equal_error_rate, lid_scores,
                                    write_lid_report)


def test_two_languages_by_hand():
    # With K = 2 the detection LLRs are +-(z0 - z1).
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    labels = np.array([0, 1, 1, 0])
    np.testing.assert_allclose(detection_llrs(logits), [[2, -2], [-1, 1], [1, -1], [-3, 3]], atol=1e-12)
    s = lid_scores(logits, labels, ["de", "en"])
    assert s["num"] == 4 and s["acc"] == 0.5
    assert s["confusion"] == [[1, 1], [1, 1]]
    # each language: half its utterances missed, half of the other's falsely accepted
    assert s["cavg"] == pytest.approx(0.5)
    # targets {2, 1, -1, -3} vs non-targets {-2, -1, 1, 3}: the curves cross at 0.5
    assert s["eer"] == pytest.approx(0.5)


def test_three_languages_by_hand():
    # logits = log posteriors, so s[n, k] = log(p_k / mean of the other two)
    post = np.array([[0.5, 0.3, 0.2],    # de: accepts de only
                     [0.4, 0.4, 0.2],    # en: accepts de (false alarm) and en; argmax picks de
                     [0.2, 0.3, 0.5]])   # fr: accepts fr only
    logits = np.log(post) + 7.0  # a shift must not matter
    labels = np.array([0, 1, 2])
    s_expected = np.log(np.array([[0.5 / 0.25, 0.3 / 0.35, 0.2 / 0.4],
                                  [0.4 / 0.3, 0.4 / 0.3, 0.2 / 0.4],
                                  [0.2 / 0.4, 0.3 / 0.35, 0.5 / 0.25]]))
    np.testing.assert_allclose(detection_llrs(logits), s_expected, atol=1e-12)
    s = lid_scores(logits, labels, ["de", "en", "fr"])
    assert s["acc"] == pytest.approx(2 / 3)
    assert s["confusion"] == [[1, 0, 0], [1, 0, 0], [0, 0, 1]]
    # no misses; target de: P_fa(de, en) = 1, P_fa(de, fr) = 0 -> 0.5 * 0.5 = 0.25; others 0
    assert s["cavg"] == pytest.approx(0.25 / 3)
    # targets {.693, .288, .693}, non-targets {-.693 x3, -.154 x2, .288}: crossing at 1/9
    assert s["eer"] == pytest.approx(1 / 9)


def test_perfect_reversed_and_tied_scores():
    logits = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [4.0, 1.0, 0.0]])
    labels = np.array([0, 1, 2, 0])
    s = lid_scores(logits, labels, ["a", "b", "c"])
    assert (s["acc"], s["cavg"], s["eer"]) == (1.0, 0.0, 0.0)
    assert equal_error_rate([0.0, 1.0], [2.0, 3.0]) == pytest.approx(1.0)
    assert equal_error_rate([1.0], [1.0]) == pytest.approx(0.5)
    s = lid_scores(np.zeros((4, 3)), labels, ["a", "b", "c"])
    assert s["eer"] == pytest.approx(0.5)
    # all LLRs are 0 = the threshold: everything rejected, every target missed
    assert s["cavg"] == pytest.approx(0.5)


def test_languages_absent_from_the_set_are_left_out_of_cavg():
    logits = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    s = lid_scores(logits, np.array([0, 1]), ["a", "b", "c"])
    assert s["cavg"] == 0.0 and s["acc"] == 1.0
    assert lid_scores(logits, np.array([0, 0]), ["a", "b", "c"])["cavg"] is None


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="class names"):
        lid_scores(np.zeros((2, 3)), np.array([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        lid_scores(np.zeros((2, 3)), np.array([0, 3]), ["a", "b", "c"])
    with pytest.raises(ValueError, match="no utterances"):
        lid_scores(np.zeros((0, 3)), np.array([], dtype=int), ["a", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        lid_scores(np.array([[np.nan, 0.0]]), np.array([0]), ["a", "b"])


def test_report_files(tmp_path):
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    labels = np.array([0, 1, 1, 0])
    utts = ["u4", "u2", "u3", "u1"]
    scores = lid_scores(logits, labels, ["de", "en"])
    out = tmp_path / "exp" / "decode_test"
    write_lid_report(out, scores, utts, logits, labels, ["de", "en"])
    assert sorted(p.name for p in out.iterdir()) == ["confusion.txt", "results.json", "scores", "summary"]

    summary = (out / "summary").read_text().splitlines()
    assert summary[0] == f"%ACC 50.00 [ 2 / 4 ] {out}"
    assert summary[1] == f"Cavg 0.5000 [ P_target 0.5 ] {out}"
    assert summary[2] == f"%EER 50.00 [ pooled ] {out}"

    lines = (out / "scores").read_text().splitlines()
    assert [l.split()[0] for l in lines] == ["u1", "u2", "u3", "u4"]
    assert lines[0] == "u1 de en 0.0000 3.0000"
    assert lines[3] == "u4 de de 2.0000 0.0000"

    results = json.loads((out / "results.json").read_text())
    assert results["class_names"] == ["de", "en"] and results["num"] == 4
    assert math.isclose(results["acc"], 0.5) and results["confusion"] == [[1, 1], [1, 1]]

    table = (out / "confusion.txt").read_text().splitlines()
    assert table[1].split() == ["ref\\hyp", "de", "en", "total", "acc%"]
    assert table[2].split() == ["de", "1", "1", "2", "50.00"]
    with pytest.raises(ValueError, match="utterance ids"):
        write_lid_report(out, scores, utts[:3], logits, labels, ["de", "en"])
