"""The epoch scrubber: replay how a network's features evolved over its saved checkpoints.

Zeiler & Fergus (2014, Fig. 4) showed, for a few units per layer, the strongest activation over
the training set projected to pixels at several epochs, and read two lessons from it: lower layers
converge within a few epochs, upper ones need many, and sudden jumps happen when the image giving
the strongest activation changes. This view recomputes that figure from a user's own checkpoint
series, with the curves that make those lessons measurable: training metrics, relative weight
change per layer between saved epochs, and the fraction of dead units per layer.

All of it is computed by :class:`~ipydeepvis.core.series_analysis.SeriesAnalysis`
(``scrubber.analysis``); this view only draws it.
"""

from __future__ import annotations

import html
import math
import os
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import numpy.typing as npt
from torch import nn
from traitlets import Int, List, TraitError, Unicode, observe, validate

from .. import render
from ..checkpoints import CheckpointSeries
from ..core.evolution import EvolutionStrip
from ..core.series_analysis import (
    DEFAULT_CELL_BYTES,
    DEFAULT_SCAN_BYTES,
    DEFAULT_STATE_BYTES,
    SeriesAnalysis,
)
from ._base import LatestWins, close_widget_tree, report_error
from .plots import LinePlot, epoch_ticks
from .tiles import TileCanvas

__all__ = ["NO_METRICS", "EpochScrubber", "metric_curves"]

CELL = render.STRIP_CELL  # px of one projection or patch crop in the strip
GAP = render.STRIP_GAP
ROW_LABEL_WIDTH = 64  # px of the unit labels left of the strip
LINE_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f"]


def metric_curves(metrics: Any) -> dict[str, tuple[list[int], list[float]]]:
    """``{name: (epochs, values)}`` from a series' metrics.

    Accepts a list of per-epoch rows (``{"epoch": 3, "val_acc": 0.9, ...}``), a mapping
    ``{epoch: row}``, or a mapping ``{name: [values...]}`` (epochs then count from 1).
    """
    rows: list[dict[str, Any]] = []
    if isinstance(metrics, dict) and metrics and all(
            isinstance(v, (list, tuple)) for v in metrics.values()):
        names = list(metrics)
        length = max(len(v) for v in metrics.values())
        rows = [{"epoch": i + 1, **{n: metrics[n][i] for n in names if i < len(metrics[n])}}
                for i in range(length)]
    elif isinstance(metrics, dict):
        rows = [{"epoch": int(e), **row} for e, row in metrics.items()]
    elif metrics:
        rows = [dict(row) for row in metrics]
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for row in sorted(rows, key=lambda r: int(r["epoch"])):
        for name, value in row.items():
            if name == "epoch" or not isinstance(value, (int, float)):
                continue
            xs, ys = curves.setdefault(name, ([], []))
            xs.append(int(row["epoch"]))
            ys.append(float(value))
    return curves


NO_METRICS = "no metrics saved with these checkpoints"


def _missing_metric(kind: str, curves: dict[str, Any]) -> str | None:
    """What a metric plot says instead of empty axes: nothing saved at all, or no metric of
    this ``kind`` ("loss", "accuracy") among those saved; None when there is one."""
    key = "acc" if kind == "accuracy" else kind
    if any(key in name for name in curves):
        return None
    if not curves:
        return NO_METRICS
    return f"no {kind} among the metrics saved with these checkpoints ({', '.join(curves)})"


