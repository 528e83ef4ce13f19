"""The epoch scrubber (issue 5) in a real browser: Voila and JupyterLab, Debian's Chromium.

The page shows ``DeepVis(..., checkpoints=demo.series)`` (``SCRUBBER`` in ``e2e_support``): the
dashboard, and under it the scrubber whose epoch the dashboard follows. What the tests check:

- moving the epoch slider with the keyboard redraws the grid, the enlarged unit and the
  projection exactly as that epoch's model computes them here (tolerance 0), moves the red
  marker of the four bqplot figures to that epoch (the marker path's x against the x axis'
  ticks and against the loss curve's vertex), and moves the strip's #ffcc00 outline to that
  epoch's column;
- Play advances the slider on its own (in the page, no kernel round trip), the kernel follows
  (the epoch label) and the dashboard ends on the last epoch's pictures;
- the page opens on the epoch the view was built with (the last one), in Voila too;
- another unit picked in the dashboard becomes the strip's first row;
- nothing overlaps; screenshots of the dashboard, the strip and the plots go to
  ``test-artifacts/``, and with ``IPYDEEPVIS_README_SHOTS=docs/images`` the Voila run also
  writes the README's pictures there (reduced to a 256-colour palette).

Expected strips come from an :class:`ipydeepvis.EpochScrubber` run in this process on the same
series and probe images (what the kernel should send; that its argmax images are right is
checked against a brute-force scan by the widget tests), with the outline drawn by ``ring``.
"""

from __future__ import annotations

import functools
import io
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

import ipydeepvis as dv
from ipydeepvis.widgets.epochs import NO_METRICS
from tests.browser.e2e_support import (
    ART_DIR,
    HIGHLIGHT,
    REPO,
    SCRUBBER,
    SEL_DASHBOARD,
    SEL_GRID,
    SEL_PATCH,
    SEL_PROJECTION,
    SEL_SLIDER,
    SEL_UNIT_MAP,
    Dashboard,
    Expected,
    State,
    active_toggle,
    layout_problems,
    press_slider_keys,
    read_canvas,
    ring,
    selected_layer,
    set_lab_theme,
    set_slider_via_readout,
    slider_value,
    wait_frame,
    wait_slider_value,
)

pytestmark = pytest.mark.browser

SEL_EPOCH = ".e2e-epoch"
SEL_HANDLE = f"{SEL_EPOCH} .noUi-handle"
SEL_LABEL = ".e2e-epoch-label"
SEL_PLAY = ".e2e-play"
SEL_STRIP = "canvas.e2e-strip"
SEL_FILTERS = "canvas.e2e-filters"
SEL_SCRUBBER = ".epoch-scrubber"
SEL_SCRUB_STATUS = ".e2e-scrubber-status"
FIGURES = (".e2e-loss", ".e2e-acc", ".e2e-change", ".e2e-dead")
PROBE_SIZE = 100  # as in SCRUBBER_CELL
CELL, GAP = 40, 4  # ipydeepvis.widgets.epochs: a strip cell is CELL | CELL, columns GAP apart
README_SHOTS = os.environ.get("IPYDEEPVIS_README_SHOTS")


# ---------------------------------------------------------------------------- expectations


@functools.lru_cache(maxsize=1)
def demo() -> Any:
    return dv.demo.load()  # type: ignore[attr-defined]


def start_image() -> int:
    """The image the scrubber page opens on (a confident one, as in the quickstart)."""
    return SCRUBBER.image_after_run()


def epochs() -> list[int]:
    return [int(e) for e in demo().series.epochs]


@functools.cache
def at_epoch(epoch: int) -> Expected:
    """The dashboard's frames computed from that epoch's weights."""
    d = demo()
    return Expected(d.series.model(epoch), d.dataset, d.classes)


