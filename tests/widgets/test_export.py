"""`DeepVis.to_html`: one self-contained HTML file showing the view without a kernel (issue 14.5).

The page is parsed back here: every picture decodes to exactly the frame the canvas shows,
the labels are the view's, there is no external reference (no script, no http link), and with
checkpoints the labelled strip and the metrics table are there.
"""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ipydeepvis as dv
from ipydeepvis import demo, render
from ipydeepvis.errors import InvalidOptionError, ViewClosedError
from ipydeepvis.export import metrics_table, png_data_uri
from ipydeepvis.widgets.epochs import metric_curves
from tests.nets import ConvReluPool


class _Page(HTMLParser):
    """The figures (class, caption, decoded pixels), label cells and every src/href."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, np.ndarray] = {}
        self.captions: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self.references: list[str] = []
        self.tags: list[str] = []
        self._figure = ""
        self._label = ""
        self._caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        attr = dict(attrs)
        cls = attr.get("class") or ""
        if tag == "figure":
            self._figure = cls.removeprefix("fig-")
        if tag == "figcaption":
            self._caption = True
        if tag == "td" and cls.startswith("label-"):
            self._label = cls.removeprefix("label-")
        for key in ("src", "href"):
            if attr.get(key):
                self.references.append(str(attr[key]))
        if tag == "img":
            data = str(attr["src"]).split(",", 1)[1]
            picture = Image.open(io.BytesIO(base64.b64decode(data)))
            self.figures[self._figure] = np.asarray(picture)

    def handle_data(self, data: str) -> None:
        if self._caption:
            self.captions[self._figure] = data
            self._caption = False
        if self._label:
            self.labels[self._label] = data
            self._label = ""


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = ConvReluPool(pool=(2, 2), channels=(3, 8, 12), seed=1)
        self.fc = torch.nn.Linear(12 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


def test_the_page_shows_exactly_the_canvases_and_the_labels(tmp_path: Path) -> None:
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    view = dv.DeepVis(Net(), images, classes=list("abcde"), threaded=False)
    try:
        view.unit, view.method = 5, "guided"
        path = view.to_html(tmp_path / "view.html")
        page = parse(path)
        shown = view.frames
        assert set(page.figures) == {"input", "grid", "unit", "projection"}
        assert np.array_equal(page.figures["input"], shown["input"])
        assert np.array_equal(page.figures["projection"], shown["projection"])
        ring = view._grid_canvas.highlight_box
        assert ring is not None
        assert np.array_equal(page.figures["grid"],
                              render.outline(shown["grid"], ring, render.HIGHLIGHT))
        assert page.labels == view.labels() and page.labels["unit"] == "5"
        assert page.captions["projection"] == "guided"
        # self-contained: every reference is a data URI, and nothing is scripted
        assert page.references and all(r.startswith("data:image/png;base64,")
                                       for r in page.references)
        assert "script" not in page.tags
        predictions = view._predictions.value
        assert "%" in predictions and predictions in path.read_text()  # the top-5 are there
    finally:
        view.close()
    with pytest.raises(ViewClosedError, match="closed"):
        view.to_html(tmp_path / "again.html")


def test_bad_paths_name_the_path_and_what_is_expected(tmp_path: Path) -> None:
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    view = dv.DeepVis(Net(), images, threaded=False)
    try:
        for bad, why in [(tmp_path / "view.png", "does not end in '.html'"),
                         (tmp_path, "is a folder"),
                         (tmp_path / "missing" / "view.html", "does not exist")]:
            with pytest.raises(InvalidOptionError, match=why):
                view.to_html(bad)
        assert list(tmp_path.iterdir()) == []
    finally:
        view.close()


@pytest.mark.slow
def test_with_checkpoints_the_page_has_the_strip_and_the_metrics(tmp_path: Path) -> None:
    shipped = demo.load()
    view = dv.DeepVis(shipped.model, shipped.dataset, checkpoints=shipped.series,
                      classes=shipped.classes, probe_size=24, threaded=False, max_images=4)
    try:
        view.epoch = view.scrubber.epochs[-1]
        assert view.wait()
        page = parse(view.to_html(tmp_path / "run.html"))
        strip = view.scrubber.strip
        assert strip is not None
        assert np.array_equal(page.figures["strip"], render.strip_figure(strip))
        assert page.labels["epoch"] == str(view.scrubber.epochs[-1])
        text = (tmp_path / "run.html").read_text()
        curves = metric_curves(shipped.series.metrics)
        assert curves and metrics_table(curves) in text
    finally:
        view.close()


def test_metrics_table_rows_are_epochs_and_the_empty_case() -> None:
    table = metrics_table({"loss": ([1, 2], [0.5, 0.25]), "acc": ([2], [0.9])})
    rows = re.findall(r"<tr>(.*?)</tr>", table)
    assert rows[0] == "<th>epoch</th><th>loss</th><th>acc</th>"
    assert rows[1:] == ["<td>1</td><td>0.5</td><td></td>",
                        "<td>2</td><td>0.25</td><td>0.9</td>"]
    assert metrics_table({}) == ""


def test_png_data_uri_is_lossless_and_refuses_other_arrays() -> None:
    picture = np.random.default_rng(0).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    data = base64.b64decode(png_data_uri(picture).split(",", 1)[1])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), picture)
    with pytest.raises(dv.DeepVisError, match="float64"):
        png_data_uri(np.zeros((4, 4)))
