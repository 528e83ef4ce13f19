"""ReLUs written as function calls (``F.relu``, ``torch.relu``, ``x.relu_()``) as layers.

A model whose rectifiers are function calls has no ReLU module to hook, so all its conv layers
are pre-ReLU and many of their units never fire. ipydeepvis lists each such call as a layer of
its own (kind ``"relu"``). The calls are seen by a ``TorchFunctionMode`` that is active only
while ipydeepvis runs the model's shadow: a mode belongs to one thread and ends with its
``with`` block, so the user's own ``F.relu`` calls (in another thread, or later) never pass
through it, and nothing in ``torch`` is patched.

Names. A functional ReLU is named after the layer whose output it rectifies:
``F.relu(self.conv1(x))`` is ``"conv1.relu"``, ``F.relu(self.features(x))`` is
``"features.3.relu"`` when ``features.3`` is the container's last layer. A ReLU of anything
else (a sum such as ``out + identity``, a reshaped tensor, the input) is named after the module
whose ``forward`` calls it: ``"block.relu"``, or ``"relu"`` in the model's own ``forward``. A
name that is already a module's gets ``()`` (``"block.relu()"``); a name that occurs several
times per forward is numbered like the calls of a reused module (``"relu:1"``, ``"relu:2"``).
So the names are the same in every run and for every image, do not depend on how the call is
spelled, and do not move when a ReLU elsewhere in the model is added or removed, as a global
counter (``"relu@3"``) would.

Capture. Once a probe has traced the model, each functional layer knows which ReLU call of the
forward pass it is (:attr:`~ipydeepvis.core.layers.LayerInfo.functional_call`, counting every
ReLU call, module or functional, in call order). Code that runs the shadow by itself (top-k
scans, maximisation, batched perturbations, receptive fields) finds the layer again with
:func:`tap_functional`, without tracking modules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from .layers import LayerInfo
from .rectifiers import relu_call

__all__ = ["ReluCalls", "functional_names", "functional_stem", "tap_functional"]

OnCall = Callable[[int, Any, torch.Tensor], "torch.Tensor | None"]


class ReluCalls(TorchFunctionMode):
    """Number every ReLU call of a forward pass (1-based, in call order) and show it to
    ``on_call(number, input, output)``.

    ``on_call`` may return a tensor for the model to continue with instead of ``output`` (as a
    forward hook may), or raise to stop the forward pass. Enter this mode after (outside) any
    other mode, so that it sees the calls exactly as the model makes them.
    """

    def __init__(self, on_call: OnCall) -> None:
        super().__init__()
        self.on_call = on_call
        self.count = 0

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        relu = relu_call(func, args, kwargs)
        if relu is None or not isinstance(out, torch.Tensor):
            return out
        self.count += 1
        replaced = self.on_call(self.count, relu[0], out)
        return out if replaced is None else replaced


def functional_names(stems: Iterable[str], module_names: Iterable[str]) -> list[str]:
    """Layer names for functional ReLU calls from their stems (``"conv1.relu"``), in call order.

    A stem that is a module's name gets ``()``; a stem seen more than once gets ``:k``.
    """
    taken = set(module_names)
    marked = [f"{stem}()" if stem in taken else stem for stem in stems]
    total = Counter(marked)
    seen: Counter[str] = Counter()
    names = []
    for stem in marked:
        seen[stem] += 1
        names.append(f"{stem}:{seen[stem]}" if total[stem] > 1 else stem)
    return names


def functional_stem(producer: str | None, site: str) -> str:
    """``"<producer>.relu"`` for a ReLU of a layer's output, else ``"<site>.relu"``
    (``"relu"`` in the model's own forward, ``site`` empty)."""
    owner = producer if producer else site
    return f"{owner}.relu" if owner else "relu"


@contextmanager
def tap_functional(layers: Iterable[LayerInfo],
                   on_output: Callable[[LayerInfo, torch.Tensor], torch.Tensor | None]
                   ) -> Iterator[None]:
    """While active, ``on_output(layer, output)`` runs for each functional layer's call.

    ``on_output`` behaves like a forward hook: it may return a replacement output or raise to
    stop the forward pass. Module layers in ``layers`` are ignored (hook their modules); with no
    functional layer among them, no mode is entered at all (no cost per operation).
    """
    by_call = {info.functional_call: info for info in layers if info.functional_call is not None}
    if not by_call:
        yield
        return

    def on_call(number: int, _input: Any, output: torch.Tensor) -> torch.Tensor | None:
        info = by_call.get(number)
        return None if info is None else on_output(info, output)

    with ReluCalls(on_call):
        yield
