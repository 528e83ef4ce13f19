"""The projection cropped to the unit's receptive field, with the input patch beside it.

Zeiler & Fergus (Fig. 2) and the deepvis toolbox show a unit's projection over the input region
the unit can see, next to the image patch under the same box; drawn over the whole image, a
conv1 projection is a 7 px speck in a grey square. :class:`FieldCrop` is that part of the
projection pane: it measures the field of the projection's seed on the render worker
(:meth:`~ipydeepvis.core.receptive.ReceptiveField.seed_box`, measured on the model's own graph
and cached per layer and position), draws the two crops side by side, and outlines the field on
the input pane. Whether to crop is the dashboard's ``crop`` trait: a display-only change.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .. import render
from ..core.receptive import Box, ReceptiveField
from ..errors import UnsupportedModelError
from .tiles import TileCanvas

if TYPE_CHECKING:
    from .dashboard import DeepVis
    from .panes import ViewState

__all__ = ["CROP", "FIELD_COLOR", "FieldCrop", "scale_box"]

CROP = 94  # px of the cropped projection and of the patch, side by side in the 192 px column
FIELD_COLOR = "#00e5ff"  # the field's outline on the input: the seed marker's colour


class FieldCrop:
    """The receptive-field crop of one dashboard's projection pane.

    ``patch`` is the canvas of the input patch (hidden while no crop is shown); the projection
    canvas itself stays the pane's.
    """

    def __init__(self, view: DeepVis) -> None:
        self.view = view
        self.patch = TileCanvas(CROP, CROP, "e2e-patch")
        self.patch.layout.display = "none"
        self._fields: ReceptiveField | None = None
        self.box: Box | None = None  # the field shown now (None: not cropped)

    def measure(self, state: ViewState, position: Any) -> Box | None:
        """The receptive field of the projection's seed at ``position`` (``"max"``, ``"all"``
        or ``(row, col)``) in the model's input; None for a layer without one. Runs on the
        render worker; the fields are cached per (layer, position)."""
        started = time.perf_counter()
        view = self.view
        shape = tuple(view._model_input(view._images[state.image_index]).shape)
        if self._fields is None or self._fields.input_shape != shape:
            self._fields = ReceptiveField(view.probe, shape)
        unit_map = view._maps(state)[state.unit]
        try:
            box = self._fields.seed_box(state.layer, unit_map, position)
        except UnsupportedModelError:  # the layer does not depend on the input
            box = None
        view.timings["field"] = time.perf_counter() - started
        return box

    def frames(self, picture: npt.NDArray[np.uint8], state: ViewState,
               box: Box) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """The projection picture ``(H, W, 3)`` (model input size) and the input image, both
        cropped to ``box`` and enlarged to ``CROP`` px squares (see
        :func:`~ipydeepvis.render.field_picture`)."""
        image = render.image_to_uint8(self.view._images[state.image_index])
        patch_box = scale_box(box, picture.shape[:2], image.shape[:2])
        return (render.field_picture(picture, box, CROP),
                render.field_picture(image, patch_box, CROP))

    def show(self, patch: npt.NDArray[np.uint8] | None, box: Box | None,
             state: ViewState) -> None:
        """Show ``patch`` beside the projection and outline ``box`` on the input pane (``patch``
        None: no crop, the patch hidden and no outline)."""
        self.box = box if patch is not None else None
        if patch is None:
            self.patch.layout.display = "none"
        else:
            if self.patch.frame is None or not np.array_equal(self.patch.frame, patch):
                self.patch.show(patch)  # another method or display re-sends no patch
            self.patch.layout.display = None
        self.outline(state)

    def outline(self, state: ViewState) -> None:
        """Outline the shown field on the input pane's canvas (enlarged to a square of the
        canvas's size); a field covering the whole image has nothing to outline."""
        canvas = getattr(self.view.panes.get("input"), "canvas", None)
        if not isinstance(canvas, TileCanvas):
            return
        ring = None
        box, model_size = self.box, self.model_size(state)
        if box is not None and (box.height, box.width) != model_size:
            image = self.view._images[state.image_index]
            shown = (int(image.shape[1]), int(image.shape[2]))
            ring = render.field_box(scale_box(box, model_size, shown), shown, int(canvas.height))
        canvas.highlight_color = FIELD_COLOR
        canvas.highlight(ring)

    def model_size(self, state: ViewState) -> tuple[int, int]:
        """``(H, W)`` of the model's input for the state's image."""
        view = self.view
        shape = view._model_input(view._images[state.image_index]).shape
        return int(shape[-2]), int(shape[-1])

    def caption(self, state: ViewState) -> str:
        """The shown field in words ('' when not cropped)."""
        box, model_size = self.box, self.model_size(state)
        if box is None:
            return ""
        if (box.height, box.width) == model_size:
            return "receptive field: the whole image"
        return (f"receptive field: rows {box.top}..{box.bottom - 1}, columns "
                f"{box.left}..{box.right - 1} of {model_size[0]}x{model_size[1]}")

    def release(self) -> None:
        """Forget the measured fields and the recorded surrogate pass (on close)."""
        self._fields = None

    def frame(self) -> npt.NDArray[np.uint8] | None:
        """The patch frame when it is shown, else None."""
        return self.patch.frame if self.box is not None else None


def scale_box(box: Box, size: tuple[int, int], to: tuple[int, int]) -> Box:
    """``box`` of a ``size`` ``(H, W)`` picture on a ``to`` ``(H, W)`` picture of the same
    scene (the model's input may be resized from the shown image): the smallest box covering
    the same area, itself when the sizes agree."""
    if size == to:
        return box
    (h0, w0), (h1, w1) = size, to
    return Box(box.top * h1 // h0, box.left * w1 // w0, -(-box.bottom * h1 // h0),
               -(-box.right * w1 // w0))
