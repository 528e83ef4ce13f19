"""What every view shares: latest-request-wins background work, visible errors, clean closing.

Widget events are handled one by one on the kernel's main thread, so a slow model (VGG16 on a
CPU) would make every slider tick wait for the previous one's full computation. Views therefore
hand their work to a :class:`LatestWins` worker: requests made while it is busy are merged,
and only the newest state is computed once the running job ends. What is on screen at rest
always matches the traits.

Three promises about those threads:

- **Scripts exit cleanly.** A daemon thread still inside a torch kernel when the interpreter
  finalises aborts the process (``terminate called without an active exception``, exit 134).
  Every live worker is therefore closed and joined from an ``atexit`` hook, which runs before
  finalisation; a closing worker tells its job to stop (``on_close``) so the join is short.
  The set of live workers is the one process-wide registry here, and it only holds weak
  references: it exists because the interpreter's exit is process-wide.
- **No thread keeps its view alive.** A worker holds its job weakly; a view collected without
  ``close()`` ends its worker (``weakref.finalize``).
- **Closing frees everything.** :func:`close_widget_tree` closes a view's whole widget tree
  (children, layouts, styles, plot scales and marks), so closed views leave no widget
  registered with the kernel.
"""

from __future__ import annotations

import atexit
import threading
import traceback
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import ipywidgets as widgets

__all__ = ["LatestWins", "close_widget_tree", "report_error"]

_LIVE_WORKERS: weakref.WeakSet[LatestWins] = weakref.WeakSet()
_EXIT_JOIN_SECONDS = 60.0


class LatestWins:
    """Run ``job(parts)`` for the union of the parts requested since the last run.

    Parameters
    ----------
    job : callable
        Receives the set of parts (strings naming what is stale) and does the work; it reads the
        current state itself, so it always computes the newest request. Held weakly when it is
        a bound method, so the worker never keeps its view alive.
    on_error : callable
        Receives the exception when ``job`` raises; the worker goes on.
    threaded : bool
        True: a daemon thread runs the jobs. False: :meth:`request` runs the job at once
        (scripts, tests, kernels without threads).
    on_close : callable, optional
        Called by :meth:`close` (also at interpreter exit), so a long job can stop early.
    name : str
        The thread's name (shows in debuggers and ``threading.enumerate()``).
    lazy : bool
        Start the thread on the first request instead of at once (panes that may never run).
    """

    def __init__(self, job: Callable[[set[str]], None], on_error: Callable[[BaseException], None],
                 threaded: bool = True, *, on_close: Callable[[], None] | None = None,
                 name: str = "ipydeepvis-render", lazy: bool = False) -> None:
        self._job = _weak_callable(job)
        self._on_error = _weak_callable(on_error)
        self._on_close = _weak_callable(on_close) if on_close is not None else None
        self._threaded = threaded
        self._pending: set[str] = set()
        self._wake = threading.Condition(threading.Lock())
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._name = name
        if threaded and not lazy:
            self._start()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        _LIVE_WORKERS.add(self)
        self._thread.start()

    @property
    def started(self) -> bool:
        """True once the worker has a thread (always False when not threaded)."""
        return self._thread is not None

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called: jobs should stop at their next checkpoint."""
        return self._closed

    def request(self, *parts: str) -> None:
        """Mark ``parts`` stale; they are recomputed as soon as the worker is free.

        After :meth:`close` a request is ignored (nothing is drawn any more)."""
        if self._closed:
            return
        if not self._threaded:
            self._run(set(parts))
            return
        with self._wake:
            self._pending.update(parts)
            self._wake.notify_all()
            if self._thread is None:
                self._start()

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until nothing is pending or running; False if ``timeout`` seconds passed.

        Returns at once when the worker is closed or its thread has ended."""
        if not self._threaded or self._thread is None:
            return True
        with self._wake:
            return self._wake.wait_for(
                lambda: self._closed or not (self._pending or self._busy)
                or self._thread is None or not self._thread.is_alive(), timeout)

    def close(self, join: float | None = None) -> None:
        """Stop the worker (pending work is dropped; a running job is asked to stop).

        Parameters
        ----------
        join : float, optional
            Wait up to this many seconds for the thread to end (None: do not wait).
        """
        with self._wake:
            already = self._closed
            self._closed = True
            self._pending.clear()
            self._wake.notify_all()
        if not already and self._on_close is not None:
            callback = self._on_close()
            if callback is not None:
                callback()
        thread = self._thread
        if join is not None and thread is not None and thread is not threading.current_thread():
            thread.join(join)
        _LIVE_WORKERS.discard(self)

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
        job = self._job()
        if job is None:  # the view is gone
            self._closed = True
            return
        try:
            job(parts)
        except Exception as exc:  # shown in the widget, never lost in a thread
            if self._closed:
                return  # a job cut short by close() has nobody left to tell
            on_error = self._on_error()
            if on_error is not None:
                on_error(exc)
        finally:
            del job


