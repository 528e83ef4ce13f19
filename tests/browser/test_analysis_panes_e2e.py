"""The dashboard's analysis panes in a real browser: JupyterLab and Voila, Debian's Chromium.

The page shows ``DeepVis(demo.model, demo.dataset, index=...)`` with a data-set index of the
first 48 images of the embedded data set built in the notebook (``PANES_CELL``). Below the
main row, the analyses sit in tabs; each test opens its tab through the tab bar and drives the
pane with its own buttons. What the tests check:

- optimize (issue 11): Run streams the optimized image to its canvas (non-blank pixels that
  change while the run goes on, read many times in the page during the run) and the objective
  curve gains points (the bqplot path's vertices); the last picture equals
  :func:`ipydeepvis.maximize` run here with the pane's parameters; Stop during a 1,000-step run
  ends it within one step (the kernel's step count, read through a spy on ``stop``) and the
  count stays put afterwards (the progress bar in both environments);
- top images (issue 10): the 3 x 3 sheets of patches and projections equal the index's crops
  rendered here (tolerance 0); clicking a patch makes its data-set image the input, seeded at
  the unit's position there;
- occlusion (issue 13): Run draws the unit's and the class's maps as the core computes them
  here; clicking a cell of the class map shows the input with that patch filled with the
  image's mean colour;
- histogram (issue 14 item 3): opening the tab draws one bar per bin for each series (image,
  probe set), with a height exactly where the core, run here, counted values, and the dead
  fraction the core computes;
- sanity check (issue 14 item 4): the weights toggle re-draws the projection with the weights
  randomized (cascading to the chosen depth), equal to the core's picture computed here, keeps
  the trained one beside it and prints the Spearman and SSIM the core computes; back to
  trained, the trained picture returns.

Each test sets the state it starts from; a screenshot of each open tab goes to
``test-artifacts/``.
"""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

import ipydeepvis as dv
from ipydeepvis import render
from ipydeepvis.core.histogram import activation_histogram
from ipydeepvis.core.indexing import build_index
from ipydeepvis.core.maximize import maximize_params
from ipydeepvis.core.sanity import sanity_check
from ipydeepvis.core.topk_images import patches, projections
from tests.browser.conftest import _open
from tests.browser.e2e_support import (
    CANVAS_BOXES_JS,
    PANE,
    SEL_INPUT,
    SEL_POSITION,
    SEL_PROJECTION,
    SEL_SLIDER,
    SEL_THUMBS,
    THUMB,
    Dashboard,
    Expected,
    State,
    Subject,
    _write_notebook,
    click_canvas_at,
    click_toggle,
    demo_available,
    read_canvas,
    screenshot,
    set_slider_via_readout,
    slider_value,
    wait_active_toggle,
    wait_frame,
    wait_slider_value,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not demo_available(), reason="ipydeepvis.demo is missing"),
]

INDEX_LAYER = "features.conv5"  # the dashboard's first layer (its last conv layer)
INDEXED = 48  # the index covers the data set's first 48 images
PANES_CELL = f"""\
import ipydeepvis as dv
from ipydeepvis.core.indexing import build_index

demo = dv.demo.load()
indexed = [demo.dataset[i] for i in range({INDEXED})]
index = build_index(demo.model, indexed, [{INDEX_LAYER!r}], k=9)
view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes, index=index)
view"""

TAB_TITLES = ["top images", "optimize", "occlusion", "invariance", "correspondence",
              "histogram", "sanity check"]
TAB_NAMES = ["top", "optimize", "occlusion", "invariance", "correspondence", "histogram",
             "sanity"]
