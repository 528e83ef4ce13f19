"""Models and data sets for the ``ipydeepvis index`` tests, importable as MODULE:FACTORY."""

from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset

from tests.nets import ConvReluPool

LENGTH = 203  # not a multiple of any batch size or rank count used in the tests


def tiny_model() -> ConvReluPool:
    """A seeded conv-relu-pool net (weights fixed by its seed)."""
    return ConvReluPool(pool=(2, 2), channels=(3, 6, 8), seed=5)


class Images(Dataset):
    """``LENGTH`` seeded random images with labels; ``IPYDEEPVIS_DIE_AT=i`` kills the process
    (``os._exit``) when image ``i`` is read, as a crash or ``kill -9`` would."""

    def __init__(self, length: int = LENGTH) -> None:
        self.images = torch.rand(length, 3, 16, 16, generator=torch.Generator().manual_seed(9))
        self.die_at = int(os.environ.get("IPYDEEPVIS_DIE_AT", "-1"))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if index == self.die_at:
            os._exit(9)
        return self.images[index], index % 3


def tiny_data() -> Images:
    return Images()


def folder_transform() -> object:
    """PIL -> float tensor in [0, 1], 12 x 12 (for an ImageFolder of larger PNGs)."""
    from torchvision.transforms import v2

    return v2.Compose([v2.PILToTensor(), v2.CenterCrop(12), v2.ToDtype(torch.float32, scale=True)])
