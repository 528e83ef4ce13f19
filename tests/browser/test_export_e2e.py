"""`DeepVis.to_html` opened from disk in Chromium, with no server and no kernel (issue 14.5).

The view is the embedded default at its confident image, on relu5 with guided backprop; the
file is opened with ``file://``. Each picture is drawn into a canvas in the page and read
back: its pixels equal the frame the dashboard's canvas showed (tolerance 0), and the labels
(layer, unit, method) are visible text. A screenshot goes to ``test-artifacts/``.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import ipydeepvis as dv
from ipydeepvis import demo
from tests.browser.e2e_support import ART_DIR, describe_difference

pytestmark = pytest.mark.browser

READ_IMG_JS = """img => {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let s = '';
  for (let i = 0; i < d.length; i += 8192) {
    s += String.fromCharCode.apply(null, d.subarray(i, i + 8192));
  }
  return [c.width, c.height, btoa(s)];
}"""


def read_img(page: Any, selector: str) -> np.ndarray:
    width, height, data = page.eval_on_selector(selector, READ_IMG_JS)
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 4)


def test_the_exported_file_shows_the_view_from_disk(browser: Any, tmp_path: Path) -> None:
    shipped = demo.load()
    view = dv.DeepVis(shipped.model, shipped.dataset, classes=shipped.classes, threaded=False)
    try:
        view.image_index = shipped.confident_index()
        view.layer, view.unit, view.method = "features.relu5", 7, "guided"
        path = view.to_html(tmp_path / "view.html")
        # the canvases' frames with the grid's ring drawn in (tests/widgets/test_export.py
        # checks these against the canvases themselves)
        expected = {name: frame for name, frame, _ in view._captioned_frames()}
        assert set(expected) == {"input", "grid", "unit", "projection"}
        assert np.array_equal(expected["projection"], view.frames["projection"])
        labels = view.labels()
    finally:
        view.close()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(path.resolve().as_uri())
        page.wait_for_function("() => [...document.images].every(i => i.complete)")
        for name, frame in expected.items():
            actual = read_img(page, f"figure.fig-{name} img")
            assert actual.shape == frame.shape and np.array_equal(actual, frame), (
                f"{name}: {describe_difference(actual, frame)}")
        text = page.inner_text("body")
        for key in ("layer", "unit", "method", "seed"):
            assert labels[key] in text
        assert "features.relu5" in text and "guided" in text
        ART_DIR.mkdir(exist_ok=True)
        page.screenshot(path=str(ART_DIR / "export_from_disk.png"), full_page=True)
    finally:
        context.close()

