"""A least-recently-used cache bounded in bytes, for everything ipydeepvis keeps between calls.

Analyses keep results (state dicts of saved epochs, probe-set scans, strip cells) so that moving
a slider back does not recompute them; each such cache is a :class:`ByteLRU` whose bound is in
bytes, so memory stays flat however long a view is used.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any, Generic, TypeVar

import torch

from ..errors import InvalidOptionError

__all__ = ["ByteLRU", "tensor_bytes"]

V = TypeVar("V")


def tensor_bytes(value: Any) -> int:
    """Bytes held by the tensors in ``value`` (a tensor, a mapping or sequence of them, or a
    dataclass with tensor fields); other objects count 0."""
    if isinstance(value, torch.Tensor):
        return value.nelement() * value.element_size()
    if isinstance(value, Mapping):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is not None:
        return sum(tensor_bytes(getattr(value, name)) for name in fields)
    return 0


class ByteLRU(Generic[V]):
    """Keep values up to ``limit`` bytes in total; the least recently used go first.

    Parameters
    ----------
    limit : int
        Bound in bytes (0 keeps nothing). A value larger than the bound is not kept.
    name : str
        What the cache holds (for messages).

    Notes
    -----
    Thread-safe: one lock around each operation.
    """

    def __init__(self, limit: int, name: str = "cache") -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            msg = f"the {name} bound must be a number of bytes >= 0, got {limit!r}"
            raise InvalidOptionError(msg)
        self.limit = limit
        self.name = name
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """Bytes held now (never more than :attr:`limit`)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable) -> V | None:
        """The value kept under ``key`` (now the most recently used), or None."""
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: Hashable, value: V, nbytes: int | None = None) -> V:
        """Keep ``value`` (``nbytes`` defaults to :func:`tensor_bytes`), evicting the least
        recently used values until the total fits the bound; returns ``value``."""
        size = tensor_bytes(value) if nbytes is None else int(nbytes)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.limit:
                return value
            while self._items and self._bytes + size > self.limit:
                _, (_, freed) = self._items.popitem(last=False)
                self._bytes -= freed
            self._items[key] = (value, size)
            self._bytes += size
            return value

    def clear(self) -> None:
        """Drop everything."""
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __repr__(self) -> str:
        return (f"ByteLRU({self.name!r}, {len(self._items)} items, {self._bytes:,} of "
                f"{self.limit:,} bytes)")
