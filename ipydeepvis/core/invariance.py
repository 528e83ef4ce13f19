"""Invariance curves (Zeiler & Fergus Fig. 5): how features and the class answer move as an
image is translated, scaled or rotated.

For every transform value, each image is transformed with torchvision's functional ops
(bilinear interpolation; pixels brought in from outside the image get the ``fill``), and the
transformed copies run through the model many at a time. Per image and value the result holds
the Euclidean distance between each chosen layer's feature vector (the layer's whole output,
flattened) for the original and the transformed image -- the paper's columns 2 and 3, there
for layers 1 and 7 -- and the probability of the image's true class (column 4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ..errors import InvalidOptionError, UnitOutOfRangeError
from .batched import Progress, batched_forward, check_batch_size, images_and_labels
from .probe import Probe

__all__ = ["TRANSFORMS", "Invariance", "default_values", "invariance", "transform_images"]

TRANSFORMS: tuple[str, ...] = ("translate", "scale", "rotate")
"""The transforms of :func:`invariance`: values are pixels (vertical shift, or an ``(dx, dy)``
pair), zoom factors about the centre, and degrees (counter-clockwise)."""

_IDENTITY = {"translate": 0.0, "scale": 1.0, "rotate": 0.0}


@dataclass(frozen=True)
class Invariance:
    """Per image and transform value, how far each layer's features moved and the true
    class's probability. Entries not computed (the run was stopped) are NaN (label ``-1``).

    Attributes
    ----------
    transform : str
        ``"translate"``, ``"scale"`` or ``"rotate"``.
    values : ndarray
        ``(V,)`` transform values (``(V, 2)`` for ``(dx, dy)`` translations).
    layers : tuple of str
        The layers measured.
    distance : dict of str to ndarray
        Per layer, ``(N, V)`` Euclidean distance between the feature vectors of the original
        and the transformed image.
    norm : dict of str to ndarray
        Per layer, ``(N,)`` norm of the original image's feature vector (to read distances
        relative to it).
    probability : ndarray
        ``(N, V)`` softmax probability of each image's true class.
    predicted : ndarray
        ``(N, V)`` int64 most probable class.
    labels : ndarray
        ``(N,)`` int64 the true classes used.
    base_probability : ndarray
        ``(N,)`` the true class's probability for the untransformed images.
    done : int
        Transformed images computed (``N * V`` unless stopped).
    """

    transform: str
    values: npt.NDArray[np.float64]
    layers: tuple[str, ...]
    distance: dict[str, npt.NDArray[np.float64]]
    norm: dict[str, npt.NDArray[np.float64]]
    probability: npt.NDArray[np.float64]
    predicted: npt.NDArray[np.int64]
    labels: npt.NDArray[np.int64]
    base_probability: npt.NDArray[np.float64]
    done: int

    @property
    def complete(self) -> bool:
        """True when every (image, value) was computed."""
        return self.done == self.probability.size


def default_values(transform: str, size: int) -> npt.NDArray[np.float64]:
    """Fig. 5's ranges for an image of side ``size``: vertical shifts of up to a quarter of
    the side (the paper: +-60 px of 224), zooms 1 .. 1.8, rotations 0 .. 350 degrees."""
    _check_transform(transform)
    if transform == "translate":
        reach = max(1, size // 4)
        step = -(-reach // 6)  # at most 6 whole-pixel steps each way
        return np.arange(-(reach // step), reach // step + 1, dtype=np.float64) * step
    if transform == "scale":
        return np.round(np.linspace(1.0, 1.8, 9), 6)
    return np.arange(0.0, 360.0, 10.0)


def transform_images(images: torch.Tensor, transform: str, value: float | Sequence[float],
                     *, fill: str | float | Sequence[float] = "mean") -> torch.Tensor:
    """Images ``(N, C, H, W)`` translated, scaled or rotated by ``value``.

    Parameters
    ----------
    images : Tensor
        ``(N, C, H, W)`` or ``(C, H, W)``.
    transform : {"translate", "scale", "rotate"}
        ``translate``: ``value`` pixels down (negative: up), or an ``(dx, dy)`` pair (right,
        down); ``scale``: zoom by ``value`` about the centre (> 1 enlarges); ``rotate``:
        ``value`` degrees counter-clockwise about the centre.
    value : float or pair of float
        The amount.
    fill : "mean", float or sequence of float
        Value of the pixels that come from outside the image: ``"mean"`` (default) is each
        image's per-channel mean, a number or one number per channel is used as it is
        (``0.5``: mid-grey for ``[0, 1]`` images). Bilinear interpolation blends it into the
        border pixels as torchvision does.

    Returns
    -------
    Tensor
        Same shape as ``images``; the identity value returns an exact copy.
    """
    # torchvision is imported here, not at the top: `import ipydeepvis` stays light
    import torchvision.transforms.v2.functional as TF
    from torchvision.transforms import InterpolationMode

    _check_transform(transform)
    batch = images.unsqueeze(0) if images.dim() == 3 else images
    pair = _translation(value) if transform == "translate" else None
    if pair is None:
        amount = _number(value, transform)
        if transform == "scale" and amount <= 0:
            msg = f"a scale value must be > 0, got {value!r}"
            raise InvalidOptionError(msg)
        if amount == _IDENTITY[transform]:
            return images.clone()
    elif pair == (0.0, 0.0):
        return images.clone()
    fills = _fill_lists(fill, batch)
    groups = [(batch, fills[0])] if len(fills) == 1 else [
        (batch[k:k + 1], fills[k]) for k in range(batch.shape[0])]
    outs = []
    for part, part_fill in groups:
        if transform == "rotate":
            out = TF.rotate(part, float(amount), interpolation=InterpolationMode.BILINEAR,
                            fill=part_fill)
        elif transform == "scale":
            out = TF.affine(part, angle=0.0, translate=[0.0, 0.0], scale=float(amount),
                            shear=[0.0, 0.0], interpolation=InterpolationMode.BILINEAR,
                            fill=part_fill)
        else:
            assert pair is not None
            out = TF.affine(part, angle=0.0, translate=list(pair), scale=1.0,
                            shear=[0.0, 0.0], interpolation=InterpolationMode.BILINEAR,
                            fill=part_fill)
        outs.append(out)
    result = torch.cat(outs)
    return result[0] if images.dim() == 3 else result


def invariance(
    model_or_probe: nn.Module | Probe,
    images: Any,
    *,
    transform: str = "translate",
    values: Sequence[float] | Sequence[Sequence[float]] | npt.NDArray[Any] | None = None,
    layers: str | Sequence[str] = (),
    labels: Sequence[int] | torch.Tensor | None = None,
    fill: str | float | Sequence[float] = "mean",
    batch_size: int = 64,
    progress: bool = False,
    callback: Callable[[int, int], bool | None] | None = None,
) -> Invariance:
    """Invariance curves of a few images under one transform (Zeiler & Fergus Fig. 5).

    Parameters
    ----------
    model_or_probe : nn.Module or Probe
        The model (never modified; it runs on a shadow sharing its weights, in eval mode).
    images : Tensor or sequence
        ``(N, C, H, W)`` (or one ``(C, H, W)``), or a sequence of images or of
        ``(image, label)`` pairs (a data set slice), as the model takes them.
    transform : {"translate", "scale", "rotate"}
        See :func:`transform_images` for what the values mean.
    values : sequence, optional
        Transform values; :func:`default_values` (the paper's ranges) by default.
    layers : str or sequence of str
        Layers whose feature vectors are compared (any number, also none).
    labels : sequence of int, optional
        The true class of each image; else the labels of ``(image, label)`` pairs, else the
        class the model predicts for the untransformed image.
    fill : "mean", float or sequence of float
        Value of pixels brought in from outside the image (see :func:`transform_images`).
    batch_size : int
        Transformed images per forward pass.
    progress : bool
        Show a tqdm progress bar.
    callback : callable, optional
        ``callback(done, total)`` after every batch (transformed images); returning False
        stops the run, leaving the rest NaN.

    Returns
    -------
    Invariance

    Raises
    ------
    InvalidInputError, InvalidOptionError, LayerNotFoundError, UnitOutOfRangeError
        With a message naming the bad value and the valid choices.
    """
    _check_transform(transform)
    batch, pair_labels = images_and_labels(images)
    n, _c, h, w = batch.shape
    batch_size = check_batch_size(batch_size)
    names = [layers] if isinstance(layers, str) else list(layers)
    grid = default_values(transform, min(h, w)) if values is None else _values(values, transform)
    if fill != "mean":
        _fill_lists(fill, batch)  # check it before any work
    count = len(grid)
    total = n * count
    with batched_forward(model_or_probe, names, batch, output=True,
                         reduce=dict.fromkeys(names, _flat)) as run:
        feats, logits = run(batch)
        probs = _softmax(logits)
        classes = probs.shape[1]
        if labels is not None:
            true = _labels(labels, n, classes)
        elif pair_labels is not None:
            true = _labels(pair_labels, n, classes)
        else:
            true = probs.argmax(1).cpu()
        reference = {name: feats[name] for name in names}
        distance = {name: torch.full((n, count), torch.nan, dtype=torch.float64)
                    for name in names}
        probability = torch.full((n, count), torch.nan, dtype=torch.float64)
        predicted = torch.full((n, count), -1, dtype=torch.int64)
        index = torch.arange(n)
        with Progress(total, f"invariance ({transform})", progress=progress,
                      callback=callback) as bar:
            pending: list[tuple[int, torch.Tensor]] = []  # (value index, transformed images)
            for v in range(count):
                value = grid[v].tolist()
                pending.append((v, transform_images(batch, transform, value, fill=fill)))
                if sum(len(t) for _v, t in pending) < batch_size and v + 1 < count:
                    continue
                where = torch.tensor([k for k, t in pending for _ in range(len(t))])
                feats, logits = run(torch.cat([t for _v, t in pending]))
                pending = []
                chunk_probs = _softmax(logits).cpu()
                rows = index.repeat(len(where) // n)
                probability[rows, where] = chunk_probs[torch.arange(len(rows)), true[rows]]
                predicted[rows, where] = chunk_probs.argmax(1)
                for name in names:
                    moved = feats[name] - reference[name][rows.to(feats[name].device)]
                    distance[name][rows, where] = moved.norm(dim=1).cpu()
                if not bar.step(len(rows)):
                    break
            done = bar.done
    return Invariance(
        transform=transform,
        values=grid,
        layers=tuple(names),
        distance={name: d.numpy() for name, d in distance.items()},
        norm={name: reference[name].norm(dim=1).cpu().numpy() for name in names},
        probability=probability.numpy(),
        predicted=predicted.numpy(),
        labels=true.numpy(),
        base_probability=probs[index, true.to(probs.device)].cpu().numpy(),
        done=done,
    )


def _flat(out: torch.Tensor) -> torch.Tensor:
    """A layer's output as one float64 feature vector per image."""
    return out.reshape(out.shape[0], -1).double()


def _softmax(logits: torch.Tensor | None) -> torch.Tensor:
    assert logits is not None
    if logits.dim() != 2:
        msg = (f"the model's output has shape {tuple(logits.shape)}, not (N, classes): "
               "invariance needs class scores for the class probability")
        raise InvalidOptionError(msg)
    return torch.softmax(logits.double(), dim=1)


def _check_transform(transform: object) -> None:
    if transform not in TRANSFORMS:
        msg = f"transform must be one of {', '.join(map(repr, TRANSFORMS))}, got {transform!r}"
        raise InvalidOptionError(msg)


def _number(value: object, transform: str) -> float:
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        if np.isfinite(float(value)):
            return float(value)
    msg = f"a {transform} value must be a finite number, got {value!r}"
    raise InvalidOptionError(msg)


def _translation(value: object) -> tuple[float, float]:
    """``(dx, dy)`` from a vertical shift or a pair."""
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) == 2:
            return _number(value[0], "translate"), _number(value[1], "translate")
        msg = f"a translate value must be a number (pixels down) or a (dx, dy) pair, got {value!r}"
        raise InvalidOptionError(msg)
    return 0.0, _number(value, "translate")


