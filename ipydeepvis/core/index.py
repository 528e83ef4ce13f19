"""The top-k index: every scanned layer's :class:`~ipydeepvis.core.topk.TopK`, and its file.

A :class:`TopKIndex` is what a data-set scan produces and what the dashboard reads: per layer
the values, data-set indices and positions of every unit's top-k, plus what it was computed
from (a fingerprint of the model's weights, the data set's length and a fingerprint of its
first images) and which images are done. Two indices over disjoint parts of the same data
with the same model merge exactly; a different model or data set is refused with a clear
error, when merging and when resuming.

File format (a directory): ``index.safetensors`` holds the tensors
(``<layer>/values`` float32 ``(units, k)``, ``<layer>/indices`` int64, ``<layer>/positions``
int64 ``(units, k, d)``, ``done`` bool ``(length,)``) and, in its metadata under
``"ipydeepvis"``, the JSON header; ``index.json`` is a readable copy of that header. The
safetensors file is replaced atomically, so a killed writer leaves the previous index whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from ..errors import (
    CheckpointError,
    InvalidInputError,
    InvalidOptionError,
    LayerNotFoundError,
    close_matches,
)
from .shadow import unwrap_model
from .sources import as_numpy_bytes
from .topk import Entry, TopK

__all__ = ["FORMAT", "TopKIndex", "model_fingerprint"]

FORMAT = "ipydeepvis.topk/1"
TENSORS = "index.safetensors"
HEADER = "index.json"


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's weights and buffers (names, dtypes, shapes and bytes)."""
    digest = hashlib.blake2b(digest_size=12)
    for name, tensor in unwrap_model(model).state_dict().items():
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(as_numpy_bytes(tensor))
    return digest.hexdigest()


