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
from ..core.index import TopKIndex
from ..core.indexing import build_index
from ..core.invariance import invariance
from ..core.maximize import MaximizeParams, MaximizeResult, MaximizeState, maximize, maximize_params
from ..core.occlusion import OcclusionMap, occlusion
from ..core.probe import Probe
from ..core.topk import Entry
from ..core.topk_images import Crops, patches, projections
from ._base import report_error
from .panes import PANE, Pane, ViewState
from .plots import LinePlot, integer_ticks
from .tiles import TileCanvas

if TYPE_CHECKING:
    from .dashboard import DeepVis

__all__ = [
    "ANALYSIS_PANES",
    "CorrespondencePane",
    "InvariancePane",
    "JobPane",
    "OcclusionPane",
    "OptimizePane",
    "TopImagesPane",
]

RESULT_CACHE_BYTES = 64 * 2**20


def blank(*canvases: TileCanvas) -> None:
    """Show nothing on each canvas (transparent, at its size): a pane whose result is not
    computed for the current selection must not keep the pictures of another one."""
    for canvas in canvases:
        if canvas.frame is not None:
            canvas.show(np.zeros_like(canvas.frame))
"""Default bound of each job pane's result cache."""

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
        self._kept_probe: Probe | None = None
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
        key = (self.key(state), view._generation, view._image_stamp(state.image_index))
        cached = self.cache.get(key)
        if cached is not None:
            self._show(cached, state, "from the cache")
            return
        if "run" not in parts and not (self.auto and self.view.tab_shown(self.name)):
            self.result, self.state = None, state
            self.clear()
            self.status.value = "not computed for this selection yet: press <b>Run</b>"
            return
        self.stopping.clear()
        with self.bar.hold_sync():  # a new run starts empty, not at the last run's value
            self.bar.value = 0
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
        with self.bar.hold_sync():  # one message: the bar never shows a value of another max
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

    def probe_of(self, model: torch.nn.Module) -> Probe:
        """A probe of ``model`` kept by this pane (its recorded pass serves the next request
        on the same image; the dashboard's own probe is left to the main panes, whose worker
        this pane never shares)."""
        probe = self._kept_probe
        if probe is None or probe.model is not model:
            probe = self._kept_probe = Probe(model)
        return probe

    def release(self) -> None:
        self._kept_probe = None  # on close: the pane holds no model

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
            """``text`` above ``canvas``, wrapped within the canvas' width."""
            heading = widgets.HTML(f"<div style='white-space:normal;line-height:16px'>{text}"
                                   "</div>", layout=widgets.Layout(width=f"{PANE}px"))
            heading.add_class("e2e-occlusion-heading")
            return widgets.VBox([heading, canvas], layout=widgets.Layout(
                width=f"{PANE}px", margin="0 8px 4px 0", flex="0 0 auto"))

        # a narrow output area wraps the maps onto a second row (they overlapped)
        self.outputs = [widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"), children=[
            titled("<b>class probability</b>", self.class_canvas),
            titled("<b>most probable class</b>", self.label_canvas),
            titled("<b>unit's total activation</b>", self.unit_canvas),
            titled("<b>occluded input</b>", self.occluded_canvas),
        ]), self.legend]
        self.assemble("Slide a square over the image (Zeiler &amp; Fergus Fig. 7): where "
                      "hiding a patch lowers the answer, the model looks there. Click a map "
                      "to see the input with that patch hidden.")

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
        self.unit_canvas.show(render.heat_rgba(values, float(np.nanmin(values)),
                                        float(np.nanmax(values)), (PANE, PANE)))
        legend = (f"unit {state.unit} of {state.layer}: total activation "
                  f"{np.nanmin(values):.3g} (dark) to {np.nanmax(values):.3g} (yellow), "
                  f"unoccluded {unit_map.base:.3g}")
        if class_map is not None:
            heat = render.heat_rgba(class_map.values, 0.0, 1.0, (PANE, PANE))
            self.class_canvas.show(render.blend(image, heat, 0.6))
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
        palette = np.array(render.label_palette(int(labels.max()) + 2), dtype=np.uint8)
        rgb = palette[np.clip(labels, -1, None) + 1]
        return render.to_rgba(render.resize_nearest(rgb, PANE, PANE))

    def _label_legend(self, result: OcclusionMap) -> str:
        assert result.label is not None
        names = self.view._classes or []
        palette = render.label_palette(int(result.label.max()) + 2)
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
        self.clicked = None
        blank(self.class_canvas, self.label_canvas, self.unit_canvas, self.occluded_canvas)

    def summary(self, result: Any, state: ViewState) -> str:
        unit_map = result[1]
        return (f"{len(unit_map.rows)} x {len(unit_map.cols)} positions, patch "
                f"{unit_map.patch[0]} px, stride {unit_map.stride[0]} px")

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        return {"occlusion_class": self.class_canvas.frame,
                "occlusion_labels": self.label_canvas.frame,
                "occlusion_unit": self.unit_canvas.frame,
                "occlusion_occluded": self.occluded_canvas.frame}


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
        self.figures: dict[str, tuple[LinePlot, bq.Lines]] = {}
        self.box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))  # narrow: wraps
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
        plots = []
        for title, curves in panels:
            plot, lines = self._plot(title, "fraction" if "probability" in title
                                     else "magnitude")
            with lines.hold_sync():
                lines.x = xs
                lines.y = np.asarray(curves, dtype=np.float64)
                lines.labels = [f"image {i}" for i in range(len(curves))]
            plot.update_legend()
            plot.x_axis.label = {"translate": "shift (px)", "scale": "scale factor",
                                 "rotate": "angle (degrees)"}[result.transform]
            plots.append(plot)
        self.box.children = plots

    def _plot(self, title: str, y_kind: str) -> tuple[LinePlot, bq.Lines]:
        if title not in self.figures:
            plot = LinePlot(title, x_label="value", x_kind="magnitude", y_kind=y_kind,
                            width=330)
            lines = bq.Lines(x=[], y=[], scales={"x": plot.x_scale, "y": plot.y_scale},
                             colors=["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"])
            plot.set_marks([lines])
            self.figures[title] = (plot, lines)
        return self.figures[title]

    def clear(self) -> None:
        self.box.children = []

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


