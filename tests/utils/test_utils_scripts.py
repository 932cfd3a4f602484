"""utils/*.sh and utils/*.py: Kaldi names and semantics, run the way recipes run them (utils/ on PATH)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nasr.data.audio import write_wav

ROOT = Path(__file__).resolve().parents[2]
UTILS = ROOT / "utils"
SR = 8000


def env():
    e = dict(os.environ)
    # the venv's python first (as path.sh does), utils/ on PATH, the package importable, C collation
    e["PATH"] = f"{Path(sys.executable).parent}:{UTILS}:{e.get('PATH', '')}"
    e["PYTHONPATH"] = str(ROOT)
    e["LC_ALL"] = "C"
    return e


def sh(*args, cwd=None, stdin=None):
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env(), capture_output=True, text=True,
                          input=stdin, encoding="utf-8", timeout=60)


def lines(path):
    return Path(path).read_text(encoding="utf-8").splitlines()


def write_lines(path, rows):
    Path(path).write_text("".join(r + "\n" for r in rows), encoding="utf-8")


def make_data_dir(root: Path, speakers=("spkA", "spkB", "spkC"), utts_per_spk=2, prefix="") -> Path:
    """Written by hand (not through nasr.data.datadir) so the scripts are checked against plain files."""
    data = root / "data" / "train"
    data.mkdir(parents=True)
    (root / "wav").mkdir(exist_ok=True)
    wav, text, utt2spk = [], [], []
    for spk in speakers:
        for i in range(1, utts_per_spk + 1):
            utt = f"{prefix}{spk}-u{i}"
            path = root / "wav" / f"{utt}.wav"
            write_wav(path, np.full(SR // 4, 0.1, dtype=np.float32), SR)
            wav.append(f"{utt} {path}")
            text.append(f"{utt} 말 {i}")
            utt2spk.append(f"{utt} {prefix}{spk}")
    write_lines(data / "wav.scp", wav)
    write_lines(data / "text", text)
    write_lines(data / "utt2spk", utt2spk)
    spk2utt = [f"{prefix}{s} " + " ".join(f"{prefix}{s}-u{i}" for i in range(1, utts_per_spk + 1))
               for s in speakers]
    write_lines(data / "spk2utt", spk2utt)
    return data


SCRIPTS = ["validate_data_dir.sh", "fix_data_dir.sh", "split_data.sh", "subset_data_dir.sh",
           "combine_data.sh", "perturb_data_dir_speed.sh"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_header_and_strict_mode(name):
    text = (UTILS / name).read_text().splitlines()
    assert text[0] == "#!/usr/bin/env bash"
    assert text[1].startswith(f"# Usage: utils/{name}") and text[2].startswith("# e.g.:  utils/")
    assert "set -euo pipefail" in text
    assert os.access(UTILS / name, os.X_OK)
    r = sh(name)  # no arguments: usage on stderr, exit 1
    assert r.returncode == 1 and "Usage:" in r.stderr and "e.g.:" in r.stderr


def test_validate_ok_and_echoes_command_line(tmp_path):
    data = make_data_dir(tmp_path)
    r = sh("validate_data_dir.sh", "--no-feats", data)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0].endswith(f"validate_data_dir.sh --no-feats {data}")
    assert "Successfully validated data-directory" in r.stdout and "6 utterances, 3 speakers" in r.stdout


def _unsorted(data):
    rows = lines(data / "text")
    write_lines(data / "text", [rows[1], rows[0]] + rows[2:])


def _duplicate(data):
    rows = lines(data / "utt2spk")
    write_lines(data / "utt2spk", rows[:2] + [rows[1]] + rows[2:])


def _missing_utt2spk_entry(data):
    write_lines(data / "utt2spk", lines(data / "utt2spk")[:-1])
    write_lines(data / "spk2utt", [r.replace(" spkC-u2", "") for r in lines(data / "spk2utt")])


def _missing_wav(data):
    (data.parent.parent / "wav" / "spkB-u2.wav").unlink()


def _empty_text(data):
    rows = lines(data / "text")
    write_lines(data / "text", rows[:4] + ["spkC-u1"] + rows[5:])


MALFORMED = {
    "unsorted": (_unsorted, "text:2: not sorted: 'spkA-u1' comes after 'spkA-u2'", 6),
    "duplicate": (_duplicate, "utt2spk:3: duplicate key 'spkA-u2'", 6),
    "missing_utt2spk_entry": (_missing_utt2spk_entry, "text:6: utterance 'spkC-u2' is not in utt2spk", 5),
    "missing_wav": (_missing_wav, "wav.scp:4: audio file", 5),
    "empty_text": (_empty_text, "text:5: utterance 'spkC-u1' has empty text", 5),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_validate_catches_and_fix_repairs(tmp_path, case):
    data = make_data_dir(tmp_path)
    breaker, message, n_after_fix = MALFORMED[case]
    breaker(data)
    r = sh("validate_data_dir.sh", data)
    assert r.returncode == 1
    assert f"{data}/{message}" in r.stderr and f"(fix: " in r.stderr
    assert "Traceback" not in r.stderr

    r = sh("fix_data_dir.sh", data)
    assert r.returncode == 0, r.stderr
    assert (data / ".backup" / "utt2spk").is_file()
    r = sh("validate_data_dir.sh", data)
    assert r.returncode == 0, r.stderr
    assert f"{n_after_fix} utterances" in r.stdout


def test_fix_data_dir_options_go_through_parse_options(tmp_path):
    data = make_data_dir(tmp_path)
    write_lines(data / "utt2extra", ["spkA-u1 x", "spkB-u1 y"])
    r = sh("fix_data_dir.sh", "--utt-extra-files", "utt2extra", data)
    assert r.returncode == 0, r.stderr
    assert [x.split()[0] for x in lines(data / "utt2spk")] == ["spkA-u1", "spkB-u1"]
    r = sh("fix_data_dir.sh", "--utt-extra-filez", "x", data)
    assert r.returncode == 1 and "invalid option --utt-extra-filez" in r.stderr and "Usage:" in r.stderr


def test_split_data_script(tmp_path):
    data = make_data_dir(tmp_path)
    r = sh("split_data.sh", data, 3)
    assert r.returncode == 0, r.stderr
    spk = [lines(data / "split3" / str(k) / "spk2utt") for k in (1, 2, 3)]
    assert spk == [["spkA spkA-u1 spkA-u2"], ["spkB spkB-u1 spkB-u2"], ["spkC spkC-u1 spkC-u2"]]
    r = sh("split_data.sh", "--per-utt", data, 4)
    assert r.returncode == 0, r.stderr
    assert [len(lines(data / "split4utt" / str(k) / "utt2spk")) for k in (1, 2, 3, 4)] == [2, 2, 1, 1]
    r = sh("split_data.sh", data, 4)
    assert r.returncode == 1 and "it has 3 speakers" in r.stderr


def test_subset_data_dir_script_forms(tmp_path):
    data = make_data_dir(tmp_path)
    assert sh("subset_data_dir.sh", "--first", 2, data, tmp_path / "f").returncode == 0
    assert [x.split()[0] for x in lines(tmp_path / "f" / "utt2spk")] == ["spkA-u1", "spkA-u2"]
    assert sh("subset_data_dir.sh", "--last", data, 1, tmp_path / "l").returncode == 0  # Kaldi's flag form
    assert lines(tmp_path / "l" / "utt2spk") == ["spkC-u2 spkC"]
    write_lines(tmp_path / "spk", ["spkB"])
    assert sh("subset_data_dir.sh", "--spk-list", tmp_path / "spk", data, tmp_path / "s").returncode == 0
    assert lines(tmp_path / "s" / "spk2utt") == ["spkB spkB-u1 spkB-u2"]
    write_lines(tmp_path / "utt", ["spkC-u1"])
    assert sh("subset_data_dir.sh", "--utt-list", tmp_path / "utt", data, tmp_path / "u").returncode == 0
    assert lines(tmp_path / "u" / "text") == ["spkC-u1 말 1"]
    r = sh("subset_data_dir.sh", data, 4, tmp_path / "r")
    assert r.returncode == 0, r.stderr
    assert len(lines(tmp_path / "r" / "utt2spk")) == 4
    assert sh("validate_data_dir.sh", tmp_path / "r").returncode == 0


def test_combine_and_perturb_scripts(tmp_path):
    a = make_data_dir(tmp_path / "a", speakers=("spkA",))
    b = make_data_dir(tmp_path / "b", speakers=("spkB",))
    r = sh("perturb_data_dir_speed.sh", 0.9, a, tmp_path / "a_sp")
    assert r.returncode == 0, r.stderr
    assert lines(tmp_path / "a_sp" / "utt2spk") == ["sp0.9-spkA-u1 sp0.9-spkA", "sp0.9-spkA-u2 sp0.9-spkA"]
    r = sh("combine_data.sh", tmp_path / "all", a, b, tmp_path / "a_sp")
    assert r.returncode == 0, r.stderr
    assert len(lines(tmp_path / "all" / "utt2spk")) == 6
    assert sh("validate_data_dir.sh", tmp_path / "all").returncode == 0
    r = sh("combine_data.sh", tmp_path / "dup", a, a)
    assert r.returncode == 1 and "utterance 'spkA-u1' is also in" in r.stderr


def test_utt2spk_spk2utt_filters_utf8(tmp_path):
    utt2spk = "화자1-발화1 화자1\nb x\n화자1-발화2 화자1\n"
    r = sh("utt2spk_to_spk2utt.py", stdin=utt2spk)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "화자1 화자1-발화1 화자1-발화2\nx b\n"
    r2 = sh("spk2utt_to_utt2spk.py", stdin=r.stdout)
    assert r2.stdout == "화자1-발화1 화자1\n화자1-발화2 화자1\nb x\n"
    (tmp_path / "u2s").write_text(utt2spk, encoding="utf-8")
    assert sh("utt2spk_to_spk2utt.py", tmp_path / "u2s").stdout == r.stdout
    assert sh("utt2spk_to_spk2utt.py", stdin="only-one-field\n").returncode == 1


# ---------------------------------------------------------------------------------------------
# parse_options.sh

def run_with_options(tmp_path, *args):
    script = tmp_path / "opts.sh"
    script.write_text(
        "#!/usr/bin/env bash\n"
        "set -euo pipefail\n"
        "nj=4\nuse_gpu=false\nfoo_bar=default\nempty_ok=\n"
        'help_message="Usage: opts.sh [--nj N] [--use-gpu true|false] [--foo-bar X] <a> <b>"\n'
        f". {UTILS}/parse_options.sh\n"
        'echo "nj=$nj use_gpu=$use_gpu foo_bar=$foo_bar empty_ok=$empty_ok args=$*"\n')
    script.chmod(0o755)
    return sh(script, *args)


def test_parse_options_sets_variables_and_leaves_positionals(tmp_path):
    r = run_with_options(tmp_path, "--foo-bar", "x y", "--nj=8", "--use-gpu", "true", "--empty-ok", "", "a", "b")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "nj=8 use_gpu=true foo_bar=x y empty_ok= args=a b\n"
    r = run_with_options(tmp_path, "--", "--nj", "3")
    assert r.stdout == "nj=4 use_gpu=false foo_bar=default empty_ok= args=--nj 3\n"


def test_parse_options_boolean_must_stay_boolean(tmp_path):
    r = run_with_options(tmp_path, "--use-gpu", "yes", "a")
    assert r.returncode == 1 and "expects true or false" in r.stderr and r.stdout == ""


def test_parse_options_unknown_option_is_fatal_with_usage(tmp_path):
    r = run_with_options(tmp_path, "--nj", "2", "--num-jobs", "3", "a")
    assert r.returncode == 1 and "invalid option --num-jobs" in r.stderr
    assert "Usage: opts.sh" in r.stderr and r.stdout == ""
    r = run_with_options(tmp_path, "--bad;touch${IFS}pwned", "1")  # never eval'd
    assert r.returncode == 1 and not (tmp_path / "pwned").exists()
    r = run_with_options(tmp_path, "--nj")
    assert r.returncode == 1 and "needs a value" in r.stderr


def test_parse_options_help_exits_0(tmp_path):
    r = run_with_options(tmp_path, "--help")
    assert r.returncode == 0 and "Usage: opts.sh" in r.stderr and r.stdout == ""


def test_parse_options_config_file_then_command_line(tmp_path):
    conf = tmp_path / "my.conf"
    conf.write_text("nj=16\nfoo_bar=from_config\n")
    r = run_with_options(tmp_path, "--nj", "2", "--config", conf, "a")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "nj=2 use_gpu=false foo_bar=from_config empty_ok= args=a\n"  # command line wins
    r = run_with_options(tmp_path, "--config", tmp_path / "missing.conf")
    assert r.returncode == 1 and "cannot read config file" in r.stderr


@pytest.mark.parametrize("recipe,args,message", [
    ("speech_commands", ["--space", "nas3"], "--space 'nas3' is not one of: nas1 nas2"),
    ("speech_commands", ["--search", "random"], "--search 'random' is not one of: darts tower"),
    ("aishell1", ["--spaces", "darts nas1"], "--spaces 'nas1' is not one of: asr_revised darts"),
    ("aishell2", ["--distributed", "mpi"], "--distributed 'mpi' is not one of: bmuf ddp none"),
    ("aishell2", ["--nets", "asrnet_c"], "--nets 'asrnet_c' is not one of: asrnet_b asrnet_a dfsmn_san"),
    ("lid", ["--baseline-hparams", "tuned"], "--baseline-hparams 'tuned' is not one of: search config"),
])
def test_recipe_options_with_fixed_values_name_the_ones_that_exist(tmp_path, recipe, args, message):
    # Before: ./run.sh --space nas3 ran stages 0-2, then failed on a missing conf/search_nas3.yaml.
    work = tmp_path / recipe
    work.mkdir()
    for entry in (ROOT / "egs" / recipe).iterdir():
        if entry.name in ("run.sh", "path.sh", "cmd.sh", "conf", "local", "utils"):
            (work / entry.name).symlink_to(entry)
    proc = sh("bash", "run.sh", "--synth", "true", *args, cwd=work)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]
    assert sorted(p.name for p in work.iterdir()) == ["cmd.sh", "conf", "local", "path.sh", "run.sh", "utils"]