class EpochScrubber(widgets.VBox):
    """Scrub through a checkpoint series: strip of feature evolution, curves, first-layer filters.

    Parameters
    ----------
    series : CheckpointSeries, str or PathLike
        The saved epochs, or a path ``CheckpointSeries`` opens (a folder, a manifest).
    dataset : Tensor, sequence or Dataset
        Images (or ``(image, label)`` pairs) from which the probe set is taken.
    model : nn.Module or callable, optional
        The architecture, for a path without a ``manifest.json``.
    layer : str, optional
        Layer of the evolution strip; default the last conv layer.
    units : sequence of int, optional
        Units of the strip; default six seeded-random units of the layer.
    probe_size : int
        Number of images scanned per epoch (the first ``probe_size`` of ``dataset``).
    batch_size : int
        Images per forward pass of a scan.
    threaded : bool
        Compute in a background worker (default) or inside each event.
    picker : bool
        Show a layer and unit picker above the strip (a dashboard that drives the strip
        passes False).
    state_bytes, scan_bytes, cell_bytes : int
        Cache bounds of :class:`~ipydeepvis.core.series_analysis.SeriesAnalysis`
        (``scrubber.analysis``), which documents what each holds.
    """

    epoch = Int(help="The saved epoch shown").tag(sync=True)
    layer = Unicode(help="Layer of the evolution strip").tag(sync=True)
    units = List(Int(), help="Units of the evolution strip").tag(sync=True)

    def __init__(self, series: Any, dataset: Any, *, model: nn.Module | None = None,
                 layer: str | None = None, units: Sequence[int] | None = None,
                 probe_size: int = 300, batch_size: int = 64, threaded: bool = True,
                 picker: bool = True, state_bytes: int = DEFAULT_STATE_BYTES,
                 scan_bytes: int = DEFAULT_SCAN_BYTES,
                 cell_bytes: int = DEFAULT_CELL_BYTES) -> None:
        self._ready = False
        if isinstance(series, (str, os.PathLike)):  # the public series knows the embedded models
            series = CheckpointSeries(series, model=model)
        analysis = SeriesAnalysis(series, dataset, model=model, probe_size=probe_size,
                                  batch_size=batch_size, state_bytes=state_bytes,
                                  scan_bytes=scan_bytes, cell_bytes=cell_bytes)
        super().__init__()
        self.analysis = analysis
        self.series = analysis.series
        self.dataset = analysis.images
        self.probe_size = analysis.probe_size
        self.epochs: list[int] = list(analysis.epochs)
        self._channels = analysis.channels
        self._conv_layers = analysis.conv_layers
        self._stop = threading.Event()
        self._scan_note = ""
        self.strip: EvolutionStrip | None = None
        self.dead: dict[str, tuple[list[int], list[float]]] = {}
        self._worker = LatestWins(self._render, self._show_error, threaded=threaded,
                                  on_close=self.stop, name="ipydeepvis-scrubber")
        self._build(picker)
        self.epoch = self.epochs[-1]
        self.layer = layer or (self._conv_layers[-1] if self._conv_layers
                               else next(iter(self._channels)))
        if units is None:
            channels = self._channels[self.layer]
            units = sorted(random.Random(0).sample(range(channels), min(6, channels)))
        self.units = list(units)
        self._sync_picker()
        top = [self._picker, self._controls] if picker else [self._controls]
        def row(*children: widgets.Widget) -> widgets.HBox:
            """Side by side where there is room; in a narrow output area (Lab at 1100 px with
            the file browser open) the second one wraps below instead of sticking out."""
            return widgets.HBox(children, layout=widgets.Layout(flex_flow="row wrap",
                                                                grid_gap="8px"))

        self.children = [*top, self._progress_row, row(self._strip_box, self._filters_box),
                         row(self._loss_plot, self._acc_plot),
                         row(self._change_plot, self._dead_plot), self._status, self._errors]
        self.add_class("epoch-scrubber")
        self._ready = True
        self._worker.request("epoch", "scan", "change")

    # ------------------------------------------------------------------ traits

    @validate("epoch")
    def _check_epoch(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if value not in self.epochs:
            msg = f"epoch {value} is not a saved epoch; saved epochs are {self.epochs}"
            raise TraitError(msg)
        return value

    @validate("layer")
    def _check_layer(self, proposal: Any) -> str:
        name = str(proposal["value"])
        if name not in self._channels:
            msg = (f"layer {name!r} is not a layer of this model; conv layers are "
                   f"{self._conv_layers}")
            raise TraitError(msg)
        return name

    @validate("units")
    def _check_units(self, proposal: Any) -> list[int]:
        units = [int(u) for u in proposal["value"]]
        channels = self._channels.get(self.layer, 0)
        bad = [u for u in units if not 0 <= u < channels]
        if bad or not units:
            msg = (f"units {units} do not fit layer {self.layer!r}: give 1 or more of "
                   f"0..{channels - 1}")
            raise TraitError(msg)
        return units

    @observe("epoch")
    def _epoch_changed(self, change: Any) -> None:
        index = self.epochs.index(self.epoch)
        if self._slider.value != index:
            self._slider.value = index
        if self._play.value != index:  # else a new view's Play (jslinked) resets the slider
            self._play.value = index
        self._epoch_label.value = f"epoch <b>{self.epoch}</b>"
        self._move_markers()
        self._highlight_column()
        self._request("epoch")

    @observe("layer", "units")
    def _strip_changed(self, change: Any) -> None:
        if change["name"] == "layer" and self._ready:
            channels = self._channels[self.layer]
            if any(u >= channels for u in self.units):
                self.units = [u for u in self.units if u < channels] or [0]
        self._sync_picker()
        self._request("scan")

    def _request(self, *parts: str) -> None:
        if self._ready:
            self._worker.request(*parts)

    # ------------------------------------------------------------------ public

    def wait(self, timeout: float = 300.0) -> bool:
        """Block until everything requested is computed and drawn."""
        return self._worker.wait(timeout)

    def stop(self) -> None:
        """Interrupt the running probe-set scan (what the Stop button does)."""
        self._stop.set()

    def close(self) -> None:
        """Stop the scan and the worker, free the caches and close every widget of the view."""
        stop = getattr(self, "_stop", None)  # a failed constructor may not have made them
        if stop is not None:
            stop.set()
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close()
        analysis = getattr(self, "analysis", None)
        if analysis is not None:
            analysis.clear()
        # the Play link, and the picker when a dashboard drives the strip (not shown then)
        extra = [w for w in (getattr(self, "_play_link", None), getattr(self, "_picker", None))
                 if w is not None]
        close_widget_tree(self, *extra)

    def model(self, epoch: int) -> nn.Module | None:
        """A new module with the weights of a saved epoch, or None if it cannot be loaded
        (``scrubber.analysis.state_dict(epoch)`` gives the weights without a module)."""
        return self.analysis.model(epoch)

    @property
    def available_epochs(self) -> list[int]:
        """Saved epochs not known to be unreadable (each is tried when first needed; after a
        full strip, every unreadable epoch is known)."""
        return self.analysis.available_epochs

    def save_png(self, path: str | os.PathLike[str]) -> Path:
        """Save the labelled evolution strip (current epoch outlined) and the current
        first-layer filters as one PNG.

        Raises
        ------
        InvalidOptionError
            For a path that does not end in ``.png``, names a folder, or cannot be written.
        """
        render.check_png_path(path)
        self.wait()
        frames: list[npt.NDArray[np.uint8]] = []
        labels: list[str] = []
        strip = self.strip
        if strip is not None:
            picture = render.strip_picture(strip)
            if self.epoch in strip.epochs:
                box = render.StripLayout(len(strip.epochs), len(strip.units)).column_box(
                    strip.epochs.index(self.epoch))
                picture = render.outline(picture, box, render.HIGHLIGHT)
            layout = render.StripLayout(len(strip.epochs), len(strip.units))
            columns = [(layout.origin(e, 0)[1], f"ep {epoch}")
                       for e, epoch in enumerate(strip.epochs)]
            rows = [(layout.origin(0, u)[0] + CELL // 2, f"unit {unit}")
                    for u, unit in enumerate(strip.units)]
            frames.append(render.label_picture(picture, columns=columns, rows=rows))
            labels.append(f"feature evolution: layer {strip.layer}, deconvnet | image patch; "
                          f"epoch {self.epoch} outlined")
        filters = self._filters_canvas.frame
        if filters is not None:
            frames.append(filters)
            labels.append(f"first-layer filters ({self._conv_layers[0]}), epoch {self.epoch}")
        return render.save_png_sheet(frames, path, labels=labels)

    def strip_picture(self) -> npt.NDArray[np.uint8] | None:
        """The evolution strip as drawn (RGBA), None before the first scan finished."""
        return self._strip_canvas.frame

    def weight_change(self) -> dict[str, tuple[list[int], list[float]]]:
        """``{conv layer: (epochs, relative change from the previous readable epoch)}``.

        The change is between consecutive *saved* epochs, ``||W_e - W_prev|| / ||W_e||``, as
        saved; divide by the epoch gap for a per-epoch rate when saves are unevenly spaced.
        NaN where either epoch has non-finite weights.
        """
        return self.analysis.weight_change()

    # ------------------------------------------------------------------ layout

    def _build(self, picker: bool) -> None:
        self._slider = widgets.IntSlider(0, 0, len(self.epochs) - 1, description="saved epoch",
                                         readout=False, continuous_update=True,
                                         style={"description_width": "initial"})
        self._slider.add_class("e2e-epoch")
        self._play = widgets.Play(value=0, min=0, max=len(self.epochs) - 1, interval=700,
                                  description="play")
        self._play.add_class("e2e-play")
        # a widget too (registered, holding Play and the slider): closed with the view
        self._play_link = widgets.jslink((self._play, "value"), (self._slider, "value"))
        self._slider.observe(self._slider_moved, names="value")
        self._epoch_label = widgets.HTML()
        self._epoch_label.add_class("e2e-epoch-label")
        self._controls = widgets.HBox([self._play, self._slider, self._epoch_label])
        self._layer_picker = widgets.Dropdown(options=list(self._channels), description="layer")
        self._layer_picker.add_class("e2e-strip-layer")
        self._units_picker = widgets.IntsInput(value=[], min=0, description="units")
        self._units_picker.add_class("e2e-strip-units")
        self._layer_picker.observe(self._picked, names="value")
        self._units_picker.observe(self._picked, names="value")
        self._picker = widgets.HBox([self._layer_picker, widgets.Label("units"),
                                     self._units_picker])
        self._progress = widgets.IntProgress(0, 0, 1, description="probe scan")
        self._progress.add_class("e2e-progress")
        self._stop_button = widgets.Button(description="Stop", disabled=True,
                                           tooltip="stop the probe-set scan",
                                           layout=widgets.Layout(width="70px"))
        self._stop_button.add_class("e2e-stop")
        self._stop_button.on_click(lambda _b: self.stop())
        self._progress_row = widgets.HBox([self._progress, self._stop_button])
        self._strip_canvas = TileCanvas(CELL * 2, CELL, "e2e-strip")
        self._strip_columns = widgets.HTML(layout=widgets.Layout(margin="0"))
        self._strip_columns.add_class("e2e-strip-epochs")
        self._strip_rows = widgets.HTML(layout=widgets.Layout(margin="0",
                                                              width=f"{ROW_LABEL_WIDTH}px"))
        self._strip_rows.add_class("e2e-strip-units-labels")
        self._strip_canvas.layout.margin = "0"
        self._strip_box = widgets.VBox([
            widgets.HTML("<b>feature evolution</b>: strongest probe-set activation per epoch "
                         "(deconvnet | image patch); red bar: the image changed; red stripes: "
                         "non-finite"),
            self._strip_columns,
            widgets.HBox([self._strip_rows, self._strip_canvas])])
        self._filters_canvas = TileCanvas(CELL, CELL, "e2e-filters")
        self._filters_box = widgets.VBox([widgets.HTML("<b>first-layer filters</b>"),
                                          self._filters_canvas])
        curves = metric_curves(getattr(self.series, "metrics", None))
        self._loss_plot, self._loss_marker = self._plot(
            "loss", {k: v for k, v in curves.items() if "loss" in k}, "e2e-loss",
            missing=_missing_metric("loss", curves))
        accuracy = {k: v for k, v in curves.items() if "acc" in k}
        self._acc_plot, self._acc_marker = self._plot(
            "accuracy", accuracy, "e2e-acc", y_kind="fraction" if all(
                0.0 <= y <= 1.0 for _, ys in accuracy.values() for y in ys) else "magnitude",
            missing=_missing_metric("accuracy", curves))
        self._change_plot, self._change_marker = self._plot(
            "relative weight change", {name: ([], []) for name in self._conv_layers},
            "e2e-change")
        self._dead_plot, self._dead_marker = self._plot(
            "dead units", {name: ([], []) for name in self._conv_layers}, "e2e-dead",
            y_kind="fraction")
        self._loss_fig, self._acc_fig = self._loss_plot.figure, self._acc_plot.figure
        self._change_fig, self._dead_fig = self._change_plot.figure, self._dead_plot.figure
        # a new view of the strip means a front end just built its models: resend the curves
        # the worker may have updated meanwhile (LinePlot.resend)
        self._strip_canvas[0].on_client_ready(self._resend_plots)
        self._status = widgets.HTML()
        self._status.add_class("e2e-scrubber-status")
        self._errors = widgets.Output()

    def _plot(self, title: str, curves: dict[str, tuple[list[int], list[float]]], css: str,
              y_kind: str = "magnitude", missing: str | None = None) -> tuple[LinePlot, bq.Lines]:
        """A plot over the saved epochs (whole-number ticks at the saved epochs), its legend
        above the plot area, a red marker at the epoch shown; ``missing`` in its place when
        there is nothing to plot."""
        x_scale = bq.LinearScale(min=float(min(self.epochs)), max=float(max(self.epochs)))
        plot = LinePlot(title, x_label="epoch", y_kind=y_kind, css=css, x_scale=x_scale)
        plot.set_x_ticks(epoch_ticks(self.epochs, plot.plot_width))
        marks = [bq.Lines(x=np.asarray(xs, float), y=np.asarray(ys, float),
                          scales={"x": x_scale, "y": plot.y_scale}, labels=[name],
                          colors=[LINE_COLORS[i % len(LINE_COLORS)]])
                 for i, (name, (xs, ys)) in enumerate(curves.items())]
        marker = bq.Lines(x=[self.epochs[-1]] * 2, y=[0.0, 1.0],
                          scales={"x": x_scale, "y": bq.LinearScale(min=0.0, max=1.0)},
                          colors=["red"], stroke_width=2)
        plot.set_marks([*marks, marker])
        if missing is not None:
            plot.show_message(missing)
        return plot, marker

    def _resend_plots(self) -> None:
        """A front end just built the strip's view: send again what the worker may have
        changed while it was building (Voila takes a snapshot of the widgets' state while the
        notebook still runs, and an update sent meanwhile can be lost: the curves, and the
        scan's progress, Stop button and status, which then stayed at "scanning")."""
        for plot in (self._loss_plot, self._acc_plot, self._change_plot, self._dead_plot):
            plot.resend()
        for widget in (self._progress, self._stop_button, self._status, self._strip_columns,
                       self._strip_rows, self._epoch_label):
            widget.send_state()

    def _set_curves(self, figure: bq.Figure,
                    curves: dict[str, tuple[list[int], list[float]]]) -> None:
        """Update the figure's lines in place (by label): replacing marks would close the old
        mark widgets while a view may still draw them."""
        lines = {mark.labels[0]: mark for mark in figure.marks if mark.labels}
        for name, (xs, ys) in curves.items():
            line = lines.get(name)
            if line is not None:
                with line.hold_sync():
                    line.x, line.y = np.asarray(xs, float), np.asarray(ys, float)

    def _slider_moved(self, change: Any) -> None:
        self.epoch = self.epochs[int(change["new"])]

    def _picked(self, change: Any) -> None:
        """The layer / unit picker changed: set the traits (a refused value puts the picker
        back and says why in the status line)."""
        try:
            with self.hold_trait_notifications():
                layer = self._layer_picker.value
                if layer != self.layer:
                    self.layer = layer
                if change["owner"] is self._units_picker and list(change["new"]) != self.units:
                    self.units = list(change["new"])
        except TraitError as exc:
            self._status.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
            self._sync_picker()

    def _sync_picker(self) -> None:
        """Show the traits in the picker (without calling back)."""
        if not hasattr(self, "_layer_picker"):
            return
        if self._layer_picker.value != self.layer and self.layer in self._channels:
            self._layer_picker.value = self.layer
        self._units_picker.max = self._channels.get(self.layer, 1) - 1
        if list(self._units_picker.value) != list(self.units):
            self._units_picker.value = list(self.units)

    def _move_markers(self) -> None:
        for marker in (self._loss_marker, self._acc_marker, self._change_marker,
                       self._dead_marker):
            marker.x = [self.epoch, self.epoch]

    def _highlight_column(self) -> None:
        if self.strip is None or self.epoch not in self.strip.epochs:
            self._strip_canvas.highlight(None)
            return
        layout = render.StripLayout(len(self.strip.epochs), len(self.strip.units))
        self._strip_canvas.highlight(layout.column_box(self.strip.epochs.index(self.epoch)))

    # ------------------------------------------------------------------ work

    def _render(self, parts: set[str]) -> None:
        if "epoch" in parts:
            self._draw_filters()
            self._show_status()
        if "scan" in parts:
            self._scan_all()
        if "change" in parts:
            self._set_curves(self._change_fig, self.analysis.weight_change())

    def _set_running(self, running: bool) -> None:
        """The Stop button is live (and red) only while a scan runs."""
        with self._stop_button.hold_sync():
            self._stop_button.disabled = not running
            self._stop_button.button_style = "danger" if running else ""

    def _scan_all(self) -> None:
        """Compute the strip over every readable epoch (progress shown, Stop honoured), then
        draw it with the dead-unit curves."""
        self._stop.clear()
        layer, units = self.layer, list(self.units)
        epochs = self.analysis.available_epochs
        self._progress.max, self._progress.value = len(epochs), 0

        def on_epoch(done: int, _total: int) -> bool:
            self._progress.value = done
            return not self._stop.is_set()

        self._set_running(True)
        try:
            strip = self.analysis.strip(layer, units, epochs=epochs, callback=on_epoch)
        finally:
            self._set_running(False)
        if strip is None:
            return
        self.strip = strip
        self.dead = self.analysis.dead(strip.epochs)
        self._set_curves(self._dead_fig, self.dead)
        self._dead_plot.fit_fraction_axis([v for _, ys in self.dead.values() for v in ys])
        self._draw_strip(strip)
        stopped = " (stopped)" if self._stop.is_set() else ""
        readable = self.analysis.available_epochs
        unreadable = len(self.epochs) - len(readable)
        skipped = f", {unreadable} unreadable" if unreadable else ""
        note = (f"scanned {len(strip.epochs)} of {len(epochs)} epochs{skipped} on "
                f"{self.probe_size} probe images{stopped}; layer <b>{layer}</b> units {units}")
        if strip.notes:
            listed = "<br>".join(html.escape(n) for n in strip.notes)
            note += ("<br><span style='color:#b00'>non-finite results (red stripes in the "
                     f"strip):<br>{listed}</span>")
        self._scan_note = note
        self._show_status()

    def _draw_strip(self, strip: EvolutionStrip) -> None:
        self._strip_canvas.show(render.strip_picture(strip))
        self._highlight_column()
        width = render.StripLayout(1, 1).column_width
        cells = "".join(
            f"<div style='width:{width}px;flex:none;text-align:center;overflow:hidden'>"
            f"ep {epoch}</div>" for epoch in strip.epochs)
        self._strip_columns.value = (
            f"<div style='display:flex;gap:{GAP}px;margin-left:{ROW_LABEL_WIDTH}px;"
            f"font-size:11px;line-height:14px'>{cells}</div>")
        rows = "".join(
            f"<div style='height:{CELL}px;line-height:{CELL}px;white-space:nowrap'>"
            f"unit {unit}</div>" for unit in strip.units)
        self._strip_rows.value = (f"<div style='display:flex;flex-direction:column;gap:{GAP}px;"
                                  f"font-size:11px'>{rows}</div>")

    def _show_status(self) -> None:
        """The scan summary, plus a line about the epoch shown when it has a problem (cleared
        as soon as a good epoch is shown)."""
        problem = self.analysis.problem(self.epoch)
        lines = [self._scan_note] if self._scan_note else []
        if problem and self.epoch in self.analysis.failures:
            lines.append(f"<span style='color:#b00'>epoch {self.epoch} is unavailable: "
                         f"{html.escape(problem)}</span>")
        elif problem:
            lines.append(f"<span style='color:#b00'>epoch {self.epoch} diverged: "
                         f"{html.escape(problem)}</span>")
        self._status.value = "<br>".join(lines)

    def _draw_filters(self) -> None:
        if not self._conv_layers:
            return
        state = self.analysis.state_dict(self.epoch)
        if state is None:
            return
        weight = state[self.analysis.conv_keys[self._conv_layers[0]]]  # (O, I, k, k)
        pictures = np.stack([render.projection_picture(w) for w in weight])
        size = max(8, min(24, 192 // math.ceil(math.sqrt(len(pictures)))))
        tiles = np.stack([render.to_rgba(render.resize_nearest(p, size, size))
                          for p in pictures])
        # gaps and empty cells transparent: the page's background shows, light or dark
        self._filters_canvas.show(render.tile_grid(tiles, pad=2, background=0))

    def _show_error(self, exc: BaseException) -> None:
        self._set_running(False)
        report_error(self._errors, exc, self._status)
