"""The core imports no widget library and not the embedded default.

It must work in scripts, batch jobs and CI alike, and reach the embedded default's models,
data or demo by no route (not even ``importlib``): a series' architecture builders are passed
in.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import ipydeepvis

WIDGET_LIBRARIES = ["ipywidgets", "ipycanvas", "bqplot", "traitlets", "IPython"]
EMBEDDED_DEFAULT = ["ipydeepvis.models", "ipydeepvis.data", "ipydeepvis.demo"]
BLOCKED = WIDGET_LIBRARIES + EMBEDDED_DEFAULT
PACKAGE = Path(ipydeepvis.__file__).parent


SCRIPT = """
import importlib.util
import sys
for name in BLOCKED:
    sys.modules[name] = None  # any import of it now raises ImportError

def loaded_blocked():
    return sorted(m for m in sys.modules if sys.modules[m] is not None and any(
        m == b or m.startswith(b + ".") for b in BLOCKED))

try:
    import torch
    import ipydeepvis.core as core
    import ipydeepvis.core.checkpoints
    import ipydeepvis.errors
    probe = core.Probe(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU()))
    out = probe.project(torch.rand(3, 8, 8), "1", [0, 1])
    assert out.shape == (2, 3, 8, 8), out.shape
    assert not loaded_blocked(), loaded_blocked()
    print("core: ok")
except Exception as exc:
    print(f"core: {type(exc).__name__}: {exc}")

try:
    from ipydeepvis.core.checkpoints import CheckpointSeries

    # The embedded default's ZFNet, loaded from its file as a stand-alone module so that the
    # ipydeepvis.models package itself stays blocked.
    spec = importlib.util.spec_from_file_location("standalone_zf", ZF_FILE)
    zf = sys.modules["standalone_zf"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zf)

    def build_zf(**config):
        return zf.ZFNet(zf.ZFNetConfig(**config))

    series = CheckpointSeries(SERIES, builders={"zf": build_zf})
    last = series.epochs[-1]
    model = series.model(last)
    assert isinstance(model, zf.ZFNet) and not model.training
    state = series.load(last)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 11)
    assert series.metrics[last]["val_acc"] > 0.5
    assert not loaded_blocked(), loaded_blocked()
    print("series: ok")
except Exception as exc:
    print(f"series: {type(exc).__name__}: {exc}")
"""


@pytest.fixture(scope="module")
def blocked_run() -> dict[str, str]:
    """Run :data:`SCRIPT` once in a fresh interpreter; ``{"core": ..., "series": ...}``."""
    header = (
        f"BLOCKED = {BLOCKED!r}\n"
        f"ZF_FILE = {str(PACKAGE / 'models' / 'zf.py')!r}\n"
        f"SERIES = {str(PACKAGE / 'data' / 'series')!r}\n"
    )
    result = subprocess.run([sys.executable, "-c", header + SCRIPT], capture_output=True,
                            text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)


def test_core_imports_without_widget_libraries_or_the_embedded_default(
    blocked_run: dict[str, str],
) -> None:
    assert blocked_run.get("core") == "ok", blocked_run


def test_core_reads_the_shipped_series_with_builders_passed_in(
    blocked_run: dict[str, str],
) -> None:
    """The shipped series, opened by core with the architecture passed in as a builder."""
    assert blocked_run.get("series") == "ok", blocked_run


def test_no_route_from_core_to_the_embedded_default_in_the_source() -> None:
    """No ``importlib`` / ``__import__`` in core, and no import of what lies outside it."""
    outside = {"models", "data", "demo", "widgets", "train", "cli", "render"}
    offenders = []
    for path in sorted((PACKAGE / "core").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = "ipydeepvis." if node.level == 2 else ""
                names = [base + (node.module or "")]
                if node.level == 2 and not node.module:
                    names = [f"ipydeepvis.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Name) and node.id in ("__import__", "importlib"):
                names = [node.id]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] in ("importlib", "__import__") or (
                    parts[0] == "ipydeepvis" and len(parts) > 1 and parts[1] in outside
                ):
                    offenders.append(f"{where}: {name}")
    assert not offenders, offenders
