"""Line plots of the views: a bqplot figure with its legend outside the plot area.

bqplot (0.13) draws a figure's legend inside the plot area at every ``legend_location`` (its
front end places the legend box relative to the plot area; an external legend is the open
request bqplot/bqplot#601), where it covers the curves. A :class:`LinePlot` therefore writes
the legend as a line of HTML above the figure, beside the title, in the lines' own colours and
dashes, and draws the figure with ``display_legend`` off. While it has nothing to plot (a run
saved without metrics) it shows a sentence in the figure's place instead of empty axes.

Axes format one kind of value one way in every plot (:data:`VALUE_FORMATS`), and axes over
epochs or optimisation steps get whole-number ticks (:func:`epoch_ticks`, :func:`integer_ticks`).
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence

import bqplot as bq
import ipywidgets as widgets
import numpy as np

from ..errors import InvalidOptionError
from ._base import close_widget_tree

__all__ = ["VALUE_FORMATS", "LinePlot", "epoch_ticks", "integer_ticks", "legend_entries",
           "short_labels"]

VALUE_FORMATS: dict[str, str] = {
    "count": "d",  # epochs, steps, pixels: whole numbers
    "fraction": ".0%",  # accuracy, dead units, probability: 0..1 shown as per cent
    "magnitude": ".3~g",  # losses, weight change, objective, distances: 3 significant digits
}
"""d3 number format of each kind of value, the same in every plot."""

DIGIT_PX = 7
"""CSS px of one digit of a tick label (bqplot's 11 px sans-serif, rounded up)."""

TICK_PADDING = 8
"""Fewest CSS px between two neighbouring tick labels."""


def integer_ticks(low: float, high: float, max_ticks: int = 8) -> list[int]:
    """Whole numbers at a round step (1, 2 or 5 times a power of ten) covering ``low..high``,
    at most ``max_ticks`` of them (at least one)."""
    low_i, high_i = math.ceil(low), math.floor(high)
    if high_i < low_i:
        return [round((low + high) / 2)]
    span = high_i - low_i
    step = 1
    while span // step + 1 > max_ticks:
        step = _next_round_step(step)
    first = math.ceil(low_i / step) * step
    return list(range(first, high_i + 1, step))


def _next_round_step(step: int) -> int:
    """1 -> 2 -> 5 -> 10 -> 20 -> 50 -> ..."""
    power = 10 ** (len(str(step)) - 1)
    lead = step // power
    return {1: 2, 2: 5, 5: 10}[lead] * power


def epoch_ticks(epochs: Sequence[int], plot_width: float) -> list[int]:
    """Tick values for an epoch axis ``plot_width`` CSS px wide: the saved epochs themselves
    when every label keeps clear of its neighbours, else round whole numbers over their range."""
    saved = sorted({int(e) for e in epochs})
    if len(saved) < 2:
        return saved
    px_per_epoch = plot_width / (saved[-1] - saved[0])

    def needed(a: int, b: int) -> float:  # half of each label plus the padding
        return (len(str(a)) + len(str(b))) * DIGIT_PX / 2 + TICK_PADDING

    if all((b - a) * px_per_epoch >= needed(a, b) for a, b in itertools.pairwise(saved)):
        return saved
    widest = len(str(saved[-1])) * DIGIT_PX + TICK_PADDING
    return integer_ticks(saved[0], saved[-1], max(2, int(plot_width // widest) + 1))


def legend_entries(marks: Sequence[bq.Mark]) -> list[tuple[str, str, bool]]:
    """``(label, colour, dashed)`` per label of ``marks`` (a mark with several rows has a label
    per row; colours cycle as bqplot cycles them). Unlabelled marks (a marker line) have no
    entry."""
    entries = []
    for mark in marks:
        labels = list(getattr(mark, "labels", None) or [])
        colors = list(getattr(mark, "colors", None) or ["#1f77b4"])
        dashed = getattr(mark, "line_style", "solid") != "solid"
        entries += [(str(label), str(colors[i % len(colors)]), dashed)
                    for i, label in enumerate(labels)]
    return entries


def short_labels(labels: Sequence[str]) -> list[str]:
    """``labels`` without the dotted module path they all share (``features.conv1``,
    ``features.conv2`` -> ``conv1``, ``conv2``), so a legend of layers fits on one line."""
    if len(labels) < 2:
        return list(labels)
    parts = [label.split(".") for label in labels]
    shared = 0
    while all(len(p) > shared + 1 and p[shared] == parts[0][shared] for p in parts):
        shared += 1
    return [".".join(p[shared:]) for p in parts]


def _swatch(colour: str, dashed: bool) -> str:
    style = "dashed" if dashed else "solid"
    return (f"<span style='display:inline-block;width:18px;height:0;vertical-align:middle;"
            f"border-top:2px {style} {html.escape(colour)};margin-right:4px'></span>")


class LinePlot(widgets.VBox):
    """A header line (title and legend) above a bqplot figure, or a message in its place.

    Parameters
    ----------
    title : str
        Shown in bold at the start of the header.
    x_label : str
        Label of the x axis.
    y_kind, x_kind : str
        Keys of :data:`VALUE_FORMATS`; a ``"fraction"`` y axis spans 0..1.
    css : str
        CSS class of the figure (tests and styles find it), and ``<css>-legend`` of the header.
    width, height : int
        The figure's CSS size in px (the header comes on top).
    x_scale : bq.LinearScale, optional
        A shared or preset x scale.
    """

    def __init__(self, title: str, *, x_label: str, y_kind: str = "magnitude",
                 x_kind: str = "count", css: str = "", width: int = 420, height: int = 260,
                 x_scale: bq.LinearScale | None = None,
                 margin: dict[str, int] | None = None) -> None:
        for kind in (y_kind, x_kind):
            if kind not in VALUE_FORMATS:
                msg = f"value kind {kind!r} is not one of {sorted(VALUE_FORMATS)}"
                raise InvalidOptionError(msg)
        self.title = title
        self.x_scale = x_scale if x_scale is not None else bq.LinearScale()
        self.y_scale = (bq.LinearScale(min=0.0, max=1.0) if y_kind == "fraction"
                        else bq.LinearScale())
        self.x_axis = bq.Axis(scale=self.x_scale, label=x_label,
                              tick_format=VALUE_FORMATS[x_kind])
        self.y_axis = bq.Axis(scale=self.y_scale, side="left",
                              tick_format=VALUE_FORMATS[y_kind])
        self.margin = margin or {"top": 10, "bottom": 40, "left": 56, "right": 16}
        self.width = width
        self.figure = bq.Figure(marks=[], axes=[self.x_axis, self.y_axis], title="",
                                animation_duration=0, fig_margin=self.margin,
                                layout=widgets.Layout(width=f"{width}px", height=f"{height}px"))
        if css:
            self.figure.add_class(css)
        self.header = widgets.HTML(layout=widgets.Layout(width=f"{width}px",
                                                         margin="6px 0 0 0"))
        self.header.add_class("deepvis-plot-header")
        if css:
            self.header.add_class(f"{css}-legend")
        self.message = widgets.HTML(layout=widgets.Layout(width=f"{width}px",
                                                          height=f"{height}px", margin="0"))
        self.message.add_class("deepvis-plot-message")
        self.showing_message = False
        super().__init__([self.header, self.figure])
        self.add_class("deepvis-plot")
        if css:
            self.add_class(f"{css}-plot")

    @property
    def plot_width(self) -> int:
        """CSS px of the plot area (the figure without its margins)."""
        return self.width - self.margin["left"] - self.margin["right"]

    def set_marks(self, marks: Sequence[bq.Mark]) -> None:
        """Put ``marks`` on the figure (their bqplot legend off) and write the legend."""
        for mark in marks:
            mark.display_legend = False
        self.figure.marks = list(marks)
        self.update_legend()

    def update_legend(self) -> None:
        """Write the header from the marks' labels and colours (after a label change)."""
        entries = [] if self.showing_message else legend_entries(self.figure.marks)
        labels = short_labels([label for label, _, _ in entries])
        items = "".join(f"<span class='deepvis-legend-item' style='white-space:nowrap' "
                        f"title='{html.escape(full, quote=True)}'>"
                        f"{_swatch(colour, dashed)}{html.escape(label)}</span>"
                        for label, (full, colour, dashed) in zip(labels, entries, strict=True))
        title = (f"<div><b style='font-size:13px'>{html.escape(self.title)}</b></div>"
                 if self.title else "")
        # the title on its own line, the legend on the next (empty: still one line high), so
        # plots side by side keep their plot areas level
        self.header.value = (
            f"<div style='font-size:12px;line-height:16px;padding-left:{self.margin['left']}px'>"
            f"{title}<div class='deepvis-legend' style='display:flex;flex-wrap:wrap;"
            f"gap:0 12px;min-height:16px'>{items}</div></div>")

    def set_x_ticks(self, values: Sequence[int]) -> None:
        """Whole-number ticks at ``values`` on the x axis."""
        self.x_axis.tick_values = np.asarray(list(values), dtype=np.int64)

    def resend(self) -> None:
        """Send the curves and scale bounds again, for a front end that may have missed an
        update: Voila builds its widget models from a snapshot of the kernel's state, and an
        update sent while it does so (a worker finishing a scan) can be lost; a later
        identical update is never sent, so such a curve would stay empty."""
        for mark in self.figure.marks:
            mark.send_state(["x", "y"])
        for scale in (self.x_scale, self.y_scale):
            scale.send_state(["min", "max"])

    def fit_fraction_axis(self, values: Sequence[float]) -> None:
        """A 0-based fraction axis up to the next tenth above ``values`` (at least 10 %), so
        small fractions (a few dead units) are not squashed against the bottom of 0..100 %."""
        finite = [v for v in values if math.isfinite(v)]
        top = min(1.0, max(0.1, math.ceil(max(finite, default=0.0) * 10 - 1e-9) / 10))
        if self.y_scale.max != top:
            self.y_scale.max = top

    def show_message(self, text: str | None) -> None:
        """Show ``text`` in the figure's place (None: show the figure again)."""
        self.showing_message = text is not None
        if text is not None:
            self.message.value = (
                f"<div style='display:flex;height:100%;align-items:center;"
                f"justify-content:center;border:1px dashed #bbb;color:#777;"
                f"box-sizing:border-box'>{html.escape(text)}</div>")
        self.children = [self.header, self.message if text is not None else self.figure]
        self.update_legend()

    def close(self) -> None:
        """Close the plot with its figure and its message (the one not shown included)."""
        parts = [getattr(self, name, None) for name in ("figure", "message")]
        close_widget_tree(self, *[p for p in parts if p is not None])  # also half-built

    def __repr__(self) -> str:
        labels = [label for label, _, _ in legend_entries(self.figure.marks)]
        return f"LinePlot({self.title!r}, lines={labels})"
