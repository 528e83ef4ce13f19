"""The activation-histogram pane: how the selected layer's values are spread, and its dead units.

Draws what :mod:`ipydeepvis.core.histogram` computes: one bqplot bar chart with two series in
the same bins (the current image, the probe set), each as a fraction of its values so the two
compare, and the fraction of the layer's units that never fire on the probe set. With
checkpoints, a small line shows that fraction per saved epoch (from the scrubber's
:class:`~ipydeepvis.core.series_analysis.SeriesAnalysis`, the same rule and the same probe set)
with the shown epoch marked.

The probe set is the scrubber's (its ``probe_size`` images) when the dashboard has checkpoints,
else the dashboard's own images. Its histogram is kept per (epoch, layer), so moving to another
image costs one forward pass.
"""

from __future__ import annotations

import html
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import torch

from ..core.cache import ByteLRU
from ..core.histogram import DEFAULT_BINS, LayerHistogram, image_histogram, probe_histogram
from .analyses import JobPane
from .panes import ViewState

if TYPE_CHECKING:
    from .dashboard import DeepVis

__all__ = ["HistogramPane", "HistogramView"]

IMAGE_COLOR = "#ff7f0e"
PROBE_COLOR = "#1f77b4"
PROBE_CACHE_BYTES = 16 * 2**20


@dataclass(frozen=True)
class HistogramView:
    """What :class:`HistogramPane` draws: the histograms, the probe set's name, and the dead
    fraction per saved epoch for the layer (empty without checkpoints or for a layer the
    scrubber does not scan)."""

    histogram: LayerHistogram
    probe_set: str
    dead_epochs: tuple[list[int], list[float]]


