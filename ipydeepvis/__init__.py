"""ipydeepvis: Jupyter widgets that open up a trained PyTorch CNN.

The core (:class:`Probe`, projections) imports no widget library; the widgets
(:class:`DeepVis`) are loaded on first use.
"""

from __future__ import annotations

from typing import Any

from . import demo, errors
from .core import (
    Correspondence,
    Invariance,
    LayerInfo,
    OcclusionMap,
    Probe,
    RectifierCoverage,
    TopK,
    top_k,
)
from .core.checkpoints import CheckpointSeries
from .core.correspondence import correspondence
from .core.invariance import invariance
from .core.occlusion import occlusion
from .data import Shapes
from .errors import DeepVisError

__version__ = "0.1.0"

__all__ = [
    "CheckpointSeries",
    "Correspondence",
    "DeepVis",
    "DeepVisError",
    "EpochScrubber",
    "Invariance",
    "LayerInfo",
    "OcclusionMap",
    "Probe",
    "RectifierCoverage",
    "Shapes",
    "TopK",
    "__version__",
    "correspondence",
    "demo",
    "errors",
    "invariance",
    "occlusion",
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