@functools.lru_cache(maxsize=1)
def reference_scrubber() -> Any:
    d = demo()
    layer = at_epoch(epochs()[-1]).default_layer
    return dv.EpochScrubber(d.series, d.dataset, layer=layer, units=[0], probe_size=PROBE_SIZE,
                            threaded=False)


def expected_strip(units: list[int], column: int) -> npt.NDArray[np.uint8]:
    """The strip for ``units`` with the overlay's outline around epoch ``column``."""
    scrubber = reference_scrubber()
    if list(scrubber.units) != units:
        scrubber.units = units  # threaded=False: the scan runs here and now
    frame = scrubber.strip_picture()
    assert frame is not None
    return ring(frame, (column * (2 * CELL + GAP), 0, 2 * CELL, frame.shape[0]))


def outlined_columns(strip: npt.NDArray[np.uint8]) -> list[int]:
    """Epoch columns whose two outermost pixel columns on both sides are the highlight colour
    from top to bottom (the outline is a 2 px ring just inside the column's box)."""
    yellow = np.all(strip == np.array(HIGHLIGHT, np.uint8), axis=2).all(axis=0)
    count = (strip.shape[1] + GAP) // (2 * CELL + GAP)
    found = []
    for k in range(count):
        left = k * (2 * CELL + GAP)
        right = left + 2 * CELL - 2
        if yellow[left:left + 2].all() and yellow[right:right + 2].all():
            found.append(k)
    return found


# ---------------------------------------------------------------------------- page reading


def epoch_index(page: Any) -> int:
    return round(float(page.get_attribute(SEL_HANDLE, "aria-valuenow")))


def shown_epoch(page: Any) -> int:
    text = page.inner_text(SEL_LABEL).strip()
    match = re.fullmatch(r"epoch (\d+)", text)
    assert match, text
    return int(match.group(1))


def wait_epoch(page: Any, epoch: int, timeout: float = 20_000) -> None:
    """Until the slider handle and the kernel-written label both show ``epoch``."""
    index = epochs().index(epoch)
    page.wait_for_function(
        "([h, l, i, e]) => { const hh = document.querySelector(h);"
        " const ll = document.querySelector(l);"
        " return !!hh && !!ll && Math.round(+hh.getAttribute('aria-valuenow')) === i"
        " && ll.innerText.trim() === 'epoch ' + e; }",
        arg=[SEL_HANDLE, SEL_LABEL, index, epoch], timeout=timeout, polling=50)


def strip_units(page: Any) -> list[int]:
    """The units the strip shows, as its status line reports them once a scan is done (the
    scan may still run: a loaded machine scans slower than the tests click)."""
    wait_scanned(page)
    text = page.inner_text(SEL_SCRUB_STATUS)
    match = re.search(r"units \[([\d, ]+)\]", text)
    assert match, text
    return [int(u) for u in match.group(1).split(",")]


def wait_scanned(page: Any, units: list[int] | None = None, timeout: float = 60_000) -> None:
    want = f"scanned {len(epochs())} of {len(epochs())} epochs on {PROBE_SIZE} probe images"
    if units is not None:
        want += f"; layer {at_epoch(epochs()[-1]).default_layer} units {units}"
    page.wait_for_function("([sel, text]) => { const e = document.querySelector(sel);"
                           " return !!e && e.innerText.includes(text); }",
                           arg=[SEL_SCRUB_STATUS, want], timeout=timeout, polling=100)


FIGURE_JS = """(fig) => ({
  lines: Array.from(fig.querySelectorAll('path.line')).map(p => [p.style.stroke,
                                                                 p.getAttribute('d')]),
  axes: Array.from(fig.querySelectorAll('g.axis')).map(a => Array.from(
    a.querySelectorAll('g.tick')).map(t => [t.getAttribute('transform'), t.textContent.trim()]))
})"""


def _points(d: str) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in re.findall(r"[ML]\s*([-\d.e]+)[ ,]([-\d.e]+)", d)]


