"""The images a unit likes best: a streaming top-k scan over a data set (Zeiler & Fergus Fig. 2).

For every unit of the requested layers the scan keeps the ``k`` images with the strongest
activation (each image counted once, at its strongest position), running through the data in
batches. One forward per batch serves every layer: it runs on a shadow of the model
(:class:`~ipydeepvis.core.shadow.ModelShadow`, the user's modules never carry a hook), reduces
each layer's output to a per-unit maximum inside its forward hook, and stops at the deepest
layer asked for. Memory stays ``O(units * k)`` whatever the data set size.

Rankings are exact and order-free: strongest first, ties broken by the smaller data-set index,
so :meth:`TopK.merge` of two scans over disjoint parts equals one scan over both, whatever the
order or shards (for the same per-image values: a model's output can differ in its last bits
with the batch an image is computed in). :mod:`~ipydeepvis.core.indexing` builds the
resumable, sharded index (:mod:`~ipydeepvis.core.index`) on top of this module.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
from torch import nn

from ..errors import (
    DeepVisError,
    InvalidInputError,
    InvalidOptionError,
    ModelForwardError,
    UnitOutOfRangeError,
)
from .layers import LayerInfo
from .probe import Probe
from .relu_calls import tap_functional
from .shadow import ModelShadow
from .sources import DataSource, Preprocess

__all__ = ["Entry", "LayerScan", "TopK", "never_fired", "top_k", "top_k_many"]


def never_fired(unit_max: torch.Tensor) -> torch.Tensor:
    """Which units are dead, from each unit's largest activation over a set of images.

    The one rule every dead-unit count uses (:meth:`TopK.dead_fraction`, the epoch scrubber's
    curves, the activation histogram): a unit is dead when it never exceeded zero, so after a
    ReLU it would be zero on every image and position.
    """
    return unit_max <= 0


class Entry(NamedTuple):
    """One of a unit's top-k images: its data-set index, activation value and position."""

    index: int
    value: float
    position: tuple[int, ...]


@dataclass(frozen=True)
class TopK:
    """The ``k`` strongest images of every unit of one layer, strongest first.

    Attributes
    ----------
    layer : str
        The layer scanned.
    values : Tensor
        ``(units, k)`` float32 activation values (``-inf`` where fewer than ``k`` images
        were seen).
    indices : Tensor
        ``(units, k)`` int64 indices of the images in the data set (``-1`` where none).
    positions : Tensor
        ``(units, k, 2)`` int64 ``(row, column)`` of each image's strongest activation in
        the layer's map (``(units, k, 0)`` for layers without a spatial map).
    seen : int
        Number of images scanned (less than the data set when the scan was stopped).
    done : Tensor or None
        ``(data set length,)`` bool: which images the scan covered (None when unknown).
    shape : tuple of int
        Per-image output shape of the layer, ``(C, H, W)`` or ``(F,)``.

    Notes
    -----
    Ties rank the smaller data-set index first, which makes :meth:`merge` exact.
    """

    layer: str
    values: torch.Tensor
    indices: torch.Tensor
    positions: torch.Tensor
    seen: int
    done: torch.Tensor | None = None
    shape: tuple[int, ...] = ()

    @property
    def k(self) -> int:
        """Images kept per unit."""
        return int(self.values.shape[1])

    @property
    def units(self) -> int:
        """Number of units (channels) of the layer."""
        return int(self.values.shape[0])

    def dead_fraction(self) -> float:
        """Fraction of units that never exceeded zero on any image scanned."""
        return float(never_fired(self.values[:, 0]).float().mean())

    def entries(self, unit: int) -> list[Entry]:
        """The top images of ``unit``, strongest first (fewer than ``k`` if fewer were seen).

        Raises
        ------
        UnitOutOfRangeError
            When ``unit`` is not in ``0 .. units - 1``.
        """
        if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < self.units:
            msg = (f"unit {unit!r} is out of range for layer {self.layer!r}: use 0 .. "
                   f"{self.units - 1}")
            raise UnitOutOfRangeError(msg)
        return [
            Entry(int(i), float(v), tuple(int(p) for p in pos))
            for i, v, pos in zip(self.indices[unit], self.values[unit],
                                 self.positions[unit], strict=True)
            if int(i) >= 0
        ]

    def merge(self, other: TopK) -> TopK:
        """The top-k of both scans together, equal to one scan over both parts.

        Raises
        ------
        InvalidInputError
            When the layers, unit counts or map shapes differ, or when both scans covered
            the same image (it would be counted twice).
        """
        if not isinstance(other, TopK):
            msg = f"merge takes another TopK, got {type(other).__name__}"
            raise InvalidInputError(msg)
        if (other.layer, other.units, other.shape) != (self.layer, self.units, self.shape):
            msg = (f"cannot merge the scan of {other.layer!r} ({other.units} units, map "
                   f"{other.shape}) into that of {self.layer!r} ({self.units} units, map "
                   f"{self.shape})")
            raise InvalidInputError(msg)
        done = None
        if self.done is not None and other.done is not None:
            if self.done.shape != other.done.shape:
                msg = (f"cannot merge scans of data sets of {self.done.numel()} and "
                       f"{other.done.numel()} images")
                raise InvalidInputError(msg)
            both = (self.done & other.done).nonzero().flatten()
            if both.numel():
                msg = (f"both scans covered {both.numel()} of the same images (e.g. "
                       f"{both[:3].tolist()}); merging would count them twice")
                raise InvalidInputError(msg)
            done = self.done | other.done
        k = max(self.k, other.k)
        values, indices, positions = select(
            torch.cat([self.values, other.values], 1), torch.cat([self.indices, other.indices], 1),
            torch.cat([self.positions, other.positions], 1), k)
        return replace(self, values=values, indices=indices, positions=positions,
                       seen=self.seen + other.seen, done=done)

    def equal(self, other: TopK) -> bool:
        """Same layer, values, indices, positions and images seen (exactly)."""
        return (self.layer == other.layer and self.seen == other.seen
                and torch.equal(self.values, other.values)
                and torch.equal(self.indices, other.indices)
                and torch.equal(self.positions, other.positions))


