"""The epoch scrubber on the shipped series, checked against the checkpoint files themselves."""

from __future__ import annotations

import gc
import itertools
import os
import re
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import ipydeepvis as dv
from ipydeepvis import demo, errors, render
from ipydeepvis.checkpoints import CheckpointSeries
from ipydeepvis.widgets.epochs import EpochScrubber, metric_curves
from tests.nets import assert_same_state, model_state
from tests.series_runs import write_demo_series

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
    assert np.array_equal(view.frames["grid"], render.activation_grid_rgba(maps,
                                                                           view.grid_layout))
    assert not np.array_equal(view.frames["grid"], last_grid)
    view.unit = 5
    assert view.scrubber.units[0] == 5 and view.scrubber.layer == view.layer
    assert_same_state(before, model)


def test_save_png_is_labelled_and_refuses_bad_paths(scrubber: EpochScrubber,
                                                    tmp_path: Path) -> None:
    path = scrubber.save_png(tmp_path / "strip.png")
    saved = np.asarray(Image.open(path))
    strip = scrubber.strip
    assert strip is not None
    labelled = render.strip_figure(strip)  # captions and outline make the file larger still
    assert saved.shape[0] > labelled.shape[0] and saved.shape[1] > labelled.shape[1]
    # the filters sit at the right end, below their caption, exactly as on the canvas
    canvas = scrubber._filters_canvas.frame
    assert canvas is not None
    transparent = canvas[:, :, 3] == 0  # the gaps between filters (the page shows there)
    assert transparent.any() and set(np.unique(canvas[:, :, 3])) == {0, 255}
    filters = np.where(transparent[:, :, None], 255, canvas)  # ... white in the file
    filters[:, :, 3] = 255
    h, w = filters.shape[:2]
    top = 14 + 6  # below its one-line caption (font size 14)
    assert any(np.array_equal(saved[top:top + h, x:x + w], filters)
               for x in range(saved.shape[1] - w + 1)
               if np.array_equal(saved[top, x:x + w], filters[0]))
    for bad, why in [(tmp_path / "strip.jpg", "does not end in '.png'"),
                     (tmp_path, "is a folder"),
                     (tmp_path / "missing" / "x.png", "does not exist"),
                     (Path("/proc/strip.png"), "cannot write")]:
        with pytest.raises(errors.InvalidOptionError, match=re.escape(why)):
            scrubber.save_png(bad)
    assert not (tmp_path / "strip.jpg").exists()


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


# ---------------------------------------------------------------------- issue 9 and 12 items


def test_a_path_is_accepted_and_construction_reads_lazily(tmp_path: Path,
                                                          shipped: demo.Demo) -> None:
    """Bug 10 (a path like DeepVis takes) and bug 4 (building loads at most a couple of
    epochs): every read made while the constructor runs is counted, in its thread."""
    root = tmp_path / "run"
    write_demo_series(root, range(1, 7))
    reads: list[int] = []
    original = CheckpointSeries.load

    def counting(self: CheckpointSeries, epoch: int) -> dict[str, torch.Tensor]:
        reads.append(threading.get_ident())
        return original(self, epoch)

    CheckpointSeries.load = counting  # type: ignore[method-assign]
    try:
        view = EpochScrubber(str(root), shipped.dataset, probe_size=8)  # worker thread
        during = reads.count(threading.get_ident())
        assert view.wait(120)
    finally:
        CheckpointSeries.load = original  # type: ignore[method-assign]
        view.close()
    assert during <= 2
    assert view.strip is not None and view.strip.epochs == tuple(range(1, 7))
    assert view.analysis.epochs == list(range(1, 7))


