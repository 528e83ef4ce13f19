"""What Zeiler & Fergus's Fig. 2 shows for one unit: its top images' patches and projections.

For each top-k entry of a unit (data-set index, value, position) :func:`patches` crops the
image to the receptive field of the unit at that position
(:class:`~ipydeepvis.core.receptive.ReceptiveField`, measured on the model's own graph), and
:func:`projections` crops the deconvnet (or guided / gradient) projection of the unit from that
position the same way. Crops clipped by the image border are padded with zeros on the clipped
side, so the ``k`` crops of a unit share one size and line up in a grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .probe import Probe
from .receptive import Box, ReceptiveField
from .sources import DataSource, Preprocess
from .topk import Entry, TopK, as_probe, probe_preprocess

__all__ = ["Crops", "patches", "projections"]


@dataclass(frozen=True)
class Crops:
    """Equal-size crops of a unit's top images, strongest first.

    Attributes
    ----------
    images : Tensor
        ``(n, C, h, w)`` float32; zeros where a receptive field leaves the image.
    boxes : list of Box
        Each crop's receptive field in its image (clipped to the image).
    entries : list of Entry
        ``(index, value, position)`` of each crop.
    """

    images: torch.Tensor
    boxes: list[Box]
    entries: list[Entry]


def patches(model: Probe | nn.Module, data: Any, scan: TopK, unit: int, *,
            preprocess: Preprocess | None = None,
            fields: ReceptiveField | None = None) -> Crops:
    """The receptive-field patches of ``unit``'s top images (Fig. 2's left half).

    Parameters
    ----------
    model : Probe or nn.Module
        The scanned model (its structure gives the receptive fields).
    data : Tensor, sequence, Dataset or DataLoader
        The scanned data set (indexed by the entries' data-set indices).
    scan : TopK
        The layer's top-k (``index[layer]``).
    unit : int
        The unit.
    preprocess : callable, optional
        As for the scan.
    fields : ReceptiveField, optional
        Reuse one (its cache) across calls for the same model and input size.
    """
    probe = as_probe(model)
    source = DataSource(data, preprocess or probe_preprocess(probe))
    entries = scan.entries(unit)
    images = [source.image(entry.index) for entry in entries]
    boxes = _boxes(probe, scan, entries, images, fields)
    return Crops(_crop_all(images, boxes), boxes, entries)


def projections(probe: Probe | nn.Module, data: Any, scan: TopK, unit: int, *,
                method: str = "deconvnet", preprocess: Preprocess | None = None,
                fields: ReceptiveField | None = None) -> Crops:
    """The projections of ``unit`` from each top image's position, cropped like
    :func:`patches` (Fig. 2's right half).

    Each entry is projected from its own position (``probe.project(image, layer, unit,
    method=method, position=entry.position)``), one image per pass.
    """
    probe = as_probe(probe)
    source = DataSource(data, preprocess or probe_preprocess(probe))
    entries = scan.entries(unit)
    images = [source.image(entry.index) for entry in entries]
    projected = []
    for image, entry in zip(images, entries, strict=True):
        position: Any = entry.position if entry.position else "max"
        projected.append(probe.project(image, scan.layer, unit, method=method,
                                       position=position)[0])
    boxes = _boxes(probe, scan, entries, images, fields)
    return Crops(_crop_all(projected, boxes), boxes, entries)


def _boxes(probe: Probe, scan: TopK, entries: list[Entry], images: list[torch.Tensor],
           fields: ReceptiveField | None) -> list[Box]:
    if not entries:
        return []
    shape = tuple(images[0].shape)
    if fields is None or fields.input_shape != shape:
        fields = ReceptiveField(probe, shape)
    return fields.boxes(scan.layer, [entry.position for entry in entries])


def _crop_all(images: list[torch.Tensor], boxes: list[Box]) -> torch.Tensor:
    """Crop each image to its box and pad to the largest box: a clipped box (touching the top
    or left border of a larger field) is padded on that side."""
    if not images:
        return torch.zeros(0, 0, 0, 0)
    height = max(box.height for box in boxes)
    width = max(box.width for box in boxes)
    out = torch.zeros(len(images), images[0].shape[0], height, width)
    for row, (image, box) in enumerate(zip(images, boxes, strict=True)):
        crop = image[:, box.top:box.bottom, box.left:box.right].float().cpu()
        top = height - box.height if box.top == 0 else 0
        left = width - box.width if box.left == 0 else 0
        out[row, :, top:top + box.height, left:left + box.width] = crop
    return out
