"""A canvas that shows one RGBA frame, an overlay for highlights, and reports clicks.

The canvas is a sink: a frame is built in NumPy, sent with one ``put_image_data`` (RGBA, so
ipycanvas sends lossless PNG rather than JPEG), and kept in Python so it can be sent again to
every new view (``on_client_ready``: Voila, a re-opened notebook). A highlight lives on its own
layer, so moving it never re-sends the picture.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import ipywidgets as widgets
import numpy as np
import numpy.typing as npt
from ipycanvas import MultiCanvas

__all__ = ["TileCanvas"]

# ipycanvas sends every draw command through one shared manager that remembers which canvas
# the previous command was for; views draw from their render worker and from kernel events
# (clicks, new clients), so each run of commands for one canvas holds this lock.
_DRAW_LOCK = threading.RLock()


class TileCanvas(MultiCanvas):
    """Two layers: 0 shows the frame, 1 the highlight rectangle.

    Parameters
    ----------
    width, height : int
        Initial size in pixels (the canvas takes each frame's size).
    css_class : str
        Added to the widget, so tests and styles can find it.
    fluid : bool
        False: shown at its pixel size. True: shown at most at its pixel size, narrower when
        its column is (scaled uniformly, crisp pixels; clicks still map to canvas pixels), so
        a layout can stay side by side in a narrow notebook.
    """

    def __init__(self, width: int, height: int, css_class: str = "",
                 fluid: bool = False) -> None:
        self.fluid = fluid
        super().__init__(2, width=width, height=height,
                         layout=widgets.Layout(**self._css_size(width, height)))
        if css_class:
            self.add_class(css_class)
        if fluid:
            self.add_class("deepvis-fluid")
        self.frame: npt.NDArray[np.uint8] | None = None
        self.highlight_box: tuple[int, int, int, int] | None = None
        self.highlight_color = "#ffcc00"
        self.sent_frames = 0
        self[0].on_client_ready(self._redraw_frame)
        self[1].on_client_ready(self._redraw_highlight)

    def show(self, rgba: npt.NDArray[np.uint8]) -> None:
        """Display ``rgba`` ``(H, W, 4)`` uint8, resizing the canvas to fit it."""
        if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
            msg = f"frames are (H, W, 4) uint8 RGBA, got {rgba.shape} {rgba.dtype}"
            raise ValueError(msg)
        height, width = rgba.shape[:2]
        if (self.width, self.height) != (width, height):
            with self.hold_sync():
                self.width, self.height = width, height
                for name, value in self._css_size(width, height).items():
                    setattr(self.layout, name, value)
        self.frame = np.ascontiguousarray(rgba)
        self._redraw_frame()
        self._redraw_highlight()

    def _css_size(self, width: int, height: int) -> dict[str, str]:
        """The layout's CSS size for a ``width`` x ``height`` px frame."""
        if self.fluid:  # the canvas keeps its aspect ratio with height auto
            return {"width": "100%", "height": "auto", "max_width": f"{width}px"}
        return {"width": f"{width}px", "height": f"{height}px"}

    def highlight(self, box: tuple[int, int, int, int] | None) -> None:
        """Outline ``(x, y, width, height)`` on the overlay (a 2 px ring just inside the box, so
        boxes at the canvas edge keep all four sides), or clear it with None."""
        self.highlight_box = box
        self._redraw_highlight()

    def on_click(self, callback: Callable[[float, float], None]) -> None:
        """Call ``callback(x, y)`` (canvas pixels) on every mouse press."""
        self.on_mouse_down(callback)

    @property
    def closed(self) -> bool:
        """True once the canvas (or one of its layers) was closed: drawing does nothing."""
        return self.comm is None or any(layer.comm is None for layer in self._canvases)

    def _redraw_frame(self) -> None:
        if self.frame is not None and not self.closed:
            with _DRAW_LOCK:
                if (self.frame[..., 3] < 255).any():
                    # the browser draws the frame over what is there (ipycanvas decodes it to
                    # an image and drawImage()s it): clear first, or the old picture shows
                    # through the new one's transparent pixels
                    self[0].clear()
                self[0].put_image_data(self.frame, 0, 0)
                self.sent_frames += 1

    def _redraw_highlight(self) -> None:
        if self.closed:
            return
        overlay = self[1]
        with _DRAW_LOCK:
            overlay.clear()
            if self.highlight_box is not None:
                x, y, w, h = self.highlight_box
                overlay.stroke_style = self.highlight_color
                overlay.line_width = 2
                overlay.stroke_rect(x + 1, y + 1, w - 2, h - 2)  # inside: never clipped

    def __repr__(self) -> str:
        shape = None if self.frame is None else self.frame.shape
        return f"TileCanvas(frame={shape}, highlight={self.highlight_box})"
