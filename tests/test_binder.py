"""Binder's configuration agrees with pyproject.toml; the README's Binder URL opens the quickstart.

A Binder launch (repo2docker) installs ``binder/requirements.txt`` with pip from the repository
root, on the Python of ``binder/runtime.txt``, and opens the badge URL's ``urlpath``. Nothing here
needs the network: the files are only read and compared.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
QUICKSTART = "notebooks/quickstart.ipynb"
BINDER_URL = re.compile(r"https://mybinder\.org/v2/gh/[^\s)\"'\]`]+")


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _lines() -> list[str]:
    """Non-empty lines of binder/requirements.txt without comments."""
    text = (BINDER / "requirements.txt").read_text(encoding="utf-8")
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def _binder_requirements() -> dict[str, Requirement]:
    """Named requirements of binder/requirements.txt (options and local paths left out)."""
    found = {}
    for line in _lines():
        if line.startswith("-") or line.startswith("."):
            continue
        requirement = Requirement(line)
        found[canonicalize_name(requirement.name)] = requirement
    return found


def _by_name(requirements: list[str]) -> dict[str, Requirement]:
    parsed = (Requirement(r) for r in requirements)
    return {canonicalize_name(r.name): r for r in parsed}


def test_every_runtime_dependency_is_listed_with_the_same_range() -> None:
    binder = _binder_requirements()
    for name, wanted in _by_name(_project()["dependencies"]).items():
        assert name in binder, f"binder/requirements.txt lacks {wanted} (from pyproject.toml)"
        listed = binder[name]
        assert listed.specifier == wanted.specifier, (
            f"binder/requirements.txt has {listed}, pyproject.toml has {wanted}")
        assert listed.marker == wanted.marker and listed.extras == wanted.extras


def test_binder_adds_only_what_the_app_extra_declares() -> None:
    project = _project()
    known = _by_name(project["dependencies"]) | _by_name(
        project["optional-dependencies"]["app"])
    for name, listed in _binder_requirements().items():
        assert name in known, (
            f"binder/requirements.txt installs {listed}, which pyproject.toml does not declare "
            "(neither a dependency nor in the 'app' extra)")
        assert listed.specifier == known[name].specifier, (
            f"binder/requirements.txt has {listed}, pyproject.toml has {known[name]}")


def test_torch_comes_from_the_cpu_index() -> None:
    indexes = [re.split(r"[\s=]+", line, maxsplit=1)[1] for line in _lines()
               if line.startswith("--extra-index-url")]
    assert CPU_INDEX in indexes, "binder/requirements.txt must add PyTorch's CPU-only index"
    assert {"torch", "torchvision"} <= set(_binder_requirements())


def test_the_package_itself_is_installed() -> None:
    local = [line for line in _lines() if line in (".", "-e .", "--editable .", "./")]
    assert local, "binder/requirements.txt must install the package itself ('.' or '-e .')"
    assert (ROOT / "pyproject.toml").is_file()


def test_runtime_python_satisfies_requires_python() -> None:
    runtime = (BINDER / "runtime.txt").read_text(encoding="utf-8").strip()
    match = re.fullmatch(r"python-(\d+\.\d+)", runtime)
    assert match, f"binder/runtime.txt should read like 'python-3.11', got {runtime!r}"
    requires = Requirement(f"python{_project()['requires-python']}").specifier
    assert Version(match.group(1)) in requires, (
        f"binder/runtime.txt asks for {runtime}, pyproject.toml requires-python {requires}")


def test_executable_hooks_are_executable() -> None:
    for name in ("postBuild", "start"):
        hook = BINDER / name
        if hook.exists():
            assert hook.stat().st_mode & 0o111, f"binder/{name} must be executable"


def test_readme_binder_url_opens_the_quickstart_and_is_no_broken_link() -> None:
    """Until the repository's public URL is known the README gives Binder's URL pattern as text,
    with an ``<owner>`` placeholder: no badge and no link that leads nowhere."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "badge_logo.svg" not in readme, "a Binder badge needs the repository's real URL"
    urls = BINDER_URL.findall(readme)
    assert urls, "README.md does not say how to open the notebooks on Binder"
    for url in urls:
        parsed = urlparse(url)
        parts = parsed.path.split("/")  # ['', 'v2', 'gh', owner, repo, ref]
        assert len(parts) == 6 and all(parts[3:]), f"not a v2/gh/OWNER/REPO/REF link: {url}"
        if parts[3] == "<owner>" or parts[3].upper() == "OWNER":
            assert f"]({url}" not in readme and f"<{url}>" not in readme, (
                f"{url} has a placeholder owner: it must not be a link")
        urlpath = unquote(parse_qs(parsed.query).get("urlpath", [""])[0])
        assert urlpath == f"lab/tree/{QUICKSTART}", f"{url} does not open {QUICKSTART} in Lab"
    assert (ROOT / QUICKSTART).is_file()


def test_readme_lists_every_notebook() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"notebooks/{notebook.name}" in readme, f"README.md does not list {notebook.name}"
