"""The DeepVis dashboard: Yosinski et al.'s deep-visualization toolbox in a notebook.

What every unit of a layer does with the current image (a grid of activation maps), the selected
unit enlarged, and its projection back to pixels (deconvnet / guided backprop / gradient),
for any PyTorch model. The view holds state in traits and draws frames; every number comes from
:class:`~ipydeepvis.core.Probe` and every picture from :mod:`ipydeepvis.render`.
"""

from __future__ import annotations

import copy
import html
import io
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import nn
from traitlets import Float, Int, TraitError, Tuple, Unicode, observe, validate

from .. import render
from ..checkpoints import CheckpointSeries
from ..core import METHODS, Probe
from ..core.layers import default_layer
from ..errors import (
    InvalidInputError,
    InvalidOptionError,
    UnsupportedModelError,
    ViewClosedError,
)
from ._base import LatestWins, close_widget_tree, report_error
from .analyses import ANALYSIS_PANES
from .camera import CameraFeed, CameraView
from .compare import ComparePane
from .epochs import EpochScrubber
from .histogram import HistogramPane
from .keyboard import KEY_BINDINGS, KeyboardNav
from .panes import DEFAULT_PANES, GRID_WIDTH, PANE, InputPane, Pane, ViewState
from .sanity import SanityPane
from .tiles import TileCanvas

__all__ = ["DeepVis"]

POSITIONS = ("max", "all", "clicked")
STYLE = """<style>
.deepvis { color: var(--jp-ui-font-color1, inherit); }
.deepvis canvas:focus, .deepvis canvas:focus-visible { outline: none; }
.deepvis canvas.deepvis-fluid { image-rendering: pixelated; }
.deepvis .deepvis-warn { color: var(--jp-warn-color0, #a60); }
.deepvis .deepvis-error { color: var(--jp-error-color1, #b00); }
.deepvis .deepvis-notice { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
</style>"""
"""The dashboard's own CSS: JupyterLab's theme colours (light and dark), no focus outline on a
clicked canvas, one-line notices."""
UNIT_SCALES = ("unit", "layer")
MIN_GRID = 280  # px: the narrowest the activation grid is drawn in a narrow output area
CONTRAST_RANGE = (2.0 ** -3, 2.0 ** 4)


