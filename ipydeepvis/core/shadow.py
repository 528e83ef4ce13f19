"""A shadow of the user's model: the same parameter tensors, its own module objects.

Everything ipydeepvis runs on a model (probes, scans, optimisation, occlusion) runs on a
:class:`ModelShadow`'s module tree instead of the user's. The shadow is a deep copy of the
module tree in which every parameter and buffer *is* the user's tensor (no weight copy), so an
optimiser step or ``load_state_dict`` on the user's model shows in the shadow at once, while
hooks, ``training`` flags and anything else set on a shadow module never reach the user's
modules. That is what lets a dashboard compute in a background thread while a training loop
runs in the same kernel: the loop's modules never carry our hooks and never switch to eval.

The shadow follows the user's model as it is at each call: :meth:`ModelShadow.current`
rebuilds it when a submodule, parameter or buffer was replaced (fine-tuning a new head), and
returns a key that changes with every in-place weight update.

Wrappers that only forward to one module (``nn.DataParallel``, DDP, ``torch.compile``'s
``OptimizedModule``) are unwrapped first: their inner module is what gets probed, and layer
names are that module's names.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Hashable
from typing import Any

import torch
from torch import nn

from ..errors import UnsupportedModelError

__all__ = ["ModelShadow", "unwrap_model"]


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module a wrapper forwards to (DataParallel / DDP ``.module``, ``torch.compile``'s
    ``._orig_mod``), repeatedly; any other module as it is."""
    seen = 0
    while seen < 8:
        seen += 1
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if isinstance(inner, nn.Module) and type(model).__name__ == "OptimizedModule":
            model = inner
            continue
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
            continue
        break
    return model


class ModelShadow:
    """A module tree sharing the user's parameter and buffer tensors, rebuilt when needed.

    Parameters
    ----------
    model : nn.Module
        The user's model (never modified: the shadow is built by reading it).

    Notes
    -----
    Models that cannot be deep-copied (a TorchScript submodule, an attribute holding a lock
    or a file) are refused with :class:`~ipydeepvis.errors.UnsupportedModelError`, since the
    alternative, hooking the user's own modules, is what the shadow exists to avoid.
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            msg = f"model must be a torch.nn.Module, got {type(model).__name__}"
            raise UnsupportedModelError(msg)
        self.user = model
        self.target = unwrap_model(model)
        self._lock = threading.Lock()
        self._structure: tuple[Any, ...] | None = None
        self._keepalive: list[Any] = []
        self._shadow: nn.Module | None = None
        self.current()

    @property
    def module(self) -> nn.Module:
        """The shadow module tree as last built (call :meth:`current` to follow changes)."""
        assert self._shadow is not None
        return self._shadow

    def current(self) -> tuple[nn.Module, Hashable]:
        """The shadow of the model as it is now, and a key of its weights.

        The key changes whenever a parameter or buffer is replaced or updated in place (an
        optimiser step, ``load_state_dict``, ``model.fc = nn.Linear(...)``), so results
        cached under it are never served for other weights.
        """
        structure, versions, keepalive = _read_tree(self.target)
        with self._lock:
            if structure != self._structure or self._shadow is None:
                self._shadow = _build_shadow(self.target)
                self._structure = structure
                self._keepalive = keepalive  # ids in the key stay unique while we hold these
            return self._shadow, (structure, versions)

    def release(self) -> None:
        """Drop the shadow tree (it is rebuilt on the next :meth:`current`)."""
        with self._lock:
            self._shadow = None
            self._structure = None
            self._keepalive = []


def _read_tree(model: nn.Module) -> tuple[tuple[Any, ...], tuple[Any, ...], list[Any]]:
    """One walk over the tree: which objects make it up, and the version of every tensor."""
    structure: list[Any] = []
    versions: list[tuple[int, int]] = []
    keepalive: list[Any] = []
    for module in model.modules():
        structure.append(id(module))
        keepalive.append(module)
        for slots in (module._parameters, module._buffers):
            for key, tensor in slots.items():
                structure.append((key, id(tensor)))
                if tensor is not None:
                    keepalive.append(tensor)
                    versions.append((tensor.data_ptr(), tensor._version))
    return tuple(structure), tuple(versions), keepalive


def _build_shadow(model: nn.Module) -> nn.Module:
    """Deep-copy the module tree with every parameter and buffer mapped to itself."""
    if any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()):
        msg = (
            f"{type(model).__name__} contains TorchScript modules, whose calls ipydeepvis "
            "cannot see or hook; probe the eager (not scripted) model instead"
        )
        raise UnsupportedModelError(msg)
    memo: dict[int, Any] = {}
    for module in model.modules():
        for slots in (module._parameters, module._buffers):
            for tensor in slots.values():
                if tensor is not None:
                    memo[id(tensor)] = tensor
    try:
        shadow = copy.deepcopy(model, memo)
    except Exception as exc:
        msg = (
            f"cannot make a private copy of {type(model).__name__}'s module tree ({exc}); "
            "ipydeepvis runs on such a copy (sharing your weights) so that your modules never "
            "carry its hooks. Keep non-copyable objects (locks, files, handles) off the model."
        )
        raise UnsupportedModelError(msg) from exc
    return shadow