class NotDrawn(AssertionError):
    """A figure without its marker or axis yet (bqplot rebuilds the views of replaced marks
    asynchronously: the dead-units figure gets new curves when a scan ends)."""


def marker_and_axis(page: Any, figure: str) -> tuple[float, Any, list[tuple[float, float]]]:
    """The red marker's x (px), a function epoch -> px fitted to the x axis' ticks, and the
    vertices of the figure's first curve."""
    info = page.eval_on_selector(figure, FIGURE_JS)
    red = [d for stroke, d in info["lines"] if stroke == "red"]
    if len(red) != 1:
        raise NotDrawn(f"{figure}: {len(red)} red marker paths among {info['lines']}")
    xs = {x for x, _ in _points(red[0])}
    assert len(xs) == 1, f"{figure}: the marker is not vertical: {red[0]}"
    ticks = []
    for axis in info["axes"]:
        moves = [re.fullmatch(r"translate\(([-\d.e+]+),\s*([-\d.e+]+)\)", t or "")
                 for t, _ in axis]
        if axis and all(m and float(m[2]) == 0 for m in moves):  # the x axis: translate(x, 0)
            ticks = [(float(label), float(m[1])) for (_, label), m in zip(axis, moves,
                                                                          strict=True) if m]
    if len(ticks) < 2:
        raise NotDrawn(f"{figure}: no x-axis ticks in {info['axes']}")
    slope, offset = np.polyfit([v for v, _ in ticks], [px for _, px in ticks], 1)
    curve = next((_points(d) for stroke, d in info["lines"]
                  if stroke not in ("red", "") and len(_points(d)) > 3), [])
    return xs.pop(), (lambda epoch: slope * epoch + offset), curve


def wait_markers(page: Any, epoch: int, timeout: float = 10.0) -> dict[str, float]:
    """Until the marker of every figure stands at ``epoch`` on its x axis (bqplot applies
    changes on the next animation frame, so poll); returns the markers' x."""
    t0 = time.monotonic()
    while True:
        found, wrong = {}, []
        for figure in FIGURES:
            try:
                x, epoch_px, _ = marker_and_axis(page, figure)
            except NotDrawn as exc:
                wrong.append(str(exc))
                continue
            found[figure] = x
            # ticks are drawn half a pixel right of the marks (crisp 1 px lines)
            if abs(x + 0.5 - epoch_px(epoch)) > 1.0:
                wrong.append(f"{figure}: marker at x={x:.1f}, epoch {epoch} is at "
                             f"x={epoch_px(epoch) - 0.5:.1f}")
        if not wrong:
            return found
        if time.monotonic() - t0 > timeout:
            raise AssertionError("; ".join(wrong))
        page.wait_for_timeout(50)


def box(page: Any, selector: str) -> tuple[float, float, float, float]:
    """``(left, top, right, bottom)`` of the first element matching ``selector``."""
    r = page.eval_on_selector(selector, "e => { const r = e.getBoundingClientRect();"
                                        " return [r.left, r.top, r.right, r.bottom]; }")
    return (r[0], r[1], r[2], r[3])


def figure_problems(page: Any) -> list[str]:
    """The four plots: drawn at their size, inside the dashboard, not over each other."""
    outer = box(page, SEL_DASHBOARD)
    boxes = {f: box(page, f) for f in FIGURES}
    problems = []
    for name, (left, top, right, bottom) in boxes.items():
        if abs(right - left - 420) > 1 or abs(bottom - top - 260) > 1:
            problems.append(f"{name} is {right - left:.0f}x{bottom - top:.0f}, not 420x260")
        if left < outer[0] - 0.5 or right > outer[2] + 0.5:
            problems.append(f"{name} sticks out of the dashboard")
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            (al, at, ar, ab), (bl, bt, br, bb) = boxes[a], boxes[b]
            if min(ar, br) - max(al, bl) > 0.5 and min(ab, bb) - max(at, bt) > 0.5:
                problems.append(f"{a} and {b} overlap")
    return problems


