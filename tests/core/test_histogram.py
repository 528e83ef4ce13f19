"""Activation histograms equal numpy.histogram of the layer's values, computed independently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ipydeepvis as dv
from ipydeepvis.core import histogram as hist
from ipydeepvis.core.histogram import activation_histogram, image_histogram, probe_histogram
from ipydeepvis.core.topk import top_k
from ipydeepvis.errors import InvalidOptionError
from tests.nets import assert_same_state, model_state

WEIGHTS = torch.tensor([
    [[[1.0, 0.0], [0.0, 0.0]]],     # unit 0: the top-left pixel of each window (fires)
    [[[-1.0, -1.0], [-1.0, -1.0]]],  # unit 1: minus the window's sum, minus 1 (never fires)
    [[[0.5, -0.5], [0.5, -0.5]]],   # unit 2: a horizontal edge, both signs
])
BIAS = torch.tensor([0.0, -1.0, 0.25])


def hand_set() -> nn.Sequential:
    model = nn.Sequential(nn.Conv2d(1, 3, 2), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    with torch.no_grad():
        model[0].weight.copy_(WEIGHTS)
        model[0].bias.copy_(BIAS)
        model[3].weight.copy_(torch.linspace(-1, 1, 96).reshape(2, 48))
        model[3].bias.zero_()
    return model


def images(n: int = 11, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 5, 5, generator=torch.Generator().manual_seed(seed))


def conv_values(x: torch.Tensor) -> torch.Tensor:
    """The conv layer's output, computed here with the literal weights."""
    return F.conv2d(x, WEIGHTS, BIAS)


@pytest.mark.parametrize("batch_size", [1, 4, 64])
@pytest.mark.parametrize("keep", [True, False])
def test_probe_and_image_counts_equal_numpy_histogram(batch_size: int, keep: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if not keep:  # the probe set runs through the model a second time
        monkeypatch.setattr(hist, "KEEP_BYTES", 0)
    model, probe_set, image = hand_set(), images(), images(1, seed=5)[0]
    result = activation_histogram(model, "0", image, probe_set, bins=7, batch_size=batch_size)
    assert result is not None
    values = conv_values(probe_set).double().numpy()
    counts, edges = np.histogram(values, bins=7)
    assert np.array_equal(result.probe.edges, edges)
    assert np.array_equal(result.probe.counts, counts)
    assert result.probe.counts.sum() == probe_set.shape[0] * 3 * 4 * 4
    own = conv_values(image[None]).double().numpy()
    assert np.array_equal(result.image.counts, np.histogram(own, bins=edges)[0])
    assert result.image.below == int((own < edges[0]).sum())
    assert result.image.above == int((own > edges[-1]).sum())
    assert result.image.counts.sum() + result.image.below + result.image.above == own.size
    # unit 1 never fires: one of three units is dead; on the image unit 0 fires, unit 2 does
    assert result.dead_fraction == pytest.approx(1 / 3)
    assert result.probe.dead.tolist() == [False, True, False]
    unit_max = torch.from_numpy(values).float().amax(dim=(0, 2, 3))
    assert torch.equal(result.probe.unit_max, unit_max)
    assert result.image.silent_fraction == pytest.approx(1 / 3)
    assert result.probe.images == 11 and result.probe.nonfinite == 0


def test_relu_and_linear_layers_and_the_topk_dead_rule() -> None:
    model, probe_set = hand_set(), images(20, seed=1)
    relu = probe_histogram(model, "1", probe_set, bins=5)
    values = conv_values(probe_set).clamp(min=0).double().numpy()
    counts, edges = np.histogram(values, bins=5)
    assert relu is not None and np.array_equal(relu.counts, counts)
    assert np.array_equal(relu.edges, edges) and relu.edges[0] == 0.0
    # the dead rule is the top-k scan's (and so the scrubber's dead-unit curves')
    assert relu.dead_fraction == top_k(model, probe_set, "1", k=1).dead_fraction()
    logits = probe_histogram(model, "3", probe_set, bins=4)
    expected = model(probe_set).detach().double().numpy()
    assert logits is not None
    assert np.array_equal(logits.counts, np.histogram(expected, bins=4)[0])
    assert logits.unit_max.shape == (2,)


def test_images_outside_the_probe_range_and_flat_layers() -> None:
    model = hand_set()
    probe = probe_histogram(model, "0", images(6), bins=3)
    assert probe is not None
    bright = torch.full((1, 5, 5), 10.0)  # unit 0 gives 10: above the probe set's range
    shown = image_histogram(model, "0", bright, probe.edges)
    own = conv_values(bright[None]).double().numpy()
    assert shown.above == int((own > probe.edges[-1]).sum()) > 0
    assert np.array_equal(shown.counts, np.histogram(own, bins=probe.edges)[0])
    # every value equal (a black probe set through unit 1 only): numpy's +-0.5 range
    flat = nn.Conv2d(1, 1, 2)
    with torch.no_grad():
        flat.weight.zero_()
        flat.bias.fill_(2.0)
    result = probe_histogram(nn.Sequential(flat), "0", torch.zeros(3, 1, 4, 4), bins=4)
    counts, edges = np.histogram(np.full(27, 2.0), bins=4)
    assert result is not None
    assert np.array_equal(result.edges, edges) and np.array_equal(result.counts, counts)
    assert result.dead_fraction == 0.0


def test_nonfinite_values_are_left_out_and_counted() -> None:
    model = hand_set()
    with torch.no_grad():
        model[0].bias[2] = float("nan")
    result = probe_histogram(model, "0", images(4), bins=6)
    assert result is not None
    assert result.nonfinite == 4 * 16  # unit 2's map on every image
    finite = conv_values(images(4))[:, :2].double().numpy()
    assert np.array_equal(result.counts, np.histogram(finite, bins=6)[0])
    # a unit with only NaN never showed a value above zero: dead, as the top-k scan says
    assert float(result.unit_max[2]) == float("-inf") and bool(result.dead[2])
    assert result.dead_fraction == top_k(model, images(4), "0", k=1).dead_fraction()


def test_stop_leaves_the_model_as_it_was_and_bad_bins_are_refused() -> None:
    model = hand_set().train()
    model[3].weight.requires_grad_(False)
    model[0].register_forward_hook(lambda m, i, o: None)
    before = model_state(model)
    calls = []

    def stop(done: int, total: int) -> bool:
        calls.append((done, total))
        return False

    assert probe_histogram(model, "0", images(8), batch_size=4, callback=stop) is None
    assert calls == [(4, 16)]
    assert_same_state(before, model)
    with pytest.raises(InvalidOptionError, match=r"bins must be a positive int, got 0"):
        probe_histogram(model, "0", images(2), bins=0)
    with pytest.raises(dv.errors.LayerNotFoundError, match="nope"):
        probe_histogram(model, "nope", images(2))
    assert_same_state(before, model)
