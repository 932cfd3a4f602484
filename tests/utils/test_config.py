import pytest

from nasr.utils.config import load_config
from nasr.utils.io import FormatError


def test_precedence_defaults_yaml_profile_overrides(tmp_path):
    cfg = tmp_path / "search_nas1.yaml"
    cfg.write_text("epochs: 50\nmodel:\n  C: 16\n  layers: 6\n")
    prof = tmp_path / "synth.yaml"
    prof.write_text("search_nas1:\n  epochs: 3\n  model:\n    C: 8\nother:\n  epochs: 1\n")
    out = load_config(cfg, ["model.layers=3"], {"epochs": 1, "seed": 7}, profile=prof)
    assert out == {"epochs": 3, "seed": 7, "model": {"C": 8, "layers": 3}}


def test_bad_yaml_names_file_and_line(tmp_path):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("a: 1\nb: [unclosed\n")
    with pytest.raises(FormatError, match="x.yaml:"):
        load_config(cfg)
