"""Layers of a model as the rest of ipydeepvis addresses them.

A layer is one *call* of a module that returns a tensor, or one ReLU written as a function
call in a ``forward`` (``F.relu(self.conv1(x))`` is the layer ``"conv1.relu"``; see
:mod:`~ipydeepvis.core.relu_calls`). Its name is the module's dotted path
in ``model.named_modules()`` (``"features.3"``, ``"layer1.0.conv1"``). A module that a
``forward`` calls several times (torchvision ResNet's shared ``relu``) has one layer per call,
named with a 1-based call index: ``"layer1.0.relu:1"``, ``"layer1.0.relu:2"``. Pure containers
(``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``) are not layers: their output is
their last child's. The model itself is not a layer either.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LayerNotFoundError, close_matches

__all__ = ["LayerInfo", "default_layer", "layer_kind", "module_layers", "resolve_layer"]

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardtanh,
    nn.Softplus,
)
_POOLS = (
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
)
_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


@dataclass(frozen=True)
class LayerInfo:
    """What the layer picker, sliders and checks need to know about one layer.

    Attributes
    ----------
    name : str
        Address of the layer: ``"features.3"``, or ``"layer1.0.relu:2"`` for the second call
        of a reused module.
    module : str
        Dotted module path in ``model.named_modules()`` (the name without ``:call``).
    kind : str
        ``"conv"``, ``"relu"`` (any activation module), ``"pool"``, ``"linear"``, ``"norm"``
        or ``"other"``.
    type : str
        The module's class name (``"Conv2d"``).
    channels : int or None
        Number of units: output channels (conv, pool, norm, activation maps) or output
        features (linear). None while unknown.
    shape : tuple of int or None
        Per-sample output shape, ``(C, H, W)`` or ``(F,)``; None until the probe has seen an
        input (give ``input_shape=`` to the probe to know it at once).
    call : int or None
        1-based call index for a module (or functional ReLU name) called more than once per
        forward, else None.
    functional_call : int or None
        For a ReLU written as a function call in a ``forward`` (``F.relu``, ``torch.relu``,
        ``x.relu_()``; see :mod:`~ipydeepvis.core.relu_calls`): which ReLU call of the forward
        pass it is, 1-based, counting every ReLU call (module or functional) in call order.
        Its ``module`` is then the name without ``:call`` (no module of that name exists) and
        its ``type`` is ``"relu()"``. None for module layers.
    """

    name: str
    module: str
    kind: str
    type: str
    channels: int | None
    shape: tuple[int, ...] | None = None
    call: int | None = None
    functional_call: int | None = None

    @property
    def functional(self) -> bool:
        """True for a ReLU written as a function call (no module to hook)."""
        return self.functional_call is not None


def layer_kind(module: nn.Module) -> str:
    """Classify a module as conv / relu / pool / linear / norm / other."""
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, _ACTIVATIONS):
        return "relu"
    if isinstance(module, _POOLS):
        return "pool"
    if isinstance(module, (nn.Linear, nn.Bilinear)):
        return "linear"
    if isinstance(module, _NORMS):
        return "norm"
    return "other"


def _declared_channels(module: nn.Module) -> int | None:
    """Output channels a module declares in its attributes, before any forward."""
    for attribute in ("out_channels", "out_features", "num_features", "num_channels"):
        value = getattr(module, attribute, None)
        if isinstance(value, int):
            return value
    return None


def is_layer_module(name: str, module: nn.Module) -> bool:
    """True for modules whose calls are layers: all but the root, containers and TorchScript
    modules (which take no hooks; :class:`~ipydeepvis.core.rectifiers.RectifierCoverage`
    reports them)."""
    return bool(name) and not isinstance(module, (*_CONTAINERS, torch.jit.ScriptModule))


def module_layers(model: nn.Module) -> list[LayerInfo]:
    """Layers as known before any forward pass: one per module, shapes unknown."""
    return [
        LayerInfo(
            name=name,
            module=name,
            kind=layer_kind(module),
            type=type(module).__name__,
            channels=_declared_channels(module),
        )
        for name, module in model.named_modules()
        if is_layer_module(name, module)
    ]


def traced_layer(module_name: str, module: nn.Module, call: int | None,
                 shape: tuple[int, ...]) -> LayerInfo:
    """The :class:`LayerInfo` of one recorded call with a tensor output of per-sample ``shape``."""
    name = module_name if call is None else f"{module_name}:{call}"
    channels = shape[0] if shape else None
    return LayerInfo(name, module_name, layer_kind(module), type(module).__name__, channels,
                     shape, call)


def functional_layer(name: str, number: int, shape: tuple[int, ...]) -> LayerInfo:
    """The :class:`LayerInfo` of a functional ReLU call named ``name`` (``"conv1.relu"``,
    ``"relu:2"``), the ``number``-th ReLU call of the forward pass."""
    stem, _, index = name.rpartition(":")
    call = int(index) if stem and index.isdigit() else None
    return LayerInfo(name, stem if call is not None else name, "relu", "relu()",
                     shape[0] if shape else None, shape, call, number)


def resolve_layer(name: object, layers: Sequence[LayerInfo]) -> LayerInfo:
    """Find the layer called ``name``, or raise an error that lists what would work.

    ``"mod:1"`` also finds a module called only once; a reused module named without its
    call index is an error that lists its calls.

    Raises
    ------
    LayerNotFoundError
        Unknown name, or a reused module without ``:call``.
    """
    if not isinstance(name, str):
        msg = f"layer must be a layer name (str) such as {_examples(layers)}, got {name!r}"
        raise LayerNotFoundError(msg)
    by_name = {layer.name: layer for layer in layers}
    if name in by_name:
        return by_name[name]
    module, _, call = name.rpartition(":")
    if module and call == "1" and module in by_name:
        return by_name[module]
    calls = [layer.name for layer in layers if layer.module == name and layer.call is not None]
    if calls:
        msg = (
            f"layer {name!r} is one module called {len(calls)} times per forward pass; "
            f"name the call: {', '.join(repr(c) for c in calls)}"
        )
        raise LayerNotFoundError(msg)
    hints = close_matches(name, by_name)
    hint = f"; did you mean {', '.join(repr(h) for h in hints)}?" if hints else ""
    msg = (
        f"layer {name!r} is not a layer of this model{hint} "
        f"(probe.layers lists all {len(layers)}, e.g. {_examples(layers)})"
    )
    raise LayerNotFoundError(msg)


def _examples(layers: Iterable[LayerInfo]) -> str:
    names = [layer.name for layer in layers]
    shown = names[:3] + (["..."] if len(names) > 3 else [])
    return ", ".join(repr(n) if n != "..." else n for n in shown)


def default_layer(layers: Sequence[LayerInfo], *, modules: bool = True) -> LayerInfo | None:
    """The layer a viewer starts on: the deepest conv layer's rectified output, whose units can
    fire (a conv layer itself is pre-ReLU, so a unit with negative values everywhere shows
    nothing), else the deepest conv layer, else None.

    ``layers`` in call order. A conv's rectified output is the first ReLU after it with a map of
    the same shape, with only norm or other layers of that shape between; with
    ``modules=False`` only a functional ReLU counts (``F.relu``: a layer the model's own module
    tree does not name), and a conv followed by an ``nn.ReLU`` module is its own default.
    """
    best: LayerInfo | None = None
    for i, layer in enumerate(layers):
        if layer.kind != "conv" or layer.shape is None or len(layer.shape) != 3:
            continue
        best = layer
        for after in layers[i + 1:]:
            if after.shape != layer.shape or after.kind not in ("relu", "norm", "other"):
                break
            if after.kind == "relu":
                if modules or after.functional:
                    best = after
                break
    return best
