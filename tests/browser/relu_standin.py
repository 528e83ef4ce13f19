"""A stand-in model whose ReLUs are function calls (``F.relu``, ``x.relu_()``), no ReLU module.

The browser test copies this file next to a notebook in the server's root, so the kernel and the
test process build the same seeded model and compute the same pixels. Its conv layers are
pre-ReLU; the dashboard lists the calls as layers ``conv1.relu`` and ``conv2.relu`` and starts on
the second.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from ipydeepvis.data import CLASSES, Shapes

NOTEBOOK_CELL = """\
import relu_standin
import ipydeepvis as dv

demo = relu_standin.load()
view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes)
view"""


class FunctionalNet(nn.Module):
    """conv(3->8) F.relu pool conv(8->16) x.relu_() pool, then a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, len(CLASSES))
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = self.conv2(x)
        x.relu_()
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def load() -> SimpleNamespace:
    """What ``dv.demo.load()`` returns: ``.model``, ``.dataset``, ``.classes``."""
    return SimpleNamespace(model=FunctionalNet().eval(), dataset=Shapes("test", seed=0),
                           classes=list(CLASSES))
