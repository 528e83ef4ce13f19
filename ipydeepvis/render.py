"""Tensors to pictures: uint8 RGB(A) arrays for canvases, PNG files and notebooks.

Everything here is a pure function from float tensors to ``uint8`` NumPy arrays with an explicit
value policy, so a picture means the same thing wherever it is shown:

- projections (signed, arbitrary scale) are shown as Zeiler & Fergus and the deepvis toolbox
  show them: zero at mid-grey, scaled by the largest magnitude;
- activation maps (per unit) are scaled from 0 to the layer's largest value, so units of one
  layer can be compared by brightness.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch

from .errors import InvalidInputError

__all__ = ["activation_grid", "projection_to_uint8", "tile_grid"]


def projection_to_uint8(projection: torch.Tensor) -> npt.NDArray[np.uint8]:
    """A projection ``(C, H, W)`` as an ``(H, W, 3)`` picture, zero at grey 128.

    Values are divided by the largest magnitude (of all channels), so the sign and the relative
    size of every pixel are kept; a one-channel projection is shown in grey.
    """
    if projection.dim() != 3:
        msg = f"projection must be (C, H, W), got shape {tuple(projection.shape)}"
        raise InvalidInputError(msg)
    x = projection.detach().to("cpu", torch.float64)
    scale = float(x.abs().max())
    scaled = x / scale if scale > 0 else torch.zeros_like(x)
    image = (scaled * 127.5 + 127.5).round().clamp(0, 255).to(torch.uint8)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image[:3].permute(1, 2, 0).contiguous().numpy()


def tile_grid(tiles: npt.NDArray[np.uint8], columns: int | None = None, pad: int = 1,
              background: int = 0) -> npt.NDArray[np.uint8]:
    """Lay ``(N, h, w, ...)`` tiles out row by row in a grid with ``pad`` pixels between them.

    ``columns`` defaults to ``ceil(sqrt(N))``. Returns ``(rows*(h+pad)-pad, cols*(w+pad)-pad,
    ...)``; tile ``k`` sits at row ``k // columns``, column ``k % columns``.
    """
    count, height, width = tiles.shape[:3]
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    out = np.full((rows * (height + pad) - pad, columns * (width + pad) - pad, *tiles.shape[3:]),
                  background, dtype=tiles.dtype)
    for k in range(count):
        top, left = (k // columns) * (height + pad), (k % columns) * (width + pad)
        out[top:top + height, left:left + width] = tiles[k]
    return out


def activation_grid(activation: torch.Tensor, columns: int | None = None,
                    pad: int = 1) -> npt.NDArray[np.uint8]:
    """Every unit's map of one layer, ``(C, h, w)``, as one grey grid image ``(H, W)``.

    Zero is black and the layer's largest activation is white (negative values clip to black),
    so units can be compared by brightness.
    """
    if activation.dim() != 3:
        msg = f"activation must be one sample's maps (C, h, w), got {tuple(activation.shape)}"
        raise InvalidInputError(msg)
    a = activation.detach().to("cpu", torch.float64).clamp(min=0)
    top = float(a.max())
    scaled = a / top if top > 0 else a
    tiles = (scaled * 255).round().to(torch.uint8).numpy()
    return tile_grid(tiles, columns, pad)