def kernel_state(dash: Dashboard) -> str | None:
    """``dashboard epoch, scrubber epoch, unit, errors`` from the kernel (JupyterLab only)."""
    return dash.kernel("assert view.wait(); print(view.epoch, view.scrubber.epoch, view.unit, "
                       "len(view._errors.outputs) + len(view.scrubber._errors.outputs))")


# ---------------------------------------------------------------------------- checks


def expect_epoch(dash: Dashboard, epoch: int, unit: int, units: list[int],
                 timeout: float = 30.0) -> None:
    """Grid, enlarged unit and projection of ``epoch``'s model, the markers at ``epoch``, the
    strip outlined on its column; all exact."""
    page, e = dash.page, at_epoch(epoch)
    state = State(e.default_layer, unit, start_image(), "deconvnet")
    wait_frame(page, SEL_GRID, e.grid(state), layout=e.layout(state.layer), timeout=timeout,
               name=f"scrub_{dash.kind}_grid_e{epoch}")
    wait_frame(page, SEL_UNIT_MAP, e.unit_map(state), timeout=timeout,
               name=f"scrub_{dash.kind}_unitmap_e{epoch}")
    wait_frame(page, SEL_PROJECTION, e.projection(state), timeout=timeout,
               name=f"scrub_{dash.kind}_projection_e{epoch}")
    patch = e.patch(state)  # beside the projection cropped to the receptive field
    if patch is not None:
        wait_frame(page, SEL_PATCH, patch, timeout=timeout, name=f"scrub_{dash.kind}_patch")
    column = epochs().index(epoch)
    wait_frame(page, SEL_STRIP, expected_strip(units, column), timeout=timeout,
               name=f"scrub_{dash.kind}_strip_e{epoch}")
    assert outlined_columns(read_canvas(page, SEL_STRIP)) == [column]
    markers = wait_markers(page, epoch)
    # the marker shares its x scale with the curves: the loss curve has a vertex per epoch
    x, _, curve = marker_and_axis(page, ".e2e-loss")
    assert abs(x - curve[epoch - 1][0]) < 0.01, (x, curve)
    assert len(set(markers.values())) == 1, markers  # same layout, same scale: same x
    out = kernel_state(dash)
    if out is not None:
        assert out.split() == [str(epoch), str(epoch), str(unit), "0"], out


def test_the_page_shows_the_epoch_set_in_python(scrubber_page: Dashboard) -> None:
    """The view is built on the last epoch; the page opens there (Play, jslinked to the
    slider, holds the same index, so a front-end that builds the link after both models -
    Voila, a page reload - does not reset the slider to 0)."""
    page = scrubber_page.page
    wait_scanned(page)
    page.wait_for_timeout(300)  # a link that resets the slider does so as the page builds
    assert (epoch_index(page), shown_epoch(page)) == (len(epochs()) - 1, epochs()[-1])


def test_the_first_frames_match_the_epoch_shown(scrubber_page: Dashboard) -> None:
    dash, page = scrubber_page, scrubber_page.page
    wait_scanned(page)
    epoch = epochs()[epoch_index(page)]
    wait_epoch(page, epoch)
    units = strip_units(page)
    assert units[0] == 0, units  # the strip's first row is the dashboard's unit
    expect_epoch(dash, epoch, 0, units, timeout=60)
    assert page.inner_text(".e2e-errors").strip() == ""


