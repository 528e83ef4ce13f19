"""Regularized optimization (Yosinski et al. 2015): the image a unit would most like to see.

:func:`maximize` runs gradient ascent on an input image to drive one unit (or N units, as
one batch of N images) as high (or low) as it goes, with the paper's regularizers between
steps. Each iteration does, in the order of the deep-visualization-toolbox's
``optimize/gradient_optimizer.py``:

1. clip the image to the valid range (0..1 pixels);
2. forward, stopping at the layer; the objective is the unit's raw (pre-ReLU) value at its
   position (the centre by default);
3. backward from that unit only, to the image parameters;
4. learning rate: ``constant``, or ``progress``: ``min(max_lr, desired_prog / ||g||^2)`` (a
   linear model of the objective then predicts a gain of ``desired_prog``);
5. step ``x += lr * g``; L2 decay; Gaussian blur every ``blur_every`` steps; clip small-norm
   pixels; clip small-contribution pixels (a clipped pixel takes the mean colour). No step
   and no regularizer after the last forward, so the last values recorded are the image's.

The images start at the mean colour plus seeded Gaussian noise. The result keeps the best
image of each unit (highest objective), the last one, and the per-step history.

Units and scales: the paper's Table 1
-------------------------------------
The toolbox worked in Caffe's input space: BGR pixels on a 0..255 scale minus the data mean,
``c = 255 * x - mean``, where ``x`` is our 0..1 pixel. Decay, blur width and both percentile
clips do not depend on that scale (they are relative, or in pixels), but a learning rate does.
A step ``dc = lr_c * dA/dc`` in Caffe units is, with ``dA/dc = (dA/dx) / 255`` and
``dx = dc / 255``, the step ``dx = (lr_c / 255**2) * dA/dx`` in pixels; so

    lr_x = lr_c / 255**2          (lr 100 -> 0.001538 per unit of 0..1 pixel space).

Here the optimization always runs on 0..1 pixels, before the model's own ``preprocess``
(normalization), so this one translation holds for every model. Expressed in the input space of
a model that normalises, ``z = (x - mean) / std``, the same step is ``dz = lr_z * dA/dz`` with
``lr_z = lr_c / (255 * std)**2`` (lr 100 -> 0.0304 for torchvision's std of about 0.225);
:func:`caffe_lr` computes both. The ``progress`` policy needs no translation but for its
``max_lr`` cap, because ``desired_prog`` is in units of the objective. The start noise,
``N(0, 10^2)`` in Caffe units, is ``N(0, (10/255)^2)`` in pixels.

Those constant learning rates were tuned on Caffe AlexNet's activation scale. On a small
network whose units respond more weakly to pixels, the literal step can be too small to beat
the regularizers (preset 3's blur then wins and the image stays grey; measured in the notebook
``maximize.ipynb`` for each preset on the embedded net and on AlexNet). The presets stay
literal. ``lr_scale`` multiplies ``lr`` and ``max_lr`` by a number; ``lr_scale="auto"`` sets
the factor once per unit at the first step, from the unit's own gradient ``g_0``, so that the
first step moves the pixels by the start noise's RMS (``init_sd``, the toolbox's 10/255):

    lr_scale = max(1, init_sd * sqrt(P) / (lr * ||g_0||))      (P = pixels x channels)

and holds it for the run (``max_lr`` in place of ``lr`` for the ``progress`` policy). It never
makes a step smaller than the literal one, and it leaves a preset whose step already reaches
that size as it is (preset 4 on the embedded net).

Beyond the paper (off in the presets): Lucid's random jitter / scale / rotation per step and an
FFT parameterization with colour decorrelation (see
:mod:`~ipydeepvis.core.parametrization` and :mod:`~ipydeepvis.core.transforms`).

The user's model is never touched: everything runs on a
:class:`~ipydeepvis.core.shadow.ModelShadow` that shares its weights, in eval mode, with one
forward hook that lives for the call; gradients are taken with :func:`torch.autograd.grad` with
respect to the image only, so no parameter's ``.grad`` changes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ..errors import InvalidOptionError, ModelForwardError, UnsupportedModelError
from .layers import LayerInfo
from .parametrization import PARAMETRIZATIONS, Parametrization, centre_position
from .probe import Probe
from .regularizers import GaussianBlur, clip_small_contrib, clip_small_norm
from .relu_calls import tap_functional
from .seeds import check_position, check_units
from .shadow import ModelShadow, eval_mode
from .transforms import random_transform

__all__ = [
    "CAFFE_SCALE",
    "INITS",
    "LR_POLICIES",
    "PRESETS",
    "MaximizeHistory",
    "MaximizeParams",
    "MaximizeResult",
    "MaximizeState",
    "caffe_lr",
    "maximize",
    "maximize_params",
]

CAFFE_SCALE = 255.0
"""Caffe pixel units per unit of our 0..1 pixels."""

LR_POLICIES: tuple[str, ...] = ("constant", "progress")
INITS: tuple[str, ...] = ("mean_plus_rand", "mean", "randu")
DIRECTIONS: tuple[str, ...] = ("max", "min")

PRESETS: dict[int, dict[str, Any]] = {
    1: {"decay": 0.0, "blur_sigma": 0.5, "blur_every": 4, "norm_pct": 50.0, "contrib_pct": 0.0,
        "steps": 500, "lr_policy": "progress", "max_lr": 100.0, "desired_prog": 2.0},
    2: {"decay": 0.3, "blur_sigma": 0.0, "blur_every": 0, "norm_pct": 20.0, "contrib_pct": 0.0,
        "steps": 750, "lr_policy": "constant", "lr": 100.0},
    3: {"decay": 0.0001, "blur_sigma": 1.0, "blur_every": 4, "norm_pct": 0.0,
        "contrib_pct": 0.0, "steps": 1000, "lr_policy": "constant", "lr": 100.0},
    4: {"decay": 0.0, "blur_sigma": 0.5, "blur_every": 4, "norm_pct": 0.0, "contrib_pct": 90.0,
        "steps": 1000, "lr_policy": "progress", "max_lr": 1e8, "desired_prog": 2.0},
}
"""Table 1 of Yosinski et al. (2015) with the README's iterations and learning rates, in the
toolbox's own (Caffe, 0..255) units; :func:`maximize_params` translates ``lr`` and ``max_lr``."""


