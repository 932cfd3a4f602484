"""Kneser-Ney n-gram trainer: hand-computed values, normalisation, pruning, ARPA round trip."""
import math
import random

import pytest

from nasr.asr.ngram import (BOS, EOS, UNK, EmptyTextError, NgramLM, kn_discounts, map_oov,
                            read_kaldi_text, train_ngram)
from nasr.bin import train_ngram as train_ngram_bin

# <s> a b </s> / <s> b </s> / <s> a b a </s>
CORPUS = [["a", "b"], ["b"], ["a", "b", "a"]]


def p(lm, word, *context):
    return math.exp(lm.logprob(word, context))


def assert_normalised(lm, tol=2e-6):
    """Every context (each listed n-gram shorter than the order, and the empty one) must give a
    distribution over the vocabulary (with </s> and <unk>, without <s>) that sums to 1."""
    vocab = [w for w in lm.vocab if w != BOS]
    contexts = {()} | {g for g in lm.logprob10 if len(g) < lm.order and g[-1] != EOS}
    for h in contexts:
        total = sum(p(lm, w, *h) for w in vocab)
        assert total == pytest.approx(1.0, abs=tol), (h, total)


def test_discounts_formula():
    # n1=10, n2=5, n3=3, n4=2: Y = 10/(10+2*5) = 0.5
    counts = [1] * 10 + [2] * 5 + [3] * 3 + [4] * 2 + [7]
    (d1, d2, d3), fell_back = kn_discounts(counts)
    assert not fell_back
    assert d1 == pytest.approx(1 - 2 * 0.5 * 5 / 10)        # 0.5
    assert d2 == pytest.approx(2 - 3 * 0.5 * 3 / 5)         # 1.1
    assert d3 == pytest.approx(3 - 4 * 0.5 * 2 / 3)         # 1.6667
    assert kn_discounts([1, 1, 2])[1]  # n3 = n4 = 0: fallback


def test_bigram_by_hand():
    lm = train_ngram(CORPUS, order=2)
    # Both orders use the fallback discounts D1=0.5, D2=1.0, D3+=1.5 (too few counts).
    # Unigram adjusted counts = continuation counts: a {<s>,b}=2, b {a,<s>}=2, </s> {b,a}=2; total 6.
    # gamma() = D2*3/6 = 0.5, vocab {a, b, </s>, <unk>} -> uniform 1/4.
    assert p(lm, "a") == pytest.approx((2 - 1.0) / 6 + 0.5 / 4)      # 7/24
    assert p(lm, "</s>") == pytest.approx(7 / 24)
    assert p(lm, UNK) == pytest.approx(0.5 / 4)                     # 3/24
    # Context <s>: c(<s> a)=2, c(<s> b)=1, total 3, gamma = (D1*1 + D2*1)/3 = 0.5
    assert p(lm, "a", BOS) == pytest.approx((2 - 1.0) / 3 + 0.5 * 7 / 24)  # 23/48
    assert p(lm, "b", BOS) == pytest.approx((1 - 0.5) / 3 + 0.5 * 7 / 24)  # 15/48
    assert p(lm, EOS, BOS) == pytest.approx(0.5 * 7 / 24)                  # backed off
    # Context a: c(a b)=2, c(a </s>)=1 -> p(b|a) = 23/48; context b: p(</s>|b) = 23/48
    assert p(lm, "b", "a") == pytest.approx(23 / 48)
    assert p(lm, EOS, "b") == pytest.approx(23 / 48)
    assert p(lm, "a", "b") == pytest.approx(15 / 48)
    assert math.exp(lm.score("a b")) == pytest.approx((23 / 48) ** 3)
    assert_normalised(lm)


def test_trigram_by_hand():
    lm = train_ngram(CORPUS, order=3)
    # Bigram adjusted counts: <s>-initial keep raw (<s> a: 2, <s> b: 1); others count distinct
    # left neighbours: a b {<s>} = 1, b </s> {a, <s>} = 2, b a {a} = 1, a </s> {b} = 1.
    # Context a: b:1, </s>:1, total 2, gamma = 0.5*2/2 = 0.5 -> p(b|a) = 0.5/2 + 0.5*7/24 = 19/48
    assert p(lm, "b", "a") == pytest.approx(19 / 48)
    assert p(lm, EOS, "a") == pytest.approx(19 / 48)
    # Trigrams (top order: raw counts). (<s> a): b:2 -> gamma = D2/2 = 0.5
    assert p(lm, "b", BOS, "a") == pytest.approx((2 - 1.0) / 2 + 0.5 * 19 / 48)     # 67/96
    # (a b): </s>:1, a:1 -> gamma 0.5; p(</s>|b) = 23/48, p(a|b) = 15/48
    assert p(lm, EOS, "a", "b") == pytest.approx(0.5 / 2 + 0.5 * 23 / 48)           # 47/96
    assert p(lm, "a", "a", "b") == pytest.approx(0.5 / 2 + 0.5 * 15 / 48)           # 39/96
    # (b a): </s>:1, gamma = 0.5/1 -> p(</s>|b a) = 0.5 + 0.5*19/48
    assert p(lm, EOS, "b", "a") == pytest.approx(0.5 + 0.5 * 19 / 48)               # 67/96
    # Unseen after (<s> a): back off twice: gamma(<s> a) * gamma(a) * p(<unk>)
    assert p(lm, UNK, BOS, "a") == pytest.approx(0.5 * 0.5 * 3 / 24)
    expected = (23 / 48) * (67 / 96) * (39 / 96) * (67 / 96)
    assert math.exp(lm.score(["a", "b", "a"])) == pytest.approx(expected)
    assert_normalised(lm)


