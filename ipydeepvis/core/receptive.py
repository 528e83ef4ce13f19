"""Receptive fields measured on the model's own graph, for any architecture.

The receptive field of a unit at a position is the input region that can influence it. Kernel
and stride arithmetic along the call order gets branches, residual additions, concatenations
and padding wrong; here it is read off a backward pass instead. The model runs (on a shadow:
the user's modules are never touched) as a *linearised, all-positive surrogate*: every
parameter replaced by ones (so no weight, zero or negative, can hide or cancel a path), every
rectifier passing everything (``relu``, ``relu6``/``hardtanh``, ``threshold``, ``clamp``), and
every max-pool taking its whole window (an average pool over the same window). The gradient of
a seed at the position, in float64, is then positive exactly on the input pixels connected to
it through the graph, and its bounding box is the receptive field.

The surrogate does not depend on the weights, so results are cached per layer and position
(at most 65,536 boxes, and the recorded pass of one layer); several positions are computed in
one batched backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import InvalidInputError, PositionOutOfRangeError, UnsupportedModelError
from .layers import LayerInfo
from .probe import Probe
from .relu_calls import tap_functional
from .shadow import ModelShadow
from .topk import as_probe, resolve_layers

__all__ = ["Box", "ReceptiveField", "receptive_field"]

_CACHE_LIMIT = 65_536  # boxes kept per ReceptiveField (4 ints each)


@dataclass(frozen=True)
class Box:
    """A rectangle of the input: rows ``top .. bottom - 1``, columns ``left .. right - 1``."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left


class ReceptiveField:
    """Receptive fields of a model's layers for inputs of one shape.

    Parameters
    ----------
    model : Probe or nn.Module
        The model (only its structure matters: weights are replaced by ones).
    input_shape : tuple of int
        ``(C, H, W)`` of the inputs.
    """

    def __init__(self, model: Probe | nn.Module, input_shape: Sequence[int]) -> None:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) != 3 or min(shape) < 1:
            msg = f"input_shape must be (C, H, W) of positive sizes, got {tuple(input_shape)!r}"
            raise InvalidInputError(msg)
        self.probe = as_probe(model)
        self.input_shape = shape
        self._boxes: dict[tuple[str, tuple[int, ...]], Box] = {}
        self._graph: tuple[str, torch.Tensor, torch.Tensor] | None = None

    def clear(self) -> None:
        """Forget the cached boxes and the recorded surrogate pass."""
        self._boxes.clear()
        self._graph = None

    def box(self, layer: str, position: Sequence[int] = ()) -> Box:
        """The receptive field of ``layer`` at ``position`` (``(row, col)``; ``()`` for a layer
        without a spatial map)."""
        return self.boxes(layer, [tuple(position)])[0]

    def boxes(self, layer: str, positions: Sequence[Sequence[int]]) -> list[Box]:
        """Receptive fields of several positions of ``layer`` (one batched backward pass for
        those not cached yet)."""
        (name,) = resolve_layers(self.probe, [layer], torch.zeros(1, *self.input_shape))
        wanted = [tuple(int(p) for p in pos) for pos in positions]
        todo = sorted({pos for pos in wanted if (name, pos) not in self._boxes})
        if todo:
            if len(self._boxes) + len(todo) > _CACHE_LIMIT:
                self._boxes.clear()
            for pos, box in zip(todo, self._measure(name, todo), strict=True):
                self._boxes[(name, pos)] = box
        return [self._boxes[(name, pos)] for pos in wanted]

    def mask(self, layer: str, position: Sequence[int] = ()) -> torch.Tensor:
        """``(H, W)`` bool: the input pixels connected to ``layer`` at ``position``."""
        (name,) = resolve_layers(self.probe, [layer], torch.zeros(1, *self.input_shape))
        return self._gradients(name, [tuple(int(p) for p in position)])[0] > 0

    # ------------------------------------------------------------------ the surrogate

    def _measure(self, name: str, positions: list[tuple[int, ...]]) -> list[Box]:
        boxes = []
        for support in self._gradients(name, positions) > 0:
            rows = support.any(dim=1).nonzero().flatten()
            cols = support.any(dim=0).nonzero().flatten()
            if rows.numel() == 0:
                msg = f"layer {name!r} does not depend on the input: it has no receptive field"
                raise UnsupportedModelError(msg)
            boxes.append(Box(int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1))
        return boxes

    def _gradients(self, name: str, positions: list[tuple[int, ...]]) -> torch.Tensor:
        """``(len(positions), H, W)`` float64 input gradients of the surrogate."""
        if self._graph is None or self._graph[0] != name:
            self._graph = None  # one recorded surrogate pass at a time (its memory is freed)
            shadow = ModelShadow(self.probe.model).module
            info = self.probe.layer(name)
            module_name = name.rpartition(":")[0] if info.call is not None else name
            x = torch.ones(1, *self.input_shape, dtype=torch.float64, requires_grad=True)
            self._graph = (name, x, _forward_to(shadow, module_name, info.call or 1, x,
                                                functional=info if info.functional else None))
        _name, x, output = self._graph
        spatial = tuple(output.shape[2:])
        seeds = torch.zeros(len(positions), *output.shape, dtype=torch.float64)
        for row, pos in enumerate(positions):
            inside = all(0 <= p < s for p, s in zip(pos, spatial, strict=False))
            if len(pos) != len(spatial) or not inside:
                msg = (f"position {pos!r} is outside layer {name!r}'s map of size {spatial}: "
                       f"use {' x '.join(f'0..{s - 1}' for s in spatial) or '()'}")
                raise PositionOutOfRangeError(msg)
            seeds[(row, 0, slice(None), *pos)] = 1.0
        try:
            (grads,) = torch.autograd.grad(output, x, seeds, retain_graph=True,
                                           is_grads_batched=True)
        except RuntimeError:  # an op without a batching rule: one backward per position
            grads = torch.cat([torch.autograd.grad(output, x, seed, retain_graph=True)[0]
                               for seed in seeds])
        return grads.reshape(len(positions), *self.input_shape).abs().sum(dim=1)


