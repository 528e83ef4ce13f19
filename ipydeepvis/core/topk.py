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

__all__ = ["Entry", "RunningTopK", "TopK", "never_fired", "top_k", "top_k_many"]


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


_EMPTY = torch.iinfo(torch.int64).min  # the ranking key of an empty slot: below every image


class Candidates(NamedTuple):
    """The (image, unit) pairs of one layer and batch that can still enter a unit's top-k.

    ``chosen`` is ``(units, B)`` bool, ``positions`` the flat position in the layer's map of
    each chosen pair, in ``chosen``'s row-major order (unit by unit); ``best`` is the
    ``(B, units)`` float32 maximum of every pair, ``shape`` the per-image map shape."""

    chosen: torch.Tensor
    positions: torch.Tensor
    best: torch.Tensor
    shape: tuple[int, ...]


class RunningTopK:
    """The running top-k of every scanned layer at once, while a scan streams through batches.

    All layers' units are rows of one ``(units, k)`` table of ranking keys (value and data-set
    index in one int64, see :func:`_ranking_keys`) and flat positions, so a batch is folded in
    with one ``topk`` for all layers, and only for the (image, unit) pairs that can enter
    (:meth:`floors`); a batch where none can costs no ranking at all.

    Parameters
    ----------
    layers : sequence of str
        Layer names, in the order of the table's rows.
    k : int
        Images kept per unit.
    length : int
        Number of images in the data set (for :attr:`TopK.done`).
    """

    def __init__(self, layers: Sequence[str], k: int, length: int) -> None:
        if length >= 1 << 31:  # ranking keys keep the index in 31 bits
            msg = f"a scan takes data sets of up to 2**31 - 1 images, got {length}"
            raise InvalidInputError(msg)
        self.layers = list(layers)
        self.k = k
        self.length = length
        self.shapes: dict[str, tuple[int, ...]] = {}  # known after the first batch
        self.rows: dict[str, slice] = {}
        self.keys: torch.Tensor | None = None  # (units, k) int64, best first
        self.where = torch.zeros(0, 0, dtype=torch.long)  # (units, k) flat positions
        self.done = torch.zeros(length, dtype=torch.bool)
        self.seen = 0
        self._floor: tuple[torch.Tensor, int] | None = None  # cached for the next batch

    @property
    def started(self) -> bool:
        """Whether the table exists (an image was scanned, or the scan was resumed)."""
        return self.keys is not None

    @classmethod
    def resume(cls, scans: dict[str, TopK], length: int) -> RunningTopK:
        """Continue from saved :class:`TopK` s of one scan (their images are not scanned
        again)."""
        first = next(iter(scans.values()))
        running = cls(list(scans), first.k, length)
        if not all(scan.shape for scan in scans.values()):  # saved before any image was seen
            return running
        running._allocate({name: scan.shape for name, scan in scans.items()})
        keys, where = [], []
        for scan in scans.values():
            keys.append(_ranking_keys(scan.values, scan.indices))
            spatial = scan.shape[1:]
            where.append(_ravel(scan.positions, spatial) if spatial
                         else torch.zeros(scan.indices.shape, dtype=torch.long))
        running.keys, running.where = torch.cat(keys), torch.cat(where)
        if first.done is not None:
            running.done = first.done.clone()
        running.seen = first.seen
        return running

    def _allocate(self, shapes: dict[str, tuple[int, ...]]) -> None:
        start = 0
        for name in self.layers:
            units = shapes[name][0]
            self.rows[name] = slice(start, start + units)
            start += units
        self.shapes = dict(shapes)
        self.keys = torch.full((start, self.k), _EMPTY, dtype=torch.long)
        self.where = torch.zeros(start, self.k, dtype=torch.long)

    def floors(self, indices: torch.Tensor) -> dict[str, tuple[torch.Tensor, int]]:
        """Per layer, ``(floor (units,), k)`` for a batch of data-set ``indices``: a pair
        (image, unit) can enter the unit's top-k only if its value is not below the floor.

        The floor is the unit's k-th best value, or just above it when that image's index is
        smaller than every index of the batch (a tie then ranks below it); ``-inf`` while
        fewer than k images were seen. ``k`` is 0 once every floor is finite: then no NaN can
        enter and no batch brings more than k images to a unit, so the scan skips both checks
        (see :func:`_candidates`).
        """
        if self.keys is None:
            return {name: (torch.tensor(float("-inf")), self.k) for name in self.layers}
        if self._floor is None:
            values, kth = _decode_keys(self.keys[:, -1])
            strict = (kth >= 0) & (kth < indices.min())
            floor = torch.where(strict, torch.nextafter(values, values.new_tensor(float("inf"))),
                                values)
            check = self.k if bool(torch.isneginf(floor).any()) else 0
            self._floor = (floor, check)
        floor, check = self._floor
        return {name: (floor[self.rows[name]], check) for name in self.layers}

    def add(self, found: dict[str, Candidates], indices: torch.Tensor) -> None:
        """Fold in one batch: every layer's candidates (from :meth:`Scanner.reduce` with this
        object's :meth:`floors`) for the batch's data-set ``indices``. All layers take the
        batch or, when a map shape differs from earlier batches, none does."""
        shapes = {name: found[name].shape for name in self.layers}
        for name, shape in shapes.items():
            known = self.shapes.get(name)
            if known is not None and shape != known:
                msg = (f"layer {name!r} gave maps of shape {shape} after {known}: every "
                       "image of a scan must have the same size")
                raise InvalidInputError(msg)
        if self.keys is None:
            self._allocate(shapes)
        assert self.keys is not None
        parts = [found[name] for name in self.layers]
        positions = torch.cat([part.positions for part in parts]).cpu()
        if positions.numel():  # one ranking of the (units, B) block for every layer
            chosen = torch.cat([part.chosen for part in parts]).cpu()
            values = torch.cat([part.best for part in parts], 1).cpu().T
            values = values.nan_to_num(float("-inf"), float("inf"), float("-inf"))
            keys = _ranking_keys(values, indices)
            keys = torch.where(chosen, keys, _EMPTY)
            where = torch.zeros(keys.shape, dtype=torch.long)
            where[chosen] = positions
            top = torch.cat([self.keys, keys], 1).topk(self.k, dim=1)
            self.keys = top.values
            self.where = torch.cat([self.where, where], 1).gather(1, top.indices)
            self._floor = None
        self.done[indices] = True
        self.seen += int(indices.numel())

    def result(self) -> dict[str, TopK]:
        """Every layer's :class:`TopK` of everything seen so far."""
        if self.keys is None:
            msg = f"layer(s) {self.layers}: no image was scanned"
            raise InvalidInputError(msg)
        values, indices = _decode_keys(self.keys)
        scans = {}
        for name in self.layers:
            rows, shape = self.rows[name], self.shapes[name]
            where, spatial = self.where[rows], shape[1:]
            if spatial:
                coords = torch.stack(torch.unravel_index(where, spatial), dim=2).long()
                coords = torch.where(indices[rows, :, None] >= 0, coords, 0)
            else:
                coords = torch.zeros((*where.shape, 0), dtype=torch.long)
            scans[name] = TopK(name, values[rows].clone(), indices[rows].clone(), coords,
                               self.seen, self.done.clone(), shape)
        return scans


