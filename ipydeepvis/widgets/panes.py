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

import time
from dataclasses import dataclass
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
    "ProjectionPane",
    "UnitPane",
    "ViewState",
]

PANE = 192  # px of the input, enlarged-unit and projection panes
GRID_WIDTH = 480


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


class InputPane(Pane):
    """The current image, the image picker (thumbnails, upload) and the model's top-5."""

    name = "input"
    column = 0
    depends = frozenset({"image_index", "epoch"})

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
        return picture, view._notices.get(state.image_index, ""), view._predictions_html(
            state.image_index)

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
        sheet = render.tile_grid(tiles, layout.columns, layout.pad, background=255)
        self.thumbs.show(render.to_rgba(sheet))
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
        self.canvas = TileCanvas(GRID_WIDTH, GRID_WIDTH, "e2e-grid")
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
    """The selected unit's map, enlarged (click a position to seed the projection there)."""

    name = "unit"
    column = 2
    depends = frozenset({"layer", "unit", "image_index", "epoch"})

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self.canvas = TileCanvas(PANE, PANE, "e2e-unitmap")
        self.canvas.on_click(view.click_unit_map)
        self.widget = widgets.VBox([widgets.HTML("<b>selected unit</b> (click to seed)"),
                                    self.canvas])

    def compute(self, state: ViewState) -> tuple[npt.NDArray[np.uint8], str]:
        maps = self.view._maps(state)
        unit_map = maps[state.unit]
        top = float(maps.nan_to_num(0.0).clamp(min=0).max())
        picture = render.unit_map_rgba(unit_map.nan_to_num(0.0), PANE, top)
        peak = float(unit_map.max())
        where = divmod(int(unit_map.flatten().argmax()), unit_map.shape[-1]) \
            if unit_map.dim() == 2 else ()
        label = (f"unit <b>{state.unit}</b> of {maps.shape[0]}: max {peak:.3g} at "
                 f"{tuple(where)}")
        return picture, label

    def draw(self, result: tuple[npt.NDArray[np.uint8], str], state: ViewState) -> None:
        self.canvas.show(result[0])
        grid = self.view.panes.get("grid")
        if isinstance(grid, ActivationGridPane):
            grid.label.value = result[1]

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        return {"unit": self.canvas.frame}


class ProjectionPane(Pane):
    """The selected unit projected back to pixels (deconvnet, guided backprop or gradient)."""

    name = "projection"
    column = 2
    depends = frozenset({"layer", "unit", "image_index", "epoch", "method", "position",
                         "clicked"})
    display = frozenset({"display", "contrast"})

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self.canvas = TileCanvas(PANE, PANE, "e2e-projection")
        self.widget = widgets.VBox([widgets.HTML("<b>projection</b>"), self.canvas])

    def compute(self, state: ViewState) -> torch.Tensor:
        started = time.perf_counter()
        view = self.view
        position = view._seed_position(state)
        projection = view.probe.project(view._model_input(view._images[state.image_index]),
                                        state.layer, state.unit, method=state.method,
                                        position=position)[0]
        view.timings["project"] = time.perf_counter() - started
        self.note = f"{state.method} {1000 * view.timings['project']:.0f} ms"
        if not bool(torch.isfinite(projection).all()):
            self.note += " · <span style='color:#b00'>the projection is not finite</span>"
        return projection

    def draw(self, result: torch.Tensor, state: ViewState) -> None:
        started = time.perf_counter()
        picture = render.projection_picture(result.nan_to_num(0.0), state.display,
                                            state.contrast)
        self.canvas.show(render.to_rgba(render.resize_nearest(picture, PANE, PANE)))
        self.view.timings["picture"] = time.perf_counter() - started

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        return {"projection": self.canvas.frame}


def _finite_note(values: torch.Tensor, what: str, state: ViewState) -> str:
    """A warning when ``values`` hold NaN or infinity (diverged weights), else ''."""
    bad = int((~torch.isfinite(values)).sum())
    if not bad:
        return ""
    at = f" at epoch {state.epoch}" if state.epoch >= 0 else ""
    return (f"<span style='color:#b00'>{what} has {bad} non-finite value(s){at}: the weights "
            "have diverged (NaN or infinity); drawn as 0</span>")


DEFAULT_PANES: tuple[type[Pane], ...] = (InputPane, ActivationGridPane, UnitPane, ProjectionPane)
"""The panes a dashboard shows unless ``DeepVis(panes=...)`` says otherwise, in order."""
