"""A resume of an exp dir written before a config key existed: the key at its default is no change."""
import yaml

from nasr.train.resume import config_changes


def test_a_key_new_since_the_run_is_no_change_at_its_default(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"epochs": 3, "bf16": False}))
    defaults = {"epochs": 200, "bf16": False, "amp": "auto"}
    new = {"epochs": 3, "bf16": False, "amp": "auto"}
    assert config_changes(tmp_path, new, defaults=defaults) == {}
    # without the defaults (as before) the new key reads as a change, and refused the resume
    assert config_changes(tmp_path, new) == {"amp": (None, "auto")}
    # a new key set away from its default does change the run
    assert config_changes(tmp_path, dict(new, amp="off"), defaults=defaults) == {"amp": (None, "off")}
    # an old key dropped or changed is still a change
    assert config_changes(tmp_path, dict(new, epochs=4), defaults=defaults) == {"epochs": (3, 4)}