def _ranking_keys(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """int64 keys that sort like (value descending, index ascending), empty slots lowest."""
    bits = (values.to(torch.float32) + 0.0).view(torch.int32)  # + 0.0: -0.0 becomes +0.0
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).to(torch.int64)
    keys = (ordered << 32) + ((1 << 31) - 1 - indices)
    return torch.where(indices < 0, _EMPTY, keys)


def _decode_keys(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 values and int64 indices of :func:`_ranking_keys` (``-inf``, ``-1`` for
    empty slots)."""
    empty = keys == _EMPTY
    indices = torch.where(empty, -1, (1 << 31) - 1 - (keys & 0xFFFFFFFF))
    ordered = (keys >> 32).to(torch.int32)
    bits = torch.where(ordered < 0, ordered ^ 0x7FFFFFFF, ordered)
    return torch.where(empty, float("-inf"), bits.view(torch.float32)), indices


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
               ) -> dict[str, Candidates]:
        """``{layer: Candidates}`` for a batch: each layer's per-(image, unit) maxima, and
        the pairs that can still enter a unit's top-k with their positions.

        ``floors`` is ``{layer: (floor per unit, k)}`` (:meth:`RunningTopK.floors`): a
        position is only looked up where it can matter (see :func:`_candidates`). Without
        it every pair is a candidate.
        """
        batch = images.to(self.device, self.dtype)
        shadow, _key = self.shadow.current()
        found: dict[str, Candidates] = {}
        everything = (torch.tensor(float("-inf")), len(batch))
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
            found[layer] = _candidates(output, *(floors or {}).get(layer, everything))
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
        # A NaN or infinite pixel reaches the maxima; only then are the images read again
        # (a pass over the batch costs more than this sum of a few thousand maxima).
        if not bool(torch.isfinite(torch.cat([c.best for c in found.values()], 1).sum())):
            bad = int((~torch.isfinite(images)).sum())
            if bad:
                msg = f"the batch contains {bad} NaN or infinite value(s); images must be finite"
                raise InvalidInputError(msg)
        return found


def _candidates(output: torch.Tensor, floor: torch.Tensor, k: int) -> Candidates:
    """The pairs (image, unit) of one layer's ``output`` that can enter a unit's top-k, with
    their strongest activation and its flat position (the first maximum in row-major order);
    runs inside the hook, before any in-place op changes ``output``.

    A pair is a candidate when its maximum is not below the unit's ``floor``. With ``k`` > 0
    (early in a scan) NaN counts as a candidate too (it ranks as ``-inf``), and when more than
    ``k`` images of the batch pass for a unit only the batch's ``k`` best do. Only candidates
    get a position: the maximum of every pair is one vectorised ``amax``, the position one
    slower ``max`` on their rows. The few torch calls per layer are what a long scan costs
    beyond the forward.
    """
    shape = tuple(output.shape[1:])
    flat = output.detach().flatten(2) if output.dim() > 2 else output.detach()[:, :, None]
    best = flat.amax(dim=2)
    if best.dtype != torch.float32:
        best = best.float()
    if floor.device != best.device:
        floor = floor.to(best.device)
    values = best.T  # (units, B): candidates unit by unit
    if k:
        chosen = values.lt(floor[..., None]).logical_not_()  # NaN too
        if best.shape[0] > k and int(chosen.sum()) > k * best.shape[1]:
            chosen &= values.lt(best.topk(k, dim=0).values[-1][:, None]).logical_not_()
    else:
        chosen = values >= floor[:, None]
    if flat.shape[2] == 1:
        positions = torch.zeros(int(chosen.sum()), dtype=torch.long, device=best.device)
    else:  # max's index and argmax: the first maximum
        positions = flat.transpose(0, 1)[chosen].max(dim=1).indices
    return Candidates(chosen, positions, best, shape)


def _strongest(output: torch.Tensor, floor: tuple[torch.Tensor, int] | None
               ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, ...]]:
    """:func:`_candidates` as dense ``(B, units)`` maxima and flat positions (position 0 for
    the pairs that cannot enter; None when no pair can). Without ``floor``: every pair's."""
    kth, k = floor if floor is not None else (torch.tensor(float("-inf")), output.shape[0])
    found = _candidates(output, kth, k)
    best = found.best.cpu()
    if found.positions.numel() == 0:
        return best, None, found.shape
    where = torch.zeros(best.shape[::-1], dtype=torch.long)
    where[found.chosen.cpu()] = found.positions.cpu()
    return best, where.T, found.shape


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
    running = RunningTopK(names, k, source.length)
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
    return running.result()


def scan_batch(scanner: Scanner, running: RunningTopK, indices: torch.Tensor,
               images: torch.Tensor) -> None:
    """Run one batch and fold it into every layer's running top-k."""
    if images.shape[0] == 0:
        return
    running.add(scanner.reduce(images, running.floors(indices)), indices)