SEL_TAB = ".deepvis .lm-TabBar-tab"
SEL_OPEN_TAB = ".deepvis .widget-tab-contents > .widget-box:not(.lm-mod-hidden)"
SEL_OPT_IMAGE = "canvas.e2e-optimize-image"
SEL_OPT_CURVE = ".e2e-optimize-curve"
SEL_OPT_STEPS = ".e2e-optimize-steps"
SEL_TOP_PATCHES = "canvas.e2e-top-patches"
SEL_TOP_PROJECTIONS = "canvas.e2e-top-projections"
SEL_OCC_CLASS = "canvas.e2e-occlusion-class"
SEL_OCC_UNIT = "canvas.e2e-occlusion-unit"
SEL_OCC_OCCLUDED = "canvas.e2e-occlusion-occluded"
SEL_HIST_FIGURE = ".e2e-histogram-figure"
SEL_HIST_DEAD = ".e2e-histogram-dead"
SEL_SANITY = "canvas.e2e-sanity-projection"
SEL_SANITY_TRAINED = "canvas.e2e-sanity-trained"
SEL_SANITY_MODE = ".e2e-sanity-mode"
SEL_SANITY_TEXT = ".e2e-sanity-similarity"
HIST_BINS = 40  # HistogramPane.bins
HIST_FILLS = {"rgb(255, 127, 14)": "image", "rgb(31, 119, 180)": "probe set"}  # the two series
OBJECTIVE_STROKE = "rgb(31, 119, 180)"  # OptimizePane.objective's first colour, #1f77b4
TOP_CELL = 60  # TopImagesPane.cell
TOP_SIDE = 3 * TOP_CELL + 2


def _write_panes(root: Path) -> None:
    _write_notebook(root / "panes.ipynb", [
        ("markdown", "# ipydeepvis: the analysis panes, with a data-set index"),
        ("code", PANES_CELL),
    ])


PANES = Subject("panes", "panes.ipynb", _write_panes, lambda: demo(), unit_after_run=0,
                method_after_run="deconvnet")


@pytest.fixture(scope="module", params=["lab", "voila"])
def dashboard(request: pytest.FixtureRequest, browser: Any,
              tmp_path_factory: pytest.TempPathFactory) -> Any:
    """This module's page (named like conftest's fixture, so a failing test leaves its
    screenshot through conftest's ``_artifacts_on_failure``)."""
    kind = request.param
    yield from _open(kind, browser, PANES, expected(), tmp_path_factory.mktemp(f"panes-{kind}"))


# ---------------------------------------------------------------------------- expectations


@functools.lru_cache(maxsize=1)
def demo() -> Any:
    return dv.demo.load()  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=1)
def expected() -> Expected:
    d = demo()
    return Expected(d.model, d.dataset, d.classes)


@functools.lru_cache(maxsize=1)
def indexed() -> list[Any]:
    return [demo().dataset[i] for i in range(INDEXED)]


@functools.lru_cache(maxsize=1)
def index() -> Any:
    """The notebook's index, built again here (the scan is deterministic)."""
    return build_index(demo().model, indexed(), [INDEX_LAYER], k=9)


def top_sheet(tiles: list[npt.NDArray[np.uint8]]) -> npt.NDArray[np.uint8]:
    """Tiles as TopImagesPane lays them out: 60 px cells, 3 per row, 1 px white gaps, on a
    white 182 x 182 sheet."""
    cells = np.stack([render.resize_nearest(t, TOP_CELL, TOP_CELL) for t in tiles])
    sheet = render.tile_grid(cells, 3, 1, background=255)
    full = np.full((TOP_SIDE, TOP_SIDE, 3), 255, np.uint8)
    full[:sheet.shape[0], :sheet.shape[1]] = sheet
    return render.to_rgba(full)


def picture(image: torch.Tensor) -> npt.NDArray[np.uint8]:
    """An input image as the panes draw it: nearest-neighbour to 192 px, opaque RGBA."""
    return render.to_rgba(render.resize_nearest(render.image_to_uint8(image), PANE, PANE))


# ---------------------------------------------------------------------------- page helpers


def open_tab(page: Any, title: str) -> None:
    page.locator(SEL_TAB, has_text=title).first.click()
    page.wait_for_function(
        "([sel, title]) => { const t = document.querySelector(sel + '.lm-mod-current');"
        " return !!t && t.innerText.trim() === title; }", arg=[SEL_TAB, title])
    page.eval_on_selector(SEL_OPEN_TAB, "e => e.scrollIntoView({block: 'start'})")


