"""Compare mode (issue 14.7): the selected unit in two models, and their normalised difference.

Core: a model whose only conv has its weights doubled projects 4x as strongly (deconvnet is
linear in the weights once the seed's position is fixed), so the normalised difference is 0;
an unrelated second model gives exactly ``b / max|b| - a / max|a|`` of independent probes,
and the correlation is NumPy's. The pane: its three canvases equal the pictures of those
independent projections, for a second model and for two saved epochs of the embedded run.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

import ipydeepvis as dv
from ipydeepvis import demo, render
from ipydeepvis.core.compare import compare_projections
from ipydeepvis.errors import InvalidOptionError
from ipydeepvis.widgets.panes import PANE
from tests.nets import ConvReluPool, assert_same_state, model_state


class Net(nn.Module):
    def __init__(self, seed: int) -> None:
        super().__init__()
        self.features = ConvReluPool(pool=(2, 2), channels=(3, 8, 12), seed=seed)
        self.fc = nn.Linear(12 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


def image() -> torch.Tensor:
    return torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(3))


def conv_layer(probe: dv.Probe) -> str:
    return next(info.name for info in probe.layers if info.kind == "conv")


def test_doubled_weights_project_the_same_pattern() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU())
    torch.manual_seed(0)
    nn.init.normal_(conv[0].weight)
    doubled = copy.deepcopy(conv)
    with torch.no_grad():
        doubled[0].weight.mul_(2)
    x = image()
    before = model_state(conv)
    result = compare_projections(dv.Probe(conv), dv.Probe(doubled), x, "1", 2)
    assert torch.allclose(result.b, 4 * result.a, rtol=1e-5, atol=1e-6)
    assert float(result.difference.abs().max()) < 1e-6
    assert result.peak_b == pytest.approx(2 * result.peak_a, rel=1e-6)
    assert result.correlation == pytest.approx(1.0, abs=1e-9)
    assert_same_state(before, conv)


def test_two_models_equal_independent_projections() -> None:
    a, b, x = Net(1), Net(2), image()
    probe_a, probe_b = dv.Probe(a), dv.Probe(b)
    layer = conv_layer(probe_a)
    result = compare_projections(probe_a, probe_b, x, layer, 5, method="guided",
                                 position=(3, 4))
    pa = dv.Probe(a).project(x, layer, 5, method="guided", position=(3, 4))[0].double()
    pb = dv.Probe(b).project(x, layer, 5, method="guided", position=(3, 4))[0].double()
    expected = pb / pb.abs().max() - pa / pa.abs().max()
    assert torch.allclose(result.difference.double(), expected, atol=1e-6)
    assert result.correlation == pytest.approx(
        np.corrcoef(pa.flatten().numpy(), pb.flatten().numpy())[0, 1], abs=1e-9)
    maps = dv.Probe(b).activations(x, [layer])[layer][0, 5]
    assert result.peak_b == pytest.approx(float(maps[3, 4]))


def test_a_layer_the_other_model_lacks_is_named() -> None:
    a = Net(1)
    other = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    probe = dv.Probe(a)
    with pytest.raises(InvalidOptionError, match=r"not a layer of the model compared with"):
        compare_projections(probe, dv.Probe(other), image(), conv_layer(probe), 0)
    narrow = Net(1)
    narrow.features = ConvReluPool(pool=(2, 2), channels=(3, 6, 12), seed=1)
    with pytest.raises(InvalidOptionError, match=r"has shape .* only layers of the same shape"):
        compare_projections(probe, dv.Probe(narrow), image(), conv_layer(probe), 0)


def expected_frames(pa: torch.Tensor, pb: torch.Tensor) -> dict[str, np.ndarray]:
    def picture(values: torch.Tensor) -> np.ndarray:
        return render.to_rgba(render.resize_nearest(render.projection_picture(values),
                                                    PANE, PANE))

    difference = (pb.double() / pb.double().abs().max()
                  - pa.double() / pa.double().abs().max()).mean(0).numpy()
    return {"compare_a": picture(pa), "compare_b": picture(pb),
            "compare_difference": render.signed_rgba(difference,
                                                     float(np.abs(difference).max()),
                                                     (PANE, PANE))}


def test_the_pane_shows_both_models_and_the_difference() -> None:
    a, b = Net(1), Net(2)
    images = torch.stack([image(), torch.rand(3, 16, 16)])
    before = model_state(b)
    view = dv.DeepVis(a, images, compare=b, threaded=False)
    try:
        layer = conv_layer(view.probe)
        view.layer, view.unit = layer, 4
        assert view.wait()
        hidden = view.frames["compare_a"]  # a hidden tab computes nothing: neutral grey
        assert hidden is None or bool((hidden[..., :3] == 128).all())
        view.show_tab("compare")
        assert view.wait()
        frames = view.frames
        pa = dv.Probe(a).project(images[0], layer, 4)[0]
        pb = dv.Probe(b).project(images[0], layer, 4)[0]
        for name, want in expected_frames(pa, pb).items():
            assert np.array_equal(frames[name], want), name
        pane = view.panes["compare"]
        assert "correlation" in pane.numbers.value  # type: ignore[attr-defined]
    finally:
        view.close()
    assert_same_state(before, b)
    assert view.panes["compare"]._probes == {}  # type: ignore[attr-defined]


def test_without_a_second_model_the_pane_is_absent_and_refuses_a_non_module() -> None:
    view = dv.DeepVis(Net(1), image()[None], threaded=False)
    try:
        assert "compare" not in view.panes
        with pytest.raises(InvalidOptionError, match=r"no analysis tab 'compare'; the tabs are "
                           r"'top', "):
            view.show_tab("compare")
    finally:
        view.close()
    with pytest.raises(dv.DeepVisError, match=r"compare must be a torch\.nn\.Module, got str"):
        dv.DeepVis(Net(1), image()[None], compare="model.pt", threaded=False)


@pytest.mark.slow
def test_two_saved_epochs_of_the_embedded_run() -> None:
    shipped = demo.load()
    view = dv.DeepVis(shipped.model, shipped.dataset, checkpoints=shipped.series,
                      probe_size=8, max_images=4, threaded=False)
    try:
        first, last = view.scrubber.epochs[0], view.scrubber.epochs[-1]
        pane = view.panes["compare"]
        pane.other.value = first  # type: ignore[attr-defined]
        view.epoch = last
        view.layer, view.unit = "features.relu5", 7
        view.show_tab("compare")
        assert view.wait()
        x = view._model_input(view._images[view.image_index])
        projections = []
        for epoch in (last, first):
            model = copy.deepcopy(shipped.model)
            model.load_state_dict(view.scrubber.analysis.state_dict(epoch))
            projections.append(dv.Probe(model).project(x, "features.relu5", 7)[0])
        for name, want in expected_frames(*projections).items():
            assert np.array_equal(view.frames[name], want), name
        assert f"epoch {first}" in pane.captions["b"].value  # type: ignore[attr-defined]
    finally:
        view.close()
