"""Where a projection starts: the signal placed on a layer's output before going back to pixels.

Zeiler & Fergus project one activation at a time: every other activation of the layer is set to
zero and the chosen one keeps its value. ``position="max"`` does that at the unit's strongest
activation, an explicit ``(i, j)`` at that position, and ``"all"`` keeps the unit's whole map
(the live pane of Yosinski's toolbox). Seeds of many units are stacked so that the projections
of all of them come from one recorded forward pass.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InvalidOptionError, PositionOutOfRangeError, UnitOutOfRangeError

__all__ = ["Position", "build_seeds", "check_units", "strongest_positions"]

Position = str | tuple[int, ...]


def check_units(units: object, channels: int, layer: str) -> list[int]:
    """Normalise ``units`` (an int, or a sequence / array of ints) to a list, checking the range.

    Raises
    ------
    UnitOutOfRangeError
        A unit outside ``0 .. channels - 1``.
    InvalidOptionError
        Something that is not an int or a non-empty sequence of ints.
    """
    if isinstance(units, (torch.Tensor, np.ndarray)):
        units = units.tolist()
    single = _as_int(units)
    values: list[int | None] | None = None
    if single is not None:
        values = [single]
    elif isinstance(units, (Sequence, range)) and not isinstance(units, (str, bytes)):
        values = [_as_int(u) for u in units]
    if not values or any(v is None for v in values):
        msg = (
            f"units must be an int or a non-empty sequence of ints, got {units!r} "
            f"(layer {layer!r} has units 0..{channels - 1})"
        )
        raise InvalidOptionError(msg)
    checked = [v for v in values if v is not None]
    bad = [v for v in checked if not 0 <= v < channels]
    if bad:
        msg = (
            f"unit {bad[0]} is out of range for layer {layer!r}, which has {channels} units: "
            f"valid units are 0..{channels - 1}"
        )
        raise UnitOutOfRangeError(msg)
    return checked


def _as_int(value: object) -> int | None:
    """``value`` as an int if it is an integer (not a bool), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[call-overload, no-any-return]
    except TypeError:
        return None


def strongest_positions(activation: torch.Tensor, units: Sequence[int]) -> list[tuple[int, ...]]:
    """Index (within the unit's map) of each unit's strongest activation; first one on ties."""
    spatial = tuple(activation.shape[1:])
    if not spatial:  # a unit of a linear layer is one value
        return [() for _ in units]
    flat = activation[list(units)].flatten(1).argmax(dim=1).tolist()
    return [_unravel(i, spatial) for i in flat]


def _unravel(index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for size in reversed(shape):
        out.append(index % size)
        index //= size
    return tuple(reversed(out))


def build_seeds(
    activation: torch.Tensor, units: Sequence[int], position: object, layer: str
) -> torch.Tensor:
    """Stack one seed per unit: a tensor shaped like the layer's output, zero but for the seed.

    Parameters
    ----------
    activation : Tensor
        The layer's output for one sample, ``(C, *spatial)``.
    units : sequence of int
        Checked unit indices (see :func:`check_units`).
    position : "max", "all" or tuple of int
        Where each unit's seed sits; the seeded activations keep their values.
    layer : str
        Layer name, for error messages.

    Returns
    -------
    Tensor
        ``(len(units), C, *spatial)``.

    Raises
    ------
    InvalidOptionError
        An unknown position keyword, or a tuple of the wrong length.
    PositionOutOfRangeError
        A position outside the map.
    """
    spatial = tuple(activation.shape[1:])
    seeds = torch.zeros((len(units), *activation.shape), dtype=activation.dtype,
                        device=activation.device)
    rows = torch.arange(len(units), device=activation.device)
    unit_index = torch.as_tensor(list(units), device=activation.device)
    if isinstance(position, str):
        if position == "all":
            seeds[rows, unit_index] = activation[unit_index]
            return seeds
        if position != "max":
            msg = (
                f"position must be 'max', 'all' or a tuple of {len(spatial)} ints, "
                f"got {position!r}"
            )
            raise InvalidOptionError(msg)
        positions = strongest_positions(activation, units)
    else:
        positions = [check_position(position, spatial, layer)] * len(units)
    for row, (unit, where) in enumerate(zip(units, positions, strict=True)):
        seeds[(row, unit, *where)] = activation[(unit, *where)]
    return seeds


def check_position(position: object, spatial: tuple[int, ...], layer: str) -> tuple[int, ...]:
    """Check that ``position`` is a tuple of ints inside a map of size ``spatial``."""
    if not spatial:
        msg = (
            f"layer {layer!r} has no spatial map (its units are single values), so position "
            f"{position!r} does not apply: use position='max' or 'all'"
        )
        raise InvalidOptionError(msg)
    values = (
        [_as_int(p) for p in position]
        if isinstance(position, (tuple, list))
        else None
    )
    if values is None or len(values) != len(spatial) or any(v is None for v in values):
        msg = (
            f"position must be 'max', 'all' or a tuple of {len(spatial)} ints (row, column), "
            f"got {position!r}"
        )
        raise InvalidOptionError(msg)
    for axis, (value, size) in enumerate(zip(values, spatial, strict=True)):
        if not 0 <= value < size:  # type: ignore[operator]
            size_text = "x".join(str(s) for s in spatial)
            ranges = ", ".join(f"0..{s - 1}" for s in spatial)
            msg = (
                f"position {tuple(values)} is outside the {size_text} map of layer {layer!r} "
                f"(axis {axis} is {value}); valid positions are ({ranges})"
            )
            raise PositionOutOfRangeError(msg)
    return tuple(values)  # type: ignore[arg-type]