class DeepVis(widgets.VBox):
    """Explore a model's layers and units on a set of images.

    Parameters
    ----------
    model : nn.Module
        Any image model; it is never modified (weights, mode, hooks stay as they are), and the
        dashboard never touches its module objects from its worker thread: the probe runs on
        a shadow that shares the weights (see :class:`~ipydeepvis.core.shadow.ModelShadow`).
    images : Tensor, array, sequence of them, or Dataset
        Images ``(C, H, W)`` with values in 0..1 (a batch ``(N, C, H, W)`` works too; from a
        data set yielding ``(image, label)`` the first ``max_images`` are taken). ``uint8``
        images (0..255) are divided by 255; other integer types are refused.
    checkpoints : CheckpointSeries or path, optional
        A training run's saved epochs: adds the epoch scrubber (Play, slider, evolution strip,
        curves) and makes the whole dashboard follow the chosen epoch. The dashboard then works
        on its own copy of ``model``; yours is never loaded into.
    classes : sequence of str, optional
        Class names of the model's outputs (one per logit); they give the top-5 predictions.
    preprocess : callable, optional
        Applied to an image before the model sees it (e.g. ``transforms.Normalize``); images
        themselves stay displayable.
    max_images : int
        How many images of ``images`` the picker offers (at least 1).
    probe_size : int
        With ``checkpoints``: how many images of ``images`` the evolution strip scans per epoch.
    threaded : bool
        Compute in a background thread where the newest request wins (default). False computes
        inside each event, which scripts and tests may prefer.
    index : TopKIndex, path, or dict of epoch to TopKIndex, optional
        A data-set index of ``images`` (``ipydeepvis index`` / ``dv.build_index``) for the
        top-images pane; without it the pane indexes the dashboard's own images on Run.
    panes : sequence of Pane classes, optional
        What the dashboard shows: by default the main row
        (:data:`~ipydeepvis.widgets.panes.DEFAULT_PANES`) and the analyses in tabs below it
        (:data:`~ipydeepvis.widgets.analyses.ANALYSIS_PANES`).
    compare : nn.Module, optional
        Another model with the same layer names (e.g. a fine-tuned copy): adds the compare
        pane, showing the selected unit's projection in both and their difference. With
        ``checkpoints`` the pane compares saved epochs without it.
    weights_note : str, optional
        A warning shown above the predictions (the ``weights_note`` trait), e.g.
        ``"untrained weights"`` for a torchvision model built with ``weights=None``, whose
        top-5 classes mean nothing.
    camera : bool
        Add the browser's camera as an image source (see :meth:`add_camera`).

    Notes
    -----
    Call :meth:`close` when done with a view: it stops its threads and frees its widgets, the
    recorded forward pass and any model copy. After training the model in the same kernel,
    :meth:`refresh` redraws everything with the new weights.

    With the pointer over the pictures, keys move through the layers (up/down), units
    (left/right; Shift+up/down a grid row), images (Page Up/Down), cycle the method (``m``) and
    seed (``s``), hide the projection (``b``), freeze it on the current unit (``f``) and show
    the list (``?``): :attr:`key_bindings`, handled by :attr:`keyboard`.
    """

    key_bindings = KEY_BINDINGS
    """Key -> what it does (read-only; ``keys`` is ipywidgets' list of synced traits)."""

    layer = Unicode(help="Name of the layer shown (as in probe.layers)").tag(sync=True)
    unit = Int(0, help="Selected unit (channel) of the layer").tag(sync=True)
    image_index = Int(0, help="Index of the current image").tag(sync=True)
    method = Unicode("deconvnet", help="Projection method: deconvnet, guided or gradient").tag(
        sync=True)
    position = Unicode("max", help="Projection seed: max, all or clicked").tag(sync=True)
    clicked = Tuple(Int(), Int(), default_value=(0, 0),
                    help="Map position (row, column) used when position == 'clicked'").tag(
        sync=True)
    display = Unicode("raw", help="Projection display: raw, gray, norm or blurred norm").tag(
        sync=True)
    contrast = Float(1.0, help="Projection contrast (gain before clipping), "
                     f"{CONTRAST_RANGE[0]} to {CONTRAST_RANGE[1]}").tag(sync=True)
    epoch = Int(-1, help="Saved epoch whose weights are shown (-1: the model as given)").tag(
        sync=True)
    unit_scale = Unicode("unit", help="Enlarged unit's brightness: white is the unit's own "
                         "largest value ('unit') or the layer's ('layer')").tag(sync=True)
    weights_note = Unicode("", help="Shown above the predictions, e.g. 'untrained weights' for "
                           "a model with random weights").tag(sync=True)

    def __init__(
        self,
        model: nn.Module,
        images: Any,
        *,
        checkpoints: Any = None,
        classes: Sequence[str] | None = None,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
        max_images: int = 16,
        probe_size: int = 300,
        threaded: bool = True,
        panes: Sequence[type[Pane]] | None = None,
        index: Any = None,
        weights_note: str | None = None,
        compare: nn.Module | None = None,
        camera: bool = False,
    ) -> None:
        super().__init__()
        self._ready = False
        self._closed = False
        self._worker: LatestWins | None = None
        self.scrubber: EpochScrubber | None = None
        self.panes: dict[str, Pane] = {}
        self._coverage: Any = None
        self._compare_model = compare
        self._camera: CameraFeed | None = None
        if weights_note is not None:
            self.weights_note = weights_note
        try:
            self._index = _load_index(index)
            if compare is not None and not isinstance(compare, nn.Module):
                msg = f"compare must be a torch.nn.Module, got {type(compare).__name__}"
                raise UnsupportedModelError(msg)
            default = (*DEFAULT_PANES, *ANALYSIS_PANES, HistogramPane, SanityPane)
            if compare is not None or checkpoints is not None:
                default = (*default, ComparePane)
            self._setup(model, images, checkpoints, classes, preprocess, max_images,
                        probe_size, threaded, panes or default)
            if camera:
                self.add_camera()
        except BaseException:
            self.close()  # a failed constructor leaves no thread, widget or copy behind
            raise

    def _setup(self, model: nn.Module, images: Any, checkpoints: Any,
               classes: Sequence[str] | None, preprocess: Any, max_images: int,
               probe_size: int, threaded: bool, pane_classes: Sequence[type[Pane]]) -> None:
        _check_count("max_images", max_images)
        _check_count("probe_size", probe_size)
        if not isinstance(model, nn.Module):
            msg = f"model must be a torch.nn.Module, got {type(model).__name__}"
            raise UnsupportedModelError(msg)
        self._images, self._labels = _collect_images(images, max_images)
        self._source, self._source_count = images, len(self._images)
        self._classes = list(classes) if classes is not None else None
        # a data set's labels index its own class list (an ImageFolder's folders), which need
        # not be the model's classes
        label_names = getattr(images, "classes", None)
        self._label_names = list(label_names) if label_names is not None else self._classes
        self._preprocess = preprocess
        series = None
        if checkpoints is not None:
            series = checkpoints if hasattr(checkpoints, "epochs") else CheckpointSeries(
                checkpoints, model=model)
            model = copy.deepcopy(model)  # epochs are loaded into this copy, never into yours
        self._model: nn.Module | None = model
        self.probe = Probe(model, input_shape=tuple(self._model_input(self._images[0]).shape))
        self._layers = {
            layer.name: layer for layer in self.probe.layers
            if layer.shape is not None and len(layer.shape) in (1, 3)
        }
        if not self._layers:
            msg = "the model has no layer with (C, H, W) or (F,) outputs to show"
            raise InvalidInputError(msg)
        self._check_classes()
        # the deepest conv, or its rectified output where the ReLU is a function call (F.relu):
        # its units can fire. (modules=True would also start nn.ReLU nets on their ReLU.)
        start = default_layer(list(self._layers.values()), modules=False)
        start_layer = start.name if start is not None else next(iter(self._layers))
        if series is not None:
            self.scrubber = EpochScrubber(series, images, layer=start_layer,
                                          units=self._strip_units(start_layer, 0),
                                          probe_size=probe_size, threaded=threaded,
                                          picker=False)
        self._results: dict[str, Any] = {}
        self._job_maps: tuple[tuple[Any, ...], torch.Tensor] | None = None
        self._loaded_epoch: int | None = None
        self._notices: dict[int, str] = {}  # image index -> what an upload changed
        self.timings: dict[str, float] = {}
        self._worker = LatestWins(self._render, self._show_error, threaded=threaded)
        self._generation = 0  # refresh() starts a new one: cached analysis results are stale
        self._epoch_models: dict[int, nn.Module] = {}
        self._status = widgets.HTML()
        self._status.add_class("e2e-status")
        self._errors = widgets.Output()
        self._errors.add_class("e2e-errors")
        self.panes = {cls.name: cls(self) for cls in pane_classes}
        self._pane_workers = {
            name: LatestWins(pane.job, pane.report, threaded=threaded,  # type: ignore[attr-defined]
                             on_close=pane.stop, name=f"ipydeepvis-{name}",  # type: ignore[attr-defined]
                             lazy=True)
            for name, pane in self.panes.items() if getattr(pane, "own_worker", False)}
        self._build_controls()
        self.keyboard = KeyboardNav(self)
        self.layer = start_layer
        style = widgets.HTML(STYLE, layout=widgets.Layout(display="none"))
        self.children = [style, self._controls, self._layout_panes(), self._status,
                         self._errors]
        if self.scrubber is not None:
            self.epoch = self.scrubber.epoch
            self.children = [*self.children, self.scrubber]
            widgets.link((self.scrubber, "epoch"), (self, "epoch"))
            self._follow_layer()
        self.add_class("deepvis")
        self._ready = True
        first = ("weights",) if self.scrubber is not None else ()
        self._request(*first, "thumbnails", *self.panes)
        for name in self._pane_workers:
            self._request_pane(name, run=False)

    # ------------------------------------------------------------------ trait rules

    @validate("layer")
    def _check_layer(self, proposal: Any) -> str:
        name = proposal["value"]
        if name not in self._layers:
            shown = ", ".join(repr(n) for n in list(self._layers)[:8])
            msg = f"layer {name!r} is not shown here; choose one of {shown}, ..."
            raise TraitError(msg)
        return str(name)

    @validate("unit")
    def _check_unit(self, proposal: Any) -> int:
        value = proposal["value"]
        channels = self._channels()
        if isinstance(value, bool) or not 0 <= value < channels:
            msg = f"unit {value} is out of range for layer {self.layer!r}: 0..{channels - 1}"
            raise TraitError(msg)
        return int(value)

    @validate("image_index")
    def _check_image(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if not 0 <= value < len(self._images):
            msg = f"image_index {value} is out of range: 0..{len(self._images) - 1}"
            raise TraitError(msg)
        return value

    @validate("method")
    def _check_method(self, proposal: Any) -> str:
        return _one_of("method", proposal["value"], METHODS)

    @validate("position")
    def _check_position(self, proposal: Any) -> str:
        return _one_of("position", proposal["value"], POSITIONS)

    @validate("unit_scale")
    def _check_unit_scale(self, proposal: Any) -> str:
        return _one_of("unit_scale", proposal["value"], UNIT_SCALES)

    @validate("display")
    def _check_display(self, proposal: Any) -> str:
        return _one_of("display", proposal["value"], render.DISPLAY_MODES)

    @validate("contrast")
    def _check_contrast(self, proposal: Any) -> float:
        value = float(proposal["value"])
        low, high = CONTRAST_RANGE
        if not low <= value <= high:  # also refuses NaN
            msg = f"contrast must be between {low} and {high}, got {value!r}"
            raise TraitError(msg)
        return value

    @validate("clicked")
    def _check_clicked(self, proposal: Any) -> tuple[int, int]:
        row, col = (int(v) for v in proposal["value"])
        height, width = self._map_size(self.layer)
        if not (0 <= row < height and 0 <= col < width):
            msg = (f"clicked {(row, col)} is outside the {height}x{width} map of layer "
                   f"{self.layer!r}: rows 0..{height - 1}, columns 0..{width - 1}")
            raise TraitError(msg)
        return row, col

    @validate("epoch")
    def _check_epoch(self, proposal: Any) -> int:
        value = int(proposal["value"])
        scrubber = getattr(self, "scrubber", None)
        if scrubber is None:
            if value != -1:
                msg = (f"epoch {value} cannot be shown: this dashboard has no checkpoints "
                       "(pass checkpoints= to DeepVis); epoch stays -1")
                raise TraitError(msg)
        elif value not in scrubber.epochs:
            msg = f"epoch {value} is not a saved epoch; saved epochs are {scrubber.epochs}"
            raise TraitError(msg)
        return value

    @observe("layer")
    def _layer_changed(self, change: Any) -> None:
        if self._closed:
            return
        channels = self._channels()
        height, width = self._map_size(self.layer)
        with self.hold_sync():
            if self.unit >= channels:
                self.unit = channels - 1
            row, col = self.clicked
            if row >= height or col >= width:  # the old layer's click, moved inside the map
                self.clicked = (min(row, height - 1), min(col, width - 1))
            self._unit_slider.max = channels - 1
        self._highlight_unit()
        self._follow_layer()

    @observe("unit")
    def _unit_changed(self, change: Any) -> None:
        if self._closed:
            return
        self._highlight_unit()
        self._follow_layer()

    @observe("layer", "unit", "image_index", "method", "position", "clicked", "display",
             "contrast", "epoch", "unit_scale", "weights_note")
    def _state_changed(self, change: Any) -> None:
        """Ask the panes that depend on the changed trait to recompute (or only redraw)."""
        name = change["name"]
        stale = [p.name for p in self.panes.values() if name in p.depends]
        redraw = [f"draw:{p.name}" for p in self.panes.values() if name in p.display]
        if name == "epoch" and self.scrubber is not None:
            stale.insert(0, "weights")
        for pane in [p for p in stale if p in getattr(self, "_pane_workers", {})]:
            stale.remove(pane)
            self._request_pane(pane, run=False)
        self._request(*stale, *redraw)

    def _request(self, *parts: str) -> None:
        """Ask the render worker to bring ``parts`` up to date (once construction is done)."""
        parts = tuple(p for p in parts if p not in getattr(self, "_pane_workers", {}))
        if self._ready and self._worker is not None and parts:
            self._worker.request(*parts)

    def _request_pane(self, name: str, run: bool) -> None:
        """Ask a pane with its own worker to show its result for the current state (``run``:
        compute it if it is not cached)."""
        worker = self._pane_workers.get(name) if self._ready else None
        if worker is None:
            return
        pane = self.panes[name]
        # nothing computed yet and nothing to compute without Run: say so without a thread
        # (an auto pane computes on "show", which belongs on its worker)
        if not run and not worker.started and not (getattr(pane, "auto", False)
                                                   and self.tab_shown(name)):
            try:
                pane.job({"show"})  # type: ignore[attr-defined]
            except Exception as exc:
                pane.report(exc)  # type: ignore[attr-defined]
            return
        worker.request("run" if run else "show")

    # ------------------------------------------------------------------ public helpers

    def wait(self, timeout: float = 300.0) -> bool:
        """Block until every requested frame is drawn (for scripts and tests); True at once
        after :meth:`close`."""
        if self._closed:
            return True
        assert self._worker is not None
        done = self._worker.wait(timeout)
        for worker in self._pane_workers.values():
            done = worker.wait(timeout) and done
        if self.scrubber is not None:
            done = self.scrubber.wait(timeout) and done
        return done

    def refresh(self) -> None:
        """Redraw everything from the model as it is now (e.g. after training it some more);
        the analyses' cached results are not shown again."""
        self._generation += 1
        self._request("thumbnails", *self.panes)
        for name in self._pane_workers:
            self._request_pane(name, run=False)

    def model_at(self, epoch: int) -> nn.Module:
        """The model with the weights of ``epoch`` (-1: the model as given), for analyses that
        run beside the main panes: with checkpoints, a module of its own per epoch (the two
        most recent kept), so no analysis sees the dashboard's weights change under it."""
        if self.scrubber is None or epoch < 0:
            assert self._model is not None
            return self._model
        model = self._epoch_models.get(epoch)
        if model is None:
            weights = self.scrubber.analysis.state_dict(epoch)
            if weights is None:
                msg = f"epoch {epoch} is unavailable: its checkpoint cannot be read"
                raise InvalidOptionError(msg)
            model = copy.deepcopy(self._model)  # type: ignore[arg-type]
            with torch.no_grad():
                model.load_state_dict(weights)
            self._epoch_models = {**dict(list(self._epoch_models.items())[-1:]), epoch: model}
        return model

    def _part_boxes(self) -> torch.Tensor | None:
        """Object boxes ``(N, 4)`` (x0, y0, x1, y1) of the shown images when their data set
        can tell them (the embedded Shapes data set can), else None."""
        boxes = getattr(self._source, "boxes", None)
        if not callable(boxes) or len(self._images) != self._source_count:
            return None
        return torch.as_tensor(boxes(list(range(self._source_count))))

    def close(self) -> None:
        """Stop the render worker and free the view: its widgets, the recorded forward pass,
        its model copy and images. Later calls return at once or raise ViewClosedError."""
        if getattr(self, "_closed", False) and getattr(self, "_worker", None) is None:
            return
        self._closed = True
        self._ready = False
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.close()
        for pane_worker in getattr(self, "_pane_workers", {}).values():
            pane_worker.close()
        self._epoch_models = {}
        scrubber = getattr(self, "scrubber", None)
        if scrubber is not None:
            scrubber.close()
        probe = getattr(self, "probe", None)
        if probe is not None:
            probe.clear()
        self._model = None
        self._camera = None
        self._results = {}
        self._job_maps = None
        self._worker = None
        self._source = None
        for pane in getattr(self, "panes", {}).values():
            pane.release()
        self._compare_model = None
        extra = [p.widget for p in getattr(self, "panes", {}).values() if p.widget is not None]
        if getattr(self, "keyboard", None) is not None:
            self.keyboard.close()
        close_widget_tree(self, *extra)

    def save_png(self, path: str | Path) -> Path:
        """Save the current view as one labelled PNG.

        A title line names the layer, unit, epoch, method and seed; under it the input, the
        activation grid with the selected unit ringed, the enlarged unit with its seed marker
        and the projection, each with a caption. The same labels are stored as PNG text
        fields (``Image.open(path).text``).
        """
        if self._closed:
            msg = "this DeepVis view is closed; build a new one to save a picture"
            raise ViewClosedError(msg)
        path = render.check_png_path(path)
        self.wait()
        labels = self.labels()
        shown = self._captioned_frames()
        frames, captions = [f for _, f, _ in shown], [c for _, _, c in shown]
        text = dict(labels)
        if self.keyboard.frozen is not None:
            text["frozen"] = "unit {1} of {0}".format(*self.keyboard.frozen)
        title = "  ·  ".join(f"{key} {value}" for key, value in labels.items())
        return render.save_png_sheet(frames, path, labels=captions, font_size=render.FONT_SIZE,
                                     title=title, text=text)

    def to_html(self, path: str | Path) -> Path:
        """Write the current view as one self-contained HTML file that needs no kernel.

        The page shows what the canvases show (input, activation grid with the selected unit
        ringed, the enlarged unit with its marker, the projection) as lossless PNGs with
        their captions, the labels of :meth:`labels`, the predictions and, with checkpoints,
        the labelled evolution strip (current epoch outlined) and the saved metrics as a
        table. Open it from disk in any browser, attach it to a report.
        """
        from ..export import Figure, Section, write_html

        if self._closed:
            msg = "this DeepVis view is closed; build a new one to export it"
            raise ViewClosedError(msg)
        render.check_output_path(path, (".html", ".htm"))
        self.wait()
        figures = [Figure(frame, caption, name) for name, frame, caption in
                   self._captioned_frames()]
        predictions = self._predictions.value if "input" in self.panes else ""
        sections = [Section("", figures, predictions)]
        if self.scrubber is not None:
            sections.append(self._strip_section())
        return write_html(path, "ipydeepvis view", self.labels(), sections)

    def _captioned_frames(self) -> list[tuple[str, npt.NDArray[np.uint8], str]]:
        """``(pane, frame, caption)`` of the main row as shown (grid ring drawn in)."""
        scale = "own scale" if self.unit_scale == "unit" else "layer scale"
        shown, out = self.frames, []
        method = self.labels()["method"]
        if self.keyboard.frozen is not None:  # key f: the projection is another unit's
            method += f", frozen unit {self.keyboard.frozen[1]}"
        for name, caption in [("input", f"image {self.image_index}"), ("grid", "activations"),
                              ("unit", f"unit {self.unit}, {scale}"),
                              ("projection", method)]:
            frame = shown.get(name)
            if frame is None:
                continue
            canvas = getattr(self.panes.get(name), "canvas", None)
            if canvas is not None and name in ("grid", "unit") and canvas.highlight_box:
                frame = render.outline(frame, canvas.highlight_box,
                                       _rgb(canvas.highlight_color))
            out.append((name, frame, caption))
        return out

    def _strip_section(self) -> Any:
        """The evolution strip (labelled, current epoch outlined) and the metrics table."""
        from ..export import Figure, Section, metrics_table
        from .epochs import metric_curves

        assert self.scrubber is not None
        strip = self.scrubber.strip
        figures = []
        if strip is not None:
            figures.append(Figure(render.strip_figure(strip), f"feature evolution: layer "
                                  f"{strip.layer}, deconvnet | image patch per saved epoch",
                                  "strip"))
        curves = metric_curves(getattr(self.scrubber.series, "metrics", None))
        table = metrics_table(curves) or "<p>no metrics saved with these checkpoints</p>"
        return Section(f"saved epochs: {', '.join(map(str, self.scrubber.epochs))}",
                       figures, table)

    def labels(self) -> dict[str, str]:
        """What the view shows, in words: layer, unit (with its class name on the logit
        layer), epoch, method and seed (what :meth:`save_png` writes on the picture)."""
        seed = self.position if self.position != "clicked" else f"clicked {tuple(self.clicked)}"
        return {
            "layer": self.layer,
            "unit": f"{self.unit}{self._unit_name(self.layer, self.unit)}",
            "epoch": str(self.epoch) if self.epoch >= 0 else "as given",
            "method": self.method,
            "seed": seed,
        }

    @property
    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        """The RGBA frames on the canvases now: input, thumbnails, grid, unit, projection."""
        out: dict[str, npt.NDArray[np.uint8] | None] = {}
        for pane in self.panes.values():
            out.update(pane.frames())
        return out

    @property
    def grid_layout(self) -> render.GridLayout:
        """Where each unit's tile is in the grid frame (for clicks and tests)."""
        return self.layout_of(self.layer)

    def layout_of(self, layer: str) -> render.GridLayout:
        """The grid layout of ``layer``'s units."""
        return render.grid_layout(int(self._layers[layer].channels or 1), GRID_WIDTH)

    def click_grid(self, x: float, y: float) -> None:
        """Select the unit whose tile holds grid pixel ``(x, y)`` (what a click does)."""
        unit = self.grid_layout.unit_at(x, y)
        if unit is not None:
            self.unit = unit

    def click_unit_map(self, x: float, y: float) -> None:
        """Project from the map position under pane pixel ``(x, y)`` (what a click does)."""
        shape = self._layers[self.layer].shape or ()
        if len(shape) != 3:
            return
        h, w = shape[1], shape[2]
        i = min(h - 1, max(0, int(y * h / PANE)))
        j = min(w - 1, max(0, int(x * w / PANE)))
        with self.hold_trait_notifications():
            self.clicked = (i, j)
            self.position = "clicked"

    def add_image(self, image: Any) -> int:
        """Append an image ``(C, H, W)`` (tensor or array; 0..1 floats or uint8) and show it;
        returns its index."""
        if self._closed:
            msg = "this DeepVis view is closed; build a new one to add images"
            raise ViewClosedError(msg)
        tensor = _as_image(image, "image")
        self._images.append(tensor)
        self._labels.append(None)
        self._request("thumbnails")
        self.image_index = len(self._images) - 1
        return self.image_index

    def add_camera(self, camera: CameraView | None = None) -> CameraView:
        """Add the browser's camera (a :class:`~ipydeepvis.widgets.camera.CameraView`) under
        the input pane: its frames become the "camera" image, which the dashboard follows
        while it is selected (newest frame wins, none are queued). Returns the camera widget;
        it starts with its start button (or ``camera.running = True``)."""
        if self._closed:
            msg = "this DeepVis view is closed; build a new one to add a camera"
            raise ViewClosedError(msg)
        if self._camera is not None:
            return self._camera.camera
        camera = camera if camera is not None else CameraView()
        camera.frame_size = max(int(s) for s in self._images[0].shape[-2:])
        self._camera = CameraFeed(self, camera)
        pane = self.panes.get("input")
        if isinstance(pane, InputPane) and isinstance(pane.widget, widgets.Box):
            children = list(pane.widget.children)
            children.insert(children.index(pane.upload) + 1, camera)
            pane.widget.children = children
        else:
            self.children = [camera, *self.children]
        return camera

    def _image_stamp(self, index: int) -> int:
        """Which picture image ``index`` holds: the camera frame's id for the camera image
        (it is replaced by every frame), else 0; analyses cache their results under it."""
        feed = self._camera
        if feed is None or feed.index != index:
            return 0
        return feed.shown or 0

    def __repr__(self) -> str:
        if self._closed:
            return "DeepVis(closed)"
        return (f"DeepVis(layer={self.layer!r}, unit={self.unit}, image_index={self.image_index}, "
                f"method={self.method!r}, images={len(self._images)})")

    # ------------------------------------------------------------------ layout

    def _build_controls(self) -> None:
        options = [(f"{n}  [{lay.kind} {tuple(lay.shape or ())}]", n)
                   for n, lay in self._layers.items()]
        self._layer_picker = widgets.Dropdown(options=options, description="layer",
                                              layout=widgets.Layout(width="360px"))
        self._layer_picker.add_class("e2e-layer")
        self._prev = widgets.Button(description="◀", layout=widgets.Layout(width="36px"),
                                    tooltip="previous layer")
        self._next = widgets.Button(description="▶", layout=widgets.Layout(width="36px"),
                                    tooltip="next layer")
        self._unit_slider = widgets.IntSlider(0, 0, 1, description="unit",
                                              continuous_update=False,
                                              layout=widgets.Layout(width="420px"))
        self._unit_slider.add_class("e2e-unit")
        self._method_buttons = widgets.ToggleButtons(options=list(METHODS), description="method",
                                                     style={"button_width": "90px"})
        self._method_buttons.add_class("e2e-method")
        self._position_buttons = widgets.ToggleButtons(options=list(POSITIONS),
                                                       description="seed",
                                                       style={"button_width": "70px"})
        self._position_buttons.add_class("e2e-position")
        self._scale_buttons = widgets.ToggleButtons(
            options=list(UNIT_SCALES), description="scale", style={"button_width": "56px"},
            tooltips=["white = the unit's own largest value",
                      "white = the layer's largest value (units compared)"])
        self._scale_buttons.add_class("e2e-unit-scale")
        self._display_picker = widgets.Dropdown(options=list(render.DISPLAY_MODES),
                                                description="display",
                                                layout=widgets.Layout(width="200px"))
        low, high = CONTRAST_RANGE
        self._contrast_slider = widgets.FloatLogSlider(1.0, base=2, min=math.log2(low),
                                                       max=math.log2(high), step=0.25,
                                                       description="contrast",
                                                       continuous_update=False)
        self._layer_picker.value = None
        for control, name in [(self._layer_picker, "layer"), (self._unit_slider, "unit"),
                              (self._method_buttons, "method"),
                              (self._position_buttons, "position"),
                              (self._display_picker, "display"),
                              (self._contrast_slider, "contrast"),
                              (self._scale_buttons, "unit_scale")]:
            self._bind(control, name)
        self._prev.on_click(self._previous_layer)
        self._next.on_click(self._next_layer)

        def row(*children: widgets.Widget) -> widgets.HBox:
            """Controls side by side; in a narrow output area they wrap instead of clipping."""
            return widgets.HBox(children, layout=widgets.Layout(flex_flow="row wrap"))

        self._controls = widgets.VBox([
            row(self._layer_picker, self._prev, self._next, self._unit_slider),
            row(self._method_buttons, self._position_buttons),
            row(self._display_picker, self._contrast_slider, self._scale_buttons),
        ])

    def _bind(self, control: widgets.ValueWidget, name: str) -> None:
        """Keep ``control.value`` and trait ``name`` equal; a value the trait refuses puts the
        control back and shows why (a plain ``link`` would leave the control on it)."""

        def to_trait(change: Any) -> None:
            if change["new"] is None or change["new"] == getattr(self, name):
                return
            try:
                setattr(self, name, change["new"])
            except TraitError as exc:
                control.value = getattr(self, name)
                self._show_error(InvalidOptionError(str(exc)))

        def to_control(change: Any) -> None:
            if control.value != change["new"]:
                control.value = change["new"]

        control.observe(to_trait, names="value")
        self.observe(to_control, names=name)
        if getattr(self, name) is not None and getattr(self, name) != "":
            control.value = getattr(self, name)

    def _layout_panes(self) -> widgets.Widget:
        """Main row: columns 0, 1, 2 side by side; other panes in tabs below.

        The grid column (1) and the unit column (2) never part: in a narrow output area
        (JupyterLab at 1100 px with the file browser open) column 0 moves above them and the
        grid shrinks (down to :data:`MIN_GRID` px) rather than pushing column 2 below.
        """

        def column(children: list[widgets.Widget], width: int,
                   fluid: bool = False) -> widgets.VBox:
            """A column of fixed width (or, fluid, at most that wide): long text wraps
            instead of pushing the others."""
            if fluid:
                size = dict(flex=f"1 1 {width + 8}px", min_width=f"{MIN_GRID + 8}px",
                            max_width=f"{width + 8}px")
            else:
                size = dict(flex=f"0 0 {width + 8}px", width=f"{width + 8}px",
                            min_width=f"{width + 8}px")
            return widgets.VBox(children, layout=widgets.Layout(overflow="hidden", **size))

        def panes(c: int) -> list[widgets.Widget]:
            return [p.widget for p in self.panes.values() if p.column == c]

        left = column(panes(0), PANE)
        grid = column(panes(1), GRID_WIDTH, fluid=True)
        right = column(panes(2), PANE)
        kept = [c for c in (grid, right) if c.children]
        together = widgets.HBox(kept, layout=widgets.Layout(
            flex=f"1 1 {MIN_GRID + PANE + 16}px", flex_flow="row nowrap"))
        row = widgets.HBox([c for c in (left, together) if c.children],
                           layout=widgets.Layout(flex_flow="row wrap"))
        row = self.keyboard.wrap(row)  # the keys act while the pointer is over the pictures
        extra = [p for p in self.panes.values() if p.column is None]
        if not extra:
            return row
        tabs = widgets.Tab(children=[p.widget for p in extra])
        for i, pane in enumerate(extra):
            tabs.set_title(i, pane.title or pane.name)
        self._tabs, self._tab_names = tabs, [p.name for p in extra]
        tabs.observe(self._tab_selected, names="selected_index")
        return widgets.VBox([row, tabs])

    def show_tab(self, name: str) -> None:
        """Bring the analysis tab of pane ``name`` to the front (what clicking its title
        does)."""
        names = getattr(self, "_tab_names", [])
        if name not in names:
            msg = f"no analysis tab {name!r}; the tabs are {', '.join(map(repr, names))}"
            raise InvalidOptionError(msg)
        self._tabs.selected_index = names.index(name)

    def tab_shown(self, name: str) -> bool:
        """Whether pane ``name``'s tab is the one in front (an automatic analysis computes
        only then, so hidden tabs cost nothing while the sliders move)."""
        tabs = getattr(self, "_tabs", None)
        names = getattr(self, "_tab_names", [])
        return tabs is not None and name in names and tabs.selected_index == names.index(name)

    def _tab_selected(self, change: Any) -> None:
        index = change["new"]
        names = getattr(self, "_tab_names", [])
        if index is not None and 0 <= index < len(names):
            self._request_pane(names[index], run=False)

    def _previous_layer(self, _button: Any) -> None:
        self._step_layer(-1)

    def _next_layer(self, _button: Any) -> None:
        self._step_layer(+1)

    def _step_layer(self, step: int) -> None:
        names = list(self._layers)
        index = names.index(self.layer) + step
        if 0 <= index < len(names):
            self.layer = names[index]

    def _uploaded(self, change: Any) -> None:
        files = change["new"]
        if not files:
            return
        try:
            content = files[0]["content"]
            image, notice = _decode_upload(bytes(content), self._images[0].shape)
            self._notices[len(self._images)] = notice
            self.add_image(image)
        except Exception as exc:
            self._show_error(exc)

    # ------------------------------------------------------------------ compatibility names

    @property
    def _grid_canvas(self) -> TileCanvas:
        return self.panes["grid"].canvas  # type: ignore[attr-defined, no-any-return]

    @property
    def _unit_canvas(self) -> TileCanvas:
        return self.panes["unit"].canvas  # type: ignore[attr-defined, no-any-return]

    @property
    def _projection_canvas(self) -> TileCanvas:
        return self.panes["projection"].canvas  # type: ignore[attr-defined, no-any-return]

    @property
    def _input_canvas(self) -> TileCanvas:
        return self.panes["input"].canvas  # type: ignore[attr-defined, no-any-return]

    @property
    def _predictions(self) -> widgets.HTML:
        return self.panes["input"].predictions  # type: ignore[attr-defined, no-any-return]

    @property
    def _notice(self) -> widgets.HTML:
        return self.panes["input"].notice  # type: ignore[attr-defined, no-any-return]

    # ------------------------------------------------------------------ rendering

    def _channels(self) -> int:
        layer = self._layers.get(self.layer)
        return int(layer.channels or 1) if layer is not None else 1

    def _map_size(self, layer: str) -> tuple[int, int]:
        info = self._layers.get(layer)
        shape = info.shape if info is not None else None
        if shape is None or len(shape) != 3:
            return 1, 1
        return int(shape[1]), int(shape[2])

    def _model_input(self, image: torch.Tensor) -> torch.Tensor:
        return self._preprocess(image) if self._preprocess is not None else image

    def _snapshot(self) -> ViewState:
        return ViewState(self.layer, self.unit, self.image_index, self.method, self.position,
                         tuple(self.clicked), self.display, self.contrast,  # type: ignore[arg-type]
                         self.epoch, self.unit_scale, self.weights_note,
                         frozen=self.keyboard.frozen)

    def _maps(self, state: ViewState) -> torch.Tensor:
        """The layer's maps ``(C, ...)`` for the state's image (once per job)."""
        key = (state.layer, state.image_index, state.epoch)
        if self._job_maps is None or self._job_maps[0] != key:
            x = self._model_input(self._images[state.image_index])
            maps = self.probe.activations(x, [state.layer])[state.layer][0]
            self._job_maps = (key, maps)
        return self._job_maps[1]

    def _seed_position(self, state: ViewState) -> Any:
        if state.position != "clicked":
            return state.position
        height, width = self._map_size(state.layer)
        if (height, width) == (1, 1) and len(self._layers[state.layer].shape or ()) != 3:
            return "max"
        return (min(state.clicked[0], height - 1), min(state.clicked[1], width - 1))

    def _highlight_unit(self) -> None:
        grid = self.panes.get("grid")
        if grid is None or self.layer not in self._layers:
            return
        layout = self.grid_layout
        if self.unit < layout.count:
            y, x = layout.origin(self.unit)
            grid.canvas.highlight((x, y, layout.tile, layout.tile))  # type: ignore[attr-defined]

    def _render(self, parts: set[str]) -> None:
        """Recompute the stale panes for a snapshot of the traits (runs on the worker)."""
        worker = self._worker
        if worker is None or worker.closed:
            return
        state = self._snapshot()
        self._job_maps = None
        started = time.perf_counter()
        if "weights" in parts and not self._load_epoch(state.epoch):
            return
        feed = self._camera
        frame = feed.take() if "camera" in parts and feed is not None else None
        if "thumbnails" in parts and isinstance(self.panes.get("input"), InputPane):
            self.panes["input"].draw_thumbnails()  # type: ignore[attr-defined]
        computed = False
        for pane in list(self.panes.values()):
            if worker.closed:
                return
            if pane.name in parts:
                result = pane.compute(state)
                self._results[pane.name] = result
                pane.draw(result, state)
                computed = True
            elif f"draw:{pane.name}" in parts and pane.name in self._results:
                pane.draw(self._results[pane.name], state)
        total = time.perf_counter() - started
        self.timings["total"] = total
        notes = [p.note for p in self.panes.values() if p.note]
        seed = state.position if state.position != "clicked" else f"clicked {state.clicked}"
        epoch = f" · epoch {state.epoch}" if state.epoch >= 0 else ""
        self._status.value = (f"layer <b>{state.layer}</b> · unit <b>{state.unit}</b> · seed "
                              f"{seed}{epoch} · {' · '.join(notes) if computed else 'display only'}"
                              f" · total {1000 * total:.0f} ms")
        if frame is not None and feed is not None:
            feed.done(frame)

    def _load_epoch(self, epoch: int) -> bool:
        """Put the epoch's weights into the dashboard's model copy (on the worker, so no
        forward pass ever sees half-loaded weights); False if that epoch cannot be read."""
        assert self.scrubber is not None and self._model is not None
        if self._loaded_epoch == epoch:
            return True
        weights = self.scrubber.analysis.state_dict(epoch)
        if weights is None:
            why = self.scrubber.analysis.problem(epoch) or "its checkpoint cannot be read"
            self._status.value = (f"<span class='deepvis-error'>epoch {epoch} is unavailable: "
                                  f"{html.escape(str(why))}</span>")
            return False
        with torch.no_grad():
            self._model.load_state_dict(weights)
        self._loaded_epoch = epoch
        self._results.pop("projection", None)
        return True

    def _follow_layer(self) -> None:
        """Let the evolution strip follow the selected layer and unit (plus a few others)."""
        scrubber = self.scrubber
        if scrubber is None or self.layer not in scrubber._channels:
            return
        with scrubber.hold_trait_notifications():
            scrubber.layer = self.layer
            scrubber.units = self._strip_units(self.layer, self.unit)

    def _strip_units(self, layer: str, unit: int) -> list[int]:
        """The selected unit first, then four more spread over the layer."""
        channels = int(self._layers[layer].channels or 1)
        others = [u for u in range(0, channels, max(1, channels // 4)) if u != unit]
        return [unit, *others[:4]]

    def _logit_layer(self) -> str | None:
        """The layer whose units are the classes: the last linear layer with one output per
        class name (None without ``classes``)."""
        if self._classes is None:
            return None
        logits = [n for n, layer in self._layers.items()
                  if layer.kind == "linear" and layer.channels == len(self._classes)]
        return logits[-1] if logits else None

    def _unit_name(self, layer: str, unit: int) -> str:
        """``" (cat)"`` for a unit of the logit layer, else ``""``."""
        if self._classes is None or layer != self._logit_layer():
            return ""
        return f" ({self._classes[unit]})"

    def _rectifiers_below(self, layer: str, image_index: int = 0) -> bool:
        """Whether a ReLU the projection rules replace may lie between the input and ``layer``
        (where it does not, deconvnet, guided backprop and the gradient coincide).

        Read from the probe's rectifier coverage (ReLU calls in call order) against the
        layer's place in :attr:`Probe.layers` (layers in the order their outputs appear). A
        functional ``F.relu`` is a layer of its own there, so its place is known too.
        """
        if self._coverage is None:
            image = self._images[min(image_index, len(self._images) - 1)]
            self._coverage = self.probe.coverage(self._model_input(image))
        coverage = self._coverage
        if coverage.bypassing_modules:
            return True
        order = {info.name: i for i, info in enumerate(self.probe.layers)}
        target = order.get(layer)
        if target is None:
            return True
        for call in coverage.replaced:
            if call.module_call and order.get(call.site, -1) < target:
                return True
        # every functional ReLU call the coverage saw is a functional layer of the probe
        return any(info.functional and order[info.name] < target for info in self.probe.layers)

    def _check_classes(self) -> None:
        """Refuse a ``classes`` list whose length differs from the model's logits."""
        if self._classes is None:
            return
        logits = self.probe.output(self._model_input(self._images[0]))
        if logits.dim() == 2 and logits.shape[1] != len(self._classes):
            msg = (f"classes has {len(self._classes)} names but the model returns "
                   f"{logits.shape[1]} outputs per image; pass one name per output")
            raise InvalidOptionError(msg)

    def _predictions_html(self, index: int) -> str:
        label = self._labels[index]
        truth = ""
        names = self._label_names
        if label is not None and names is not None and 0 <= label < len(names):
            truth = f"true: <b>{names[label]}</b><br>"
        if self._classes is None:
            return truth
        logits = self.probe.output(self._model_input(self._images[index]))
        if logits.dim() != 2 or logits.shape[1] != len(self._classes):
            return truth
        top = logits[0].softmax(0).topk(min(5, len(self._classes)))
        rows = "".join(
            f"<tr><td>{self._classes[i]}</td><td style='text-align:right'>{p:.1%}</td></tr>"
            for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        )
        return f"{truth}<table>{rows}</table>"

    def _show_error(self, exc: BaseException) -> None:
        if not self._closed:
            report_error(self._errors, exc, self._status)


def _rgb(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` as an RGB tuple."""
    value = color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def _one_of(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        msg = f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        raise TraitError(msg)
    return str(value)


def _load_index(index: Any) -> Any:
    """A TopKIndex (or ``{epoch: TopKIndex}``) from what the user passed, paths loaded."""
    from ..core.index import TopKIndex

    if index is None or isinstance(index, TopKIndex):
        return index
    if isinstance(index, dict):
        return {epoch: _load_index(value) for epoch, value in index.items()}
    if isinstance(index, (str, Path)):
        return TopKIndex.load(index)
    msg = (f"index must be a TopKIndex, a path to one, or a dict of epoch to TopKIndex, got "
           f"{type(index).__name__}")
    raise InvalidOptionError(msg)


def _check_count(name: str, value: object) -> None:
    """A positive int option (max_images, probe_size)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        msg = f"{name} must be a positive int, got {value!r}"
        raise InvalidOptionError(msg)


def _as_image(item: Any, where: str) -> torch.Tensor:
    """One displayable image ``(C, H, W)`` as float32 in 0..1 on the CPU.

    ``uint8`` (0..255) is divided by 255, like torchvision's ``ToTensor``; other integer or
    boolean types are refused rather than fed to the model as 0..255 floats.
    """
    if isinstance(item, np.ndarray):
        if item.dtype.kind not in "fu":
            msg = f"{where} has dtype {item.dtype}; images are float (0..1) or uint8 (0..255)"
            raise InvalidInputError(msg)
        item = torch.from_numpy(np.ascontiguousarray(item))
    if not isinstance(item, torch.Tensor):
        msg = (f"{where} must be a (C, H, W) tensor or array, got {type(item).__name__}; "
               "convert PIL images with torchvision.transforms.functional.to_tensor")
        raise InvalidInputError(msg)
    if item.dim() != 3:
        msg = f"{where} must be one image (C, H, W), got shape {tuple(item.shape)}"
        raise InvalidInputError(msg)
    if item.dtype == torch.uint8:
        return item.detach().cpu().float() / 255
    if not item.is_floating_point():
        msg = f"{where} has dtype {item.dtype}; images are float (0..1) or uint8 (0..255)"
        raise InvalidInputError(msg)
    return item.detach().float().cpu()


def _collect_images(images: Any, limit: int) -> tuple[list[torch.Tensor], list[int | None]]:
    """Images ``(C, H, W)`` (and labels, when a data set gives them) from what the user passed."""
    out: list[torch.Tensor] = []
    labels: list[int | None] = []
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images)) if images.dtype.kind in "fu" \
            else images
    if isinstance(images, torch.Tensor):
        batch = images[None] if images.dim() == 3 else images
        if batch.dim() != 4:
            msg = f"images must be (N, C, H, W) or (C, H, W), got shape {tuple(images.shape)}"
            raise InvalidInputError(msg)
        out = [_as_image(img, f"images[{i}]") for i, img in enumerate(batch[:limit])]
        labels = [None] * len(out)
    else:
        try:
            count = min(limit, len(images))
        except TypeError as exc:
            msg = (f"images must be a tensor, a sequence of tensors or a data set, got "
                   f"{type(images).__name__}")
            raise InvalidInputError(msg) from exc
        for i in range(count):
            item = images[i]
            label = None
            if isinstance(item, (tuple, list)):
                item, label = item[0], (int(item[1]) if len(item) > 1 else None)
            out.append(_as_image(item, f"images[{i}]"))
            labels.append(label)
    if not out:
        msg = "images is empty: pass at least one image"
        raise InvalidInputError(msg)
    return out, labels


def _decode_upload(content: bytes, shape: torch.Size,
                   source: str = "upload") -> tuple[torch.Tensor, str]:
    """An uploaded file as an image tensor shaped like the others, and a one-line notice.

    Like torchvision's ``Resize`` + ``CenterCrop``: the picture is scaled (bilinear) until it
    covers the model's ``H x W`` with its short side, and the overhang is cut off evenly on
    both sides, so shapes keep their proportions (a circle stays round). The notice says what
    was done, short enough for one line of the input column; the details are in its tooltip.
    ``source`` names where the picture came from ("upload", "camera") in the notice.
    """
    channels, height, width = shape
    try:
        picture = Image.open(io.BytesIO(content))
        picture.load()
    except Exception as exc:
        what = "the uploaded file" if source == "upload" else f"the {source} frame"
        msg = f"{what} is not an image PIL can read (PNG, JPEG, ...)"
        raise InvalidOptionError(msg) from exc
    details = []
    mode = "L" if channels == 1 else "RGB"
    if picture.mode != mode:
        details.append(f"converted from {picture.mode} to {mode}")
        picture = picture.convert(mode)
    w0, h0 = picture.size
    line = f"{source} {w0}×{h0}, as is"
    if (w0, h0) != (width, height):
        # the side that must match exactly; the other one is at least as long as needed
        if w0 * height >= h0 * width:
            scaled = (max(width, int(height * w0 / h0)), height)
        else:
            scaled = (width, max(height, int(width * h0 / w0)))
        if scaled != (w0, h0):
            picture = picture.resize(scaled, Image.BILINEAR)
            details.append(f"resized from {w0}×{h0} to {scaled[0]}×{scaled[1]} (short side)")
        left = round((scaled[0] - width) / 2.0)
        top = round((scaled[1] - height) / 2.0)
        cropped = scaled != (width, height)
        if cropped:
            picture = picture.crop((left, top, left + width, top + height))
            details.append(f"centre-cropped to {width}×{height}")
        line = f"{source} {w0}×{h0} → {width}×{height}" + (", centre crop" if cropped else "")
    array = np.asarray(picture, dtype=np.float32) / 255
    tensor = torch.from_numpy(array.reshape(height, width, -1)).permute(2, 0, 1).contiguous()
    title = ("uploaded image " if source == "upload" else f"{source} image ") + (
        "(" + "; ".join(details) + ")" if details else "as is")
    notice = (f"<div class='deepvis-notice' title='{html.escape(title, quote=True)}'>"
              f"{html.escape(line)}</div>")
    return tensor, notice