class OptimizePane(JobPane):
    """Yosinski et al. (2015): the image the selected unit likes best, found by regularized
    gradient ascent, streamed to the canvas while it runs; the objective curve beside it."""

    name = "optimize"
    title = "optimize"
    depends = frozenset({"epoch", "layer", "unit"})
    preview_every: ClassVar[int] = 5

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        height, width = (int(s) for s in view._images[0].shape[-2:])
        self.preset = widgets.ToggleButtons(options=[("1", 1), ("2", 2), ("3", 3), ("4", 4)],
                                            value=3, description="preset",
                                            style={"button_width": "40px"},
                                            tooltips=["Table 1 row 1", "row 2",
                                                      "row 3 (most of the paper's images)",
                                                      "row 4"])
        self.preset.add_class("e2e-optimize-preset")
        slider = {"continuous_update": False, "style": {"description_width": "110px"}}
        self.decay = widgets.BoundedFloatText(1e-4, min=0.0, max=0.99, step=1e-4,
                                              description="L2 decay",
                                              style={"description_width": "110px"},
                                              layout=widgets.Layout(width="260px"))
        self.blur_sigma = widgets.FloatSlider(1.0, min=0.0, max=3.0, step=0.1,
                                              description="blur width px", **slider)
        self.blur_every = widgets.IntSlider(4, min=0, max=20, description="blur every",
                                            **slider)
        self.norm_pct = widgets.FloatSlider(0.0, min=0.0, max=95.0, step=5.0,
                                            description="norm clip %", **slider)
        self.contrib_pct = widgets.FloatSlider(0.0, min=0.0, max=95.0, step=5.0,
                                               description="contrib clip %", **slider)
        self.steps = widgets.IntSlider(200, min=10, max=1000, step=10, description="steps",
                                       **slider)
        self.steps.add_class("e2e-optimize-steps")
        self.size = widgets.IntSlider(max(height, width), min=16, max=max(256, height, width),
                                      step=8, description="size px", **slider)
        self.lr_scale = widgets.ToggleButtons(options=[("literal lr", 1.0), ("auto", "auto")],
                                              value="auto", description="step",
                                              tooltips=["the preset's learning rate as "
                                                        "translated from Caffe units",
                                                        "rescaled per unit at the first step "
                                                        "(small nets)"])
        self._options = [self.decay, self.blur_sigma, self.blur_every, self.norm_pct,
                         self.contrib_pct, self.steps, self.size, self.lr_scale]
        self._applying = False
        self.preset.observe(self._preset_chosen, names="value")
        for control in self._options:
            control.observe(self._option_changed, names="value")
        self.controls = [self.preset,
                         widgets.HBox([widgets.VBox([self.decay, self.blur_sigma,
                                                     self.blur_every, self.steps]),
                                       widgets.VBox([self.norm_pct, self.contrib_pct,
                                                     self.size, self.lr_scale])])]
        self.canvas = TileCanvas(PANE, PANE, "e2e-optimize-image")
        self.plot = LinePlot("", x_label="step", y_kind="magnitude", css="e2e-optimize-curve")
        x, y = self.plot.x_scale, self.plot.y_scale
        self.objective = bq.Lines(x=[], y=[], scales={"x": x, "y": y},
                                  colors=["#1f77b4", "#ff7f0e"], labels=["objective", "best"])
        self.argmax = bq.Lines(x=[], y=[], scales={"x": x, "y": y}, colors=["#d62728"],
                               line_style="dashed", labels=["layer argmax from"])
        self.plot.set_marks([self.objective, self.argmax])
        self.figure = self.plot.figure
        self._trace: list[tuple[int, float, float]] = []
        self.outputs = [widgets.HBox([self.canvas, self.plot])]
        self._preset_chosen({"new": self.preset.value})
        self.assemble("The image this unit likes best (Yosinski et al. 2015): gradient ascent "
                      "from grey noise with the paper's regularizers; presets are Table 1. "
                      "The picture updates while it runs.")

    def params(self) -> MaximizeParams:
        """The run's parameters from the controls."""
        return maximize_params(
            self.preset.value, decay=self.decay.value, blur_sigma=self.blur_sigma.value,
            blur_every=self.blur_every.value, norm_pct=self.norm_pct.value,
            contrib_pct=self.contrib_pct.value, steps=self.steps.value,
            size=(self.size.value, self.size.value), lr_scale=self.lr_scale.value)

    def _preset_chosen(self, change: Any) -> None:
        """Put a preset's regularizers on the sliders (steps and size stay as chosen)."""
        preset = maximize_params(change["new"])
        self._applying = True
        try:
            self.decay.value = preset.decay
            self.blur_sigma.value = preset.blur_sigma
            self.blur_every.value = preset.blur_every
            self.norm_pct.value = preset.norm_pct
            self.contrib_pct.value = preset.contrib_pct
        finally:
            self._applying = False
        self.request()

    def _option_changed(self, _change: Any) -> None:
        if not self._applying:
            self.request()

    def key(self, state: ViewState) -> Hashable:
        return (state.epoch, state.layer, state.unit, self.params())

    def compute(self, state: ViewState) -> MaximizeResult:
        view = self.view
        params = self.params()
        self._trace = []
        channels = int(view._images[0].shape[0])

        def callback(step: int, run: MaximizeState) -> bool:
            self._trace.append((step, float(run.objective[0]), float(run.best[0])))
            if run.images is not None:
                self._draw_image(run.images[0])
                self._draw_curve(self._trace, int(run.argmax_step[0]), run.steps)
            return self.progress(step + 1, run.steps)

        return maximize(view.model_at(state.epoch), state.layer, state.unit, params=params,
                        preprocess=view._preprocess, channels=channels, callback=callback,
                        every=self.preview_every)

    def draw(self, result: MaximizeResult, state: ViewState) -> None:
        self._draw_image(result.images[0])
        history = result.history
        trace = [(i, float(history.objective[i, 0]), float(history.best[i, 0]))
                 for i in range(history.objective.shape[0])]
        self._draw_curve(trace, int(history.argmax_step[0]), len(trace))

    def _draw_image(self, image: torch.Tensor) -> None:
        self.canvas.show(render.to_rgba(render.resize_nearest(render.image_to_uint8(image),
                                                              PANE, PANE)))

    def _draw_curve(self, trace: list[tuple[int, float, float]], argmax_step: int,
                    total: int) -> None:
        """The objective and best-so-far per step over an x axis of the run's ``total`` steps
        (whole-number ticks), and the step from which the unit led its layer."""
        steps = np.array([t[0] for t in trace], dtype=np.float64)
        values = np.array([[t[1] for t in trace], [t[2] for t in trace]], dtype=np.float64)
        last = max(1, total - 1)
        if (self.plot.x_scale.min, self.plot.x_scale.max) != (0.0, float(last)):
            with self.plot.x_scale.hold_sync():
                self.plot.x_scale.min, self.plot.x_scale.max = 0.0, float(last)
            self.plot.set_x_ticks(integer_ticks(0, last))
        with self.objective.hold_sync():
            self.objective.x, self.objective.y = steps, values
        if argmax_step >= 0 and len(trace):
            low, high = float(np.nanmin(values)), float(np.nanmax(values))
            self.argmax.x, self.argmax.y = [argmax_step, argmax_step], [low, high]
        else:
            self.argmax.x, self.argmax.y = [], []

    def clear(self) -> None:
        """No result for this selection: no curve and an empty canvas, so picture, curve and
        status ("press Run") agree."""
        self.objective.x, self.objective.y = [], []
        self.argmax.x, self.argmax.y = [], []
        self.canvas.show(np.zeros((PANE, PANE, 4), dtype=np.uint8))  # transparent

    def result_bytes(self, result: Any) -> int:
        return (tensor_bytes(result.images) + tensor_bytes(result.last)
                + result.history.objective.nbytes * 3)

    def summary(self, result: MaximizeResult, state: ViewState) -> str:
        step = int(result.history.argmax_step[0])
        became = f"its layer's argmax from step {step}" if step >= 0 else \
            "never its layer's argmax"
        return (f"unit {state.unit}: best {float(result.best[0]):.4g} after "
                f"{result.steps_run} steps; {became}")

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        return {"optimize": self.canvas.frame}


