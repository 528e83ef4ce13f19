"""Browser round trips of the dashboard's live inputs, in Chromium on Voila (issue 14, Measured).

One function per measurement, each on a page of its own; ``main`` prints one table.

- ``keyboard_step``: a key press over the pictures (ipyevents ``keydown``, ``ArrowRight`` /
  ``ArrowLeft``: next / previous unit) until the enlarged unit's canvas shows the new unit's
  pixels, interleaved in the same page with the same unit step through the unit slider's
  keyboard (``ArrowRight`` on its focused handle), the path that existed before; the ratio is
  keyboard / slider. The time runs from the ``keydown`` (a capture listener on ``window``, so
  before ipyevents sees it) until the pixel where the old and the new expected frames differ
  most has the new value (``getImageData`` polled every 2 ms; frames computed here with
  :class:`ipydeepvis.Probe` and :mod:`ipydeepvis.render`). Steps between two units whose frames
  are equal are pressed but not timed. Median and p90 over 30 timed presses each.

Run with ``make bench`` (or ``python benchmarks/bench_browser.py [--quick]``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the browser helpers live in tests/browser/e2e_support.py

SEL_KEYS = ".e2e-keys"  # the watched picture row (ipydeepvis.widgets.keyboard)


@dataclass
class Row:
    what: str
    samples: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def p90(self) -> float:
        if not self.samples:
            return float("nan")
        return float(np.percentile(self.samples, 90))


ARM_JS = """([sel, x, y, px]) => {
  window.__lat = new Promise((resolve) => {
    let t0 = null;
    window.addEventListener('keydown', () => { t0 = performance.now(); },
                            {capture: true, once: true});
    const done = () => {
      const d = document.querySelector(sel).getContext('2d').getImageData(x, y, 1, 1).data;
      return px.every((v, i) => d[i] === v);
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


def _quickstart_first_cell() -> str:
    notebook = json.loads((REPO / "notebooks" / "quickstart.ipynb").read_text())
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    return "".join(cell["source"])


@contextlib.contextmanager
def voila_page(cells: list[str]) -> Iterator[Any]:
    """A Voila server showing ``cells`` and a Chromium page on it, both stopped afterwards."""
    from playwright.sync_api import sync_playwright

    from tests.browser import e2e_support as e2e

    tmp = Path(tempfile.mkdtemp(prefix="bench-browser-"))
    root = tmp / "root"
    root.mkdir()
    e2e._write_notebook(root / "bench.ipynb", [("code", c) for c in cells])
    server = e2e.start_voila(tmp, root, "bench.ipynb")
    try:
        with sync_playwright() as p:
            browser = e2e.launch_chromium(p)
            try:
                page = browser.new_page(viewport=e2e.VIEWPORT)
                page.set_default_timeout(30_000)
                page.goto(f"{server.base}/", timeout=180_000)
                yield page
            finally:
                browser.close()
    finally:
        server.stop()


def keyboard_step(samples: int) -> list[Row]:
    """Unit step to pixels: the dashboard's keys against the unit slider's keys."""
    from tests.browser import e2e_support as e2e

    expected = e2e.Expected.of(e2e.QUICKSTART)
    layer, image = expected.default_layer, e2e.QUICKSTART.image_after_run()
    channels = int(expected.layers[layer].channels or 1)
    keys: list[float] = []
    slider: list[float] = []
    with voila_page([_quickstart_first_cell()]) as page:
        page.wait_for_selector(e2e.SEL_GRID, timeout=120_000)
        unit = 0
        e2e.wait_frame(page, e2e.SEL_UNIT_MAP,
                       expected.unit_map(e2e.State(layer, unit, image)), timeout=90)
        step, turn = +1, 0
        while (len(keys) < samples or len(slider) < samples) and turn < 6 * samples:
            if not 0 <= unit + step < channels:
                step = -step  # bounce at the ends of the layer
            by_keys = turn % 2 == 0
            turn += 1
            old, new = (expected.unit_map(e2e.State(layer, u, image))
                        for u in (unit, unit + step))
            where = changed_pixel(old, new)
            key = "ArrowRight" if step > 0 else "ArrowLeft"
            if by_keys:
                e2e.center_in_view(page, e2e.SEL_INPUT)
                page.hover(e2e.SEL_INPUT)
                page.wait_for_selector(f"{SEL_KEYS}.ipyevents-watched")
            else:  # the pointer off the pictures: the slider's handle gets the key
                page.hover(f"{e2e.SEL_SLIDER} .widget-readout")
                page.focus(f"{e2e.SEL_SLIDER} .noUi-handle")
            if where is not None:
                page.evaluate(ARM_JS, [e2e.SEL_UNIT_MAP, *where])
            page.keyboard.press(key)
            unit += step
            e2e.wait_slider_value(page, unit)
            if where is not None:
                ms = page.evaluate("window.__lat")
                if ms < 0:
                    raise RuntimeError(f"unit {unit}: the new pixels never appeared")
                (keys if by_keys else slider).append(ms)
            e2e.wait_frame(page, e2e.SEL_UNIT_MAP, new, timeout=30)
            page.wait_for_timeout(300)
    keys, slider = keys[:samples], slider[:samples]
    ratio = statistics.median(keys) / statistics.median(slider)
    return [
        Row("dashboard keys (ipyevents) -> unit pixels", keys,
            f"{ratio:.2f}x the slider's keys; range {min(keys):.0f}-{max(keys):.0f} ms"),
        Row("unit slider keys -> unit pixels", slider,
            f"reference, interleaved; range {min(slider):.0f}-{max(slider):.0f} ms"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 presses instead of 30")
    args = parser.parse_args()
    from tests.browser import e2e_support as e2e

    samples = 10 if args.quick else 30
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"Chromium on Voila, the embedded net; ms (load average {load} on {os.cpu_count()} "
          "cores)")
    print()
    print(f"| {'measurement':<44} | {'median ms':>9} | {'p90 ms':>7} | {'n':>3} | notes |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 9}|{'-' * 5}|-------|")
    problem = e2e.missing_requirements()
    if problem is None and not e2e.demo_available():
        problem = "ipydeepvis.demo is not available"
    measurements = [("keyboard step", keyboard_step)]
    for name, measure in measurements:
        if problem is not None:
            print(f"| {name:<44} | {'':>9} | {'':>7} | {0:>3} | skipped: {problem} |")
            continue
        for row in measure(samples):
            print(f"| {row.what:<44} | {row.median:9.1f} | {row.p90:7.1f} | "
                  f"{len(row.samples):>3} | {row.note} |", flush=True)


if __name__ == "__main__":
    main()
