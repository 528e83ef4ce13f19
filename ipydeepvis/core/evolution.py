"""How features evolved across a training run (Zeiler & Fergus Fig. 4, made measurable).

Given the models of several saved epochs and a probe set of images, this module finds, for some
units of one layer, the image and position of the strongest activation at each epoch, projects
it back to pixels with the deconvnet and crops it (and the image patch) to the region the
projection covers; it marks the epochs where that image changed (Z&F's "sudden jumps"). It also
measures per-layer convergence: the relative weight change between consecutive epochs and the
fraction of dead units.

These are the building blocks; :class:`~ipydeepvis.core.series_analysis.SeriesAnalysis` runs
them over a checkpoint series with bounded caches. A diverged epoch (non-finite weights,
activations or projections) gives cells marked as such, never an exception or a made-up value.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InvalidOptionError
from .probe import Probe
from .topk import TopK, top_k_many

__all__ = [
    "EvolutionCell",
    "EvolutionRow",
    "EvolutionStrip",
    "assemble_strip",
    "conv_weight_keys",
    "evolution_cell",
    "evolution_row",
    "evolution_strip",
    "invalid_cell",
    "nonfinite_report",
    "relative_weight_change",
    "support_box",
    "weight_change_between",
]


def conv_weight_keys(model: nn.Module) -> dict[str, str]:
    """``{conv layer name: its weight's state_dict key}`` in module order."""
    return {name: f"{name}.weight" for name, module in model.named_modules()
            if isinstance(module, nn.modules.conv._ConvNd)}


def relative_weight_change(states: Sequence[Mapping[str, torch.Tensor]],
                           keys: Sequence[str]) -> torch.Tensor:
    """``||W_e - W_prev|| / ||W_e||`` for each key between consecutive states, ``(E-1, K)``.

    NaN where either state holds a non-finite value in that tensor (a diverged epoch): the
    change is unknown, not zero. A tensor that is zero and stays zero changes by 0.0.
    """
    if len(states) < 2:
        msg = f"need at least two saved epochs to compare, got {len(states)}"
        raise InvalidOptionError(msg)
    rows = [[weight_change_between(previous[key], current[key]) for key in keys]
            for previous, current in itertools.pairwise(states)]
    return torch.tensor(rows, dtype=torch.float64)


def weight_change_between(before: torch.Tensor, now: torch.Tensor) -> float:
    """``||now - before|| / ||now||`` in float64; NaN if either is non-finite, 0/0 is 0."""
    now64, before64 = now.detach().double(), before.detach().double()
    norm = float(now64.norm())
    diff = float((now64 - before64).norm())
    if not (math.isfinite(norm) and math.isfinite(diff)):
        return math.nan
    if norm > 0:
        return diff / norm
    return 0.0 if diff == 0 else math.inf


def nonfinite_report(state: Mapping[str, torch.Tensor]) -> str:
    """``""`` when every floating tensor of ``state`` is finite, else which ones are not."""
    bad = []
    for key, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            finite = torch.isfinite(tensor)
            if not bool(finite.all()):
                bad.append(f"{key} ({int((~finite).sum())} of {tensor.numel()} values)")
    if not bad:
        return ""
    more = f" and {len(bad) - 3} more tensors" if len(bad) > 3 else ""
    return f"non-finite weights in {', '.join(bad[:3])}{more}"


def support_box(projection: torch.Tensor, relative: float = 1e-3,
                minimum: int = 8) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` (exclusive ends) around the pixels a projection reaches.

    Pixels whose channel-summed magnitude exceeds ``relative`` of the largest count; the box is
    grown to a square of at least ``minimum`` px (inside the image) so crops line up in a strip.
    A projection without a finite positive signal gets the whole image.
    """
    _, height, width = projection.shape
    magnitude = projection.detach().abs().sum(0)
    top_value = float(magnitude.max()) if magnitude.numel() else 0.0
    if not math.isfinite(top_value) or top_value <= 0:
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
    previous epoch's (both finite). ``projections[e][u]`` and ``patches[e][u]`` are
    ``(C, h, w)`` crops of the deconvnet projection and of the image to ``boxes[e, u]`` =
    ``(top, left, bottom, right)``. ``nonfinite[e, u]`` marks cells whose weights, activation
    or projection were not finite (a diverged epoch: nothing meaningful to show, the value is
    NaN and the index -1); ``notes`` says which, one line per problem.
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
    nonfinite: torch.Tensor | None = None
    notes: tuple[str, ...] = ()


def _image(dataset: Any, index: int) -> torch.Tensor:
    item = dataset[index]
    return item[0] if isinstance(item, (tuple, list)) else item


@dataclass(frozen=True)
class EvolutionCell:
    """One (epoch, unit) of a strip: strongest image, its projection crop and image patch.

    ``problem`` is ``""`` for a valid cell, else why nothing meaningful can be shown (then
    ``value`` is NaN, ``index`` -1 and the crops are ``(C, 1, 1)`` zeros).
    """

    value: float
    index: int
    position: tuple[int, ...]
    box: tuple[int, int, int, int]
    projection: torch.Tensor
    patch: torch.Tensor
    problem: str = ""

    @property
    def nbytes(self) -> int:
        """Memory held by the cell's tensors (what a cache of cells counts)."""
        return (self.projection.nelement() * self.projection.element_size()
                + self.patch.nelement() * self.patch.element_size() + 256)


def invalid_cell(channels: int, position_dims: int, problem: str) -> EvolutionCell:
    """A cell that shows nothing but ``problem`` (non-finite weights, activation, ...)."""
    empty = torch.zeros(channels, 1, 1)
    return EvolutionCell(math.nan, -1, (0,) * position_dims, (0, 0, 1, 1), empty, empty.clone(),
                         problem)


def evolution_cell(probe: Probe, dataset: Any, scan: TopK, unit: int) -> EvolutionCell:
    """Project ``unit``'s strongest probe-set activation (from ``scan``, a top-1 scan of the
    layer with this probe's weights) and crop projection and image to the projection's support.

    Non-finite activations or projections give an :func:`invalid_cell` naming the problem.
    """
    value = float(scan.values[unit, 0])
    index = int(scan.indices[unit, 0])
    position = tuple(int(p) for p in scan.positions[unit, 0])
    image = _image(dataset, max(index, 0))
    channels = int(image.shape[0])
    if not math.isfinite(value) or index < 0:
        return invalid_cell(channels, len(position),
                            f"non-finite activation of unit {unit} in {scan.layer!r} ({value})")
    seed: Any = position if position else "max"
    projection = probe.project(image, scan.layer, unit, method="deconvnet", position=seed)[0]
    if not bool(torch.isfinite(projection).all()):
        return invalid_cell(channels, len(position),
                            f"non-finite projection of unit {unit} in {scan.layer!r}")
    top, left, bottom, right = support_box(projection)
    return EvolutionCell(value, index, position, (top, left, bottom, right),
                         projection[:, top:bottom, left:right].clone(),
                         image[:, top:bottom, left:right].clone())


@dataclass(frozen=True)
class EvolutionRow:
    """One epoch of an :class:`EvolutionStrip` (see there)."""

    values: torch.Tensor
    indices: torch.Tensor
    positions: torch.Tensor
    boxes: torch.Tensor
    projections: tuple[torch.Tensor, ...]
    patches: tuple[torch.Tensor, ...]
    nonfinite: torch.Tensor | None = None
    notes: tuple[str, ...] = ()

    @classmethod
    def from_cells(cls, cells: Sequence[EvolutionCell]) -> EvolutionRow:
        """Stack one epoch's cells (in unit order)."""
        dims = max((len(c.position) for c in cells), default=0)
        return cls(
            torch.tensor([c.value for c in cells], dtype=torch.float32),
            torch.tensor([c.index for c in cells], dtype=torch.long),
            torch.tensor([list(c.position) or [0] * dims for c in cells],
                         dtype=torch.long).reshape(len(cells), dims),
            torch.tensor([list(c.box) for c in cells], dtype=torch.long).reshape(len(cells), 4),
            tuple(c.projection for c in cells),
            tuple(c.patch for c in cells),
            torch.tensor([bool(c.problem) for c in cells], dtype=torch.bool),
            tuple(dict.fromkeys(c.problem for c in cells if c.problem)),
        )


def evolution_row(probe: Probe, dataset: Any, scan: TopK, units: Sequence[int]) -> EvolutionRow:
    """:func:`evolution_cell` for each of ``units``, as one row of a strip."""
    return EvolutionRow.from_cells([evolution_cell(probe, dataset, scan, u) for u in units])


def assemble_strip(layer: str, units: Sequence[int],
                   rows: Sequence[tuple[int, EvolutionRow]]) -> EvolutionStrip:
    """Stack per-epoch rows into a strip and mark where the strongest image changed."""
    indices = torch.stack([row.indices for _, row in rows])
    nonfinite = torch.stack([
        row.nonfinite if row.nonfinite is not None
        else torch.zeros(len(units), dtype=torch.bool) for _, row in rows])
    valid = ~nonfinite & (indices >= 0)
    changed = torch.zeros_like(indices, dtype=torch.bool)
    changed[1:] = (indices[1:] != indices[:-1]) & valid[1:] & valid[:-1]
    notes = tuple(f"epoch {epoch}: {note}" for epoch, row in rows for note in row.notes)
    return EvolutionStrip(
        layer, tuple(epoch for epoch, _ in rows), tuple(units),
        torch.stack([row.values for _, row in rows]), indices,
        torch.stack([row.positions for _, row in rows]),
        torch.stack([row.boxes for _, row in rows]), changed,
        tuple(row.projections for _, row in rows), tuple(row.patches for _, row in rows),
        nonfinite, notes,
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

    For a checkpoint series use :class:`~ipydeepvis.core.series_analysis.SeriesAnalysis`,
    which loads epochs on demand and caches within a memory bound.

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
