"""A stand-in for ``ipydeepvis.demo.load()`` with a 512-unit layer: seeded, untrained, on Shapes.

The browser tests copy this file next to a notebook in the server's root, so the kernel (in
JupyterLab or Voila) and the test process build the same model from the same seed and compute
the same pixels. Its last conv layer has 512 units of 32x32 maps: the activation grid wraps into
24 columns of 19 px tiles, each map downsampled, which the embedded net does not exercise.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from ipydeepvis.data import CLASSES, Shapes

NOTEBOOK_CELL = """\
import standin
import ipydeepvis as dv

demo = standin.load()
view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes)
view"""


def build_model() -> nn.Module:
    """conv(3->32) ReLU pool conv(32->512) ReLU, then a linear classifier over 11 classes."""
    generator = torch.Generator().manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 512, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(512, len(CLASSES)),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.2)
    return model.eval()


def load() -> SimpleNamespace:
    """What ``dv.demo.load()`` returns: ``.model``, ``.dataset``, ``.classes``."""
    return SimpleNamespace(model=build_model(), dataset=Shapes("test", seed=0),
                           classes=list(CLASSES))