def select(values: torch.Tensor, indices: torch.Tensor, positions: torch.Tensor, k: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the best ``k`` per row: largest value first, ties by the smaller index, empty
    slots (index ``-1``) last. Rows are units; ``positions`` is ``(units, n, d)``.

    The order is exact: each (value, index) pair becomes one int64 key, the float32 value's
    bits made order-preserving in the high half and the reversed index in the low half, and
    ``topk`` of distinct keys has no ties to break."""
    order = _ranking_keys(values, indices).topk(min(k, values.shape[1]), dim=1).indices
    values, indices = values.gather(1, order), indices.gather(1, order)
    positions = positions.gather(1, order[:, :, None].expand(-1, -1, positions.shape[2]))
    pad = k - values.shape[1]
    if pad > 0:
        units = values.shape[0]
        values = torch.cat([values, values.new_full((units, pad), float("-inf"))], 1)
        indices = torch.cat([indices, indices.new_full((units, pad), -1)], 1)
        positions = torch.cat([positions, positions.new_zeros(units, pad, positions.shape[2])], 1)
    return values, indices, positions


class LayerScan:
    """The running top-k of one layer while a scan streams through batches.

    Parameters
    ----------
    layer : str
        Layer name.
    k : int
        Images kept per unit.
    length : int
        Number of images in the data set (for :attr:`TopK.done`).
    """

    def __init__(self, layer: str, k: int, length: int) -> None:
        if length >= 1 << 31:  # ranking keys keep the index in 31 bits
            msg = f"a scan takes data sets of up to 2**31 - 1 images, got {length}"
            raise InvalidInputError(msg)
        self.layer = layer
        self.k = k
        self.length = length
        self.shape: tuple[int, ...] | None = None
        self.values: torch.Tensor | None = None
        self.indices = torch.zeros(0, 0, dtype=torch.long)
        self.where = torch.zeros(0, 0, 1, dtype=torch.long)
        self.done = torch.zeros(length, dtype=torch.bool)
        self.seen = 0

    @classmethod
    def resume(cls, scan: TopK, length: int) -> LayerScan:
        """Continue from a saved :class:`TopK` (its images are not scanned again)."""
        running = cls(scan.layer, scan.k, length)
        running.shape = scan.shape
        if scan.done is not None:
            running.done = scan.done.clone()
        running.seen = scan.seen
        running.values = scan.values.clone()
        running.indices = scan.indices.clone()
        spatial = scan.shape[1:]
        flat = (_ravel(scan.positions, spatial) if spatial
                else torch.zeros(scan.indices.shape, dtype=torch.long))
        running.where = flat[:, :, None]
        return running

    def update(self, best: torch.Tensor, where: torch.Tensor | None, indices: torch.Tensor,
               shape: tuple[int, ...]) -> None:
        """Add one batch: ``best``/``where`` ``(B, units)`` maxima and flat positions."""
        self.commit(self.prepare(best, where, indices, shape))

    def prepare(self, best: torch.Tensor, where: torch.Tensor | None, indices: torch.Tensor,
                shape: tuple[int, ...]) -> tuple[Any, ...]:
        """The state after one batch, computed without changing this object (see
        :meth:`commit`), so that several layers take a batch all or none. ``where=None``
        says that no image of the batch can enter (the ranking stays as it is)."""
        if self.shape is not None and shape != self.shape:
            msg = (f"layer {self.layer!r} gave maps of shape {shape} after {self.shape}: "
                   "every image of a scan must have the same size")
            raise InvalidInputError(msg)
        if where is None:
            if self.values is not None:
                return (self.values, self.indices, self.where, indices, shape)
            where = torch.zeros(best.shape, dtype=torch.long)
        values = torch.where(torch.isnan(best), float("-inf"), best).T
        batch_indices = indices[None, :].expand(values.shape[0], -1)
        where = where.T[:, :, None]
        if self.values is not None:
            values = torch.cat([self.values, values], 1)
            batch_indices = torch.cat([self.indices, batch_indices], 1)
            where = torch.cat([self.where, where], 1)
        return (*select(values, batch_indices, where, self.k), indices, shape)

    def floor(self) -> torch.Tensor:
        """Per unit, the k-th best value so far (``-inf`` while fewer than k were seen)."""
        if self.values is None:
            return torch.tensor(float("-inf"))
        return self.values[:, -1]

    def commit(self, state: tuple[Any, ...]) -> None:
        """Take the state :meth:`prepare` computed."""
        self.values, self.indices, self.where, indices, self.shape = state
        self.done[indices] = True
        self.seen += int(indices.numel())

    def result(self) -> TopK:
        """The :class:`TopK` of everything seen so far."""
        if self.values is None or self.shape is None:
            msg = f"layer {self.layer!r}: no image was scanned"
            raise InvalidInputError(msg)
        where = self.where[:, :, 0]
        spatial = self.shape[1:]
        if spatial:
            coords = torch.stack(torch.unravel_index(where, spatial), dim=2).long()
            coords = torch.where(self.indices[:, :, None] >= 0, coords, 0)
        else:
            coords = torch.zeros((*where.shape, 0), dtype=torch.long)
        return TopK(self.layer, self.values.clone(), self.indices.clone(), coords, self.seen,
                    self.done.clone(), self.shape)


def _ranking_keys(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """int64 keys that sort like (value descending, index ascending), empty slots lowest."""
    bits = (values.to(torch.float32) + 0.0).view(torch.int32)  # + 0.0: -0.0 becomes +0.0
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    keys = (ordered << 32) + ((1 << 31) - 1 - indices)
    return torch.where(indices < 0, torch.iinfo(torch.int64).min, keys)


def _ravel(coords: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Flat index of ``(..., d)`` coordinates in a map of ``shape``."""
    flat = torch.zeros(coords.shape[:-1], dtype=torch.long)
    for axis, size in enumerate(shape):
        flat = flat * size + coords[..., axis]
    return flat


class _StopForward(BaseException):
    """Raised from a hook once the deepest requested layer is reduced (never escapes)."""


class Scanner:
    """One forward per batch that reduces every requested layer and stops at the deepest.

    Parameters
    ----------
    probe : Probe
        Resolves layer names (reused modules included) and supplies the model.
    layers : sequence of str
        Layer names, already resolved (``probe.layer(name).name``).

    Notes
    -----
    The model runs on a fresh :class:`~ipydeepvis.core.shadow.ModelShadow`, private to this
    scanner: hooks live on the shadow's modules for one forward each (removed by an
    ``ExitStack`` also when the model raises) and the shadow is switched to eval mode once;
    the user's modules, flags and hooks are never touched, and the shadow shares the user's
    weight tensors (so a training loop's updates show in the next batch).
    """

    def __init__(self, probe: Probe, layers: Sequence[str]) -> None:
        self.names = list(layers)
        self.sites: dict[str, list[tuple[str, int]]] = {}  # module -> [(layer, call)]
        self.functional: list[LayerInfo] = []  # ReLUs written as calls: no module to hook
        for name in self.names:
            info = probe.layer(name)
            if info.functional:
                self.functional.append(info)
                continue
            module = name.rpartition(":")[0] if info.call is not None else name
            self.sites.setdefault(module, []).append((name, info.call or 1))
        self.shadow = ModelShadow(probe.model)
        self._evaluated: nn.Module | None = None
        tensors = itertools.chain(probe.model.parameters(), probe.model.buffers())
        first = next(tensors, None)
        self.device = first.device if first is not None else torch.device("cpu")
        self.dtype = next((p.dtype for p in probe.model.parameters() if p.is_floating_point()),
                          torch.float32)

    def reduce(self, images: torch.Tensor,
               floors: dict[str, tuple[torch.Tensor, int]] | None = None,
               ) -> dict[str, tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]]:
        """``{layer: (best (B, units), flat position (B, units), map shape)}`` for a batch.

        With ``floors`` (``{layer: (k-th best value so far per unit, k)}``) a position is only
        looked up where it can matter: for the pairs (image, unit) that can still enter the
        unit's top-k (at least the k-th best so far, and among the batch's k best); the others
        get position 0. Their values stay exact, and they can never be ranked in.
        """
        if not bool(torch.isfinite(images.sum())):  # one cheap sum, then the count
            bad = int((~torch.isfinite(images)).sum())
            if bad:
                msg = f"the batch contains {bad} NaN or infinite value(s); images must be finite"
                raise InvalidInputError(msg)
        batch = images.to(self.device, self.dtype)
        shadow, _key = self.shadow.current()
        found: dict[str, tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]] = {}
        wanted = len(self.names)
        calls: dict[str, int] = {}

        def hook_for(module_name: str) -> Callable[..., None]:
            targets = dict((call, layer) for layer, call in self.sites[module_name])

            def hook(_module: nn.Module, _args: Any, output: Any) -> None:
                calls[module_name] = call = calls.get(module_name, 0) + 1
                layer = targets.get(call)
                if layer is None or not isinstance(output, torch.Tensor):
                    return
                keep(layer, output)
            return hook

        def keep(layer: str, output: torch.Tensor) -> None:
            found[layer] = _strongest(output, (floors or {}).get(layer))
            if len(found) == wanted:
                raise _StopForward

        if shadow is not self._evaluated:  # the scan's own shadow: eval once, never the user's
            shadow.eval()
            self._evaluated = shadow
        with ExitStack() as hooks, torch.no_grad():
            for module_name in self.sites:
                module = shadow.get_submodule(module_name)
                hooks.enter_context(module.register_forward_hook(hook_for(module_name)))
            hooks.enter_context(tap_functional(self.functional,
                                               lambda info, output: keep(info.name, output)))
            try:
                shadow(batch)
            except _StopForward:
                pass
            except DeepVisError:
                raise
            except Exception as exc:
                msg = (f"the model raised {type(exc).__name__} on a batch of shape "
                       f"{tuple(batch.shape)}: {exc}")
                raise ModelForwardError(msg) from exc
        missing = [name for name in self.names if name not in found]
        if missing:
            msg = (f"layer(s) {missing} produced no tensor output in the forward pass, so they "
                   "cannot be scanned")
            raise InvalidInputError(msg)
        return found


