"""The histogram and sanity-check tabs headless: what they draw equals numbers computed here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ipydeepvis as dv
from ipydeepvis import render
from ipydeepvis.core.sanity import sanity_check
from ipydeepvis.widgets.panes import PANE
from tests.nets import model_state

LAYER = "features.conv5"


@pytest.fixture(scope="module")
def demo() -> object:
    return dv.demo.load()


def layer_values(model: torch.nn.Module, images: torch.Tensor, layer: str) -> np.ndarray:
    """The layer's outputs by a forward hook on a plain run of the model, as float64."""
    out = []
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: out.append(o.detach().clone()))
    try:
        with torch.no_grad():
            model.eval()(images)
    finally:
        handle.remove()
    return out[0].double().numpy()


def test_histogram_bars_are_the_layers_values_binned_here(demo: object) -> None:
    view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes, max_images=4,
                      threaded=False)
    pane = view.panes["histogram"]
    assert "press <b>Run</b>" in pane.status.value and pane.probe_bars.x.size == 0
    view.show_tab("histogram")  # computed while shown, following the selection
    images = torch.stack(view._images)
    values = layer_values(demo.model, images, LAYER)
    counts, edges = np.histogram(values, bins=pane.bins)
    y = np.concatenate([pane.image_bars.y, pane.probe_bars.y])
    assert y.shape == (2, pane.bins)
    for bars in (pane.image_bars, pane.probe_bars):
        np.testing.assert_allclose(np.asarray(bars.x), (edges[:-1] + edges[1:]) / 2,
                                   rtol=0, atol=1e-12)
    np.testing.assert_array_equal(y[1], counts / counts.sum())
    image_counts = np.histogram(values[0], bins=edges)[0]
    np.testing.assert_array_equal(y[0], image_counts / values[0].size)
    unit_max = values.max(axis=(0, 2, 3))
    dead = int((unit_max <= 0).sum())
    assert f"dead units: {dead} of 48 ({dead / 48:.1%})" in pane.dead.value
    silent = int((values[0].max(axis=(1, 2)) <= 0).sum())
    assert f"on this image {silent} of 48 are silent" in pane.dead.value
    # another image: its own series changes, the probe set's stays (kept, not recomputed)
    calls = []
    original = pane.probes.put
    pane.probes.put = lambda *a, **k: (calls.append(a[0]), original(*a, **k))[1]
    view.image_index = 2
    y2 = np.concatenate([pane.image_bars.y, pane.probe_bars.y])
    np.testing.assert_array_equal(y2[1], y[1])
    np.testing.assert_array_equal(y2[0], np.histogram(values[2], bins=edges)[0] / values[2].size)
    assert calls == []
    # an added image joins the probe set: the probe set's series is computed again
    view.add_image(view._images[1].flip(-1))
    values = layer_values(demo.model, torch.stack(view._images), LAYER)
    counts, edges = np.histogram(values, bins=pane.bins)
    np.testing.assert_array_equal(pane.probe_bars.y[0], counts / counts.sum())
    assert "the dashboard&#x27;s 5 images" in pane.dead.value
    view.layer = "features.relu2"  # a ReLU layer: its range starts at 0
    assert np.asarray(pane.probe_bars.x)[0] > 0 and "range 0 to" in pane.dead.value
    assert "features.relu2" in pane.x_axis.label
    view.close()


def test_dead_fraction_per_epoch_follows_the_scrubbers_analysis(demo: object) -> None:
    view = dv.DeepVis(demo.model, demo.dataset, checkpoints=demo.series, max_images=2,
                      probe_size=8, threaded=False)
    pane = view.panes["histogram"]
    view.show_tab("histogram")
    analysis = view.scrubber.analysis
    xs, ys = analysis.dead()[view.layer]
    assert list(pane.epoch_lines.x) == xs and list(pane.epoch_lines.y) == ys
    at = xs.index(view.epoch)
    assert list(pane.epoch_marker.x) == [view.epoch] and list(pane.epoch_marker.y) == [ys[at]]
    # the probe set is the scrubber's: the dead fraction shown is the curve's point
    assert f"({ys[at]:.1%})" in pane.dead.value and "probe set (8 images)" in pane.dead.value
    first = view.scrubber.epochs[0]
    view.epoch = first
    assert list(pane.epoch_marker.x) == [first]
    assert f"({ys[0]:.1%})" in pane.dead.value
    view.close()


def test_sanity_toggle_redraws_the_projection_randomized_and_prints_the_similarity(
        demo: object) -> None:
    model = demo.model
    before = model_state(model)
    view = dv.DeepVis(model, demo.dataset, classes=demo.classes, max_images=4, threaded=False)
    view.unit = 5
    pane = view.panes["sanity"]
    assert pane.depth.options[0] == LAYER and pane.depth.options[-1] == "features.conv1"
    x = view._images[0]
    trained = dv.Probe(model).project(x, LAYER, 5)[0]

    def picture(values: torch.Tensor) -> np.ndarray:
        shown = render.projection_picture(values, "raw", 1.0)
        return render.to_rgba(render.resize_nearest(shown, PANE, PANE))

    assert view.frames["sanity"] is None  # nothing computed while the tab is hidden
    view.show_tab("sanity")
    assert np.array_equal(view.frames["sanity"], picture(trained))
    assert np.array_equal(view.frames["sanity_trained"], picture(trained))
    assert "weights as trained" in pane.similarity.value
    pane.mode.value = "cascading"
    pane.depth.value = "features.conv3"
    expected = sanity_check(model, x, LAYER, 5, depth="features.conv3", mode="cascading")
    assert np.array_equal(view.frames["sanity"], picture(expected.projection))
    assert not np.array_equal(view.frames["sanity"], picture(trained))
    assert np.array_equal(view.frames["sanity_trained"], picture(trained))
    text = pane.similarity.value
    assert f"<b>Spearman (abs)</b> {expected.spearman:.3f}" in text
    assert f"<b>SSIM</b> {expected.ssim:.3f}" in text
    assert "classifier.fc, classifier.fc6, features.conv5, features.conv4, features.conv3" \
        in text
    pane.mode.value = "trained"
    assert np.array_equal(view.frames["sanity"], picture(trained))
    view.layer = "features.relu2"
    assert pane.depth.options == ("features.conv2", "features.conv1")
    view.close()
    after = model_state(model)
    for key, value in before["tensors"].items():
        assert torch.equal(value, after["tensors"][key]), key
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert before["hooks"] == after["hooks"]
