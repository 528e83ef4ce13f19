"""The dashboard's keys headless: ipyevents-shaped keydown dicts in, exact traits out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

import ipydeepvis as dv
from ipydeepvis import render
from ipydeepvis.widgets.keyboard import KEY_BINDINGS, key_name
from ipydeepvis.widgets.panes import PANE
from tests.widgets.test_dashboard import Classifier, make


@pytest.fixture
def model() -> Classifier:
    return Classifier()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def keydown(key: str, **modifiers: bool) -> dict[str, Any]:
    """What ipyevents 2 sends for a keydown (the fields its front end copies)."""
    event = {"event": "keydown", "type": "keydown", "key": key, "code": "", "location": 0,
             "repeat": False, "altKey": False, "ctrlKey": False, "metaKey": False,
             "shiftKey": False, "timeStamp": 0.0,
             "target": {"tagName": "CANVAS", "id": "", "className": "e2e-grid"}}
    event.update(modifiers)
    return event


def press(view: dv.DeepVis, key: str, **modifiers: bool) -> bool:
    return view.keyboard.handle(keydown(key, **modifiers))


def traits(view: dv.DeepVis) -> tuple[Any, ...]:
    return (view.layer, view.unit, view.image_index, view.method, view.position)


def test_arrows_step_units_rows_and_layers_and_stay_at_the_ends(model: Classifier,
                                                                  images: torch.Tensor) -> None:
    view = make(model, images)
    assert (view.layer, view.unit) == ("features.3", 0)
    columns = view.layout_of("features.3").columns
    assert (columns, view.layout_of("features.3").count) == (7, 12)  # rows of 7, 5
    assert press(view, "ArrowLeft") is False and view.unit == 0  # first unit: stays
    for expected in (1, 2, 3):
        assert press(view, "ArrowRight") is True and view.unit == expected
    assert press(view, "ArrowDown", shiftKey=True) and view.unit == 3 + columns  # 10
    assert press(view, "ArrowDown", shiftKey=True) is False and view.unit == 10  # no row 3
    assert press(view, "ArrowUp", shiftKey=True) and view.unit == 3
    assert press(view, "ArrowUp", shiftKey=True) is False and view.unit == 3  # no row -1
    view.unit = 11
    assert press(view, "ArrowRight") is False and view.unit == 11  # last unit: stays

    order = list(view._layers)
    assert order == [layer.name for layer in view.probe.layers]  # the probe's (model's) order
    assert press(view, "ArrowUp") and view.layer == "features.2"
    assert view.unit == 7  # features.2 has 8 units: the dashboard moved unit 11 inside
    walked = [view.layer]
    while press(view, "ArrowDown"):
        walked.append(view.layer)
    assert walked == order[order.index("features.2"):] and view.layer == "fc"
    assert press(view, "ArrowDown") is False and view.layer == "fc"  # last layer: stays
    while press(view, "ArrowUp"):
        pass
    assert view.layer == order[0]
    assert len(view._errors.outputs) == 0  # staying at an end is no error
    view.close()


def test_m_and_s_cycle_method_and_seed_and_page_keys_step_images(model: Classifier,
                                                                   images: torch.Tensor) -> None:
    view = make(model, images)
    methods = [view.method]
    for _ in range(3):
        assert press(view, "m")
        methods.append(view.method)
    assert methods == ["deconvnet", "guided", "gradient", "deconvnet"]
    seeds = [view.position]
    for _ in range(3):
        assert press(view, "s")
        seeds.append(view.position)
    assert seeds == ["max", "all", "clicked", "max"]
    assert press(view, "PageUp") is False and view.image_index == 0
    assert press(view, "PageDown") and view.image_index == 1
    assert press(view, "PageDown") and view.image_index == 2
    assert press(view, "PageDown") is False and view.image_index == 2  # 3 images
    assert press(view, "PageUp") and view.image_index == 1
    view.close()


def test_other_keys_and_modifier_combinations_change_nothing(model: Classifier,
                                                             images: torch.Tensor) -> None:
    view = make(model, images)
    view.unit = 4
    before = traits(view)
    for key, mods in [("x", {}), ("M", {"shiftKey": True}), ("m", {"ctrlKey": True}),
                      ("ArrowRight", {"altKey": True}), ("ArrowDown", {"metaKey": True}),
                      ("Enter", {}), ("Shift", {"shiftKey": True}), ("", {})]:
        assert press(view, key, **mods) is False, key
    assert view.keyboard.handle({**keydown("ArrowRight"), "event": "keyup"}) is False
    assert traits(view) == before
    assert key_name(keydown("?", shiftKey=True)) == "?"  # a printed character keeps its own
    assert key_name(keydown("PageDown", shiftKey=True)) == "Shift+PageDown"  # not bound
    view.close()


def test_b_hides_the_projection_and_question_mark_shows_the_key_list(
        model: Classifier, images: torch.Tensor) -> None:
    view = make(model, images)
    pane = view.panes["projection"].widget
    assert pane.layout.display != "none"
    assert press(view, "b") and pane.layout.display == "none"
    assert view.keyboard.projection_shown is False
    assert press(view, "b") and pane.layout.display != "none"
    help_box = view.keyboard.help
    assert help_box.layout.display == "none"
    assert press(view, "Escape") is False  # nothing to hide
    assert press(view, "?", shiftKey=True) and help_box.layout.display != "none"
    for what in KEY_BINDINGS.values():
        assert what in help_box.value
    assert dict(view.key_bindings) == dict(KEY_BINDINGS)
    assert press(view, "?", shiftKey=True) and help_box.layout.display == "none"
    press(view, "?")
    assert press(view, "Escape") and help_box.layout.display == "none"
    view.close()


def projection_frame(model: torch.nn.Module, image: torch.Tensor, layer: str,
                     unit: int) -> np.ndarray:
    """The projection pane's picture computed here: an independent probe, the same render."""
    probe = dv.Probe(model, input_shape=tuple(image.shape))
    values = probe.project(image, layer, unit, method="deconvnet", position="max")[0]
    picture = render.projection_picture(values, "raw", 1.0)
    return render.to_rgba(render.resize_nearest(picture, PANE, PANE))


