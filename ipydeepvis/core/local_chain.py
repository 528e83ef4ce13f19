"""Recompute only what an occluded patch changes in a model's first, spatially local layers.

An occluding patch changes a box of the input, and a convolution, a pooling or a pointwise
layer only changes the part of its output whose window overlaps a changed input: a small box
in the first layers, growing with depth. For many copies of one image, each occluded at its
own place, the model's leading *chain* of such layers (the modules the input flows through
directly, each feeding the next: ``features.0 .. features.12`` of AlexNet or VGG) can
therefore be computed once for the clean image, and per copy only over the changed box,
pasted into the clean result. The rest of the model then runs as usual.

:func:`install_local_chain` finds that chain by tracing one forward pass of a shadow module
tree, and replaces the chain's modules *in the shadow* (never the user's modules) by pass-
throughs and one module that does the windowed computation. The result equals the plain
forward up to float rounding (the windows are computed by the same ops on crops); a model
whose chain tensors are also read elsewhere (skip connections) or whose chain modules are
called again later is detected and keeps its plain layers.

Supported layers: ``Conv2d`` (zero padding), ``MaxPool2d`` and ``AvgPool2d`` (no
``ceil_mode``, ``count_include_pad=True`` for average pooling), and spatially pointwise layers
(activations, eval-mode ``BatchNorm2d`` with running statistics, ``Dropout``,
``LocalResponseNorm``, ``Identity``). The chain stops at the first other layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChangedBoxes", "install_local_chain"]

# A window covering at least this fraction of a layer's output is computed as a whole.
_FULL = 0.8

_POINTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Tanh, nn.Sigmoid, nn.Softplus,
    nn.Identity, nn.Dropout, nn.Dropout2d, nn.LocalResponseNorm,
)


@dataclass
class ChangedBoxes:
    """Where each sample of the next batch differs from the clean image: rows
    ``[top, bottom)`` and columns ``[left, right)`` per sample (int64 tensors), or None for
    an ordinary forward pass through the chain."""

    top: torch.Tensor | None = None
    bottom: torch.Tensor | None = None
    left: torch.Tensor | None = None
    right: torch.Tensor | None = None

    def set(self, top: torch.Tensor, left: torch.Tensor, height: int, width: int,
            size: tuple[int, int]) -> None:
        """Boxes of ``height x width`` at ``(top, left)``, cut to an image of ``size``."""
        self.top, self.left = top.long(), left.long()
        self.bottom = (top + height).clamp(max=size[0]).long()
        self.right = (left + width).clamp(max=size[1]).long()

    def clear(self) -> None:
        self.top = self.bottom = self.left = self.right = None


@dataclass
class _Step:
    """One layer of the chain: how it maps a changed box, and its clean output."""

    module: nn.Module
    clean: torch.Tensor  # (1, C, H, W) output for the clean image
    window: tuple[tuple[int, int, int, int], tuple[int, int, int, int]] | None = None
    # per axis (kernel, stride, padding, dilation); None for pointwise layers
    op: Callable[[torch.Tensor], torch.Tensor] | None = None
    pad_value: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _geometry(module: nn.Module) -> tuple[Any, Callable[[torch.Tensor], torch.Tensor] | None,
                                          float] | None:
    """``(window per axis, op on a pre-padded crop, pad value)``; ``(None, None, 0)`` for
    pointwise layers; None when the layer is not supported."""
    if isinstance(module, nn.BatchNorm2d):
        if module.training or not module.track_running_stats or module.running_mean is None:
            return None
        return None, None, 0.0
    if isinstance(module, _POINTWISE):
        return None, None, 0.0
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            return None
        conv = module

        def conv_op(x: torch.Tensor) -> torch.Tensor:
            return F.conv2d(x, conv.weight, conv.bias, conv.stride, 0, conv.dilation,
                            conv.groups)

        axes = tuple((conv.kernel_size[a], conv.stride[a], conv.padding[a], conv.dilation[a])
                     for a in range(2))
        return axes, conv_op, 0.0
    if isinstance(module, nn.MaxPool2d):
        if module.ceil_mode or module.return_indices:
            return None
        pool = module
        k, s, p, d = (_two(pool.kernel_size), _two(pool.stride or pool.kernel_size),
                      _two(pool.padding), _two(pool.dilation))

        def max_op(x: torch.Tensor) -> torch.Tensor:
            return F.max_pool2d(x, k, s, 0, d)

        return tuple((k[a], s[a], p[a], d[a]) for a in range(2)), max_op, -math.inf
    if isinstance(module, nn.AvgPool2d):
        if module.ceil_mode or not module.count_include_pad or module.divisor_override:
            return None
        k, s, p = (_two(module.kernel_size), _two(module.stride or module.kernel_size),
                   _two(module.padding))

        def avg_op(x: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(x, k, s, 0)

        return tuple((k[a], s[a], p[a], 1) for a in range(2)), avg_op, 0.0
    return None


def _two(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


class _ChainEnds(BaseException):
    """Raised from a hook once the chain ends (the trace needs nothing after it)."""


def _trace_chain(shadow: nn.Module, sample: torch.Tensor,
                 last: str | None) -> tuple[list[tuple[str, _Step]], Any]:
    """Run ``sample`` and return the leading chain of supported layers, and the model's
    output (None when the trace stopped at ``last``).

    With ``last``, the trace stops there and the chain must end exactly there (else it is
    empty). Without, the whole model runs, and the chain is cut before any of its layers
    that the model calls more than once (a stand-in would answer the later calls wrongly).
    """
    leaves = [(n, m) for n, m in shadow.named_modules() if n and not list(m.children())]
    chain: list[tuple[str, _Step]] = []
    calls: dict[str, int] = {}
    state: dict[str, Any] = {"expected": sample, "open": True}

    def hook(name: str) -> Callable[..., None]:
        def record(module: nn.Module, args: Any, out: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            if not state["open"]:
                return
            chained = (len(args) == 1 and args[0] is state["expected"]
                       and isinstance(out, torch.Tensor) and out.dim() == 4
                       and calls[name] == 1)
            geometry = _geometry(module) if chained else None
            if geometry is None:
                state["open"] = False
                if last is not None:
                    raise _ChainEnds
                return
            window, op, pad_value = geometry
            chain.append((name, _Step(module, out.clone(), window, op, pad_value)))
            state["expected"] = out
            if name == last:
                raise _ChainEnds
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in leaves]
    output = None
    try:
        output = shadow(sample)
    except _ChainEnds:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if last is not None and (not chain or chain[-1][0] != last):
        return [], None
    for k, (name, _step) in enumerate(chain):
        if calls[name] > 1:
            del chain[k:]
            break
    if last is None:
        while chain and chain[-1][1].window is None:  # a pointwise tail gains nothing
            chain.pop()
    return chain, output


class _PassThrough(nn.Module):
    """Stands in for a chain layer whose work the last chain module does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _LocalChain(nn.Module):
    """Stands in for the chain's last layer: computes the whole chain, windowed per sample."""

    def __init__(self, steps: list[_Step], boxes: ChangedBoxes) -> None:
        super().__init__()
        self.steps = steps
        self.boxes = boxes
        self.inner = nn.ModuleList([step.module for step in steps])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boxes = self.boxes
        if boxes.top is None or x.shape[0] == 0:
            for step in self.steps:
                x = step.module(x)
            return x
        assert boxes.bottom is not None and boxes.left is not None and boxes.right is not None
        rows = (boxes.top.tolist(), boxes.bottom.tolist())
        cols = (boxes.left.tolist(), boxes.right.tolist())
        for step in self.steps:
            if step.window is None:
                x = step.module(x)
                continue
            x, rows, cols = _windowed(step, x, rows, cols)
        return x


