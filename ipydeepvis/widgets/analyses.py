"""Dashboard panes for the longer analyses: each runs on its own worker, with progress and Stop.

The main row of the dashboard (input, activations, unit, projection) answers every slider move
at once. The analyses here take longer (an occlusion sweep, an optimisation run, a data-set
index), so each :class:`JobPane` owns a worker thread: it never blocks the other panes, shows
its progress, stops within one step of Stop, and keeps its results in a byte-bounded cache
keyed by everything the result depends on, so going back to a unit shows its result at once.

A job pane is either ``auto`` (recomputes whenever a trait it depends on changes; cheap
analyses) or manual (Run computes; a change of a dependency shows the cached result for the
new state, or says that Run will compute it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, ClassVar

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import numpy.typing as npt
import torch

from .. import render
from ..core.cache import ByteLRU, tensor_bytes
from ..core.correspondence import correspondence
from ..core.invariance import invariance
from ..core.occlusion import OcclusionMap, occlusion
from ._base import report_error
from .panes import PANE, Pane, ViewState
from .tiles import TileCanvas

if TYPE_CHECKING:
    from .dashboard import DeepVis

__all__ = [
    "ANALYSIS_PANES",
    "CorrespondencePane",
    "InvariancePane",
    "JobPane",
    "OcclusionPane",
    "heat_rgba",
]

RESULT_CACHE_BYTES = 64 * 2**20
"""Default bound of each job pane's result cache."""

# viridis at 0, 0.25, 0.5, 0.75 and 1 (matplotlib's colour map, sampled)
_VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98],
                     [253, 231, 37]], dtype=np.float64)