def _strongest(output: torch.Tensor, floor: tuple[torch.Tensor, int] | None
               ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]:
    """Per (image, unit): the strongest activation and its flat position (see
    :meth:`Scanner.reduce`); runs inside the hook, before any in-place op changes ``output``.
    The position is None when no image of the batch can enter any unit's top-k."""
    shape = tuple(output.shape[1:])
    flat = output.detach().flatten(2) if output.dim() > 2 else output.detach()[:, :, None]
    if floor is None:
        best, where = flat.max(dim=2)
        return best.float().cpu(), where.cpu(), shape
    best = flat.amax(dim=2)  # ~10x cheaper than max with indices
    if flat.shape[2] == 1:
        return best.float().cpu(), torch.zeros(best.shape, dtype=torch.long), shape
    kth, k = floor
    chosen = best >= kth.to(best.device)  # (units,), or a scalar -inf before k images
    count = int(chosen.sum())
    if count == 0:
        return best.float().cpu(), None, shape  # no image of the batch can enter
    if count > k * best.shape[1] and best.shape[0] > k:  # only a batch's k best can enter
        chosen &= best >= best.topk(k, dim=0).values[-1]
    where = torch.zeros(best.shape, dtype=torch.long, device=best.device)
    where[chosen] = flat[chosen].argmax(dim=1)
    return best.float().cpu(), where.cpu(), shape


