"""Does a projection depend on the learned weights? Adebayo et al.'s randomization test (2018).

"Sanity Checks for Saliency Maps" (Adebayo, Gilmer, Muelly, Goodfellow, Hardt, Kim; NeurIPS
2018) re-initializes a trained model's weights and asks whether an explanation changes: one
that looks the same with random weights shows the image's edges, not what the network learned.
Two schedules: **cascading**, layer after layer from the top of the model down to a chosen
depth, and **independent**, one layer at a time.

Here the explanation is a unit's projection (:meth:`~ipydeepvis.core.Probe.project`:
deconvnet, guided backprop or gradient). A unit's projection depends only on the layers at or
below it, so randomizing layers above the unit leaves it unchanged (similarity 1):
:attr:`SanityCheck.effective` lists the randomized layers that can change it.

Randomization happens on a copy (:func:`randomized_copy`): the re-initialized layers get their
own tensors, every other tensor is shared with the model as it is (no copy), and the user's
model is never written to. Each layer is re-initialized by its own ``reset_parameters`` (its
default init) from a seed fixed per layer (``seed + the layer's place in forward order``), so
a layer gets the same random weights in both schedules; the global RNG is left as it was.

Similarity to the trained projection, on the *grey projection* (the per-pixel sum of absolute
values over channels, each map scaled to a largest value of 1), as in the paper: the Spearman
rank correlation (:func:`spearman`) and SSIM (:func:`ssim`, Wang et al. 2004, Gaussian window).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError, InvalidOptionError, UnsupportedModelError
from .batched import Progress, check_images
from .probe import Probe
from .shadow import unwrap_model

__all__ = ["MODES", "SanityCheck", "default_depth", "depths", "grey_projection",
           "randomizable_layers", "randomized_copy", "sanity_cascade", "sanity_check",
           "spearman", "ssim"]

MODES = ("cascading", "independent")
"""Randomization schedules: from the top of the model down to a depth, or one layer alone."""


@dataclass(frozen=True)
class SanityCheck:
    """A unit's projection with trained and with randomized weights, and their similarity.

    Attributes
    ----------
    layer, unit, method, position
        What was projected (as for :meth:`~ipydeepvis.core.Probe.project`).
    mode : str
        ``"cascading"`` or ``"independent"``.
    depth : str
        The lowest layer randomized (cascading) or the only one (independent).
    seed : int
        The base seed of the re-initialization.
    randomized : tuple of str
        Every layer re-initialized, top first.
    effective : tuple of str
        Those of them at or below ``layer``: the ones that can change the projection.
    trained, projection : Tensor
        ``(C, H, W)`` projections with the trained and the randomized weights.
    trained_peak, peak : float
        The unit's largest activation on the image with each set of weights (a projection
        seeded from a value <= 0 shows little of the unit).
    spearman : float
        Spearman rank correlation of the two grey projections (NaN if one is constant).
    ssim : float
        SSIM of the two grey projections (1: the same picture).
    """

    layer: str
    unit: int
    method: str
    position: Any
    mode: str
    depth: str
    seed: int
    randomized: tuple[str, ...]
    effective: tuple[str, ...]
    trained: torch.Tensor
    projection: torch.Tensor
    trained_peak: float
    peak: float
    spearman: float
    ssim: float


# ---------------------------------------------------------------------------- similarity


def grey_projection(projection: torch.Tensor) -> torch.Tensor:
    """``(H, W)`` float64: the per-pixel sum of absolute values over channels, scaled so its
    largest value is 1 (all zeros stay zeros; non-finite values count as 0)."""
    if projection.dim() != 3:
        msg = f"projection must be (C, H, W), got shape {tuple(projection.shape)}"
        raise InvalidInputError(msg)
    x = projection.detach().to("cpu", torch.float64)
    grey = torch.where(torch.isfinite(x), x, torch.zeros_like(x)).abs().sum(0)
    top = float(grey.max())
    return grey / top if top > 0 else grey


def _ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """1-based ranks, ties given their average rank (as ``scipy.stats.rankdata``)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    _unique, first, counts = np.unique(ordered, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks = np.empty(values.shape[0], dtype=np.float64)
    ranks[order] = np.repeat(average, counts)
    return ranks


def spearman(a: torch.Tensor | npt.NDArray[Any], b: torch.Tensor | npt.NDArray[Any]) -> float:
    """Spearman rank correlation of the values of ``a`` and ``b`` (same shape, flattened):
    the Pearson correlation of their ranks, ties averaged; NaN when either is constant."""
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape or x.size < 2:
        msg = f"spearman needs two arrays of one size >= 2, got {x.size} and {y.size} values"
        raise InvalidInputError(msg)
    rx, ry = _ranks(x), _ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    norm = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / norm) if norm > 0 else float("nan")