def wait_text(page: Any, selector: str, text: str, timeout: float = 120_000) -> str:
    """Wait until the element's text contains ``text``; its text."""
    page.wait_for_function(
        "([sel, text]) => { const e = document.querySelector(sel);"
        " return !!e && e.innerText.includes(text); }",
        arg=[selector, text], timeout=timeout, polling=50)
    return str(page.inner_text(selector))


def set_unit(page: Any, unit: int) -> None:
    if slider_value(page, SEL_SLIDER) != unit:
        set_slider_via_readout(page, unit, SEL_SLIDER)
        wait_slider_value(page, unit, SEL_SLIDER)


def set_steps(page: Any, steps: int) -> None:
    if slider_value(page, SEL_OPT_STEPS) != steps:
        set_slider_via_readout(page, steps, SEL_OPT_STEPS)
        wait_slider_value(page, steps, SEL_OPT_STEPS)
    wait_text(page, ".e2e-optimize-status", "press")  # the kernel has taken the new value


def bar_percent(page: Any, name: str) -> float:
    """The progress bar's filled width in percent."""
    width = page.eval_on_selector(f".e2e-{name}-progress .progress-bar", "e => e.style.width")
    return float(str(width).rstrip("%") or 0)


def tab_layout_problems(page: Any) -> list[str]:
    """The open tab's canvases drawn at another CSS size than their pixels, or overlapping."""
    boxes = page.eval_on_selector(SEL_OPEN_TAB, CANVAS_BOXES_JS)
    problems = [f"{name}: {w}x{h} px drawn at {cw:.0f}x{ch:.0f} CSS px"
                for name, _fluid, w, h, _l, _t, cw, ch in boxes
                if abs(cw - w) > 0.5 or abs(ch - h) > 0.5]
    for i, (a, *_, al, at, aw, ah) in enumerate(boxes):
        for b, *_, bl, bt, bw, bh in boxes[i + 1:]:
            dx = min(al + aw, bl + bw) - max(al, bl)
            dy = min(at + ah, bt + bh) - max(at, bt)
            if dx > 0.5 and dy > 0.5:
                problems.append(f"{a} and {b} overlap by {dx:.0f}x{dy:.0f} CSS px")
    return problems


# Samples, in the page every few ms until the status shows the run's summary, the optimize
# canvas (a hash of its pixels, whether any is opaque and not flat) and the number of vertices
# of the objective's curve; a sample is kept when one of them (or the status) changed.
WATCH_RUN_JS = """([canvasSel, curveSel, statusSel, stroke, timeout]) => {
  window.__watch = new Promise((resolve) => {
    const samples = []; const t0 = performance.now(); let last = '';
    const points = () => {
      let most = 0;
      for (const p of document.querySelectorAll(curveSel + ' path.line')) {
        if (!(p.getAttribute('style') || '').includes('stroke: ' + stroke)) continue;
        const d = p.getAttribute('d') || '';
        most = Math.max(most, d.startsWith('M') ? d.split('L').length : 0);
      }
      return most;
    };
    const tick = () => {
      const c = document.querySelector(canvasSel);
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let hash = 2166136261, lo = 255, hi = 0, opaque = 0;
      for (let i = 0; i < d.length; i++) {
        hash = Math.imul(hash ^ d[i], 16777619) >>> 0;
        if (i % 4 === 3) { if (d[i] > 0) opaque++; continue; }
        lo = Math.min(lo, d[i]); hi = Math.max(hi, d[i]);
      }
      const status = document.querySelector(statusSel).innerText;
      const sample = {t: performance.now() - t0, hash, blank: opaque === 0 || hi - lo < 10,
                      points: points(), computing: status.includes('computing')};
      const key = [hash, sample.points, status].join('|');
      if (key !== last) { samples.push(sample); last = key; }
      if ((status.includes(' steps') && !sample.computing) || sample.t > timeout) {
        resolve(samples);
      } else { setTimeout(tick, 5); }
    };
    tick();
  });
}"""


