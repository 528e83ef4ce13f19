"""``make demo`` without a browser: working copies in ``.demo/``, kept across runs, ``ARGS`` reach
JupyterLab, ``git status`` stays clean (``tests/browser/test_make_demo_e2e.py`` runs and saves the
quickstart in a real JupyterLab).

``ARGS=--version`` makes ``jupyter lab`` print its version and exit, which shows that the
arguments reached it. The Makefile runs in a throw-away git repository with this checkout's
Makefile, .gitignore and notebooks; ``VENV`` is the running Python's environment and ``-o``
skips the install step.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import jupyterlab
import pytest

REPO = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent

pytestmark = [pytest.mark.slow,  # two JupyterLab start-ups
              pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


def make_demo(repo: Path, args: str) -> str:
    done = subprocess.run(["make", "--no-print-directory", "demo", f"VENV={VENV}",
                           "-o", f"{VENV}/.app", f"ARGS={args}"],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("Makefile", ".gitignore"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "x")
    return root


def test_demo_opens_working_copies_keeps_edits_and_passes_args(repo: Path) -> None:
    out = make_demo(repo, "--version")
    assert jupyterlab.__version__ in out  # ARGS reached `jupyter lab`
    tracked = {p.name: p.read_bytes() for p in (repo / "notebooks").glob("*.ipynb")}
    copies = {p.name: p.read_bytes() for p in (repo / ".demo").glob("*.ipynb")}
    assert copies == tracked
    edited = repo / ".demo" / "quickstart.ipynb"
    edited.write_bytes(tracked["quickstart.ipynb"].replace(b"quickstart", b"my notes"))
    gone = repo / ".demo" / "your_model.ipynb"
    gone.unlink()
    make_demo(repo, "--version")
    assert b"my notes" in edited.read_bytes()  # the user's edits stay
    assert gone.read_bytes() == tracked["your_model.ipynb"]  # a missing copy comes back
    assert git(repo, "status", "--porcelain") == ""
