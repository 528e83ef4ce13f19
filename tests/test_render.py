"""Pictures from tensors, with exact pixel values."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from ipydeepvis import errors, render


def test_projection_zero_is_grey_and_extremes_are_black_and_white() -> None:
    p = torch.zeros(3, 2, 2)
    p[0, 0, 0] = 4.0
    p[1, 1, 1] = -4.0
    p[2, 0, 1] = 2.0
    img = render.projection_picture(p)
    assert img.shape == (2, 2, 3) and img.dtype == np.uint8
    assert img[0, 0].tolist() == [255, 128, 128]
    assert img[1, 1].tolist() == [128, 0, 128]
    assert img[0, 1].tolist() == [128, 128, 191]  # 0.5 * 127.5 + 127.5 = 191.25
    assert render.projection_picture(torch.zeros(1, 3, 3)).tolist() == [[[128] * 3] * 3] * 3


def test_tile_grid_places_tile_k_at_row_k_div_columns() -> None:
    tiles = np.arange(5, dtype=np.uint8)[:, None, None].repeat(2, 1).repeat(3, 2) + 1
    grid = render.tile_grid(tiles, columns=2, pad=1, background=0)
    assert grid.shape == (3 * 3 - 1, 2 * 4 - 1)
    assert grid[0, 0] == 1 and grid[0, 4] == 2 and grid[3, 0] == 3 and grid[6, 4] == 0
    assert grid[2, :].tolist() == [0] * 7  # padding row
    assert grid[6, 0:3].tolist() == [5, 5, 5]


def test_activation_grid_scales_by_the_layer_max() -> None:
    a = torch.tensor([[[1.0, -2.0]], [[4.0, 2.0]]])
    grid = render.activation_grid(a, columns=2, pad=1)
    assert grid.tolist() == [[64, 0, 0, 255, 128]]


def test_bad_shapes() -> None:
    with pytest.raises(errors.InvalidInputError, match=r"must be \(C, H, W\), got shape \(2, 2\)"):
        render.projection_picture(torch.zeros(2, 2))
    with pytest.raises(errors.InvalidInputError, match=r"\(C, h, w\), got \(4,\)"):
        render.activation_grid(torch.zeros(4))


def loop_grid(tiles: np.ndarray, columns: int, pad: int, background: int) -> np.ndarray:
    """Independent placement: tile k at row k // columns, column k % columns."""
    count, height, width = tiles.shape[:3]
    rows = max(1, -(-count // columns))
    out = np.full((rows * (height + pad) - pad, columns * (width + pad) - pad, *tiles.shape[3:]),
                  background, dtype=np.uint8)
    for k in range(count):
        top, left = (k // columns) * (height + pad), (k % columns) * (width + pad)
        out[top:top + height, left:left + width] = tiles[k]
    return out


@pytest.mark.parametrize(("count", "columns", "pad", "channels"),
                         [(5, 2, 1, None), (7, 3, 2, 3), (1, 4, 1, None), (3, 5, 0, 4),
                          (16, 4, 3, 3), (1, 1, 2, None)])
def test_tile_placement_is_the_grid_layout(count: int, columns: int, pad: int,
                                           channels: int | None) -> None:
    rng = np.random.default_rng(count)
    shape = (count, 4, 3) if channels is None else (count, 4, 3, channels)
    tiles = rng.integers(0, 255, shape, dtype=np.uint8)
    assert np.array_equal(render.tile_grid(tiles, columns, pad, 7),
                          loop_grid(tiles, columns, pad, 7))
    square = rng.integers(0, 255, (count, 5, 5, 3), dtype=np.uint8)
    layout = render.GridLayout(count, columns, 5, pad)
    placed = render.place_tiles(square, layout, 9)
    assert placed.shape[:2] == layout.size
    for k in range(count):
        y, x = layout.origin(k)
        assert np.array_equal(placed[y:y + 5, x:x + 5], square[k])
    with pytest.raises(errors.InvalidInputError, match=r"tiles must be \(.*, 6, 6, \.\.\.\)"):
        render.place_tiles(square, render.GridLayout(count, columns, 6, pad))


def reference_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian, reflect padding, written out (the blur before torchvision's)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    y = torch.nn.functional.pad(x[None], (radius,) * 4, mode="reflect")
    c = x.shape[0]
    y = torch.nn.functional.conv2d(y, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = torch.nn.functional.conv2d(y, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


def test_gaussian_blur_equals_the_written_out_filter() -> None:
    g = torch.Generator().manual_seed(3)
    for shape, sigma in [((1, 64, 64), 1.0), ((3, 20, 17), 2.3), ((2, 9, 9), 1.0)]:
        x = torch.rand(shape, generator=g, dtype=torch.float64)
        torch.testing.assert_close(render.gaussian_blur(x, sigma), reference_blur(x, sigma),
                                   rtol=0, atol=1e-12)
    tiny = torch.rand(1, 2, 3, generator=g, dtype=torch.float64)
    assert render.gaussian_blur(tiny, 1.0).shape == tiny.shape  # shortened kernel, no error


def test_positive_scaling_and_nonfinite_values() -> None:
    values = torch.tensor([[-1.0, 0.0, 1.0, 2.0, float("nan"), float("inf")]])
    assert render.positive_uint8(values).tolist() == [[0, 0, 128, 255, 0, 0]]
    assert render.positive_uint8(values, top=4.0).tolist() == [[0, 0, 64, 128, 0, 0]]
    assert render.positive_uint8(torch.full((2, 2), float("nan"))).tolist() == [[0, 0], [0, 0]]
    p = torch.full((3, 2, 2), float("nan"))
    assert (render.projection_picture(p) == 128).all()  # a diverged projection: plain grey
    grid = render.activation_grid(torch.tensor([[[1.0, float("nan")]], [[4.0, 2.0]]]), 2, 1)
    assert grid.tolist() == [[64, 0, 0, 255, 128]]


def test_png_sheet_writes_labelled_frames_and_refuses_bad_paths(tmp_path) -> None:
    from PIL import Image

    red = np.zeros((10, 12, 3), np.uint8)
    red[..., 0] = 255
    grey = np.full((6, 5), 90, np.uint8)
    path = render.save_png_sheet([red, grey], tmp_path / "sheet.PNG", pad=8)
    saved = np.asarray(Image.open(path))
    assert saved.shape == (10, 12 + 8 + 5, 4)
    assert (saved[:, :12, :3] == red).all() and (saved[:6, 20:, 0] == 90).all()
    assert (saved[:, 12:20] == 255).all() and (saved[6:, 20:] == 255).all()
    labelled = np.asarray(Image.open(render.save_png_sheet(
        [red], tmp_path / "labelled.png", labels=["layer conv1, unit 3, epoch 5"],
        font_size=14)))
    assert labelled.shape[0] == 10 + 20 and (labelled[20:, :12, :3] == red).all()
    assert (labelled[:20, :, :3] < 128).any()  # the caption's dark text
    for bad, why in [(tmp_path / "x.jpg", "does not end in '.png'"),
                     (tmp_path, "is a folder"),
                     (tmp_path / "no" / "x.png", "does not exist"),
                     ("/proc/x.png", "cannot write '/proc/x.png'")]:
        with pytest.raises(errors.InvalidOptionError, match=re.escape(why)):
            render.save_png_sheet([red], bad)
    with pytest.raises(errors.InvalidInputError, match="nothing to save"):
        render.save_png_sheet([], tmp_path / "empty.png")
    with pytest.raises(errors.InvalidOptionError, match=r"one text per frame \(1\), got 2"):
        render.save_png_sheet([red], tmp_path / "two.png", labels=["a", "b"])


def test_strip_picture_cells_bars_and_stripes() -> None:
    from ipydeepvis.core.evolution import EvolutionCell, EvolutionRow, assemble_strip, invalid_cell

    projection = torch.zeros(3, 2, 2)
    projection[0] = 1.0
    patch = torch.ones(3, 2, 2) * 0.5

    def cell(index: int) -> EvolutionCell:
        return EvolutionCell(1.0, index, (0, 0), (0, 0, 2, 2), projection, patch)

    rows = [(1, EvolutionRow.from_cells([cell(4), cell(5)])),
            (2, EvolutionRow.from_cells([cell(6), invalid_cell(3, 2, "non-finite weights")])),
            (3, EvolutionRow.from_cells([cell(6), cell(5)]))]
    strip = assemble_strip("conv", [0, 1], rows)
    assert strip.changed.tolist() == [[False, False], [True, False], [False, False]]
    picture = render.strip_picture(strip, cell=8, gap=2)
    layout = render.StripLayout(3, 2, 8, 2)
    assert picture.shape == (*layout.size, 4) == (18, 3 * 18 - 2, 4)
    y, x = layout.origin(0, 0)
    assert picture[y + 3, x + 3, :3].tolist() == [255, 128, 128]  # projection: red on grey
    assert picture[y + 3, x + 11, :3].tolist() == [128, 128, 128]  # patch: 0.5 grey
    y, x = layout.origin(1, 0)
    assert picture[y + 3, x, :3].tolist() == list(render.CHANGED_COLOR)  # changed: red bar
    y, x = layout.origin(1, 1)
    block = picture[y:y + 8, x:x + 16, :3]
    assert np.all(block == render.CHANGED_COLOR, axis=2).any() and (block == 255).all(
        axis=2).any()  # stripes
    assert layout.column_box(1) == (18, 0, 16, 18)
    ring = render.outline(picture, layout.column_box(1))
    assert ring[0, 18, :3].tolist() == list(render.HIGHLIGHT) and ring[5, 25].tolist() == \
        picture[5, 25].tolist()
    figure = render.strip_figure(strip, cell=8, gap=2)
    assert figure.shape[0] > picture.shape[0] and figure.shape[1] > picture.shape[1]
