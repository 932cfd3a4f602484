"""nasr.asr.scoring (own alignment vs kaldialign, summary lines, token accuracy), CTC greedy
decoding on hand-made posteriors, and python -m nasr.bin.score end to end."""
import json
import random
import subprocess
import sys
from pathlib import Path

import kaldialign
import numpy as np
import pytest
import torch

from nasr.asr.ctc_decode import greedy_decode
from nasr.asr.scoring import (ErrorStats, align, edit_stats, kaldialign_align, levenshtein_align,
                              ops_of, score_texts, summary_line, token_accuracy, tokenize, write_score_files)
from nasr.bin import score
from nasr.utils.io import read_table

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------------------------
# greedy decoding

def posteriors(frames, vocab=4):
    """(T, V) log-posteriors whose argmax per frame is `frames`."""
    lp = np.full((len(frames), vocab), np.log(0.1 / (vocab - 1)), dtype=np.float32)
    lp[np.arange(len(frames)), frames] = np.log(0.9)
    return lp


def test_greedy_decode_hand_made():
    seqs = [[1, 1, 0, 1, 2, 2, 0, 0, 3],   # a a _ a b b _ _ c -> a a b c
            [0, 0, 2, 2, 2, 3, 3, 1, 0],   # _ _ b b b c c a _ -> b c a
            [0, 0, 0, 0, 0, 0, 0, 0, 0]]   # all blank -> nothing
    lp = torch.from_numpy(np.stack([posteriors(s) for s in seqs]))
    assert greedy_decode(lp, torch.tensor([9, 9, 9])) == [[1, 1, 2, 3], [2, 3, 1], []]
    # Frames past the length are ignored (padding may hold anything).
    assert greedy_decode(lp, [4, 5, 0]) == [[1, 1], [2], []]
    assert greedy_decode(lp.numpy()) == [[1, 1, 2, 3], [2, 3, 1], []]
    # Another blank id.
    assert greedy_decode(lp, None, blank=1) == [[0, 2, 0, 3], [0, 2, 3, 0], [0]]
    with pytest.raises(ValueError, match="lens"):
        greedy_decode(lp, [10, 1, 1])
    with pytest.raises(ValueError, match=r"\(N, T, V\)"):
        greedy_decode(lp[0])


# ----------------------------------------------------------------------------------------------
# alignment

def test_own_alignment_equals_kaldialign_on_random_strings():
    rng = random.Random(0)
    for _ in range(3000):
        vocab = "abcdef"[: rng.randint(1, 6)]
        ref = [rng.choice(vocab) for _ in range(rng.randint(0, 12))]
        hyp = [rng.choice(vocab) for _ in range(rng.randint(0, 12))]
        mine = levenshtein_align(ref, hyp)
        assert mine == kaldialign_align(ref, hyp)
        # A valid alignment: it spells both sides, and costs kaldialign's edit distance.
        assert [r for r, _ in mine if r is not None] == ref
        assert [h for _, h in mine if h is not None] == hyp
        ops = ops_of(mine)
        dist = kaldialign.edit_distance(ref, hyp)
        assert (ops.count("S"), ops.count("I"), ops.count("D")) == (dist["sub"], dist["ins"], dist["del"])


def test_alignment_handles_non_string_tokens_and_backends():
    assert align([1, 2, 3], [1, 3], "kaldialign") == [(1, 1), (2, None), (3, 3)]
    assert align([1, 2, 3], [1, 3], "python") == [(1, 1), (2, None), (3, 3)]
    assert align(["***"], ["a"], "kaldialign") == [("***", "a")]  # no token is taken for epsilon
    with pytest.raises(ValueError, match="backend"):
        align([1], [1], "sclite")


def test_summary_line_format_and_token_accuracy():
    stats = ErrorStats(ref_tokens=104765, ins=120, dels=410, subs=5873)
    assert summary_line("CER", stats, "exp/a/decode_test") == \
        "%CER 6.11 [ 6403 / 104765, 120 ins, 410 del, 5873 sub ] exp/a/decode_test"
    refs = [list("abcd"), list("xy")]
    hyps = [list("abed"), list("xyz")]  # 1 sub + 1 ins over 6 reference tokens
    assert token_accuracy(refs, hyps) == pytest.approx(1 - 2 / 6)
    stats = edit_stats(refs, hyps)
    assert (stats.subs, stats.ins, stats.dels, stats.sentence_errors) == (1, 1, 0, 2)
    assert token_accuracy([list("ab")], [list("xyzw")]) == pytest.approx(1 - 4 / 2)  # may go negative
    with pytest.raises(ValueError, match="undefined"):
        token_accuracy([[]], [["a"]])


def test_score_texts_char_vs_token_and_missing():
    refs = {"u1": "中国 的 楼市", "u2": "AI 芯片"}
    hyps = {"u1": "中国楼市", "u2": "AI 芯"}
    stats, per_utt = score_texts(refs, hyps, unit="char")
    # chars: u1 中国的楼市 vs 中国楼市 (1 del); u2 [A, I, 芯, 片] vs [A, I, 芯] (1 del)
    assert (stats.ref_tokens, stats.dels, stats.subs, stats.ins) == (9, 2, 0, 0)
    stats, per_utt = score_texts(refs, hyps, unit="char", latin_as_word=True)
    assert (stats.ref_tokens, stats.dels, stats.subs, stats.ins) == (8, 2, 0, 0)  # [AI, 芯, 片]
    stats, _ = score_texts(refs, hyps, unit="word")
    assert stats.ref_tokens == 5 and stats.errors == 4
    stats, _ = score_texts(refs, {"u1": refs["u1"]}, unit="char", missing="empty")
    assert stats.dels == 4 and stats.sentences == 2
    stats, _ = score_texts(refs, {"u1": refs["u1"]}, unit="char", missing="skip")
    assert stats.errors == 0 and stats.sentences == 1
    with pytest.raises(ValueError, match="no hypothesis"):
        score_texts(refs, {"u1": "x"}, missing="error")
    with pytest.raises(ValueError, match="another set"):
        score_texts(refs, {"u9": "x"})


