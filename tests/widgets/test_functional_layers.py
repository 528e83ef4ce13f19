"""A model whose ReLUs are function calls: the dashboard lists them and starts on one."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import ipydeepvis as dv
from ipydeepvis import render
from tests.nets import ConvReluPool


class FunctionalClassifier(nn.Module):
    """conv -> F.relu -> pool -> conv -> x.relu_() -> pool -> linear: no ReLU module at all."""

    def __init__(self) -> None:
        super().__init__()
        ref = ConvReluPool(pool=(2, 2), channels=(3, 6, 8), seed=3)
        self.conv1, self.pool1, self.conv2, self.pool2 = ref[0], ref[2], ref[3], ref[5]
        self.fc = nn.Linear(8 * 4 * 4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.conv2(x)
        x.relu_()
        return self.fc(torch.flatten(self.pool2(x), 1))


def test_the_layer_list_shows_functional_relus_and_starts_on_the_deepest() -> None:
    model = FunctionalClassifier()
    pictures = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    view = dv.DeepVis(model, pictures, threaded=False)
    try:
        options = dict((value, label) for label, value in view._layer_picker.options)
        assert list(options) == ["conv1", "conv1.relu", "pool1", "conv2", "conv2.relu", "pool2",
                                 "fc"]
        assert options["conv2.relu"] == "conv2.relu  [relu (8, 8, 8)]"
        assert view.layer == "conv2.relu" and view._layer_picker.value == "conv2.relu"
        # the grid shows the rectified maps, exactly as an independent forward computes them
        with torch.no_grad():
            maps = F.relu(model.conv2(model.pool1(F.relu(model.conv1(pictures[:1])))))[0]
        grid = view.frames["grid"]
        assert grid is not None
        assert np.array_equal(grid, render.activation_grid_rgba(maps, view.grid_layout))
        # stepping through the layer list visits the functional layers like module layers
        view.layer = "conv1"
        view._step_layer(+1)
        assert view.layer == "conv1.relu" and view._unit_slider.max == 5
        acts = dv.Probe(model).activations(pictures[0], ["conv1.relu"])["conv1.relu"][0]
        unit = int(acts.flatten(1).amax(1).argmax())
        view.unit = unit
        projection = dv.Probe(model).project(pictures[0], "conv1.relu", unit)[0]
        assert float(projection.abs().amax()) > 0
        expected = render.to_rgba(render.resize_nearest(render.projection_picture(projection),
                                                        192, 192))
        assert np.array_equal(view.frames["projection"], expected)
    finally:
        view.close()