# ---------------------------------------------------------------------------- the tests


def test_tabs_show_every_analysis(dashboard: Dashboard) -> None:
    page = dashboard.page
    titles = page.eval_on_selector_all(SEL_TAB, "ts => ts.map(t => t.innerText.trim())")
    assert titles == TAB_TITLES
    for title, name in zip(TAB_TITLES, TAB_NAMES, strict=True):
        open_tab(page, title)
        for part in ("run", "stop"):
            button = page.locator(f"{SEL_OPEN_TAB} button.e2e-{name}-{part}")
            assert button.is_visible(), (title, part)
        assert page.locator(f"{SEL_OPEN_TAB} .e2e-{name}-progress").is_visible()
        assert tab_layout_problems(page) == [], title
        screenshot(page, f"{dashboard.kind}_panes_0_tab_{name}", ".deepvis .widget-tab")
    open_tab(page, "top images")


def test_optimize_streams_changing_pixels_and_curve_points(dashboard: Dashboard) -> None:
    dash, page, e = dashboard, dashboard.page, dashboard.expected
    # long enough (a few seconds since the loop got faster) for the page to see it stream
    unit, steps = 7, 400
    set_unit(page, unit)
    open_tab(page, "optimize")
    set_steps(page, steps)
    before = read_canvas(page, SEL_OPT_IMAGE)
    page.evaluate(WATCH_RUN_JS, [SEL_OPT_IMAGE, SEL_OPT_CURVE, ".e2e-optimize-status",
                                 OBJECTIVE_STROKE, 180_000])
    page.click(f"{SEL_OPEN_TAB} .e2e-optimize-run")
    samples = page.evaluate("window.__watch")
    running = [s for s in samples if s["computing"]]
    shown = [s for s in running if not s["blank"]]
    pictures = {s["hash"] for s in shown}
    counts = [s["points"] for s in samples]
    summary = f"{len(samples)} samples: " + ", ".join(
        f"{s['t']:.0f} ms {s['points']} pts{' blank' if s['blank'] else ''}" for s in samples)
    print(f"\n[optimize {dash.kind}] {len(pictures)} pictures while running; {summary}")
    assert len(pictures) >= 3, f"the picture changed only {len(pictures)} times; {summary}"
    assert counts == sorted(counts), summary
    assert len({s["points"] for s in running if s["points"]}) >= 3, summary
    # every step's objective is on the curve at the end: bqplot redraws the line a frame after
    # its data arrive, so the status may show before the last path does
    page.wait_for_function(
        """([sel, stroke, steps]) => Array.from(document.querySelectorAll(sel + ' path.line'))
             .some(p => (p.getAttribute('style') || '').includes('stroke: ' + stroke)
                   && (p.getAttribute('d') || '').split('L').length === steps)""",
        arg=[SEL_OPT_CURVE, OBJECTIVE_STROKE, steps], timeout=15_000)
    final = read_canvas(page, SEL_OPT_IMAGE)
    assert not np.array_equal(final, before)
    status = page.inner_text(".e2e-optimize-status")
    assert f"unit {unit}: best" in status and f"after {steps} steps" in status, status
    # the last picture is the core's optimum for these parameters, computed here
    params = maximize_params(3, decay=1e-4, blur_sigma=1.0, blur_every=4, norm_pct=0.0,
                             contrib_pct=0.0, steps=steps, size=(64, 64), lr_scale="auto")
    result = dv.maximize(demo().model, e.default_layer, unit, params=params, channels=3)
    wait_frame(page, SEL_OPT_IMAGE, picture(result.images[0]), name=f"{dash.kind}_optimize")
    out = dash.kernel("p = view.panes['optimize']; print(len(p.objective.x), "
                      f"repr(p.params()) == {repr(params)!r}, p.bar.value, p.bar.max)")
    if out is not None:
        assert out.split() == [str(steps), "True", str(steps), str(steps)], out
    assert tab_layout_problems(page) == []
    screenshot(page, f"{dash.kind}_panes_1_optimize", ".deepvis .widget-tab")


