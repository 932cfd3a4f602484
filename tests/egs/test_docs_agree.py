"""The README, the run.sh headers and setup.py tell a new user the same things."""
import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
RECIPES = ["speech_commands", "aishell1", "aishell2", "lid"]


def setup_call():
    tree = ast.parse((ROOT / "setup.py").read_text())
    assigns = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
               if isinstance(t, ast.Name)}
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kwargs = {k.arg: k.value for k in call.keywords}
    return ast.literal_eval(kwargs["python_requires"]), ast.literal_eval(assigns["install_requires"])


def test_python_version_agrees():
    requires, _ = setup_call()
    low = re.fullmatch(r">=(\d+)\.(\d+)", requires.split(",")[0].strip())
    assert low, requires
    said = re.search(r"with Python (\d+)\.(\d+)", README)
    assert said and said.groups() == low.groups(), f"README: Python {said and said.groups()}, setup.py {requires}"
    assert sys.version_info[:2] >= tuple(map(int, low.groups()))


def test_readme_names_as_packages_only_what_setup_installs():
    _, install_requires = setup_call()
    para = re.search(r"Packages that take the roles of tools that cannot be installed here:(.*?)\n\n", README, re.S)
    named = re.sub(r"\([^)]*\)", "", re.split(r"\.\s", para.group(1))[0])  # its first sentence
    names = {n.strip() for n in re.split(r"[,+]", named) if n.strip()}
    assert len(names) >= 5 and names <= set(install_requires), names - set(install_requires)


@pytest.mark.parametrize("recipe", RECIPES)
def test_run_time_in_the_header_is_the_readmes(recipe):
    header = []
    for line in (ROOT / "egs" / recipe / "run.sh").read_text().splitlines()[1:]:
        if not line.startswith("#"):
            break
        header.append(line)
    synth = re.search(r"--synth true(.*?)(?=\n# \S|\Z)", "\n".join(header), re.S).group(1)
    minutes = re.findall(r"(\d+(?:\.\d+)?) min", synth)
    assert minutes and "CPU cores" in synth, f"egs/{recipe}/run.sh: no measured time (and machine) for --synth true"
    status = README.split("## Status", 1)[1]
    row = next(line for line in status.splitlines() if line.startswith(f"| `egs/{recipe}` |"))
    for m in minutes:
        assert f"{m} min" in row, f"egs/{recipe}/run.sh says {m} min, the README's status row does not"
