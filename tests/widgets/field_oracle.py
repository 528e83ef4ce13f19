"""What the projection pane shows with ``crop`` on, computed here from first principles.

The receptive field comes from :class:`ipydeepvis.core.receptive.ReceptiveField` (tested on its
own against hand-computed fields); everything after it is literal NumPy written apart from the
package's renderer: the crop of the full-resolution picture, enlarged with nearest-neighbour
sampling until its longer side is 94 px, placed in a 94 px transparent square against the side
away from a clipped image border.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ipydeepvis import Probe, render
from ipydeepvis.core.receptive import Box, ReceptiveField

CROP = 94
PANE = 192
FIELD_COLOR = (0, 229, 255)  # #00e5ff, the seed marker's cyan


def seed_field(model: Any, image: torch.Tensor, layer: str, unit: int, position: Any,
               fields: ReceptiveField | None = None) -> Box:
    """The receptive field of the unit's projection seed on ``image``: at the given position,
    at the first strongest activation ("max"), or the union over the non-zero ones ("all").
    ``model``: a module or a Probe; ``fields``: one to reuse (its cache)."""
    fields = fields or ReceptiveField(model, tuple(image.shape))
    probe = model if isinstance(model, Probe) else Probe(model)
    unit_map = probe.activations(image, [layer])[layer][0][unit]
    if unit_map.dim() == 0:
        return fields.box(layer, ())
    if isinstance(position, tuple):
        return fields.box(layer, position)
    if position == "max":
        flat = int(unit_map.flatten().argmax())
        return fields.box(layer, divmod(flat, unit_map.shape[1]))
    boxes = fields.boxes(layer, [tuple(p) for p in unit_map.nonzero().tolist()])
    return Box(min(b.top for b in boxes), min(b.left for b in boxes),
               max(b.bottom for b in boxes), max(b.right for b in boxes))


def field_frame(picture: npt.NDArray[np.uint8], box: Box,
                size: int = CROP) -> npt.NDArray[np.uint8]:
    """``picture`` ``(H, W, 3)`` cropped to ``box`` and enlarged into a ``size`` px square."""
    height, width = box.height, box.width
    longest = max(height, width)
    out_h, out_w = max(1, round(height * size / longest)), max(1, round(width * size / longest))
    rows = box.top + (np.arange(out_h) * height) // out_h
    cols = box.left + (np.arange(out_w) * width) // out_w
    frame = np.zeros((size, size, 4), np.uint8)

    def offset(spare: int, start: int, end: int, extent: int) -> int:
        if start == 0 and end < extent:
            return spare  # clipped at the top / left: against the bottom / right
        if end == extent and start > 0:
            return 0
        return spare // 2

    y = offset(size - out_h, box.top, box.bottom, picture.shape[0])
    x = offset(size - out_w, box.left, box.right, picture.shape[1])
    frame[y:y + out_h, x:x + out_w, :3] = picture[rows][:, cols, :3]
    frame[y:y + out_h, x:x + out_w, 3] = 255
    return frame


def input_ring(box: Box, image_size: tuple[int, int],
               size: int = PANE) -> tuple[int, int, int, int] | None:
    """``(x, y, w, h)`` of the canvas pixels that show the field's rows and columns on the
    input pane (the image enlarged to ``size`` px by nearest-neighbour sampling); None for a
    field covering the whole image."""
    height, width = image_size
    if (box.height, box.width) == (height, width):
        return None
    ys = [p for p in range(size) if box.top <= p * height // size < box.bottom]
    xs = [p for p in range(size) if box.left <= p * width // size < box.right]
    return xs[0], ys[0], xs[-1] - xs[0] + 1, ys[-1] - ys[0] + 1


def cropped_pair(projection: torch.Tensor, image: torch.Tensor, box: Box, display: str = "raw",
                 contrast: float = 1.0) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """The cropped projection frame and the input patch frame."""
    picture = render.projection_picture(projection, display, contrast)
    return field_frame(picture, box), field_frame(render.image_to_uint8(image), box)
