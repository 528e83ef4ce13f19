"""The model-facing core: torch and NumPy only, no widget library is imported below here.

A core function can be called from a script, a test, a batch job or a widget alike.
"""

from __future__ import annotations

from .compare import Comparison
from .correspondence import Correspondence
from .histogram import LayerHistogram, ProbeHistogram, activation_histogram, probe_histogram
from .index import TopKIndex
from .indexing import build_index
from .invariance import Invariance
from .layers import LayerInfo
from .maximize import MaximizeParams, MaximizeResult, MaximizeState, maximize_params
from .occlusion import OcclusionMap
from .probe import Probe
from .receptive import ReceptiveField, receptive_field
from .rectifiers import METHODS, RectifierCall, RectifierCoverage
from .sanity import SanityCheck, sanity_cascade, sanity_check
from .series_analysis import SeriesAnalysis
from .topk import TopK, top_k

__all__ = ["METHODS", "LayerInfo", "Probe", "RectifierCall", "RectifierCoverage", "TopK", "top_k"]
# The functions occlusion / invariance / correspondence / maximize are exported by the package
# root (dv.occlusion, ...): binding them here would hide the submodules of the same name.
__all__ += ["Correspondence", "Invariance", "OcclusionMap"]
__all__ += ["ReceptiveField", "TopKIndex", "build_index", "receptive_field"]
__all__ += ["MaximizeParams", "MaximizeResult", "MaximizeState", "maximize_params"]
__all__ += ["SeriesAnalysis"]
__all__ += ["Comparison"]
__all__ += ["LayerHistogram", "ProbeHistogram", "activation_histogram", "probe_histogram"]
__all__ += ["SanityCheck", "sanity_cascade", "sanity_check"]