def test_f_freezes_the_projection_on_the_unit_while_the_selection_moves(
        model: Classifier, images: torch.Tensor, tmp_path: Path) -> None:
    view = make(model, images)
    layer = view.layer
    maps = view.probe.activations(images[0], [layer])[layer][0]
    alive = [u for u in range(maps.shape[0]) if float(maps[u].max()) > 0]
    frozen, other = alive[0], alive[1]
    view.unit = frozen
    frozen_frame = projection_frame(model, images[0], layer, frozen)
    other_frame = projection_frame(model, images[0], layer, other)
    assert not np.array_equal(frozen_frame, other_frame)  # so the test can tell them apart
    np.testing.assert_array_equal(view.frames["projection"], frozen_frame)

    assert press(view, "f") and view.keyboard.frozen == (layer, frozen)
    view.unit = other
    np.testing.assert_array_equal(view.frames["unit"], view.panes["unit"].picture(
        view._results["unit"], "unit"))  # the enlarged unit follows the selection ...
    np.testing.assert_array_equal(view.frames["projection"], frozen_frame)  # ... this stays
    assert f"frozen on unit {frozen} of {layer}" in view.panes["projection"].text.value
    saved = Image.open(view.save_png(tmp_path / "frozen.png"))
    assert saved.text["frozen"] == f"unit {frozen} of {layer}"  # the sheet says whose it is
    assert press(view, "ArrowUp") and view.layer != layer  # another layer: still frozen
    np.testing.assert_array_equal(view.frames["projection"], frozen_frame)
    press(view, "ArrowDown")
    assert press(view, "f") and view.keyboard.frozen is None
    assert view.unit == min(other, view._channels() - 1)
    np.testing.assert_array_equal(view.frames["projection"],
                                  projection_frame(model, images[0], layer, view.unit))
    assert "frozen" not in view.panes["projection"].text.value
    view.close()


def test_the_event_watches_keydown_on_the_pictures_only(model: Classifier,
                                                        images: torch.Tensor) -> None:
    view = make(model, images)
    event = view.keyboard.event
    assert event is not None and event.watched_events == ["keydown"]
    watched = event.source
    assert "deepvis-keys" in watched._dom_classes

    def inside(widget: Any, root: Any) -> bool:
        return widget is root or any(inside(widget, c) for c in getattr(root, "children", ()))

    for name in ("input", "grid", "unit", "projection"):
        assert inside(view.panes[name].widget, watched), name
    assert inside(view.keyboard.help, watched)
    # the controls (slider readout, dropdowns) keep their own keys: ipyevents would stop them
    assert not inside(view._unit_slider, watched) and not inside(view._layer_picker, watched)
    # a message as the front end sends it goes through the widget to the handler
    event._handle_mouse_msg(event, keydown("ArrowRight"), [])
    assert view.unit == 1
    view.close()
    assert event.comm is None and view.keyboard.help.comm is None
