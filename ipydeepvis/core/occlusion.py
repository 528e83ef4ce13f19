"""Occlusion sensitivity (Zeiler & Fergus Fig. 7): slide a grey square over an image.

For every position of a square patch on a regular grid, the image is copied with the patch
filled (grey by default), and the copies run through the model many at a time. Per position
the result holds what the figure shows: the probability of the target class (Fig. 7 (d)), the
most probable class (the label map, Fig. 7 (e)) or, for a unit target ``(layer, unit)``, the
unit's total activation (its feature map summed, Fig. 7 (b)); for unit targets the forward
stops at the unit's layer.

The grid is captum's :class:`captum.attr.Occlusion` grid (first patch at the top-left corner,
then every ``stride`` pixels until the image is covered; the last patch of a row or column may
be cut off by the border), so captum's per-pixel attribution -- the unoccluded score minus the
mean occluded score over every patch covering the pixel -- follows from the per-position map:
:meth:`OcclusionMap.attribution`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidOptionError, UnitOutOfRangeError
from .batched import (
    Fill,
    Progress,
    Site,
    batched_forward,
    check_batch_size,
    check_images,
    fill_tensor,
)
from .local_chain import ChangedBoxes, install_local_chain
from .probe import Probe

__all__ = ["OcclusionMap", "occlusion"]

Target = int | tuple[str, int | str] | None


@dataclass(frozen=True)
class OcclusionMap:
    """Per patch position, what the model makes of the image with that patch occluded.

    Maps are ``(rows, cols)`` arrays over the patch positions: entry ``(i, j)`` is the patch
    whose top-left corner is at pixel ``(rows[i], cols[j])``. Positions not computed (the run
    was stopped by its callback) hold NaN (label ``-1``).

    Attributes
    ----------
    image : Tensor
        The unoccluded image ``(C, H, W)`` (CPU).
    fill : Tensor
        What an occluded pixel becomes, ``(C, H, W)`` (CPU).
    patch, stride : tuple of int
        Patch height and width, and the step between positions, in pixels.
    rows, cols : ndarray of int
        Top row and left column of the patch at each grid position.
    target : int or tuple
        The class index, or ``(layer, unit)`` with the unit resolved (``"max"`` -> an int).
    probability : ndarray or None
        ``(rows, cols)`` softmax probability of the target class (class targets).
    label : ndarray or None
        ``(rows, cols)`` int64 most probable class (class targets).
    activation : ndarray or None
        ``(rows, cols)`` the unit's feature map summed (unit targets).
    base : float
        The unoccluded probability (class targets) or total activation (unit targets).
    base_label : int or None
        The unoccluded most probable class (class targets).
    done : int
        Positions computed (``rows * cols`` unless the callback stopped the run).
    """

    image: torch.Tensor
    fill: torch.Tensor
    patch: tuple[int, int]
    stride: tuple[int, int]
    rows: npt.NDArray[np.int64]
    cols: npt.NDArray[np.int64]
    target: int | tuple[str, int]
    probability: npt.NDArray[np.float64] | None
    label: npt.NDArray[np.int64] | None
    activation: npt.NDArray[np.float64] | None
    base: float
    base_label: int | None
    done: int

    @property
    def values(self) -> npt.NDArray[np.float64]:
        """The target's map: ``probability`` for a class, ``activation`` for a unit."""
        values = self.probability if self.activation is None else self.activation
        assert values is not None
        return values

    @property
    def complete(self) -> bool:
        """True when every position was computed."""
        return self.done == len(self.rows) * len(self.cols)

    def box(self, i: int, j: int) -> tuple[int, int, int, int]:
        """The occluded pixels at position ``(i, j)``: ``(top, left, bottom, right)``, the
        bottom and right bounds exclusive (cut to the image)."""
        top, left = int(self.rows[i]), int(self.cols[j])
        _c, h, w = self.image.shape
        return top, left, min(top + self.patch[0], h), min(left + self.patch[1], w)

    def occluded(self, i: int, j: int) -> torch.Tensor:
        """The image as the model saw it with the patch at position ``(i, j)``."""
        if not (0 <= i < len(self.rows) and 0 <= j < len(self.cols)):
            msg = (f"position {(i, j)!r} is outside the {len(self.rows)} x {len(self.cols)} "
                   "grid of patch positions")
            raise InvalidOptionError(msg)
        top, left, bottom, right = self.box(i, j)
        out = self.image.clone()
        out[:, top:bottom, left:right] = self.fill[:, top:bottom, left:right]
        return out

    def attribution(self) -> npt.NDArray[np.float64]:
        """captum's per-pixel occlusion map ``(H, W)``: ``base`` minus the mean of the
        target's value over every computed patch covering the pixel (NaN where none does)."""
        _c, h, w = self.image.shape
        (ph, pw), (sh, sw) = self.patch, self.stride
        values = torch.from_numpy(np.asarray(self.values, dtype=np.float64))
        known = torch.isfinite(values)
        diff = torch.where(known, self.base - values, torch.zeros_like(values))
        n_rows, n_cols = values.shape
        size = ((n_rows - 1) * sh + ph, (n_cols - 1) * sw + pw)

        def spread(per_position: torch.Tensor) -> torch.Tensor:
            blocks = per_position.reshape(1, 1, -1).expand(1, ph * pw, -1)
            return F.fold(blocks, size, (ph, pw), stride=(sh, sw))[0, 0, :h, :w]

        total, count = spread(diff), spread(known.to(torch.float64))
        out = torch.where(count > 0, total / count.clamp_min(1), torch.nan)
        return out.numpy()


