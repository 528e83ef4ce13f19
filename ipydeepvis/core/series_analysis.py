"""The analyses of a checkpoint series, in one object that views and scripts share.

:class:`SeriesAnalysis` answers every question the epoch scrubber, the dashboard and the
feature-evolution notebook ask about a training run: an epoch's weights and model (loaded on
demand), top-1 probe-set scans of every conv layer, the evolution strip (Zeiler & Fergus Fig.
4) for any layer and units, the fraction of dead units per layer, and the relative weight change
between saved epochs. Views only draw what it returns.

Nothing is loaded up front but one epoch (to learn the layers), and everything kept between
calls lives in a :class:`~ipydeepvis.core.cache.ByteLRU` with a bound in bytes. A diverged epoch
(non-finite weights), or non-finite activations or projections, is reported and marked, never
an exception in the middle of a strip and never a made-up number.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, DeepVisError, InvalidInputError, InvalidOptionError
from .cache import ByteLRU, tensor_bytes
from .checkpoints import CheckpointSeries
from .evolution import (
    EvolutionCell,
    EvolutionRow,
    EvolutionStrip,
    assemble_strip,
    evolution_cell,
    invalid_cell,
    nonfinite_report,
    weight_change_between,
)
from .layers import LayerInfo
from .probe import Probe
from .topk import TopK, top_k_many

__all__ = ["DEFAULT_CELL_BYTES", "DEFAULT_SCAN_BYTES", "DEFAULT_STATE_BYTES", "SeriesAnalysis",
           "probe_images"]

MIB = 1 << 20
DEFAULT_STATE_BYTES = 64 * MIB
"""Default bound of the state-dict cache (saved epochs' weights)."""
DEFAULT_SCAN_BYTES = 8 * MIB
"""Default bound of the probe-set scan cache (top-1 value, image and position per unit)."""
DEFAULT_CELL_BYTES = 32 * MIB
"""Default bound of the strip-cell cache (projection crop and image patch per epoch and unit)."""

Curves = dict[str, tuple[list[int], list[float]]]


def probe_images(dataset: Any, probe_size: int) -> torch.Tensor:
    """The first ``probe_size`` images of ``dataset`` as one ``(N, C, H, W)`` tensor.

    Accepts a tensor, a sequence or a torch ``Dataset`` of images or ``(image, label)``
    pairs, and data sets with a ``batch(indices) -> (images, labels)`` method (``Shapes``).

    Raises
    ------
    InvalidOptionError
        When ``probe_size`` is not a positive int.
    InvalidInputError
        When the data set is empty, has no length, or its items are not image tensors.
    """
    if isinstance(probe_size, bool) or not isinstance(probe_size, int) or probe_size < 1:
        msg = (f"probe_size must be a positive number of images, got {probe_size!r}; the "
               "probe set is the first probe_size images of the data set")
        raise InvalidOptionError(msg)
    try:
        total = dataset.shape[0] if isinstance(dataset, torch.Tensor) else len(dataset)
    except TypeError as exc:
        msg = (f"dataset must be a tensor (N, C, H, W), a sequence or a torch Dataset of images, "
               f"got {type(dataset).__name__}")
        raise InvalidInputError(msg) from exc
    if total == 0:
        msg = "the data set is empty: the probe set needs at least one image"
        raise InvalidInputError(msg)
    count = min(probe_size, total)
    if isinstance(dataset, torch.Tensor):
        images = dataset[:count]
    elif callable(getattr(dataset, "batch", None)):
        images = dataset.batch(list(range(count)))[0]
    else:
        items = [dataset[i] for i in range(count)]
        pictures = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
        if not all(isinstance(p, torch.Tensor) for p in pictures):
            kinds = sorted({type(p).__name__ for p in pictures})
            msg = (f"the data set's images must be tensors (C, H, W), got {kinds}; add a "
                   "transform that converts them (e.g. torchvision's ToTensor)")
            raise InvalidInputError(msg)
        try:
            images = torch.stack(pictures)
        except RuntimeError as exc:
            msg = f"the probe images must all have one shape (C, H, W): {exc}"
            raise InvalidInputError(msg) from exc
    if images.dim() != 4:
        msg = f"probe images must be (N, C, H, W), got shape {tuple(images.shape)}"
        raise InvalidInputError(msg)
    return images


class SeriesAnalysis:
    """Feature evolution, dead units and weight change over a checkpoint series, on demand.

    Parameters
    ----------
    series : CheckpointSeries, str or PathLike
        The saved epochs (anything with ``.epochs``, ``.load(epoch)`` and ``.model(epoch)``),
        or a path that :class:`~ipydeepvis.core.checkpoints.CheckpointSeries` opens.
    dataset : Tensor, sequence or Dataset
        Images (or ``(image, label)`` pairs); the first ``probe_size`` form the probe set.
    model : nn.Module or callable, optional
        The architecture, for a path without a manifest (passed to ``CheckpointSeries``).
    probe_size : int
        Images scanned per epoch.
    batch_size : int
        Images per forward pass of a scan.
    state_bytes, scan_bytes, cell_bytes : int
        Bounds in bytes of the three caches (see Notes).

    Notes
    -----
    What is kept, and its bound:

    - **state dicts** of saved epochs, least recently used first out, at most ``state_bytes``
      (default 64 MiB: every epoch of the embedded net's run, or one ResNet-18);
    - **scans**: per (epoch, layer) the top-1 probe image, value and position of every unit,
      at most ``scan_bytes`` (default 8 MiB);
    - **strip cells**: per (epoch, layer, unit) the projection crop and image patch, at most
      ``cell_bytes`` (default 32 MiB);
    - the probe set itself (``probe_size`` images, fixed), one working model (each computation
      copies an epoch's weights into it), a skeleton without weights from which
      :meth:`model` builds modules, and the weight-change table (a float per layer and epoch).

    :attr:`cache_bytes` reports what each cache holds. A strip being shown is held by its view
    as well, outside these bounds. Construction loads one epoch (the first that loads) to learn
    the layers; every other epoch is read when a question needs it.
    """

    def __init__(self, series: Any, dataset: Any, *, model: Any = None, probe_size: int = 300,
                 batch_size: int = 64, state_bytes: int = DEFAULT_STATE_BYTES,
                 scan_bytes: int = DEFAULT_SCAN_BYTES,
                 cell_bytes: int = DEFAULT_CELL_BYTES) -> None:
        if isinstance(series, (str, os.PathLike)):
            series = CheckpointSeries(series, model=model)
        for needed in ("epochs", "load", "model"):
            if not hasattr(series, needed):
                msg = (f"series must be a CheckpointSeries or a path to checkpoints, got "
                       f"{type(series).__name__} (it has no .{needed})")
                raise InvalidInputError(msg)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            msg = f"batch_size must be a positive int, got {batch_size!r}"
            raise InvalidOptionError(msg)
        self.series = series
        self.images = probe_images(dataset, probe_size)
        self.probe_size = int(self.images.shape[0])
        self.batch_size = batch_size
        self.epochs: list[int] = [int(e) for e in series.epochs]
        if not self.epochs:
            msg = "the checkpoint series has no epochs"
            raise InvalidInputError(msg)
        self._states: ByteLRU[dict[str, torch.Tensor]] = ByteLRU(state_bytes, "state dicts")
        self._scans: ByteLRU[TopK] = ByteLRU(scan_bytes, "scans")
        self._cells: ByteLRU[EvolutionCell] = ByteLRU(cell_bytes, "strip cells")
        self._lock = threading.RLock()
        self._failures: dict[int, str] = {}
        self._diverged: dict[int, str] = {}
        self._weight_change: Curves | None = None
        self.loads = 0  # epochs read from disk so far (tests check laziness with it)
        self._compute = threading.RLock()  # one computation at a time on the working model
        self._work, first = self._first_model()
        self._loaded: int | None = first
        self._dtypes = {k: v.dtype for k, v in self._work.state_dict().items()}
        self._skeleton = _skeleton(self._work, set(self._dtypes))
        probe = Probe(self._work, input_shape=tuple(self.images[0].shape))
        self._probe = probe
        self.layers: list[LayerInfo] = [layer for layer in probe.layers
                                        if layer.shape is not None and len(layer.shape) in (1, 3)]
        self.conv_layers = [layer.name for layer in self.layers if layer.kind == "conv"]
        self.channels = {layer.name: int(layer.channels or 1) for layer in self.layers}
        self.conv_keys = {name: f"{name}.weight" for name in self.conv_layers}

    # ------------------------------------------------------------------ epochs

    @property
    def available_epochs(self) -> list[int]:
        """Saved epochs not known to be unreadable (an epoch is tried when first needed)."""
        return [e for e in self.epochs if e not in self._failures]

    def problem(self, epoch: int) -> str:
        """Why ``epoch`` cannot be shown or is suspect (unreadable, non-finite weights), or
        ``""``."""
        return self._failures.get(epoch) or self._diverged.get(epoch, "")

    @property
    def failures(self) -> dict[int, str]:
        """``{epoch: why it cannot be read}`` for the epochs tried so far."""
        return dict(self._failures)

    @property
    def diverged(self) -> dict[int, str]:
        """``{epoch: which weights are non-finite}`` for the epochs read so far."""
        return dict(self._diverged)

    def state_dict(self, epoch: int) -> dict[str, torch.Tensor] | None:
        """The weights of ``epoch`` (cached; treat as read-only), or None if it cannot be read
        (:meth:`problem` says why)."""
        if epoch not in self.epochs:
            msg = f"epoch {epoch!r} is not a saved epoch; saved epochs are {self.epochs}"
            raise InvalidOptionError(msg)
        state = self._states.get(epoch)
        if state is not None or epoch in self._failures:
            return state
        try:
            raw = self.series.load(epoch)
            self.loads += 1
            state = self._fit(raw, epoch)
        except DeepVisError as exc:
            with self._lock:
                self._failures[epoch] = str(exc)
            return None
        report = nonfinite_report(state)
        with self._lock:
            if report:
                self._diverged[epoch] = report
        return self._states.put(epoch, state)

    def model(self, epoch: int) -> nn.Module | None:
        """A new module (eval mode) with the weights of ``epoch``, sharing the cached tensors
        (no copy), or None if the epoch cannot be read."""
        state = self.state_dict(epoch)
        return None if state is None else self._module(state)

    # ------------------------------------------------------------------ scans and strips

    def scans(self, epoch: int, layers: Sequence[str] | None = None) -> dict[str, TopK] | None:
        """Top-1 probe-set scans at ``epoch`` of ``layers`` (default: every conv layer), all
        missing layers in one pass; None for an unreadable or diverged epoch."""
        names = list(dict.fromkeys(self.conv_layers if layers is None else layers))
        for name in names:
            self._check_layer(name)
        found = {name: self._scans.get((epoch, name)) for name in names}
        todo = [name for name, scan in found.items() if scan is None]
        if todo:
            if self.state_dict(epoch) is None or epoch in self._diverged:
                return None
            # every conv layer rides along: dead fractions then cost nothing more
            todo = list(dict.fromkeys([*todo, *(n for n in self.conv_layers
                                                if (epoch, n) not in self._scans)]))
            with self._compute:
                probe = self._use(epoch)
                if probe is None:
                    return None
                fresh = top_k_many(probe, self.images, todo, 1, batch_size=self.batch_size)
            for name, scan in fresh.items():
                self._scans.put((epoch, name), scan, tensor_bytes(scan) + 256)
                if name in found:
                    found[name] = scan
        return {name: scan for name, scan in found.items() if scan is not None}

    def cells(self, epoch: int, layer: str, units: Sequence[int]) -> list[EvolutionCell] | None:
        """The strip cells of ``units`` of ``layer`` at ``epoch`` (cached per unit); None for
        an unreadable epoch. A diverged epoch gives cells that name the problem."""
        self._check_layer(layer)
        unit_list = self._check_units(layer, units)
        keys: list[Hashable] = [(epoch, layer, u) for u in unit_list]
        cached = [self._cells.get(key) for key in keys]
        if all(cell is not None for cell in cached):
            return list(cached)  # type: ignore[arg-type]
        if self.state_dict(epoch) is None:
            return None
        dims = len(self.channels_shape(layer)) - 1
        if epoch in self._diverged:
            problem = self._diverged[epoch]
            return [invalid_cell(int(self.images.shape[1]), dims, problem) for _ in unit_list]
        scan = (self.scans(epoch, [layer]) or {}).get(layer)
        if scan is None:
            return None
        missing = sorted((i for i, cell in enumerate(cached) if cell is None),
                         key=lambda i: int(scan.indices[unit_list[i], 0]))  # one pass per image
        with self._compute:
            probe = self._use(epoch)
            if probe is None:
                return None
            for i in missing:
                cell = evolution_cell(probe, self.images, scan, unit_list[i])
                cached[i] = self._cells.put(keys[i], cell, cell.nbytes)
        return list(cached)  # type: ignore[arg-type]

    def strip(self, layer: str, units: Sequence[int], *, epochs: Sequence[int] | None = None,
              progress: bool = False,
              callback: Callable[[int, int], bool | None] | None = None) -> EvolutionStrip | None:
        """The Fig. 4 strip of ``units`` of ``layer`` over the saved epochs that load.

        Parameters
        ----------
        layer : str
            Layer name (see :attr:`channels`).
        units : sequence of int
            Units to follow, one strip row each.
        epochs : sequence of int, optional
            Which saved epochs (default all); unreadable ones are left out.
        progress : bool
            Show a tqdm progress bar over the epochs.
        callback : callable, optional
            ``callback(epochs done, epochs)`` after each epoch; returning False stops, and the
            strip then holds the epochs done so far.

        Returns
        -------
        EvolutionStrip or None
            None when no epoch could be computed (all unreadable, or stopped before the first).
        """
        self._check_layer(layer)
        unit_list = self._check_units(layer, units)
        wanted = list(self.epochs if epochs is None else epochs)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(wanted), desc=f"evolution {layer}", unit="epoch")
        rows: list[tuple[int, EvolutionRow]] = []
        try:
            for done, epoch in enumerate(wanted, start=1):
                cells = self.cells(epoch, layer, unit_list)
                if cells is not None:
                    rows.append((epoch, EvolutionRow.from_cells(cells)))
                if bar is not None:
                    bar.update(1)
                if callback is not None and callback(done, len(wanted)) is False:
                    break
        finally:
            if bar is not None:
                bar.close()
        return assemble_strip(layer, unit_list, rows) if rows else None

    def dead(self, epochs: Sequence[int] | None = None) -> Curves:
        """``{conv layer: (epochs, fraction of units never above zero on the probe set)}``.

        NaN at a diverged epoch; unreadable epochs are left out.
        """
        xs: list[int] = []
        columns: list[dict[str, float]] = []
        for epoch in self.epochs if epochs is None else epochs:
            scans = self.scans(epoch)
            if scans is None and epoch not in self._diverged:
                continue
            xs.append(epoch)
            columns.append({name: scan.dead_fraction() for name, scan in (scans or {}).items()})
        return {name: (list(xs), [c.get(name, float("nan")) for c in columns])
                for name in self.conv_layers}

    def weight_change(self) -> Curves:
        """``{conv layer: (epochs, ||W_e - W_prev|| / ||W_e||)}`` between consecutive readable
        saved epochs (NaN where either is non-finite); streams over the epochs once, then kept.

        The change is between consecutive *saved* epochs, as saved; divide by the epoch gap for
        a per-epoch rate when saves are unevenly spaced.
        """
        if self._weight_change is not None:
            return self._weight_change
        previous: dict[str, torch.Tensor] | None = None
        xs: list[int] = []
        values: dict[str, list[float]] = {name: [] for name in self.conv_layers}
        for epoch in self.epochs:
            state = self.state_dict(epoch)
            if state is None:
                continue
            current = {name: state[key] for name, key in self.conv_keys.items()}
            if previous is not None:
                xs.append(epoch)
                for name in self.conv_layers:
                    values[name].append(weight_change_between(previous[name], current[name]))
            previous = current
        self._weight_change = {name: (list(xs), values[name]) for name in self.conv_layers}
        return self._weight_change

    # ------------------------------------------------------------------ memory

    @property
    def cache_bytes(self) -> dict[str, int]:
        """Bytes held now by each cache: ``{"states", "scans", "cells"}``."""
        return {"states": self._states.nbytes, "scans": self._scans.nbytes,
                "cells": self._cells.nbytes}

    @property
    def cache_limits(self) -> dict[str, int]:
        """The bound in bytes of each cache (see the class notes)."""
        return {"states": self._states.limit, "scans": self._scans.limit,
                "cells": self._cells.limit}

    def clear(self) -> None:
        """Drop every cached state dict, scan and cell."""
        for cache in (self._states, self._scans, self._cells):
            cache.clear()

    def __repr__(self) -> str:
        return (f"SeriesAnalysis(epochs={self.epochs}, probe_size={self.probe_size}, "
                f"cache_bytes={self.cache_bytes})")

    # ------------------------------------------------------------------ internals

    def channels_shape(self, layer: str) -> tuple[int, ...]:
        """Per-sample output shape of ``layer`` (``(C, H, W)`` or ``(F,)``)."""
        return next(tuple(info.shape or ()) for info in self.layers if info.name == layer)

    def _check_layer(self, layer: str) -> None:
        if layer not in self.channels:
            shown = ", ".join(repr(n) for n in list(self.channels)[:10])
            msg = f"layer {layer!r} is not a layer of this model with units; choose one of {shown}"
            raise InvalidOptionError(msg)

    def _check_units(self, layer: str, units: Sequence[int]) -> list[int]:
        channels = self.channels[layer]
        try:
            unit_list = [int(u) for u in units]
        except (TypeError, ValueError) as exc:
            msg = f"units must be a list of ints, got {units!r}"
            raise InvalidOptionError(msg) from exc
        bad = [u for u in unit_list if not 0 <= u < channels]
        if bad or not unit_list:
            msg = (f"units {unit_list!r} do not fit layer {layer!r}: give one or more of "
                   f"0..{channels - 1}")
            raise InvalidOptionError(msg)
        return unit_list

    def _first_model(self) -> tuple[nn.Module, int]:
        """Read the first epoch that loads: its module becomes the working model (each
        computation copies an epoch's weights into it) and its weights the first cached
        state dict."""
        for epoch in self.epochs:
            try:
                module = self.series.model(epoch)
            except DeepVisError as exc:
                self._failures[epoch] = str(exc)
                continue
            self.loads += 1
            state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            report = nonfinite_report(state)
            if report:
                self._diverged[epoch] = report
            self._states.put(epoch, state)
            return module.eval(), epoch
        listed = "; ".join(f"epoch {e}: {why}" for e, why in self._failures.items())
        msg = f"no checkpoint of the series loads: {listed}"
        raise CheckpointError(msg)

    def _use(self, epoch: int) -> Probe | None:
        """The probe of the working model carrying ``epoch``'s weights (copied in place, so
        the module tree never changes); None if the epoch cannot be read. Call with
        ``self._compute`` held."""
        state = self.state_dict(epoch)
        if state is None:
            return None
        if self._loaded != epoch:
            self._loaded = None
            with torch.no_grad():
                self._work.load_state_dict(state, strict=True)
            self._loaded = epoch
        return self._probe

    def _fit(self, state: dict[str, torch.Tensor], epoch: int) -> dict[str, torch.Tensor]:
        """``state`` with the skeleton's keys and dtypes, or a CheckpointError naming the gap."""
        missing = sorted(set(self._dtypes) - set(state))
        unexpected = sorted(set(state) - set(self._dtypes))
        if missing or unexpected:
            msg = (f"the checkpoint of epoch {epoch} does not fit the model: missing keys "
                   f"{missing[:5]}, unexpected keys {unexpected[:5]}")
            raise CheckpointError(msg)
        # own, aligned storage: a view into a file's buffer (safetensors) can make oneDNN pick
        # other kernels, so results would differ in the last bits from the series' own model
        # (keys in the model's order, so reports name the first layers first)
        return {k: (v.detach() if v.dtype == dtype or not v.is_floating_point()
                    else v.detach().to(dtype)).clone()
                for k, dtype in self._dtypes.items() if (v := state[k]) is not None}

    def _module(self, state: dict[str, torch.Tensor]) -> nn.Module:
        """A copy of the skeleton carrying ``state``'s tensors (assigned, not copied)."""
        module = copy.deepcopy(self._skeleton)
        try:
            module.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as exc:
            msg = f"the checkpoint's weights do not fit the model: {str(exc)[:400]}"
            raise CheckpointError(msg) from exc
        return module.eval()


def _skeleton(module: nn.Module, keys: set[str]) -> nn.Module:
    """``module`` with every state-dict tensor replaced by a meta tensor (no memory), so that
    copying it is cheap; tensors outside the state dict (non-persistent buffers) stay."""
    skeleton = copy.deepcopy(module)
    for name, sub in skeleton.named_modules():
        prefix = f"{name}." if name else ""
        for key, param in list(sub._parameters.items()):
            if param is not None and prefix + key in keys:
                sub._parameters[key] = nn.Parameter(torch.empty_like(param, device="meta"),
                                                    requires_grad=param.requires_grad)
        for key, buffer in list(sub._buffers.items()):
            if buffer is not None and prefix + key in keys:
                sub._buffers[key] = torch.empty_like(buffer, device="meta")
    return skeleton