STOP_SPY = """\
p = view.panes['optimize']
_stops = []
def _spy(pane=p, stop=type(p).stop):
    _stops.append(len(pane._trace))
    stop(pane)
p.stop = _spy
print('ok')"""


def test_optimize_stop_ends_a_long_run_within_one_step(dashboard: Dashboard) -> None:
    dash, page = dashboard, dashboard.page
    open_tab(page, "optimize")
    set_steps(page, 1000)
    spied = dash.kernel(STOP_SPY) is not None
    try:
        page.click(f"{SEL_OPEN_TAB} .e2e-optimize-run")
        wait_text(page, ".e2e-optimize-status", "computing")
        page.wait_for_function(
            "sel => { const b = document.querySelector(sel);"
            " const w = parseFloat(b.style.width); return w >= 3 && w < 100; }",
            arg=".e2e-optimize-progress .progress-bar", timeout=120_000, polling=20)
        page.click(f"{SEL_OPEN_TAB} .e2e-optimize-stop")
        status = wait_text(page, ".e2e-optimize-status", "(stopped)", timeout=30_000)
        stopped = bar_percent(page, "optimize")
        assert 3 <= stopped < 100, (stopped, status)
        assert re.search(r"after (\d+) steps", status), status
        ran = int(re.search(r"after (\d+) steps", status).group(1))  # type: ignore[union-attr]
        assert ran < 1000 and abs(ran / 10 - stopped) < 0.2, (ran, stopped)
        first = dash.kernel("print(_stops, len(p._trace), p.bar.value)")
        time.sleep(1.5)
        assert bar_percent(page, "optimize") == stopped
        assert page.locator(f"{SEL_OPEN_TAB} .e2e-optimize-run").is_enabled()
        assert page.locator(f"{SEL_OPEN_TAB} .e2e-optimize-stop").is_disabled()
        if first is not None:
            # [steps done when Stop was pressed] steps done at the end, the bar's value
            found = re.fullmatch(r"\[(\d+)\] (\d+) (\d+)", first.strip())
            assert found, first  # Stop was pressed once
            pressed, trace, bar = (int(v) for v in found.groups())
            assert pressed <= trace <= pressed + 1, first  # within one step
            assert bar == trace == ran, first
            again = dash.kernel("print(_stops, len(p._trace), p.bar.value)")
            assert again == first, (first, again)  # the count stopped growing
    finally:
        if spied:
            dash.kernel("del p.stop")
    screenshot(page, f"{dash.kind}_panes_2_optimize_stopped", ".deepvis .widget-tab")


