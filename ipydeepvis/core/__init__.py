"""The model-facing core: torch and NumPy only, no widget library is imported below here.

A core function can be called from a script, a test, a batch job or a widget alike.
"""

from __future__ import annotations

from .index import TopKIndex
from .indexing import build_index
from .layers import LayerInfo
from .probe import Probe
from .receptive import ReceptiveField, receptive_field
from .rectifiers import METHODS, RectifierCall, RectifierCoverage
from .topk import TopK, top_k

__all__ = ["METHODS", "LayerInfo", "Probe", "RectifierCall", "RectifierCoverage", "TopK", "top_k"]
__all__ += ["ReceptiveField", "TopKIndex", "build_index", "receptive_field"]
