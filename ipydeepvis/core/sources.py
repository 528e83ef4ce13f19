"""Data sources of a scan: any collection of images as batches of (data-set indices, images).

A top-k scan records *which* image of a data set excited a unit, so every image it sees must
carry its index in the data set. :class:`DataSource` gives one view of everything a user may
hold: a tensor ``(N, C, H, W)``, a list, a map-style ``Dataset`` yielding an image or
``(image, label, ...)`` (one with a ``batch(indices)`` method, like
:class:`~ipydeepvis.data.Shapes`, is asked for whole batches), or a ``DataLoader``, whose
batch sampler, workers and collate function are used as given (an index travels with each
item). Images that are not tensors (PIL images, arrays) go through ``preprocess``; without one,
or when sizes differ, the error says so and how to fix it. Nothing here runs a model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset
from torch.utils.data._utils.collate import default_collate

from ..errors import InvalidInputError

__all__ = ["DataSource", "Preprocess"]

Preprocess = Callable[[Any], torch.Tensor]

_FINGERPRINT_ITEMS = 4


class DataSource:
    """A uniform view of a scan's data: its length, single images, and indexed batches.

    Parameters
    ----------
    data : Tensor, sequence, Dataset or DataLoader
        Images ``(C, H, W)`` or items ``(image, label, ...)``; see the module docstring.
    preprocess : callable, optional
        Turns an item's image into a float tensor ``(C, H, W)`` (e.g. a torchvision weights'
        ``transforms()``); applied to every image that is not a tensor already.

    Raises
    ------
    InvalidInputError
        For an object that has no length or no indices (an ``IterableDataset``), or a
        ``DataLoader`` without automatic batching.
    """

    def __init__(self, data: Any, preprocess: Preprocess | None = None) -> None:
        self.data = data
        self.preprocess = preprocess
        self.loader = data if isinstance(data, DataLoader) else None
        items = self.loader.dataset if self.loader is not None else data
        if isinstance(items, IterableDataset):
            msg = (
                f"{type(items).__name__} is an IterableDataset: its items have no data-set "
                "index to record; use a map-style Dataset (with __getitem__ and __len__)"
            )
            raise InvalidInputError(msg)
        if self.loader is not None and self.loader.batch_sampler is None:
            msg = (
                "the DataLoader has batch_size=None (no automatic batching); give it a "
                "batch_size so that the scan receives batches"
            )
            raise InvalidInputError(msg)
        self.items = items
        try:
            self.length = int(items.shape[0]) if isinstance(items, torch.Tensor) else len(items)
        except TypeError as exc:
            msg = (
                f"dataset must be a tensor (N, C, H, W), a sequence, a torch Dataset or a "
                f"DataLoader, got {type(data).__name__}"
            )
            raise InvalidInputError(msg) from exc
        self._shape: tuple[int, ...] | None = None
        self._first_index = 0

    # ------------------------------------------------------------------ single images

    def image(self, index: int) -> torch.Tensor:
        """Image ``index`` as the scan sees it: a float tensor ``(C, H, W)``."""
        if not 0 <= index < self.length:
            msg = f"image index {index!r} is out of range: the data set has {self.length} images"
            raise InvalidInputError(msg)
        if isinstance(self.items, torch.Tensor):
            return self._check(self.items[index], index)
        return self._convert(self.items[index], index)

    def fingerprint(self) -> str:
        """A short hash of the data set's length and its first images (to refuse resuming or
        merging across different data)."""
        digest = hashlib.blake2b(digest_size=12)
        digest.update(str(self.length).encode())
        for index in range(min(_FINGERPRINT_ITEMS, self.length)):
            image = self.image(index)
            digest.update(str(tuple(image.shape)).encode())
            digest.update(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------------ batches

    def batches(self, order: torch.Tensor, batch_size: int, *, workers: int = 0,
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(indices (B,), images (B, C, H, W))`` for the data-set indices in ``order``.

        A ``DataLoader`` keeps its own batches, sampler and workers (``order`` then only
        filters: its indices not in ``order`` are skipped) and ignores ``batch_size`` and
        ``workers``. Other sources are read in ``order``, ``batch_size`` images at a time, by
        ``workers`` loader processes when ``workers > 0``.

        ``shard=(rank, world)`` keeps every ``world``-th batch starting at ``rank``: the ranks
        of a distributed scan split the *batches* of one single-process scan, so every image
        is computed in the same batch as without sharding (a model's output can differ in
        its last bits with the batch it is computed in).
        """
        rank, world = shard
        if self.loader is not None:
            yield from self._loader_batches(order, rank, world)
            return
        chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        chunks = chunks[rank::world]
        if isinstance(self.items, torch.Tensor):
            for chunk in chunks:
                yield chunk, self._check_batch(self.items[chunk], chunk)
            return
        if workers > 0 and chunks:
            loader = DataLoader(_Indexed(self.items), batch_sampler=[c.tolist() for c in chunks],
                                num_workers=workers, collate_fn=_Collate(self, None))
            yield from loader
            return
        fast = getattr(self.items, "batch", None)  # Shapes renders a whole batch at once
        for chunk in chunks:
            if callable(fast):
                images = fast(chunk.tolist())
                images = images[0] if isinstance(images, (tuple, list)) else images
                yield chunk, self._check_batch(images, chunk)
            else:
                images = [self._convert(self.items[i], i) for i in chunk.tolist()]
                yield chunk, self._stack(images, chunk)

    def _loader_batches(self, order: torch.Tensor, rank: int, world: int
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        loader = self.loader
        assert loader is not None
        if world > 1 and isinstance(loader.sampler, DistributedSampler):
            msg = (
                "the DataLoader has a DistributedSampler, but a distributed scan shards the "
                "data itself (every rank takes every world-th batch); give it the plain "
                "DataLoader, with a sampler that yields the same batches on every rank"
            )
            raise InvalidInputError(msg)
        wanted = torch.zeros(self.length, dtype=torch.bool)
        wanted[order] = True
        user_collate = None if loader.collate_fn is default_collate else loader.collate_fn
        kwargs: dict[str, Any] = {}
        if loader.num_workers > 0:
            kwargs = {"prefetch_factor": loader.prefetch_factor,
                      "multiprocessing_context": loader.multiprocessing_context,
                      "worker_init_fn": loader.worker_init_fn, "timeout": loader.timeout}
        indexed = DataLoader(
            _Indexed(loader.dataset),
            batch_sampler=_Filtered(loader.batch_sampler, wanted, rank, world),
            num_workers=loader.num_workers,
            collate_fn=_Collate(self, user_collate),
            pin_memory=loader.pin_memory,
            generator=loader.generator,
            **kwargs,
        )
        yield from indexed

    # ------------------------------------------------------------------ conversion

    def _convert(self, item: Any, index: int) -> torch.Tensor:
        """The image of one data-set item, preprocessed and checked."""
        image = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(image, torch.Tensor):
            if self.preprocess is None:
                msg = (
                    f"item {index} of the data set is a {type(image).__module__}."
                    f"{type(image).__name__}, not a tensor; give preprocess= (e.g. a "
                    "torchvision weights' transforms(), or transforms.ToTensor()) to convert it"
                )
                raise InvalidInputError(msg)
            try:
                image = self.preprocess(image)
            except Exception as exc:
                msg = f"preprocess raised {type(exc).__name__} on item {index}: {exc}"
                raise InvalidInputError(msg) from exc
            if not isinstance(image, torch.Tensor):
                msg = (f"preprocess must return a torch.Tensor, it returned "
                       f"{type(image).__name__} for item {index}")
                raise InvalidInputError(msg)
        return self._check(image, index)

    def _check(self, image: torch.Tensor, index: int) -> torch.Tensor:
        """One image: floating point, ``(C, H, W)``, the same shape as every other."""
        if not image.is_floating_point():
            msg = (
                f"image {index} has dtype {image.dtype}, expected a floating-point image; for "
                "0..255 images give preprocess= that converts (e.g. x.float() / 255 plus the "
                "model's normalisation)"
            )
            raise InvalidInputError(msg)
        if image.dim() != 3:
            msg = f"image {index} has shape {tuple(image.shape)}; expected (C, H, W)"
            raise InvalidInputError(msg)
        self._same_shape(tuple(image.shape), index)
        return image

    def _same_shape(self, shape: tuple[int, ...], index: int) -> None:
        if self._shape is None:
            self._shape, self._first_index = shape, index
        elif shape != self._shape:
            msg = (
                f"image {index} has shape {shape} but image {self._first_index} has "
                f"{self._shape}: a scan needs one image size; give preprocess= that resizes "
                "(e.g. transforms.Resize(s) + transforms.CenterCrop(s))"
            )
            raise InvalidInputError(msg)

    def _check_batch(self, images: Any, indices: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            msg = f"a batch of images must be a tensor (B, C, H, W), got {got}"
            raise InvalidInputError(msg)
        if not images.is_floating_point():
            self._check(images[0], int(indices[0]))
        self._same_shape(tuple(images.shape[1:]), int(indices[0]))
        return images

    def _stack(self, images: Sequence[torch.Tensor], indices: torch.Tensor) -> torch.Tensor:
        return torch.stack(list(images)) if images else torch.zeros(0)


class _Indexed(torch.utils.data.Dataset):
    """A data set whose items carry their index: ``(index, item)``."""

    def __init__(self, items: Any) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.items[index]


class _Filtered:
    """A batch sampler that drops the indices a scan does not want (done already) and keeps
    this rank's share of the remaining batches."""

    def __init__(self, batch_sampler: Any, wanted: torch.Tensor, rank: int, world: int
                 ) -> None:
        self.batch_sampler = batch_sampler
        self.wanted = wanted.numpy()
        self.rank, self.world = rank, world

    def __iter__(self) -> Iterator[list[int]]:
        count = 0
        for batch in self.batch_sampler:
            kept = [int(i) for i in batch if self.wanted[int(i)]]
            if kept:
                if count % self.world == self.rank:
                    yield kept
                count += 1

    def __len__(self) -> int:
        return len(self.batch_sampler)


class _Collate:
    """Collate ``(index, item)`` pairs into ``(indices, images)``, in loader workers too.

    With the user's own ``collate_fn`` the items go through it and the images are its first
    output; otherwise each image is converted (``preprocess``) and checked, so PIL images and
    mixed sizes get a clear error rather than ``default_collate``'s.
    """

    def __init__(self, source: DataSource, user_collate: Callable[[list[Any]], Any] | None
                 ) -> None:
        self.source = source
        self.user_collate = user_collate

    def __call__(self, pairs: list[tuple[int, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        indices = torch.tensor([i for i, _ in pairs], dtype=torch.long)
        if self.user_collate is None:
            images = [self.source._convert(item, i) for i, item in pairs]
            return indices, self.source._stack(images, indices)
        try:
            batch = self.user_collate([item for _, item in pairs])
        except Exception as exc:
            msg = f"the DataLoader's collate_fn raised {type(exc).__name__}: {exc}"
            raise InvalidInputError(msg) from exc
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(images, torch.Tensor):
            msg = (
                f"the DataLoader's collate_fn gave a {type(images).__module__}."
                f"{type(images).__name__} where a batch tensor (B, C, H, W) (or a tuple "
                "starting with one) was expected; make it stack tensors, or keep the default "
                "collate_fn and give preprocess="
            )
            raise InvalidInputError(msg)
        return indices, self.source._check_batch(images, indices)


def as_numpy_bytes(tensor: torch.Tensor) -> bytes:
    """Raw bytes of a tensor of any dtype (bfloat16 included), for hashing."""
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return np.asarray(flat.view(torch.uint8)).tobytes()