def _weak_callable(function: Callable[..., Any]) -> Callable[[], Callable[..., Any] | None]:
    """A weak reference to a bound method (plain functions are kept as they are)."""
    if hasattr(function, "__self__") and hasattr(function, "__func__"):
        return weakref.WeakMethod(function)  # type: ignore[arg-type]
    return lambda: function


@atexit.register
def _close_workers_at_exit() -> None:
    """Close and join every live worker before the interpreter finalises (see module doc)."""
    workers = list(_LIVE_WORKERS)
    for worker in workers:
        worker.close()
    for worker in workers:
        worker.close(join=_EXIT_JOIN_SECONDS)


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
    status.value = f"<span class='deepvis-error'>error: {type(exc).__name__}: {exc}</span>"


def _widgets_in(value: Any) -> Iterable[widgets.Widget]:
    """The widgets a trait value holds (a widget, or widgets in a list, tuple or dict)."""
    if isinstance(value, widgets.Widget):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _widgets_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _widgets_in(item)


def close_widget_tree(root: widgets.Widget, *extra: widgets.Widget) -> None:
    """Close ``root`` and every widget reachable from it through synced traits.

    ``Widget.close`` closes only the widget itself: its children, its layout and style, a
    plot's marks, scales and axes stay registered with the kernel. Shared singletons that other
    views still use (ipycanvas's canvas manager) are left open. Nested views (a scrubber in a
    dashboard) are closed through their own ``close()`` so they stop their workers too.
    """
    keep = _shared_singletons()
    order: list[widgets.Widget] = []
    seen: set[int] = set()
    stack: list[widgets.Widget] = [root, *extra]
    while stack:
        widget = stack.pop()
        if id(widget) in seen or id(widget) in keep:
            continue
        seen.add(id(widget))
        order.append(widget)
        for name in widget.keys:
            try:
                value = getattr(widget, name)
            except Exception:  # a trait that cannot be read any more holds nothing to close
                continue
            stack.extend(_widgets_in(value))
    for widget in order:
        if widget is root:
            widgets.Widget.close(widget)
        else:
            widget.close()
    _forget_current_canvas(seen)


def _forget_current_canvas(closed: set[int]) -> None:
    """ipycanvas's shared manager remembers the canvas it drew on last; when that is one of
    ours it would keep the closed view alive through the canvas's click callbacks. Forgetting
    it only makes the next draw command name its canvas again."""
    try:
        from ipycanvas import canvas as ipycanvas_canvas
    except ImportError:  # pragma: no cover - ipycanvas is a dependency
        return
    manager = getattr(ipycanvas_canvas, "_CANVAS_MANAGER", None)
    if manager is not None and id(getattr(manager, "_current_canvas", None)) in closed:
        manager._current_canvas = None


def _shared_singletons() -> set[int]:
    """Ids of process-wide widgets that libraries share between all views."""
    keep: set[int] = set()
    try:
        from ipycanvas import canvas as ipycanvas_canvas
    except ImportError:  # pragma: no cover - ipycanvas is a dependency
        return keep
    manager = getattr(ipycanvas_canvas, "_CANVAS_MANAGER", None)
    if manager is not None:
        keep.add(id(manager))
    return keep
