"""What the README tells a newcomer holds: versions, install commands, no stale counts, and the
recipe for viewing a run written by ``ipydeepvis train``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

# README row name -> the package in pyproject.toml / constraints.txt ("python": requires-python)
ROWS = {"Python": "python", "torch": "torch", "torchvision": "torchvision",
        "ipywidgets": "ipywidgets", "JupyterLab": "jupyterlab", "Notebook": "notebook",
        "Voila": "voila", "ipyevents": "ipyevents", "anywidget": "anywidget"}


def _section(heading: str) -> str:
    """The README's text under ``heading``, up to the next heading of its level or a higher one
    (lines in fenced code blocks are no headings)."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = README.splitlines()
    start = lines.index(heading) + 1
    fenced = False
    for end in range(start, len(lines)):
        line = lines[end]
        fenced ^= line.startswith("```")
        hashes = len(line) - len(line.lstrip("#"))
        if not fenced and 0 < hashes <= level and line[hashes:hashes + 1] == " ":
            return "\n".join(lines[start:end])
    return "\n".join(lines[start:])


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)


def _declared() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["app"]]
    found = {canonicalize_name(r.name): str(r.specifier)
             for r in (Requirement(line) for line in requirements)}
    found["python"] = str(Requirement(f"python{project['requires-python']}").specifier)
    return found


def _pinned() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    pins = (line.split("==") for line in lines if "==" in line and not line.startswith("#"))
    return {canonicalize_name(name): version.strip() for name, version in pins}


def test_supported_versions_agree_with_pyproject_and_constraints() -> None:
    table = {}
    for line in _section("## Install with pip").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in ROWS:
            table[ROWS[cells[0]]] = (cells[1], cells[2])
    assert set(table) == set(ROWS.values()), f"rows missing: {set(ROWS.values()) - set(table)}"
    declared, pinned = _declared(), _pinned()
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    for package, (supported, tested) in table.items():
        assert str(Requirement(f"x{supported}").specifier) == declared[package], (
            f"README says {package} {supported}, pyproject.toml {declared[package]}")
        expected = running if package == "python" else pinned[package]
        assert tested == expected, f"README says CI tests {package} {tested}, it runs {expected}"


def test_pip_commands_are_the_ones_ci_runs() -> None:
    commands = "\n".join(_code_blocks(_section("## Install with pip"), "bash"))
    assert re.search(r"^pip install -e \.\s", commands, re.MULTILINE)
    assert 'pip install "git+https://github.com/<owner>/ipydeepvis"' in commands
    script = (ROOT / ".ci" / "pip-path").read_text(encoding="utf-8")
    assert '"${pip[@]}" -e .' in script
    assert '"${pip[@]}" "git+file://$repo"' in script  # the same form, this repository's URL
    assert "make test-pip" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_no_hard_coded_test_counts() -> None:
    stale = re.findall(r"\b\d[\d,]*\s+(?:tests?|of them)\b", README)
    assert not stale, f"README.md counts tests, which goes stale: {stale}"


def test_browser_tests_say_how_to_skip_them_and_point_them_elsewhere() -> None:
    text = _section("### Browser tests")
    assert '-m "not browser"' in text
    from tests.browser import e2e_support

    assert "E2E_CHROMIUM" in text and e2e_support.CHROMIUM
    assert "E2E_ARTIFACTS" in text


@pytest.mark.slow
def test_viewing_a_run_written_by_train_works_as_written(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from ipydeepvis.cli import main

    section = _section("### Viewing a run written by `ipydeepvis train`")
    (command,) = _code_blocks(section, "bash")
    argv = command.split("#")[0].split()
    assert argv[:2] == ["ipydeepvis", "train"]
    out = argv[argv.index("--out") + 1]
    monkeypatch.chdir(tmp_path)
    # the README's command, made small: two epochs of 200 images
    assert main(["train", "--out", out, "--epochs", "2", "--save-epochs", "1,2",
                 "--train-size", "200", "--val-size", "100", "--quiet"]) == 0
    (code,) = _code_blocks(section, "python")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    view, scrubber = namespace["view"], namespace["scrubber"]
    try:
        assert view.wait() and scrubber.wait()
        assert view.scrubber is not None and view.scrubber.epochs == [1, 2]
        assert scrubber.epochs == [1, 2] and view.epoch == 2
        assert view.frames["grid"] is not None
    finally:
        view.close()
        scrubber.close()