def grid_positions(size: int, patch: int, stride: int) -> npt.NDArray[np.int64]:
    """Top-left coordinates of the patch along one axis: ``0, stride, ...`` until the patch
    reaches the border (``ceil((size - patch) / stride) + 1`` positions, as captum)."""
    count = math.ceil((size - patch) / stride) + 1
    return np.arange(count, dtype=np.int64) * stride


def _pair(value: object, name: str, low: int, high: tuple[int, int]) -> tuple[int, int]:
    """An int or a pair of ints, each in ``low .. high``, as a pair."""
    items = value if isinstance(value, (tuple, list)) else (value, value)
    ok = len(items) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and low <= v <= top
        for v, top in zip(items, high, strict=True)
    )
    if not ok:
        msg = (f"{name} must be an int or an (height, width) pair of ints in {low} .. "
               f"{high[0]} and {low} .. {high[1]}, got {value!r}")
        raise InvalidOptionError(msg)
    return int(items[0]), int(items[1])


def occlusion(
    model_or_probe: nn.Module | Probe,
    x: torch.Tensor,
    *,
    target: Target = None,
    patch: int | tuple[int, int] | None = None,
    stride: int | tuple[int, int] | None = None,
    fill: Fill = "mean",
    batch_size: int = 64,
    local: bool = True,
    progress: bool = False,
    callback: Callable[[int, int], bool | None] | None = None,
) -> OcclusionMap:
    """Occlusion sensitivity of one image: the model's answer for every patch position.

    Parameters
    ----------
    model_or_probe : nn.Module or Probe
        The model (never modified; it runs on a shadow sharing its weights, in eval mode).
    x : Tensor
        One image ``(C, H, W)`` or ``(1, C, H, W)``, as the model takes it.
    target : int, (str, int or "max") or None
        A class index (the model's output is taken as logits and passed through softmax);
        ``(layer, unit)`` for a unit's total activation, ``unit="max"`` choosing the unit with
        the strongest single activation on the unoccluded image (Fig. 7 (b)); None for the
        class the model predicts for the unoccluded image.
    patch : int or (int, int), optional
        Patch height and width in pixels; a quarter of the smaller image side by default.
    stride : int or (int, int), optional
        Step between patch positions in pixels; a quarter of the patch by default.
    fill : "mean", float, sequence of float or Tensor
        What occluded pixels become, in the model's input space: ``"mean"`` (default) is the
        image's per-channel mean; ``0.5`` is mid-grey for ``[0, 1]`` inputs, ``0.0`` for
        mean-subtracted ones; a tensor broadcastable to ``(C, H, W)`` is used as it is.
    batch_size : int
        Occluded copies per forward pass.
    local : bool
        Compute the model's leading convolution / pooling / pointwise layers only where the
        patch changes them, pasted into the clean image's result (see
        :mod:`~ipydeepvis.core.local_chain`; equal to the plain forward up to float rounding).
        False runs every copy through the whole model.
    progress : bool
        Show a tqdm progress bar.
    callback : callable, optional
        ``callback(done, total)`` after every batch (positions); returning False stops the
        run, leaving the remaining positions NaN.

    Returns
    -------
    OcclusionMap

    Raises
    ------
    InvalidInputError, InvalidOptionError, LayerNotFoundError, UnitOutOfRangeError
        With a message naming the bad value and the valid choices.
    """
    image = check_images(x)
    if image.shape[0] != 1:
        msg = (f"x has shape {tuple(x.shape)}: occlusion takes one image (C, H, W) or a batch "
               "of one; call it once per image")
        raise InvalidOptionError(msg)
    _n, _c, h, w = image.shape
    batch_size = check_batch_size(batch_size)
    if patch is None:
        patch = max(1, min(h, w) // 4)
    ph, pw = _pair(patch, "patch", 1, (h, w))
    if stride is None:
        stride = (max(1, ph // 4), max(1, pw // 4))
    sh, sw = _pair(stride, "stride", 1, (h, w))
    fills = fill_tensor(fill, image)[:1]
    rows, cols = grid_positions(h, ph, sh), grid_positions(w, pw, sw)
    unit_target = isinstance(target, tuple)
    if unit_target:
        if len(target) != 2 or not isinstance(target[0], str):  # type: ignore[arg-type]
            msg = f"target must be a class index or a (layer, unit) pair, got {target!r}"
            raise InvalidOptionError(msg)
        layers = [target[0]]  # type: ignore[index]
    elif target is None or (isinstance(target, int) and not isinstance(target, bool)):
        layers = []
    else:
        msg = f"target must be a class index, a (layer, unit) pair or None, got {target!r}"
        raise InvalidOptionError(msg)

    total = len(rows) * len(cols)
    top = torch.from_numpy(rows).repeat_interleave(len(cols))
    left = torch.from_numpy(cols).repeat(len(rows))
    values = torch.full((total,), torch.nan, dtype=torch.float64)
    labels = torch.full((total,), -1, dtype=torch.int64)
    boxes = ChangedBoxes()

    def windowed(shadow: nn.Module, sample: torch.Tensor, sites: list[Site]) -> None:
        if not local or ph * pw >= h * w:
            return
        if sites and (sites[0].call != 1 or sites[0].functional_call is not None):
            return  # a later call of a reused module, or a functional ReLU: no module to end on
        install_local_chain(shadow, sample, boxes, last=sites[0].module if sites else None)

    with batched_forward(model_or_probe, layers, image, output=not unit_target,
                         edit=windowed) as run:
        if unit_target:
            (layer_name,) = layers
            acts, _ = run(image)
            (clean,) = acts.values()
            unit = _resolve_unit(target[1], clean[0], layer_name)  # type: ignore[index]
            base = float(clean[0, unit].double().sum())
            resolved: int | tuple[str, int] = (layer_name, unit)

            def total_activation(out: torch.Tensor) -> torch.Tensor:
                return out[:, unit].reshape(out.shape[0], -1).double().sum(1)

            reduce = {layer_name: total_activation}
            base_label = None
        else:
            _, logits = run(image)
            assert logits is not None
            probs = _softmax(logits, target)
            chosen = int(probs[0].argmax()) if target is None else int(target)  # type: ignore[arg-type]
            if not 0 <= chosen < probs.shape[1]:
                msg = (f"target class {target!r} is out of range: the model has "
                       f"{probs.shape[1]} classes (0 .. {probs.shape[1] - 1})")
                raise UnitOutOfRangeError(msg)
            base = float(probs[0, chosen])
            base_label = int(probs[0].argmax())
            resolved = chosen
            reduce = {}
        device = image.device
        row_index = torch.arange(h, device=device)
        col_index = torch.arange(w, device=device)
        with Progress(total, "occlusion", progress=progress, callback=callback) as bar:
            for start in range(0, total, batch_size):
                t = top[start:start + batch_size].to(device)
                lft = left[start:start + batch_size].to(device)
                in_rows = (row_index >= t[:, None]) & (row_index < t[:, None] + ph)
                in_cols = (col_index >= lft[:, None]) & (col_index < lft[:, None] + pw)
                mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
                batch = torch.where(mask, fills, image)
                boxes.set(t, lft, ph, pw, (h, w))
                try:
                    acts, logits = run(batch, reduce)
                finally:
                    boxes.clear()
                end = start + len(t)
                if unit_target:
                    values[start:end] = acts[layer_name].cpu()
                else:
                    assert logits is not None
                    probs = _softmax(logits, target)
                    values[start:end] = probs[:, resolved].cpu()  # type: ignore[index]
                    labels[start:end] = probs.argmax(1).cpu()
                if not bar.step(len(t)):
                    break
            done = bar.done

    shape = (len(rows), len(cols))
    grid = values.reshape(shape).numpy()
    return OcclusionMap(
        image=image[0].cpu().clone(),
        fill=fills[0].cpu().clone(),
        patch=(ph, pw),
        stride=(sh, sw),
        rows=rows,
        cols=cols,
        target=resolved,
        probability=None if unit_target else grid,
        label=None if unit_target else labels.reshape(shape).numpy(),
        activation=grid if unit_target else None,
        base=base,
        base_label=base_label,
        done=done,
    )


def _softmax(logits: torch.Tensor, target: object) -> torch.Tensor:
    """Class probabilities ``(B, K)`` from the model's ``(B, K)`` scores."""
    if logits.dim() != 2:
        msg = (f"the model's output has shape {tuple(logits.shape)}, not (N, classes), so "
               f"target={target!r} cannot be a class; use a (layer, unit) target")
        raise InvalidOptionError(msg)
    return torch.softmax(logits.double(), dim=1)


def _resolve_unit(unit: object, clean: torch.Tensor, layer: str) -> int:
    """The unit index: an int in range, or ``"max"`` -> the unit with the strongest single
    activation on the unoccluded image (ties: the lowest index)."""
    channels = clean.shape[0] if clean.dim() >= 1 else 1
    if unit == "max":
        return int(clean.reshape(channels, -1).amax(1).argmax())
    if not isinstance(unit, int) or isinstance(unit, bool) or not 0 <= unit < channels:
        msg = (f"unit {unit!r} is out of range for layer {layer!r}: use 0 .. {channels - 1} "
               "or 'max'")
        raise UnitOutOfRangeError(msg)
    return unit
