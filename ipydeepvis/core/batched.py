"""Batched forward passes on a model's shadow, for the analyses that perturb images.

Occlusion, invariance and correspondence all run the same model on many perturbed copies of
a few images and read a handful of layers (or the class scores) of each copy. This module is
that shared machinery: :func:`batched_forward` resolves the layers (with
:class:`~ipydeepvis.core.probe.Probe`'s names, ``"module:call"`` for reused modules), builds a
:class:`~ipydeepvis.core.shadow.ModelShadow` of the user's model, puts forward hooks and eval
mode on the shadow only, and yields a function that runs one batch and returns each layer's
output passed through a per-layer ``reduce``. When the class scores are not needed, the
forward stops at the deepest layer asked for. The user's model never carries a hook, never
changes mode and never gets a gradient.

It also holds the input checks and the progress loop (``callback(done, total)`` returning
False to stop, ``progress=True`` for a tqdm bar) the three analyses share.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import (
    DeepVisError,
    InvalidInputError,
    InvalidOptionError,
    LayerNotFoundError,
    ModelForwardError,
    UnsupportedModelError,
)
from .probe import Probe
from .relu_calls import tap_functional
from .shadow import ModelShadow

__all__ = [
    "Fill",
    "Progress",
    "Site",
    "batched_forward",
    "check_batch_size",
    "check_images",
    "fill_tensor",
    "images_and_labels",
    "model_of",
]

Fill = float | str | Sequence[float] | torch.Tensor
"""What an occluded or uncovered pixel becomes: ``"mean"`` (each image's per-channel mean),
one number, one number per channel, or a tensor broadcastable to ``(C, H, W)``."""

Reduce = Callable[[torch.Tensor], torch.Tensor]
Runner = Callable[..., tuple[dict[str, torch.Tensor], "torch.Tensor | None"]]


class _StopForward(BaseException):
    """Raised from a hook once every requested layer is captured (never escapes)."""


@dataclass(frozen=True)
class Site:
    """One layer to capture: a module of the shadow and which of its calls (1-based), or a
    functional ReLU (``functional_call``, see :mod:`~ipydeepvis.core.relu_calls`)."""

    name: str
    module: str
    call: int
    functional_call: int | None = None


def model_of(model_or_probe: nn.Module | Probe) -> tuple[nn.Module, Probe]:
    """The user's model and a probe for resolving its layer names."""
    if isinstance(model_or_probe, Probe):
        return model_or_probe.model, model_or_probe
    if isinstance(model_or_probe, nn.Module):
        return model_or_probe, Probe(model_or_probe)
    msg = (
        f"model_or_probe must be a torch.nn.Module or a dv.Probe, got "
        f"{type(model_or_probe).__name__}"
    )
    raise UnsupportedModelError(msg)


def resolve_sites(probe: Probe, names: Sequence[str], sample: torch.Tensor) -> list[Site]:
    """Resolve layer names with the probe's names (``"module:call"`` for reused modules).

    Which modules are reused is only known once the probe has seen an input, so an untraced
    probe first runs ``sample`` (one image) through the model.
    """
    if names and all(layer.shape is None for layer in probe.layers):
        probe.activations(sample, layers=[names[0]])  # traces the model (or raises)
    sites = []
    for name in names:
        info = probe.layer(name)
        if info.functional:
            sites.append(Site(info.name, info.module, info.call or 1, info.functional_call))
        elif info.call is None:
            sites.append(Site(info.name, info.name, 1))
        else:
            sites.append(Site(info.name, info.name.rpartition(":")[0], info.call))
    return sites


def check_images(x: Any, what: str = "x") -> torch.Tensor:
    """A float, finite image batch ``(N, C, H, W)`` from one image ``(C, H, W)`` or a batch."""
    if not isinstance(x, torch.Tensor):
        msg = (f"{what} must be a torch.Tensor image (C, H, W) or batch (N, C, H, W), got "
               f"{type(x).__name__}")
        raise InvalidInputError(msg)
    if not x.is_floating_point():
        msg = (
            f"{what} has dtype {x.dtype}, expected a floating-point image; for 0..255 images "
            "use x.float() / 255 (plus the model's normalisation)"
        )
        raise InvalidInputError(msg)
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] == 0:
        msg = f"{what} has shape {tuple(x.shape)}; expected (C, H, W) or (N, C, H, W), N >= 1"
        raise InvalidInputError(msg)
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        msg = f"{what} contains {bad} NaN or infinite value(s); the image must be finite"
        raise InvalidInputError(msg)
    return x.detach()


