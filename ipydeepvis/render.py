"""Tensors to pictures: uint8 RGB(A) arrays for canvases, PNG files and notebooks.

Everything here is a pure function from float tensors to ``uint8`` NumPy arrays with an explicit
value policy, so a picture means the same thing wherever it is shown:

- projections (signed, arbitrary scale) are shown as Zeiler & Fergus and the deepvis toolbox
  show them: zero at mid-grey, scaled by the largest magnitude;
- activation maps (per unit) are scaled from 0 to the layer's largest value, so units of one
  layer can be compared by brightness (:func:`positive_uint8`, the one positive scaling).

Tiles are placed by one function (:func:`tile_grid` / :func:`place_tiles`), the evolution
strip is drawn by :func:`strip_picture` (labelled: :func:`strip_figure`), and every PNG file
is written by :func:`save_png_sheet`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch
from torchvision.transforms.v2.functional import gaussian_blur as _tv_gaussian_blur

from .errors import InvalidInputError, InvalidOptionError

if TYPE_CHECKING:
    from .core.receptive import Box

__all__ = [
    "DISPLAY_MODES",
    "HIGHLIGHT",
    "STRIP_CELL",
    "STRIP_GAP",
    "GridLayout",
    "StripLayout",
    "activation_grid",
    "activation_grid_rgba",
    "blend",
    "cell_box",
    "check_png_path",
    "field_box",
    "field_picture",
    "gaussian_blur",
    "grid_layout",
    "heat_rgba",
    "image_to_uint8",
    "label_palette",
    "label_picture",
    "outline",
    "place_tiles",
    "positive_uint8",
    "projection_picture",
    "resize_nearest",
    "save_png_sheet",
    "sheet_picture",
    "strip_figure",
    "strip_picture",
    "tile_grid",
    "to_rgba",
    "unit_map_rgba",
]

FONT_SIZE = 14
"""Pixel size of readable text in exported pictures (saved PNGs, notebook figures)."""


def tile_grid(tiles: npt.NDArray[np.uint8], columns: int | None = None, pad: int = 1,
              background: int = 0) -> npt.NDArray[np.uint8]:
    """Lay ``(N, h, w, ...)`` tiles out row by row in a grid with ``pad`` pixels between them.

    ``columns`` defaults to ``ceil(sqrt(N))``. Returns ``(rows*(h+pad)-pad, cols*(w+pad)-pad,
    ...)``; tile ``k`` sits at row ``k // columns``, column ``k % columns`` (the placement of
    :class:`GridLayout`). The one tile placement of the package.
    """
    count = tiles.shape[0]
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    return _place(tiles, columns, pad, background)


def place_tiles(tiles: npt.NDArray[np.uint8], layout: GridLayout,
                background: int = 0) -> npt.NDArray[np.uint8]:
    """``(N, tile, tile, ...)`` tiles placed as ``layout`` says (see :meth:`GridLayout.origin`);
    the picture is ``layout.size``."""
    if tiles.shape[0] != layout.count or tiles.shape[1:3] != (layout.tile, layout.tile):
        msg = (f"tiles must be ({layout.count}, {layout.tile}, {layout.tile}, ...) for this "
               f"layout, got {tiles.shape}")
        raise InvalidInputError(msg)
    return _place(tiles, layout.columns, layout.pad, background)


def _place(tiles: npt.NDArray[np.uint8], columns: int, pad: int,
           background: int) -> npt.NDArray[np.uint8]:
    """Grid of ``(N, h, w[, c])`` tiles, ``columns`` wide (also when fewer tiles), no border.

    One reshape instead of a loop over tiles: pad every tile to ``(h + pad, w + pad)``, fill
    the last row with background tiles, and interleave the tile rows with the image rows.
    (torchvision's ``make_grid`` does the same placement with a Python loop per tile and
    turns grey tiles into three channels; this is several times faster for the hundreds of
    tiles of an activation grid.)
    """
    count, height, width = tiles.shape[:3]
    rows = max(1, math.ceil(count / columns))
    extra = tiles.shape[3:]
    padded = np.full((rows * columns, height + pad, width + pad, *extra), background,
                     dtype=tiles.dtype)
    padded[:count, :height, :width] = tiles
    grid = padded.reshape(rows, columns, height + pad, width + pad, *extra).swapaxes(1, 2)
    grid = grid.reshape(rows * (height + pad), columns * (width + pad), *extra)
    return np.ascontiguousarray(grid[:rows * (height + pad) - pad, :columns * (width + pad) - pad])


def positive_uint8(values: torch.Tensor, top: float | None = None) -> npt.NDArray[np.uint8]:
    """The one positive scaling: 0 (and anything below) black, ``top`` white, linear between.

    ``top`` defaults to the largest value. Non-finite values (a diverged model) show as black
    and do not set the scale. Returns the same shape as ``values``, ``uint8``.
    """
    a = values.detach().to("cpu", torch.float64)
    a = torch.where(torch.isfinite(a), a, torch.zeros_like(a)).clamp(min=0)
    if top is None:
        top = float(a.max()) if a.numel() else 0.0
    if not math.isfinite(top) or top <= 0:
        return torch.zeros(a.shape, dtype=torch.uint8).numpy()
    return ((a / top) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def activation_grid(activation: torch.Tensor, columns: int | None = None,
                    pad: int = 1) -> npt.NDArray[np.uint8]:
    """Every unit's map of one layer, ``(C, h, w)``, as one grey grid image ``(H, W)``.

    Zero is black and the layer's largest activation is white (negative values clip to black),
    so units can be compared by brightness.
    """
    if activation.dim() != 3:
        msg = f"activation must be one sample's maps (C, h, w), got {tuple(activation.shape)}"
        raise InvalidInputError(msg)
    tiles = positive_uint8(activation)
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
    x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))  # a diverged model: no signal
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
    """Blur every channel of ``(C, H, W)`` with a Gaussian of ``sigma`` pixels (reflect pad).

    torchvision's ``gaussian_blur`` with a kernel of ``2 * ceil(3 sigma) + 1`` taps, shortened
    on images too small to reflect that far.
    """
    radius = max(1, math.ceil(3 * sigma))
    radius = min(radius, x.shape[-2] - 1, x.shape[-1] - 1)
    if radius < 1:
        return x.clone()
    return _tv_gaussian_blur(x, [2 * radius + 1] * 2, [sigma, sigma])


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


def on_white(picture: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """An RGBA canvas picture laid on white, as ``(H, W, 3)`` (where a canvas is transparent
    the page shows through; a saved sheet shows its white); other pictures as they are."""
    if picture.ndim != 3 or picture.shape[2] != 4:
        return picture
    alpha = picture[:, :, 3:].astype(np.float64) / 255
    mixed = picture[:, :, :3].astype(np.float64) * alpha + 255 * (1 - alpha)
    return np.round(mixed).astype(np.uint8)


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
    a = maps.detach()
    if a.dim() == 1:
        a = a[:, None, None]
    small = positive_uint8(a)
    rows = (np.arange(layout.tile) * small.shape[1]) // layout.tile
    cols = (np.arange(layout.tile) * small.shape[2]) // layout.tile
    tiles = small[:, rows][:, :, cols]  # every map resized at once (as resize_nearest does)
    return to_rgba(place_tiles(tiles, layout, background))


def unit_map_rgba(unit_map: torch.Tensor, size: int, top: float) -> npt.NDArray[np.uint8]:
    """One unit's map ``(h, w)`` enlarged to ``size`` px, 0 black, ``top`` white (RGBA).

    ``top`` is the layer's largest activation (units compared by brightness) or the unit's own
    (a weak unit's pattern visible); with ``top <= 0`` everything is black.
    """
    a = unit_map.detach()
    if a.dim() == 0:
        a = a[None, None]
    return to_rgba(resize_nearest(positive_uint8(a, top), size, size))


# ---------------------------------------------------------------------- evolution strip

STRIP_CELL = 40
"""Pixels of one projection (or image patch) crop in the evolution strip."""

STRIP_GAP = 4
"""Pixels between the strip's rows and columns."""

CHANGED_COLOR = (220, 0, 0)
"""Bar on the left of a strip cell whose strongest image changed since the previous epoch."""


@dataclass(frozen=True)
class StripLayout:
    """Where each (epoch, unit) cell of an evolution strip sits: rows are units, columns epochs,
    a cell is the projection crop (and, with ``patches``, the image patch beside it)."""

    epochs: int
    units: int
    cell: int = STRIP_CELL
    gap: int = STRIP_GAP
    patches: bool = True

    @property
    def column_width(self) -> int:
        """Width of one epoch's column in pixels."""
        return self.cell * (2 if self.patches else 1)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the strip picture."""
        return (max(0, self.units * (self.cell + self.gap) - self.gap),
                max(0, self.epochs * (self.column_width + self.gap) - self.gap))

    def origin(self, epoch_column: int, unit_row: int) -> tuple[int, int]:
        """Top-left pixel ``(y, x)`` of a cell."""
        return unit_row * (self.cell + self.gap), epoch_column * (self.column_width + self.gap)

    def column_box(self, epoch_column: int) -> tuple[int, int, int, int]:
        """``(x, y, width, height)`` around one epoch's column (for a highlight)."""
        _, x = self.origin(epoch_column, 0)
        return x, 0, self.column_width, self.size[0]


def _hatched(height: int, width: int) -> npt.NDArray[np.uint8]:
    """Red and white diagonal stripes: the mark of a cell without a finite result."""
    ys, xs = np.mgrid[0:height, 0:width]
    stripes = ((xs + ys) // 4) % 2 == 0
    cell = np.full((height, width, 3), 255, dtype=np.uint8)
    cell[stripes] = CHANGED_COLOR
    return cell


def strip_picture(strip: Any, *, cell: int = STRIP_CELL, gap: int = STRIP_GAP,
                  patches: bool = True) -> npt.NDArray[np.uint8]:
    """An :class:`~ipydeepvis.core.evolution.EvolutionStrip` as one RGBA picture.

    Rows are units, columns epochs (see :class:`StripLayout`); each cell is the deconvnet
    projection crop (raw display mode) and, with ``patches``, the image patch beside it, both
    resized to ``cell`` px. A red bar marks a cell whose strongest image changed since the
    previous epoch; red and white stripes mark a cell with non-finite weights, activations or
    projection (nothing meaningful to draw).
    """
    layout = StripLayout(len(strip.epochs), len(strip.units), cell, gap, patches)
    height, width = layout.size
    sheet = np.full((height, width, 3), 255, dtype=np.uint8)
    nonfinite = getattr(strip, "nonfinite", None)
    for e in range(len(strip.epochs)):
        for u in range(len(strip.units)):
            top, left = layout.origin(e, u)
            if nonfinite is not None and bool(nonfinite[e, u]):
                sheet[top:top + cell, left:left + layout.column_width] = _hatched(
                    cell, layout.column_width)
                continue
            projection = projection_picture(strip.projections[e][u])
            sheet[top:top + cell, left:left + cell] = resize_nearest(projection, cell, cell)
            if patches:
                patch = image_to_uint8(strip.patches[e][u])
                sheet[top:top + cell, left + cell:left + 2 * cell] = resize_nearest(
                    patch, cell, cell)
            if bool(strip.changed[e, u]):
                sheet[top:top + cell, left:left + 2] = CHANGED_COLOR
    return to_rgba(sheet)


def _font(size: int) -> Any:
    """PIL's built-in font at ``size`` px (Pillow >= 10.1; older ones have one fixed size)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


def label_picture(picture: npt.NDArray[np.uint8], *,
                  columns: Sequence[tuple[int, str]] = (),
                  rows: Sequence[tuple[int, str]] = (),
                  title: str = "", font_size: int = 13) -> npt.NDArray[np.uint8]:
    """``picture`` with a margin of text: a title, labels above columns and left of rows.

    Parameters
    ----------
    picture : ndarray
        ``(H, W, 3 or 4)`` uint8.
    columns, rows : sequence of (int, str)
        ``(x, text)`` written above the picture at ``x``; ``(y, text)`` left of it, centred
        on ``y``.
    title : str
        A line above everything.
    font_size : int
        Text height in pixels.

    Returns
    -------
    ndarray
        RGBA uint8, white margins, black text.
    """
    from PIL import Image, ImageDraw

    font = _font(font_size)
    line = font_size + 6
    left = 0
    if rows:
        left = int(max(font.getlength(text) for _, text in rows)) + 8
    top = (line if columns else 0) + (line if title else 0)
    height, width = picture.shape[:2]
    if title:
        width_needed = int(font.getlength(title)) + 6
    else:
        width_needed = 0
    canvas = Image.new("RGBA", (max(width + left, width_needed), height + top), "white")
    canvas.paste(Image.fromarray(to_rgba(picture[:, :, :3]), "RGBA"), (left, top))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((3, 2), title, fill="black", font=font)
    for x, text in columns:
        draw.text((left + x + 2, top - line + 2), text, fill="black", font=font)
    for y, text in rows:
        draw.text((3, top + y - font_size // 2 - 1), text, fill="black", font=font)
    return np.asarray(canvas, dtype=np.uint8).copy()


def strip_figure(strip: Any, *, cell: int = STRIP_CELL, gap: int = STRIP_GAP,
                 patches: bool = True, title: str = "",
                 font_size: int = 13) -> npt.NDArray[np.uint8]:
    """:func:`strip_picture` with epoch labels above its columns and unit labels left of its
    rows (what notebooks and PNG files show)."""
    layout = StripLayout(len(strip.epochs), len(strip.units), cell, gap, patches)
    picture = strip_picture(strip, cell=cell, gap=gap, patches=patches)
    columns = [(layout.origin(e, 0)[1], f"ep {epoch}") for e, epoch in enumerate(strip.epochs)]
    rows = [(layout.origin(0, u)[0] + cell // 2, f"unit {unit}")
            for u, unit in enumerate(strip.units)]
    return label_picture(picture, columns=columns, rows=rows, title=title, font_size=font_size)


# ---------------------------------------------------------------------- PNG files


def check_output_path(path: str | os.PathLike[str],
                      suffixes: Sequence[str] = (".png",)) -> Path:
    """``path`` as a :class:`Path` if a file with one of ``suffixes`` can be written there,
    else a clear error naming the bad path and what is expected.

    Raises
    ------
    InvalidOptionError
        When the name does not end in one of ``suffixes``, names a folder, or its folder does
        not exist.
    """
    suffix = suffixes[0]
    kind = {".png": "pictures are saved as PNG (lossless)",
            ".html": "views are exported as one self-contained HTML file"}.get(
        suffix, f"files are written as {suffix}")
    try:
        target = Path(path)
    except TypeError as exc:
        msg = f"path must be a file name ending in {suffix!r}, got {path!r}"
        raise InvalidOptionError(msg) from exc
    if target.is_dir():
        msg = f"{str(target)!r} is a folder; give a file name ending in {suffix!r} inside it"
        raise InvalidOptionError(msg)
    if target.suffix.lower() not in suffixes:
        msg = (f"{str(target)!r} does not end in {suffix!r}; {kind}, so give a name like "
               f"'view{suffix}'")
        raise InvalidOptionError(msg)
    if not target.parent.is_dir():
        msg = f"cannot write {str(target)!r}: the folder {str(target.parent)!r} does not exist"
        raise InvalidOptionError(msg)
    return target


def check_png_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a :class:`Path` if a PNG can be written there, else a clear error
    (:func:`check_output_path` for ``.png``)."""
    return check_output_path(path, (".png",))


def sheet_picture(frames: Sequence[npt.NDArray[np.uint8]], *,
                  labels: Sequence[str] | None = None, pad: int = 8,
                  font_size: int = 14) -> npt.NDArray[np.uint8]:
    """Frames side by side on white, ``pad`` px apart, each with its label above (RGBA)."""
    if not frames:
        msg = "nothing to save: no picture has been drawn yet"
        raise InvalidInputError(msg)
    if labels is not None and len(labels) != len(frames):
        msg = f"labels must give one text per frame ({len(frames)}), got {len(labels)}"
        raise InvalidOptionError(msg)
    pictures = [to_rgba(on_white(np.asarray(f, dtype=np.uint8))) for f in frames]
    if labels is not None:
        pictures = [label_picture(p, title=text, font_size=font_size) if text else p
                    for p, text in zip(pictures, labels, strict=True)]
    height = max(p.shape[0] for p in pictures)
    width = sum(p.shape[1] for p in pictures) + pad * (len(pictures) - 1)
    sheet = np.full((height, width, 4), 255, dtype=np.uint8)
    x = 0
    for picture in pictures:
        sheet[:picture.shape[0], x:x + picture.shape[1]] = picture
        x += picture.shape[1] + pad
    return sheet


def save_png_sheet(frames: Sequence[npt.NDArray[np.uint8]], path: str | os.PathLike[str], *,
                   labels: Sequence[str] | None = None, pad: int = 8,
                   font_size: int = 14, title: str = "",
                   text: dict[str, str] | None = None) -> Path:
    """Write frames side by side, each with its label above, as one PNG file.

    The one PNG writer of the package (the dashboard's and the scrubber's ``save_png``).

    Parameters
    ----------
    frames : sequence of ndarray
        ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8 pictures.
    path : str or PathLike
        Where to write; must end in ``.png`` and its folder must exist.
    labels : sequence of str, optional
        One caption per frame (layer, unit, epoch, method, ...); empty strings for none.
    pad : int
        White pixels between frames.
    font_size : int
        Caption text height in pixels.
    title : str
        A line above everything (e.g. what the frames show: layer, unit, epoch, ...).
    text : dict of str to str, optional
        Also stored as PNG text fields (``PIL.Image.open(path).text``), for scripts.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    InvalidOptionError
        For a path that is not a ``.png`` name, is a folder, or cannot be written.
    InvalidInputError
        When there are no frames.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    target = check_png_path(path)
    sheet = sheet_picture(frames, labels=labels, pad=pad, font_size=font_size)
    if title:
        sheet = label_picture(sheet, title=title, font_size=font_size)
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    try:
        Image.fromarray(sheet, "RGBA").save(target, format="PNG", pnginfo=info)
    except OSError as exc:
        msg = f"cannot write {str(target)!r}: {exc.strerror or exc}"
        raise InvalidOptionError(msg) from exc
    return target


HIGHLIGHT = (255, 204, 0)
"""Colour of the selection outline (#ffcc00), on canvases and in saved PNGs."""


def outline(picture: npt.NDArray[np.uint8], box: tuple[int, int, int, int],
            color: tuple[int, int, int] = HIGHLIGHT, width: int = 2) -> npt.NDArray[np.uint8]:
    """A copy of ``picture`` with a ``width`` px ring just inside ``(x, y, w, h)`` (as the
    canvases' highlight draws it)."""
    out = picture.copy()
    x, y, w, h = box
    value = np.array([*color, 255][:out.shape[2]] if out.ndim == 3 else color[0], np.uint8)
    out[y:y + h, x:x + width] = value
    out[y:y + h, x + w - width:x + w] = value
    out[y:y + width, x:x + w] = value
    out[y + h - width:y + h, x:x + w] = value
    return out


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


# ---------------------------------------------------------------------- maps of values

# viridis at 0, 0.25, 0.5, 0.75 and 1 (matplotlib's colour map, sampled)
_VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98],
                     [253, 231, 37]], dtype=np.float64)


