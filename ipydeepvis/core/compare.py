"""Two models (two saved epochs, or two models sharing layer names) on the same layer, unit
and image: both projections and their difference.

What changed in a unit between epoch 5 and epoch 60, or between a model and its fine-tuned
copy, is clearer side by side with the difference drawn than from two screenshots. Each
projection is compared by its shape, not its size: both are divided by their largest
magnitude before the difference is taken (the magnitudes are reported as numbers), so a unit
that only grew stronger shows no difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidOptionError
from .probe import Probe

__all__ = ["Comparison", "compare_projections"]


@dataclass(frozen=True)
class Comparison:
    """Both projections ``(C, H, W)``, ``difference = b / max|b| - a / max|a|``, each
    model's activation of the unit at its seed (``peak_a``, ``peak_b``; the projections
    are of an inactive unit when <= 0), and the Pearson correlation of the two projections
    (NaN when either is zero)."""

    a: torch.Tensor
    b: torch.Tensor
    difference: torch.Tensor
    peak_a: float
    peak_b: float
    correlation: float


def _unit_value(maps: torch.Tensor, unit: int, position: Any) -> float:
    """The unit's activation at its seed: at ``position``, or its largest."""
    values = maps[0, unit]
    return float(values[position]) if isinstance(position, tuple) else float(values.max())


def _normalised(values: torch.Tensor) -> torch.Tensor:
    scale = float(values.abs().max()) if values.numel() else 0.0
    return values / scale if scale > 0 else torch.zeros_like(values)


def compare_projections(probe_a: Probe, probe_b: Probe, x: torch.Tensor, layer: str,
                        unit: int, *, method: str = "deconvnet",
                        position: str | tuple[int, ...] = "max") -> Comparison:
    """Project ``unit`` of ``layer`` for image ``x`` through both models and compare.

    ``position="max"`` seeds each model at its own strongest activation (what each model's
    dashboard shows); a tuple seeds both at the same map position.

    Raises
    ------
    InvalidOptionError
        When ``layer`` is not a layer of the second model, or its shape differs there.
    """
    names_b = {info.name for info in probe_b.layers}
    if layer not in names_b:
        shown = ", ".join(repr(n) for n in list(names_b)[:8])
        msg = (f"layer {layer!r} is not a layer of the model compared with; both models need "
               f"the same layer names (it has {shown}, ...)")
        raise InvalidOptionError(msg)
    maps_a = probe_a.activations(x, [layer])[layer]
    maps_b = probe_b.activations(x, [layer])[layer]
    if maps_a.shape != maps_b.shape:
        msg = (f"layer {layer!r} has shape {tuple(maps_a.shape[1:])} in the first model and "
               f"{tuple(maps_b.shape[1:])} in the second; only layers of the same shape can be "
               "compared")
        raise InvalidOptionError(msg)
    a = probe_a.project(x, layer, unit, method=method, position=position)[0]
    b = probe_b.project(x, layer, unit, method=method, position=position)[0]
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    difference = (_normalised(b64) - _normalised(a64)).to(a.dtype)
    centred_a, centred_b = a64 - a64.mean(), b64 - b64.mean()
    denominator = float(centred_a.norm() * centred_b.norm())
    correlation = float((centred_a * centred_b).sum()) / denominator if denominator > 0 \
        else float("nan")
    return Comparison(a, b, difference, _unit_value(maps_a, unit, position),
                      _unit_value(maps_b, unit, position), correlation)