def random_corpus(n=400, seed=0):
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(12)]
    weights = [1.0 / (i + 1) for i in range(12)]  # Zipf-like, so count-of-counts are not sparse
    return [rng.choices(words, weights, k=rng.randint(1, 9)) for _ in range(n)]


def test_estimated_discounts_normalised_and_arpa_round_trip(tmp_path):
    lm = train_ngram(random_corpus(), order=4)
    assert_normalised(lm)
    path = tmp_path / "lm.arpa"
    lm.write_arpa(path)
    back = NgramLM.read_arpa(path)
    assert back.order == 4 and back.num_ngrams() == lm.num_ngrams()
    for s in (["w0", "w1", "w2"], ["w11"], ["w3", "nope", "w0"]):
        assert back.score(s) == pytest.approx(lm.score(s), abs=1e-5)
    assert_normalised(back)


def test_pruning_removes_ngrams_and_stays_normalised(tmp_path):
    corpus = random_corpus()
    full = train_ngram(corpus, order=3)
    pruned = train_ngram(corpus, order=3, prune=1e-4)
    nf, np_ = full.num_ngrams(), pruned.num_ngrams()
    assert np_[0] == nf[0]                       # unigrams are never pruned
    assert np_[2] < nf[2] and sum(np_) < sum(nf)
    assert_normalised(pruned)
    # ARPA well-formedness: every kept n-gram's context and suffix are kept.
    for g in pruned.logprob10:
        if len(g) > 1:
            assert g[:-1] in pruned.logprob10 and g[1:] in pruned.logprob10
    # A larger threshold prunes more.
    assert sum(train_ngram(corpus, order=3, prune=1e-2).num_ngrams()) < sum(np_)
    pruned.write_arpa(tmp_path / "p.arpa")
    assert NgramLM.read_arpa(tmp_path / "p.arpa").num_ngrams() == np_


def test_restrict_vocab_renormalises():
    lm = train_ngram(random_corpus(), order=3)
    small = lm.restrict_vocab([f"w{i}" for i in range(6)])
    assert "w7" not in small.vocab and UNK not in small.vocab
    assert all("w7" not in g for g in small.logprob10)
    assert_normalised(small)


def test_empty_text_names_the_file(tmp_path, caplog):
    text = tmp_path / "text"
    text.write_text("utt1\nutt2\n")  # ids only, no words
    with pytest.raises(EmptyTextError, match=str(text)):
        read_kaldi_text(text)
    with caplog.at_level("ERROR"):
        assert train_ngram_bin.main(["--text", str(text), "--out", str(tmp_path / "lm.arpa")]) == 1
    assert str(text) in caplog.text and "has no words" in caplog.text
    assert not (tmp_path / "lm.arpa").exists()


def test_oov_counting_and_policies():
    sents = [["a", "x", "b"], ["a", "b"], ["y", "x"]]
    mapped, oov = map_oov(sents, {"a", "b"}, "unk")
    assert oov == {"x": 2, "y": 1}
    assert mapped[0] == ["a", UNK, "b"] and len(mapped) == 3
    kept, _ = map_oov(sents, {"a", "b"}, "skip")
    assert kept == [["a", "b"]]


def test_cli_with_lexicon(tmp_path, caplog):
    text = tmp_path / "text"
    text.write_text("u1 a b\nu2 a zz\nu3 b a\n")
    lex = tmp_path / "lexicon.txt"
    lex.write_text("a x1\nb x2\n")
    out = tmp_path / "lm" / "lm.arpa"
    with caplog.at_level("WARNING"):
        train_ngram_bin.main(["--text", str(text), "--out", str(out), "--order", "2",
                              "--lexicon", str(lex)])
    assert "1 OOV tokens (1 types)" in caplog.text
    lm = NgramLM.read_arpa(out)
    assert (UNK,) in lm.logprob10 and ("zz",) not in lm.logprob10
    assert_normalised(lm)


def test_read_arpa_errors(tmp_path):
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\ta\n\\end\\\n")
    with pytest.raises(ValueError, match="declares 2 1-grams"):
        NgramLM.read_arpa(bad)