def check_batch_size(batch_size: object) -> int:
    """``batch_size`` as a positive int, or an :class:`InvalidOptionError`."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        msg = f"batch_size must be a positive int, got {batch_size!r}"
        raise InvalidOptionError(msg)
    return batch_size


def fill_tensor(fill: Fill, images: torch.Tensor) -> torch.Tensor:
    """The fill of each image, ``(N, C, H, W)`` (an expanded view).

    ``"mean"`` is each image's per-channel mean (a flat grey-ish square in any input
    normalisation); a number or one number per channel is taken in the model's input space
    (``0.5`` is mid-grey for ``[0, 1]`` images, ``0`` for mean-subtracted ones); a tensor must
    broadcast to ``(C, H, W)`` (a blurred copy of the image, say).
    """
    n, c, h, w = images.shape
    if isinstance(fill, str):
        if fill != "mean":
            msg = f"fill must be 'mean', a number, {c} numbers or a tensor, got {fill!r}"
            raise InvalidOptionError(msg)
        return images.mean(dim=(2, 3), keepdim=True).expand(n, c, h, w)
    if isinstance(fill, torch.Tensor):
        value = fill.detach().to(images.device, images.dtype)
    elif isinstance(fill, (int, float)) and not isinstance(fill, bool):
        value = torch.tensor(float(fill), dtype=images.dtype, device=images.device)
    else:
        try:
            numbers = [float(v) for v in fill]  # type: ignore[union-attr]
        except (TypeError, ValueError) as exc:
            msg = f"fill must be 'mean', a number, {c} numbers or a tensor, got {fill!r}"
            raise InvalidOptionError(msg) from exc
        if len(numbers) != c:
            msg = f"fill has {len(numbers)} values but the images have {c} channel(s): {fill!r}"
            raise InvalidOptionError(msg)
        value = torch.tensor(numbers, dtype=images.dtype, device=images.device).view(c, 1, 1)
    try:
        value = torch.broadcast_to(value, (c, h, w))
    except RuntimeError as exc:
        msg = (f"fill of shape {tuple(value.shape)} does not broadcast to the image shape "
               f"{(c, h, w)}")
        raise InvalidOptionError(msg) from exc
    if not bool(torch.isfinite(value).all()):
        msg = "fill contains NaN or infinite values"
        raise InvalidOptionError(msg)
    return value.unsqueeze(0).expand(n, c, h, w)


def images_and_labels(images: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An image batch, and labels if the items were ``(image, label)`` pairs."""
    if isinstance(images, torch.Tensor):
        return check_images(images, "images"), None
    try:
        items = [images[i] for i in range(len(images))]
    except TypeError as exc:
        msg = (f"images must be a tensor (N, C, H, W) or a sequence of images or "
               f"(image, label) pairs, got {type(images).__name__}")
        raise InvalidInputError(msg) from exc
    if not items:
        msg = "images is empty"
        raise InvalidInputError(msg)
    pairs = all(isinstance(item, (tuple, list)) and len(item) == 2 for item in items)
    tensors = [item[0] if pairs else item for item in items]
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        msg = "images must hold tensors (C, H, W) (or (image, label) pairs of them)"
        raise InvalidInputError(msg)
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        msg = f"images must all have one shape, got {sorted(shapes)!r}"
        raise InvalidInputError(msg)
    batch = check_images(torch.stack(tensors), "images")
    labels = torch.tensor([int(item[1]) for item in items]) if pairs else None
    return batch, labels


