"""Activation histograms of one layer, and its dead units, over a probe set and one image.

How a layer's activations are spread (a spike at zero after a ReLU, a long tail of strong
responses) and how many of its units never fire are the first health check of a trained
network. :func:`probe_histogram` scans a probe set once (in batches, on the model's shadow)
and fixes the bins from the layer's range there; :func:`image_histogram` counts one image's
values in those same bins, so the two are drawn on one axis and an image change costs one
forward pass. Dead units follow :func:`~ipydeepvis.core.topk.never_fired`, the rule the
scrubber's dead-unit curves use.

Counts equal ``numpy.histogram`` on all the values at once (uniform bins from the smallest to
the largest finite value over the probe set; the last bin includes its right edge).
Non-finite values (a diverged epoch) are left out of the counts and reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ..errors import InvalidOptionError
from .batched import Progress, batched_forward, check_batch_size, check_images, model_of
from .probe import Probe
from .topk import never_fired

__all__ = ["DEFAULT_BINS", "ImageHistogram", "LayerHistogram", "ProbeHistogram",
           "activation_histogram", "image_histogram", "probe_histogram"]

DEFAULT_BINS = 40
KEEP_BYTES = 64 * 2**20
"""Up to this many bytes of a probe set's activations are kept between the range pass and the
counting pass; beyond it the probe set runs through the model a second time."""


@dataclass(frozen=True)
class ProbeHistogram:
    """A layer's activations over a probe set: bins, counts and each unit's largest value.

    Attributes
    ----------
    layer : str
        The layer.
    edges : ndarray
        ``(bins + 1,)`` float64 bin edges, uniform from the smallest to the largest finite
        value over the probe set.
    counts : ndarray
        ``(bins,)`` int64 number of values (every unit and position of every image) per bin.
    unit_max : Tensor
        ``(units,)`` each unit's largest value over the probe set (all positions).
    images : int
        Images scanned.
    nonfinite : int
        NaN or infinite values left out of the counts.
    """

    layer: str
    edges: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]
    unit_max: torch.Tensor
    images: int
    nonfinite: int = 0

    @property
    def bins(self) -> int:
        """Number of bins."""
        return int(self.counts.shape[0])

    @property
    def dead(self) -> torch.Tensor:
        """``(units,)`` bool: units that never exceeded zero on the probe set."""
        return never_fired(self.unit_max)

    @property
    def dead_fraction(self) -> float:
        """Fraction of the layer's units that never exceeded zero on the probe set."""
        return float(self.dead.float().mean())


@dataclass(frozen=True)
class ImageHistogram:
    """One image's activations of a layer counted in a probe set's bins.

    ``below`` and ``above`` count the values outside the probe set's range (not in any bin);
    ``unit_max`` is each unit's largest value on this image.
    """

    counts: npt.NDArray[np.int64]
    below: int
    above: int
    unit_max: torch.Tensor
    nonfinite: int = 0

    @property
    def silent_fraction(self) -> float:
        """Fraction of the units that do not exceed zero anywhere on this image."""
        return float(never_fired(self.unit_max).float().mean())


@dataclass(frozen=True)
class LayerHistogram:
    """The probe set's histogram and one image's, in the same bins."""

    probe: ProbeHistogram
    image: ImageHistogram

    @property
    def edges(self) -> npt.NDArray[np.float64]:
        return self.probe.edges

    @property
    def dead_fraction(self) -> float:
        return self.probe.dead_fraction


def _per_unit(out: torch.Tensor) -> torch.Tensor:
    """A layer's output ``(N, units, ...)`` as float32 ``(N, units, positions)`` on the CPU."""
    return out.detach().to("cpu", torch.float32).reshape(out.shape[0], out.shape[1], -1).clone()


def _check_bins(bins: object) -> int:
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        msg = f"bins must be a positive int, got {bins!r}"
        raise InvalidOptionError(msg)
    return bins


def _finite(values: torch.Tensor) -> tuple[npt.NDArray[np.float64], int]:
    """The finite values as a flat float64 array, and how many were not finite."""
    flat = values.reshape(-1)
    ok = torch.isfinite(flat)
    bad = int(flat.numel() - int(ok.sum()))
    kept = flat[ok] if bad else flat
    return kept.numpy().astype(np.float64), bad


def _unit_max(values: torch.Tensor) -> torch.Tensor:
    """``(units,)`` largest value of each unit over images and positions (NaN-free: a NaN
    counts as -inf, so a diverged unit is not made alive by it)."""
    clean = torch.nan_to_num(values, nan=-torch.inf)
    return clean.amax(dim=(0, 2))


def _edges(low: float, high: float, bins: int) -> npt.NDArray[np.float64]:
    """Uniform edges as ``numpy.histogram`` makes them for values from ``low`` to ``high``."""
    if not (np.isfinite(low) and np.isfinite(high)):
        low, high = 0.0, 1.0  # no finite value at all: numpy's default range
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, bins + 1)


