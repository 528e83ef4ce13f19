"""The epoch scrubber: replay how a network's features evolved over its saved checkpoints.

Zeiler & Fergus (2014, Fig. 4) showed, for a few units per layer, the strongest activation over
the training set projected to pixels at several epochs, and read two lessons from it: lower layers
converge within a few epochs, upper ones need many, and sudden jumps happen when the image giving
the strongest activation changes. This view recomputes that figure from a user's own checkpoint
series, with the curves that make those lessons measurable: training metrics, relative weight
change per layer between saved epochs, and the fraction of dead units per layer.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import nn
from traitlets import Int, List, TraitError, Unicode, observe, validate

from .. import render
from ..core import Probe
from ..core.evolution import (
    EvolutionRow,
    EvolutionStrip,
    assemble_strip,
    conv_weight_keys,
    evolution_row,
    relative_weight_change,
)
from ..core.topk import TopK, top_k_many
from ..errors import DeepVisError, InvalidOptionError
from ._base import LatestWins, close_inner, report_error
from .tiles import TileCanvas

__all__ = ["EpochScrubber", "metric_curves"]

CELL = 40  # px of one projection or patch crop in the strip
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


def _materialize(dataset: Any, count: int) -> torch.Tensor:
    """The first ``count`` images as one tensor, built once (scans then never re-render them)."""
    if isinstance(dataset, torch.Tensor):
        return dataset[:count]
    batch = getattr(dataset, "batch", None)
    if callable(batch):
        return batch(list(range(count)))[0]
    items = [dataset[i] for i in range(count)]
    return torch.stack([item[0] if isinstance(item, (tuple, list)) else item for item in items])


class EpochScrubber(widgets.VBox):
    """Scrub through a checkpoint series: strip of feature evolution, curves, first-layer filters.

    Parameters
    ----------
    series : CheckpointSeries
        The saved epochs (``.epochs``, ``.metrics``, ``.model(epoch)``, ``.load(epoch)``).
    dataset : Tensor, sequence or Dataset
        Images (or ``(image, label)`` pairs) from which the probe set is taken.
    layer : str, optional
        Layer of the evolution strip; default the last conv layer.
    units : sequence of int, optional
        Units of the strip; default six seeded-random units of the layer.
    probe_size : int
        Number of images scanned per epoch (the first ``probe_size`` of ``dataset``).
    threaded : bool
        Compute in a background worker (default) or inside each event.
    """

    epoch = Int(help="The saved epoch shown").tag(sync=True)
    layer = Unicode(help="Layer of the evolution strip").tag(sync=True)
    units = List(Int(), help="Units of the evolution strip").tag(sync=True)

    def __init__(self, series: Any, dataset: Any, *, layer: str | None = None,
                 units: Sequence[int] | None = None, probe_size: int = 300,
                 batch_size: int = 64, threaded: bool = True) -> None:
        super().__init__()
        self._ready = False
        self.series = series
        self.probe_size = min(probe_size, len(dataset))
        self.dataset = _materialize(dataset, self.probe_size)
        self.batch_size = batch_size
        self.epochs: list[int] = [int(e) for e in series.epochs]
        if not self.epochs:
            msg = "the checkpoint series has no epochs"
            raise InvalidOptionError(msg)
        self._models: dict[int, nn.Module | None] = {}
        self._failures: dict[int, str] = {}
        self._scans: dict[tuple[int, str], TopK] = {}
        self._rows: dict[tuple[int, str, tuple[int, ...]], EvolutionRow] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self.strip: EvolutionStrip | None = None
        self.dead: dict[str, tuple[list[int], list[float]]] = {}
        reference = self._first_available_model()
        probe = Probe(reference, input_shape=tuple(self._image(0).shape))
        self._conv_layers = [lay.name for lay in probe.layers if lay.kind == "conv"]
        self._channels = {lay.name: int(lay.channels or 1) for lay in probe.layers}
        self._conv_keys = conv_weight_keys(reference)
        self._worker = LatestWins(self._render, self._show_error, threaded=threaded)
        self._build()
        self.epoch = self.epochs[-1]
        self.layer = layer or (self._conv_layers[-1] if self._conv_layers
                               else probe.layers[-1].name)
        if units is None:
            channels = self._channels[self.layer]
            picked = random.Random(0).sample(range(channels), min(6, channels))
            units = sorted(picked)
        self.units = list(units)
        self.children = [self._controls, self._progress_row,
                         widgets.HBox([self._strip_box, self._filters_box]),
                         widgets.HBox([self._loss_fig, self._acc_fig]),
                         widgets.HBox([self._change_fig, self._dead_fig]), self._status,
                         self._errors]
        self.add_class("epoch-scrubber")
        self._ready = True
        self._worker.request("epoch", "scan")

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
            msg = f"units must be 1 or more of 0..{channels - 1} for layer {self.layer!r}"
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
        """Stop the workers and close the widget and every widget inside it."""
        self._stop.set()
        self._worker.close()
        self._play_link.close()  # a widget too, registered, holding Play and slider
        close_inner(self)
        super().close()

    def model(self, epoch: int) -> nn.Module | None:
        """The model of a saved epoch (loaded once, kept), or None if it cannot be loaded."""
        with self._lock:
            if epoch not in self._models:
                try:
                    model = self.series.model(epoch)
                    model.eval()
                    self._models[epoch] = model
                except DeepVisError as exc:
                    self._models[epoch] = None
                    self._failures[epoch] = str(exc)
            return self._models[epoch]

    @property
    def available_epochs(self) -> list[int]:
        """Saved epochs whose checkpoint loads."""
        return [e for e in self.epochs if self.model(e) is not None]

    def save_png(self, path: str | Path) -> Path:
        """Save the evolution strip and the current first-layer filters as one PNG."""
        self.wait()
        frames = [c.frame for c in (self._strip_canvas, self._filters_canvas)
                  if c.frame is not None]
        height = max(f.shape[0] for f in frames)
        width = sum(f.shape[1] for f in frames) + 8 * (len(frames) - 1)
        sheet = np.full((height, width, 4), 255, dtype=np.uint8)
        x = 0
        for frame in frames:
            sheet[:frame.shape[0], x:x + frame.shape[1]] = frame
            x += frame.shape[1] + 8
        path = Path(path)
        Image.fromarray(sheet, "RGBA").save(path)
        return path

    def strip_picture(self) -> npt.NDArray[np.uint8] | None:
        """The evolution strip as drawn (RGBA), None before the first scan finished."""
        return self._strip_canvas.frame

    def weight_change(self) -> dict[str, tuple[list[int], list[float]]]:
        """``{conv layer: (epochs, relative change from the previous available epoch)}``.

        The change is between consecutive *saved* epochs, ``||W_e - W_prev|| / ||W_e||``, as
        saved; divide by the epoch gap for a per-epoch rate when saves are unevenly spaced.
        """
        epochs = self.available_epochs
        if len(epochs) < 2:
            return {}
        states = [self.model(e).state_dict() for e in epochs]  # type: ignore[union-attr]
        keys = list(self._conv_keys.values())
        change = relative_weight_change(states, keys)
        return {layer: (epochs[1:], change[:, i].tolist())
                for i, layer in enumerate(self._conv_keys)}

    # ------------------------------------------------------------------ layout

    def _build(self) -> None:
        self._slider = widgets.IntSlider(0, 0, len(self.epochs) - 1, description="epoch step",
                                         readout=False, continuous_update=True)
        self._slider.add_class("e2e-epoch")
        self._play = widgets.Play(value=0, min=0, max=len(self.epochs) - 1, interval=700,
                                  description="play")
        self._play.add_class("e2e-play")
        self._play_link = widgets.jslink((self._play, "value"), (self._slider, "value"))
        self._slider.observe(self._slider_moved, names="value")
        self._epoch_label = widgets.HTML()
        self._epoch_label.add_class("e2e-epoch-label")
        self._controls = widgets.HBox([self._play, self._slider, self._epoch_label])
        self._progress = widgets.IntProgress(0, 0, 1, description="probe scan")
        self._progress.add_class("e2e-progress")
        self._stop_button = widgets.Button(description="Stop", button_style="warning",
                                           layout=widgets.Layout(width="70px"))
        self._stop_button.on_click(lambda _b: self.stop())
        self._progress_row = widgets.HBox([self._progress, self._stop_button])
        self._strip_canvas = TileCanvas(CELL * 2, CELL, "e2e-strip")
        self._strip_box = widgets.VBox([widgets.HTML(
            "<b>feature evolution</b>: strongest probe-set activation per epoch "
            "(deconvnet | image patch); red: the image changed"), self._strip_canvas])
        self._filters_canvas = TileCanvas(CELL, CELL, "e2e-filters")
        self._filters_box = widgets.VBox([widgets.HTML("<b>first-layer filters</b>"),
                                          self._filters_canvas])
        curves = metric_curves(getattr(self.series, "metrics", None))
        self._loss_fig, self._loss_marker = self._figure(
            "loss", {k: v for k, v in curves.items() if "loss" in k}, "e2e-loss")
        self._acc_fig, self._acc_marker = self._figure(
            "accuracy", {k: v for k, v in curves.items() if "acc" in k}, "e2e-acc")
        self._change_fig, self._change_marker = self._figure(
            "relative weight change", self.weight_change(), "e2e-change")
        self._dead_fig, self._dead_marker = self._figure(
            "dead units", {name: ([], []) for name in self._conv_layers}, "e2e-dead")
        self._status = widgets.HTML()
        self._status.add_class("e2e-scrubber-status")
        self._errors = widgets.Output()

    def _figure(self, title: str, curves: dict[str, tuple[list[int], list[float]]],
                css: str) -> tuple[bq.Figure, bq.Lines]:
        x_scale = bq.LinearScale(min=float(min(self.epochs)), max=float(max(self.epochs)))
        y_scale = bq.LinearScale()
        marks = [bq.Lines(x=np.asarray(xs, float), y=np.asarray(ys, float),
                          scales={"x": x_scale, "y": y_scale}, labels=[name],
                          colors=[LINE_COLORS[i % len(LINE_COLORS)]], display_legend=True)
                 for i, (name, (xs, ys)) in enumerate(curves.items())]
        marker = bq.Lines(x=[self.epochs[-1]] * 2, y=[0.0, 1.0],
                          scales={"x": x_scale, "y": bq.LinearScale(min=0.0, max=1.0)},
                          colors=["red"], stroke_width=2)
        figure = bq.Figure(
            marks=[*marks, marker], title=title, animation_duration=0,
            axes=[bq.Axis(scale=x_scale, label="epoch"),
                  bq.Axis(scale=y_scale, side="left", tick_format=".2g")],
            layout=widgets.Layout(width="420px", height="260px"),
            fig_margin={"top": 40, "bottom": 40, "left": 50, "right": 10},
            legend_location="top-right")
        figure.add_class(css)
        return figure, marker

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

    def _move_markers(self) -> None:
        for marker in (self._loss_marker, self._acc_marker, self._change_marker,
                       self._dead_marker):
            marker.x = [self.epoch, self.epoch]

    def _highlight_column(self) -> None:
        if self.strip is None or self.epoch not in self.strip.epochs:
            self._strip_canvas.highlight(None)
            return
        column = self.strip.epochs.index(self.epoch)
        height = self._strip_canvas.frame.shape[0] if self._strip_canvas.frame is not None else 0
        self._strip_canvas.highlight((column * (2 * CELL + 4), 0, 2 * CELL, height))

    # ------------------------------------------------------------------ work

    def _image(self, index: int) -> torch.Tensor:
        return self.dataset[index]

    def _first_available_model(self) -> nn.Module:
        for epoch in self.epochs:
            model = self.model(epoch)
            if model is not None:
                return model
        msg = f"no checkpoint of the series loads: {self._failures}"
        raise InvalidOptionError(msg)

    def _render(self, parts: set[str]) -> None:
        if "epoch" in parts:
            self._draw_filters()
            missing = self._failures.get(self.epoch)
            if missing:
                self._status.value = (f"<span style='color:#b00'>epoch {self.epoch} is "
                                      f"unavailable: {missing}</span>")
        if "scan" in parts:
            self._scan_all()

    def _scan(self, epoch: int) -> dict[str, TopK]:
        """Top-1 scans of every conv layer and the strip's layer at ``epoch`` (cached)."""
        layers = list(dict.fromkeys([*self._conv_layers, self.layer]))
        todo = [name for name in layers if (epoch, name) not in self._scans]
        if todo:
            model = self.model(epoch)
            assert model is not None
            found = top_k_many(Probe(model), self.dataset, todo, 1, batch_size=self.batch_size,
                               limit=self.probe_size)
            for name, result in found.items():
                self._scans[(epoch, name)] = result
        return {name: self._scans[(epoch, name)] for name in layers}

    def _scan_all(self) -> None:
        """Scan every available epoch (progress shown, Stop honoured), then draw the results."""
        self._stop.clear()
        self._stop_button.disabled = False
        epochs = self.available_epochs
        layer, units = self.layer, tuple(self.units)
        self._progress.max, self._progress.value = len(epochs), 0
        rows: list[tuple[int, EvolutionRow]] = []
        for epoch in epochs:
            if self._stop.is_set():
                break
            scans = self._scan(epoch)
            key = (epoch, layer, units)
            if key not in self._rows:
                model = self.model(epoch)
                assert model is not None
                self._rows[key] = evolution_row(Probe(model), self.dataset, scans[layer], units)
            rows.append((epoch, self._rows[key]))
            self._progress.value += 1
        self._stop_button.disabled = True
        if not rows:
            return
        self.strip = assemble_strip(layer, units, rows)
        done = [e for e, _ in rows]
        self.dead = {name: (done, [self._scans[(e, name)].dead_fraction() for e in done])
                     for name in self._conv_layers}
        self._set_curves(self._dead_fig, self.dead)
        self._strip_canvas.show(self._strip_frame(self.strip))
        self._highlight_column()
        stopped = " (stopped)" if len(rows) < len(epochs) else ""
        self._status.value = (f"scanned {len(rows)} of {len(epochs)} epochs on "
                              f"{min(self.probe_size, len(self.dataset))} probe images"
                              f"{stopped}; layer <b>{layer}</b> units {list(units)}")

    def _strip_frame(self, strip: EvolutionStrip) -> npt.NDArray[np.uint8]:
        """Rows = units, columns = epochs; each cell = projection crop | image patch."""
        gap = 4
        width = len(strip.epochs) * (2 * CELL + gap) - gap
        height = len(strip.units) * (CELL + gap) - gap
        sheet = np.full((height, width, 3), 255, dtype=np.uint8)
        for e in range(len(strip.epochs)):
            for u in range(len(strip.units)):
                top, left = u * (CELL + gap), e * (2 * CELL + gap)
                projection = render.projection_picture(strip.projections[e][u])
                patch = render.image_to_uint8(strip.patches[e][u])
                sheet[top:top + CELL, left:left + CELL] = render.resize_nearest(
                    projection, CELL, CELL)
                sheet[top:top + CELL, left + CELL:left + 2 * CELL] = render.resize_nearest(
                    patch, CELL, CELL)
                if strip.changed[e, u]:
                    sheet[top:top + CELL, left:left + 2] = (220, 0, 0)
        return render.to_rgba(sheet)

    def _draw_filters(self) -> None:
        model = self.model(self.epoch)
        if model is None or not self._conv_layers:
            return
        weight = model.get_submodule(self._conv_layers[0]).weight.detach()  # (O, I, k, k)
        pictures = np.stack([render.projection_picture(w) for w in weight])
        size = max(8, min(24, 192 // math.ceil(math.sqrt(len(pictures)))))
        tiles = np.stack([render.resize_nearest(p, size, size) for p in pictures])
        self._filters_canvas.show(render.to_rgba(render.tile_grid(tiles, pad=2,
                                                                  background=255)))

    def _show_error(self, exc: BaseException) -> None:
        report_error(self._errors, exc, self._status)
