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
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image, ImageDraw, ImageFont

from .errors import InvalidInputError, InvalidOptionError

__all__ = [
    "DISPLAY_MODES",
    "GridLayout",
    "activation_grid",
    "activation_grid_rgba",
    "caption",
    "cell_box",
    "draw_ring",
    "gaussian_blur",
    "grid_layout",
    "image_to_uint8",
    "projection_picture",
    "resize_nearest",
    "tile_grid",
    "to_rgba",
    "unit_map_rgba",
]

FONT_SIZE = 14
"""Pixel size of the text in exported pictures (captions of ``DeepVis.save_png``, notebooks)."""


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


# ---------------------------------------------------------------------- dashboard frames

DISPLAY_MODES: tuple[str, ...] = ("raw", "gray", "norm", "blurred norm")


def projection_picture(projection: torch.Tensor, mode: str = "raw",
                       contrast: float = 1.0) -> npt.NDArray[np.uint8]:
    """A projection ``(C, H, W)`` in one of the deepvis toolbox's display modes, ``(H, W, 3)``.

    ``"raw"``: the signed signal, zero at grey, each colour channel as is. ``"gray"``: the mean
    over channels, signed, zero at grey. ``"norm"``: the per-pixel L2 norm over channels, zero
    at black. ``"blurred norm"``: that norm smoothed by a Gaussian (sigma = 1 % of the image
    size, at least 1 px). ``contrast`` multiplies the signal before clipping (1 = the largest
    magnitude just reaches the end of the scale).
    """
    if mode not in DISPLAY_MODES:
        msg = f"mode must be one of {', '.join(map(repr, DISPLAY_MODES))}, got {mode!r}"
        raise InvalidOptionError(msg)
    if projection.dim() != 3:
        msg = f"projection must be (C, H, W), got shape {tuple(projection.shape)}"
        raise InvalidInputError(msg)
    x = projection.detach().to("cpu", torch.float64)
    if mode in ("raw", "gray"):
        signal = x if mode == "raw" else x.mean(0, keepdim=True)
        scale = float(signal.abs().max())
        scaled = signal * (contrast / scale) if scale > 0 else torch.zeros_like(signal)
        values = scaled * 127.5 + 127.5
    else:
        signal = x.pow(2).sum(0, keepdim=True).sqrt()
        if mode == "blurred norm":
            signal = gaussian_blur(signal, max(1.0, 0.01 * max(signal.shape[1:])))
        scale = float(signal.max())
        values = signal * (contrast * 255 / scale) if scale > 0 else torch.zeros_like(signal)
    image = values.round().clamp(0, 255).to(torch.uint8)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image[:3].permute(1, 2, 0).contiguous().numpy()


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur every channel of ``(C, H, W)`` with a Gaussian of ``sigma`` pixels (reflect pad)."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[0]
    y = x[None]
    pad = min(radius, x.shape[1] - 1, x.shape[2] - 1)
    if pad < radius:  # tiny images: reflect as far as possible, zero beyond
        y = torch.nn.functional.pad(y, (radius - pad,) * 4)
    y = torch.nn.functional.pad(y, (pad,) * 4, mode="reflect") if pad > 0 else y
    y = torch.nn.functional.conv2d(y, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = torch.nn.functional.conv2d(y, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


def resize_nearest(image: npt.NDArray[np.uint8], height: int, width: int) -> npt.NDArray[np.uint8]:
    """Nearest-neighbour resize of ``(h, w, ...)``: every output pixel copies one input pixel
    (``floor(i * h / height)``), so maps stay crisp and values exact."""
    rows = (np.arange(height) * image.shape[0]) // height
    cols = (np.arange(width) * image.shape[1]) // width
    return image[rows][:, cols]


def to_rgba(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """``(H, W)`` grey or ``(H, W, 3)`` colour as opaque ``(H, W, 4)`` RGBA (what canvases take
    losslessly)."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    alpha = np.full((*image.shape[:2], 1), 255, dtype=np.uint8)
    return np.concatenate([image[:, :, :3], alpha], axis=2)


def image_to_uint8(image: torch.Tensor) -> npt.NDArray[np.uint8]:
    """An input image ``(C, H, W)`` in 0..1 as ``(H, W, 3)`` uint8 (one channel shown as grey)."""
    x = image.detach().to("cpu", torch.float64).clamp(0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return (x[:3] * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


@dataclass(frozen=True)
class GridLayout:
    """Where each unit's tile sits in an activation grid: tile ``k`` is at
    ``(k // columns * (tile + pad), k % columns * (tile + pad))``."""

    count: int
    columns: int
    tile: int
    pad: int

    @property
    def rows(self) -> int:
        return max(1, math.ceil(self.count / self.columns))

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the grid in pixels."""
        step = self.tile + self.pad
        return self.rows * step - self.pad, self.columns * step - self.pad

    def origin(self, unit: int) -> tuple[int, int]:
        """Top-left pixel ``(y, x)`` of a unit's tile."""
        step = self.tile + self.pad
        return (unit // self.columns) * step, (unit % self.columns) * step

    def unit_at(self, x: float, y: float) -> int | None:
        """The unit whose tile holds pixel ``(x, y)``, None on padding or outside the grid."""
        step = self.tile + self.pad
        col, row = int(x // step), int(y // step)
        if x < 0 or y < 0 or col >= self.columns or x - col * step >= self.tile:
            return None
        if y - row * step >= self.tile:
            return None
        unit = row * self.columns + col
        return unit if unit < self.count else None


def grid_layout(count: int, width: int, pad: int = 1, max_tile: int = 64) -> GridLayout:
    """Tiles as large as fit ``width`` pixels in a near-square grid (at least 4 px each)."""
    columns = max(1, math.ceil(math.sqrt(count)))
    tile = max(4, min(max_tile, (width + pad) // columns - pad))
    columns = max(1, min(count, (width + pad) // (tile + pad)))
    return GridLayout(count, columns, tile, pad)


def activation_grid_rgba(maps: torch.Tensor, layout: GridLayout,
                         background: int = 40) -> npt.NDArray[np.uint8]:
    """Every unit's map ``(C, h, w)`` (or ``(C,)`` single values) as one RGBA grid picture.

    Zero is black, the layer's largest activation white; each map is resized to the tile size
    with nearest-neighbour sampling.
    """
    a = maps.detach().to("cpu", torch.float64)
    if a.dim() == 1:
        a = a[:, None, None]
    a = a.clamp(min=0)
    top = float(a.max())
    scaled = (a / top if top > 0 else a) * 255
    small = scaled.round().to(torch.uint8).numpy()
    tiles = np.stack([resize_nearest(m, layout.tile, layout.tile) for m in small])
    height, width = layout.size
    grid = np.full((height, width), background, dtype=np.uint8)
    for unit in range(layout.count):
        y, x = layout.origin(unit)
        grid[y:y + layout.tile, x:x + layout.tile] = tiles[unit]
    return to_rgba(grid)


def unit_map_rgba(unit_map: torch.Tensor, size: int, top: float) -> npt.NDArray[np.uint8]:
    """One unit's map ``(h, w)`` enlarged to ``size`` px, 0 black, ``top`` white (RGBA).

    ``top`` is the layer's largest activation (units compared by brightness) or the unit's own
    (a weak unit's pattern visible); with ``top <= 0`` everything is black.
    """
    a = unit_map.detach().to("cpu", torch.float64)
    if a.dim() == 0:
        a = a[None, None]
    scaled = (a.clamp(min=0) / top if top > 0 else a.clamp(min=0)) * 255
    small = scaled.round().clamp(0, 255).to(torch.uint8).numpy()
    return to_rgba(resize_nearest(small, size, size))


def cell_box(position: tuple[int, int], map_size: tuple[int, int], size: int,
             min_size: int = 8) -> tuple[int, int, int, int]:
    """``(x, y, width, height)`` on a ``size`` px picture of an ``(h, w)`` map enlarged with
    :func:`resize_nearest` that covers the map cell at ``position`` (row, column).

    Small cells get a box of at least ``min_size`` px centred on the cell (kept inside the
    picture), so a marker stays visible on a 55x55 map shown at 192 px.
    """
    (row, col), (height, width) = position, map_size
    # resize_nearest: output pixel p shows cell floor(p * n / size)
    top, bottom = -(-row * size // height), -(-(row + 1) * size // height)
    left, right = -(-col * size // width), -(-(col + 1) * size // width)
    box_w, box_h = max(right - left, min_size), max(bottom - top, min_size)
    x = min(max(0, (left + right - box_w) // 2), size - box_w)
    y = min(max(0, (top + bottom - box_h) // 2), size - box_h)
    return x, y, box_w, box_h


def draw_ring(frame: npt.NDArray[np.uint8], box: tuple[int, int, int, int] | None,
              color: tuple[int, int, int, int] = (255, 204, 0, 255)) -> npt.NDArray[np.uint8]:
    """A copy of RGBA ``frame`` with a 2 px ring just inside ``box`` ``(x, y, w, h)``: the
    same pixels a canvas overlay's ``stroke_rect(x+1, y+1, w-2, h-2)`` with line width 2 covers
    (what :class:`~ipydeepvis.widgets.tiles.TileCanvas` shows on top of a frame)."""
    out = frame.copy()
    if box is None:
        return out
    x, y, w, h = box
    height, width = out.shape[:2]
    mask = np.zeros((height, width), bool)
    mask[max(0, y):min(height, y + h), max(0, x):min(width, x + w)] = True
    mask[max(0, y + 2):max(0, y + h - 2), max(0, x + 2):max(0, x + w - 2)] = False
    out[mask] = color
    return out


def caption(text: str, width: int, size: int = FONT_SIZE,
            color: tuple[int, int, int] = (0, 0, 0),
            background: tuple[int, int, int] = (255, 255, 255)) -> npt.NDArray[np.uint8]:
    """One line of ``text`` in a ``size`` px font on an opaque RGBA strip ``width`` px wide
    (cut at the right edge if longer); its height is ``size + size // 2`` px."""
    height = size + size // 2
    picture = Image.new("RGB", (max(1, width), height), background)
    font = ImageFont.load_default(size=size)
    ImageDraw.Draw(picture).text((2, size // 4), text, fill=color, font=font)
    return to_rgba(np.asarray(picture, dtype=np.uint8))
