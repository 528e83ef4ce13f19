"""Keyboard navigation for the dashboard, like the deep-visualization toolbox's keys.

An ipyevents ``Event`` watches ``keydown`` on the dashboard's picture row (input, activation
grid, selected unit, projection; wrapped in one box that also holds the help overlay). Each
handled key changes a trait of the dashboard, validated as usual; a step past either end of a
range leaves the value where it is, and the method and seed cycles wrap around.

ipyevents listens while the pointer is over the watched box (it focuses the box on
``mouseenter``) and passes *every* key pressed meanwhile to Python, stopping it in the page,
handled or not (ipyevents 2.0.4; its issue #57). That is why the picture row, which has no text
field, is watched rather than the whole dashboard: the slider's readout, the dropdowns and the
analyses' inputs keep their own keys, and Jupyter's shortcuts work again as soon as the pointer
leaves the pictures. Keys with Ctrl, Alt or Meta are never acted on.

"Freeze" is deepvis's *freeze back unit*: the projection pane keeps showing the frozen layer and
unit while the grid ring, the enlarged unit and the layer move on, so one unit's projection can
be held next to the activations of others (deepvis also froze its camera frame; that belongs to
an input source, not to a unit).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from ipyevents import Event

from ..core import METHODS

if TYPE_CHECKING:
    from .dashboard import DeepVis

__all__ = ["KEY_BINDINGS", "KeyboardNav", "key_name"]

KEY_BINDINGS: Mapping[str, str] = MappingProxyType({
    "ArrowUp": "previous layer",
    "ArrowDown": "next layer",
    "ArrowLeft": "previous unit",
    "ArrowRight": "next unit",
    "Shift+ArrowUp": "unit one row up in the grid",
    "Shift+ArrowDown": "unit one row down in the grid",
    "PageUp": "previous image",
    "PageDown": "next image",
    "m": "next projection method (deconvnet, guided, gradient)",
    "s": "next projection seed (max, all, clicked)",
    "b": "show / hide the projection pane",
    "f": "freeze / unfreeze the projection on the current layer and unit",
    "?": "show / hide this help",
    "Escape": "hide this help",
})
"""Key (``KeyboardEvent.key``, ``Shift+`` for a shifted non-character key) -> what it does."""

_SHOWN = {"ArrowUp": "↑", "ArrowDown": "↓", "ArrowLeft": "←", "ArrowRight": "→",
          "Shift+ArrowUp": "Shift ↑", "Shift+ArrowDown": "Shift ↓", "PageUp": "Page Up",
          "PageDown": "Page Down", "Escape": "Esc"}

CSS = """<style>
.deepvis .deepvis-keys { position: relative; }
.deepvis .deepvis-keys:focus { outline: none; }
.deepvis .deepvis-keys.ipyevents-watched {
  box-shadow: inset 0 0 0 1px var(--jp-brand-color2, #90caf9); }
.deepvis .deepvis-keys-help {
  position: absolute; top: 24px; left: 8px; z-index: 10; max-width: 480px;
  max-height: calc(100% - 32px); overflow-y: auto; line-height: 1.35;
  padding: 6px 12px; background: var(--jp-layout-color1, #fff);
  color: var(--jp-ui-font-color1, #000);
  border: 1px solid var(--jp-border-color1, #999); box-shadow: 0 2px 8px rgba(0, 0, 0, 0.3); }
.deepvis .deepvis-keys-help td { padding: 0 10px 0 0; vertical-align: top;
  line-height: 1.35; }
.deepvis .deepvis-keys-help kbd { white-space: nowrap;
  font-family: var(--jp-code-font-family, monospace);
  border: 1px solid var(--jp-border-color2, #ccc); border-radius: 3px; padding: 0 4px; }
</style>"""
"""The watched box holds the overlay (absolutely placed over the pictures); a thin inset ring
shows while the keys are live (ipyevents marks the box ``ipyevents-watched`` on hover)."""


def key_name(event: Mapping[str, Any]) -> str | None:
    """The binding name of an ipyevents ``keydown`` event dict, or None for events no binding
    can match (Ctrl / Alt / Meta combinations, which belong to the browser and Jupyter).

    A printed character already says whether Shift was held (``"?"``, ``"M"``); other keys get
    a ``"Shift+"`` prefix when it was.
    """
    key = event.get("key")
    if not isinstance(key, str) or not key:
        return None
    if event.get("ctrlKey") or event.get("altKey") or event.get("metaKey"):
        return None
    if len(key) == 1:
        return key
    return f"Shift+{key}" if event.get("shiftKey") else key


class KeyboardNav:
    """The dashboard's keys: the ipyevents ``Event``, the help overlay and the freeze state.

    Parameters
    ----------
    view : DeepVis
        The dashboard whose traits the keys change.

    Attributes
    ----------
    event : ipyevents.Event or None
        Watching the box :meth:`wrap` returned (None before).
    help : ipywidgets.HTML
        The overlay listing :data:`KEY_BINDINGS` (hidden until ``?``).
    frozen : (layer, unit) or None
        What the projection pane shows while frozen (``f``).
    """

    def __init__(self, view: DeepVis) -> None:
        self.view = view
        self.frozen: tuple[str, int] | None = None
        self.event: Event | None = None
        self.help = widgets.HTML(layout=widgets.Layout(display="none"))
        self.help.add_class("deepvis-keys-help")
        self.help.add_class("e2e-keys-help")
        self._actions: dict[str, Callable[[], bool]] = {
            "ArrowUp": lambda: self._step_layer(-1),
            "ArrowDown": lambda: self._step_layer(+1),
            "ArrowLeft": lambda: self._step_unit(-1),
            "ArrowRight": lambda: self._step_unit(+1),
            "Shift+ArrowUp": lambda: self._step_unit(-self.view.grid_layout.columns),
            "Shift+ArrowDown": lambda: self._step_unit(+self.view.grid_layout.columns),
            "PageUp": lambda: self._step_image(-1),
            "PageDown": lambda: self._step_image(+1),
            "m": lambda: self._cycle("method", METHODS),
            "s": lambda: self._cycle("position", _positions()),
            "b": self._toggle_projection,
            "f": self.toggle_freeze,
            "?": lambda: self.show_help(not self.help_shown),
            "Escape": lambda: self.show_help(False),
        }
        assert set(self._actions) == set(KEY_BINDINGS)  # the table and the handlers agree
        self._fill_help()

    def wrap(self, pictures: widgets.Widget) -> widgets.Box:
        """A box holding ``pictures`` and the help overlay, watched for ``keydown``."""
        style = widgets.HTML(CSS, layout=widgets.Layout(display="none"))
        box = widgets.VBox([style, self.help, pictures])
        box.add_class("deepvis-keys")
        box.add_class("e2e-keys")
        # prevent_default_action only matters for mouse events; ipyevents stops every key
        # itself while the pointer is over the box (see the module docstring)
        self.event = Event(source=box, watched_events=["keydown"],
                           prevent_default_action=True, ignore_modifier_key_events=True)
        self.event.on_dom_event(self.handle)
        return box

    # ------------------------------------------------------------------ events

    def handle(self, event: Mapping[str, Any]) -> bool:
        """Act on one ipyevents event dict; True when a binding changed something.

        Errors (a trait refusing a value) go to the dashboard's error area, as from a control.
        """
        if event.get("event", "keydown") != "keydown" or self.view._closed:
            return False
        name = key_name(event)
        action = self._actions.get(name) if name is not None else None
        if action is None:
            return False
        try:
            return action()
        except Exception as exc:
            self.view._show_error(exc)
            return False

    def press(self, key: str) -> bool:
        """Act as if ``key`` (a :data:`KEY_BINDINGS` name, e.g. ``"Shift+ArrowDown"``) was
        pressed over the pictures (for scripts and tests)."""
        shift, _, bare = key.rpartition("+")
        return self.handle({"event": "keydown", "key": bare, "shiftKey": shift == "Shift"})

    # ------------------------------------------------------------------ actions

    def _step_layer(self, step: int) -> bool:
        before = self.view.layer
        self.view._step_layer(step)  # stops at the first and the last layer
        return self.view.layer != before

    def _step_unit(self, step: int) -> bool:
        target = self.view.unit + step
        if not 0 <= target < self.view._channels():
            return False  # at an end (or no full row left): stay
        self.view.unit = target
        return True

    def _step_image(self, step: int) -> bool:
        target = self.view.image_index + step
        if not 0 <= target < len(self.view._images):
            return False
        self.view.image_index = target
        return True

    def _cycle(self, name: str, choices: tuple[str, ...]) -> bool:
        current = getattr(self.view, name)
        index = choices.index(current) if current in choices else -1
        setattr(self.view, name, choices[(index + 1) % len(choices)])
        return True

    def _toggle_projection(self) -> bool:
        pane = self.view.panes.get("projection")
        if pane is None or pane.widget is None:
            return False
        layout = pane.widget.layout
        layout.display = None if layout.display == "none" else "none"
        return True

    @property
    def projection_shown(self) -> bool:
        """False once ``b`` hid the projection pane."""
        pane = self.view.panes.get("projection")
        return pane is not None and pane.widget is not None and \
            pane.widget.layout.display != "none"

    def toggle_freeze(self) -> bool:
        """Freeze the projection on the current layer and unit, or unfreeze it."""
        view = self.view
        self.frozen = None if self.frozen is not None else (view.layer, view.unit)
        self._fill_help()
        view._request("projection")
        return True

    @property
    def help_shown(self) -> bool:
        return self.help.layout.display != "none"

    def show_help(self, shown: bool) -> bool:
        """Show or hide the help overlay; True if that changed it."""
        if shown == self.help_shown:
            return False
        self.help.layout.display = None if shown else "none"
        return True

    def _fill_help(self) -> None:
        rows = "".join(f"<tr><td><kbd>{html.escape(_SHOWN.get(key, key))}</kbd></td>"
                       f"<td>{html.escape(what)}</td></tr>"
                       for key, what in KEY_BINDINGS.items())
        frozen = ""
        if self.frozen is not None:
            layer, unit = self.frozen
            frozen = (f"<div>frozen: projection of unit <b>{unit}</b> of "
                      f"<b>{html.escape(layer)}</b></div>")
        self.help.value = ("<b>keys</b> (while the pointer is over the pictures)"
                           f"<table>{rows}</table>{frozen}")

    def close(self) -> None:
        if self.event is not None:
            self.event.reset_callbacks()
            self.event.close()
        self.help.close()


def _positions() -> tuple[str, ...]:
    from .dashboard import POSITIONS  # the dashboard imports this module

    return POSITIONS