def caffe_lr(lr: float, std: float = 1.0) -> float:
    """Translate a learning rate of the toolbox's 0..255 Caffe space to a model input space.

    Parameters
    ----------
    lr : float
        Learning rate (or ``max_lr``) in Caffe units.
    std : float
        Scale of the target space per 0..1 pixel: 1 for 0..1 pixels (what :func:`maximize`
        steps on), the normalisation's std for ``(x - mean) / std`` inputs.

    Returns
    -------
    float
        ``lr / (255 * std)**2`` (see the module docstring for the derivation).
    """
    return float(lr) / (CAFFE_SCALE * float(std)) ** 2


@dataclass(frozen=True)
class MaximizeParams:
    """Everything that decides the images of a run (hashable: a cache key with the weights).

    Learning rates are in 0..1 pixel units (see :func:`caffe_lr`); build from a preset with
    :func:`maximize_params`.

    Attributes
    ----------
    steps : int
        Forward passes (the last one only measures).
    lr_policy : {"constant", "progress"}
        ``lr`` every step, or ``min(max_lr, desired_prog / ||g||^2)`` per unit.
    lr, max_lr, desired_prog : float
        Constant learning rate; the progress policy's cap and predicted gain per step.
    lr_scale : float or "auto"
        Multiplies ``lr`` and ``max_lr`` (1: literal); ``"auto"``: calibrated per unit at the
        first step (module docstring).
    decay : float
        L2 decay per step, ``0 <= decay < 1``.
    blur_sigma : float
        Gaussian blur width in pixels (0: no blur).
    blur_every : int
        Blur on steps ``0, k, 2k, ...`` (0: never).
    norm_pct, contrib_pct : float
        Percentiles (0..100) of the small-norm and small-contribution clips (0: off).
    jitter : int
        Random shift of up to this many pixels per step (Lucid; 0: off).
    scale : float
        Random rescale by up to ``1 +- scale`` per step (0: off).
    rotate : float
        Random rotation by up to this many degrees per step (0: off).
    param : {"pixel", "fft"}
        Parameterization of the image.
    decorrelate : bool
        Optimize decorrelated colour channels (3-channel images only).
    size : tuple of 2 ints
        Image height and width.
    seed : int
        Seed of the start noise and the random transforms (each unit draws from its own
        generator seeded by ``(seed, unit)``).
    init : {"mean_plus_rand", "mean", "randu"}
        Start at the mean colour plus ``N(0, init_sd^2)`` noise, at the mean colour, or at
        uniform noise over 0..1.
    init_sd : float
        Standard deviation of the start noise in pixels (``10/255``, the toolbox's).
    direction : {"max", "min"}
        Drive the unit up, or down.
    position : tuple of int or None
        Where on a conv unit's map (row, column); None: the centre.
    mean_colour : tuple of float or None
        The colour that decay shrinks toward and clipped pixels take, 0..1 per channel; None:
        the ``mean`` of the ``preprocess`` (a torchvision ``Normalize``) if it has one, else
        mid-grey.
    """

    steps: int = 200
    lr_policy: str = "progress"
    lr: float = caffe_lr(100.0)
    max_lr: float = caffe_lr(100.0)
    desired_prog: float = 2.0
    lr_scale: float | str = 1.0
    decay: float = 0.0
    blur_sigma: float = 0.0
    blur_every: int = 0
    norm_pct: float = 0.0
    contrib_pct: float = 0.0
    jitter: int = 0
    scale: float = 0.0
    rotate: float = 0.0
    param: str = "pixel"
    decorrelate: bool = False
    size: tuple[int, int] = (64, 64)
    seed: int = 0
    init: str = "mean_plus_rand"
    init_sd: float = 10.0 / CAFFE_SCALE
    direction: str = "max"
    position: tuple[int, ...] | None = None
    mean_colour: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        size = self.size
        if isinstance(size, int) and not isinstance(size, bool):
            size = (size, size)
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                           for s in size)):
            msg = f"size must be a positive int or (height, width), got {self.size!r}"
            raise InvalidOptionError(msg)
        object.__setattr__(self, "size", tuple(size))
        if self.position is not None:
            object.__setattr__(self, "position", tuple(self.position))
        if self.mean_colour is not None:
            colour = tuple(float(c) for c in self.mean_colour)
            if not all(0.0 <= c <= 1.0 for c in colour):
                msg = f"mean_colour must be 0..1 per channel, got {self.mean_colour!r}"
                raise InvalidOptionError(msg)
            object.__setattr__(self, "mean_colour", colour)
        _check_int(self.steps, "steps", 1)
        _check_int(self.blur_every, "blur_every", 0)
        _check_int(self.jitter, "jitter", 0)
        _check_int(self.seed, "seed", None)
        _check_choice(self.lr_policy, "lr_policy", LR_POLICIES)
        _check_choice(self.param, "param", PARAMETRIZATIONS)
        _check_choice(self.init, "init", INITS)
        _check_choice(self.direction, "direction", DIRECTIONS)
        for name in ("lr", "max_lr", "desired_prog"):
            _check_range(getattr(self, name), name, 0.0, math.inf, low_open=True)
        _check_range(self.decay, "decay", 0.0, 1.0, high_open=True)
        _check_range(self.blur_sigma, "blur_sigma", 0.0, math.inf)
        _check_range(self.norm_pct, "norm_pct", 0.0, 100.0, high_open=True)
        _check_range(self.contrib_pct, "contrib_pct", 0.0, 100.0, high_open=True)
        _check_range(self.scale, "scale", 0.0, 1.0, high_open=True)
        _check_range(self.rotate, "rotate", 0.0, 180.0)
        _check_range(self.init_sd, "init_sd", 0.0, math.inf)
        if self.lr_scale != "auto":
            _check_range(self.lr_scale, "lr_scale (a number > 0, or 'auto')", 0.0, math.inf,
                         low_open=True)
        if not isinstance(self.decorrelate, bool):
            msg = f"decorrelate must be True or False, got {self.decorrelate!r}"
            raise InvalidOptionError(msg)

    def replace(self, **changes: Any) -> MaximizeParams:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _check_int(value: object, name: str, low: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        msg = f"{name} must be an int{bound}, got {value!r}"
        raise InvalidOptionError(msg)


def _check_choice(value: object, name: str, choices: Sequence[str]) -> None:
    if value not in choices:
        msg = f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        raise InvalidOptionError(msg)


def _check_range(value: object, name: str, low: float, high: float, *, low_open: bool = False,
                 high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        msg = f"{name} must be a number in {left}{low}, {high}{right}, got {value!r}"
        raise InvalidOptionError(msg)


def maximize_params(preset: int | None = None, **overrides: Any) -> MaximizeParams:
    """The parameters of a run: a Table 1 preset (translated), with any field overridden.

    Parameters
    ----------
    preset : {1, 2, 3, 4} or None
        A row of the paper's Table 1 (:data:`PRESETS`), its ``lr`` / ``max_lr`` translated
        from Caffe units with :func:`caffe_lr`; None: :class:`MaximizeParams`' defaults (no
        regularizer, ``progress`` learning rate).
    **overrides
        Fields of :class:`MaximizeParams` (learning rates in 0..1 pixel units); None values are
        ignored, so callers may pass every option through.

    Raises
    ------
    InvalidOptionError
        An unknown preset or field, or an invalid value.
    """
    fields = {f.name for f in dataclasses.fields(MaximizeParams)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        msg = (
            f"unknown option(s) {', '.join(map(repr, unknown))}; the options are "
            f"{', '.join(sorted(fields))}"
        )
        raise InvalidOptionError(msg)
    values: dict[str, Any] = {}
    if preset is not None:
        if isinstance(preset, bool) or preset not in PRESETS:
            msg = f"preset must be one of {sorted(PRESETS)} (Table 1 of the paper) or None, " \
                  f"got {preset!r}"
            raise InvalidOptionError(msg)
        values = dict(PRESETS[preset])
        for key in ("lr", "max_lr"):
            if key in values:
                values[key] = caffe_lr(values[key])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return MaximizeParams(**values)


@dataclass(frozen=True, eq=False)
class MaximizeState:
    """What a ``callback(step, state)`` sees after each forward / backward.

    Attributes
    ----------
    step : int
        0-based step index.
    steps : int
        Planned number of steps.
    objective, best, lr : ndarray
        Per unit: the value now, the best so far, the learning rate about to be used.
    argmax_step : ndarray of int
        Per unit: the first step at which it was its layer's argmax (-1: not yet).
    images : Tensor or None
        Current images ``(N, C, H, W)`` in 0..1 on the CPU, on steps ``0, every, 2*every,
        ...`` and the last step; None on the others (no copy is made then).
    """

    step: int
    steps: int
    objective: npt.NDArray[np.float64]
    best: npt.NDArray[np.float64]
    lr: npt.NDArray[np.float64]
    argmax_step: npt.NDArray[np.int64]
    images: torch.Tensor | None


@dataclass(frozen=True, eq=False)
class MaximizeHistory:
    """Per-step record of a run, one column per unit.

    Attributes
    ----------
    objective : ndarray ``(S, N)``
        The unit's value at each step (raw, pre-ReLU).
    best : ndarray ``(S, N)``
        The best value so far (highest, or lowest with ``direction="min"``).
    lr : ndarray ``(S, N)``
        The learning rate used after that step's forward.
    argmax_step : ndarray ``(N,)`` of int
        The first step at which the unit (at its position) was the largest value of its whole
        layer (the smallest with ``direction="min"``), as the toolbox's "majority" image; -1:
        never.
    best_step : ndarray ``(N,)`` of int
        The step of the best value (the step whose image is in ``result.images``).
    """

    objective: npt.NDArray[np.float64]
    best: npt.NDArray[np.float64]
    lr: npt.NDArray[np.float64]
    argmax_step: npt.NDArray[np.int64]
    best_step: npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class MaximizeResult:
    """What :func:`maximize` returns.

    Attributes
    ----------
    layer : str
        The layer's name (as in ``probe.layers``).
    units : tuple of int
        The units, in the order of the images.
    position : tuple of int
        Where on each map (``()`` for a linear layer).
    params : MaximizeParams
        Everything that made the images.
    images : Tensor
        ``(N, C, H, W)`` in 0..1, on the CPU: each unit's best image.
    last : Tensor
        ``(N, C, H, W)``: the images at the last step run.
    history : MaximizeHistory
        Per-step objective, best, learning rate; argmax and best steps.
    stopped : bool
        True when a callback returned False (or every gradient was zero) before ``steps``.
    """

    layer: str
    units: tuple[int, ...]
    position: tuple[int, ...]
    params: MaximizeParams
    images: torch.Tensor
    last: torch.Tensor
    history: MaximizeHistory
    stopped: bool

    @property
    def steps_run(self) -> int:
        """Number of forward passes that ran."""
        return int(self.history.objective.shape[0])

    @property
    def best(self) -> npt.NDArray[np.float64]:
        """Each unit's best value."""
        return self.history.best[-1]

    def __repr__(self) -> str:
        return (f"MaximizeResult(layer={self.layer!r}, units={self.units}, "
                f"steps_run={self.steps_run}, best={np.round(self.best, 4).tolist()})")


class _Stop(BaseException):
    """Raised from the forward hook once the layer is captured (never escapes)."""


def maximize(
    model_or_probe: nn.Module | Probe,
    layer: str,
    units: int | Sequence[int],
    *,
    preset: int | None = None,
    params: MaximizeParams | None = None,
    steps: int | None = None,
    lr_policy: str | None = None,
    lr: float | None = None,
    max_lr: float | None = None,
    desired_prog: float | None = None,
    lr_scale: float | str | None = None,
    decay: float | None = None,
    blur_sigma: float | None = None,
    blur_every: int | None = None,
    norm_pct: float | None = None,
    contrib_pct: float | None = None,
    jitter: int | None = None,
    scale: float | None = None,
    rotate: float | None = None,
    param: str | None = None,
    decorrelate: bool | None = None,
    size: int | tuple[int, int] | None = None,
    seed: int | None = None,
    init: str | None = None,
    direction: str | None = None,
    position: tuple[int, ...] | None = None,
    mean_colour: Sequence[float] | None = None,
    preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
    channels: int = 3,
    callback: Callable[[int, MaximizeState], bool | None] | None = None,
    every: int = 10,
    progress: bool = False,
) -> MaximizeResult:
    """Find the images that drive units of a layer highest, by regularized gradient ascent.

    Parameters
    ----------
    model_or_probe : nn.Module or Probe
        The model (never modified), or a :class:`~ipydeepvis.core.probe.Probe` of it.
    layer : str
        Layer name, as in ``probe.layers`` (a conv, linear, or any layer with ``(C, H, W)``
        or ``(F,)`` outputs).
    units : int or sequence of int
        Units (channels) to optimize; N units run as one batch of N images.
    preset : {1, 2, 3, 4}, optional
        A row of the paper's Table 1, translated (see the module docstring).
    params : MaximizeParams, optional
        All parameters at once (e.g. a cached run's ``result.params``); then neither
        ``preset`` nor any of the options below may be given.
    steps, lr_policy, lr, max_lr, desired_prog, lr_scale, decay, blur_sigma, blur_every, \
norm_pct, contrib_pct, jitter, scale, rotate, param, decorrelate, size, seed, init, direction, \
position, mean_colour
        Override the preset's (or the default) value; see :class:`MaximizeParams`.
    preprocess : callable, optional
        Maps 0..1 images to the model's input, differentiably (e.g. torchvision's
        ``transforms.Normalize``); None when the model takes 0..1 images.
    channels : int
        Colour channels of the image.
    callback : callable, optional
        ``callback(step, state)`` after every forward / backward (:class:`MaximizeState`);
        returning False stops the run there (the result holds what ran).
    every : int
        Copy the current images into ``state.images`` every this many steps.
    progress : bool
        Show a ``tqdm.auto`` progress bar.

    Returns
    -------
    MaximizeResult
        ``.images`` (best, ``(N, C, H, W)`` in 0..1), ``.last``, ``.history``, ``.params``.

    Raises
    ------
    LayerNotFoundError, UnitOutOfRangeError, PositionOutOfRangeError, InvalidOptionError,
    ModelForwardError, UnsupportedModelError
        With a message naming the bad value and the valid choices.
    """
    overrides = {
        "steps": steps, "lr_policy": lr_policy, "lr": lr, "max_lr": max_lr,
        "desired_prog": desired_prog, "lr_scale": lr_scale, "decay": decay,
        "blur_sigma": blur_sigma, "blur_every": blur_every, "norm_pct": norm_pct,
        "contrib_pct": contrib_pct, "jitter": jitter, "scale": scale, "rotate": rotate,
        "param": param, "decorrelate": decorrelate, "size": size, "seed": seed, "init": init,
        "direction": direction, "position": position,
        "mean_colour": None if mean_colour is None else tuple(mean_colour),
    }
    if params is not None:
        given = sorted(k for k, v in overrides.items() if v is not None)
        if preset is not None or given:
            also = ["preset"] * (preset is not None) + given
            msg = (f"give either params= or preset / options, not both (also given: "
                   f"{', '.join(also)}); use params.replace(...) to change a field")
            raise InvalidOptionError(msg)
        if not isinstance(params, MaximizeParams):
            msg = f"params must be a MaximizeParams, got {type(params).__name__}"
            raise InvalidOptionError(msg)
    else:
        params = maximize_params(preset, **overrides)
    _check_int(every, "every", 1)
    _check_int(channels, "channels", 1)
    if params.decorrelate and channels != 3:
        msg = f"decorrelate=True needs 3 colour channels, got channels={channels}"
        raise InvalidOptionError(msg)
    probe = model_or_probe if isinstance(model_or_probe, Probe) else Probe(model_or_probe)
    return _Run(probe, layer, units, params, preprocess, channels).run(callback, every, progress)


def _unit_seed(seed: int, unit: int, index: int) -> int:
    """Seed of one unit's generator, from (seed, unit, its index among equal units)."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32 & 0xFFFFFFFF, unit, index])
    return int(state.generate_state(1, np.uint64)[0] & 0x7FFF_FFFF_FFFF_FFFF)


def _mean_colour(params: MaximizeParams, preprocess: Any, channels: int) -> tuple[float, ...]:
    """The explicit mean colour, else a ``Normalize``-like preprocess' ``mean``, else grey."""
    if params.mean_colour is not None:
        colour = params.mean_colour
    else:
        mean = getattr(preprocess, "mean", None)
        try:
            colour = tuple(float(m) for m in torch.as_tensor(mean).flatten())
        except (TypeError, ValueError, RuntimeError):
            colour = ()
        if len(colour) != channels or not all(0.0 <= c <= 1.0 for c in colour):
            colour = (0.5,) * channels
    if len(colour) == 1 and channels > 1:
        colour = colour * channels
    if len(colour) != channels:
        msg = f"mean_colour has {len(colour)} values for {channels} channels: {colour!r}"
        raise InvalidOptionError(msg)
    return colour




class _Run:
    """One call of :func:`maximize`: resolved layer, units, shadow, and the loop."""

    def __init__(self, probe: Probe, layer: str, units: int | Sequence[int],
                 params: MaximizeParams, preprocess: Callable[[torch.Tensor], torch.Tensor] | None,
                 channels: int) -> None:
        self.params = params
        self.preprocess = preprocess
        model = probe.model
        tensor = next(iter(model.parameters()), None)
        self.device = tensor.device if tensor is not None else torch.device("cpu")
        self.dtype = tensor.dtype if tensor is not None and tensor.is_floating_point() \
            else torch.float32
        self.channels = channels
        colour = _mean_colour(params, preprocess, channels)
        self.mean = torch.tensor(colour, dtype=self.dtype, device=self.device).view(1, -1, 1, 1)
        height, width = params.size
        start = self.mean.expand(1, channels, height, width).clone()
        # Resolve the layer (the probe names each call of a reused module after one full pass)
        with torch.no_grad():
            model_input = self._model_input(start)
        try:
            name = next(iter(probe.activations(model_input, layers=[layer])))
        except ModelForwardError:
            # The whole model does not take this size (a classifier sized for other images),
            # but the layer may: resolve it by its module name and run only up to it.
            name = layer
        info = probe.layer(name)
        self.layer = info.name
        self.call = info.call or 1
        self.info = info
        self.shadow, _key = ModelShadow(model).current()
        modules = dict(self.shadow.named_modules())
        if not info.functional and info.module not in modules:
            msg = (f"layer {info.name!r} names module {info.module!r}, which the model's "
                   "unwrapped module tree does not have; pass the inner model")
            raise UnsupportedModelError(msg)
        # a functional ReLU has no module: _forward finds its call with tap_functional
        self.module = None if info.functional else modules[info.module]
        with ExitStack() as stack, torch.no_grad():
            captured: list[torch.Tensor] = []
            calls = [0]
            if self.module is not None:
                stack.enter_context(self.module.register_forward_hook(
                    self._hook(captured, calls)))
            stack.enter_context(eval_mode(self.shadow))
            self.memory_format = torch.contiguous_format
            if self.device.type == "cpu":
                # channels-last images make a CPU conv net step about a fifth faster (oneDNN
                # convolutions without reorders); a model that needs contiguous activations
                # (a .view) raises on them, and then runs on contiguous images
                try:
                    out = self._forward(start.contiguous(memory_format=torch.channels_last),
                                        captured, calls)
                    self.memory_format = torch.channels_last
                except (ModelForwardError, UnsupportedModelError):
                    pass
            if self.memory_format != torch.channels_last:
                out = self._forward(start, captured, calls)
        self.spatial = tuple(out.shape[2:])
        self.out_shape = tuple(out.shape[1:])
        if out.dim() not in (2, 4):
            msg = (f"layer {info.name!r} has outputs of shape {tuple(out.shape[1:])}; maximize "
                   "takes layers with (C, H, W) or (F,) outputs")
            raise UnsupportedModelError(msg)
        self.units = check_units(units, out.shape[1], info.name)
        if self.spatial:
            where = params.position if params.position is not None \
                else centre_position(self.spatial)
            self.position = check_position(where, self.spatial, info.name)
        else:
            if params.position not in (None, ()):
                msg = (f"layer {info.name!r} is linear (its units are single values), so "
                       f"position {params.position!r} does not apply: leave position=None")
                raise InvalidOptionError(msg)
            self.position = ()

    def _hook(self, captured: list[torch.Tensor], calls: list[int]) -> Callable[..., Any]:
        """A forward hook that captures the layer's output at its call and stops the forward
        there (so nothing after it, an in-place ReLU included, runs)."""
        target = self.call

        def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
            calls[0] += 1
            if calls[0] == target:
                captured.append(output)
                raise _Stop
            return None

        return hook

    def _model_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.preprocess(x) if self.preprocess is not None else x

    def _initial(self, generators: list[torch.Generator]) -> torch.Tensor:
        """Start images in 0..1 pixels (not yet clipped), one per unit from its own generator."""
        p = self.params
        c, (h, w) = self.channels, p.size
        mean = self.mean[0].cpu()
        images = []
        for g in generators:
            if p.init == "mean_plus_rand":
                images.append(torch.randn((c, h, w), generator=g) * p.init_sd + mean)
            elif p.init == "mean":
                images.append(mean.expand(c, h, w))
            else:  # randu
                images.append(torch.rand((c, h, w), generator=g))
        return torch.stack(images).to(self.device, self.dtype)

    def _generators(self) -> list[torch.Generator]:
        """One generator per image, seeded by (seed, unit, its index among equal units)."""
        counts: dict[int, int] = {}
        generators = []
        for unit in self.units:
            counts[unit] = counts.get(unit, 0) + 1
            generators.append(torch.Generator().manual_seed(
                _unit_seed(self.params.seed, unit, counts[unit] - 1)))
        return generators

    def run(self, callback: Callable[[int, MaximizeState], bool | None] | None, every: int,
            progress: bool) -> MaximizeResult:
        """The loop, in the module docstring's order.

        Lean on purpose, since the forward and backward of a small net take a few milliseconds
        (``benchmarks/bench_maximize.py`` measures it against a bare torch loop):

        - the images are kept as 0..1 pixels: the range clip is a scalar ``clamp_``, the
          forward adds no mean colour, decay is one ``lerp_`` toward a mean-colour image;
        - on the CPU they are channels-last tensors (:meth:`__init__` checks the model takes
          them), which oneDNN convolves without reordering;
        - per step, a few small tensor ops record the objective, the layer's largest value and
          the learning rate, stacked into the history once at the end; nothing is read back
          to Python but "did a unit improve / move";
        - the backward starts from the sum of the units' values (with the direction's sign),
          stops at the image, and never reaches the weights;
        - the stepped image is the only per-step allocation; the regularizers work on it in
          place, and the best image is a reference to a step's clipped image (never modified
          after its forward), not a copy. The blur's operators are built once per run.
        """
        p = self.params
        n = len(self.units)
        generators = self._generators()
        mean = self.mean
        x0 = self._initial(generators)
        para = Parametrization(p.param, tuple(x0.shape),  # type: ignore[arg-type]
                               decorrelate=p.decorrelate, device=self.device, dtype=self.dtype)
        pixels = p.param == "pixel" and not p.decorrelate  # the parameters are the pixels
        maximizing = p.direction == "max"
        improves = torch.gt if maximizing else torch.lt
        top_of = torch.amax if maximizing else torch.amin
        every_dim = tuple(range(1, 1 + len(self.out_shape)))
        per_image = math.prod(self.out_shape)
        within = [int(np.ravel_multi_index((u, *self.position), self.out_shape))
                  for u in self.units]
        take = torch.tensor([k * per_image + i for k, i in enumerate(within)],
                            device=self.device)
        transforms = p.jitter > 0 or p.scale > 0 or p.rotate > 0
        need_image_grad = p.contrib_pct > 0 and not pixels
        blur = GaussianBlur(p.blur_sigma, p.size, dtype=self.dtype, device=self.device) \
            if p.blur_every > 0 and p.blur_sigma > 0 else None
        clips = p.norm_pct > 0 or p.contrib_pct > 0
        regularize = p.decay > 0 or blur is not None or clips
        progress_policy = p.lr_policy == "progress"
        base_lr = p.max_lr if progress_policy else p.lr
        lr_scale: torch.Tensor | float = float(p.lr_scale) if p.lr_scale != "auto" else 1.0

        # per-step records (small tensors), stacked into the history at the end
        values_log: list[torch.Tensor] = []
        rate_log: list[torch.Tensor] = []  # (n, 1, 1, 1) each; 0 where moving_log is False
        moving_log: list[torch.Tensor] = []
        top_log: list[torch.Tensor] = []
        best_value = torch.full((n,), -math.inf if maximizing else math.inf, dtype=self.dtype,
                                device=self.device)
        best_images = x0
        first_top = np.full(n, -1, dtype=np.int64)  # only kept up to date for callbacks
        # backward from the sum of the units' values: +-1 for each (direction)
        seed = torch.tensor(1.0 if maximizing else -1.0, dtype=self.dtype, device=self.device)

        captured: list[torch.Tensor] = []
        calls = [0]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=p.steps, desc=f"maximize {self.layer}", unit="step")
        stopped = False
        layout = self.memory_format
        current = x0.contiguous(memory_format=layout) if pixels else para.inverse(x0 - mean)
        # the mean colour as a whole image in the images' layout: decay toward it is then one
        # elementwise op with no broadcast over channels (slow on channels-last tensors)
        mean_image = mean.expand(1, *x0.shape[1:]).contiguous(memory_format=layout)
        shape = (n, *[1] * (current.dim() - 1))  # one number per image, broadcast
        image_dims = tuple(range(1, current.dim()))
        rates = torch.full(shape, base_lr * lr_scale, dtype=self.dtype, device=self.device)
        x = x0
        try:
            with ExitStack() as stack:
                if self.module is not None:
                    stack.enter_context(self.module.register_forward_hook(
                        self._hook(captured, calls)))
                stack.enter_context(eval_mode(self.shadow))
                stack.enter_context(torch.enable_grad())  # the steps below build no graph
                for step in range(p.steps):
                    # 1. clip to the valid range
                    if pixels:
                        x = current.clamp_(0.0, 1.0)
                    else:
                        image = para.image(current) + mean
                        x = image.clamp(0.0, 1.0)
                        if not torch.equal(x, image):
                            current = para.inverse(x - mean)
                    # 2. forward to the layer
                    leaf = current.detach().requires_grad_(True)
                    image = leaf if pixels else para.image(leaf) + mean
                    model_input = image if pixels else image.contiguous(memory_format=layout)
                    if transforms:
                        model_input = random_transform(image, generators, jitter=p.jitter,
                                                       scale=p.scale, rotate=p.rotate)
                    out = self._forward(model_input, captured, calls)
                    if not out.requires_grad:
                        msg = f"layer {self.layer!r} does not depend on the input image"
                        raise UnsupportedModelError(msg)
                    # 3. record (x, the clipped image, is never modified from here on)
                    objective = torch.take(out, take)
                    values = objective.detach()
                    values_log.append(values)
                    top_log.append(top_of(out.detach(), dim=every_dim))
                    better = improves(values, best_value)
                    if bool(better if n == 1 else better.all()):
                        best_images, best_value = x, values
                    elif n > 1 and bool(better.any()):
                        best_images = torch.where(better.view(n, 1, 1, 1), x, best_images)
                        best_value = torch.where(better, values, best_value)
                    # 4. backward from the units only; the learning rate
                    wrt = [leaf, image] if need_image_grad else [leaf]
                    grads = torch.autograd.grad(objective.sum(), wrt, seed)
                    grad = grads[0]
                    grad_image = grads[1] if need_image_grad else grad
                    norm = torch.linalg.vector_norm(grad, dim=image_dims)
                    moving = norm > 0
                    if step == 0 and p.lr_scale == "auto":
                        # the first step moves the pixels by the start noise's RMS
                        wanted = p.init_sd * math.sqrt(grad[0].numel()) / norm
                        lr_scale = torch.where(moving, wanted / base_lr, 1.0).clamp(min=1.0)
                        rates = (lr_scale * base_lr).view(shape)
                    if progress_policy:
                        rate = torch.minimum(rates,
                                             p.desired_prog / norm.square().view(shape)
                                             .clamp(min=1e-30))
                        rate = torch.where(moving.view(shape), rate, 0.0)
                    else:  # a unit whose gradient is zero does not move anyway
                        rate = rates
                    rate_log.append(rate)
                    moving_log.append(moving)
                    if bar is not None:
                        bar.update(1)
                    if callback is not None:
                        hit = _tops(values, top_log[-1], maximizing).cpu().numpy() & (first_top < 0)
                        first_top[hit] = step
                        show = step % every == 0 or step == p.steps - 1
                        state = MaximizeState(
                            step=step, steps=p.steps,
                            objective=values.to("cpu", torch.float64).numpy(),
                            best=best_value.to("cpu", torch.float64).numpy(),
                            lr=torch.where(moving, rate.view(n), 0.0).to("cpu", torch.float64)
                            .numpy(),
                            argmax_step=first_top.copy(),
                            images=_to_cpu(x) if show else None,
                        )
                        if callback(step, state) is False:
                            stopped = step < p.steps - 1
                            break
                    if step == p.steps - 1:
                        break
                    if not bool(moving.any()):  # every gradient is zero: nothing moves
                        stopped = True
                        break
                    # 5. step and regularize (new tensors: x stays as it was)
                    current = torch.addcmul(current, rate, grad)
                    if regularize:
                        v = current if pixels else para.image(current) + mean_image
                        if p.decay > 0:  # mean + (v - mean) * (1 - decay)
                            v = v.lerp_(mean_image, p.decay)
                        if blur is not None and step % p.blur_every == 0:
                            v = blur(v)
                        if clips:  # the clips work on centred pixels
                            centred = clip_small_norm(v - mean_image, p.norm_pct)
                            centred = clip_small_contrib(centred, grad_image, p.contrib_pct)
                            v = centred + mean_image
                        current = v.contiguous(memory_format=layout) if pixels \
                            else para.inverse(v - mean)
        finally:
            if bar is not None:
                bar.close()
        return MaximizeResult(
            layer=self.layer, units=tuple(self.units), position=tuple(self.position),
            params=p,
            images=_to_cpu(best_images), last=_to_cpu(x),
            history=_history(values_log, rate_log, moving_log, top_log, maximizing),
            stopped=stopped,
        )

    def _forward(self, x: torch.Tensor, captured: list[torch.Tensor],
                 calls: list[int]) -> torch.Tensor:
        """Run the shadow on ``x`` until the layer's hook captures its output."""
        calls[0] = 0
        captured.clear()

        def capture(_info: LayerInfo, output: torch.Tensor) -> None:
            captured.append(output)
            raise _Stop

        try:
            if self.module is not None:  # a module layer: its forward hook stops the pass
                self.shadow(self._model_input(x))
            else:
                with tap_functional([self.info], capture):
                    self.shadow(self._model_input(x))
        except _Stop:
            pass
        except Exception as exc:
            msg = (f"the model raised {type(exc).__name__} on an input of shape "
                   f"{tuple(x.shape)}: {exc}")
            raise ModelForwardError(msg) from exc
        if not captured:
            msg = (f"layer {self.layer!r} was not reached in the forward pass "
                   "(does the model call it only for some inputs?)")
            raise UnsupportedModelError(msg)
        return captured[0]


def _to_cpu(images: torch.Tensor) -> torch.Tensor:
    """A contiguous float32 CPU copy of images the loop owns (the caller may keep it)."""
    return images.detach().to(device="cpu", dtype=torch.float32,
                              memory_format=torch.contiguous_format, copy=True)


def _tops(values: torch.Tensor, tops: torch.Tensor, maximizing: bool) -> torch.Tensor:
    """Where each unit's value is its layer's largest (smallest, minimizing): the layer's
    argmax is the unit (up to exact ties, which count as the unit's)."""
    return values >= tops if maximizing else values <= tops


def _history(values: list[torch.Tensor], rates: list[torch.Tensor], moving: list[torch.Tensor],
             tops: list[torch.Tensor], maximizing: bool) -> MaximizeHistory:
    """The per-step logs as arrays: running best, first argmax step, best step; the learning
    rate is 0 where a unit's gradient was."""
    stacked = torch.stack(values)
    objective = stacked.to("cpu", torch.float64).numpy()
    signed = objective if maximizing else -objective
    best = np.maximum.accumulate(signed, axis=0)
    hit = _tops(stacked, torch.stack(tops), maximizing).cpu().numpy()
    argmax_step = np.where(hit.any(axis=0), hit.argmax(axis=0), -1).astype(np.int64)
    rate = torch.stack(rates).flatten(1)
    rate = torch.where(torch.stack(moving), rate, 0.0)
    return MaximizeHistory(
        objective=objective, best=best if maximizing else -best,
        lr=rate.to("cpu", torch.float64).numpy(),
        argmax_step=argmax_step,
        best_step=signed.argmax(axis=0).astype(np.int64),  # the first step at the best value
    )
