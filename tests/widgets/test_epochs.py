"""The epoch scrubber on the shipped series, checked against the checkpoint files themselves."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import ipydeepvis as dv
from ipydeepvis import demo
from ipydeepvis.checkpoints import CheckpointSeries
from ipydeepvis.widgets.epochs import EpochScrubber, metric_curves
from tests.nets import assert_same_state, model_state

PROBE = 120


@pytest.fixture(scope="module")
def shipped() -> demo.Demo:
    return demo.load()


@pytest.fixture(scope="module")
def scrubber(shipped: demo.Demo) -> EpochScrubber:
    return EpochScrubber(shipped.series, shipped.dataset, probe_size=PROBE, threaded=False)


def test_weight_change_equals_the_files(scrubber: EpochScrubber, shipped: demo.Demo) -> None:
    root = Path(shipped.series.path) if hasattr(shipped.series, "path") else demo.series_path()
    files = {e: load_file(str(next(root.glob(f"epoch_{e:03d}.safetensors"))))
             for e in shipped.series.epochs}
    curves = scrubber.weight_change()
    assert list(curves) == [f"features.conv{i}" for i in range(1, 6)]
    epochs = shipped.series.epochs
    for layer, (xs, ys) in curves.items():
        assert xs == epochs[1:]
        key = next(k for k in files[epochs[0]] if k.endswith(f"{layer.split('.')[-1]}.weight"))
        expected = [
            float((files[b][key].double() - files[a][key].double()).norm()
                  / files[b][key].double().norm())
            for a, b in itertools.pairwise(epochs)
        ]
        np.testing.assert_allclose(ys, expected, rtol=1e-9)


def test_lower_layers_settle_first(scrubber: EpochScrubber) -> None:
    """Z&F's observation as a number: over the run, conv1's relative weight change falls by a
    larger factor than conv5's (last saved interval / first one)."""
    curves = scrubber.weight_change()
    first = curves["features.conv1"][1]
    last = curves["features.conv5"][1]
    assert first[-1] / first[0] < last[-1] / last[0]


def test_strip_argmax_images_equal_brute_force(scrubber: EpochScrubber,
                                               shipped: demo.Demo) -> None:
    strip = scrubber.strip
    assert strip is not None and strip.epochs == tuple(shipped.series.epochs)
    images = shipped.dataset.batch(list(range(PROBE)))[0]
    layer = strip.layer
    for e, epoch in enumerate(strip.epochs):
        model = shipped.series.model(epoch).eval()
        captured: list[torch.Tensor] = []
        handle = model.get_submodule(layer).register_forward_hook(
            lambda m, i, o, out=captured: out.append(o.detach().clone()))
        with torch.no_grad():
            for start in range(0, PROBE, 40):
                model(images[start:start + 40])
        handle.remove()
        per_image = torch.cat(captured).flatten(2).max(dim=2).values  # (N, C)
        for u, unit in enumerate(strip.units):
            column = per_image[:, unit]
            assert int(strip.indices[e, u]) == int(torch.nonzero(column == column.max())[0])
    changed = strip.indices[1:] != strip.indices[:-1]
    assert torch.equal(strip.changed[1:], changed) and not strip.changed[0].any()


def test_scrubbing_moves_markers_and_filters(scrubber: EpochScrubber,
                                             shipped: demo.Demo) -> None:
    first = shipped.series.epochs[0]
    scrubber.epoch = first
    assert list(scrubber._loss_marker.x) == [first, first]
    filters_first = scrubber._filters_canvas.frame.copy()
    scrubber._slider.value = len(shipped.series.epochs) - 1  # what the slider / Play does
    last = shipped.series.epochs[-1]
    assert scrubber.epoch == last and list(scrubber._dead_marker.x) == [last, last]
    assert not np.array_equal(filters_first, scrubber._filters_canvas.frame)
    assert scrubber.dead and all(0 <= v <= 1 for _, vs in scrubber.dead.values() for v in vs)
    assert all(xs == shipped.series.epochs for xs, _ in scrubber.dead.values())
    with pytest.raises(Exception, match=r"epoch 4 is not a saved epoch"):
        scrubber.epoch = 4


def test_broken_epoch_is_shown_as_unavailable(tmp_path: Path, shipped: demo.Demo) -> None:
    root = tmp_path / "series"
    shutil.copytree(demo.series_path(), root)
    broken = shipped.series.epochs[1]
    path = next(root.glob(f"epoch_{broken:03d}.safetensors"))
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    series = CheckpointSeries(root)
    view = EpochScrubber(series, shipped.dataset, probe_size=40, threaded=False)
    assert broken not in view.available_epochs
    assert view.strip is not None and broken not in view.strip.epochs
    view.epoch = broken
    assert f"epoch {broken} is unavailable" in view._status.value
    assert path.name in view._status.value


def test_dashboard_follows_the_epoch_on_its_own_copy(shipped: demo.Demo) -> None:
    model = shipped.model
    before = model_state(model)
    view = dv.DeepVis(model, shipped.dataset, checkpoints=shipped.series,
                      classes=shipped.classes, threaded=False, max_images=4, probe_size=60)
    last_grid = view.frames["grid"].copy()
    view.epoch = shipped.series.epochs[0]
    assert view.scrubber is not None and view.scrubber.epoch == view.epoch
    early = shipped.series.model(view.epoch).eval()
    maps = dv.Probe(early).activations(view._images[0], [view.layer])[view.layer][0]
    from ipydeepvis import render

    assert np.array_equal(view.frames["grid"], render.activation_grid_rgba(maps,
                                                                           view.grid_layout))
    assert not np.array_equal(view.frames["grid"], last_grid)
    view.unit = 5
    assert view.scrubber.units[0] == 5 and view.scrubber.layer == view.layer
    assert_same_state(before, model)


def test_save_png(scrubber: EpochScrubber, tmp_path: Path) -> None:
    path = scrubber.save_png(tmp_path / "strip.png")
    saved = np.asarray(Image.open(path))
    strip = scrubber.strip_picture()
    assert strip is not None and np.array_equal(saved[:strip.shape[0], :strip.shape[1]], strip)


def test_metric_curves_accept_the_usual_shapes() -> None:
    rows = [{"epoch": 2, "loss": 0.5}, {"epoch": 1, "loss": 1.0, "note": "x"}]
    assert metric_curves(rows) == {"loss": ([1, 2], [1.0, 0.5])}
    assert metric_curves({1: {"acc": 0.1}, 3: {"acc": 0.3}}) == {"acc": ([1, 3], [0.1, 0.3])}
    assert metric_curves({"acc": [0.1, 0.2]}) == {"acc": ([1, 2], [0.1, 0.2])}
    assert metric_curves(None) == {}


def test_scan_shows_progress_and_can_be_stopped(shipped: demo.Demo) -> None:
    view = EpochScrubber(shipped.series, shipped.dataset, probe_size=30, threaded=False)
    seen: list[int] = []

    def on_progress(change: dict) -> None:  # the Stop button, pressed during the scan
        seen.append(change["new"])
        if change["new"] == 2:
            view.stop()

    view._progress.observe(on_progress, names="value")
    view.units = [1, 2]  # a new strip: every epoch is scanned again
    assert seen == [0, 1, 2] and view._progress.max == len(shipped.series.epochs)
    assert view.strip is not None and len(view.strip.epochs) == 2
    assert "scanned 2 of 6 epochs" in view._status.value and "(stopped)" in view._status.value
