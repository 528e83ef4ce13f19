"""How fast the DeepVis dashboard answers, in Python and in a real browser, in one run.

Python side (``DeepVis(..., threaded=False)``, so each trait change returns once its frames
are rendered and ``put_image_data`` has PNG-encoded them; no front end is attached, so sending
is free): medians of a unit change, a method change, a layer change (between the last two conv
layers, served from the recorded forward pass) and an image change (a new forward pass), for

- the embedded net (``ipydeepvis.demo.load()``: Shapes images at 64 px), and
- torchvision's AlexNet at 224 px (random weights, random images).

The "PNG" column is the part of the median spent in ipycanvas's PNG encoding.

Browser side (Voila, Debian's Chromium through Playwright, the embedded net, the default
threaded worker): the slider-to-pixels time, from a ``keydown`` on the unit slider's handle
(timestamped in the page) until the new unit map and projection pixels are on the canvases
(``getImageData`` polled every 2 ms; the expected pixels are computed here), and, in the same
page and run, the bare widget round trip (an ``IntSlider`` whose observer sets a ``Label``) as
the reference. See ``/work/shared/e2e/E2E.md`` section 6 for the method.

Targets (issue 4): unit change <= 20 ms Python-side on the embedded net; slider-to-pixels
<= 150 ms in the browser (the widget round trip alone is about 55 ms on this machine).

Run with ``make bench`` (or ``python benchmarks/bench_dashboard.py [--quick] [--no-browser]``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
import torchvision

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the browser helpers live in tests/browser/e2e_support.py

import ipycanvas.canvas  # noqa: E402

import ipydeepvis as dv  # noqa: E402

UNIT_TARGET_MS = 20.0
PIXELS_TARGET_MS = 150.0


@dataclass
class Row:
    model: str
    what: str
    median_ms: float
    png_ms: float | None = None
    note: str = ""
    best_ms: float | None = None


# ---------------------------------------------------------------------------- Python side


class PngClock:
    """Time spent in ipycanvas's PNG encoding (``binary_image``), accumulated."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original = ipycanvas.canvas.binary_image

        def timed(*args: Any, **kw: Any) -> bytes:
            t0 = time.perf_counter()
            try:
                return original(*args, **kw)
            finally:
                self.seconds += time.perf_counter() - t0

        ipycanvas.canvas.binary_image = timed
        try:
            yield
        finally:
            ipycanvas.canvas.binary_image = original


def median_ms(change: Callable[[int], None], repeats: int,
              clock: PngClock) -> tuple[float, float, float]:
    """Median and best time of ``change(i)``, and the median PNG-encoding time in it (ms)."""
    change(-1)  # warm-up
    times, pngs = [], []
    for i in range(repeats):
        clock.seconds = 0.0
        t0 = time.perf_counter()
        change(i)
        times.append(time.perf_counter() - t0)
        pngs.append(clock.seconds)
    return 1000 * statistics.median(times), 1000 * min(times), 1000 * statistics.median(pngs)


def load_embedded() -> Any:
    from ipydeepvis import demo  # type: ignore[attr-defined]

    return demo.load()


