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
returns a :class:`WeightsKey` that changes with every in-place weight update.
:meth:`ModelShadow.unchanged` tells, cheaply, whether the weights a key names are still the
ones the shadow reads: a call that ran while another thread updated the weights in place can
see that afterwards and run again rather than return (or cache) a mix of two steps.

Wrappers that only forward to one module (``nn.DataParallel``, DDP, ``torch.compile``'s
``OptimizedModule``) are containers, not layers: at the root they are unwrapped first (layer
names are the inner model's names); nested in the tree, the shadow holds the inner module in
the wrapper's place (so ``"block._orig_mod.0"`` is called ``"block.0"``, and a compiled block
runs eagerly where ipydeepvis can see its calls). TorchScript modules cannot share tensors
with a copy: the shadow holds a copy of them, rebuilt whenever their weights change.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import UnsupportedModelError

__all__ = ["ModelShadow", "WeightsKey", "eval_mode", "unwrap_model"]

_WRAPPER_DEPTH = 8  # wrappers of wrappers: more than this is not a real model


def _inner(module: nn.Module) -> nn.Module | None:
    """The module a forwarding wrapper calls, or None if ``module`` is not such a wrapper."""
    if type(module).__name__ == "OptimizedModule":  # torch.compile
        inner = getattr(module, "_orig_mod", None)
        return inner if isinstance(inner, nn.Module) else None
    if isinstance(module, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return module.module
    return None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module a wrapper forwards to (DataParallel / DDP ``.module``, ``torch.compile``'s
    ``._orig_mod``), repeatedly; any other module as it is."""
    for _ in range(_WRAPPER_DEPTH):
        inner = _inner(model)
        if inner is None:
            break
        model = inner
    return model


@dataclass(frozen=True)
class WeightsKey:
    """Identity of the weights a shadow reads: equal keys, equal weights.

    Attributes
    ----------
    generation : int
        Counts rebuilds of the shadow tree (a replaced submodule, parameter or buffer, or an
        added or removed module hook).
    layout : int
        Counts changes of the tree's shape (a replaced submodule, parameter or buffer): layer
        lists and anything else tied to which modules exist are valid for one layout.
    versions : tuple
        ``(data_ptr, version counter)`` of every tensor the shadow reads: an in-place update
        bumps the counter, ``p.data = ...`` moves the pointer.
    """

    generation: int
    layout: int
    versions: tuple[tuple[int, int], ...]


class ModelShadow:
    """A module tree sharing the user's parameter and buffer tensors, rebuilt when needed.

    Parameters
    ----------
    model : nn.Module
        The user's model (never modified: the shadow is built by reading it).

    Notes
    -----
    The copy keeps what makes the modules compute (attributes, and the hooks registered on
    them, which spectral or weight norm need), so the shadow computes what the model computes;
    adding or removing a module hook on the model is followed like a replaced submodule.
    Models that cannot be deep-copied (an attribute holding a lock or a file) are refused with
    :class:`~ipydeepvis.errors.UnsupportedModelError`, since the alternative, hooking the
    user's own modules, is what the shadow exists to avoid. Plain attributes changed after the
    shadow was built (``model.dropout.p = 0.2``) are not followed; call :meth:`release`.
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            msg = f"model must be a torch.nn.Module, got {type(model).__name__}"
            raise UnsupportedModelError(msg)
        self.user = model
        self.target = unwrap_model(model)
        self._lock = threading.Lock()
        self._structure: tuple[Any, ...] | None = None
        self._hooks: tuple[Any, ...] | None = None
        self._keepalive: list[Any] = []
        self._tensors: list[torch.Tensor] = []  # the user's tensors the shadow reads
        self._generation = 0
        self._layout = 0
        self._shadow: nn.Module | None = None
        self.current()

    @property
    def module(self) -> nn.Module:
        """The shadow module tree as last built (call :meth:`current` to follow changes)."""
        if self._shadow is None:
            return self.current()[0]
        return self._shadow

    def current(self) -> tuple[nn.Module, WeightsKey]:
        """The shadow of the model as it is now, and the key of its weights.

        The key changes whenever a parameter or buffer is replaced or updated in place (an
        optimiser step, ``load_state_dict``, ``model.fc = nn.Linear(...)``), so results
        cached under it are never served for other weights. Costs one walk over the module
        tree (no tensor is read); the tree is copied again only when its shape changed.
        """
        tree = _read_tree(self.target)
        with self._lock:
            if (tree.structure != self._structure or tree.hooks != self._hooks
                    or self._shadow is None):
                for _ in range(3):  # the tree may change while it is copied: copy it again
                    shadow = _build_shadow(self.target)
                    again = _read_tree(self.target)
                    if (again.structure, again.hooks) == (tree.structure, tree.hooks):
                        break
                    tree = again
                if tree.structure != self._structure:
                    self._layout += 1
                self._shadow = shadow
                self._structure = tree.structure
                self._hooks = tree.hooks
                self._tensors = tree.tensors
                self._keepalive = tree.modules  # ids in the structure stay unique while held
                self._generation += 1
            key = WeightsKey(self._generation, self._layout, _versions(self._tensors))
            return self._shadow, key

    def unchanged(self, key: WeightsKey) -> bool:
        """True while the shadow still reads exactly the weights ``key`` names.

        Much cheaper than :meth:`current` (no walk over the tree): call it after a
        computation to learn whether another thread updated the weights during it.
        """
        with self._lock:
            tensors, generation = self._tensors, self._generation
        return key.generation == generation and _versions(tensors) == key.versions

    def release(self) -> None:
        """Drop the shadow tree; the next :meth:`current` copies the model again (a new
        generation; the same layout if the model's tree did not change meanwhile)."""
        with self._lock:
            self._shadow = None


def _versions(tensors: list[torch.Tensor]) -> tuple[tuple[int, int], ...]:
    return tuple((t.data_ptr(), t._version) for t in tensors)


@dataclass(frozen=True)
class _Tree:
    """What one walk over the user's module tree saw."""

    structure: tuple[Any, ...]  # ids and names of modules, parameters and buffers
    hooks: tuple[Any, ...]  # ids of the module hooks
    tensors: list[torch.Tensor]  # the tensors the shadow shares, in a fixed order
    modules: list[Any]  # the modules, to keep their ids unique while the shadow lives


def _read_tree(model: nn.Module) -> _Tree:
    """One walk over the tree (no tensor is read)."""
    structure: list[Any] = []
    hooks: list[Any] = []
    tensors: list[torch.Tensor] = []
    modules: list[Any] = []
    seen: set[int] = set()
    stack: list[nn.Module | None] = [model]
    while stack:
        module = stack.pop()
        ident = id(module)
        structure.append(ident)
        if module is None or ident in seen:
            continue
        seen.add(ident)
        modules.append(module)
        if isinstance(module, torch.jit.ScriptModule):
            # its tensors are copied, not shared: any change to them rebuilds the copy
            structure.append(tuple((t.data_ptr(), t._version)
                                   for t in (*module.parameters(), *module.buffers())))
            continue
        for slots in (module._parameters, module._buffers):
            for key, tensor in slots.items():
                structure.append(key)
                structure.append(id(tensor))
                if tensor is not None:
                    tensors.append(tensor)
        for hook_dict in (module._forward_pre_hooks, module._forward_hooks,
                          module._backward_pre_hooks, module._backward_hooks):
            hooks.append(tuple(hook_dict))  # hook ids only grow: a new or removed hook shows
        children = module._modules
        structure.append(tuple(children))
        stack.extend(reversed(children.values()))
    return _Tree(tuple(structure), tuple(hooks), tensors, modules)


def _build_shadow(model: nn.Module) -> nn.Module:
    """Deep-copy the module tree with every parameter, buffer, tensor attribute and hook
    callable mapped to itself, and nested forwarding wrappers replaced by the module they
    forward to."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        if isinstance(module, torch.jit.ScriptModule):
            continue
        for slots in (module._parameters, module._buffers, vars(module)):
            for tensor in slots.values():
                if isinstance(tensor, torch.Tensor):
                    memo[id(tensor)] = tensor
        for attribute, hooks in vars(module).items():
            if "hook" in attribute and isinstance(hooks, dict):
                for hook in hooks.values():
                    if callable(hook):  # the same callables (a bound method's owner is not copied)
                        memo[id(hook)] = hook
    try:
        shadow = copy.deepcopy(model, memo)
    except Exception as exc:
        msg = (
            f"cannot make a private copy of {type(model).__name__}'s module tree ({exc}); "
            "ipydeepvis runs on such a copy (sharing your weights) so that your modules never "
            "carry its hooks. Keep non-copyable objects (locks, files, handles) off the model."
        )
        raise UnsupportedModelError(msg) from exc
    _unwrap_children(shadow)
    return shadow


def _unwrap_children(module: nn.Module) -> None:
    """Put each nested wrapper's inner module in its place (in the shadow only)."""
    if isinstance(module, torch.jit.ScriptModule):
        return
    for name, child in list(module._modules.items()):
        if child is None:
            continue
        inner = unwrap_model(child)
        if inner is not child:
            module._modules[name] = inner
        _unwrap_children(inner)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Run in eval mode, then put every module's ``training`` flag back as it was (on a shadow
    this keeps one shadow reusable across calls that want different modes)."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training
