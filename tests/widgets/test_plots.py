"""The line plots (issue 12.11) headless: legends outside the plot area, whole-number epoch and
step ticks, one number format per kind of value, a sentence instead of empty metric axes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from ipycanvas.canvas import _CanvasManager
from ipywidgets.widgets.widget import _instances

import ipydeepvis as dv
from ipydeepvis import demo, errors
from ipydeepvis.widgets.epochs import NO_METRICS, EpochScrubber
from ipydeepvis.widgets.plots import (
    DIGIT_PX,
    TICK_PADDING,
    VALUE_FORMATS,
    LinePlot,
    epoch_ticks,
    integer_ticks,
    legend_entries,
    short_labels,
)
from tests.series_runs import write_demo_series


@pytest.fixture(scope="module")
def shipped() -> demo.Demo:
    return demo.load()


@pytest.fixture(scope="module")
def scrubber(shipped: demo.Demo) -> EpochScrubber:
    return EpochScrubber(shipped.series, shipped.dataset, probe_size=8, threaded=False)


def plots(view: EpochScrubber) -> dict[str, LinePlot]:
    return {"loss": view._loss_plot, "accuracy": view._acc_plot,
            "change": view._change_plot, "dead": view._dead_plot}


def assert_legend_outside(plot: LinePlot, labels: list[str]) -> None:
    """bqplot draws no legend (it would sit inside the plot area); the header above the
    figure names every line in its own colour, in order."""
    assert all(not mark.display_legend for mark in plot.figure.marks)
    assert plot.children[0] is plot.header  # above the figure, not in it
    header = plot.header.value
    positions = [header.index(f"{label}</span>") for label in labels]
    assert positions == sorted(positions), header
    entries = legend_entries(plot.figure.marks)
    for label, (_, colour, dashed) in zip(labels, entries, strict=True):
        style = "dashed" if dashed else "solid"
        assert f"border-top:2px {style} {colour};margin-right:4px'></span>{label}<" in header


def test_scrubber_plots_legends_ticks_and_formats(scrubber: EpochScrubber,
                                                  shipped: demo.Demo) -> None:
    saved = [int(e) for e in shipped.series.epochs]
    assert saved == [1, 2, 3, 5, 10, 15]
    convs = [f"conv{i}" for i in range(1, 6)]  # "features." shared by all: left out
    labels = {"loss": ["train_loss", "val_loss"], "accuracy": ["train_acc", "val_acc"],
              "change": convs, "dead": convs}
    y_formats = {"loss": ".3~g", "accuracy": ".0%", "change": ".3~g", "dead": ".0%"}
    for name, plot in plots(scrubber).items():
        assert plot.children[1] is plot.figure  # metrics saved: the figure, no message
        assert_legend_outside(plot, labels[name])
        ticks = plot.x_axis.tick_values
        assert ticks.dtype.kind == "i" and ticks.tolist() == saved, name
        assert plot.x_axis.tick_format == "d"
        assert plot.y_axis.tick_format == y_formats[name] == VALUE_FORMATS[
            "fraction" if name in ("accuracy", "dead") else "magnitude"]
        assert (plot.x_scale.min, plot.x_scale.max) == (1.0, 15.0)
    # accuracy on 0..100 %; dead units from 0 to the next tenth above the largest fraction
    assert (plots(scrubber)["accuracy"].y_scale.min, plots(scrubber)["accuracy"].y_scale.max) \
        == (0.0, 1.0)
    top = max(v for _, ys in scrubber.dead.values() for v in ys)
    dead_scale = plots(scrubber)["dead"].y_scale
    assert dead_scale.min == 0.0 and dead_scale.max == max(0.1, np.ceil(top * 10) / 10)
    assert dead_scale.max >= top
    # the red marker is no legend entry, and still follows the epoch
    assert [e[0] for e in legend_entries(scrubber._loss_fig.marks)] == labels["loss"]
    scrubber.epoch = 5
    assert list(scrubber._acc_marker.x) == [5, 5]


def test_a_new_view_of_the_strip_resends_the_curves(scrubber: EpochScrubber) -> None:
    """Voila can lose an update sent while it builds its models from the kernel's snapshot;
    the next identical update is never sent. The strip canvas' client-ready (a new front end)
    sends every curve's data and every plot's scale bounds again."""
    sent: list[tuple[str, tuple[str, ...]]] = []
    spied = []
    for name, plot in plots(scrubber).items():
        for widget in [*plot.figure.marks, plot.x_scale, plot.y_scale]:
            def spy(key: list[str] | None = None, _name: str = name) -> None:
                sent.append((_name, tuple(key or ())))
            widget.send_state = spy  # type: ignore[method-assign]
            spied.append(widget)
    try:
        scrubber._strip_canvas[0]._handle_custom_msg({"event": "client_ready"}, None)
    finally:
        for widget in spied:
            del widget.send_state
    for name, plot in plots(scrubber).items():
        curves = len(plot.figure.marks)  # the curves and the red marker
        assert sent.count((name, ("x", "y"))) == curves, (name, sent)
        assert sent.count((name, ("min", "max"))) == 2, name


def test_a_new_view_of_the_strip_resends_the_scan_status(scrubber: EpochScrubber) -> None:
    """The same race left Voila's page at "scanning" (progress bar short of its end, Stop
    lit, no "scanned" status) after the scan had finished: client-ready sends those again."""
    widgets_sent = [scrubber._progress, scrubber._stop_button, scrubber._status,
                    scrubber._strip_columns, scrubber._strip_rows, scrubber._epoch_label]
    sent: list[int] = []
    for i, widget in enumerate(widgets_sent):
        widget.send_state = lambda key=None, _i=i: sent.append(_i)  # type: ignore[method-assign]
    try:
        scrubber._strip_canvas[0]._handle_custom_msg({"event": "client_ready"}, None)
    finally:
        for widget in widgets_sent:
            del widget.send_state
    assert sorted(sent) == list(range(len(widgets_sent)))


def test_epoch_ticks_are_the_saved_epochs_or_round_whole_numbers() -> None:
    assert epoch_ticks([1, 2, 3, 5, 10, 15], 348) == [1, 2, 3, 5, 10, 15]
    assert epoch_ticks([15, 1, 5], 348) == [1, 5, 15]
    assert epoch_ticks([7], 348) == [7]
    many = epoch_ticks(range(1, 61), 348)  # 60 saved epochs: 5.9 px apart
    assert many == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]
    gap = 348 / 59 * 5
    assert gap >= 2 * DIGIT_PX + TICK_PADDING  # two-digit labels keep clear
    assert epoch_ticks(range(0, 200, 5), 348) == list(range(0, 200, 20))
    assert integer_ticks(0, 29) == [0, 5, 10, 15, 20, 25]
    assert integer_ticks(0, 4) == [0, 1, 2, 3, 4]
    assert integer_ticks(0, 999, 8) == [0, 200, 400, 600, 800]
    for low, high, most in itertools.product([0, 3, 17], [40, 333, 1000], [4, 8, 12]):
        ticks = integer_ticks(low, high, most)
        assert 1 <= len(ticks) <= most and low <= ticks[0] and ticks[-1] <= high
        assert len({b - a for a, b in itertools.pairwise(ticks)}) <= 1


def test_a_run_saved_without_metrics_says_so(tmp_path: Path, shipped: demo.Demo) -> None:
    root = write_demo_series(tmp_path / "run", [1, 2, 4])
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["metrics"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    before = set(_instances)
    view = EpochScrubber(root, shipped.dataset, probe_size=4, threaded=False)
    assert view.series.metrics == {}
    for name in ("loss", "accuracy"):
        plot = plots(view)[name]
        assert plot.children == (plot.header, plot.message), name  # no empty axes
        assert NO_METRICS in plot.message.value
        assert "deepvis-legend-item" not in plot.header.value  # a title, no legend
    for name in ("change", "dead"):  # computed from the weights: drawn as before
        plot = plots(view)[name]
        assert plot.children[1] is plot.figure
        assert plot.x_axis.tick_values.tolist() == [1, 2, 4]
    change = {m.labels[0]: m for m in view._change_fig.marks if m.labels}
    assert list(change["features.conv1"].x) == [2, 4]
    view.close()  # the figures not shown are closed too
    left = [w for i, w in _instances.items() if i not in before
            and not isinstance(w, _CanvasManager)]
    assert left == []


def test_metrics_without_loss_or_accuracy_name_what_was_saved(tmp_path: Path,
                                                              shipped: demo.Demo) -> None:
    root = write_demo_series(tmp_path / "run", [1, 2])
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["metrics"] = [{"epoch": 1, "lr": 0.1, "val_acc": 0.5},
                           {"epoch": 2, "lr": 0.05, "val_acc": 0.75}]
    (root / "manifest.json").write_text(json.dumps(manifest))
    view = EpochScrubber(root, shipped.dataset, probe_size=4, threaded=False)
    loss, accuracy = view._loss_plot, view._acc_plot
    assert loss.children[1] is loss.message
    assert ("no loss among the metrics saved with these checkpoints (lr, val_acc)"
            in loss.message.value)
    assert accuracy.children[1] is accuracy.figure
    line = next(m for m in view._acc_fig.marks if m.labels == ["val_acc"])
    assert list(line.x) == [1, 2] and list(line.y) == [0.5, 0.75]
    view.close()


def test_accuracy_saved_in_per_cent_is_not_clipped_to_a_fraction_axis(
        tmp_path: Path, shipped: demo.Demo) -> None:
    root = write_demo_series(tmp_path / "run", [1, 2])
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["metrics"] = [{"epoch": 1, "acc": 50.0}, {"epoch": 2, "acc": 75.0}]
    (root / "manifest.json").write_text(json.dumps(manifest))
    view = EpochScrubber(root, shipped.dataset, probe_size=4, threaded=False)
    assert view._acc_plot.y_axis.tick_format == VALUE_FORMATS["magnitude"]
    assert view._acc_plot.y_scale.max is None  # scaled to the data
    view.close()


def test_optimize_curve_legend_outside_and_whole_step_ticks(shipped: demo.Demo) -> None:
    view = dv.DeepVis(shipped.model, shipped.dataset, classes=shipped.classes, max_images=2,
                      threaded=False)
    pane = view.panes["optimize"]
    assert_legend_outside(pane.plot, ["objective", "best", "layer argmax from"])
    assert ("objective", "#1f77b4", False) in legend_entries(pane.figure.marks)
    assert ("layer argmax from", "#d62728", True) in legend_entries(pane.figure.marks)
    assert pane.plot.x_axis.tick_format == "d"
    assert pane.plot.y_axis.tick_format == VALUE_FORMATS["magnitude"]
    pane.steps.value = 30
    pane.request(run=True)
    assert len(pane.objective.x) == 30
    assert (pane.plot.x_scale.min, pane.plot.x_scale.max) == (0.0, 29.0)
    ticks = pane.plot.x_axis.tick_values
    assert ticks.dtype.kind == "i" and ticks.tolist() == [0, 5, 10, 15, 20, 25]
    view.close()


def test_optimize_picture_curve_and_status_agree_after_a_selection_change(
        shipped: demo.Demo) -> None:
    """A unit without a result shows no picture (not the last unit's), no curve and "press
    Run"; coming back shows the cached picture and curve."""
    view = dv.DeepVis(shipped.model, shipped.dataset, classes=shipped.classes, max_images=2,
                      threaded=False)
    pane = view.panes["optimize"]
    pane.steps.value = 10
    pane.request(run=True)
    picture = pane.canvas.frame.copy()
    assert picture[..., 3].min() == 255 and picture[..., :3].std() > 1  # drawn, opaque
    curve = np.asarray(pane.objective.y).copy()
    view.unit = 1
    assert "press <b>Run</b>" in pane.status.value
    assert len(pane.objective.x) == 0 and len(pane.argmax.x) == 0
    frame = pane.canvas.frame
    assert frame.shape == picture.shape and not frame.any()  # transparent: nothing shown
    view.unit = 0
    assert "from the cache" in pane.status.value
    assert np.array_equal(pane.canvas.frame, picture)
    np.testing.assert_array_equal(pane.objective.y, curve)
    view.close()


def test_invariance_legends_outside_and_probability_as_a_fraction(shipped: demo.Demo) -> None:
    view = dv.DeepVis(shipped.model, shipped.dataset, classes=shipped.classes, max_images=3,
                      threaded=False)
    pane = view.panes["invariance"]
    pane.request(run=True)
    shown = pane.box.children
    assert len(shown) == 3
    for plot in shown:
        assert_legend_outside(plot, ["image 0", "image 1", "image 2"])
        assert plot.x_axis.label == "shift (px)"
    assert shown[-1].title == "true class probability"
    assert shown[-1].y_axis.tick_format == ".0%"
    assert (shown[-1].y_scale.min, shown[-1].y_scale.max) == (0.0, 1.0)
    assert shown[0].y_axis.tick_format == ".3~g"
    view.close()


def test_a_fraction_axis_fits_small_fractions() -> None:
    plot = LinePlot("dead units", x_label="epoch", y_kind="fraction")
    assert (plot.y_scale.min, plot.y_scale.max) == (0.0, 1.0)
    for values, top in [([0.0, 0.0], 0.1), ([0.02, 0.156], 0.2), ([0.3], 0.3),
                        ([0.31, float("nan")], 0.4), ([0.97], 1.0), ([], 0.1)]:
        plot.fit_fraction_axis(values)
        assert plot.y_scale.max == top, values


def test_legend_labels_drop_the_module_path_they_share() -> None:
    assert short_labels(["features.conv1", "features.conv2"]) == ["conv1", "conv2"]
    assert short_labels(["a.b.c", "a.b.d", "a.x"]) == ["b.c", "b.d", "x"]
    assert short_labels(["layer1.0.conv1", "layer2.0.conv1"]) == ["layer1.0.conv1",
                                                                  "layer2.0.conv1"]
    assert short_labels(["features.conv1"]) == ["features.conv1"]
    assert short_labels(["m.a", "m.a"]) == ["a", "a"]  # never empty
    assert short_labels(["train_loss", "val_loss"]) == ["train_loss", "val_loss"]


def test_an_unknown_value_kind_is_refused() -> None:
    refused = r"value kind 'percent' is not one of \['count', 'fraction', 'magnitude'\]"
    with pytest.raises(errors.InvalidOptionError, match=refused):
        LinePlot("x", x_label="epoch", y_kind="percent")