def load_alexnet() -> Any:
    torch.manual_seed(0)
    model = torchvision.models.alexnet().eval()
    images = torch.rand(8, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    return SimpleNamespace(model=model, dataset=images, classes=None)


def bench_python(name: str, loaded: Any, repeats: int, threads: int | None = None) -> list[Row]:
    default_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
        name = f"{name}, {threads} thread"
    try:
        return _bench_python(name, loaded, repeats)
    finally:
        torch.set_num_threads(default_threads)


def _bench_python(name: str, loaded: Any, repeats: int) -> list[Row]:
    view = dv.DeepVis(loaded.model, loaded.dataset, classes=loaded.classes, threaded=False)
    layers = {layer.name: layer for layer in view.probe.layers}
    convs = [n for n, layer in layers.items() if layer.kind == "conv"]
    last, previous = convs[-1], convs[-2]
    channels = min(layers[last].channels or 1, layers[previous].channels or 1)
    images = min(16, len(loaded.dataset))
    clock = PngClock()
    methods = ["guided", "gradient", "deconvnet"]
    rows = []
    with clock.installed():
        def unit(i: int) -> None:
            view.unit = (view.unit + 1) % channels

        def method(i: int) -> None:
            view.method = methods[i % 3]

        def layer(i: int) -> None:
            view.layer = previous if view.layer == last else last

        def image(i: int) -> None:
            view.image_index = (view.image_index + 1) % images

        view.layer = last
        for what, change, n in [("unit change", unit, repeats), ("method change", method, repeats),
                                ("layer change", layer, repeats),
                                ("image change", image, max(3, repeats // 2))]:
            ms, best, png = median_ms(change, n, clock)
            note = ""
            if what == "unit change" and name.startswith("embedded"):
                note = f"target <= {UNIT_TARGET_MS:.0f} ms: {ms / UNIT_TARGET_MS:.2f}x of target"
            rows.append(Row(name, f"Python: {what}", ms, png, note, best))
    shape = layers[last].shape
    rows[0].note = rows[0].note or f"layer {last} {tuple(shape or ())}"
    view.close()
    return rows


# ---------------------------------------------------------------------------- browser side

PING_CELL = """\
import ipywidgets as W
ping = W.IntSlider(0, 0, 1000, description="ping", continuous_update=False)
ping.add_class("e2e-ping")
pong = W.Label("0")
pong.add_class("e2e-pong")
ping.observe(lambda change: setattr(pong, "value", str(change["new"])), names="value")
W.HBox([ping, pong])"""

ARM_JS = """([checks, labelSel, labelText]) => {
  window.__lat = new Promise((resolve) => {
    let t0 = null;
    document.addEventListener('keydown', () => { t0 = performance.now(); },
                              {capture: true, once: true});
    const done = () => {
      if (labelSel !== null) {
        const l = document.querySelector(labelSel);
        return !!l && l.innerText.trim() === labelText;
      }
      return checks.every(([sel, x, y, px]) => {
        const d = document.querySelector(sel).getContext('2d').getImageData(x, y, 1, 1).data;
        return px.every((v, i) => d[i] === v);
      });
    };
    const poll = () => {
      if (t0 !== null && done()) resolve(performance.now() - t0);
      else if (t0 !== null && performance.now() - t0 > 20000) resolve(-1);
      else setTimeout(poll, 2);
    };
    poll();
  });
}"""


def changed_pixel(old: np.ndarray, new: np.ndarray) -> tuple[int, int, list[int]] | None:
    """The pixel where two frames differ most, as ``(x, y, new RGBA)``, or None if equal."""
    diff = np.abs(old.astype(int) - new.astype(int)).sum(axis=2)
    if not diff.any():
        return None
    y, x = np.unravel_index(int(diff.argmax()), diff.shape)
    return int(x), int(y), new[y, x].tolist()


def bench_browser(samples: int, standin: bool = False) -> list[Row]:
    from tests.browser import e2e_support as e2e

    name = "stand-in net" if standin else "embedded net"
    problem = e2e.missing_requirements()
    if problem:
        return [Row(name, "browser: slider -> pixels", float("nan"),
                    note=f"skipped: {problem}")]
    if not standin and not e2e.demo_available():
        return [Row(name, "browser: slider -> pixels", float("nan"),
                    note="skipped: ipydeepvis.demo is not available yet")]
    from playwright.sync_api import sync_playwright

    expected = e2e.Expected.of(e2e.STANDIN if standin else e2e.QUICKSTART)
    layer = expected.default_layer
    image = (e2e.STANDIN if standin else e2e.QUICKSTART).image_after_run()  # shown at start
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    root = tmp / "root"
    root.mkdir()
    if standin:
        from tests.browser import standin as standin_module

        e2e.STANDIN.write(root)
        cell = standin_module.NOTEBOOK_CELL
    else:
        cell = "".join(_quickstart_first_cell())
    e2e._write_notebook(root / "bench.ipynb", [("code", cell), ("code", PING_CELL)])
    server = e2e.start_voila(tmp, root, "bench.ipynb")
    try:
        with sync_playwright() as p:
            browser = e2e.launch_chromium(p)
            try:
                page = browser.new_page(viewport=e2e.VIEWPORT)
                page.goto(f"{server.base}/", timeout=180_000)
                page.wait_for_selector(e2e.SEL_GRID, timeout=120_000)
                page.wait_for_selector(".e2e-pong", timeout=60_000)
                state = e2e.State(layer, 0, image, "deconvnet")
                e2e.wait_frame(page, e2e.SEL_UNIT_MAP, expected.unit_map(state), timeout=60)
                e2e.wait_frame(page, e2e.SEL_PROJECTION, expected.projection(state), timeout=60)
                pixels = _slider_to_pixels(page, expected, layer, samples, image)
                ping = _round_trip(page, samples)
            finally:
                browser.close()
    finally:
        server.stop()
    ping_ms, pixels_ms = statistics.median(ping), statistics.median(pixels)
    return [
        Row("widgets only", "browser: slider -> Label (round trip)", ping_ms,
            note=f"reference; {len(ping)} samples, range {min(ping):.0f}-{max(ping):.0f} ms"),
        Row(name, "browser: slider -> pixels", pixels_ms,
            note=f"target <= {PIXELS_TARGET_MS:.0f} ms: {pixels_ms / PIXELS_TARGET_MS:.2f}x of "
                 f"target; {pixels_ms / ping_ms:.2f}x the round trip; {len(pixels)} samples, "
                 f"range {min(pixels):.0f}-{max(pixels):.0f} ms"),
    ]


def _quickstart_first_cell() -> list[str]:
    import json

    notebook = json.loads((REPO / "notebooks" / "quickstart.ipynb").read_text())
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    return list(cell["source"])


def _slider_to_pixels(page: Any, expected: Any, layer: str, samples: int,
                      image: int = 0) -> list[float]:
    from tests.browser import e2e_support as e2e

    times = []
    channels = int(expected.layers[layer].channels)
    page.focus(f"{e2e.SEL_SLIDER} .noUi-handle")
    for unit in range(1, min(samples + 1, channels)):
        old = e2e.State(layer, unit - 1, image, "deconvnet")
        new = e2e.State(layer, unit, image, "deconvnet")
        checks = []
        for sel, frame in [(e2e.SEL_UNIT_MAP, expected.unit_map),
                           (e2e.SEL_PROJECTION, expected.projection)]:
            where = changed_pixel(frame(old), frame(new))
            if where is not None:
                checks.append([sel, *where])
        page.evaluate(ARM_JS, [checks, None, ""])
        page.keyboard.press("ArrowRight")
        ms = page.evaluate("window.__lat")
        if not checks:
            continue  # both frames identical for these two units: nothing to time
        if ms < 0:
            raise RuntimeError(f"unit {unit}: the new pixels never appeared")
        times.append(ms)
        page.wait_for_timeout(300)
    return times


def _round_trip(page: Any, samples: int) -> list[float]:
    times = []
    page.focus(".e2e-ping .noUi-handle")
    for value in range(1, samples + 1):
        page.evaluate(ARM_JS, [[], ".e2e-pong", str(value)])
        page.keyboard.press("ArrowRight")
        ms = page.evaluate("window.__lat")
        if ms < 0:
            raise RuntimeError(f"ping {value}: the label never changed")
        times.append(ms)
        page.wait_for_timeout(300)
    return times


# ---------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-browser", action="store_true", help="Python side only")
    parser.add_argument("--standin", action="store_true",
                        help="browser part on the tests' stand-in net (512-unit layer) instead")
    args = parser.parse_args()
    repeats = 7 if args.quick else 21
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU (load average "
          f"{load} on {os.cpu_count()} cores); DeepVis threaded=False for the Python rows; "
          "medians in ms")
    print()
    print(f"| {'model':<22} | {'measurement':<38} | {'median ms':>9} | {'best ms':>7} "
          f"| {'PNG ms':>6} | notes |")
    print(f"|{'-' * 24}|{'-' * 40}|{'-' * 11}|{'-' * 9}|{'-' * 8}|-------|")

    def show(rows: list[Row]) -> None:
        for r in rows:
            png = "" if r.png_ms is None else f"{r.png_ms:6.2f}"
            best = "" if r.best_ms is None else f"{r.best_ms:7.2f}"
            print(f"| {r.model:<22} | {r.what:<38} | {r.median_ms:9.2f} | {best:>7} | {png:>6} "
                  f"| {r.note} |", flush=True)

    cases: list[tuple[str, Callable[[], Any]]] = [("embedded net", load_embedded),
                                                  ("AlexNet 224px", load_alexnet)]
    for name, load in cases:
        try:
            loaded = load()
        except Exception as exc:  # e.g. the embedded series is not shipped yet
            show([Row(name, "Python: all changes", float("nan"), note=f"skipped: {exc}")])
            continue
        embedded = name.startswith("embedded")
        show(bench_python(name, loaded, repeats if embedded else max(5, repeats // 2)))
        if embedded and torch.get_num_threads() > 1:
            # small tensors: intra-op threads mostly wait on each other on a shared CPU
            show(bench_python(name, loaded, repeats, threads=1))
    if not args.no_browser:
        show(bench_browser(8 if args.quick else 15, standin=args.standin))


if __name__ == "__main__":
    main()
