"""nasr.asr.units, nasr.asr.lexicon and python -m nasr.bin.prepare_lang on tiny data dirs."""
import json
from pathlib import Path

import pytest

from nasr.asr.lexicon import (Lexicon, join_initial_final, max_match_segment, pron_to_syllables,
                              read_lexicon, segment_words, syllable_lexicon, write_lexicon)
from nasr.asr.units import OovError, Units, load_tokenizer, split_chars
from nasr.bin import prepare_lang
from nasr.utils.io import FormatError, read_table

PHONE_LEXICON = """SIL sil
<SPOKEN_NOISE> sil
中国 zh ong1 g uo2
一 ii i1
有 ii iu3
我们 uu uo3 m en5
为 uu ui4
鱼 vv v2
学 x ve2
绿 l v4
而 ee er2
安 aa an1
资 z iy1
对 d ui4
HELLO HH AH0 L OW1
"""
SYLLABLE_LEXICON = """中国 zhong1 guo2
一 yi1
有 you3
我们 wo3 men5
为 wei4
鱼 yu2
学 xue2
绿 lv4
而 er2
安 an1
资 zi1
对 dui4
HELLO HH AH L OW
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_split_chars():
    assert split_chars("我 爱 AI 2号  don't") == ["我", "爱", "AI", "2", "号", "don't"]
    assert split_chars("中国人") == ["中", "国", "人"]
    assert split_chars("  ") == []


def test_units_roundtrip_and_errors(tmp_path):
    units = Units(["<blk>", "<unk>", "a1", "b2"])
    assert units.blank_id == 0 and units.unk_id == 1 and len(units) == 4
    assert units.encode(["b2", "zz", "a1"]) == [3, 1, 2]
    assert units.decode([2, 3]) == ["a1", "b2"]
    units.write(tmp_path / "units.txt")
    assert Units.load(tmp_path / "units.txt").id2unit == units.id2unit
    with pytest.raises(FormatError, match="first unit"):
        Units(["a1", "<blk>"])
    bad = write(tmp_path / "bad.txt", "<blk> 0\na1 2\n")
    with pytest.raises(FormatError, match=r"bad.txt:2: id 2 out of order"):
        Units.load(bad)
    with pytest.raises(KeyError):
        Units(["<blk>", "a1"]).encode(["b2"])


@pytest.mark.parametrize("initial,final,syllable", [
    ("zh", "ong1", "zhong1"), ("ii", "i1", "yi1"), ("ii", "iu3", "you3"), ("ii", "ia3", "ya3"),
    ("ii", "ing2", "ying2"), ("uu", "uo3", "wo3"), ("uu", "ui4", "wei4"), ("uu", "un2", "wen2"),
    ("uu", "u3", "wu3"), ("vv", "v2", "yu2"), ("vv", "van2", "yuan2"), ("vv", "ve4", "yue4"),
    ("x", "ve2", "xue2"), ("j", "v1", "ju1"), ("l", "v4", "lv4"), ("n", "ve4", "nve4"),
    ("ee", "er2", "er2"), ("aa", "ang2", "ang2"), ("oo", "ou1", "ou1"), ("d", "uei4", "dui4"),
    ("z", "iy1", "zi1"), ("sh", "ix4", "shi4"), ("l", "iou2", "liu2"),
])
def test_join_initial_final(initial, final, syllable):
    assert join_initial_final(initial, final) == (syllable, True)


def test_join_unknown_pair_is_kept_and_flagged():
    assert join_initial_final("ii", "ong1") == ("iiong1", False)


def test_phone_lexicon_joins_into_the_syllable_lexicon(tmp_path):
    phones = syllable_lexicon(read_lexicon(write(tmp_path / "p.txt", PHONE_LEXICON)))
    syllables = syllable_lexicon(read_lexicon(write(tmp_path / "s.txt", SYLLABLE_LEXICON)))
    assert phones.entries == syllables.entries
    assert "SIL" not in phones and "<SPOKEN_NOISE>" not in phones  # silence has no CTC unit
    assert phones["HELLO"] == [("HH", "AH", "L", "OW")]           # stress dropped
    assert pron_to_syllables(("zh", "ong1", "g", "uo2")) == (("zhong1", "guo2"), 0)
    with pytest.raises(ValueError, match="not followed by a toned final"):
        pron_to_syllables(("zh", "g", "uo2"))


def test_read_lexicon_errors_and_roundtrip(tmp_path):
    with pytest.raises(FormatError, match=r"lex.txt:2: word '楼市' has no pronunciation"):
        read_lexicon(write(tmp_path / "lex.txt", "中国 zhong1 guo2\n楼市\n"))
    with pytest.raises(FormatError, match="no such lexicon"):
        read_lexicon(tmp_path / "none.txt")
    lexp = read_lexicon(write(tmp_path / "lexiconp.txt", "行 1.0 xing2\n行 0.5 hang2\n行 1.0 xing2\n"))
    assert lexp["行"] == [("xing2",), ("hang2",)]  # probabilities dropped, repeats kept once
    write_lexicon(tmp_path / "out.txt", lexp)
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "行 xing2\n行 hang2\n"


def test_max_match_segmentation():
    lex = Lexicon()
    for w in ("中国", "中", "国人", "人", "的"):
        lex.add(w, ["x1"])
    assert max_match_segment("中国人的", lex) == [("中国", True), ("人", True), ("的", True)]
    assert max_match_segment("中AB国人", lex) == [("中", True), ("AB", False), ("国人", True)]
    assert segment_words(["中国人", "的", "XY"], lex) == ["中国", "人", "的", "XY"]


# ----------------------------------------------------------------------------------------------
# prepare_lang

TEXT = """u1 中国 有 鱼
u2 我们 为 中国人
u3 学 绿 HELLO
u4 中国 对 一
"""


def data_dir(tmp_path: Path, text: str = TEXT) -> Path:
    d = tmp_path / "data" / "train"
    write(d / "text", text)
    return d


def test_prepare_lang_syllable_phone_lexicon(tmp_path, capsys):
    d = data_dir(tmp_path)
    lex = write(tmp_path / "lexicon.txt", PHONE_LEXICON)
    lang = tmp_path / "lang_syllable"
    assert prepare_lang.main(["--data", str(d), "--lexicon", str(lex), "--unit", "syllable",
                              "--out", str(lang)]) == 0
    units = Units.load(lang / "units.txt")
    assert units.id2unit[:2] == ["<blk>", "<unk>"]
    syllables = {"zhong1", "guo2", "yi1", "you3", "wo3", "men5", "wei4", "yu2", "xue2", "lv4", "er2",
                 "an1", "zi1", "dui4"}
    assert syllables | {"HH", "AH", "L", "OW"} == set(units.id2unit[2:])
    text_units = read_table(lang / "text_units")
    assert text_units["u1"] == "zhong1 guo2 you3 yu2"
    # "中国人": 中国 from the lexicon, 人 an OOV run -> <unk>
    assert text_units["u2"] == "wo3 men5 wei4 zhong1 guo2 <unk>"
    assert text_units["u3"] == "xue2 lv4 HH AH L OW"
    for utt, line in text_units.items():  # every training token is a unit
        assert all(u in units for u in line.split())
    info = json.loads((lang / "lang.json").read_text())
    assert info["oov_tokens"] == 1 and info["oov_utterances"] == 1 and info["english_phones"] == 4
    assert info["mandarin_syllables"] == len(syllables)
    assert read_table(lang / "oov_counts.txt") == {"人": "1"}
    assert "1 OOV tokens (1 distinct) in 1 of 4 utterances" in capsys.readouterr().err
    lexicon = read_lexicon(lang / "lexicon.txt")
    assert lexicon["我们"] == [("wo3", "men5")]
    # The Tokenizer of the lang dir converts other sets the same way.
    tok = load_tokenizer(lang)
    assert tok.encode("中国 一") == units.encode(["zhong1", "guo2", "yi1"])
    assert tok.encode("中国一") == units.encode(["zhong1", "guo2", "yi1"])  # unsegmented text


def test_prepare_lang_oov_policies(tmp_path):
    d = data_dir(tmp_path)
    lex = write(tmp_path / "lexicon.txt", PHONE_LEXICON)
    with pytest.raises(OovError, match=r"text:2: .*1 OOV tokens \(1 distinct\)"):
        prepare_lang.prepare_lang(d, tmp_path / "l_err", "syllable", lex, oov="error")
    assert not (tmp_path / "l_err" / "lang.json").exists()
    assert prepare_lang.main(["--data", str(d), "--lexicon", str(lex), "--out", str(tmp_path / "l2"),
                              "--oov", "error"]) == 1
    info = prepare_lang.prepare_lang(d, tmp_path / "l_skip", "syllable", lex, oov="skip-utt")
    assert info["utterances_kept"] == 3
    assert "u2" not in read_table(tmp_path / "l_skip" / "text_units")
    tok = load_tokenizer(tmp_path / "l_skip")
    assert tok("我们 人") is None
    with pytest.raises(OovError, match="'人'"):
        load_tokenizer(tmp_path / "l_skip", oov="error")("人")
    with pytest.raises(ValueError, match="needs --lexicon"):
        prepare_lang.prepare_lang(d, tmp_path / "l3", "syllable", None)


def test_prepare_lang_char(tmp_path):
    d = data_dir(tmp_path)
    lang = tmp_path / "lang_char"
    info = prepare_lang.prepare_lang(d, lang, "char")
    units = Units.load(lang / "units.txt")
    train_chars = {c for line in TEXT.splitlines() for c in split_chars(line.split(maxsplit=1)[1])}
    assert set(units.id2unit[2:]) == train_chars and units.id2unit[0] == "<blk>"
    assert info["oov_tokens"] == 0
    assert read_table(lang / "text_units")["u3"] == "学 绿 HELLO"
    assert read_lexicon(lang / "lexicon.txt")["中国"] == [("中", "国")]
    tok = load_tokenizer(lang)
    assert tok("中国 猫") == ["中", "国", "<unk>"]  # an unseen character is an OOV
    assert tok.stats.oov_words == {"猫": 1}


def test_prepare_lang_bpe(tmp_path):
    d = data_dir(tmp_path, "".join(f"u{i} 中国 有 鱼 我们 为 中国人 学 绿 对 一\n" for i in range(20)))
    lang = tmp_path / "lang_bpe"
    info = prepare_lang.prepare_lang(d, lang, "bpe", bpe_size=30)
    assert (lang / "bpe.model").is_file()
    units = Units.load(lang / "units.txt")
    assert units.id2unit[:2] == ["<blk>", "<unk>"] and len(units) == info["num_units"] <= 31
    tok = load_tokenizer(lang)
    pieces = tok("中国 有 鱼")
    assert all(p in units for p in pieces)
    assert tok.detokenize(pieces) == "中国 有 鱼"
    for line in (lang / "text_units").read_text(encoding="utf-8").splitlines():
        assert all(p in units for p in line.split()[1:])