def test_empty_data_and_zero_probe_size_are_refused(shipped: demo.Demo,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ignored: list[object] = []  # "Exception ignored in __del__" of a half-built widget
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    with pytest.raises(errors.InvalidOptionError, match="probe_size must be a positive"):
        EpochScrubber(shipped.series, shipped.dataset, probe_size=0, threaded=False)
    with pytest.raises(errors.InvalidInputError, match="the data set is empty"):
        EpochScrubber(shipped.series, torch.zeros(0, 3, 64, 64), threaded=False)
    with pytest.raises(errors.CheckpointError, match="does not exist"):
        EpochScrubber("no/such/run", shipped.dataset, threaded=False)
    gc.collect()
    assert ignored == []


def test_a_diverged_epoch_is_reported_and_marked(tmp_path: Path, shipped: demo.Demo) -> None:
    """Bug 6: NaN weights at epoch 3 of 5: status text, a striped column, NaN weight change,
    the other columns drawn as they are without it."""
    root = write_demo_series(tmp_path / "run", [1, 2, 3, 4, 5], nan_epochs=[3])
    view = EpochScrubber(root, shipped.dataset, layer="features.conv2", units=[0, 3],
                         probe_size=16, threaded=False)
    assert view.strip is not None and view.strip.epochs == (1, 2, 3, 4, 5)
    assert "non-finite results" in view._status.value
    assert "epoch 3: non-finite weights in features.conv1.weight" in view._status.value
    picture = view.strip_picture()
    layout = render.StripLayout(5, 2)
    x, y, w, h = layout.column_box(2)
    column = picture[y:y + h, x:x + w, :3]
    red = np.all(column == render.CHANGED_COLOR, axis=2).mean()
    white = np.all(column == 255, axis=2).mean()
    assert red > 0.3 and white > 0.3  # stripes (and the gap between the two rows is white)
    expected = render.strip_picture(view.analysis.strip("features.conv2", [0, 3],
                                                        epochs=[1, 2, 4, 5]))
    keep = np.concatenate([picture[:, :2 * (w + 4)], picture[:, 3 * (w + 4):]], axis=1)
    assert np.array_equal(keep, expected)
    change = view.weight_change()["features.conv1"]
    assert change[0] == [2, 3, 4, 5]
    assert np.isnan(change[1][1]) and np.isnan(change[1][2]) and np.isfinite(change[1][0])
    lines = {mark.labels[0]: mark for mark in view._change_fig.marks if mark.labels}
    assert np.isnan(np.asarray(lines["features.conv1"].y)[1])  # drawn as a gap, not 0.0
    view.epoch = 3
    assert "epoch 3 diverged: non-finite weights" in view._status.value
    view.epoch = 4
    assert "diverged" not in view._status.value.split("<br>")[-1]


def test_unavailable_status_clears_when_a_good_epoch_draws(tmp_path: Path,
                                                           shipped: demo.Demo) -> None:
    root = write_demo_series(tmp_path / "run", [1, 2, 3])
    path = root / "epoch_002.safetensors"
    path.write_bytes(path.read_bytes()[:500])
    view = EpochScrubber(root, shipped.dataset, probe_size=8, threaded=False)
    view.epoch = 2
    assert "epoch 2 is unavailable" in view._status.value
    view.epoch = 3
    assert "unavailable" not in view._status.value
    assert "1 unreadable" in view._status.value


def test_strip_labels_picker_slider_and_stop_button(shipped: demo.Demo) -> None:
    """Issue 12 item 12: epoch column labels and unit row labels, a layer / unit picker on a
    stand-alone scrubber, a clear slider label, a Stop button that is not orange at rest."""
    view = EpochScrubber(shipped.series, shipped.dataset, layer="features.conv3", units=[4, 1],
                         probe_size=16, threaded=False)
    epochs = re.findall(r">ep (\d+)<", view._strip_columns.value)
    assert [int(e) for e in epochs] == shipped.series.epochs
    assert re.findall(r">unit (\d+)<", view._strip_rows.value) == ["4", "1"]
    assert f"width:{2 * render.STRIP_CELL}px" in view._strip_columns.value
    assert view._slider.description == "saved epoch"
    assert view._stop_button.disabled and view._stop_button.button_style == ""
    assert view._picker in view.children
    assert view._layer_picker.value == "features.conv3" and view._units_picker.value == [4, 1]
    view._layer_picker.value = "features.conv1"  # what the user picks
    assert view.layer == "features.conv1" and view.strip is not None
    assert view.strip.layer == "features.conv1" and view._units_picker.max == 23
    view._units_picker.value = [2, 30]  # 30 is past conv1's 24 units: refused, put back
    assert view.units == [4, 1] and view._units_picker.value == [4, 1]
    assert "units [2, 30] do not fit layer" in view._status.value
    view._units_picker.value = [7]
    assert view.units == [7] and view.strip.units == (7,)
    view.units = [3, 5]  # and the other way round
    assert view._units_picker.value == [3, 5]
    bare = EpochScrubber(shipped.series, shipped.dataset, probe_size=8, threaded=False,
                         picker=False)
    assert bare._picker not in bare.children


@pytest.mark.slow
def test_a_hundred_unit_changes_on_sixty_epochs_stay_within_the_bounds(
        tmp_path: Path, shipped: demo.Demo) -> None:
    """Bug 4: the caches never pass their documented bounds, RSS grows by less than their sum,
    whatever the number of unit changes (conv1 keeps each projection cheap; eviction under
    tight bounds is tested in tests/core/test_series_analysis.py)."""
    root = write_demo_series(tmp_path / "run", range(1, 61))
    view = EpochScrubber(root, shipped.dataset, layer="features.conv1", units=[0],
                         probe_size=8, threaded=False)  # the documented default bounds
    limits = view.analysis.cache_limits
    bound = sum(limits.values())
    gc.collect()
    start = rss_bytes()
    peak = 0
    for change in range(100):
        view.units = [(5 * change) % 24, (5 * change + 1) % 24]
        used = view.analysis.cache_bytes
        assert all(used[k] <= view.analysis.cache_limits[k] for k in used)
        peak = max(peak, sum(used.values()))
    gc.collect()
    growth = rss_bytes() - start
    assert view.strip is not None and len(view.strip.epochs) == 60
    assert peak <= bound
    print(f"caches {used}, peak {peak / 2**20:.1f} MiB, RSS growth {growth / 2**20:.1f} MiB")
    assert growth < bound + (24 << 20), f"RSS grew by {growth / 2**20:.1f} MiB"
    view.close()


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
