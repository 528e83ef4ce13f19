"""The probe: one recorded forward pass per (image, weights), read many ways.

:class:`Probe` runs a user's model on an image once, with hooks that capture every layer's
output and with :class:`~ipydeepvis.core.rectifiers.RectifierRules` active, and keeps that
pass (values and autograd graph) while the image and the weights stay the same. Activations of
any layer, and projections of any unit with any method from any seed position, are then read
from the kept pass: changing the unit or the method never runs the model again.

The model is not ours. The probe runs a :class:`~ipydeepvis.core.shadow.ModelShadow` of it: a
module tree that shares the model's parameter and buffer tensors but owns its hooks and
``training`` flags, so no hook is ever put on a user's module and no user module switches to eval,
also not while a training loop runs in another thread. Parameters and ``requires_grad`` flags are
never touched, and all of this holds when a call raises. The shadow follows the model as it is at
each call (a replaced layer or head is seen), and a call during which another thread updated the
weights in place is run again, so no result mixes two training steps.
"""

from __future__ import annotations

import itertools
import math
import operator
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from ..errors import (
    DeepVisError,
    InvalidInputError,
    InvalidOptionError,
    ModelForwardError,
    ProbeBusyError,
    UnsupportedModelError,
    WeightsChangedError,
)
from .layers import (
    LayerInfo,
    functional_layer,
    is_layer_module,
    module_layers,
    resolve_layer,
    traced_layer,
)
from .rectifiers import METHODS, RectifierCoverage, RectifierRules, RuleSwitch
from .relu_calls import ReluCalls, functional_names, functional_stem
from .seeds import build_seeds, check_units
from .shadow import ModelShadow, WeightsKey, eval_mode

__all__ = ["Probe"]

_T = TypeVar("_T")

# Batched backward passes (torch.func.vmap over the recorded graph) pay off while the
# largest activation map is small; above this many values per sample, one backward pass per
# unit over the same recorded graph is faster on a CPU (see benchmarks/bench_projection.py).
_BATCH_VALUES_BUDGET = 1 << 20
_MAX_CHUNK = 64
# A call during which another thread updated the weights in place is run again, this often.
_ATTEMPTS = 4


class _StopForward(BaseException):
    """Raised from a hook once every requested layer is captured (never escapes the probe)."""


@dataclass
class _Pass:
    """One recorded forward pass: inputs, per-layer outputs with their graph, and what it saw."""

    key: WeightsKey  # the weights the pass ran with (see ModelShadow.current)
    image: torch.Tensor  # a private copy of the input batch, to recognise it again
    input: torch.Tensor  # the leaf the graph starts from (requires grad), or the image
    outputs: dict[str, torch.Tensor]  # layer name -> output (N, ...), graph kept if any
    complete: bool
    coverage: RectifierCoverage | None = None
    largest_map: int = 0
    result: Any = None  # the model's return value (complete passes only)


