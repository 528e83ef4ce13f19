"""The dashboard's panes: each one part of the view, what it depends on, how it draws.

A :class:`Pane` declares the traits whose change makes its result stale (``depends``: model
work) and those that only change how the result is drawn (``display``: no model work). The
dashboard snapshots its traits into a frozen :class:`ViewState` when a job starts, asks each
stale pane to ``compute`` from that snapshot on the render worker, and to ``draw`` the result;
a display-only change re-draws the kept result. Adding an analysis to the dashboard is adding
a pane class to :data:`DEFAULT_PANES` (or ``DeepVis(panes=...)``), not growing the dashboard.

Panes compute through the core (:class:`~ipydeepvis.core.Probe` and friends) and draw through
:mod:`ipydeepvis.render`; they never do model math themselves.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

import ipywidgets as widgets
import numpy as np
import numpy.typing as npt
import torch

from .. import render
from .tiles import TileCanvas

if TYPE_CHECKING:
    from .dashboard import DeepVis

__all__ = [
    "DEFAULT_PANES",
    "PANE",
    "ActivationGridPane",
    "InputPane",
    "Pane",
    "Projection",
    "ProjectionPane",
    "UnitMap",
    "UnitPane",
    "ViewState",
]

PANE = 192  # px of the input, enlarged-unit and projection panes
GRID_WIDTH = 480
NEUTRAL = 128  # grey of a projection pane with nothing to show (zero in the raw display)
MARKER_COLOR = "#00e5ff"  # the seed / max marker on the enlarged unit (the grid ring is yellow)


@dataclass(frozen=True)
class ViewState:
    """The dashboard's traits at the moment a job started (panes never read live traits)."""

    layer: str
    unit: int
    image_index: int
    method: str
    position: str
    clicked: tuple[int, int]
    display: str
    contrast: float
    epoch: int
    unit_scale: str = "unit"
    weights_note: str = ""
    frozen: tuple[str, int] | None = None  # (layer, unit) the projection stays on (key ``f``)


class Pane:
    """One part of the dashboard.

    Subclasses set ``name`` (unique), ``column`` (0, 1, 2 in the main row; None puts the pane
    in the analyses tabs below), ``depends`` and ``display``, build their widgets in
    ``__init__`` and implement :meth:`compute` (model work, on the worker) and :meth:`draw`.
    """

    name: ClassVar[str] = "pane"
    title: ClassVar[str] = ""
    column: ClassVar[int | None] = None
    depends: ClassVar[frozenset[str]] = frozenset()
    display: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, view: DeepVis) -> None:
        self.view = view
        self.widget: widgets.Widget | None = None  # set by subclasses
        self.note = ""  # one line for the status (timings, warnings)

    def compute(self, state: ViewState) -> Any:
        """The pane's result for ``state`` (runs on the render worker)."""
        return None

    def draw(self, result: Any, state: ViewState) -> None:
        """Show ``result`` (computed for ``state``, or an earlier state if only display traits
        changed)."""

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        """The RGBA frames this pane shows (for ``DeepVis.frames`` and ``save_png``)."""
        return {}

    def release(self) -> None:
        """Drop what the pane holds beyond its widgets (probes, model copies); called by
        ``DeepVis.close``."""


