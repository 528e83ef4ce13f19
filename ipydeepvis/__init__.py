"""ipydeepvis: Jupyter widgets that open up a trained PyTorch CNN.

The core (:class:`Probe`, projections) imports no widget library; the widgets
(:class:`DeepVis`) and the embedded default (:mod:`demo`, :class:`Shapes`, and
:class:`CheckpointSeries`, which knows its models) are loaded on first use.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .core import (
    Correspondence,
    Invariance,
    LayerHistogram,
    LayerInfo,
    MaximizeParams,
    MaximizeResult,
    OcclusionMap,
    Probe,
    RectifierCoverage,
    SanityCheck,
    TopK,
    TopKIndex,
    activation_histogram,
    build_index,
    maximize_params,
    sanity_cascade,
    sanity_check,
    top_k,
)
from .core.compare import compare_projections
from .core.correspondence import correspondence
from .core.invariance import invariance
from .core.maximize import maximize
from .core.occlusion import occlusion
from .errors import DeepVisError

__version__ = "0.1.0"

__all__ = [
    "CameraView",
    "CheckpointSeries",
    "Correspondence",
    "DeepVis",
    "DeepVisError",
    "EpochScrubber",
    "Invariance",
    "LayerHistogram",
    "LayerInfo",
    "MaximizeParams",
    "MaximizeResult",
    "OcclusionMap",
    "Probe",
    "RectifierCoverage",
    "SanityCheck",
    "Shapes",
    "TopK",
    "TopKIndex",
    "__version__",
    "activation_histogram",
    "build_index",
    "compare_projections",
    "correspondence",
    "demo",
    "errors",
    "invariance",
    "maximize",
    "maximize_params",
    "occlusion",
    "sanity_cascade",
    "sanity_check",
    "top_k",
]

_LAZY = {
    "CheckpointSeries": ("ipydeepvis.checkpoints", "CheckpointSeries"),
    "Shapes": ("ipydeepvis.data", "Shapes"),
    "demo": ("ipydeepvis.demo", ""),
    "DeepVis": ("ipydeepvis.widgets", "DeepVis"),
    "CameraView": ("ipydeepvis.widgets", "CameraView"),
    "EpochScrubber": ("ipydeepvis.widgets", "EpochScrubber"),
}


def __getattr__(name: str) -> Any:
    """Import the widgets and the embedded default only when asked for (core needs neither)."""
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        loaded = importlib.import_module(module)
        return getattr(loaded, attribute) if attribute else loaded
    msg = f"module 'ipydeepvis' has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    """The lazy names too, for tab completion."""
    return sorted(set(globals()) | set(__all__))
