"""Pictures from tensors, with exact pixel values."""

from __future__ import annotations

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