def _affected(lo: list[int], hi: list[int], axis: tuple[int, int, int, int],
              size: int) -> tuple[list[int], list[int]]:
    """Output index ranges ``[a, b)`` whose window touches input ranges ``[lo, hi)``."""
    k, s, p, d = axis
    reach = d * (k - 1)
    starts = [max(0, -((reach - a - p) // s)) for a in lo]  # ceil((a + p - reach) / s)
    ends = [min(size, (b - 1 + p) // s + 1) for b in hi]
    return starts, ends


def _windowed(step: _Step, x: torch.Tensor, rows: tuple[list[int], list[int]],
              cols: tuple[list[int], list[int]]
              ) -> tuple[torch.Tensor, tuple[list[int], list[int]], tuple[list[int], list[int]]]:
    """One windowed layer: recompute each sample's affected output box from a crop of its
    padded input, paste it into the clean output."""
    assert step.window is not None and step.op is not None
    (kh, sh, ph, dh), (kw, sw, pw, dw) = step.window
    _one, channels, out_h, out_w = step.clean.shape
    r0, r1 = _affected(*rows, step.window[0], out_h)
    c0, c1 = _affected(*cols, step.window[1], out_w)
    n = x.shape[0]
    height = max(max(b - a for a, b in zip(r0, r1, strict=True)), 1)
    width = max(max(b - a for a, b in zip(c0, c1, strict=True)), 1)
    if height * width >= _FULL * out_h * out_w:  # cropping would save little: run it whole
        return step.module(x), ([0] * n, [out_h] * n), ([0] * n, [out_w] * n)
    top = [min(a, out_h - height) for a in r0]
    left = [min(a, out_w - width) for a in c0]
    padded = F.pad(x, (pw, pw, ph, ph), value=step.pad_value) if ph or pw else x
    span_h = (height - 1) * sh + dh * (kh - 1) + 1
    span_w = (width - 1) * sw + dw * (kw - 1) + 1
    crops = torch.stack([padded[k, :, top[k] * sh:top[k] * sh + span_h,
                                left[k] * sw:left[k] * sw + span_w] for k in range(n)])
    windows = step.op(crops)
    out = step.clean.expand(n, channels, out_h, out_w).clone()
    for k in range(n):
        out[k, :, top[k]:top[k] + height, left[k]:left[k] + width] = windows[k]
    return out, (r0, r1), (c0, c1)


def install_local_chain(shadow: nn.Module, sample: torch.Tensor, boxes: ChangedBoxes,
                        *, last: str | None = None) -> list[str]:
    """Replace the shadow's leading chain of local layers by a windowed computation.

    Parameters
    ----------
    shadow : nn.Module
        A module tree of ours (a :class:`~ipydeepvis.core.shadow.ModelShadow`), in eval mode.
    sample : Tensor
        The clean image ``(1, C, H, W)`` on the model's device and dtype.
    boxes : ChangedBoxes
        Set it before each batch to where its samples differ from ``sample``; while it is
        clear, the chain computes as usual.
    last : str, optional
        A layer whose (first call's) output is read, after which the forward stops: the
        chain must end exactly there, else nothing is replaced. Without it, the rebuilt
        shadow is checked against the plain one on ``sample`` and on a changed copy, and a
        model that reads a chain layer's output elsewhere too (a skip connection) keeps its
        plain layers; so does a chain layer that the model calls again later.

    Returns
    -------
    list of str
        The names of the replaced layers (empty when the model has no such chain).
    """
    with torch.no_grad():
        chain, clean_output = _trace_chain(shadow, sample, last)
        if not chain:
            return []
        if last is not None:
            _install(shadow, chain, boxes)
            return [name for name, _step in chain]
        if not isinstance(clean_output, torch.Tensor):
            return []
        changed, box = _changed_copy(sample)
        expected = shadow(changed)  # the plain answers, to check the rebuilt shadow against
        # the longest chain the check accepts: a skip connection that reads a chain layer's
        # output elsewhere (ResNet's identity after the stem) shortens the chain to end there
        ends = [k + 1 for k, (_name, step) in enumerate(chain) if step.window is not None]
        for end in reversed(ends):
            part = chain[:end]
            _install(shadow, part, boxes)
            try:
                windowed = shadow(sample)
                boxes.set(*box)
                windowed_changed = shadow(changed)
                same = _close(windowed, clean_output) and _close(windowed_changed, expected)
            except Exception:  # e.g. a stand-in's output has the wrong shape where it is read
                same = False
            finally:
                boxes.clear()
            if same:
                return [name for name, _step in part]
            for name, step in part:
                _replace(shadow, name, step.module)
    return []


def _install(shadow: nn.Module, chain: list[tuple[str, _Step]], boxes: ChangedBoxes) -> None:
    """Stand-ins for the chain's layers: pass-throughs, then one windowed computation."""
    for name, _step in chain[:-1]:
        _replace(shadow, name, _PassThrough())
    _replace(shadow, chain[-1][0], _LocalChain([step for _n, step in chain], boxes))


def _changed_copy(sample: torch.Tensor) -> tuple[torch.Tensor, tuple[Any, ...]]:
    """``sample`` with a box set to another value, and the box as :meth:`ChangedBoxes.set`
    takes it."""
    _n, _c, h, w = sample.shape
    top, left, height, width = h // 4, w // 4, h // 4 + 1, w // 4 + 1
    changed = sample.clone()
    changed[:, :, top:top + height, left:left + width] = sample.mean() + sample.std()
    return changed, (torch.tensor([top]), torch.tensor([left]), height, width, (h, w))


def _close(got: Any, expected: torch.Tensor) -> bool:
    """Equal up to float rounding (the windows are computed on crops)."""
    if not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return False
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return bool(torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * (1.0 + scale)))


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)
