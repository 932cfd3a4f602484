"""utils/download_and_verify.sh against file:// URLs: checksum check, resume of a partial file,
refusal of a bad checksum that keeps what was fetched, and no data lost when a fetch fails."""
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "utils" / "download_and_verify.sh"

pytestmark = pytest.mark.skipif(not (shutil.which("curl") or shutil.which("wget")),
                                reason="download_and_verify.sh needs curl or wget")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(url, archive, expected, hint="--sha256"):
    return subprocess.run(["bash", str(SCRIPT), url, str(archive), "sha256", expected, hint],
                          capture_output=True, text=True)


@pytest.fixture
def served(tmp_path):
    data = bytes(range(256)) * 400  # 100 KiB
    path = tmp_path / "server" / "corpus.tar.gz"
    path.parent.mkdir()
    path.write_bytes(data)
    return path, data


def test_fetch_checks_and_keeps_a_good_archive(tmp_path, served):
    path, data = served
    archive = tmp_path / "dest" / "corpus.tar.gz"
    r = download(path.as_uri(), archive, sha256(data).upper())
    assert r.returncode == 0, r.stderr
    assert archive.read_bytes() == data and not Path(f"{archive}.part").exists()
    path.unlink()  # already there with the right checksum: the URL is not read
    r = download(path.as_uri(), archive, sha256(data))
    assert r.returncode == 0 and "already downloaded" in r.stdout


def test_resume_of_a_partial_file(tmp_path, served):
    path, data = served
    archive = tmp_path / "corpus.tar.gz"
    part = Path(f"{archive}.part")
    part.write_bytes(data[:40000])
    r = download(path.as_uri(), archive, sha256(data))
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout and "40000 bytes" in r.stdout
    assert archive.read_bytes() == data and not part.exists()
    # A partial file whose first bytes are not the server's: resumed (not fetched anew), so the
    # result is wrong and refused; the partial data is kept, not deleted.
    archive.unlink()
    part.write_bytes(b"x" * 40000)
    r = download(path.as_uri(), archive, sha256(data))
    assert r.returncode == 1 and "checksum mismatch" in r.stderr
    assert part.read_bytes() == b"x" * 40000 + data[40000:] and not archive.exists()


def test_bad_checksum_is_refused_and_the_download_kept(tmp_path, served):
    path, data = served
    archive = tmp_path / "corpus.tar.gz"
    part = Path(f"{archive}.part")
    r = download(path.as_uri(), archive, "0" * 64)
    assert r.returncode == 1
    assert f"has sha256 {sha256(data)}, expected {'0' * 64}" in r.stderr
    assert f"pass --sha256 {sha256(data)}" in r.stderr and "remove it" in r.stderr
    assert not archive.exists() and part.read_bytes() == data
    # Passing the hint's checksum uses the kept file: nothing is fetched again (the URL is gone).
    path.unlink()
    r = download(path.as_uri(), archive, sha256(data))
    assert r.returncode == 0, r.stderr
    assert archive.read_bytes() == data and not part.exists()
    # An archive already there with another checksum is refused and left as it is.
    r = download(path.as_uri(), archive, "1" * 64)
    assert r.returncode == 1 and "the archive already there" in r.stderr
    assert archive.read_bytes() == data


def test_failed_fetch_keeps_the_partial_file(tmp_path, served):
    path, data = served
    archive = tmp_path / "corpus.tar.gz"
    part = Path(f"{archive}.part")
    part.write_bytes(data[:1000])
    r = download((tmp_path / "gone.tar.gz").as_uri(), archive, sha256(data))
    assert r.returncode != 0 and "run again to resume" in r.stderr
    assert part.read_bytes() == data[:1000]


def test_without_a_checksum_the_download_is_not_verified(tmp_path, served):
    path, data = served
    archive = tmp_path / "corpus.tar.gz"
    r = download(path.as_uri(), archive, "")
    assert r.returncode == 0, r.stderr
    assert f"not verified (no checksum given); its sha256 is {sha256(data)}" in r.stdout
    assert archive.read_bytes() == data