def heat_rgba(values: npt.NDArray[np.float64], low: float, high: float,
              size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """A map as viridis colours from ``low`` (dark) to ``high`` (yellow), resized to ``size``
    ``(height, width)`` with nearest-neighbour sampling; NaN (not computed) is grey."""
    span = high - low if high > low else 1.0
    t = np.clip((np.nan_to_num(values, nan=low) - low) / span, 0.0, 1.0) * 4
    index = np.minimum(t.astype(np.int64), 3)
    frac = (t - index)[..., None]
    rgb = _VIRIDIS[index] * (1 - frac) + _VIRIDIS[index + 1] * frac
    rgb[np.isnan(values)] = 128
    picture = resize_nearest(rgb.round().astype(np.uint8), *size)
    return to_rgba(picture)


NEGATIVE_COLOR = (40, 90, 255)
POSITIVE_COLOR = (230, 40, 40)


def signed_rgba(values: npt.NDArray[np.float64], scale: float,
                size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """A signed map ``(H, W)`` as colours: zero grey (as in the projections' raw display),
    ``+scale`` red, ``-scale`` blue, linear between; resized to ``size`` nearest-neighbour."""
    t = np.clip(np.nan_to_num(values) / scale, -1.0, 1.0)[..., None] if scale > 0 else \
        np.zeros((*values.shape, 1))
    grey = np.full(3, 128.0)
    towards = np.where(t >= 0, np.array(POSITIVE_COLOR, np.float64),
                       np.array(NEGATIVE_COLOR, np.float64))
    rgb = grey + np.abs(t) * (towards - grey)
    return to_rgba(resize_nearest(rgb.round().astype(np.uint8), *size))


def blend(under: npt.NDArray[np.uint8], over: npt.NDArray[np.uint8],
          alpha: float) -> npt.NDArray[np.uint8]:
    """``over`` laid on ``under`` with opacity ``alpha`` (same-shape uint8 pictures)."""
    mixed = under.astype(np.float64) * (1 - alpha) + over.astype(np.float64) * alpha
    return mixed.round().astype(np.uint8)


def label_palette(count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct colours; the first (label -1, not computed) is grey."""
    base = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
    return [(128, 128, 128)] + [base[i % len(base)] for i in range(max(0, count - 1))]


# ---------------------------------------------------------------------- receptive-field crops


def field_picture(picture: npt.NDArray[np.uint8], box: Box, size: int) -> npt.NDArray[np.uint8]:
    """The part of ``picture`` ``(H, W, 3)`` under ``box``, enlarged to a ``size`` px square
    (RGBA) as Zeiler & Fergus show a unit's receptive field.

    The crop keeps its proportions: its longer side is enlarged to ``size`` px with
    :func:`resize_nearest`, and a field clipped by the picture's border (narrower than it is
    tall, say) sits against the square's side away from the clipped border, as the unit sees
    it; the rest of the square is transparent (no value, the page shows through).
    """
    crop = picture[box.top:box.bottom, box.left:box.right]
    height, width = crop.shape[:2]
    longest = max(height, width)
    out_h = max(1, round(height * size / longest))
    out_w = max(1, round(width * size / longest))
    frame = np.zeros((size, size, 4), np.uint8)
    y = _against_border(size - out_h, box.top == 0, box.bottom == picture.shape[0])
    x = _against_border(size - out_w, box.left == 0, box.right == picture.shape[1])
    frame[y:y + out_h, x:x + out_w] = to_rgba(resize_nearest(crop, out_h, out_w))
    return frame


def _against_border(spare: int, clipped_start: bool, clipped_end: bool) -> int:
    """Offset of a crop in a square with ``spare`` px left over on one axis: at the far end
    when the field was clipped at the start (top / left), at 0 when clipped at the end, else
    centred."""
    if clipped_start and not clipped_end:
        return spare
    if clipped_end and not clipped_start:
        return 0
    return spare // 2


def field_box(box: Box, picture_size: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """``(x, y, width, height)`` that ``box`` covers on a ``picture_size`` ``(H, W)`` picture
    enlarged to ``size`` x ``size`` with :func:`resize_nearest` (the pixels showing the box's
    rows and columns)."""
    height, width = picture_size
    # resize_nearest: output pixel p shows input floor(p * n / size), so the box's first
    # output pixel is ceil(start * size / n) and its last one ceil(end * size / n) - 1
    top, bottom = -(-box.top * size // height), -(-box.bottom * size // height)
    left, right = -(-box.left * size // width), -(-box.right * size // width)
    return left, top, right - left, bottom - top