def test_epoch_slider_moves_grid_markers_and_outline(scrubber_page: Dashboard) -> None:
    dash, page = scrubber_page, scrubber_page.page
    units = strip_units(page)
    start = epoch_index(page)
    target = 3 if start != 3 else 2  # epoch 5 (or 3)
    old, new = epochs()[start], epochs()[target]
    layer = at_epoch(new).default_layer
    assert not np.array_equal(at_epoch(old).grid(State(layer, 0, start_image())),
                              at_epoch(new).grid(State(layer, 0, start_image())))
    markers_before = wait_markers(page, old)
    press_slider_keys(page, "ArrowRight" if target > start else "ArrowLeft",
                      times=abs(target - start), selector=SEL_EPOCH)
    wait_epoch(page, new)
    expect_epoch(dash, new, 0, units)
    assert wait_markers(page, new) != markers_before
    page.screenshot(path=str(ART_DIR / f"scrubber_{dash.kind}_1_epoch{new}.png"))


def test_play_advances_the_epoch_and_the_dashboard_follows(scrubber_page: Dashboard) -> None:
    dash, page = scrubber_page, scrubber_page.page
    units = strip_units(page)
    buttons = page.locator(f"{SEL_PLAY} button")
    buttons.nth(1).click()  # stop: back to the first epoch
    wait_epoch(page, epochs()[0])
    expect_epoch(dash, epochs()[0], 0, units)
    # record, in the page, every value the slider handle and the epoch label take
    page.evaluate("([h, l]) => { window.__playLog = []; window.__playTimer = setInterval(() => {"
                  " const v = [Math.round(+document.querySelector(h).getAttribute("
                  "'aria-valuenow')), document.querySelector(l).innerText.trim()];"
                  " const last = window.__playLog[window.__playLog.length - 1];"
                  " if (!last || last[1] !== v[0] || last[2] !== v[1])"
                  " window.__playLog.push([performance.now(), ...v]); }, 10); }",
                  [SEL_HANDLE, SEL_LABEL])
    t0 = time.monotonic()
    buttons.nth(0).click()  # play
    wait_epoch(page, epochs()[-1], timeout=30_000)
    played = time.monotonic() - t0
    page.wait_for_selector(f"{SEL_PLAY} button .fa-play", timeout=5_000)  # paused at the end
    log = page.evaluate("() => { clearInterval(window.__playTimer); return window.__playLog; }")
    steps = [v for i, (_, v, _) in enumerate(log) if i == 0 or log[i - 1][1] != v]
    labels = [int(t.split()[-1]) for i, (_, _, t) in enumerate(log)
              if i == 0 or log[i - 1][2] != t]
    assert steps == list(range(len(epochs()))), log  # the slider moved on its own, one by one
    assert labels == sorted(set(labels)) and labels[-1] == epochs()[-1], log
    assert len(labels) >= 3, f"the kernel's label skipped most epochs: {log}"
    times = [t for i, (t, v, _) in enumerate(log) if i > 0 and log[i - 1][1] != v]
    print(f"\n[play] {dash.kind}: last epoch after {played:.1f} s; slider steps "
          f"{np.diff(times).round().tolist()} ms apart; labels seen {labels}")
    expect_epoch(dash, epochs()[-1], 0, units)