def heat_rgba(values: npt.NDArray[np.float64], low: float, high: float,
              size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """A map as viridis colours from ``low`` (dark) to ``high`` (yellow), resized to ``size``
    ``(height, width)`` with nearest-neighbour sampling; NaN (not computed) is grey."""
    span = high - low if high > low else 1.0
    t = np.clip((np.nan_to_num(values, nan=low) - low) / span, 0.0, 1.0) * 4
    index = np.minimum(t.astype(np.int64), 3)
    frac = (t - index)[..., None]
    rgb = _VIRIDIS[index] * (1 - frac) + _VIRIDIS[index + 1] * frac
    rgb[np.isnan(values)] = 128
    picture = render.resize_nearest(rgb.round().astype(np.uint8), *size)
    return render.to_rgba(picture)


def _blend(under: npt.NDArray[np.uint8], over: npt.NDArray[np.uint8],
           alpha: float) -> npt.NDArray[np.uint8]:
    mixed = under.astype(np.float64) * (1 - alpha) + over.astype(np.float64) * alpha
    return mixed.round().astype(np.uint8)


class JobPane(Pane):
    """A pane whose computation runs on its own worker, with Run / Stop, progress and errors.

    Subclasses implement :meth:`key` (what the result depends on), :meth:`compute` (calling
    :meth:`progress` so Stop works) and :meth:`draw`, and put their controls in
    ``self.controls`` and their output widgets in ``self.outputs`` before calling
    :meth:`assemble`.
    """

    own_worker: ClassVar[bool] = True
    auto: ClassVar[bool] = False
    cache_bytes: ClassVar[int] = RESULT_CACHE_BYTES

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self.cache: ByteLRU[Any] = ByteLRU(self.cache_bytes, f"{self.name} results")
        self.stopping = threading.Event()
        self.run_button = widgets.Button(description="Run", icon="play",
                                         layout=widgets.Layout(width="80px"))
        self.run_button.add_class(f"e2e-{self.name}-run")
        self.run_button.on_click(self._run_clicked)
        self.stop_button = widgets.Button(description="Stop", disabled=True,
                                          layout=widgets.Layout(width="80px"))
        self.stop_button.add_class(f"e2e-{self.name}-stop")
        self.stop_button.on_click(self._stop_clicked)
        self.bar = widgets.IntProgress(0, 0, 1, layout=widgets.Layout(width="240px"))
        self.bar.add_class(f"e2e-{self.name}-progress")
        self.status = widgets.HTML()
        self.status.add_class(f"e2e-{self.name}-status")
        self.errors = widgets.Output()
        self.controls: list[widgets.Widget] = []
        self.outputs: list[widgets.Widget] = []
        self.result: Any = None
        self.state: ViewState | None = None

    def assemble(self, explanation: str) -> None:
        """Lay the pane out: explanation, controls, Run/Stop/progress, outputs, status."""
        buttons = widgets.HBox([self.run_button, self.stop_button, self.bar])
        self.widget = widgets.VBox([widgets.HTML(explanation), *self.controls, buttons,
                                    *self.outputs, self.status, self.errors])

    # -- what subclasses provide -------------------------------------------------------------

    def key(self, state: ViewState) -> Hashable:
        """Everything the result depends on (traits and the pane's own options)."""
        raise NotImplementedError

    # -- the job ---------------------------------------------------------------------------

    def request(self, run: bool = False) -> None:
        """Bring the pane up to date on its worker; ``run`` computes what is not cached."""
        self.view._request_pane(self.name, run)

    def job(self, parts: set[str]) -> None:
        """Runs on the pane's worker: draw the cached result, or compute it when asked."""
        view = self.view
        state = view._snapshot()
        key = (self.key(state), view._generation)
        cached = self.cache.get(key)
        if cached is not None:
            self._show(cached, state, "from the cache")
            return
        if "run" not in parts and not self.auto:
            self.result, self.state = None, state
            self.clear()
            self.status.value = "not computed for this selection yet: press <b>Run</b>"
            return
        self.stopping.clear()
        self.stop_button.disabled = False
        self.run_button.disabled = True
        self.status.value = "computing..."
        started = time.perf_counter()
        try:
            result = self.compute(state)
        finally:
            self.stop_button.disabled = True
            self.run_button.disabled = False
        seconds = time.perf_counter() - started
        stopped = self.stopping.is_set()
        if not stopped:
            self.cache.put(key, result, self.result_bytes(result))
        self._show(result, state, f"{seconds:.1f} s" + (" (stopped)" if stopped else ""))

    def _show(self, result: Any, state: ViewState, timing: str) -> None:
        self.result, self.state = result, state
        self.draw(result, state)
        summary = self.summary(result, state)
        self.status.value = " · ".join(part for part in (summary, timing) if part)

    def progress(self, done: int, total: int) -> bool:
        """The core's ``callback(done, total)``: moves the bar; False once Stop was pressed
        or the view closed."""
        self.bar.max = max(1, total)
        self.bar.value = min(done, total)
        return not self.stopping.is_set()

    def stop(self) -> None:
        """Stop the running computation at its next step (what Stop does)."""
        self.stopping.set()

    def clear(self) -> None:
        """Show nothing (no result for the current selection)."""

    def summary(self, result: Any, state: ViewState) -> str:
        """One line about the result, for the pane's status."""
        return ""

    def result_bytes(self, result: Any) -> int:
        """How much a result holds (for the cache bound)."""
        arrays = [v for v in vars(result).values() if isinstance(v, np.ndarray)] \
            if hasattr(result, "__dict__") else []
        return tensor_bytes(result) + sum(a.nbytes for a in arrays)

    def report(self, exc: BaseException) -> None:
        report_error(self.errors, exc, self.status)

    def _run_clicked(self, _button: Any) -> None:
        self.request(run=True)

    def _stop_clicked(self, _button: Any) -> None:
        self.stop()


class OcclusionPane(JobPane):
    """Zeiler & Fergus Fig. 7: slide a grey square over the image and watch the answer.

    Three maps over the patch positions: the probability of the predicted class (overlaid on
    the input), the most probable class at each position (the label map) and the selected
    unit's total activation. Click a cell of a map to see the input as the model saw it with
    that patch occluded.
    """

    name = "occlusion"
    title = "occlusion"
    depends = frozenset({"image_index", "epoch", "layer", "unit"})

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        side = min(view._images[0].shape[-2:])
        self.patch = widgets.IntSlider(max(1, side // 4), 1, side, description="patch px",
                                       continuous_update=False)
        self.stride = widgets.IntSlider(max(1, side // 16), 1, side, description="stride px",
                                        continuous_update=False)
        for slider in (self.patch, self.stride):
            slider.observe(lambda _c: self.request(), names="value")
        self.controls = [widgets.HBox([self.patch, self.stride])]
        self.class_canvas = TileCanvas(PANE, PANE, "e2e-occlusion-class")
        self.label_canvas = TileCanvas(PANE, PANE, "e2e-occlusion-labels")
        self.unit_canvas = TileCanvas(PANE, PANE, "e2e-occlusion-unit")
        self.occluded_canvas = TileCanvas(PANE, PANE, "e2e-occlusion-occluded")
        for canvas in (self.class_canvas, self.label_canvas, self.unit_canvas):
            canvas.on_click(self.click)
        self.legend = widgets.HTML()
        self.legend.add_class("e2e-occlusion-legend")
        self.clicked: tuple[int, int] | None = None

        def titled(text: str, canvas: TileCanvas) -> widgets.VBox:
            return widgets.VBox([widgets.HTML(text), canvas])

        self.outputs = [widgets.HBox([
            titled("<b>predicted class probability</b>", self.class_canvas),
            titled("<b>most probable class</b>", self.label_canvas),
            titled("<b>unit's total activation</b>", self.unit_canvas),
            titled("<b>occluded input</b> (click a map)", self.occluded_canvas),
        ]), self.legend]
        self.assemble("Slide a square over the image (Zeiler &amp; Fergus Fig. 7): where "
                      "hiding a patch lowers the answer, the model looks there.")

    def key(self, state: ViewState) -> Hashable:
        return (state.image_index, state.epoch, state.layer, state.unit, self.patch.value,
                self.stride.value)

    def compute(self, state: ViewState) -> tuple[OcclusionMap | None, OcclusionMap]:
        view = self.view
        model = view.model_at(state.epoch)
        x = view._model_input(view._images[state.image_index])
        patch, stride = self.patch.value, self.stride.value
        unit_map = occlusion(model, x, target=(state.layer, state.unit), patch=patch,
                             stride=stride, callback=self._half(0))
        class_map = None
        if view._classes is not None and not self.stopping.is_set():
            class_map = occlusion(model, x, target=None, patch=patch, stride=stride,
                                  callback=self._half(1))
        return class_map, unit_map

    def _half(self, which: int) -> Any:
        def callback(done: int, total: int) -> bool:
            return self.progress(which * total + done, 2 * total)
        return callback

    def result_bytes(self, result: Any) -> int:
        return sum(m.values.nbytes + tensor_bytes(m.image) + tensor_bytes(m.fill)
                   for m in result if m is not None)

    def draw(self, result: tuple[OcclusionMap | None, OcclusionMap], state: ViewState) -> None:
        class_map, unit_map = result
        image = render.to_rgba(render.resize_nearest(
            render.image_to_uint8(self.view._images[state.image_index]), PANE, PANE))
        values = unit_map.values
        self.unit_canvas.show(heat_rgba(values, float(np.nanmin(values)),
                                        float(np.nanmax(values)), (PANE, PANE)))
        legend = (f"unit {state.unit} of {state.layer}: total activation "
                  f"{np.nanmin(values):.3g} (dark) to {np.nanmax(values):.3g} (yellow), "
                  f"unoccluded {unit_map.base:.3g}")
        if class_map is not None:
            heat = heat_rgba(class_map.values, 0.0, 1.0, (PANE, PANE))
            self.class_canvas.show(_blend(image, heat, 0.6))
            self.label_canvas.show(self._label_picture(class_map))
            names = self.view._classes or []
            target = int(class_map.target) if isinstance(class_map.target, int) else -1
            name = names[target] if 0 <= target < len(names) else str(target)
            legend = (f"class <b>{name}</b>: probability 0 (dark) to 1 (yellow), unoccluded "
                      f"{class_map.base:.1%}<br>{self._label_legend(class_map)}<br>{legend}")
        self.legend.value = legend
        self.clicked = None
        self.occluded_canvas.show(image)

    def _label_picture(self, result: OcclusionMap) -> npt.NDArray[np.uint8]:
        assert result.label is not None
        labels = result.label
        palette = np.array(render_palette(int(labels.max()) + 2), dtype=np.uint8)
        rgb = palette[np.clip(labels, -1, None) + 1]
        return render.to_rgba(render.resize_nearest(rgb, PANE, PANE))

    def _label_legend(self, result: OcclusionMap) -> str:
        assert result.label is not None
        names = self.view._classes or []
        palette = render_palette(int(result.label.max()) + 2)
        found, counts = np.unique(result.label[result.label >= 0], return_counts=True)
        items = []
        for label, count in sorted(zip(found.tolist(), counts.tolist(), strict=True),
                                   key=lambda item: -item[1]):
            r, g, b = palette[label + 1]
            name = names[label] if 0 <= label < len(names) else str(label)
            items.append(f"<span style='background:rgb({r},{g},{b})'>&nbsp;&nbsp;</span> "
                         f"{name} ({count})")
        return "label map: " + ", ".join(items[:6])

    def click(self, x: float, y: float) -> None:
        """Show the input as occluded at the map cell under pane pixel ``(x, y)``."""
        if self.result is None:
            return
        unit_map = self.result[1]
        i = min(len(unit_map.rows) - 1, max(0, int(y * len(unit_map.rows) / PANE)))
        j = min(len(unit_map.cols) - 1, max(0, int(x * len(unit_map.cols) / PANE)))
        self.clicked = (i, j)
        shown = self.view._images[self.state.image_index if self.state else 0].clone()
        top, left, bottom, right = unit_map.box(i, j)
        displayed_fill = shown.mean(dim=(1, 2), keepdim=True).expand_as(shown)
        shown[:, top:bottom, left:right] = displayed_fill[:, top:bottom, left:right]
        self.occluded_canvas.show(render.to_rgba(render.resize_nearest(
            render.image_to_uint8(shown), PANE, PANE)))

    def clear(self) -> None:
        self.legend.value = ""

    def summary(self, result: Any, state: ViewState) -> str:
        unit_map = result[1]
        return (f"{len(unit_map.rows)} x {len(unit_map.cols)} positions, patch "
                f"{unit_map.patch[0]} px, stride {unit_map.stride[0]} px")

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        return {"occlusion_class": self.class_canvas.frame,
                "occlusion_labels": self.label_canvas.frame,
                "occlusion_unit": self.unit_canvas.frame,
                "occlusion_occluded": self.occluded_canvas.frame}


def render_palette(count: int) -> list[tuple[int, int, int]]:
    """``count`` distinct colours; the first (label -1, not computed) is grey."""
    base = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
    return [(128, 128, 128)] + [base[i % len(base)] for i in range(max(0, count - 1))]


class InvariancePane(JobPane):
    """Zeiler & Fergus Fig. 5: translate, scale or rotate the images and plot how far the
    features move (per layer) and the true class's probability, one line per image."""

    name = "invariance"
    title = "invariance"
    depends = frozenset({"epoch", "layer"})
    images_shown: ClassVar[int] = 5

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self.transform = widgets.ToggleButtons(options=["translate", "scale", "rotate"],
                                               description="transform")
        self.transform.observe(lambda _c: self.request(), names="value")
        self.controls = [self.transform]
        self.figures: dict[str, tuple[bq.Figure, bq.Lines]] = {}
        self.box = widgets.HBox()
        self.outputs = [self.box]
        self.assemble("How the features of a few images move when the images are shifted, "
                      "scaled or rotated (Zeiler &amp; Fergus Fig. 5): the first conv layer, "
                      "the selected layer and the class probability.")

    def layers(self, state: ViewState) -> list[str]:
        convs = [name for name, info in self.view._layers.items() if info.kind == "conv"]
        return list(dict.fromkeys([*convs[:1], state.layer]))

    def key(self, state: ViewState) -> Hashable:
        return (state.epoch, tuple(self.layers(state)), self.transform.value)

    def compute(self, state: ViewState) -> Any:
        view = self.view
        count = min(self.images_shown, len(view._images))
        images = torch.stack([view._model_input(img) for img in view._images[:count]])
        labels = view._labels[:count]
        known = all(label is not None for label in labels)
        return invariance(view.model_at(state.epoch), images, transform=self.transform.value,
                          layers=self.layers(state),
                          labels=[int(x) for x in labels] if known else None,  # type: ignore[arg-type]
                          callback=self.progress)

    def draw(self, result: Any, state: ViewState) -> None:
        values = np.asarray(result.values, dtype=np.float64)
        xs = values if values.ndim == 1 else values[:, 0]
        panels = [(f"{layer}: feature distance", result.distance[layer])
                  for layer in result.layers]
        if self.view._classes is not None or any(lbl is not None for lbl in self.view._labels):
            panels.append(("true class probability", result.probability))
        figures = []
        for title, curves in panels:
            figure, lines = self._figure(title)
            with lines.hold_sync():
                lines.x = xs
                lines.y = np.asarray(curves, dtype=np.float64)
                lines.labels = [f"image {i}" for i in range(len(curves))]
            figure.axes[0].label = {"translate": "shift (px)", "scale": "scale factor",
                                    "rotate": "angle (degrees)"}[result.transform]
            figures.append(figure)
        self.box.children = figures

    def _figure(self, title: str) -> tuple[bq.Figure, bq.Lines]:
        if title not in self.figures:
            x, y = bq.LinearScale(), bq.LinearScale()
            lines = bq.Lines(x=[], y=[], scales={"x": x, "y": y}, display_legend=True,
                             colors=["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"])
            figure = bq.Figure(marks=[lines], title=title, animation_duration=0,
                               axes=[bq.Axis(scale=x, label="value"),
                                     bq.Axis(scale=y, orientation="vertical",
                                             tick_format=".2g")],
                               layout=widgets.Layout(width="330px", height="260px"),
                               fig_margin={"top": 40, "bottom": 40, "left": 50, "right": 90},
                               legend_location="top-right")
            figure.legend_style = {"stroke-width": 0}
            self.figures[title] = (figure, lines)
        return self.figures[title]

    def summary(self, result: Any, state: ViewState) -> str:
        images = result.probability.shape[0]
        return f"{result.transform}: {len(result.values)} values x {images} images"


class CorrespondencePane(JobPane):
    """Zeiler & Fergus Fig. 8 / Table 1: hide the same part in every image; a layer that
    encodes the part consistently changes the same way in all of them (small Delta)."""

    name = "correspondence"
    title = "correspondence"
    depends = frozenset({"epoch", "layer"})

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self.table = widgets.HTML()
        self.table.add_class("e2e-correspondence-table")
        self.outputs = [self.table]
        self.assemble("Occlude each image's object (the data set's boxes) or the image's "
                      "centre, and compare Delta, the mean Hamming distance between the signs "
                      "of the feature changes over image pairs, with random boxes of the same "
                      "size (Zeiler &amp; Fergus Table 1): lower than random = consistent.")

    def key(self, state: ViewState) -> Hashable:
        return (state.epoch, state.layer)

    def parts(self) -> dict[str, torch.Tensor]:
        """The dashboard's images' object boxes if the data set gives them, and the centre."""
        view = self.view
        count = len(view._images)
        height, width = view._images[0].shape[-2:]
        centre = torch.tensor([width // 4, height // 4, width - width // 4, height - height // 4])
        parts = {"centre": centre.expand(count, 4).clone()}
        boxes = view._part_boxes()
        if boxes is not None:
            parts = {"object": boxes, **parts}
        return parts

    def compute(self, state: ViewState) -> Any:
        view = self.view
        images = torch.stack([view._model_input(img) for img in view._images])
        return correspondence(view.model_at(state.epoch), images, self.parts(),
                              layers=[state.layer], callback=self.progress)

    def result_bytes(self, result: Any) -> int:
        return sum(v.nbytes for d in (result.delta, result.random, result.masks,
                                      result.random_masks) for v in d.values())

    def draw(self, result: Any, state: ViewState) -> None:
        rows = "".join(
            f"<tr><td>{row['part']}</td><td>{row[state.layer]:.3f}</td>"
            f"<td>{row[state.layer + ' random']:.3f}</td></tr>" for row in result.table())
        self.table.value = (f"<table><tr><th>part</th><th>Delta at {state.layer}</th>"
                            f"<th>random</th></tr>{rows}</table>")

    def clear(self) -> None:
        self.table.value = ""

    def summary(self, result: Any, state: ViewState) -> str:
        return f"{len(self.view._images)} images, {len(result.parts)} parts"


ANALYSIS_PANES: tuple[type[Pane], ...] = (OcclusionPane, InvariancePane, CorrespondencePane)
"""The analysis panes ``DeepVis`` adds below its main row (in tabs)."""