class InputPane(Pane):
    """The current image, the image picker (thumbnails, upload) and the model's top-5."""

    name = "input"
    column = 0
    depends = frozenset({"image_index", "epoch", "weights_note"})

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self.canvas = TileCanvas(PANE, PANE, "e2e-input")
        self.thumbs = TileCanvas(PANE, 32, "e2e-thumbs")
        self.thumbs.on_click(self._click_thumbnail)
        column = widgets.Layout(width=f"{PANE}px")
        self.upload = widgets.FileUpload(accept="image/*", multiple=False,
                                         description="your image")
        self.upload.add_class("e2e-upload")
        self.upload.observe(view._uploaded, names="value")
        self.notice = widgets.HTML(layout=column)
        self.notice.add_class("e2e-notice")
        self.predictions = widgets.HTML(layout=column)
        self.predictions.add_class("e2e-predictions")
        self.widget = widgets.VBox([widgets.HTML("<b>input</b>"), self.canvas, self.thumbs,
                                    self.upload, self.notice, self.predictions])

    def compute(self, state: ViewState) -> tuple[npt.NDArray[np.uint8], str, str]:
        view = self.view
        image = view._images[state.image_index]
        picture = render.to_rgba(render.resize_nearest(render.image_to_uint8(image), PANE, PANE))
        predictions = view._predictions_html(state.image_index)
        if state.weights_note:
            predictions = (f"<div class='e2e-weights-note deepvis-warn'>"
                           f"{html.escape(state.weights_note)}</div>{predictions}")
        return picture, view._notices.get(state.image_index, ""), predictions

    def draw(self, result: tuple[npt.NDArray[np.uint8], str, str], state: ViewState) -> None:
        picture, notice, predictions = result
        self.notice.value = notice
        self.canvas.show(picture)
        self.predictions.value = predictions
        self.thumbs.highlight(self.thumb_box(state.image_index))

    def draw_thumbnails(self) -> None:
        """All images as 32 px thumbnails (on construction and when an image is added)."""
        images = self.view._images
        layout = self.thumb_layout()
        tiles = np.stack([render.resize_nearest(render.image_to_uint8(img), 32, 32)
                          for img in images])
        # transparent between and after the thumbnails: the page's own background shows
        # (a white sheet is a white block in a dark theme)
        rgba = np.stack([render.to_rgba(tile) for tile in tiles])
        self.thumbs.show(render.tile_grid(rgba, layout.columns, layout.pad, background=0))
        self.thumbs.highlight(self.thumb_box(self.view.image_index))

    def thumb_layout(self) -> render.GridLayout:
        return render.GridLayout(len(self.view._images), max(1, PANE // 33), 32, 1)

    def thumb_box(self, index: int) -> tuple[int, int, int, int]:
        y, x = self.thumb_layout().origin(index)
        return (x, y, 32, 32)

    def _click_thumbnail(self, x: float, y: float) -> None:
        index = self.thumb_layout().unit_at(x, y)
        if index is not None:
            self.view.image_index = index

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        return {"input": self.canvas.frame, "thumbnails": self.thumbs.frame}


class ActivationGridPane(Pane):
    """Every unit's activation map of the layer, one tile each; a click selects the unit."""

    name = "grid"
    column = 1
    depends = frozenset({"layer", "image_index", "epoch"})

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self.canvas = TileCanvas(GRID_WIDTH, GRID_WIDTH, "e2e-grid", fluid=True)
        self.canvas.on_click(view.click_grid)
        self.label = widgets.HTML()
        self.label.add_class("e2e-grid-label")
        self.widget = widgets.VBox([widgets.HTML("<b>activations</b> (click a unit)"),
                                    self.canvas, self.label])

    def compute(self, state: ViewState) -> tuple[npt.NDArray[np.uint8], str]:
        started = time.perf_counter()
        maps = self.view._maps(state)
        picture = render.activation_grid_rgba(maps, self.view.layout_of(state.layer))
        self.note = _finite_note(maps, f"layer {state.layer}", state)
        self.view.timings["grid"] = time.perf_counter() - started
        return picture, self.note

    def draw(self, result: tuple[npt.NDArray[np.uint8], str], state: ViewState) -> None:
        self.canvas.show(result[0])
        self.view._highlight_unit()

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        return {"grid": self.canvas.frame}


class UnitPane(Pane):
    """The selected unit's map, enlarged (click a position to seed the projection there).

    Scaled to the unit's own largest value (``unit_scale == "unit"``, so a weak unit's pattern
    shows) or to the layer's (units compared by brightness). A marker on the overlay shows where
    the projection is seeded: the clicked position, else the unit's strongest activation;
    moving it never re-sends the picture.
    """

    name = "unit"
    column = 2
    depends = frozenset({"layer", "unit", "image_index", "epoch"})
    display = frozenset({"unit_scale", "position", "clicked"})

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self.canvas = TileCanvas(PANE, PANE, "e2e-unitmap")
        self.canvas.highlight_color = MARKER_COLOR
        self.canvas.on_click(view.click_unit_map)
        self._shown: tuple[int, str] | None = None  # (id of the result, scale) on the canvas
        self.widget = widgets.VBox([widgets.HTML("<b>selected unit</b> (click to seed)"),
                                    self.canvas])

    def compute(self, state: ViewState) -> UnitMap:
        maps = self.view._maps(state).nan_to_num(0.0)
        unit_map = maps[state.unit]
        peak = float(unit_map.max())
        where = divmod(int(unit_map.flatten().argmax()), unit_map.shape[-1]) \
            if unit_map.dim() == 2 else None
        name = self.view._unit_name(state.layer, state.unit)
        value = f"{peak:.3g}" if where is None else f"max {peak:.3g} at {where}"
        label = f"unit <b>{state.unit}</b>{name} of {maps.shape[0]}: {value}"
        return UnitMap(unit_map, float(maps.clamp(min=0).max()), peak, where, label)

    def draw(self, result: UnitMap, state: ViewState) -> None:
        shown = (id(result), state.unit_scale)
        if shown != self._shown:  # a moved marker alone re-sends nothing
            self.canvas.show(self.picture(result, state.unit_scale))
            self._shown = shown
        self.canvas.highlight(self.marker(result, state))
        grid = self.view.panes.get("grid")
        if isinstance(grid, ActivationGridPane):
            grid.label.value = f"{result.label} · scaled to the {state.unit_scale}"

    @staticmethod
    def picture(result: UnitMap, scale: str) -> npt.NDArray[np.uint8]:
        """The enlarged map, 0 black, the unit's (or the layer's) largest value white."""
        top = max(result.peak, 0.0) if scale == "unit" else result.layer_top
        return render.unit_map_rgba(result.map, PANE, top)

    def marker(self, result: UnitMap, state: ViewState) -> tuple[int, int, int, int] | None:
        """The overlay box on the seed: the clicked cell, else the strongest (None for a unit
        without a map)."""
        if result.where is None:
            return None
        seed = self.view._seed_position(state)
        cell = seed if isinstance(seed, tuple) else result.where
        return render.cell_box(cell, tuple(result.map.shape), PANE)  # type: ignore[arg-type]

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        return {"unit": self.canvas.frame}


@dataclass(frozen=True)
class UnitMap:
    """What :class:`UnitPane` computed: the map, the layer's and the unit's largest values,
    where the unit's largest value is (None for a unit without a map) and the readout."""

    map: torch.Tensor
    layer_top: float
    peak: float
    where: tuple[int, int] | None
    label: str


class ProjectionPane(Pane):
    """The selected unit projected back to pixels (deconvnet, guided backprop or gradient).

    Honest about what it cannot show: a unit that does not fire on the image (its seed is
    <= 0) is not projected (a neutral frame and the reason), and where no rectifier lies below
    the layer the pane says the three methods give one picture.
    """

    name = "projection"
    column = 2
    depends = frozenset({"layer", "unit", "image_index", "epoch", "method", "position",
                         "clicked"})
    display = frozenset({"display", "contrast"})

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self.canvas = TileCanvas(PANE, PANE, "e2e-projection")
        self.text = widgets.HTML(layout=widgets.Layout(width=f"{PANE}px"))
        self.text.add_class("e2e-projection-note")
        self.widget = widgets.VBox([widgets.HTML("<b>projection</b>"), self.canvas, self.text])

    def compute(self, state: ViewState) -> Projection:
        started = time.perf_counter()
        view = self.view
        if state.frozen is not None:  # frozen (key f): project the frozen unit instead
            state = replace(state, layer=state.frozen[0], unit=state.frozen[1])
        position = view._seed_position(state)
        same = not view._rectifiers_below(state.layer, state.image_index)
        silent = self.inactive(state, position)
        if silent:
            self.note = silent
            return Projection(None, silent, same)
        projection = view.probe.project(view._model_input(view._images[state.image_index]),
                                        state.layer, state.unit, method=state.method,
                                        position=position)[0]
        view.timings["project"] = time.perf_counter() - started
        self.note = f"{state.method} {1000 * view.timings['project']:.0f} ms"
        if not bool(torch.isfinite(projection).all()):
            self.note += " · <span class='deepvis-error'>the projection is not finite</span>"
        return Projection(projection, "", same)

    def inactive(self, state: ViewState, position: Any) -> str:
        """Why the unit has nothing to project from ``position`` ('' when it has): the seed
        keeps the activation's value, and a value <= 0 projects nothing meaningful."""
        unit_map = self.view._maps(state)[state.unit]
        peak = float(unit_map.max())
        if isinstance(position, tuple):
            value = float(unit_map[position])
            if value > 0:
                return ""
            return (f"unit {state.unit} is not active at {position}: {value:.3g} "
                    f"(max {peak:.3g}); click a brighter cell or seed at max")
        if peak > 0:
            return ""
        return f"unit {state.unit} is not active on this image: max {peak:.3g}"

    def draw(self, result: Projection, state: ViewState) -> None:
        started = time.perf_counter()
        notes = []
        if result.values is None:
            self.canvas.show(np.full((PANE, PANE, 4), (NEUTRAL,) * 3 + (255,), np.uint8))
            notes.append(html.escape(result.reason))
        else:
            picture = render.projection_picture(result.values.nan_to_num(0.0), state.display,
                                                state.contrast)
            self.canvas.show(render.to_rgba(render.resize_nearest(picture, PANE, PANE)))
        if state.frozen is not None:
            notes.insert(0, f"frozen on unit {state.frozen[1]} of {html.escape(state.frozen[0])} "
                            "(f unfreezes)")
        if result.same_methods:
            layer = state.frozen[0] if state.frozen is not None else state.layer
            notes.append(f"no rectifier lies below {html.escape(layer)}: deconvnet, "
                         "guided and gradient give the same picture here")
        self.text.value = "<br>".join(f"<span class='deepvis-warn'>{n}</span>" for n in notes)
        self.view.timings["picture"] = time.perf_counter() - started

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        return {"projection": self.canvas.frame}


@dataclass(frozen=True)
class Projection:
    """What :class:`ProjectionPane` computed: the projection ``(C, H, W)`` or, when the unit has
    nothing to project, None and the reason; and whether the three methods coincide at this
    layer (no rectifier below it)."""

    values: torch.Tensor | None
    reason: str
    same_methods: bool


def _finite_note(values: torch.Tensor, what: str, state: ViewState) -> str:
    """A warning when ``values`` hold NaN or infinity (diverged weights), else ''."""
    bad = int((~torch.isfinite(values)).sum())
    if not bad:
        return ""
    at = f" at epoch {state.epoch}" if state.epoch >= 0 else ""
    return (f"<span class='deepvis-error'>{what} has {bad} non-finite value(s){at}: the weights "
            "have diverged (NaN or infinity); drawn as 0</span>")


DEFAULT_PANES: tuple[type[Pane], ...] = (InputPane, ActivationGridPane, UnitPane, ProjectionPane)
"""The panes a dashboard shows unless ``DeepVis(panes=...)`` says otherwise, in order."""