def _count(values: npt.NDArray[np.float64], edges: npt.NDArray[np.float64]
           ) -> npt.NDArray[np.int64]:
    """``numpy.histogram`` counts of ``values`` in uniform ``edges`` (its fast uniform path:
    the same edges, O(n))."""
    counts, _ = np.histogram(values, bins=len(edges) - 1, range=(edges[0], edges[-1]))
    return counts.astype(np.int64)


def probe_histogram(
    model_or_probe: nn.Module | Probe,
    layer: str,
    images: torch.Tensor,
    *,
    bins: int = DEFAULT_BINS,
    batch_size: int = 64,
    progress: bool = False,
    callback: Callable[[int, int], bool | None] | None = None,
) -> ProbeHistogram | None:
    """The histogram of ``layer``'s activations over ``images``, and its dead units.

    Parameters
    ----------
    model_or_probe : nn.Module or Probe
        The model (never modified: it runs on a shadow in eval mode).
    layer : str
        Layer name (see ``Probe.layers``); every unit and position of it is counted.
    images : Tensor
        The probe set ``(N, C, H, W)``, as the model takes it.
    bins : int
        Number of uniform bins, from the smallest to the largest finite value over the set.
    batch_size : int
        Images per forward pass.
    progress : bool
        Show a tqdm bar.
    callback : callable, optional
        ``callback(done, total)`` after every batch; returning False stops (None returned).

    Returns
    -------
    ProbeHistogram or None
        None when stopped.
    """
    bins = _check_bins(bins)
    batch = check_images(images, "images")
    batch_size = check_batch_size(batch_size)
    count = int(batch.shape[0])
    starts = list(range(0, count, batch_size))
    with batched_forward(model_or_probe, [layer], batch[:1], output=False,
                         reduce={layer: _per_unit}) as run, \
            Progress(2 * count, f"histogram {layer}", progress=progress,
                     callback=callback) as bar:
        kept: list[torch.Tensor] | None = []
        kept_bytes = 0
        low, high = np.inf, -np.inf
        unit_max: torch.Tensor | None = None
        nonfinite = 0
        for start in starts:
            (values,) = run(batch[start:start + batch_size])[0].values()
            finite, bad = _finite(values)
            nonfinite += bad
            if finite.size:
                low, high = min(low, float(finite.min())), max(high, float(finite.max()))
            top = _unit_max(values)
            unit_max = top if unit_max is None else torch.maximum(unit_max, top)
            if kept is not None:
                kept_bytes += values.numel() * values.element_size()
                if kept_bytes <= KEEP_BYTES:
                    kept.append(values)
                else:
                    kept = None
            if not bar.step(int(values.shape[0])):
                return None
        edges = _edges(low, high, bins)
        counts = np.zeros(bins, dtype=np.int64)
        for i, start in enumerate(starts):
            values = kept[i] if kept is not None else \
                next(iter(run(batch[start:start + batch_size])[0].values()))
            counts += _count(_finite(values)[0], edges)
            if not bar.step(int(values.shape[0])):
                return None
    assert unit_max is not None
    return ProbeHistogram(layer, edges, counts, unit_max, count, nonfinite)


def image_histogram(model_or_probe: nn.Module | Probe, layer: str, image: torch.Tensor,
                    edges: npt.NDArray[np.float64]) -> ImageHistogram:
    """One image's activations of ``layer`` counted in ``edges`` (a probe set's bins).

    Parameters
    ----------
    model_or_probe : nn.Module or Probe
        The model (never modified); a probe that has just seen ``image`` answers from memory.
    layer : str
        Layer name.
    image : Tensor
        One image ``(C, H, W)`` or a batch of one, as the model takes it.
    edges : ndarray
        Uniform bin edges (``ProbeHistogram.edges``); values outside them are counted in
        ``below`` / ``above``.
    """
    x = check_images(image, "image")
    if x.shape[0] != 1:
        msg = f"image has shape {tuple(image.shape)}: give one image (C, H, W) or a batch of one"
        raise InvalidOptionError(msg)
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.shape[0] < 2:
        msg = f"edges must be at least two increasing numbers, got shape {edges.shape}"
        raise InvalidOptionError(msg)
    probe = model_or_probe if isinstance(model_or_probe, Probe) else model_of(model_or_probe)[1]
    # the probe's recorded pass serves an image it has seen (the dashboard's grid did)
    values = _per_unit(probe.activations(x, [layer])[layer])
    finite, bad = _finite(values)
    below = int((finite < edges[0]).sum())
    above = int((finite > edges[-1]).sum())
    return ImageHistogram(_count(finite, edges), below, above, _unit_max(values), bad)


def activation_histogram(model_or_probe: nn.Module | Probe, layer: str, image: torch.Tensor,
                         images: torch.Tensor, *, bins: int = DEFAULT_BINS,
                         **options: Any) -> LayerHistogram | None:
    """:func:`probe_histogram` of ``images`` and :func:`image_histogram` of ``image`` in its
    bins (``options`` go to :func:`probe_histogram`); None when stopped."""
    probe = probe_histogram(model_or_probe, layer, images, bins=bins, **options)
    if probe is None:
        return None
    return LayerHistogram(probe, image_histogram(model_or_probe, layer, image, probe.edges))
