import pytest

from nasr.utils.config import UnknownKeyError, diff_configs, load_config, one_of, positive_int, probability
from nasr.utils.io import FormatError

DEFAULTS = {"epochs": 1, "seed": 7, "model": {"C": 16, "layers": 8}, "optim": {"lr": 0.1}, "caps": None}


def test_precedence_defaults_yaml_profile_overrides(tmp_path):
    cfg = tmp_path / "search_nas1.yaml"
    cfg.write_text("epochs: 50\nmodel:\n  C: 16\n  layers: 6\n")
    prof = tmp_path / "synth.yaml"
    prof.write_text("search_nas1:\n  epochs: 3\n  model:\n    C: 8\nother:\n  epochs: 1\n")
    out = load_config(cfg, ["model.layers=3"], {"epochs": 1, "seed": 7, "model": {"C": 1, "layers": 1}},
                      profile=prof)
    assert out == {"epochs": 3, "seed": 7, "model": {"C": 8, "layers": 3}}


def test_bad_yaml_names_file_and_line(tmp_path):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("a: 1\nb: [unclosed\n")
    with pytest.raises(FormatError, match="x.yaml:"):
        load_config(cfg)


def test_unknown_keys_name_their_file_line_and_closest_key_in_every_layer(tmp_path):
    cfg = tmp_path / "train_x.yaml"
    cfg.write_text("seed: 1\nmodel:\n  C: 8\n  layres: 3\n")
    with pytest.raises(FormatError, match=r"train_x.yaml:4: unknown config key 'model.layres' "
                                          r"\(fix: did you mean 'model.layers'\?\)"):
        load_config(cfg, (), DEFAULTS)
    cfg.write_text("seed: 1\n")
    prof = tmp_path / "synth.yaml"
    prof.write_text("other:\n  epohcs: 1\ntrain_x:\n  optim: {lr: 0.1}\n  epohcs: 2\n")
    with pytest.raises(FormatError, match=r"synth.yaml:5: unknown config key 'epohcs' .*'epochs'"):
        load_config(cfg, (), DEFAULTS, profile=prof)
    with pytest.raises(FormatError, match=r"--override optim.lrr=9: unknown config key 'optim.lrr'.*'optim.lr'"):
        load_config(cfg, ["optim.lrr=9"], DEFAULTS)
    with pytest.raises(FormatError, match=r"--override zzz=1: unknown config key 'zzz' \(fix: remove it; "
                                          r"valid keys at the top level: caps, epochs, model, optim, seed\)"):
        load_config(cfg, ["zzz=1"], DEFAULTS)
    with pytest.raises(FormatError, match=r"'optim' must be a mapping"):
        load_config(cfg, ["optim=3"], DEFAULTS)


def test_free_paths_and_leaves_with_null_defaults_take_any_keys(tmp_path):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("caps: {avg_pool_3x3: 2}\nmodel: {name: anything, width: 3}\n")
    out = load_config(cfg, (), DEFAULTS, free=("model",))
    assert out["caps"] == {"avg_pool_3x3": 2} and out["model"]["width"] == 3


def test_values_are_checked_with_the_key_file_and_line(tmp_path):
    cfg = tmp_path / "x.yaml"
    cfg.write_text("seed: 1\nepochs: 0\n")
    checks = {"epochs": positive_int, "optim.lr": probability}
    with pytest.raises(FormatError, match=r"x.yaml:2: 'epochs' must be a positive integer, got 0"):
        load_config(cfg, (), DEFAULTS, checks=checks)
    with pytest.raises(FormatError, match=r"--override optim.lr=1.0: 'optim.lr' must be a probability in \[0, 1\)"):
        load_config(cfg, ["epochs=2", "optim.lr=1.0"], DEFAULTS, checks=checks)
    with pytest.raises(FormatError, match=r"'caps' names an unknown op space 'nas3' \(did you mean 'nas1'\?\)"):
        load_config(cfg, ["epochs=2", "caps=nas3"], DEFAULTS, checks={"caps": one_of(["nas1", "darts"], "op space")})

    def model_keys(m):
        for k in m:
            if k not in ("name", "layers"):
                raise UnknownKeyError(k, ["name", "layers"])
    cfg.write_text("model:\n  name: x\n  layrs: 2\n")
    with pytest.raises(FormatError, match=r"x.yaml:3: unknown config key 'model.layrs'.*'model.layers'"):
        load_config(cfg, (), {**DEFAULTS, "model": {}}, free=("model",), checks={"model": model_keys})


def test_diff_configs_lists_changed_leaves():
    assert diff_configs({"a": 1, "o": {"lr": 0.1, "m": 0.9}}, {"a": 1, "o": {"lr": 0.2, "m": 0.9}, "b": 2}) == {
        "o.lr": (0.1, 0.2), "b": (None, 2)}
