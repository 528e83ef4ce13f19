"""The core imports no widget library: it must work in scripts, batch jobs and CI alike."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ["ipywidgets", "ipycanvas", "bqplot", "traitlets", "IPython"]


def test_core_imports_without_widget_libraries() -> None:
    code = textwrap.dedent(f"""
        import sys
        for name in {BLOCKED!r}:
            sys.modules[name] = None  # any import of it now raises ImportError
        import torch
        import ipydeepvis.core as core
        import ipydeepvis.errors
        probe = core.Probe(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU()))
        out = probe.project(torch.rand(3, 8, 8), "1", [0, 1])
        assert out.shape == (2, 3, 8, 8), out.shape
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r}
                        and sys.modules[m] is not None)
        assert not loaded, loaded
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
