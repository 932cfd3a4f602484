"""What a user sees of every recipe's options: `./run.sh --help` and a stray argument."""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ["speech_commands", "aishell1", "aishell2", "lid"]


def option_block(run_sh: Path):
    """(name, default text, comment) of each `name=value  # comment` line of the options block."""
    lines = run_sh.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# ---- options"))
    options = []
    for line in lines[start + 1:]:
        if not line:
            break
        m = re.match(r"([A-Za-z_]\w*)=(\"[^\"]*\"|\S*)\s*(?:#\s?(.*))?$", line)
        if m:
            options.append((m.group(1), m.group(2).strip('"'), (m.group(3) or "").strip()))
    return options


def run(recipe: str, *args):
    return subprocess.run(["bash", "run.sh", *args], cwd=ROOT / "egs" / recipe, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("recipe", RECIPES)
def test_help_lists_every_option_with_its_default_and_meaning(recipe):
    options = option_block(ROOT / "egs" / recipe / "run.sh")
    assert len(options) > 10
    undocumented = [name for name, _, comment in options if not comment]
    assert not undocumented, f"egs/{recipe}/run.sh: options without a comment: {undocumented}"
    r = run(recipe, "--stage", "5", "--help")  # the defaults are shown, not the values given
    assert r.returncode == 0, r.stderr
    for name, default, comment in options:
        flag = "--" + name.replace("_", "-")
        shown = f'"{default}"' if (not default or " " in default) else default
        m = re.search(rf"^  {re.escape(flag)} {re.escape(shown)}\n?\s*# (.*)$", r.stderr, re.M)
        assert m, f"{flag} {shown} not in the help of egs/{recipe}/run.sh:\n{r.stderr}"
        assert m.group(1) == comment


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_stray_argument_is_named(recipe):
    r = run(recipe, "--stage", "9", "stray-arg")
    assert r.returncode == 1
    assert "unexpected argument 'stray-arg'" in r.stderr