def test_the_strip_follows_the_unit_nothing_overlaps_readme_pictures(
        scrubber_page: Dashboard) -> None:
    """At the last epoch (the README shows the trained network, issue 12.16), another unit
    (the strongest on the shown image among those the strip does not show yet) becomes the
    strip's first row; everything checked exactly; then screenshots of the dashboard, the
    strip and the plots."""
    dash, page = scrubber_page, scrubber_page.page
    epoch = epochs()[-1]  # where Play left it
    wait_epoch(page, epoch)
    e = at_epoch(epoch)
    peaks = e.maps(e.default_layer, e.image(start_image())).flatten(1).max(1).values
    shown = strip_units(page)
    unit = max((u for u in range(len(peaks)) if u not in shown), key=lambda u: float(peaks[u]))
    set_slider_via_readout(page, unit)
    wait_slider_value(page, unit)
    wait_scanned(page)
    page.wait_for_function(
        "([sel, u]) => (document.querySelector(sel).innerText.match(/units \\[(\\d+)/) || [])[1]"
        " === String(u)", arg=[SEL_SCRUB_STATUS, unit])
    units = strip_units(page)
    assert units[0] == unit and set(shown) <= set(units), (shown, units)
    expect_epoch(dash, epoch, unit, units)
    assert layout_problems(page) == []  # every canvas, strip and filters included
    assert figure_problems(page) == []

    page.evaluate("() => document.activeElement && document.activeElement.blur()")  # no focus
    page.mouse.move(0, 0)  # ... and no hover style in the pictures

    shots = {
        "dashboard": (["canvas.e2e-input", SEL_GRID, SEL_UNIT_MAP, SEL_PROJECTION,
                       ".e2e-projection-note", SEL_SLIDER, ".e2e-method", ".e2e-position",
                       ".e2e-predictions"], {"top_of": SEL_DASHBOARD}),
        "evolution": ([SEL_STRIP, SEL_FILTERS, SEL_LABEL, ".e2e-progress"],
                      {"top_of": SEL_SCRUBBER}),
        "plots": ([f"{figure}-plot" for figure in FIGURES], {"margin": 0}),
    }
    take_shots(page, shots, dash.kind, readme=dash.kind == "voila")
    if dash.kind == "lab":  # the same view in JupyterLab's dark theme: the README's dark set
        set_lab_theme(page, "JupyterLab Dark")
        try:
            assert layout_problems(page) == []
            assert figure_problems(page) == []
            page.mouse.move(0, 0)
            take_shots(page, shots, "lab-dark", readme=True, suffix="-dark", scroll=True)
        finally:
            set_lab_theme(page, "JupyterLab Light")


