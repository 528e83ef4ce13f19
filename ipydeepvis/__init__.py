"""ipydeepvis: Jupyter widgets that open up a trained PyTorch CNN.

The core (:class:`Probe`, projections) imports no widget library; the widgets
(:class:`DeepVis`) are loaded on first use.
"""

from __future__ import annotations

from typing import Any

from . import demo, errors
from .core import LayerInfo, Probe, RectifierCoverage, TopK, TopKIndex, build_index, top_k
from .core.checkpoints import CheckpointSeries
from .data import Shapes
from .errors import DeepVisError

__version__ = "0.1.0"

__all__ = [
    "CheckpointSeries",
    "DeepVis",
    "DeepVisError",
    "EpochScrubber",
    "LayerInfo",
    "Probe",
    "RectifierCoverage",
    "Shapes",
    "TopK",
    "TopKIndex",
    "__version__",
    "build_index",
    "demo",
    "errors",
    "top_k",
]

_LAZY = {
    "DeepVis": ("ipydeepvis.widgets", "DeepVis"),
    "EpochScrubber": ("ipydeepvis.widgets", "EpochScrubber"),
}


def __getattr__(name: str) -> Any:
    """Import the widget layer only when it is asked for (the core works without it)."""
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    msg = f"module 'ipydeepvis' has no attribute {name!r}"
    raise AttributeError(msg)