def gaussian_window(size: int, sigma: float) -> torch.Tensor:
    """``(size, size)`` float64 Gaussian weights of ``sigma`` pixels, summing to 1."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    return torch.outer(g, g)


def ssim(a: torch.Tensor, b: torch.Tensor, *, data_range: float = 1.0, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> float:
    """Mean structural similarity of two grey images ``(H, W)`` (Wang et al. 2004).

    Local means, variances and covariance under an 11 x 11 Gaussian window of ``sigma`` 1.5
    pixels (population statistics), ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2`` with ``L`` the data
    range, averaged over the window positions inside the image (the paper's MATLAB code;
    scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=L)`` gives the same). On an image smaller than
    the window the window shrinks to the largest odd size that fits.
    """
    x = torch.as_tensor(a).detach().to("cpu", torch.float64)
    y = torch.as_tensor(b).detach().to("cpu", torch.float64)
    if x.dim() != 2 or x.shape != y.shape:
        msg = (f"ssim compares two grey images (H, W) of one shape, got {tuple(x.shape)} and "
               f"{tuple(y.shape)}")
        raise InvalidInputError(msg)
    size = min(2 * int(3.5 * sigma + 0.5) + 1, *x.shape)
    size -= 1 - size % 2
    window = gaussian_window(size, sigma)[None, None]

    def local(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(z[None, None], window)[0, 0]

    mx, my = local(x), local(y)
    vx = local(x * x) - mx * mx
    vy = local(y * y) - my * my
    cxy = local(x * y) - mx * my
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


# ---------------------------------------------------------------------------- randomization


def _own_tensors(module: nn.Module) -> list[torch.Tensor]:
    return [t for t in [*module._parameters.values(), *module._buffers.values()]
            if t is not None]


def _randomizable(module: nn.Module) -> bool:
    return bool(module._parameters) and any(p is not None for p in module._parameters.values()) \
        and callable(getattr(module, "reset_parameters", None))


def randomizable_layers(probe: Probe, x: torch.Tensor | None = None) -> list[str]:
    """Module names whose weights the test can re-initialize, in forward order (bottom
    first): modules with parameters of their own and a ``reset_parameters``.

    The probe must have seen an input (``input_shape=`` or an earlier call), or ``x`` is run.
    """
    if x is not None:
        probe.coverage(x)  # a full forward: the layers in call order
    modules = dict(unwrap_model(probe.model).named_modules())
    names: list[str] = []
    for info in probe.layers:
        module = modules.get(info.module)
        if module is not None and info.module not in names and _randomizable(module):
            names.append(info.module)
    return names


def depths(probe: Probe, layer: str, x: torch.Tensor | None = None) -> list[str]:
    """The randomizable layers that can change ``layer``'s projections (those at or below it
    in forward order), top first: the depths worth offering for that layer."""
    order = randomizable_layers(probe, x)
    below = _below(probe, layer)
    return [name for name in reversed(order) if name in below]


def _below(probe: Probe, layer: str) -> set[str]:
    """Modules called up to and including ``layer`` (a traced probe's call order)."""
    name = probe.layer(layer).name
    layers = probe.layers
    at = next(i for i, info in enumerate(layers) if info.name == name)
    return {info.module for info in layers[:at + 1]}


def randomized_copy(model: nn.Module, layers: Sequence[str], *, order: Sequence[str] | None = None,
                    seed: int = 0) -> nn.Module:
    """A copy of ``model`` with ``layers`` re-initialized by their ``reset_parameters``.

    Every other parameter and buffer is shared with ``model`` (not copied); the
    re-initialized layers own new tensors. Layer ``order[i]`` is seeded with ``seed + i``
    (``order`` defaults to ``layers``), inside a forked RNG: the global RNG is unchanged.
    """
    root = unwrap_model(model)
    modules = dict(root.named_modules())
    chosen = {}
    for name in layers:
        module = modules.get(name)
        if module is None or not _randomizable(module):
            msg = (f"layer {name!r} cannot be re-initialized: it is not a module with weights "
                   "and a reset_parameters method")
            raise InvalidOptionError(msg)
        chosen[name] = module
    fresh = {id(t) for m in chosen.values() for t in _own_tensors(m)}
    memo: dict[int, Any] = {}
    for module in root.modules():
        for tensor in _own_tensors(module):
            if id(tensor) not in fresh:  # shared, unless a chosen layer owns it too (tied)
                memo[id(tensor)] = tensor
        for attribute, hooks in vars(module).items():
            if "hook" in attribute and isinstance(hooks, dict):
                for hook in hooks.values():
                    if callable(hook):
                        memo[id(hook)] = hook
    try:
        clone = copy.deepcopy(root, memo)
    except Exception as exc:
        msg = f"cannot copy {type(root).__name__} to randomize its weights: {exc}"
        raise UnsupportedModelError(msg) from exc
    copied = dict(clone.named_modules())
    place = {name: i for i, name in enumerate(order if order is not None else layers)}
    devices = sorted({t.device.index or 0 for m in chosen.values() for t in _own_tensors(m)
                      if t.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        for name in layers:
            torch.manual_seed(seed + place.get(name, 0))
            copied[name].reset_parameters()  # type: ignore[operator]
    return clone


def _as_probe(model_or_probe: nn.Module | Probe) -> Probe:
    if isinstance(model_or_probe, Probe):
        return model_or_probe
    if isinstance(model_or_probe, nn.Module):
        return Probe(model_or_probe)
    msg = (f"model_or_probe must be a torch.nn.Module or a dv.Probe, got "
           f"{type(model_or_probe).__name__}")
    raise UnsupportedModelError(msg)


def _schedule(order: list[str], depth: str, mode: str) -> list[str]:
    """The layers to re-initialize, top first."""
    if mode not in MODES:
        msg = f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}"
        raise InvalidOptionError(msg)
    if depth not in order:
        shown = ", ".join(repr(n) for n in order)
        msg = f"depth {depth!r} is not a layer with weights to randomize; choose one of {shown}"
        raise InvalidOptionError(msg)
    if mode == "independent":
        return [depth]
    return list(reversed(order[order.index(depth):]))


def _peak(probe: Probe, x: torch.Tensor, layer: str, unit: int) -> float:
    return float(probe.activations(x, [layer])[layer][0, unit].nan_to_num(-torch.inf).max())


@dataclass(frozen=True)
class _Trained:
    probe: Probe
    order: list[str]
    below: set[str]
    projection: torch.Tensor
    peak: float


def _trained(model_or_probe: nn.Module | Probe, x: torch.Tensor, layer: str, unit: int,
             method: str, position: Any) -> _Trained:
    probe = _as_probe(model_or_probe)
    projection = probe.project(x, layer, unit, method=method, position=position)[0]
    traced = all(info.shape is not None for info in probe.layers)  # the projection's pass
    order = randomizable_layers(probe, None if traced else x)
    return _Trained(probe, order, _below(probe, layer), projection,
                    _peak(probe, x, layer, unit))


def _randomized(trained: _Trained, x: torch.Tensor, layer: str, unit: int, method: str,
                position: Any, mode: str, depth: str, seed: int) -> SanityCheck:
    chosen = _schedule(trained.order, depth, mode)
    effective = tuple(n for n in chosen if n in trained.below)
    if effective:
        clone = randomized_copy(trained.probe.model, chosen, order=trained.order, seed=seed)
        probe = Probe(clone)
        projection = probe.project(x, layer, unit, method=method, position=position)[0]
        peak = _peak(probe, x, layer, unit)
        probe.clear()
    else:  # nothing below the unit changes: the very same projection
        projection, peak = trained.projection.clone(), trained.peak
    a, b = grey_projection(trained.projection), grey_projection(projection)
    return SanityCheck(layer, unit, method, position, mode, depth, seed, tuple(chosen),
                       effective, trained.projection, projection, trained.peak, peak,
                       spearman(a, b), ssim(a, b))


def sanity_check(
    model_or_probe: nn.Module | Probe,
    x: torch.Tensor,
    layer: str,
    unit: int,
    *,
    depth: str | None = None,
    mode: str = "cascading",
    method: str = "deconvnet",
    position: str | tuple[int, ...] = "max",
    seed: int = 0,
) -> SanityCheck:
    """A unit's projection with randomized weights, beside the trained one.

    Parameters
    ----------
    model_or_probe : nn.Module or Probe
        The trained model (never modified: randomization happens on a copy).
    x : Tensor
        One image ``(C, H, W)`` or a batch of one, as the model takes it.
    layer, unit, method, position
        The projection, as for :meth:`~ipydeepvis.core.Probe.project`.
    depth : str, optional
        The layer (a module with weights, see :func:`randomizable_layers`) down to which
        (cascading) or at which (independent) the weights are re-initialized; by default the
        highest such layer at or below ``layer``.
    mode : {"cascading", "independent"}
        From the top of the model down to ``depth``, or ``depth`` alone.
    seed : int
        Base seed of the re-initialization (same seed, same random weights).

    Returns
    -------
    SanityCheck

    Raises
    ------
    InvalidOptionError
        An unknown mode, or a depth that is not a layer with weights (the message lists them).
    LayerNotFoundError, UnitOutOfRangeError, InvalidInputError
        As :meth:`~ipydeepvis.core.Probe.project`.
    """
    image = check_images(x)
    if image.shape[0] != 1:
        msg = f"x has shape {tuple(x.shape)}: give one image (C, H, W) or a batch of one"
        raise InvalidInputError(msg)
    if mode not in MODES:
        msg = f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}"
        raise InvalidOptionError(msg)
    _check_seed(seed)
    trained = _trained(model_or_probe, image, layer, unit, method, position)
    if depth is None:
        depth = default_depth(trained.order, trained.below)
    return _randomized(trained, image, layer, unit, method, position, mode, depth, seed)


def default_depth(order: Sequence[str], below: set[str] | Sequence[str]) -> str:
    """The highest layer of ``order`` (bottom first) among ``below``, else the lowest."""
    inside = [name for name in order if name in below]
    if not order:
        msg = "the model has no layer with weights and a reset_parameters method to randomize"
        raise UnsupportedModelError(msg)
    return inside[-1] if inside else order[0]


def sanity_cascade(
    model_or_probe: nn.Module | Probe,
    x: torch.Tensor,
    layer: str,
    unit: int,
    *,
    mode: str = "cascading",
    method: str = "deconvnet",
    position: str | tuple[int, ...] = "max",
    seed: int = 0,
    progress: bool = False,
    callback: Callable[[int, int], bool | None] | None = None,
) -> list[SanityCheck]:
    """:func:`sanity_check` at every depth that can change the unit's projection (the
    randomizable layers at or below ``layer``), from the top down: the paper's Fig. 2 row.

    ``callback(done, total)`` after each depth; returning False stops (the depths done so
    far are returned).
    """
    image = check_images(x)
    if image.shape[0] != 1:
        msg = f"x has shape {tuple(x.shape)}: give one image (C, H, W) or a batch of one"
        raise InvalidInputError(msg)
    _check_seed(seed)
    trained = _trained(model_or_probe, image, layer, unit, method, position)
    depths = [name for name in reversed(trained.order) if name in trained.below]
    results: list[SanityCheck] = []
    with Progress(len(depths), f"sanity {layer}", progress=progress, callback=callback) as bar:
        for depth in depths:
            results.append(_randomized(trained, image, layer, unit, method, position, mode,
                                       depth, seed))
            if not bar.step(1):
                break
    return results


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        msg = f"seed must be a non-negative int, got {seed!r}"
        raise InvalidOptionError(msg)