class Probe:
    """Read activations and projections of a PyTorch model without changing it.

    Parameters
    ----------
    model : nn.Module
        Any module taking an image batch ``(N, C, H, W)``. Wrappers (``nn.DataParallel``,
        ``torch.compile``) are looked through: layers are named as in the model they wrap,
        which runs eagerly.
    preprocess : callable, optional
        Applied to inputs that are not tensors (PIL images, uint8 arrays), e.g. a torchvision
        weights' ``transforms()``. Tensors are taken as already preprocessed.
    device : str or torch.device, optional
        Where inputs go; defaults to the device of the model's parameters. The probe never
        moves the model: a device that differs from the model's is an error.
    input_shape : tuple of int, optional
        ``(C, H, W)`` of the inputs; when given, one forward pass on zeros fills in
        :attr:`layers` (shapes, and the calls of reused modules) right away.

    Raises
    ------
    UnsupportedModelError
        Not a module, a module that cannot be copied (see
        :class:`~ipydeepvis.core.shadow.ModelShadow`), a model on the meta device, or a model
        whose convolutions are all 1-D or 3-D.
    InvalidOptionError
        An unknown device, a device other than the model's, a bad ``input_shape``.

    Notes
    -----
    A forward pass for a new image runs only as far as the requested layers; a later request
    for a deeper layer of the same image runs the whole model once, after which every layer,
    unit and method of that image is served from memory. Replacing a submodule or a parameter
    of the model, or updating its weights, starts afresh on the next call.
    """

    def __init__(
        self,
        model: nn.Module,
        preprocess: Callable[[Any], torch.Tensor] | None = None,
        device: str | torch.device | None = None,
        *,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            msg = f"model must be a torch.nn.Module, got {type(model).__name__}"
            raise UnsupportedModelError(msg)
        if preprocess is not None and not callable(preprocess):
            msg = f"preprocess must be a callable (image -> tensor) or None, got {preprocess!r}"
            raise InvalidOptionError(msg)
        shape = None if input_shape is None else _check_input_shape(input_shape)
        self._model = model
        self._shadow = ModelShadow(model)  # every forward runs here, never on the user's modules
        self._preprocess = preprocess
        self._device = self._resolve_device(device)
        _check_image_model(self._shadow.module)
        self._switch = RuleSwitch()
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._pass: _Pass | None = None
        self._last_image: torch.Tensor | None = None
        self._traced: list[LayerInfo] | None = None
        self._traced_layout = -1  # the tree shape (WeightsKey.layout) of _traced
        self._vmap_works = True
        if shape is not None:
            self.activations(torch.zeros(shape, dtype=self._dtype(), device=self._device))

    # ------------------------------------------------------------------ public API

    @property
    def model(self) -> nn.Module:
        """The wrapped model (never modified by the probe)."""
        return self._model

    @property
    def layers(self) -> list[LayerInfo]:
        """Every layer in call order once an input was seen, else in module order (no shapes).

        Follows the model as it is now: after a submodule was replaced, the layers are listed
        in module order again until the next call traces them.
        """
        return list(self._layers(*self._shadow.current()))

    def layer(self, name: str) -> LayerInfo:
        """The :class:`LayerInfo` of layer ``name`` (see :attr:`layers` for the names)."""
        return resolve_layer(name, self.layers)

    def activations(
        self, x: Any, layers: str | Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Outputs of the given layers (all by default) for an image or a batch.

        Parameters
        ----------
        x : Tensor
            One image ``(C, H, W)`` or a batch ``(N, C, H, W)``, preprocessed.
        layers : str or sequence of str, optional
            Layer names; None for every layer.

        Returns
        -------
        dict of str to Tensor
            ``{name: (N, ...)}``: detached CPU copies, so nothing the model does later (an
            in-place ReLU, say) changes them.
        """
        with self._guard():
            batch = self._check_input(x, single=False)

            def work(shadow: nn.Module, key: WeightsKey) -> dict[str, torch.Tensor]:
                names = None if layers is None else self._resolve_many(layers, batch, shadow, key)
                record = self._ensure_pass(batch, names, shadow, key)
                chosen = names if names is not None else list(record.outputs)
                return {n: record.outputs[n].detach().to("cpu", copy=True) for n in chosen}

            return self._retrying(work)

    def project(
        self,
        x: Any,
        layer: str,
        units: int | Sequence[int],
        *,
        method: str = "deconvnet",
        position: str | tuple[int, ...] = "max",
    ) -> torch.Tensor:
        """Project units of a layer back to input space.

        Parameters
        ----------
        x : Tensor
            One image, ``(C, H, W)`` or ``(1, C, H, W)``, preprocessed.
        layer : str
            Layer name (see :attr:`layers`).
        units : int or sequence of int
            Unit (channel) indices.
        method : {"deconvnet", "guided", "gradient"}
            Zeiler & Fergus's deconvnet, guided backprop, or the plain gradient.
        position : "max", "all" or tuple of int
            ``"max"``: the unit's single strongest activation, every other activation of the
            layer zeroed, the seed keeping the activation's value (ties: the first in row-major
            order). ``"all"``: the unit's whole map. ``(i, j)``: that position of the map.

        Returns
        -------
        Tensor
            ``(len(units), C, H, W)`` on the CPU.

        Raises
        ------
        LayerNotFoundError, UnitOutOfRangeError, PositionOutOfRangeError,
        InvalidOptionError, InvalidInputError
            With a message naming the bad value and the valid choices.
        WeightsChangedError
            Another thread kept updating the weights during every attempt.
        """
        if not isinstance(method, str) or method not in METHODS:
            msg = f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}"
            raise InvalidOptionError(msg)
        with self._guard():
            image = self._check_input(x, single=True)

            def work(shadow: nn.Module, key: WeightsKey) -> torch.Tensor:
                (name,) = self._resolve_many([layer], image, shadow, key)
                record = self._ensure_pass(image, [name], shadow, key)
                output = record.outputs[name]
                unit_list = check_units(units, output.shape[1], name)
                seeds = build_seeds(output.detach()[0], unit_list, position, name)
                if not output.requires_grad:
                    msg = f"layer {name!r} does not depend on the input, so it has no projection"
                    raise UnsupportedModelError(msg)
                with self._switch.use(method):
                    return self._backward(record, output, seeds)

            return self._retrying(work).to("cpu", torch.float32)

    def output(self, x: Any) -> torch.Tensor:
        """The model's output for ``x`` (e.g. class logits ``(N, K)``), as a detached CPU copy.

        Served from the recorded pass like everything else: asking for it after
        :meth:`activations` or :meth:`project` on the same image does not run the model again.
        """
        with self._guard():
            batch = self._check_input(x, single=False)

            def work(shadow: nn.Module, key: WeightsKey) -> torch.Tensor:
                record = self._ensure_pass(batch, None, shadow, key)
                if not isinstance(record.result, torch.Tensor):
                    msg = (
                        f"the model returned {type(record.result).__name__}, not a tensor; "
                        "read a layer with activations() instead"
                    )
                    raise UnsupportedModelError(msg)
                return record.result.detach().to("cpu", copy=True)

            return self._retrying(work)

    def coverage(self, x: Any | None = None) -> RectifierCoverage:
        """Which rectifiers the projection rules replace in this model, and which they do not.

        Runs (or reuses) a full forward pass on ``x``, or on the last image seen, or on zeros
        of the ``input_shape`` given to the probe.
        """
        with self._guard():
            if x is None:
                if self._last_image is None:
                    msg = "coverage() needs an input: pass x, or give the probe input_shape="
                    raise InvalidInputError(msg)
                image = self._last_image
            else:
                image = self._check_input(x, single=True)

            def work(shadow: nn.Module, key: WeightsKey) -> RectifierCoverage:
                record = self._ensure_pass(image, None, shadow, key)
                assert record.coverage is not None  # set by every full pass with a graph
                return record.coverage

            return self._retrying(work)

    def clear(self) -> None:
        """Forget the recorded forward pass and the private copy of the model's modules (frees
        their memory; the next call runs the model again)."""
        with self._guard():
            self._pass = None
            self._shadow.release()

    def __repr__(self) -> str:
        name = type(self._model).__name__
        return f"Probe({name}, {len(self.layers)} layers, device={self._device})"

    # ------------------------------------------------------------------ inputs

    def _resolve_device(self, device: object) -> torch.device:
        target = self._shadow.target
        tensors = itertools.chain(target.parameters(), target.buffers())
        model_device = next((t.device for t in tensors), None)
        if model_device is not None and model_device.type == "meta":
            msg = (
                "the model's parameters are on the meta device, which holds no values; "
                "materialise them first (model.to_empty(device='cpu') and load_state_dict)"
            )
            raise UnsupportedModelError(msg)
        if device is None:
            return model_device or torch.device("cpu")
        try:
            wanted = torch.device(device)  # type: ignore[call-overload]
        except (RuntimeError, TypeError, ValueError) as exc:
            msg = (
                f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:0' (or None for "
                f"the model's own), got {device!r}"
            )
            raise InvalidOptionError(msg) from exc
        if model_device is not None and model_device.type != wanted.type:
            msg = (
                f"device={str(wanted)!r} but the model's parameters are on {str(model_device)!r}; "
                "the probe never moves your model: call model.to(device) first, or leave "
                "device=None"
            )
            raise InvalidOptionError(msg)
        if wanted.type == "meta":
            msg = "device='meta' holds no values: use the device the model's parameters are on"
            raise InvalidOptionError(msg)
        return wanted

    def _dtype(self) -> torch.dtype:
        for tensor in self._shadow.target.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
        return torch.float32

    def _check_input(self, x: Any, *, single: bool) -> torch.Tensor:
        """Validate ``x`` and return it as a batch on the probe's device and dtype."""
        if not isinstance(x, torch.Tensor):
            if self._preprocess is None:
                msg = (
                    f"x must be a torch.Tensor image (C, H, W), got {type(x).__name__}; "
                    "convert it yourself or give the probe preprocess= (e.g. a torchvision "
                    "weights' transforms())"
                )
                raise InvalidInputError(msg)
            x = self._run_preprocess(x)
        if x.layout != torch.strided or x.is_nested:
            msg = (
                f"x is a {'nested' if x.is_nested else 'sparse'} tensor (layout {x.layout}); "
                "pass a dense image, e.g. x.to_dense()"
            )
            raise InvalidInputError(msg)
        if x.device.type == "meta":
            msg = "x is on the meta device, which holds no values; pass a real image tensor"
            raise InvalidInputError(msg)
        if not x.is_floating_point():
            msg = (
                f"x has dtype {x.dtype}, expected a floating-point image; for 0..255 images "
                "use x.float() / 255 (plus the model's normalisation)"
            )
            raise InvalidInputError(msg)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4:
            msg = (
                f"x has shape {tuple(x.shape)}; expected one image (C, H, W) "
                f"or a batch (N, C, H, W)"
            )
            raise InvalidInputError(msg)
        if single and x.shape[0] != 1:
            msg = (
                f"x has shape {tuple(x.shape)}: projections take one image (C, H, W) or a "
                "batch of one (1, C, H, W); call project once per image"
            )
            raise InvalidInputError(msg)
        if x.numel() == 0:
            msg = f"x has shape {tuple(x.shape)}: the batch (or the image) is empty"
            raise InvalidInputError(msg)
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            msg = f"x contains {bad} NaN or infinite value(s); the image must be finite"
            raise InvalidInputError(msg)
        return x.detach().to(self._device, self._dtype())

    def _run_preprocess(self, x: Any) -> torch.Tensor:
        """``preprocess(x)``; whatever it raises comes out as an InvalidInputError (chained)."""
        assert self._preprocess is not None
        try:
            out = self._preprocess(x)
        except DeepVisError:
            raise
        except Exception as exc:
            msg = (
                f"preprocess raised {type(exc).__name__} on a {type(x).__name__} input: {exc}"
            )
            raise InvalidInputError(msg) from exc
        if not isinstance(out, torch.Tensor):
            msg = f"preprocess must return a torch.Tensor, it returned {type(out).__name__}"
            raise InvalidInputError(msg)
        return out

    def _layers(self, shadow: nn.Module, key: WeightsKey) -> list[LayerInfo]:
        """The traced layers if they belong to this shape of the tree, else module order."""
        if self._traced is not None and self._traced_layout == key.layout:
            return self._traced
        return module_layers(shadow)

    def _resolve_many(self, layers: object, batch: torch.Tensor, shadow: nn.Module,
                      key: WeightsKey) -> list[str]:
        if isinstance(layers, str) or not isinstance(layers, Iterable):
            names: list[object] = [layers]
        else:
            names = list(layers)
        if self._traced is None or self._traced_layout != key.layout:
            # Reused modules (and so the layer names) are only known after one full pass;
            # one image is enough to see them.
            self._ensure_pass(batch[:1], None, shadow, key)
        known = self._layers(shadow, key)
        return [resolve_layer(name, known).name for name in names]

    # ------------------------------------------------------------------ the forward pass

    def _retrying(self, work: Callable[[nn.Module, WeightsKey], _T]) -> _T:
        """``work(shadow, key)`` on the model as it is now; again if the weights changed while
        it ran (a training step in another thread), since its result may mix two steps.

        Raises
        ------
        WeightsChangedError
            The weights changed during each of the attempts.
        """
        for _ in range(_ATTEMPTS):
            shadow, key = self._shadow.current()
            try:
                result = work(shadow, key)
            except Exception:
                if self._shadow.unchanged(key):
                    raise
                self._pass = None  # whatever failed, it failed on moving weights: try again
                continue
            if self._shadow.unchanged(key):
                return result
            self._pass = None
        msg = (
            f"the model's weights changed during each of {_ATTEMPTS} attempts of this call "
            "(is a training loop updating them in another thread?); call again, or between "
            "training steps"
        )
        raise WeightsChangedError(msg)

    def _ensure_pass(self, batch: torch.Tensor, names: list[str] | None, shadow: nn.Module,
                     key: WeightsKey) -> _Pass:
        record = self._pass
        if record is not None and record.key == key and _same_tensor(record.image, batch):
            if record.complete or (names is not None and all(n in record.outputs for n in names)):
                return record
            names = None  # same image, deeper layer: run the whole model once
        self._pass = None  # free the old graph before building a new one
        graph = batch.shape[0] == 1
        record = self._run(shadow, batch, key, names, graph=graph)
        self._pass = record
        self._last_image = record.image[:1]
        return record

    def reduce_batch(self, x: Any, layers: Sequence[str],
                     reduce: Callable[[torch.Tensor], Any]) -> dict[str, Any]:
        """``reduce(output)`` of each layer for a batch, computed as the model runs.

        For scans over many images (:func:`~ipydeepvis.core.topk.top_k`): the forward stops at
        the deepest layer asked for and no layer output is copied or kept, so a scan costs
        little more than the plain forward. ``reduce`` runs before any later in-place op can
        change the output, and must not keep references to it; it runs again if the weights
        changed during the pass (a training step in another thread).
        """
        with self._guard():
            batch = self._check_input(x, single=False)

            def work(shadow: nn.Module, key: WeightsKey) -> dict[str, Any]:
                names = self._resolve_many(layers, batch, shadow, key)
                record = self._run(shadow, batch, key, names, graph=False, reduce=reduce)
                return {name: record.outputs[name] for name in names}

            return self._retrying(work)

    def _run(self, model: nn.Module, batch: torch.Tensor, key: WeightsKey,
             names: list[str] | None, *, graph: bool,
             reduce: Callable[[torch.Tensor], Any] | None = None) -> _Pass:
        """Run the shadow ``model`` once, capturing layer outputs; stop when ``names`` are all
        captured.

        With ``reduce`` (batch scans), a captured output is replaced by ``reduce(output)``."""
        wanted = None if names is None else set(names)
        traced = self._traced if self._traced_layout == key.layout else None
        reused = {layer.module for layer in traced or []
                  if layer.call is not None and not layer.functional}
        reused_sites = {layer.name for layer in traced or [] if layer.call is not None}
        traced_relus = {layer.functional_call: layer for layer in traced or [] if layer.functional}
        # A pass that may become the trace names the functional ReLUs it meets; it needs to
        # know which layer produced each ReLU's input (weakly held: no tensor is kept alive).
        naming = graph or wanted is None
        # ReLU calls are watched (a TorchFunctionMode: one Python call per torch op) in a pass
        # that may find new ones, or that reads one; a model traced without any is not watched
        watch = (naming and (traced is None or bool(traced_relus))) or any(
            layer.name in (wanted or ()) for layer in traced_relus.values())
        produced: dict[int, tuple[str, weakref.ref[torch.Tensor]]] = {}
        seen: set[str] = set()
        calls: dict[str, int] = {}
        stack: list[tuple[str, nn.Module, int]] = []  # running modules and their call index
        # (module name or ReLU stem, module or None for a functional ReLU, call index or ReLU
        #  number, kept output, per-sample shape)
        raw: list[tuple[str, nn.Module | None, int, Any, tuple[int, ...]]] = []
        modules = [(n, m) for n, m in model.named_modules() if is_layer_module(n, m)]
        if not graph and wanted is not None:  # a batch scan: hook only the layers asked for
            wanted_modules = {name.rpartition(":")[0] if name in reused_sites else name
                              for name in wanted}
            modules = [(n, m) for n, m in modules if n in wanted_modules]

        def current_site() -> tuple[str, int, bool]:
            if not stack:
                return "<model>", 1, False
            name, module, call = stack[-1]
            return name, call, isinstance(module, nn.ReLU)

        rules = RectifierRules(self._switch, current_site)
        image = batch.clone()
        leaf = image.detach().requires_grad_(True) if graph else image

        def pre_hook(name: str, module: nn.Module) -> Callable[..., None]:
            def hook(_module: nn.Module, _args: Any) -> None:
                stack.append((name, module, calls.get(name, 0) + 1))
            return hook

        def post_hook(name: str, module: nn.Module) -> Callable[..., Any]:
            def hook(_module: nn.Module, _args: Any, output: Any) -> Any:
                if stack and stack[-1][0] == name:
                    stack.pop()
                calls[name] = calls.get(name, 0) + 1
                if not isinstance(output, torch.Tensor):
                    return None
                site = f"{name}:{calls[name]}" if name in reused else name
                if not graph and wanted is not None and site not in wanted:
                    return None  # batch scans keep only the layers asked for
                if graph:
                    kept: Any = output
                else:
                    kept = reduce(output) if reduce is not None else output.clone()
                raw.append((name, module, calls[name], kept, tuple(output.shape[1:])))
                seen.add(site)
                if wanted is not None and wanted <= seen:
                    raise _StopForward
                # The next op may be in place (ReLU(inplace=True), out += identity): it gets
                # a copy, so what we captured keeps its value and its graph.
                onward = output.clone() if graph else output
                if naming and watch:
                    produced[id(onward)] = (name, weakref.ref(onward))
                return onward if graph else None
            return hook

        def on_relu(number: int, x: Any, output: torch.Tensor) -> torch.Tensor | None:
            """A ReLU call: capture it if it is a functional layer (as ``post_hook`` does)."""
            known = traced_relus.get(number)
            if naming:
                site, _call, module_call = current_site()
                if module_call:
                    return None  # an nn.ReLU module's own call: that module is the layer
                source = produced.get(id(x))
                producer = source[0] if source is not None and source[1]() is x else None
                stem = functional_stem(producer, "" if site == "<model>" else site)
            elif known is None:
                return None
            else:
                stem = known.module
            layer = known.name if known is not None else None
            if not graph and wanted is not None and layer not in wanted:
                return None
            if graph:
                kept: Any = output
            else:
                kept = reduce(output) if reduce is not None else output.clone()
            raw.append((stem, None, number, kept, tuple(output.shape[1:])))
            if layer is not None:
                seen.add(layer)
                if wanted is not None and wanted <= seen:
                    raise _StopForward
            return output.clone() if graph else None

        stopped = False
        result = None
        with ExitStack() as hooks, eval_mode(model):
            for name, module in modules:
                hooks.enter_context(module.register_forward_pre_hook(pre_hook(name, module)))
                hooks.enter_context(module.register_forward_hook(post_hook(name, module)))
            if graph:  # the backward rules (and the coverage report) only matter with a graph
                hooks.enter_context(torch.enable_grad())
                hooks.enter_context(rules)
            else:
                hooks.enter_context(torch.no_grad())
            if watch:
                hooks.enter_context(ReluCalls(on_relu))  # outside the rules: sees model calls
            try:
                result = model(leaf)
            except _StopForward:
                stopped = True
            except DeepVisError:
                raise
            except Exception as exc:
                _raise_if_input_mismatch(exc, batch, stack, raw)
                msg = (
                    f"the model raised {type(exc).__name__} on an input of shape "
                    f"{tuple(batch.shape)}: {exc}"
                )
                raise ModelForwardError(msg) from exc

        multi = reused | {name for name, count in calls.items() if count > 1}
        complete = not stopped and (graph or wanted is None)
        relu_names = functional_names(
            [stem for stem, module, *_ in raw if module is None],
            (name for name, _ in model.named_modules()))
        relu_index = 0
        outputs: dict[str, Any] = {}
        layers: list[LayerInfo] = []
        for name, module, call, kept, shape in raw:
            if module is not None:
                info = traced_layer(name, module, call if name in multi else None, shape)
            else:
                known = traced_relus.get(call)
                fresh = relu_names[relu_index]
                relu_index += 1
                info = functional_layer(known.name if known is not None and not complete
                                        else fresh, call, shape)
            outputs[info.name] = kept
            layers.append(info)
        if complete:
            self._traced = layers
            self._traced_layout = key.layout
        largest = max((math.prod(layer.shape or ()) for layer in layers), default=0)
        return _Pass(key, image, leaf, outputs, complete,
                     rules.coverage(model, multi) if complete and graph else None, largest,
                     result)

    # ------------------------------------------------------------------ the backward pass

    def _backward(self, record: _Pass, output: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor:
        """Input-space signal for each seed, all through the one recorded graph.

        Raises
        ------
        ModelForwardError
            Autograd failed (an op of the model without a backward; or the weights were
            updated in place since the forward, which :meth:`_retrying` then sees).
        """
        try:
            return self._backward_batched(record, output, seeds)
        except RuntimeError as exc:
            msg = f"the backward pass through the model raised {type(exc).__name__}: {exc}"
            raise ModelForwardError(msg) from exc

    def _backward_batched(self, record: _Pass, output: torch.Tensor,
                          seeds: torch.Tensor) -> torch.Tensor:
        leaf = record.input

        def one(seed: torch.Tensor) -> torch.Tensor:
            (grad,) = torch.autograd.grad(output, leaf, seed, retain_graph=True)
            return grad

        chunk = max(1, min(_MAX_CHUNK, _BATCH_VALUES_BUDGET // max(1, record.largest_map)))
        if not self._vmap_works:
            chunk = 1
        parts = []
        for start in range(0, seeds.shape[0], chunk):
            block = seeds[start:start + chunk].unsqueeze(1)  # (U, 1, C, ...)
            if block.shape[0] > 1:
                try:
                    parts.append(torch.func.vmap(one)(block).squeeze(1))
                    continue
                except RuntimeError:
                    if not self._shadow.unchanged(record.key):
                        raise  # weights updated in place since the forward, not vmap's fault
                    # some backward op of this model has no batching rule: go one by one
                    self._vmap_works = False
            parts.extend(one(seed) for seed in block)
        return torch.cat([p.reshape(-1, *leaf.shape[1:]) for p in parts])

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """One call at a time: another thread waits its turn; a call from inside the model's
        own forward (re-entrant use) is refused."""
        if self._owner == threading.get_ident():
            msg = (
                "this Probe is already running a call in this thread; do not call it from "
                "inside the model's forward"
            )
            raise ProbeBusyError(msg)
        with self._lock:
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._owner = None


def _check_input_shape(input_shape: object) -> tuple[int, ...]:
    """``input_shape`` as a tuple of 3 positive ints ``(C, H, W)`` (or 4 with a batch size).

    Raises
    ------
    InvalidOptionError
        Anything else: a wrong length, or entries that are not positive ints.
    """
    values = None
    if isinstance(input_shape, (tuple, list, torch.Size)):
        values = [_positive_int(v) for v in input_shape]
    if values is None or len(values) not in (3, 4) or any(v is None for v in values):
        msg = (
            f"input_shape must be (C, H, W), three positive ints such as (3, 224, 224), "
            f"got {input_shape!r}"
        )
        raise InvalidOptionError(msg)
    return tuple(v for v in values if v is not None)


def _positive_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        number = operator.index(value)  # type: ignore[call-overload]
    except TypeError:
        return None
    return number if number > 0 else None


def _check_image_model(model: nn.Module) -> None:
    """Refuse a model whose convolutions are all 1-D or 3-D: it does not take images.

    Raises
    ------
    UnsupportedModelError
        Naming the first convolution and the input dimensionality it takes.
    """
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if convs and not any(len(m.kernel_size) == 2 for _, m in convs):
        name, first = convs[0]
        raise UnsupportedModelError(_dimensions_message(name, first))


def _dimensions_message(name: str, conv: nn.Module) -> str:
    dims = len(conv.kernel_size)  # type: ignore[arg-type]
    return (
        f"{dims}-D inputs are not supported: ipydeepvis reads image models (2-D convolutions "
        f"on (N, C, H, W) batches), and layer {name!r} is a {type(conv).__name__}"
    )


def _raise_if_input_mismatch(exc: Exception, batch: torch.Tensor,
                             stack: list[tuple[str, nn.Module, int]], raw: list[Any]) -> None:
    """Say it plainly when the model failed in a 1-D / 3-D convolution (not an image model),
    or because the first convolution got the wrong number of channels (the user's input, not
    the model, is at fault)."""
    if not stack:
        return
    name, module, _call = stack[-1]
    if isinstance(module, nn.modules.conv._ConvNd) and len(module.kernel_size) != 2:
        raise UnsupportedModelError(_dimensions_message(name, module)) from exc
    if any(isinstance(entry[1], nn.modules.conv._ConvNd) for entry in raw):
        return
    if isinstance(module, nn.modules.conv._ConvNd) and module.in_channels != batch.shape[1]:
        msg = (
            f"x has {batch.shape[1]} channel(s) (shape {tuple(batch.shape)}) but the model's "
            f"first convolution {name!r} expects {module.in_channels}"
        )
        raise InvalidInputError(msg) from exc


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape, dtype and values (cheaper than hashing the content)."""
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


