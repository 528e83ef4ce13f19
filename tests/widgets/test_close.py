"""Closing a view frees it: no widget of it stays registered, and its model can be collected.

A notebook that switches between large models (``notebooks/your_model.ipynb``: AlexNet, VGG16,
ResNet-18 behind one model picker) relies on ``close()`` giving the memory back. Before, only the
outer box was closed: its ~100 inner widgets stayed registered with ipywidgets, and their
callbacks kept the view, its probe and the model (with its last forward pass) alive.
"""

from __future__ import annotations

import gc
import time
import weakref

import ipywidgets as widgets
import pytest
import torch
from ipycanvas.canvas import _CanvasManager
from ipywidgets.widgets.widget import _instances

import ipydeepvis as dv
from ipydeepvis import demo
from ipydeepvis.widgets._base import close_widget_tree
from tests.nets import ConvReluPool


def _created_since(before: set[str]) -> set[str]:
    """Ids of the widgets registered since ``before``, without ipycanvas' one shared canvas
    manager (made with the first canvas, open for every later one)."""
    return {i for i in set(_instances) - before if not isinstance(_instances[i], _CanvasManager)}


def _collected(ref: weakref.ref, seconds: float = 30.0) -> bool:
    """Whether ``ref`` dies once the view's worker thread has seen the close (it ends after
    its current job, so collection may need a moment: polled, not timed)."""
    deadline = time.monotonic() + seconds
    while True:
        gc.collect()
        if ref() is None:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@pytest.mark.parametrize("threaded", [False, True], ids=["inline", "threaded"])
def test_closed_dashboard_lets_its_model_go(threaded: bool) -> None:
    before = set(_instances)
    model = ConvReluPool(pool=(2, 2), channels=(3, 8, 12), seed=1)
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    view = dv.DeepVis(model, images, threaded=threaded)
    view.wait()
    view.unit = 5  # a render after construction: bound methods of the view in every callback
    view.wait()
    created = _created_since(before)
    assert len(created) > 50  # canvases, sliders, toggles, layouts, styles ...
    ref = weakref.ref(model)
    view.close()
    assert not created & set(_instances), "widgets of the closed dashboard stay registered"
    del view, model
    assert _collected(ref), "something still holds the model after close()"


def test_closed_dashboard_with_checkpoints_lets_its_copy_go() -> None:
    shipped = demo.load()
    before = set(_instances)
    view = dv.DeepVis(shipped.model, shipped.dataset, checkpoints=shipped.series,
                      classes=shipped.classes, threaded=False, max_images=2, probe_size=20)
    copy_ref = weakref.ref(view._model)
    scrubber_ref = weakref.ref(view.scrubber)
    created = _created_since(before)
    view.close()
    assert not created & set(_instances)
    del view
    assert _collected(copy_ref) and _collected(scrubber_ref)


def test_close_widget_tree_closes_every_held_widget_once() -> None:
    shared = widgets.IntSlider()  # held twice: closed once, no error
    inner = widgets.VBox([shared, widgets.HBox([shared, widgets.Label("x")])])
    root = widgets.VBox([inner, shared])
    held = [shared, inner, inner.children[1], inner.children[1].children[1], inner.layout,
            shared.layout, shared.style]
    close_widget_tree(root)
    assert all(w.comm is None for w in held)
    assert root.comm is None
