"""AISHELL-2 prep without a shipped lexicon: the pypinyin lexicon and the segmentation it drives."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("prepare_aishell2", ROOT / "local/aishell/prepare_aishell2.py")
prep = importlib.util.module_from_spec(spec)
spec.loader.exec_module(prep)


def test_pinyin_lexicon_covers_the_training_characters():
    lex = prep.pinyin_lexicon(["中国银行很好", "HELLO 银行"])
    assert lex.entries["中国"][0] == ("zhong1", "guo2")
    assert lex.entries["银行"][0] == ("yin2", "hang2")     # the phrase reading of a polyphone
    assert "行" in lex.entries and "好" in lex.entries     # every character alone
    assert all(set(w) <= set("中国银行很好") for w in lex.entries)  # nothing outside the text
    assert "HELLO" not in lex.entries                      # Latin words are left to the OOV policy
    from nasr.asr.lexicon import segment_words
    assert segment_words(["中国银行很好"], lex)[:2] in (["中国", "银行"], ["中国银行", "很"])


def test_no_chinese_text_is_an_error():
    with pytest.raises(prep.CorpusError, match="--lexicon"):
        prep.pinyin_lexicon(["ABC DEF"])