class HistogramPane(JobPane):
    """The selected layer's activation histogram on the current image and the probe set, and
    the fraction of its units that never fire.

    Computed while its tab is shown, following the layer, the image and the epoch (a hidden
    tab costs nothing).
    """

    name = "histogram"
    title = "histogram"
    depends = frozenset({"layer", "image_index", "epoch"})
    auto = True  # computes while its tab is shown (DeepVis.tab_shown)
    bins: ClassVar[int] = DEFAULT_BINS

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self.probes: ByteLRU[Any] = ByteLRU(PROBE_CACHE_BYTES, "probe-set histograms")
        # no padding below 0: a fraction axis that starts at -0.015 reads as a bug
        x, y = bq.LinearScale(), bq.LinearScale(min=0.0, allow_padding=False)
        # two marks, not one grouped Bars: bqplot 0.13's grouped (and 1-D) bars draw with
        # zero height in JupyterLab 4 and Voila here; one-row 2-D bars draw. The probe set's
        # bars are wide, the image's narrow ones stand in front of them.
        self.probe_bars = bq.Bars(x=[], y=[], scales={"x": x, "y": y}, colors=[PROBE_COLOR],
                                  padding=0.05, labels=["probe set"])
        self.image_bars = bq.Bars(x=[], y=[], scales={"x": x, "y": y}, colors=[IMAGE_COLOR],
                                  padding=0.55, labels=["this image"])
        self.x_axis = bq.Axis(scale=x, label="activation", tick_format=".2g")
        self.figure = bq.Figure(
            marks=[self.probe_bars, self.image_bars], animation_duration=0,
            axes=[self.x_axis, bq.Axis(scale=y, side="left", num_ticks=5,
                                       label="fraction of values", tick_format=".2g")],
            layout=widgets.Layout(width="520px", height="280px"),
            fig_margin={"top": 20, "bottom": 45, "left": 60, "right": 15})
        self.figure.add_class("e2e-histogram-figure")
        swatch = ("<span style='display:inline-block;width:{}px;height:12px;"
                  "background:{};margin-right:4px'></span>{}")
        self.legend = widgets.HTML("<br>".join([
            swatch.format(6, IMAGE_COLOR, "this image (narrow bars)"),
            swatch.format(12, PROBE_COLOR, "probe set (wide bars)")]))
        self.legend.add_class("e2e-histogram-legend")
        self.dead = widgets.HTML(layout=widgets.Layout(width="240px"))
        self.dead.add_class("e2e-histogram-dead")
        side = [self.legend, self.dead]
        self.epoch_lines: bq.Lines | None = None
        self.epoch_marker: bq.Scatter | None = None
        if view.scrubber is not None:
            ex, ey = bq.LinearScale(), bq.LinearScale(min=0.0, max=1.0, allow_padding=False)
            self.epoch_lines = bq.Lines(x=[], y=[], scales={"x": ex, "y": ey},
                                        colors=[PROBE_COLOR], marker="circle", marker_size=16)
            self.epoch_marker = bq.Scatter(x=[], y=[], scales={"x": ex, "y": ey},
                                           colors=["#d62728"], default_size=48)
            epochs = bq.Figure(
                marks=[self.epoch_lines, self.epoch_marker], animation_duration=0,
                title="dead fraction per epoch",
                axes=[bq.Axis(scale=ex, label="epoch", tick_format="d", num_ticks=4),
                      bq.Axis(scale=ey, side="left", num_ticks=3,
                              tick_format=".1f")],
                layout=widgets.Layout(width="240px", height="170px"),
                fig_margin={"top": 40, "bottom": 35, "left": 40, "right": 10})
            epochs.add_class("e2e-histogram-epochs")
            side.append(epochs)
        # a narrow output area puts the legend and the counts under the chart (not clipped)
        self.outputs = [widgets.HBox([self.figure, widgets.VBox(side)],
                                     layout=widgets.Layout(flex_flow="row wrap"))]
        self.assemble("How the selected layer's activations are spread on this image and on "
                      "the probe set (the same bins, each as a fraction of its values), and "
                      "the fraction of its units that never fire (largest value over the "
                      "probe set &le; 0).")


    # -- what the result depends on ------------------------------------------------------------

    def probe_images(self) -> tuple[torch.Tensor, str]:
        """The probe set as the model takes it, and its name for the readout."""
        view = self.view
        if view.scrubber is not None:
            raw = list(view.scrubber.analysis.images)
            where = f"the scrubber's probe set ({len(raw)} images)"
        else:
            raw = list(view._images)
            where = f"the dashboard's {len(raw)} images"
        return torch.stack([view._model_input(img) for img in raw]), where

    def probe_set_key(self) -> Hashable:
        """What identifies the probe set: the scrubber's, or the dashboard's images so far
        (images are only ever added)."""
        view = self.view
        return ("scrubber", view.scrubber.probe_size) if view.scrubber is not None \
            else ("images", len(view._images))

    def key(self, state: ViewState) -> Hashable:
        return (state.epoch, state.layer, state.image_index, self.bins, self.probe_set_key())

    def compute(self, state: ViewState) -> HistogramView | None:
        view = self.view
        probe = self.probe_of(view.model_at(state.epoch))
        probe_key = (state.epoch, state.layer, self.bins, self.probe_set_key(),
                     view._generation)
        images, where = self.probe_images()
        over_set = self.probes.get(probe_key)
        if over_set is None:
            over_set = probe_histogram(probe, state.layer, images, bins=self.bins,
                                       callback=self.progress)
            if over_set is None:  # stopped
                return None
            self.probes.put(probe_key, over_set,
                            over_set.counts.nbytes * 2 + over_set.unit_max.numel() * 4 + 256)
        x = view._model_input(view._images[state.image_index])
        shown = image_histogram(probe, state.layer, x, over_set.edges)
        return HistogramView(LayerHistogram(over_set, shown), where,
                             self.dead_per_epoch(state))

    def dead_per_epoch(self, state: ViewState) -> tuple[list[int], list[float]]:
        """The layer's dead fraction at every readable saved epoch (scans shared with the
        scrubber's strip and curves); empty without checkpoints or for other layers."""
        scrubber = self.view.scrubber
        if scrubber is None or state.layer not in scrubber.analysis.conv_layers:
            return [], []
        analysis = scrubber.analysis
        xs: list[int] = []
        ys: list[float] = []
        for done, epoch in enumerate(analysis.epochs, start=1):
            curve = analysis.dead([epoch]).get(state.layer, ([], []))
            xs.extend(curve[0])
            ys.extend(curve[1])
            if not self.progress(done, len(analysis.epochs)):
                break
        return xs, ys

    def result_bytes(self, result: Any) -> int:
        if result is None:
            return 64
        shown = result.histogram
        return (shown.probe.counts.nbytes * 3 + shown.probe.unit_max.numel() * 8
                + shown.image.unit_max.numel() * 4 + 512)

    # -- drawing -------------------------------------------------------------------------------

    def draw(self, result: HistogramView | None, state: ViewState) -> None:
        if result is None:
            self.clear()
            return
        shown = result.histogram
        edges = shown.edges
        centres = (edges[:-1] + edges[1:]) / 2
        image_total = shown.image.counts.sum() + shown.image.below + shown.image.above
        probe_total = max(1, int(shown.probe.counts.sum()))
        for bars, fractions in ((self.probe_bars, shown.probe.counts / probe_total),
                                (self.image_bars, shown.image.counts / max(1, int(image_total)))):
            # emptied first, so every draw (also of a kept result, when the tab comes to the
            # front) sends the bars again: bqplot lays bars out when their data arrive, and
            # bars that arrived while the tab was hidden keep a width of zero in Voila
            with bars.hold_sync():
                bars.x, bars.y = [], []
            with bars.hold_sync():
                bars.x = centres
                bars.y = np.asarray(fractions, dtype=np.float64)[None]
        self.x_axis.label = f"activation of {state.layer}"
        self.dead.value = self.readout(result, state)
        if self.epoch_lines is not None and self.epoch_marker is not None:
            xs, ys = result.dead_epochs
            values = np.asarray(ys, dtype=np.float64)
            with self.epoch_lines.hold_sync():
                self.epoch_lines.x = np.asarray(xs, dtype=np.float64)
                self.epoch_lines.y = values
            at = [i for i, e in enumerate(xs) if e == state.epoch]
            with self.epoch_marker.hold_sync():
                self.epoch_marker.x = [float(state.epoch)] if at else []
                self.epoch_marker.y = [float(values[at[0]])] if at else []

    def readout(self, result: HistogramView, state: ViewState) -> str:
        """The dead fraction and the other numbers of the histogram, in words."""
        shown = result.histogram
        units = int(shown.probe.unit_max.numel())
        dead = int(shown.probe.dead.sum())
        silent = round(shown.image.silent_fraction * units)
        lines = [f"<b>dead units: {dead} of {units} ({shown.dead_fraction:.1%})</b> never fire "
                 f"on {html.escape(result.probe_set)}",
                 f"on this image {silent} of {units} are silent",
                 f"range {shown.edges[0]:.3g} to {shown.edges[-1]:.3g} in {shown.probe.bins} "
                 "bins"]
        outside = shown.image.below + shown.image.above
        if outside:
            lines.append(f"<span class='deepvis-warn'>{outside} value(s) of this image lie "
                         "outside the probe set's range</span>")
        if shown.probe.nonfinite or shown.image.nonfinite:
            lines.append(f"<span class='deepvis-error'>{shown.probe.nonfinite} non-finite "
                         "value(s) on the probe set, "
                         f"{shown.image.nonfinite} on this image: left out</span>")
        if self.view.scrubber is not None and not result.dead_epochs[0]:
            lines.append("dead fraction per epoch: conv layers only")
        return "<br>".join(lines)

    def clear(self) -> None:
        for bars in (self.probe_bars, self.image_bars):
            with bars.hold_sync():
                bars.x, bars.y = [], []
        self.dead.value = ""

    def summary(self, result: Any, state: ViewState) -> str:
        if result is None:
            return "stopped"
        return (f"{state.layer}: {result.histogram.probe.bins} bins, "
                f"{result.histogram.probe.images} probe images")
