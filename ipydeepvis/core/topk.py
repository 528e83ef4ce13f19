"""The images a unit likes best: a streaming top-k scan over a data set (Zeiler & Fergus Fig. 2).

For every unit of one layer the scan keeps the ``k`` images with the strongest activation (each
image counted once, at its strongest position), running through the data in batches with the
forward pass stopped at that layer. Memory stays ``O(units * k)`` whatever the data set size, so
the same code serves a few hundred probe images and a large data set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import InvalidInputError, InvalidOptionError
from .probe import Probe

__all__ = ["TopK", "top_k", "top_k_many"]


@dataclass(frozen=True)
class TopK:
    """The ``k`` strongest images of every unit of one layer, strongest first.

    Attributes
    ----------
    layer : str
        The layer scanned.
    values : Tensor
        ``(units, k)`` activation values (``-inf`` where fewer than ``k`` images were seen).
    indices : Tensor
        ``(units, k)`` int64 indices of the images in the data set (``-1`` where none).
    positions : Tensor
        ``(units, k, 2)`` int64 ``(row, column)`` of each image's strongest activation
        (``(units, k, 0)`` for layers without a spatial map).
    seen : int
        Number of images scanned (less than the data set when the scan was stopped).
    """

    layer: str
    values: torch.Tensor
    indices: torch.Tensor
    positions: torch.Tensor
    seen: int

    @property
    def k(self) -> int:
        return int(self.values.shape[1])

    def dead_fraction(self) -> float:
        """Fraction of units that never exceeded zero on any image scanned."""
        return float((self.values[:, 0] <= 0).float().mean())


def _batches(data: Any, batch_size: int, limit: int | None) -> Iterator[torch.Tensor]:
    """Image batches ``(B, C, H, W)`` from a tensor, a sequence or a data set of images or
    ``(image, label)`` pairs; a data set with a ``batch(indices) -> (images, labels)`` method
    (like :class:`~ipydeepvis.data.Shapes`) is asked for whole batches."""
    stop = _count(data, limit)
    if isinstance(data, torch.Tensor):
        for start in range(0, stop, batch_size):
            yield data[start:min(start + batch_size, stop)]
        return
    fast = getattr(data, "batch", None)  # data sets that render many images at once (Shapes)
    for start in range(0, stop, batch_size):
        if callable(fast):
            yield fast(list(range(start, min(start + batch_size, stop))))[0]
            continue
        items = [data[i] for i in range(start, min(start + batch_size, stop))]
        images = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
        yield torch.stack(images)


def _count(data: Any, limit: int | None) -> int:
    """Number of images to scan."""
    try:
        total = data.shape[0] if isinstance(data, torch.Tensor) else len(data)
    except TypeError as exc:
        msg = (f"dataset must be a tensor (N, C, H, W), a sequence or a torch Dataset, got "
               f"{type(data).__name__}")
        raise InvalidInputError(msg) from exc
    return total if limit is None else min(limit, total)


def top_k(
    probe: Probe,
    dataset: Any,
    layer: str,
    k: int = 9,
    *,
    batch_size: int = 64,
    limit: int | None = None,
    progress: bool = False,
    callback: Callable[[int, int], bool | None] | None = None,
) -> TopK:
    """Scan ``dataset`` and keep, for every unit of ``layer``, its ``k`` strongest images.

    Parameters
    ----------
    probe : Probe
        The model to scan.
    dataset : Tensor, sequence or Dataset
        Images ``(C, H, W)`` (or ``(image, label)`` pairs), preprocessed for the model.
    layer : str
        Layer name (see ``probe.layers``).
    k : int
        Images kept per unit.
    batch_size : int
        Images per forward pass.
    limit : int, optional
        Scan only the first ``limit`` images (a probe set).
    progress : bool
        Show a tqdm progress bar (``tqdm.auto``: a widget in notebooks).
    callback : callable, optional
        ``callback(done, total)`` after every batch; returning False stops the scan early
        (the result then has ``seen < total``).

    Returns
    -------
    TopK
    """
    (result,) = top_k_many(probe, dataset, [layer], k, batch_size=batch_size, limit=limit,
                           progress=progress, callback=callback).values()
    return result


def top_k_many(
    probe: Probe,
    dataset: Any,
    layers: Sequence[str],
    k: int = 9,
    *,
    batch_size: int = 64,
    limit: int | None = None,
    progress: bool = False,
    callback: Callable[[int, int], bool | None] | None = None,
) -> dict[str, TopK]:
    """:func:`top_k` for several layers in one pass over the data (one forward per batch)."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        msg = f"k must be a positive int, got {k!r}"
        raise InvalidOptionError(msg)
    if not isinstance(batch_size, int) or batch_size < 1:
        msg = f"batch_size must be a positive int, got {batch_size!r}"
        raise InvalidOptionError(msg)
    total = _count(dataset, limit)
    if total == 0:
        msg = "the data set is empty: nothing to scan"
        raise InvalidInputError(msg)
    names = [probe.layer(layer).name for layer in layers]
    running = {name: _Running(k) for name in names}
    seen = 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"top-{k} {', '.join(names)}", unit="img")
    try:
        for batch in _batches(dataset, batch_size, limit):
            best = probe.reduce_batch(batch, names, _strongest)
            for name in names:
                running[name].update(*best[name], seen)
            seen += batch.shape[0]
            if bar is not None:
                bar.update(batch.shape[0])
            if callback is not None and callback(seen, total) is False:
                break
    finally:
        if bar is not None:
            bar.close()
    return {name: running[name].result(name, probe.layer(name).shape or (), seen)
            for name in names}


def _strongest(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's strongest activation per unit and its flat position, ``(B, C)`` each."""
    flat = output.flatten(2) if output.dim() > 2 else output[:, :, None]
    best, where = flat.max(dim=2)
    return best.float().cpu(), where.cpu()


class _Running:
    """Per-unit running top-k of (value, image index, flat position); each image once."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.values: torch.Tensor | None = None
        self.indices = torch.zeros(0, dtype=torch.long)
        self.where = torch.zeros(0, dtype=torch.long)

    def update(self, best: torch.Tensor, where: torch.Tensor, offset: int) -> None:
        values, where = best.T, where.T  # (C, B)
        indices = torch.arange(offset, offset + best.shape[0]).expand(best.shape[1], -1)
        if self.values is not None:  # earlier images first: a stable sort keeps them first
            values = torch.cat([self.values, values], dim=1)
            indices = torch.cat([self.indices, indices], dim=1)
            where = torch.cat([self.where, where], dim=1)
        order = values.argsort(dim=1, descending=True, stable=True)[:, :self.k]
        self.values = values.gather(1, order)
        self.indices = indices.gather(1, order)
        self.where = where.gather(1, order)

    def result(self, name: str, shape: tuple[int, ...], seen: int) -> TopK:
        assert self.values is not None
        units, have = self.values.shape
        pad = self.k - have  # fewer images than k
        values = torch.cat([self.values, torch.full((units, pad), float("-inf"))], dim=1)
        indices = torch.cat([self.indices, torch.full((units, pad), -1)], dim=1).long()
        where = torch.cat([self.where, torch.zeros((units, pad), dtype=torch.long)], dim=1)
        if len(shape) >= 2:
            coords = torch.stack([where // shape[-1], where % shape[-1]], dim=2)
            coords = torch.where(indices[:, :, None] >= 0, coords, torch.zeros_like(coords))
        else:
            coords = torch.zeros((units, self.k, 0), dtype=torch.long)
        return TopK(name, values, indices, coords.long(), seen)
