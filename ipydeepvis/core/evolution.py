"""How features evolved across a training run (Zeiler & Fergus Fig. 4, made measurable).

Given the models of several saved epochs and a probe set of images, this module finds, for some
units of one layer, the image and position of the strongest activation at each epoch, projects
it back to pixels with the deconvnet and crops it (and the image patch) to the region the
projection covers; it marks the epochs where that image changed (Z&F's "sudden jumps"). It also
measures per-layer convergence: the relative weight change between consecutive epochs and the
fraction of dead units.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InvalidOptionError
from .probe import Probe
from .topk import TopK, top_k_many

__all__ = [
    "EvolutionRow",
    "EvolutionStrip",
    "assemble_strip",
    "conv_weight_keys",
    "evolution_row",
    "evolution_strip",
    "relative_weight_change",
    "support_box",
]


def conv_weight_keys(model: nn.Module) -> dict[str, str]:
    """``{conv layer name: its weight's state_dict key}`` in module order."""
    return {name: f"{name}.weight" for name, module in model.named_modules()
            if isinstance(module, nn.modules.conv._ConvNd)}


def relative_weight_change(states: Sequence[Mapping[str, torch.Tensor]],
                           keys: Sequence[str]) -> torch.Tensor:
    """``||W_e - W_prev|| / ||W_e||`` for each key between consecutive states, ``(E-1, K)``."""
    if len(states) < 2:
        msg = f"need at least two saved epochs to compare, got {len(states)}"
        raise InvalidOptionError(msg)
    rows = []
    for previous, current in itertools.pairwise(states):
        row = []
        for key in keys:
            now = current[key].double()
            before = previous[key].double()
            norm = float(now.norm())
            row.append(float((now - before).norm()) / norm if norm > 0 else 0.0)
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


def support_box(projection: torch.Tensor, relative: float = 1e-3,
                minimum: int = 8) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` (exclusive ends) around the pixels a projection reaches.

    Pixels whose channel-summed magnitude exceeds ``relative`` of the largest count; the box is
    grown to a square of at least ``minimum`` px (inside the image) so crops line up in a strip.
    """
    _, height, width = projection.shape
    magnitude = projection.detach().abs().sum(0)
    top_value = float(magnitude.max())
    if top_value <= 0:
        return 0, 0, height, width
    rows = torch.nonzero((magnitude > relative * top_value).any(1)).flatten()
    cols = torch.nonzero((magnitude > relative * top_value).any(0)).flatten()
    top, bottom = int(rows.min()), int(rows.max()) + 1
    left, right = int(cols.min()), int(cols.max()) + 1
    side = min(max(bottom - top, right - left, minimum), height, width)
    top = max(0, min(height - side, (top + bottom - side) // 2))
    left = max(0, min(width - side, (left + right - side) // 2))
    return top, left, top + side, left + side


@dataclass(frozen=True)
class EvolutionStrip:
    """Per (epoch, unit): the strongest probe-set activation, its projection and image patch.

    ``changed[e, u]`` is True where the image giving the strongest activation differs from the
    previous epoch's. ``projections[e][u]`` and ``patches[e][u]`` are ``(C, h, w)`` crops of the
    deconvnet projection and of the image to ``boxes[e, u]`` = ``(top, left, bottom, right)``.
    """

    layer: str
    epochs: tuple[int, ...]
    units: tuple[int, ...]
    values: torch.Tensor
    indices: torch.Tensor
    positions: torch.Tensor
    boxes: torch.Tensor
    changed: torch.Tensor
    projections: tuple[tuple[torch.Tensor, ...], ...]
    patches: tuple[tuple[torch.Tensor, ...], ...]


def _image(dataset: Any, index: int) -> torch.Tensor:
    item = dataset[index]
    return item[0] if isinstance(item, (tuple, list)) else item


@dataclass(frozen=True)
class EvolutionRow:
    """One epoch of an :class:`EvolutionStrip` (see there)."""

    values: torch.Tensor
    indices: torch.Tensor
    positions: torch.Tensor
    boxes: torch.Tensor
    projections: tuple[torch.Tensor, ...]
    patches: tuple[torch.Tensor, ...]


def evolution_row(probe: Probe, dataset: Any, scan: TopK, units: Sequence[int]) -> EvolutionRow:
    """Project each unit's strongest probe-set activation (from ``scan``, a top-1 scan of the
    layer with this probe's weights) and crop projection and image to the projection's support.
    """
    unit_list = list(units)
    best = scan.indices[unit_list, 0]
    where = scan.positions[unit_list, 0]
    projections, patches, boxes = [], [], []
    for unit, image_index, position in zip(unit_list, best.tolist(), where, strict=True):
        image = _image(dataset, image_index)
        seed: Any = tuple(int(p) for p in position) if position.numel() else "max"
        projection = probe.project(image, scan.layer, unit, method="deconvnet", position=seed)[0]
        top, left, bottom, right = support_box(projection)
        boxes.append((top, left, bottom, right))
        projections.append(projection[:, top:bottom, left:right].clone())
        patches.append(image[:, top:bottom, left:right].clone())
    return EvolutionRow(scan.values[unit_list, 0], best, where, torch.tensor(boxes),
                        tuple(projections), tuple(patches))


def assemble_strip(layer: str, units: Sequence[int],
                   rows: Sequence[tuple[int, EvolutionRow]]) -> EvolutionStrip:
    """Stack per-epoch rows into a strip and mark where the strongest image changed."""
    indices = torch.stack([row.indices for _, row in rows])
    changed = torch.zeros_like(indices, dtype=torch.bool)
    changed[1:] = indices[1:] != indices[:-1]
    return EvolutionStrip(
        layer, tuple(epoch for epoch, _ in rows), tuple(units),
        torch.stack([row.values for _, row in rows]), indices,
        torch.stack([row.positions for _, row in rows]),
        torch.stack([row.boxes for _, row in rows]), changed,
        tuple(row.projections for _, row in rows), tuple(row.patches for _, row in rows),
    )


def evolution_strip(
    models: Sequence[tuple[int, nn.Module]],
    dataset: Any,
    layer: str,
    units: Sequence[int],
    *,
    probe_size: int = 300,
    batch_size: int = 64,
    progress: bool = False,
    callback: Callable[[int, int], bool | None] | None = None,
) -> EvolutionStrip:
    """Compute the Fig. 4 strip for ``units`` of ``layer`` over ``(epoch, model)`` pairs.

    Parameters
    ----------
    models : sequence of (int, nn.Module)
        The model of each saved epoch, in epoch order.
    dataset : Tensor, sequence or Dataset
        Probe images (or ``(image, label)`` pairs); the first ``probe_size`` are scanned.
    layer : str
        Layer name.
    units : sequence of int
        Units to follow.
    callback : callable, optional
        ``callback(epochs done, epochs)`` after every epoch; returning False stops early.
    """
    rows = []
    for done, (epoch, model) in enumerate(models, start=1):
        probe = Probe(model)
        name = probe.layer(layer).name
        scan = top_k_many(probe, dataset, [name], 1, batch_size=batch_size, limit=probe_size,
                          progress=progress)[name]
        rows.append((epoch, evolution_row(probe, dataset, scan, units)))
        if callback is not None and callback(done, len(models)) is False:
            break
    return assemble_strip(layer, units, rows)