@dataclass(frozen=True)
class TopKIndex:
    """The top-k of every unit of several layers over one data set, with its provenance.

    Attributes
    ----------
    scans : dict of str to TopK
        Per layer, in the order asked for.
    k : int
        Images kept per unit.
    length : int
        Number of images in the data set.
    done : Tensor
        ``(length,)`` bool: the images scanned so far (all True when complete).
    model : str
        Fingerprint of the weights (:func:`model_fingerprint`).
    data : str
        Fingerprint of the data set (its length and first images).
    epoch : int or None
        The checkpoint epoch the weights came from, when known.
    """

    scans: dict[str, TopK]
    k: int
    length: int
    done: torch.Tensor
    model: str
    data: str
    epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ reading

    @property
    def layers(self) -> list[str]:
        """Layer names, in the order scanned."""
        return list(self.scans)

    @property
    def seen(self) -> int:
        """Number of images scanned."""
        return int(self.done.sum())

    @property
    def complete(self) -> bool:
        """True when every image of the data set was scanned."""
        return bool(self.done.all())

    def __getitem__(self, layer: str) -> TopK:
        if layer not in self.scans:
            hints = close_matches(layer, self.scans) if isinstance(layer, str) else []
            hint = f"; did you mean {', '.join(map(repr, hints))}?" if hints else ""
            msg = (f"layer {layer!r} is not in this index{hint} (it holds "
                   f"{', '.join(map(repr, self.scans))})")
            raise LayerNotFoundError(msg)
        return self.scans[layer]

    def __iter__(self) -> Iterator[str]:
        return iter(self.scans)

    def entries(self, layer: str, unit: int) -> list[Entry]:
        """The top images of ``unit`` of ``layer``, strongest first: ``(index, value,
        position)`` rows (fewer than ``k`` when fewer images were scanned)."""
        return self[layer].entries(unit)

    def patches(self, model: Any, data: Any, layer: str, unit: int, **options: Any) -> Any:
        """Receptive-field patches of ``unit``'s top images
        (:func:`~ipydeepvis.core.topk_images.patches`)."""
        from .topk_images import patches

        return patches(model, data, self[layer], unit, **options)

    def projections(self, probe: Any, data: Any, layer: str, unit: int, **options: Any) -> Any:
        """Projections of ``unit`` from each top image's position, cropped like the patches
        (:func:`~ipydeepvis.core.topk_images.projections`)."""
        from .topk_images import projections

        return projections(probe, data, self[layer], unit, **options)

    def for_epoch(self, epoch: int) -> TopKIndex:
        """This index if it was computed for ``epoch``; an error naming its epoch otherwise."""
        if self.epoch != epoch:
            msg = f"this index was computed for epoch {self.epoch!r}, not epoch {epoch!r}"
            raise InvalidOptionError(msg)
        return self

    def __repr__(self) -> str:
        return (f"TopKIndex(layers={self.layers}, k={self.k}, seen={self.seen}/{self.length}, "
                f"model={self.model}, data={self.data})")

    # ------------------------------------------------------------------ combining

    def check_compatible(self, *, model: str, data: str, length: int,
                         layers: list[str] | None = None, k: int | None = None,
                         what: str = "merge with") -> None:
        """Raise :class:`CheckpointError` unless model, data, layers and k all match."""
        problems = []
        if model != self.model:
            problems.append(f"the model's weights differ (fingerprint {model} vs {self.model})")
        if length != self.length or data != self.data:
            problems.append(f"the data set differs ({length} images, fingerprint {data}; the "
                            f"index has {self.length} images, fingerprint {self.data})")
        if layers is not None and list(layers) != self.layers:
            problems.append(f"the layers differ ({list(layers)} vs {self.layers})")
        if k is not None and k != self.k:
            problems.append(f"k differs ({k} vs {self.k})")
        if problems:
            msg = f"cannot {what} this index: {'; '.join(problems)}"
            raise CheckpointError(msg)

    def merge(self, other: TopKIndex) -> TopKIndex:
        """Both indices together: equal to one scan over both parts (which must not overlap).

        Raises
        ------
        CheckpointError
            Different model, data set, layers or k.
        InvalidInputError
            Both indices covered the same image.
        """
        if not isinstance(other, TopKIndex):
            msg = f"merge takes another TopKIndex, got {type(other).__name__}"
            raise InvalidInputError(msg)
        self.check_compatible(model=other.model, data=other.data, length=other.length,
                              layers=other.layers, k=other.k)
        scans = {name: scan.merge(other.scans[name]) for name, scan in self.scans.items()}
        return replace(self, scans=scans, done=self.done | other.done)

    def equal(self, other: TopKIndex) -> bool:
        """Exactly the same rankings, images done and provenance."""
        return (self.layers == other.layers and self.k == other.k
                and (self.model, self.data, self.length) == (other.model, other.data,
                                                            other.length)
                and torch.equal(self.done, other.done)
                and all(self.scans[n].equal(other.scans[n]) for n in self.layers))

    # ------------------------------------------------------------------ files

    def header(self) -> dict[str, Any]:
        """The JSON header stored with the tensors."""
        from .. import __version__

        return {
            "format": FORMAT,
            "package_version": __version__,
            "k": self.k,
            "layers": [{"name": n, "shape": list(s.shape), "seen": s.seen}
                       for n, s in self.scans.items()],
            "model": {"fingerprint": self.model},
            "data": {"length": self.length, "fingerprint": self.data},
            "seen": self.seen,
            "complete": self.complete,
            "epoch": self.epoch,
            "extra": self.extra,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the index to the directory ``path`` (created if needed); returns it."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {"done": self.done.contiguous()}
        for name, scan in self.scans.items():
            tensors[f"{name}/values"] = scan.values.contiguous()
            tensors[f"{name}/indices"] = scan.indices.contiguous()
            tensors[f"{name}/positions"] = scan.positions.contiguous()
        header = json.dumps(self.header(), indent=2)
        _atomic(folder / TENSORS, lambda tmp: save_file(tensors, tmp,
                                                       metadata={"ipydeepvis": header}))
        _atomic(folder / HEADER, lambda tmp: Path(tmp).write_text(header + "\n"))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TopKIndex:
        """Read an index written by :meth:`save` (a directory, or its ``index.safetensors``).

        Raises
        ------
        CheckpointError
            A missing, foreign or damaged file.
        """
        file = Path(path)
        if file.is_dir():
            file = file / TENSORS
        if not file.is_file():
            msg = f"{str(file)!r} does not exist: no top-k index there"
            raise CheckpointError(msg)
        try:
            with safe_open(str(file), framework="pt") as handle:
                metadata = handle.metadata() or {}
            tensors = load_file(str(file))
            header = json.loads(metadata["ipydeepvis"])
            if header.get("format") != FORMAT:
                msg = f"format {header.get('format')!r}, expected {FORMAT!r}"
                raise ValueError(msg)
            length = int(header["data"]["length"])
            done = tensors["done"].bool()
            scans = {}
            for layer in header["layers"]:
                name = str(layer["name"])
                scans[name] = TopK(name, tensors[f"{name}/values"], tensors[f"{name}/indices"],
                                   tensors[f"{name}/positions"], int(layer["seen"]), done,
                                   tuple(int(s) for s in layer["shape"]))
            return cls(scans, int(header["k"]), length, done,
                       str(header["model"]["fingerprint"]), str(header["data"]["fingerprint"]),
                       header.get("epoch"), dict(header.get("extra") or {}))
        except (SafetensorError, OSError, KeyError, TypeError, ValueError) as exc:
            msg = (f"{str(file)!r} is not a readable ipydeepvis top-k index "
                   f"({type(exc).__name__}: {exc})")
            raise CheckpointError(msg) from exc

    @classmethod
    def from_scans(cls, scans: Mapping[str, TopK], *, k: int, length: int, model: str,
                   data: str, epoch: int | None = None) -> TopKIndex:
        """Assemble an index from per-layer scans that share one ``done`` mask."""
        first = next(iter(scans.values()))
        done = (first.done if first.done is not None
                else torch.zeros(length, dtype=torch.bool))
        shared = {name: replace(scan, done=done) for name, scan in scans.items()}
        return cls(shared, k, length, done, model, data, epoch)


def _atomic(target: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename over ``target``."""
    handle, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
