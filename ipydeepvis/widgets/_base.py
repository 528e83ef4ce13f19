"""What every view shares: latest-request-wins background rendering and visible errors.

Widget events are handled one by one on the kernel's main thread, so a slow model (VGG16 on a
CPU) would make every slider tick wait for the previous one's full computation. Views therefore
hand their work to one :class:`LatestWins` worker: requests made while it is busy are merged,
and only the newest state is computed once the running job ends. What is on screen at rest
always matches the traits.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable

import ipywidgets as widgets

__all__ = ["LatestWins", "close_inner", "report_error"]


class LatestWins:
    """Run ``job(parts)`` for the union of the parts requested since the last run.

    Parameters
    ----------
    job : callable
        Receives the set of parts (strings naming what is stale) and does the work; it reads the
        current state itself, so it always computes the newest request.
    on_error : callable
        Receives the exception when ``job`` raises; the worker goes on.
    threaded : bool
        True: a daemon thread runs the jobs. False: :meth:`request` runs the job at once
        (scripts, tests, kernels without threads).
    """

    def __init__(self, job: Callable[[set[str]], None], on_error: Callable[[BaseException], None],
                 threaded: bool = True) -> None:
        self._job = job
        self._on_error = on_error
        self._threaded = threaded
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        if threaded:
            self._thread = threading.Thread(target=self._loop, name="ipydeepvis-render",
                                            daemon=True)
            self._thread.start()

    def request(self, *parts: str) -> None:
        """Mark ``parts`` stale; they are recomputed as soon as the worker is free."""
        if not self._threaded:
            self._run(set(parts))
            return
        with self._wake:
            self._pending.update(parts)
            self._wake.notify_all()

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until nothing is pending or running; False if ``timeout`` seconds passed."""
        if not self._threaded:
            return True
        with self._wake:
            return self._wake.wait_for(lambda: not self._pending and not self._busy, timeout)

    def close(self) -> None:
        """Stop the worker thread (pending work is dropped)."""
        with self._wake:
            self._closed = True
            self._pending.clear()
            self._wake.notify_all()

    def _loop(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending or self._closed)
                if self._closed:
                    return
                parts, self._pending = self._pending, set()
                self._busy = True
            try:
                self._run(parts)
            finally:
                with self._wake:
                    self._busy = False
                    self._wake.notify_all()

    def _run(self, parts: set[str]) -> None:
        try:
            self._job(parts)
        except Exception as exc:  # shown in the widget, never lost in a thread
            self._on_error(exc)


def report_error(output: widgets.Output, exc: BaseException, status: widgets.HTML) -> None:
    """Show ``exc`` in the view: a one-line status and the details in ``output``.

    Errors the user can fix (``DeepVisError``) show their message only; anything else shows
    the traceback too. ``append_stderr`` works from any thread (no output capture context).
    """
    from ..errors import DeepVisError

    if isinstance(exc, DeepVisError):
        text = f"{type(exc).__name__}: {exc}\n"
    else:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    output.append_stderr(text)
    status.value = f"<span style='color:#b00'>error: {type(exc).__name__}: {exc}</span>"


# The traits through which a widget contains others: boxes, MultiCanvas layers, every widget's
# own layout and style, and bqplot's figures, marks and axes. Others may point to widgets shared
# with the rest of the kernel (ipycanvas' one canvas manager), which must stay open.
_CONTAINING = ("children", "_canvases", "layout", "style", "marks", "axes", "scales", "scale",
               "scale_x", "scale_y")


def close_inner(root: widgets.Widget) -> None:
    """Close every widget that ``root`` contains, however deep (children, canvases, layouts,
    styles, bqplot marks, scales and axes), each through its own ``close``; ``root`` stays open.

    ``Widget.close`` closes one widget only: the ones inside stay registered with ipywidgets,
    and their callbacks (bound methods of the view) keep the view, its probe and the model
    alive. A view's ``close`` calls this before closing itself, so that closing it frees them.
    """
    seen = {id(root)}
    stack = _contained(root)
    while stack:
        widget = stack.pop()
        if id(widget) in seen:
            continue
        seen.add(id(widget))
        stack.extend(_contained(widget))
        widget.close()


def _contained(widget: widgets.Widget) -> list[widgets.Widget]:
    """The widgets directly inside ``widget`` (see ``_CONTAINING``)."""
    found: list[widgets.Widget] = []
    for name in _CONTAINING:
        value = getattr(widget, name, None) if widget.has_trait(name) else None
        if isinstance(value, dict):
            value = list(value.values())
        items = value if isinstance(value, (list, tuple)) else [value]
        found.extend(item for item in items if isinstance(item, widgets.Widget))
    return found