def resolve_layers(probe: Probe, layers: Iterable[str], sample: torch.Tensor) -> list[str]:
    """Layer names as the probe spells them; traces the model once on ``sample`` (one image)
    when the probe has not seen an input yet, so that reused modules' calls are known."""
    names = list(layers)
    if any(info.shape is None for info in probe.layers):
        probe.activations(sample[:1], names)  # a full pass: learns calls and shapes
    return [probe.layer(name).name for name in names]


def as_probe(model_or_probe: Probe | nn.Module) -> Probe:
    """A :class:`Probe` for a model, or the probe itself."""
    return model_or_probe if isinstance(model_or_probe, Probe) else Probe(model_or_probe)


def probe_preprocess(probe: Probe) -> Preprocess | None:
    """The probe's ``preprocess`` (applied to images that are not tensors)."""
    found = getattr(probe, "preprocess", None)
    if found is None:
        found = getattr(probe, "_preprocess", None)
    return found if callable(found) else None


def check_k(k: object, batch_size: object) -> None:
    """Refuse a ``k`` or ``batch_size`` that is not a positive int."""
    for name, value in (("k", k), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            msg = f"{name} must be a positive int, got {value!r}"
            raise InvalidOptionError(msg)


def top_k(
    probe: Probe | nn.Module,
    dataset: Any,
    layer: str,
    k: int = 9,
    *,
    batch_size: int = 64,
    limit: int | None = None,
    progress: bool = False,
    callback: Callable[[int, int], bool | None] | None = None,
    preprocess: Preprocess | None = None,
) -> TopK:
    """Scan ``dataset`` and keep, for every unit of ``layer``, its ``k`` strongest images.

    Parameters
    ----------
    probe : Probe or nn.Module
        The model to scan (a module is wrapped in a :class:`Probe`).
    dataset : Tensor, sequence, Dataset or DataLoader
        Images ``(C, H, W)`` or items ``(image, label, ...)``; a DataLoader's batches,
        sampler and workers are used as given.
    layer : str
        Layer name (see ``probe.layers``).
    k : int
        Images kept per unit.
    batch_size : int
        Images per forward pass (a DataLoader keeps its own).
    limit : int, optional
        Scan only the first ``limit`` images (a probe set).
    progress : bool
        Show a tqdm progress bar (``tqdm.auto``: a widget in notebooks).
    callback : callable, optional
        ``callback(done, total)`` after every batch; returning False stops the scan early
        (the result then has ``seen < total``).
    preprocess : callable, optional
        Converts images that are not tensors (PIL); the probe's own by default.

    Returns
    -------
    TopK

    Raises
    ------
    InvalidInputError
        Empty data, images that are not float tensors of one size (without ``preprocess``),
        a data source without indices.
    InvalidOptionError, LayerNotFoundError
        A bad ``k``, ``batch_size`` or layer name.
    """
    (result,) = top_k_many(probe, dataset, [layer], k, batch_size=batch_size, limit=limit,
                           progress=progress, callback=callback,
                           preprocess=preprocess).values()
    return result


def top_k_many(
    probe: Probe | nn.Module,
    dataset: Any,
    layers: Sequence[str],
    k: int = 9,
    *,
    batch_size: int = 64,
    limit: int | None = None,
    progress: bool = False,
    callback: Callable[[int, int], bool | None] | None = None,
    preprocess: Preprocess | None = None,
) -> dict[str, TopK]:
    """:func:`top_k` for several layers in one pass over the data (one forward per batch)."""
    check_k(k, batch_size)
    probe = as_probe(probe)
    source = DataSource(dataset, preprocess or probe_preprocess(probe))
    total = source.length if limit is None else max(0, min(int(limit), source.length))
    if total == 0:
        msg = "the data set is empty: nothing to scan"
        raise InvalidInputError(msg)
    order = torch.arange(total)
    batches = source.batches(order, batch_size)
    first = next(batches, None)
    if first is None:
        msg = "the data source yielded no batch: nothing to scan"
        raise InvalidInputError(msg)
    names = resolve_layers(probe, layers, first[1])
    scanner = Scanner(probe, names)
    running = {name: LayerScan(name, k, source.length) for name in names}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"top-{k} {', '.join(names)}", unit="img")
    seen = 0
    try:
        for indices, images in itertools.chain([first], batches):
            scan_batch(scanner, running, indices, images)
            seen += int(indices.numel())
            if bar is not None:
                bar.update(int(indices.numel()))
            if callback is not None and callback(seen, total) is False:
                break
    finally:
        if bar is not None:
            bar.close()
    return {name: running[name].result() for name in names}


def scan_batch(scanner: Scanner, running: dict[str, LayerScan], indices: torch.Tensor,
               images: torch.Tensor) -> None:
    """Run one batch and fold it into every layer's running top-k."""
    if images.shape[0] == 0:
        return
    floors = {name: (scan.floor(), scan.k) for name, scan in running.items()}
    found = scanner.reduce(images, floors)
    states = {name: scan.prepare(*found[name][:2], indices, found[name][2])
              for name, scan in running.items()}
    for name, scan in running.items():  # every layer takes the batch, or none does
        scan.commit(states[name])
