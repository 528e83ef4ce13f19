"""ipydeepvis: Jupyter widgets that open up a trained PyTorch CNN.

The core (:class:`Probe`, projections) is importable without any widget library.
"""

from __future__ import annotations

from . import errors
from .core import LayerInfo, Probe, RectifierCoverage
from .errors import DeepVisError

__version__ = "0.1.0"

__all__ = [
    "DeepVisError",
    "LayerInfo",
    "Probe",
    "RectifierCoverage",
    "__version__",
    "errors",
]