def take_shots(page: Any, shots: dict[str, Any], kind: str, *, readme: bool,
               suffix: str = "", scroll: bool = False) -> None:
    """Clips around ``{name: (selectors, clip_around options)}`` to ``test-artifacts/``, and
    to the README's pictures when ``IPYDEEPVIS_README_SHOTS`` names their folder. ``scroll``
    (JupyterLab, whose notebook panel scrolls inside the window): each shot's top element is
    scrolled to the top of the panel first."""
    for name, (selectors, options) in shots.items():
        if scroll:
            page.eval_on_selector(options.get("top_of", selectors[0]),
                                  "e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(300)
        png = page.screenshot(clip=clip_around(page, selectors, **options))
        (ART_DIR / f"scrubber_{kind}_2_{name}.png").write_bytes(png)
        if README_SHOTS and readme:
            out = Path(README_SHOTS)
            out = out if out.is_absolute() else REPO / out
            out.mkdir(parents=True, exist_ok=True)
            save_small_png(png, out / f"{name}{suffix}.png")


PLOT_JS = """(plot) => {
  const box = e => { const r = e.getBoundingClientRect();
                     return [r.left, r.top, r.right, r.bottom]; };
  const shown = e => { const r = e.getBoundingClientRect(); return r.width > 0 || r.height > 0; };
  // bqplot draws axes and plot area in one svg and the marks in another: ask the plot
  const area = plot.querySelector('rect.plotarea_background')
               || plot.querySelector('rect.plotarea_events');
  return {
    legend: Array.from(plot.querySelectorAll('.deepvis-legend-item')).map(
      e => [e.innerText.trim(), box(e), e.querySelector('span').style.borderTopColor]),
    area: area ? box(area) : null,
    lines: Array.from(plot.querySelectorAll('path.line')).filter(shown).map(
      p => [p.style.stroke, box(p)]),
    svgLegend: plot.querySelectorAll('.g_legend text.legendtext').length,
    ticks: Array.from(plot.querySelectorAll('g.axis')).map(a => Array.from(
      a.querySelectorAll('g.tick')).map(t => t.textContent.trim())),
    message: Array.from(plot.querySelectorAll('.deepvis-plot-message')).filter(shown).map(
      e => [e.innerText.trim(), box(e)]),
    plot: box(plot),
  };
}"""

LEGENDS = {".e2e-loss": ["train_loss", "val_loss"], ".e2e-acc": ["train_acc", "val_acc"],
           ".e2e-change": [f"conv{i}" for i in range(1, 6)],  # "features." left out
           ".e2e-dead": [f"conv{i}" for i in range(1, 6)]}


def overlap(a: Any, b: Any) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > 0.5 and min(a[3], b[3]) - max(a[1], b[1]) > 0.5


def plot_info(page: Any, figure: str, root: str = "") -> dict[str, Any]:
    """Legend items, plot area, curves, ticks and message of the plot around ``figure``."""
    selector = f"{root} {figure}-plot".strip()
    return page.eval_on_selector(selector, PLOT_JS)  # type: ignore[no-any-return]


def test_legends_sit_outside_the_plot_areas_and_a_run_without_metrics_says_so(
        scrubber_page: Dashboard) -> None:
    """Issue 12.11: each plot's legend is above its plot area (its box meets neither the plot
    area nor any curve), bqplot draws no legend of its own, epoch ticks are the saved epochs,
    fractions read as per cent; the same checkpoints saved without metrics (the page's second
    scrubber) say "no metrics saved with these checkpoints" where the loss and accuracy plots
    would be, and still plot what the weights give."""
    dash, page = scrubber_page, scrubber_page.page
    wait_scanned(page)
    saved = [str(e) for e in epochs()]
    for figure, labels in LEGENDS.items():
        page.locator(f"{figure}-plot").first.scroll_into_view_if_needed()
        deadline = time.monotonic() + 60
        while True:  # the weight-change and dead-unit curves arrive after the scan
            info = plot_info(page, figure)
            curves = [b for stroke, b in info["lines"] if stroke not in ("red", "")]
            if len(curves) == len(labels) or time.monotonic() > deadline:
                break
            page.wait_for_timeout(100)
        assert len(curves) == len(labels), (figure, info["lines"], page.eval_on_selector(
            f"{figure}-plot", "p => Array.from(p.querySelectorAll('path.line')).map("
                              "e => [e.style.stroke, e.getAttribute('d')])"))
        assert [text for text, _, _ in info["legend"]] == labels, figure
        assert info["svgLegend"] == 0, f"{figure}: bqplot drew a legend in the plot area"
        area = info["area"]
        assert area is not None and area[2] - area[0] > 300, (figure, area)
        for text, item, colour in info["legend"]:
            assert item[3] <= area[1] + 0.5, f"{figure}: legend item {text} {item} over {area}"
            assert not overlap(item, area), (figure, text, item, area)
            assert not any(overlap(item, b) for b in curves), (figure, text, item)
            assert info["plot"][0] - 0.5 <= item[0] and item[2] <= info["plot"][2] + 0.5
            assert colour in {s for s, _ in info["lines"]}, (figure, text, colour)  # its line's
        x_ticks, y_ticks = info["ticks"]
        assert x_ticks == saved, (figure, x_ticks)
        if figure in (".e2e-acc", ".e2e-dead"):  # accuracy 0..100 %, dead units 0..20 %
            top = "100%" if figure == ".e2e-acc" else "20%"
            assert y_ticks[0] == "0%" and y_ticks[-1] == top, (figure, y_ticks)
            assert all(re.fullmatch(r"\d+%", t) for t in y_ticks), y_ticks
        assert len(set(y_ticks)) == len(y_ticks), (figure, y_ticks)  # no repeated labels

    bare = ".e2e-bare-scrubber"  # below the dashboard: out of view, maybe not rendered yet
    page.locator(f"{bare} .e2e-dead-plot").scroll_into_view_if_needed()
    page.wait_for_function(
        "sel => { const e = document.querySelector(sel + ' .e2e-scrubber-status');"
        " return !!e && e.textContent.includes('scanned'); }", arg=bare, timeout=60_000)
    for figure in (".e2e-loss", ".e2e-acc"):
        info = plot_info(page, figure, bare)
        assert [text for text, _ in info["message"]] == [NO_METRICS]
        assert info["area"] is None and info["legend"] == [], info  # no empty axes
        left, top, right, bottom = info["message"][0][1]
        assert (round(right - left), round(bottom - top)) == (420, 260)
    deadline = time.monotonic() + 60
    while True:
        info = plot_info(page, ".e2e-change", bare)
        drawn = [s for s, _ in info["lines"] if s not in ("red", "")]
        if len(drawn) == 5 or time.monotonic() > deadline:
            break
        page.wait_for_timeout(100)
    assert len(drawn) == 5 and info["ticks"][0] == saved, info
    clip = clip_around(page, [f"{bare} {f}-plot" for f in (".e2e-loss", ".e2e-acc",
                                                           ".e2e-change", ".e2e-dead")])
    page.screenshot(path=str(ART_DIR / f"scrubber_{dash.kind}_3_no_metrics.png"), clip=clip)


# ---------------------------------------------------------------------------- screenshots


def clip_around(page: Any, selectors: list[str], top_of: str | None = None,
                margin: int = 8) -> dict[str, float]:
    """The page rectangle holding every element of ``selectors`` (from the top of ``top_of``
    when given, so titles and controls above are included), plus ``margin``."""
    boxes = [box(page, s) for s in selectors]
    left = min(b[0] for b in boxes)
    top = min(b[1] for b in boxes)
    if top_of is not None:
        outer = box(page, top_of)
        left, top = min(left, outer[0]), min(top, outer[1])
    right = max(b[2] for b in boxes)
    bottom = max(b[3] for b in boxes)
    left, top = max(0.0, left - margin), max(0.0, top - margin)
    return {"x": left, "y": top, "width": right + margin - left,
            "height": bottom + margin - top}


def save_small_png(png: bytes, path: Path, colours: int = 256) -> None:
    """A screenshot as a palette PNG (no dithering: flat UI colours stay flat)."""
    picture = Image.open(io.BytesIO(png)).convert("RGB")
    small = picture.quantize(colors=colours, method=Image.Quantize.MEDIANCUT,
                             dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def test_compare_tab_shows_two_epochs_and_their_difference(scrubber_page: Dashboard) -> None:
    """Issue 14.7: the compare tab puts the selected unit at the shown epoch (A) next to the
    epoch picked in the tab (B) and draws B - A; the pixels equal the core's comparison of
    the two epochs' weights computed here."""
    from ipydeepvis.core.compare import compare_projections
    from ipydeepvis.widgets.compare import comparison_frames
    from tests.browser.test_analysis_panes_e2e import open_tab

    dash, page = scrubber_page, scrubber_page.page
    wait_scanned(page)
    epoch_a = shown_epoch(page)
    epoch_b = next(e for e in epochs() if e != epoch_a)
    unit = slider_value(page)
    layer = selected_layer(page)
    method = active_toggle(page, ".e2e-method")
    open_tab(page, "compare")
    page.select_option(".e2e-compare-other select", label=f"epoch {epoch_b}")
    d = demo()
    x = d.dataset[start_image()][0]
    result = compare_projections(dv.Probe(d.series.model(epoch_a)),
                                 dv.Probe(d.series.model(epoch_b)), x, layer, unit,
                                 method=method)
    for part, frame in comparison_frames(result).items():
        wait_frame(page, f"canvas.e2e-compare-{part}", frame,
                   name=f"scrub_{dash.kind}_compare_{part}", timeout=60)
    text = page.inner_text(".e2e-compare-numbers")
    assert "correlation" in text and f"{result.correlation:.3f}" in text, text
    assert page.inner_text(".e2e-errors").strip() == ""
    page.screenshot(path=str(ART_DIR / f"scrubber_{dash.kind}_compare.png"))
