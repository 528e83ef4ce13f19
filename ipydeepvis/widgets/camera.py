"""The browser's camera as an image source: a small anywidget and its feed into DeepVis.

ipywebrtc (the widget library for cameras) last shipped in 2021 and its JupyterLab extension
asks for ``@jupyter-widgets/base`` 1 to 4; ipywidgets 8 brings version 6, so it does not load
in JupyterLab 4 (maartenbreddels/ipywebrtc#134). :class:`CameraView` is therefore written for
anywidget, the maintained way to write a widget without a JS build: ``camera.js`` asks for the
camera (``getUserMedia``), shows it, and sends a JPEG (or PNG) of the picture every ``1/fps``
seconds to the kernel as a custom message with one binary buffer, unless ``max_in_flight``
frames are still on their way (then the dashboard is slower than the camera, and would drop
the frame anyway).

:class:`CameraFeed` puts those frames into a :class:`~ipydeepvis.widgets.DeepVis`: the first
one becomes a new image (like an upload), every later one replaces it. A frame only marks the
panes stale; the dashboard's :class:`~ipydeepvis.widgets._base.LatestWins` worker decodes the
newest frame when it starts a job, so frames that arrive while it is busy are dropped, never
queued.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
from traitlets import Bool, Float, Int, TraitError, Unicode, validate

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from .dashboard import DeepVis

__all__ = ["CameraFeed", "CameraFrame", "CameraView"]

FORMATS = ("image/jpeg", "image/png")
FPS_RANGE = (0.2, 30.0)


@dataclass(frozen=True)
class CameraFrame:
    """One picture from the camera: its number (counting from 1 per page) and its encoded
    bytes (JPEG or PNG, short side at most ``frame_size``)."""

    id: int
    data: bytes


class CameraView(anywidget.AnyWidget):
    """The browser's camera: a live picture with start/stop and freeze-frame buttons.

    Frames reach Python through :meth:`on_frame` callbacks; :attr:`latest` is the newest.
    Browsers allow the camera only on HTTPS pages or on ``localhost`` and ask the user once.
    Each displayed view of the widget captures on its own: display it once.
    """

    _esm = Path(__file__).with_name("camera.js")
    _css = """
    .deepvis-camera { display: flex; flex-direction: column; gap: 2px; max-width: 192px; }
    .deepvis-camera video { width: 192px; max-height: 144px; background: #000;
                            object-fit: contain; }
    .deepvis-camera-buttons { display: flex; gap: 2px; }
    .deepvis-camera-buttons button { flex: 1 1 0; min-width: 0; padding: 0 4px; }
    .deepvis-camera-status { font-size: var(--jp-ui-font-size0, 11px); min-height: 1.4em; }
    .deepvis-camera-status.deepvis-error { color: var(--jp-error-color1, #b00); }
    """

    running = Bool(False, help="The camera is on (the start/stop button)").tag(sync=True)
    frozen = Bool(False, help="Freeze frame: no new frames are sent while True").tag(sync=True)
    fps = Float(5.0, help=f"Frames sent per second, {FPS_RANGE[0]} to {FPS_RANGE[1]}").tag(
        sync=True)
    frame_size = Int(224, help="Short side of a sent frame in px (the browser scales down, "
                     "never up)").tag(sync=True)
    format = Unicode("image/jpeg", help="Encoding of sent frames: image/jpeg or image/png").tag(
        sync=True)
    quality = Float(0.9, help="JPEG quality, 0 to 1").tag(sync=True)
    max_in_flight = Int(2, help="Frames sent but not yet shown before the browser skips "
                        "capturing (a busy dashboard would drop them anyway)").tag(sync=True)
    error = Unicode("", help="Why the camera is not running (set by the browser: no camera, "
                    "permission denied, not HTTPS)").tag(sync=True)
    shown_frame = Int(0, help="Id of the frame the dashboard shows now (the browser reports "
                      "capture-to-shown latency from it)").tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._callbacks: list[Callable[[CameraFrame], None]] = []
        self.latest: CameraFrame | None = None
        self.received = 0  # frames that reached Python
        self.on_msg(self._message)

    @validate("fps")
    def _check_fps(self, proposal: Any) -> float:
        value = float(proposal["value"])
        low, high = FPS_RANGE
        if not low <= value <= high:  # also refuses NaN
            msg = f"fps must be between {low} and {high}, got {value!r}"
            raise TraitError(msg)
        return value

    @validate("frame_size")
    def _check_frame_size(self, proposal: Any) -> int:
        value = proposal["value"]
        if isinstance(value, bool) or not 8 <= value <= 4096:
            msg = f"frame_size must be 8 to 4096 px, got {value!r}"
            raise TraitError(msg)
        return int(value)

    @validate("max_in_flight")
    def _check_max_in_flight(self, proposal: Any) -> int:
        value = proposal["value"]
        if isinstance(value, bool) or not 1 <= value <= 100:
            msg = f"max_in_flight must be 1 to 100 frames, got {value!r}"
            raise TraitError(msg)
        return int(value)

    @validate("format")
    def _check_format(self, proposal: Any) -> str:
        value = proposal["value"]
        if value not in FORMATS:
            msg = f"format must be one of {', '.join(map(repr, FORMATS))}, got {value!r}"
            raise TraitError(msg)
        return str(value)

    @validate("quality")
    def _check_quality(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not 0.0 <= value <= 1.0:
            msg = f"quality must be between 0 and 1, got {value!r}"
            raise TraitError(msg)
        return value

    def on_frame(self, callback: Callable[[CameraFrame], None]) -> None:
        """Call ``callback(frame)`` for every frame that arrives (on the kernel's thread)."""
        self._callbacks.append(callback)

    def push_frame(self, data: bytes, frame_id: int | None = None) -> CameraFrame:
        """Take ``data`` (an encoded picture) as the camera's newest frame, as if the browser
        had sent it: for scripts and tests, or another source of pictures."""
        if not isinstance(data, (bytes, bytearray, memoryview)) or not len(data):
            msg = f"a camera frame must be non-empty bytes (JPEG or PNG), got {type(data).__name__}"
            raise InvalidInputError(msg)
        previous = self.latest.id if self.latest is not None else 0
        frame = CameraFrame(previous + 1 if frame_id is None else int(frame_id), bytes(data))
        self.latest = frame
        self.received += 1
        for callback in list(self._callbacks):
            callback(frame)
        return frame

    def _message(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        if isinstance(content, dict) and content.get("type") == "frame" and buffers:
            self.push_frame(bytes(buffers[0]), int(content.get("id", 0)))

    def __repr__(self) -> str:
        return (f"CameraView(running={self.running}, frozen={self.frozen}, fps={self.fps}, "
                f"received={self.received})")


class CameraFeed:
    """Follow a :class:`CameraView` in a dashboard: the newest frame is the "camera" image.

    The first frame is added as a new image and selected (resized like an upload: short
    side, then centre crop). Each later frame only records itself as pending and asks the
    view's render worker for the panes showing the camera image; the worker takes the newest
    pending frame when its job starts (:meth:`take`), so a burst of frames costs one render,
    not one each. While another image is selected, frames refresh the camera's thumbnail only.
    """

    def __init__(self, view: DeepVis, camera: CameraView) -> None:
        self._view = weakref.ref(view)  # the camera's callbacks never keep a closed view alive
        self.camera = camera
        self.index: int | None = None  # the camera image's place among the view's images
        self.shown: int | None = None  # id of the frame now in the view's images
        self._pending: CameraFrame | None = None
        self._lock = threading.Lock()
        camera.on_frame(self._arrived)
        camera.observe(self._turned_on, names="running")

    def _arrived(self, frame: CameraFrame) -> None:
        view = self._view()
        if view is None or view._closed:
            return
        with self._lock:
            self._pending = frame
        if self.index is None:
            self._add_first(view)
            return
        parts = ["camera", "thumbnails"]
        if view.image_index == self.index:
            parts += [p.name for p in view.panes.values()
                      if "image_index" in p.depends and p.name not in view._pane_workers]
        view._request(*parts)

    def _add_first(self, view: DeepVis) -> None:
        frame = self._claim()
        if frame is None:
            return
        image, notice = self._decode(view, frame)
        view._notices[len(view._images)] = notice
        self.index = view.add_image(image)
        self.shown = frame.id
        self.camera.shown_frame = frame.id

    def _turned_on(self, change: Any) -> None:
        """Starting the camera selects its image again (once it has one)."""
        view = self._view()
        if change["new"] and self.index is not None and view is not None and not view._closed:
            view.image_index = self.index

    def _claim(self) -> CameraFrame | None:
        with self._lock:
            frame, self._pending = self._pending, None
        return frame

    @staticmethod
    def _decode(view: DeepVis, frame: CameraFrame) -> tuple[Any, str]:
        from .dashboard import _decode_upload

        return _decode_upload(frame.data, view._images[0].shape, source="camera")

    def take(self) -> CameraFrame | None:
        """Put the newest pending frame into the view's camera image (runs on the render
        worker at the start of a job); the frame, or None when none was pending."""
        view = self._view()
        frame = self._claim()
        if frame is None or view is None or self.index is None:
            return None
        try:
            image, notice = self._decode(view, frame)
        except Exception:
            self.shown = frame.id  # a broken frame is skipped; the next one may be fine
            raise
        view._images[self.index] = image
        view._notices[self.index] = notice
        self.shown = frame.id
        return frame

    def done(self, frame: CameraFrame) -> None:
        """The view has drawn ``frame``: tell the browser (it measures the latency), and
        the analyses of the camera image that their result is of an older frame (they show
        "not computed" until Run, or their cached result if they had this frame's)."""
        self.camera.shown_frame = frame.id
        view = self._view()
        if view is None or view._closed or view.image_index != self.index:
            return
        for name, pane in view.panes.items():
            if name in view._pane_workers and "image_index" in pane.depends:
                view._request_pane(name, run=False)