def _values(values: Any, transform: str) -> npt.NDArray[np.float64]:
    """Transform values as a float array ``(V,)`` (``(V, 2)`` for translation pairs)."""
    try:
        grid = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        msg = f"values must be numbers for transform={transform!r}, got {values!r}"
        raise InvalidOptionError(msg) from exc
    pairs = transform == "translate" and grid.ndim == 2 and grid.shape[1] == 2
    if grid.size == 0 or not (grid.ndim == 1 or pairs) or not np.isfinite(grid).all():
        msg = (f"values must be a non-empty list of finite numbers"
               f"{' (or (dx, dy) pairs)' if transform == 'translate' else ''}, got {values!r}")
        raise InvalidOptionError(msg)
    if transform == "scale" and (grid <= 0).any():
        msg = f"scale values must be > 0, got {values!r}"
        raise InvalidOptionError(msg)
    return grid


def _fill_lists(fill: object, batch: torch.Tensor) -> list[list[float]]:
    """One per-channel fill list for the whole batch, or one per image (``"mean"``)."""
    c = batch.shape[1]
    if isinstance(fill, str):
        if fill != "mean":
            msg = f"fill must be 'mean', a number or {c} numbers, got {fill!r}"
            raise InvalidOptionError(msg)
        return batch.mean(dim=(2, 3)).tolist()
    if isinstance(fill, (int, float)) and not isinstance(fill, bool):
        return [[float(fill)] * c]
    try:
        numbers = [float(v) for v in fill]  # type: ignore[attr-defined]
    except (TypeError, ValueError) as exc:
        msg = f"fill must be 'mean', a number or {c} numbers, got {fill!r}"
        raise InvalidOptionError(msg) from exc
    if len(numbers) != c:
        msg = f"fill has {len(numbers)} values but the images have {c} channel(s): {fill!r}"
        raise InvalidOptionError(msg)
    return [numbers]


def _labels(labels: Sequence[int] | torch.Tensor, n: int, classes: int) -> torch.Tensor:
    true = torch.as_tensor(labels).reshape(-1)
    if true.numel() != n or true.is_floating_point():
        msg = f"labels must be {n} class indices (one per image), got {labels!r}"
        raise InvalidOptionError(msg)
    bad = true[(true < 0) | (true >= classes)]
    if bad.numel():
        msg = f"label {int(bad[0])} is out of range: the model has {classes} classes"
        raise UnitOutOfRangeError(msg)
    return true.long()
