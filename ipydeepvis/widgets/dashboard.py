"""The DeepVis dashboard: Yosinski et al.'s deep-visualization toolbox in a notebook.

What every unit of a layer does with the current image (a grid of activation maps), the selected
unit enlarged, and its projection back to pixels (deconvnet / guided backprop / gradient),
for any PyTorch model. The view holds state in traits and draws frames; every number comes from
:class:`~ipydeepvis.core.Probe` and every picture from :mod:`ipydeepvis.render`.
"""

from __future__ import annotations

import copy
import io
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
from ..core import METHODS, Probe
from ..core.checkpoints import CheckpointSeries
from ..errors import InvalidInputError, InvalidOptionError
from ._base import LatestWins, close_inner, report_error
from .epochs import EpochScrubber
from .tiles import TileCanvas

__all__ = ["DeepVis"]

POSITIONS = ("max", "all", "clicked")
PANE = 192  # px of the input, enlarged-unit and projection panes
GRID_WIDTH = 480


class DeepVis(widgets.VBox):
    """Explore a model's layers and units on a set of images.

    Parameters
    ----------
    model : nn.Module
        Any image model; it is never modified (weights, mode, hooks stay as they are).
    images : Tensor, sequence of Tensors, or Dataset
        Images ``(C, H, W)`` with values in 0..1 (a batch ``(N, C, H, W)`` works too; from a
        data set yielding ``(image, label)`` the first ``max_images`` are taken).
    checkpoints : CheckpointSeries or path, optional
        A training run's saved epochs: adds the epoch scrubber (Play, slider, evolution strip,
        curves) and makes the whole dashboard follow the chosen epoch. The dashboard then works
        on its own copy of ``model``; yours is never loaded into.
    classes : sequence of str, optional
        Class names; with a classifier's logits they give the top-5 predictions.
    preprocess : callable, optional
        Applied to an image before the model sees it (e.g. ``transforms.Normalize``); images
        themselves stay displayable.
    max_images : int
        How many images of ``images`` the picker offers.
    probe_size : int
        With ``checkpoints``: how many images of ``images`` the evolution strip scans per epoch.
    threaded : bool
        Compute in a background thread where the newest request wins (default). False computes
        inside each event, which scripts and tests may prefer.
    """

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
    contrast = Float(1.0, help="Projection contrast (gain before clipping)").tag(sync=True)
    epoch = Int(-1, help="Saved epoch whose weights are shown (-1: the model as given)").tag(
        sync=True)

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
    ) -> None:
        super().__init__()
        self._ready = False
        self._images, self._labels = _collect_images(images, max_images)
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
        self._model = model
        self.probe = Probe(model, input_shape=tuple(self._model_input(self._images[0]).shape))
        self._layers = {
            layer.name: layer for layer in self.probe.layers
            if layer.shape is not None and len(layer.shape) in (1, 3)
        }
        if not self._layers:
            msg = "the model has no layer with (C, H, W) or (F,) outputs to show"
            raise InvalidInputError(msg)
        convs = [n for n, layer in self._layers.items() if layer.kind == "conv"]
        start_layer = convs[-1] if convs else next(iter(self._layers))
        self.scrubber: EpochScrubber | None = None
        if series is not None:
            self.scrubber = EpochScrubber(series, images, layer=start_layer,
                                          units=self._strip_units(start_layer, 0),
                                          probe_size=probe_size, threaded=threaded)
        self._projection: tuple[tuple[Any, ...], torch.Tensor] | None = None
        self._notices: dict[int, str] = {}  # image index -> what an upload changed
        self.timings: dict[str, float] = {}
        self._worker = LatestWins(self._render, self._show_error, threaded=threaded)
        self._build_panes()
        self._build_controls()
        self.layer = start_layer
        self.children = [self._controls, self._panes, self._status, self._errors]
        if self.scrubber is not None:
            self.children = [*self.children, self.scrubber]
            widgets.link((self.scrubber, "epoch"), (self, "epoch"))
            self._follow_layer()
        self.add_class("deepvis")
        self._ready = True
        first = ("weights",) if self.scrubber is not None else ()
        self._request(*first, "thumbnails", "image", "grid", "unit", "projection")

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
        value = int(proposal["value"])
        channels = self._channels()
        if not 0 <= value < channels:
            msg = f"unit {value} is out of range for layer {self.layer!r}: 0..{channels - 1}"
            raise TraitError(msg)
        return value

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

    @validate("display")
    def _check_display(self, proposal: Any) -> str:
        return _one_of("display", proposal["value"], render.DISPLAY_MODES)

    @observe("layer")
    def _layer_changed(self, change: Any) -> None:
        channels = self._channels()
        with self.hold_sync():
            if self.unit >= channels:
                self.unit = channels - 1
            self._unit_slider.max = channels - 1
        self._highlight_unit()
        self._request("grid", "unit", "projection")
        self._follow_layer()

    @observe("unit")
    def _unit_changed(self, change: Any) -> None:
        self._highlight_unit()
        self._request("unit", "projection")
        self._follow_layer()

    @observe("epoch")
    def _epoch_changed(self, change: Any) -> None:
        if self.scrubber is not None and self.epoch >= 0:
            self._request("weights", "image", "grid", "unit", "projection")

    def _load_epoch(self) -> bool:
        """Put the current epoch's weights into the dashboard's model copy (on the worker, so
        no forward pass ever sees half-loaded weights); False if that epoch cannot be read."""
        assert self.scrubber is not None
        weights = self.scrubber.model(self.epoch)
        if weights is None:
            self._status.value = (f"<span style='color:#b00'>epoch {self.epoch} is unavailable"
                                  "</span>")
            return False
        with torch.no_grad():
            self._model.load_state_dict(weights.state_dict())
        self._projection = None
        return True

    def _follow_layer(self) -> None:
        """Let the evolution strip follow the selected layer and unit (plus a few others)."""
        if self.scrubber is None or self.layer not in self.scrubber._channels:
            return
        with self.scrubber.hold_trait_notifications():
            self.scrubber.layer = self.layer
            self.scrubber.units = self._strip_units(self.layer, self.unit)

    def _strip_units(self, layer: str, unit: int) -> list[int]:
        """The selected unit first, then four more spread over the layer."""
        channels = int(self._layers[layer].channels or 1)
        others = [u for u in range(0, channels, max(1, channels // 4)) if u != unit]
        return [unit, *others[:4]]

    @observe("image_index")
    def _image_changed(self, change: Any) -> None:
        self._request("image", "grid", "unit", "projection")

    @observe("method", "position", "clicked")
    def _seed_changed(self, change: Any) -> None:
        self._request("projection")

    @observe("display", "contrast")
    def _display_changed(self, change: Any) -> None:
        self._request("picture")

    def _request(self, *parts: str) -> None:
        """Ask the render worker to bring ``parts`` up to date (once construction is done)."""
        if self._ready:
            self._worker.request(*parts)

    # ------------------------------------------------------------------ public helpers

    def wait(self, timeout: float = 300.0) -> bool:
        """Block until every requested frame is drawn (for scripts and tests)."""
        done = self._worker.wait(timeout)
        if self.scrubber is not None:
            done = self.scrubber.wait(timeout) and done
        return done

    def close(self) -> None:
        """Stop the render workers and close the widget and every widget inside it (nothing
        registered with ipywidgets keeps the model alive afterwards)."""
        self._worker.close()
        if self.scrubber is not None:
            self.scrubber.close()
        close_inner(self)
        super().close()

    def save_png(self, path: str | Path) -> Path:
        """Save the current view (input, grid, enlarged unit, projection) as one PNG."""
        self.wait()
        frames = [c.frame for c in (self._input_canvas, self._grid_canvas, self._unit_canvas,
                                     self._projection_canvas)]
        shown = [f for f in frames if f is not None]
        height = max(f.shape[0] for f in shown)
        pad = 8
        width = sum(f.shape[1] for f in shown) + pad * (len(shown) - 1)
        sheet = np.full((height, width, 4), 255, dtype=np.uint8)
        x = 0
        for frame in shown:
            sheet[:frame.shape[0], x:x + frame.shape[1]] = frame
            x += frame.shape[1] + pad
        path = Path(path)
        Image.fromarray(sheet, "RGBA").save(path)
        return path

    @property
    def frames(self) -> dict[str, npt.NDArray[np.uint8] | None]:
        """The RGBA frames on the canvases now: input, thumbnails, grid, unit, projection."""
        return {
            "input": self._input_canvas.frame,
            "thumbnails": self._thumbs_canvas.frame,
            "grid": self._grid_canvas.frame,
            "unit": self._unit_canvas.frame,
            "projection": self._projection_canvas.frame,
        }

    @property
    def grid_layout(self) -> render.GridLayout:
        """Where each unit's tile is in the grid frame (for clicks and tests)."""
        return render.grid_layout(self._channels(), GRID_WIDTH)

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

    def add_image(self, image: torch.Tensor) -> int:
        """Append an image ``(C, H, W)`` in 0..1 and show it; returns its index."""
        self._images.append(image)
        self._labels.append(None)
        self._request("thumbnails")
        self.image_index = len(self._images) - 1
        return self.image_index

    def __repr__(self) -> str:
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
        self._display_picker = widgets.Dropdown(options=list(render.DISPLAY_MODES),
                                                description="display",
                                                layout=widgets.Layout(width="200px"))
        self._contrast_slider = widgets.FloatLogSlider(1.0, base=2, min=-3, max=4, step=0.25,
                                                       description="contrast",
                                                       continuous_update=False)
        widgets.link((self._layer_picker, "value"), (self, "layer"))
        widgets.link((self._unit_slider, "value"), (self, "unit"))
        widgets.link((self._method_buttons, "value"), (self, "method"))
        widgets.link((self._position_buttons, "value"), (self, "position"))
        widgets.link((self._display_picker, "value"), (self, "display"))
        widgets.link((self._contrast_slider, "value"), (self, "contrast"))
        self._prev.on_click(lambda _b: self._step_layer(-1))
        self._next.on_click(lambda _b: self._step_layer(+1))
        self._controls = widgets.VBox([
            widgets.HBox([self._layer_picker, self._prev, self._next, self._unit_slider]),
            widgets.HBox([self._method_buttons, self._position_buttons]),
            widgets.HBox([self._display_picker, self._contrast_slider]),
        ])

    def _build_panes(self) -> None:
        self._input_canvas = TileCanvas(PANE, PANE, "e2e-input")
        self._thumbs_canvas = TileCanvas(PANE, 32, "e2e-thumbs")
        self._thumbs_canvas.on_click(self._click_thumbnail)
        column = widgets.Layout(width=f"{PANE}px")
        self._upload = widgets.FileUpload(accept="image/*", multiple=False,
                                          description="your image")
        self._upload.add_class("e2e-upload")
        self._upload.observe(self._uploaded, names="value")
        self._notice = widgets.HTML(layout=column)
        self._notice.add_class("e2e-notice")
        self._predictions = widgets.HTML(layout=column)
        self._predictions.add_class("e2e-predictions")
        self._grid_canvas = TileCanvas(GRID_WIDTH, GRID_WIDTH, "e2e-grid")
        self._grid_canvas.on_click(self.click_grid)
        self._grid_label = widgets.HTML()
        self._grid_label.add_class("e2e-grid-label")
        self._unit_canvas = TileCanvas(PANE, PANE, "e2e-unitmap")
        self._unit_canvas.on_click(self.click_unit_map)
        self._projection_canvas = TileCanvas(PANE, PANE, "e2e-projection")
        self._status = widgets.HTML()
        self._status.add_class("e2e-status")
        self._errors = widgets.Output()
        self._errors.add_class("e2e-errors")
        title = widgets.HTML

        def pane(children: list[widgets.Widget], width: int) -> widgets.VBox:
            """A column of fixed width: long text wraps instead of pushing the others."""
            return widgets.VBox(children, layout=widgets.Layout(
                width=f"{width + 8}px", min_width=f"{width + 8}px", overflow="hidden"))

        self._panes = widgets.HBox([
            pane([title("<b>input</b>"), self._input_canvas, self._thumbs_canvas,
                  self._upload, self._notice, self._predictions], PANE),
            pane([title("<b>activations</b> (click a unit)"), self._grid_canvas,
                  self._grid_label], GRID_WIDTH),
            pane([title("<b>selected unit</b> (click to seed)"), self._unit_canvas,
                  title("<b>projection</b>"), self._projection_canvas], PANE),
        ], layout=widgets.Layout(flex_flow="row wrap"))

    def _step_layer(self, step: int) -> None:
        names = list(self._layers)
        index = names.index(self.layer) + step
        if 0 <= index < len(names):
            self.layer = names[index]

    def _click_thumbnail(self, x: float, y: float) -> None:
        layout = self._thumb_layout()
        index = layout.unit_at(x, y)
        if index is not None:
            self.image_index = index

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

    # ------------------------------------------------------------------ rendering

    def _channels(self) -> int:
        layer = self._layers.get(self.layer)
        return int(layer.channels or 1) if layer is not None else 1

    def _model_input(self, image: torch.Tensor) -> torch.Tensor:
        return self._preprocess(image) if self._preprocess is not None else image

    def _thumb_layout(self) -> render.GridLayout:
        return render.GridLayout(len(self._images), max(1, PANE // 33), 32, 1)

    def _highlight_unit(self) -> None:
        layout = self.grid_layout
        if self.unit < layout.count:
            y, x = layout.origin(self.unit)
            self._grid_canvas.highlight((x, y, layout.tile, layout.tile))

    def _render(self, parts: set[str]) -> None:
        """Recompute the stale parts for the current traits (runs on the worker)."""
        if "thumbnails" in parts or self._thumbs_canvas.frame is None:
            self._draw_thumbnails()
        if "weights" in parts and not self._load_epoch():
            return
        layer, unit, index = self.layer, self.unit, self.image_index
        image = self._images[index]
        x = self._model_input(image)
        started = time.perf_counter()
        notes = []
        if "image" in parts:
            self._notice.value = self._notices.get(index, "")
            self._input_canvas.show(render.to_rgba(render.resize_nearest(
                render.image_to_uint8(image), PANE, PANE)))
            self._thumbs_canvas.highlight(self._thumb_box(index))
            self._predictions.value = self._predictions_html(x, index)
        maps = self.probe.activations(x, [layer])[layer][0]
        if "grid" in parts:
            t0 = time.perf_counter()
            self._grid_canvas.show(render.activation_grid_rgba(maps, self.grid_layout))
            self._highlight_unit()
            self.timings["grid"] = time.perf_counter() - t0
        if "unit" in parts or "grid" in parts:
            unit_map = maps[unit]
            top = float(maps.clamp(min=0).max())
            self._unit_canvas.show(render.unit_map_rgba(unit_map, PANE, top))
            peak = float(unit_map.max())
            where = divmod(int(unit_map.flatten().argmax()), unit_map.shape[-1]) \
                if unit_map.dim() == 2 else ()
            self._grid_label.value = (f"unit <b>{unit}</b> of {maps.shape[0]}: "
                                      f"max {peak:.3g} at {tuple(where)}")
        if parts & {"projection", "unit", "grid", "image"}:
            t0 = time.perf_counter()
            self._project(x, layer, unit)
            self.timings["project"] = time.perf_counter() - t0
            notes.append(f"{self.method} {1000 * self.timings['project']:.0f} ms")
            parts.add("picture")
        if "picture" in parts and self._projection is not None:
            t0 = time.perf_counter()
            picture = render.projection_picture(self._projection[1][0], self.display,
                                                self.contrast)
            self._projection_canvas.show(render.to_rgba(render.resize_nearest(
                picture, PANE, PANE)))
            self.timings["picture"] = time.perf_counter() - t0
        total = time.perf_counter() - started
        self.timings["total"] = total
        seed = self.position if self.position != "clicked" else f"clicked {self.clicked}"
        self._status.value = (f"layer <b>{layer}</b> · unit <b>{unit}</b> · seed {seed} · "
                              f"{', '.join(notes) or 'display only'} · total "
                              f"{1000 * total:.0f} ms")

    def _project(self, x: torch.Tensor, layer: str, unit: int) -> torch.Tensor:
        position: Any = self.position
        if position == "clicked":
            shape = self._layers[layer].shape or ()
            if len(shape) == 3:
                position = (min(self.clicked[0], shape[1] - 1), min(self.clicked[1], shape[2] - 1))
            else:
                position = "max"
        key = (self.image_index, self.epoch, layer, unit, self.method, position)
        if self._projection is None or self._projection[0] != key:
            projection = self.probe.project(x, layer, unit, method=self.method,
                                            position=position)
            self._projection = (key, projection)
        return self._projection[1]

    def _predictions_html(self, x: torch.Tensor, index: int) -> str:
        label = self._labels[index]
        truth = ""
        names = self._label_names
        if label is not None and names is not None and 0 <= label < len(names):
            truth = f"true: <b>{names[label]}</b><br>"
        if self._classes is None:
            return truth
        logits = self.probe.output(x)
        if logits.dim() != 2 or logits.shape[1] != len(self._classes):
            return truth
        top = logits[0].softmax(0).topk(min(5, len(self._classes)))
        rows = "".join(
            f"<tr><td>{self._classes[i]}</td><td style='text-align:right'>{p:.1%}</td></tr>"
            for p, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        )
        return f"{truth}<table>{rows}</table>"

    def _draw_thumbnails(self) -> None:
        layout = self._thumb_layout()
        tiles = np.stack([render.resize_nearest(render.image_to_uint8(img), 32, 32)
                          for img in self._images])
        height, width = layout.size
        sheet = np.full((height, max(width, 1), 3), 255, dtype=np.uint8)
        for k in range(layout.count):
            y, x = layout.origin(k)
            sheet[y:y + 32, x:x + 32] = tiles[k]
        self._thumbs_canvas.show(render.to_rgba(sheet))
        self._thumbs_canvas.highlight(self._thumb_box(self.image_index))

    def _thumb_box(self, index: int) -> tuple[int, int, int, int]:
        y, x = self._thumb_layout().origin(index)
        return (x, y, 32, 32)

    def _show_error(self, exc: BaseException) -> None:
        report_error(self._errors, exc, self._status)


def _one_of(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        msg = f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        raise TraitError(msg)
    return str(value)


def _collect_images(images: Any, limit: int) -> tuple[list[torch.Tensor], list[int | None]]:
    """Images ``(C, H, W)`` (and labels, when a data set gives them) from what the user passed."""
    out: list[torch.Tensor] = []
    labels: list[int | None] = []
    if isinstance(images, torch.Tensor):
        batch = images[None] if images.dim() == 3 else images
        if batch.dim() != 4:
            msg = f"images must be (N, C, H, W) or (C, H, W), got shape {tuple(images.shape)}"
            raise InvalidInputError(msg)
        out = list(batch[:limit])
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
            if not isinstance(item, torch.Tensor) or item.dim() != 3:
                msg = (f"images[{i}] must be a (C, H, W) tensor, got "
                       f"{getattr(item, 'shape', type(item).__name__)}")
                raise InvalidInputError(msg)
            out.append(item)
            labels.append(label)
    if not out:
        msg = "images is empty: pass at least one image"
        raise InvalidInputError(msg)
    return [img.detach().float().cpu() for img in out], labels


def _decode_upload(content: bytes, shape: torch.Size) -> tuple[torch.Tensor, str]:
    """An uploaded file as an image tensor shaped like the others, and a notice of what changed."""
    channels, height, width = shape
    try:
        picture = Image.open(io.BytesIO(content))
        picture.load()
    except Exception as exc:
        msg = "the uploaded file is not an image PIL can read (PNG, JPEG, ...)"
        raise InvalidOptionError(msg) from exc
    notices = []
    mode = "L" if channels == 1 else "RGB"
    if picture.mode != mode:
        notices.append(f"converted from {picture.mode} to {mode}")
        picture = picture.convert(mode)
    if picture.size != (width, height):
        notices.append(f"resized from {picture.size[0]}x{picture.size[1]} to {width}x{height}")
        picture = picture.resize((width, height), Image.BILINEAR)
    array = np.asarray(picture, dtype=np.float32) / 255
    tensor = torch.from_numpy(array.reshape(height, width, -1)).permute(2, 0, 1).contiguous()
    notice = "uploaded image " + ("(" + "; ".join(notices) + ")" if notices else "as is")
    return tensor, notice