class _Preprocessed(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """A data set's images as the model takes them (the dashboard's ``preprocess`` applied)."""

    def __init__(self, data: Any, preprocess: Any) -> None:
        self.data, self.preprocess = data, preprocess

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Any:
        item = self.data[index]
        image = item[0] if isinstance(item, (tuple, list)) else item
        return self.preprocess(image) if self.preprocess is not None else image


class TopImagesPane(JobPane):
    """Zeiler & Fergus Fig. 2: the unit's top-9 images (receptive-field patches) and the
    deconvnet projection of each, 3 x 3 side by side; click a patch to make it the input."""

    name = "top"
    title = "top images"
    depends = frozenset({"epoch", "layer", "unit", "method"})
    k: ClassVar[int] = 9
    cell: ClassVar[int] = 60

    def __init__(self, view: DeepVis) -> None:
        super().__init__(view)
        self.patches_canvas = TileCanvas(3 * self.cell + 2, 3 * self.cell + 2, "e2e-top-patches")
        self.projections_canvas = TileCanvas(3 * self.cell + 2, 3 * self.cell + 2,
                                             "e2e-top-projections")
        self.patches_canvas.on_click(self.click)
        self.source = widgets.HTML()
        self.outputs = [widgets.HBox([
            widgets.VBox([widgets.HTML("<b>top images</b> (receptive field; click one)"),
                          self.patches_canvas]),
            widgets.VBox([widgets.HTML("<b>their projections</b>"), self.projections_canvas]),
        ]), self.source]
        self._built = ByteLRU(16 * 2**20, "top-k indexes built on the dashboard's images")
        self.auto = view._index is not None  # shown without Run, on the pane's worker
        self.assemble("The images of the data set that drive this unit hardest, cropped to "
                      "its receptive field, and what of each the unit sees (Zeiler &amp; "
                      "Fergus Fig. 2). Pass <code>index=</code> (a data-set index from "
                      "<code>ipydeepvis index</code> or <code>dv.build_index</code>) or press "
                      "Run to index the dashboard's own images.")

    # -- which index and data -----------------------------------------------------------------

    def index_for(self, state: ViewState) -> tuple[TopKIndex | None, Any]:
        """The index for the state's epoch and layer, and the data it indexes (or None)."""
        given = self.view._index
        if given is not None:
            index = given.get(state.epoch, given.get(None)) if isinstance(given, dict) \
                else given
            if index is not None and state.layer in index.scans:
                return index, self.view._source
        built = self._built.get((state.epoch, state.layer, self.view._generation))
        return built, self.view._images if built is not None else None

    def key(self, state: ViewState) -> Hashable:
        index, _data = self.index_for(state)
        which = id(index) if index is not None else None
        return (state.epoch, state.layer, state.unit, state.method, which)

    def job(self, parts: set[str]) -> None:
        index, _data = self.index_for(self.view._snapshot())
        self.auto = index is not None  # with an index, a unit change shows its images at once
        super().job(parts)

    def compute(self, state: ViewState) -> tuple[Crops, Crops, str]:
        view = self.view
        model = view.model_at(state.epoch)
        index, data = self.index_for(state)
        if index is None:
            inputs = torch.stack([view._model_input(img) for img in view._images])
            index = build_index(model, inputs, [state.layer], k=min(self.k, len(inputs)),
                                callback=self.progress,
                                epoch=state.epoch if state.epoch >= 0 else None)
            if self.stopping.is_set():
                return _empty_crops(), _empty_crops(), "stopped"
            self._built.put((state.epoch, state.layer, view._generation), index)
            data = view._images
        scan = index[state.layer]
        shown = patches(model, data, scan, state.unit)
        projected = projections(model, _Preprocessed(data, view._preprocess), scan, state.unit,
                                method=state.method)
        where = ("the dashboard's images" if data is view._images
                 else f"the index ({index.seen} of {index.length} images)")
        return shown, projected, where

    def result_bytes(self, result: Any) -> int:
        return tensor_bytes(result[0].images) + tensor_bytes(result[1].images)

    def draw(self, result: tuple[Crops, Crops, str], state: ViewState) -> None:
        shown, projected, where = result
        if not shown.entries:
            self.clear()
            return
        patch_tiles = [render.image_to_uint8(crop) for crop in shown.images]
        projection_tiles = [render.projection_picture(crop) for crop in projected.images]
        self.patches_canvas.show(self._sheet(patch_tiles))
        self.projections_canvas.show(self._sheet(projection_tiles))
        values = ", ".join(f"{entry.value:.3g}" for entry in shown.entries)
        self.source.value = f"from {where}; activations {values}"

    def _sheet(self, tiles: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8]:
        cells = np.stack([render.resize_nearest(t, self.cell, self.cell) for t in tiles])
        sheet = render.tile_grid(cells, 3, 1, background=255)
        full = np.full((3 * self.cell + 2, 3 * self.cell + 2, 3), 255, dtype=np.uint8)
        full[:sheet.shape[0], :sheet.shape[1]] = sheet
        rgba = render.to_rgba(full)
        step = self.cell + 1
        for k in range(len(tiles), 9):  # cells with no image show the page (no white block
            row, col = divmod(k, 3)     # in a dark theme)
            rgba[row * step:row * step + self.cell, col * step:col * step + self.cell] = 0
        return rgba

    def entry_at(self, x: float, y: float) -> Entry | None:
        """The top-k entry whose patch is under canvas pixel ``(x, y)``."""
        if self.result is None:
            return None
        col, row = int(x // (self.cell + 1)), int(y // (self.cell + 1))
        k = row * 3 + col
        entries = self.result[0].entries
        return entries[k] if 0 <= col < 3 and 0 <= k < len(entries) else None

    def click(self, x: float, y: float) -> None:
        """Make the clicked patch's image the input, seeded at the unit's position there."""
        entry = self.entry_at(x, y)
        if entry is None or self.state is None:
            return
        view = self.view
        _index, data = self.index_for(self.state)
        if data is view._images:
            image_index = entry.index
        else:
            item = data[entry.index]
            image_index = view.add_image(item[0] if isinstance(item, (tuple, list)) else item)
        with view.hold_trait_notifications():
            view.image_index = image_index
            if entry.position:
                view.clicked = tuple(entry.position)  # type: ignore[assignment]
                view.position = "clicked"

    def clear(self) -> None:
        self.source.value = ""
        blank(self.patches_canvas, self.projections_canvas)

    def summary(self, result: Any, state: ViewState) -> str:
        return f"unit {state.unit}: {len(result[0].entries)} top images"

    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        return {"top_patches": self.patches_canvas.frame,
                "top_projections": self.projections_canvas.frame}


def _empty_crops() -> Crops:
    return Crops(torch.zeros(0, 0, 0, 0), [], [])


ANALYSIS_PANES: tuple[type[Pane], ...] = (TopImagesPane, OptimizePane, OcclusionPane,
                                          InvariancePane, CorrespondencePane)
"""The analysis panes ``DeepVis`` adds below its main row (in tabs)."""