def test_top_images_equal_the_index_and_a_click_loads_the_image(dashboard: Dashboard) -> None:
    dash, page, e = dashboard, dashboard.page, dashboard.expected
    assert e.default_layer == INDEX_LAYER
    unit = 7
    open_tab(page, "top images")
    set_unit(page, unit)
    model, scan = demo().model, index()[INDEX_LAYER]
    crops = patches(model, indexed(), scan, unit)
    projected = projections(model, indexed(), scan, unit, method="deconvnet")
    assert len(crops.entries) == 9 and all(entry.value > 0 for entry in crops.entries)
    wait_frame(page, SEL_TOP_PATCHES, top_sheet([render.image_to_uint8(c) for c in crops.images]),
               name=f"{dash.kind}_top_patches", timeout=60)
    wait_frame(page, SEL_TOP_PROJECTIONS,
               top_sheet([render.projection_picture(c) for c in projected.images]),
               name=f"{dash.kind}_top_projections")
    status = wait_text(page, ".e2e-top-status", "9 top images")
    assert f"unit {unit}" in status, status
    assert tab_layout_problems(page) == []
    screenshot(page, f"{dash.kind}_panes_3_top_images", ".deepvis .widget-tab")

    # the second patch of the first row: its data-set image becomes the input, seeded there
    entry = crops.entries[1]
    assert entry.index >= len(dash.images)  # not among the images the strip shows: added
    image = indexed()[entry.index][0]
    click_canvas_at(page, SEL_TOP_PATCHES, TOP_CELL + 1 + TOP_CELL // 2, TOP_CELL // 2)
    seeded = State(INDEX_LAYER, unit, len(dash.images), "deconvnet", tuple(entry.position))
    wait_frame(page, SEL_INPUT, e.input(image, seeded), name=f"{dash.kind}_top_clicked_input")
    wait_active_toggle(page, SEL_POSITION, "clicked")
    wait_frame(page, SEL_PROJECTION, e.projection(seeded, image),
               name=f"{dash.kind}_top_clicked_projection")
    out = dash.kernel("print(view.image_index, tuple(view.clicked), view.position, "
                      f"bool((view._images[view.image_index] == indexed[{entry.index}][0]).all()))")
    if out is not None:
        assert out.strip() == (f"{len(dash.images)} {tuple(entry.position)} clicked True"), out
    dash.images.append(image)  # the strip (and the histogram's probe set) now holds it too
    screenshot(page, f"{dash.kind}_panes_4_top_clicked")


def test_occlusion_maps_and_a_clicked_cell_shows_the_occluded_input(
        dashboard: Dashboard) -> None:
    dash, page, e = dashboard, dashboard.page, dashboard.expected
    unit = 3
    set_unit(page, unit)
    click_canvas_at(page, SEL_THUMBS, THUMB // 2, THUMB // 2)  # image 0
    click_toggle(page, SEL_POSITION, "max")  # the input outlines the field of the max
    wait_active_toggle(page, SEL_POSITION, "max")
    image = e.image(0)
    wait_frame(page, SEL_INPUT, e.input(image, State(INDEX_LAYER, unit)),
               name=f"{dash.kind}_occlusion_input")
    open_tab(page, "occlusion")
    page.click(f"{SEL_OPEN_TAB} .e2e-occlusion-run")
    status = wait_text(page, ".e2e-occlusion-status", "positions")
    side = int(image.shape[-1])
    patch, stride = max(1, side // 4), max(1, side // 16)  # the pane's default sliders
    assert f"patch {patch} px, stride {stride} px" in status, status
    model = demo().model
    unit_map = dv.occlusion(model, image, target=(INDEX_LAYER, unit), patch=patch, stride=stride)
    class_map = dv.occlusion(model, image, target=None, patch=patch, stride=stride)
    rows, cols = len(unit_map.rows), len(unit_map.cols)
    assert f"{rows} x {cols} positions" in status, status
    values = unit_map.values
    wait_frame(page, SEL_OCC_UNIT, render.heat_rgba(values, float(np.nanmin(values)),
                                             float(np.nanmax(values)), (PANE, PANE)),
               name=f"{dash.kind}_occlusion_unit")
    heat = render.heat_rgba(class_map.values, 0.0, 1.0, (PANE, PANE)).astype(np.float64)
    overlay = (picture(image).astype(np.float64) * (1 - 0.6) + heat * 0.6).round().astype(np.uint8)
    wait_frame(page, SEL_OCC_CLASS, overlay, name=f"{dash.kind}_occlusion_class")
    wait_frame(page, SEL_OCC_OCCLUDED, picture(image), name=f"{dash.kind}_occlusion_plain")

    # a cell right of the centre, in the upper third: that patch is filled with the mean colour
    i, j = rows // 3, (2 * cols) // 3
    click_canvas_at(page, SEL_OCC_CLASS, (j + 0.5) * PANE / cols, (i + 0.5) * PANE / rows)
    top, left, bottom, right = unit_map.box(i, j)
    occluded = image.clone()
    occluded[:, top:bottom, left:right] = image.mean(dim=(1, 2), keepdim=True)
    shown = picture(occluded)
    wait_frame(page, SEL_OCC_OCCLUDED, shown, name=f"{dash.kind}_occlusion_clicked")
    scale = PANE / side
    inside = shown[int(np.ceil(top * scale)):int(bottom * scale),
                   int(np.ceil(left * scale)):int(right * scale), :3]
    mean = (image.mean(dim=(1, 2)) * 255).round().to(torch.uint8).numpy()
    assert inside.size and np.all(inside == mean)
    outside = np.ones((PANE, PANE), bool)
    outside[int(top * scale):int(np.ceil(bottom * scale)),
            int(left * scale):int(np.ceil(right * scale))] = False
    assert np.array_equal(shown[outside], picture(image)[outside])
    # the status still reports the run (no later request redrew it "from the cache": the
    # unit and image changes before Run were handled before it, the top pane computing on
    # its own worker rather than in the kernel's message handler)
    status = page.inner_text(".e2e-occlusion-status")
    assert re.search(r"positions, .* · [\d.]+ s$", status.strip()), status
    assert tab_layout_problems(page) == []
    assert heading_problems(page) == []
    screenshot(page, f"{dash.kind}_panes_5_occlusion", ".deepvis .widget-tab")


HEADINGS_JS = """hs => hs.map(h => {
  const range = document.createRange();  // the extent of the heading's text itself
  range.selectNodeContents(h.querySelector('.widget-html-content > div'));
  const text = range.getBoundingClientRect();
  const canvas = h.parentElement.querySelector('canvas').getBoundingClientRect();
  return [h.innerText.trim(), text.left, text.right, canvas.left, canvas.right, canvas.top];
})"""


def heading_problems(page: Any) -> list[str]:
    """Occlusion map headings whose text reaches past their canvas' left or right edge, and
    canvases not level (a heading wrapped onto a second line pushes its canvas down)."""
    found = page.eval_on_selector_all(f"{SEL_OPEN_TAB} .e2e-occlusion-heading", HEADINGS_JS)
    assert len(found) == 4, found
    problems = [f"{text!r} spans x {left:.0f}..{right:.0f}, its canvas {c_left:.0f}.."
                f"{c_right:.0f}" for text, left, right, c_left, c_right, _ in found
                if left < c_left - 0.5 or right > c_right + 0.5]
    tops = [round(top) for *_, top in found]
    if max(tops) - min(tops) > 0.5:
        problems.append(f"the maps' canvases are not level: tops {tops}")
    return problems


# bqplot draws one rect per bin and series; counted per fill colour, with their heights
BAR_RECTS_JS = """(fig) => {
  const out = {};
  for (const r of fig.querySelectorAll('rect.bar')) {
    const fill = getComputedStyle(r).fill;
    out[fill] = out[fill] || [0, 0, 1e9];
    out[fill][0] += 1;
    if (parseFloat(r.getAttribute('height') || '0') > 0) out[fill][1] += 1;
    out[fill][2] = Math.min(out[fill][2], r.getBoundingClientRect().width);
  }
  return out;
}"""
BAR_WIDTHS = {"probe set": 6.0, "image": 3.0}  # px at least: 445 px of plot / 40 bins, padded


def test_histogram_bars_and_the_sanity_toggle(dashboard: Dashboard) -> None:
    """Issue 14 items 3 and 4: Run draws the layer's histogram (one bar per bin and series,
    the dead fraction computed here); the sanity toggle re-draws the projection with
    randomized weights (the core's picture, computed here) and prints the similarity."""
    dash, page, e = dashboard, dashboard.page, dashboard.expected
    click_toggle(page, SEL_POSITION, "max")
    wait_active_toggle(page, SEL_POSITION, "max")
    click_canvas_at(page, SEL_THUMBS, THUMB // 2, THUMB // 2)  # image 0
    image = e.image(0)
    unit = e.alive_units(INDEX_LAYER, 0)[0]
    set_unit(page, unit)
    # the input, with the receptive field of the unit's projection outlined
    wait_frame(page, SEL_INPUT, e.input(image, State(INDEX_LAYER, unit)),
               name=f"{dash.kind}_histogram_input")

    open_tab(page, "histogram")  # showing the tab computes it (no Run needed)
    # the probe set is the dashboard's images (the top-images test may have added one)
    result = activation_histogram(demo().model, INDEX_LAYER, image, torch.stack(dash.images),
                                  bins=HIST_BINS)
    assert result is not None
    units = int(result.probe.unit_max.numel())
    dead = int(result.probe.dead.sum())
    text = wait_text(page, SEL_HIST_DEAD, f"dead units: {dead} of {units}")
    assert f"({result.dead_fraction:.1%})" in text, text
    assert f"the dashboard's {len(dash.images)} images" in text, text
    # one rect per bin and series; those drawn with a height are the bins with values, as
    # the core counted them here
    expected_bars = {"image": [HIST_BINS, int((result.image.counts > 0).sum())],
                     "probe set": [HIST_BINS, int((result.probe.counts > 0).sum())]}
    named = {v: k for k, v in HIST_FILLS.items()}
    want = {named[name]: [*counts, BAR_WIDTHS[name]] for name, counts in expected_bars.items()}
    try:
        page.wait_for_function(
            "([sel, js, want]) => { const got = (eval(js))(document.querySelector(sel));"
            " return Object.keys(got).length === Object.keys(want).length"
            " && Object.entries(want).every(([k, v]) => !!got[k] && got[k][0] === v[0]"
            " && got[k][1] === v[1] && got[k][2] >= v[2]); }",
            arg=[SEL_HIST_FIGURE, BAR_RECTS_JS, want], timeout=30_000, polling=100)
    finally:
        bars = page.eval_on_selector(SEL_HIST_FIGURE, BAR_RECTS_JS)
        print(f"\n[histogram {dash.kind}] rects per series (all, with height): {bars}")
    assert {HIST_FILLS.get(fill, fill): count[:2] for fill, count in bars.items()} == \
        expected_bars
    # drawn as bars, not hairlines (bars sent while the tab was hidden once stayed 0 px wide)
    widths = {HIST_FILLS.get(fill, fill): count[2] for fill, count in bars.items()}
    assert all(widths[name] >= least for name, least in BAR_WIDTHS.items()), bars
    assert tab_layout_problems(page) == []
    screenshot(page, f"{dash.kind}_panes_6_histogram", ".deepvis .widget-tab")

    open_tab(page, "sanity check")
    x = image
    trained = dv.Probe(demo().model).project(x, INDEX_LAYER, unit)[0]
    check = sanity_check(demo().model, x, INDEX_LAYER, unit, depth="features.conv3",
                         mode="cascading")
    torch.testing.assert_close(check.trained, trained)

    def shown(values: torch.Tensor) -> npt.NDArray[np.uint8]:
        return render.to_rgba(render.resize_nearest(render.projection_picture(values),
                                                    PANE, PANE))

    page.select_option(f"{SEL_OPEN_TAB} .e2e-sanity-depth select", "features.conv3")
    wait_frame(page, SEL_SANITY, shown(trained), name=f"{dash.kind}_sanity_trained")
    click_toggle(page, SEL_SANITY_MODE, "cascading")
    wait_frame(page, SEL_SANITY, shown(check.projection), name=f"{dash.kind}_sanity_random")
    assert not np.array_equal(shown(check.projection), shown(trained))
    wait_frame(page, SEL_SANITY_TRAINED, shown(trained), name=f"{dash.kind}_sanity_left")
    text = wait_text(page, SEL_SANITY_TEXT, "Spearman")
    assert f"Spearman (abs) {check.spearman:.3f}" in text, text
    assert f"SSIM {check.ssim:.3f}" in text, text
    assert "features.conv4, features.conv3" in text, text
    assert tab_layout_problems(page) == []
    screenshot(page, f"{dash.kind}_panes_7_sanity", ".deepvis .widget-tab")
    click_toggle(page, SEL_SANITY_MODE, "trained")
    wait_frame(page, SEL_SANITY, shown(trained), name=f"{dash.kind}_sanity_back")
    wait_text(page, SEL_SANITY_TEXT, "weights as trained")