def receptive_field(model: Probe | nn.Module, layer: str, position: Sequence[int],
                    input_shape: Sequence[int]) -> Box:
    """The input region that can influence ``layer`` at ``position`` (see the module docs).

    Parameters
    ----------
    model : Probe or nn.Module
        The model (any architecture; only its structure matters).
    layer : str
        Layer name.
    position : sequence of int
        ``(row, col)`` in the layer's map (``()`` for a layer without one).
    input_shape : sequence of int
        ``(C, H, W)`` of the input.

    Returns
    -------
    Box
        Clipped to the input.
    """
    return ReceptiveField(model, input_shape).box(layer, position)


class _StopForward(BaseException):
    """Raised once the layer's output is captured (never escapes this module)."""


def _forward_to(shadow: nn.Module, module_name: str, call: int, x: torch.Tensor,
                functional: LayerInfo | None = None) -> torch.Tensor:
    """The surrogate's output at ``module_name``'s ``call``-th call (or at the ``functional``
    ReLU layer), with its graph."""
    one = torch.ones((), dtype=torch.float64)  # expanded views: no memory until a layer runs
    params = {n: one.expand(p.shape) for n, p in shadow.named_parameters()}
    buffers = {n: b.double() if b.is_floating_point() else b
               for n, b in shadow.named_buffers()}
    captured: list[torch.Tensor] = []
    calls = [0]

    def hook(_module: nn.Module, _args: Any, output: Any) -> None:
        calls[0] += 1
        if calls[0] == call and isinstance(output, torch.Tensor):
            captured.append(output)
            raise _StopForward

    def relu_hook(_info: LayerInfo, output: torch.Tensor) -> None:
        captured.append(output)
        raise _StopForward

    flags = [(m, m.training) for m in shadow.modules()]
    handle = None if functional is not None else \
        shadow.get_submodule(module_name).register_forward_hook(hook)
    try:
        shadow.eval()
        with torch.enable_grad(), _Linearised(), \
                tap_functional([functional] if functional else [], relu_hook):
            torch.func.functional_call(shadow, {**params, **buffers}, (x,))
    except _StopForward:
        pass
    finally:
        if handle is not None:
            handle.remove()
        for module, training in flags:
            module.training = training
    if not captured:
        msg = f"layer {module_name!r} produced no tensor output: no receptive field"
        raise UnsupportedModelError(msg)
    return captured[0]


_PASS = {F.relu, torch.relu, torch.relu_, torch.Tensor.relu, torch.Tensor.relu_, F.relu_,
         F.relu6, F.hardtanh, F.hardtanh_, F.threshold, F.threshold_, torch.threshold,
         torch.clamp, torch.clip, torch.Tensor.clamp, torch.Tensor.clip, torch.clamp_min,
         torch.Tensor.clamp_min, torch.Tensor.clamp_, torch.Tensor.clamp_min_}
_POOL_ARGS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
              "return_indices")
_MAX_POOLS: dict[Callable[..., Any], int] = {
    F.max_pool1d: 1, F.max_pool2d: 2, F.max_pool3d: 3,
    torch.max_pool1d: 1, torch.max_pool2d: 2, torch.max_pool3d: 3,
    F.max_pool1d_with_indices: 1, F.max_pool2d_with_indices: 2, F.max_pool3d_with_indices: 3,
}
_ADAPTIVE = {F.adaptive_max_pool1d: F.adaptive_avg_pool1d,
             F.adaptive_max_pool2d: F.adaptive_avg_pool2d,
             F.adaptive_max_pool3d: F.adaptive_avg_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


class _Linearised(TorchFunctionMode):
    """Rectifiers pass everything; max-pools become average pools over the same window."""

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _PASS:
            return args[0] if args else kwargs["input"]
        if func in _MAX_POOLS:
            return _average_pool(_MAX_POOLS[func], args, kwargs,
                                 indices=func in (F.max_pool1d_with_indices,
                                                  F.max_pool2d_with_indices,
                                                  F.max_pool3d_with_indices))
        if func in _ADAPTIVE:
            out = _ADAPTIVE[func](args[0], args[1] if len(args) > 1 else kwargs["output_size"])
            wants = kwargs.get("return_indices", len(args) > 2 and args[2])
            return (out, torch.zeros_like(out, dtype=torch.long)) if wants else out
        return func(*args, **kwargs)


def _average_pool(dims: int, args: Any, kwargs: Any, *, indices: bool) -> Any:
    """The average pool with a max-pool's window, stride, padding and ceil mode."""
    bound = dict(zip(_POOL_ARGS, args, strict=False))
    bound.update(kwargs)
    x, kernel = bound["input"], bound["kernel_size"]
    stride = bound.get("stride") or kernel
    padding, dilation = bound.get("padding", 0), bound.get("dilation", 1)
    ceil_mode = bool(bound.get("ceil_mode", False))
    if any(d != 1 for d in _tuple(dilation, dims)):
        msg = f"dilated max-pooling (dilation={dilation!r}) has no receptive-field surrogate"
        raise UnsupportedModelError(msg)
    out = _AVG[dims](x, kernel, stride, padding, ceil_mode, count_include_pad=False)
    wants = indices or bound.get("return_indices", False)
    return (out, torch.zeros_like(out, dtype=torch.long)) if wants else out


def _tuple(value: Any, dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * dims