@contextmanager
def batched_forward(
    model_or_probe: nn.Module | Probe,
    layers: Sequence[str],
    sample: torch.Tensor,
    *,
    output: bool,
    reduce: dict[str, Reduce] | None = None,
    edit: Callable[[nn.Module, torch.Tensor, list[Site]], Any] | None = None,
) -> Iterator[Runner]:
    """Run batches on the model's shadow, capturing ``layers``.

    Parameters
    ----------
    model_or_probe : nn.Module or Probe
        The user's model (never touched: everything runs on its shadow).
    layers : sequence of str
        Layer names (see ``Probe.layers``).
    sample : Tensor
        One image batch of the right shape, to trace reused modules if a name needs it.
    output : bool
        Whether the model's output is needed; if not, the forward stops at the deepest layer.
    reduce : dict of str to callable, optional
        Per layer name, ``reduce(output) -> tensor`` applied inside the hook, before any later
        in-place op can change the output; layers without one are cloned.
    edit : callable, optional
        ``edit(shadow, sample, sites)`` may change the shadow module tree (ours, in eval mode,
        before any hook is put on it); ``sample`` is on the model's device and dtype.

    Yields
    ------
    callable
        ``run(batch, reduce=None) -> ({layer: reduced output}, model output or None)``, keyed
        by the names as given in ``layers``;
        ``batch`` goes to the model's device and dtype first, and a ``reduce`` given to
        ``run`` replaces the context's for that batch.
    """
    model, probe = model_of(model_or_probe)
    sites = resolve_sites(probe, list(layers), sample[:1])
    names = {site.name for site in sites}
    if len(names) != len(sites):
        msg = f"layers lists a layer twice: {list(layers)!r}"
        raise InvalidOptionError(msg)
    shadow, _key = ModelShadow(model).current()
    canonical = {given: site.name for given, site in zip(layers, sites, strict=True)}

    def by_site(chosen: dict[str, Reduce] | None) -> dict[str, Reduce]:
        return {canonical.get(name, name): f for name, f in (chosen or {}).items()}

    reducers: list[dict[str, Reduce]] = [by_site(reduce)]
    first = next(iter(shadow.parameters()), None)
    device = first.device if first is not None else sample.device
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    shadow.eval()  # the shadow's own flags: the user's modules keep theirs
    if edit is not None:
        with torch.no_grad():
            edit(shadow, sample[:1].to(device, dtype), sites)
    modules = dict(shadow.named_modules())
    by_module: dict[str, list[Site]] = {}
    for site in sites:
        if site.functional_call is None:
            by_module.setdefault(site.module, []).append(site)
    functional = [probe.layer(site.name) for site in sites if site.functional_call is not None]
    captured: dict[str, torch.Tensor] = {}
    calls: dict[str, int] = {}

    def capture(name: str, out: torch.Tensor) -> None:
        keep = reducers[-1].get(name)
        captured[name] = keep(out) if keep is not None else out.clone()
        if not output and len(captured) == len(sites):
            raise _StopForward

    def hook(module_name: str) -> Callable[..., None]:
        def record(_module: nn.Module, _args: Any, out: Any) -> None:
            calls[module_name] = calls.get(module_name, 0) + 1
            for site in by_module[module_name]:
                if site.call != calls[module_name]:
                    continue
                if not isinstance(out, torch.Tensor):
                    msg = f"layer {site.name!r} returned {type(out).__name__}, not a tensor"
                    raise UnsupportedModelError(msg)
                capture(site.name, out)

        return record

    def run(batch: torch.Tensor, reduce: dict[str, Reduce] | None = None
            ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        captured.clear()
        calls.clear()
        result = None
        reducers.append(reducers[0] if reduce is None else by_site(reduce))
        try:
            with tap_functional(functional, lambda info, out: capture(info.name, out)):
                result = shadow(batch.to(device, dtype))
        except _StopForward:
            pass
        except DeepVisError:
            raise
        except Exception as exc:
            msg = (f"the model raised {type(exc).__name__} on an input of shape "
                   f"{tuple(batch.shape)}: {exc}")
            raise ModelForwardError(msg) from exc
        finally:
            reducers.pop()
        missing = [site.name for site in sites if site.name not in captured]
        if missing:
            msg = f"layer(s) {missing!r} were not called in the forward pass"
            raise UnsupportedModelError(msg)
        if output and not isinstance(result, torch.Tensor):
            msg = (f"the model returned {type(result).__name__}, not a tensor of class scores "
                   "(N, classes)")
            raise UnsupportedModelError(msg)
        return {given: captured[name] for given, name in canonical.items()}, result

    with ExitStack() as stack:
        for module_name in by_module:
            if module_name not in modules:  # the shadow mirrors the model's names
                msg = f"layer module {module_name!r} not found in the model"
                raise LayerNotFoundError(msg)
            stack.enter_context(modules[module_name].register_forward_hook(hook(module_name)))
        stack.enter_context(torch.no_grad())
        yield run


class Progress:
    """``callback(done, total)`` (False stops) and an optional tqdm bar, in one place."""

    def __init__(self, total: int, desc: str, *, progress: bool,
                 callback: Callable[[int, int], bool | None] | None) -> None:
        self.total = total
        self.done = 0
        self._callback = callback
        self._bar = None
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc)

    def step(self, count: int) -> bool:
        """Count ``count`` more items done; False when the callback asks to stop."""
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
        return not (self._callback is not None
                    and self._callback(self.done, self.total) is False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