def test_cer_counts_latin_letters_one_per_character_as_kaldi_aishell():
    # score_kaldi_cer.sh (egs/aishell/s5/local/score.sh): every character of a word, Latin letters
    # and digits included; a word with <...>, [...] or !SIL stays whole.
    assert tokenize("我 用 iPhone12 拍照 <unk> [NOISE]", "char") == \
        ["我", "用", "i", "P", "h", "o", "n", "e", "1", "2", "拍", "照", "<unk>", "[NOISE]"]
    assert tokenize("我 用 iPhone12 拍照", "char", latin_as_word=True) == ["我", "用", "iPhone12", "拍", "照"]
    refs = {"u1": "我 用 iPhone 拍照", "u2": "打开 WiFi"}
    hyps = {"u1": "我用 iPhon 拍照", "u2": "打开 <unk>"}
    stats, _ = score_texts(refs, hyps, unit="char")
    # u1: 10 chars, 1 deletion (e); u2: 6 chars, W,i,F,i against <unk>: 1 sub + 3 del
    assert (stats.ref_tokens, stats.subs, stats.dels, stats.ins) == (16, 1, 4, 0)
    stats, _ = score_texts(refs, hyps, unit="char", latin_as_word=True)
    # u1: [我, 用, iPhone, 拍, 照], iPhone -> iPhon; u2: [打, 开, WiFi] vs [打, 开, <, unk, >]
    assert (stats.ref_tokens, stats.subs, stats.dels, stats.ins) == (8, 2, 0, 2)


def test_write_score_files(tmp_path):
    refs = {"u1": "甚至 出现 交易", "u2": "几乎 停滞"}
    hyps = {"u1": "甚至 出现 了 交 一", "u2": "几乎 停滞"}
    stats = write_score_files(tmp_path, refs, hyps, unit="char", name="exp/x/decode_test")
    summary = (tmp_path / "summary").read_text(encoding="utf-8").splitlines()
    assert summary[0] == "%CER 20.00 [ 2 / 10, 1 ins, 0 del, 1 sub ] exp/x/decode_test"
    assert summary[1] == "%SER 50.00 [ 1 / 2 ] exp/x/decode_test"
    errs = (tmp_path / "errs").read_text(encoding="utf-8")
    assert "u1 op " in errs and "u1 #csid 5 1 1 0" in errs and "u2 #csid 4 0 0 0" in errs
    ref_row = next(l for l in errs.splitlines() if l.startswith("u1 ref"))
    assert "***" in ref_row.split()  # the inserted 了 has nothing on the reference side
    assert "1 易 -> 一" in errs
    assert read_table(tmp_path / "hyp") == hyps
    result = json.loads((tmp_path / "score.json").read_text(encoding="utf-8"))
    assert result["metric"] == "CER" and result["errors"] == 2 and result["token_accuracy"] == pytest.approx(0.8)
    assert stats.rate == pytest.approx(20.0)


def test_score_cli_end_to_end(tmp_path):
    ref = tmp_path / "text"
    ref.write_text("u1 zhong1 guo2 de5\nu2 lou2 shi4\nu3 cheng2 jiao1\n", encoding="utf-8")
    out = tmp_path / "exp" / "decode_test"
    out.mkdir(parents=True)
    hyp = out / "hyp"
    hyp.write_text("u1 zhong1 guo2\nu2 lou2 shi4 shi4\nu3\n", encoding="utf-8")  # u3: empty output
    run = subprocess.run([sys.executable, "-m", "nasr.bin.score", "--ref", str(ref), "--hyp", str(hyp),
                          "--out-dir", str(out), "--unit", "token"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    line = f"%TER 57.14 [ 4 / 7, 1 ins, 3 del, 0 sub ] {out}"
    assert run.stdout.strip() == line
    assert (out / "summary").read_text(encoding="utf-8").splitlines()[0] == line
    assert (out / "hyp").read_text(encoding="utf-8").startswith("u1 zhong1 guo2\n")  # left as written
    assert (out / "errs").is_file()
    # --unit char counts Latin letters one per character unless --latin-as-word
    ref.write_text("u1 我 用 iPhone\n", encoding="utf-8")
    hyp.write_text("u1 我 用 iPhon\n", encoding="utf-8")
    for flags, line in (([], "%CER 12.50 [ 1 / 8, 0 ins, 1 del, 0 sub ]"),
                        (["--latin-as-word"], "%CER 33.33 [ 1 / 3, 0 ins, 0 del, 1 sub ]")):
        assert score.main(["--ref", str(ref), "--hyp", str(hyp), "--out-dir", str(out), "--unit", "char",
                           "--name", "x"] + flags) == 0
        assert (out / "summary").read_text(encoding="utf-8").splitlines()[0] == f"{line} x"
        assert json.loads((out / "score.json").read_text(encoding="utf-8"))["latin_as_word"] == bool(flags)
    # Bad input: a clear error, exit 1, nothing written.
    dup = tmp_path / "dup"
    dup.write_text("u1 a\nu1 b\n", encoding="utf-8")
    assert score.main(["--ref", str(ref), "--hyp", str(dup), "--out-dir", str(tmp_path / "o2")]) == 1
    assert not (tmp_path / "o2").exists()
