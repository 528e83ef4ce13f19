"""Camera frame to pixels: how long a picture from the browser's camera takes to be analysed.

Browser side (Voila, Debian's Chromium through Playwright with its fake camera, the embedded
net, the default threaded dashboard at the camera's default 5 frames/s): for 30 frames shown,

- *frame -> echo*: from the moment the page drew the frame from the video (``performance.now()``
  in the camera widget) until the kernel's echo of that frame's id (``shown_frame``) arrives,
  i.e. after every canvas message of that frame was sent;
- *frame -> input pixels*: until the input canvas starts showing it. The canvas is polled in
  the page every 4 ms. A frame's canvas messages reach the page just before its echo and
  ipycanvas draws them asynchronously (image decode), so a frame's pixels are the first change
  of the canvas from 50 ms before its echo on, up to the next echo (a frame without such a
  change is left out and counted);
- the time between shown frames (the frame rate the dashboard keeps up with) and the share of
  sent frames shown: the dashboard drops frames that arrive while it is busy (newest wins),
  and the browser sends no new frame while two are unshown.

Python side, in the same run, for reference (no front end attached): one camera frame through
``DeepVis(..., threaded=False)`` (decode like an upload, forward pass, grid, unit, projection,
thumbnails, PNG encoding), and frames pushed at 5 per second into the default threaded
dashboard (push to ``shown_frame``: the kernel's share of the browser figure).

Run with ``python benchmarks/bench_camera.py [--frames N]``. Figures depend on the load of the
machine; the table says what the load average was.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the browser helpers live in tests/browser/e2e_support.py

import ipydeepvis as dv  # noqa: E402

DRAW_SLACK_MS = 50.0  # how long before its echo a frame's pixels may already be drawn
FAKE_CAMERA = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
CELL = """\
import ipydeepvis as dv

demo = dv.demo.load()
view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes, max_images=8, camera=True)
view.add_camera().max_in_flight = {in_flight}
view"""

RECORD_JS = """() => {
  const el = document.querySelector('.deepvis-camera');
  const canvas = document.querySelector('canvas.e2e-input');
  const ctx = canvas.getContext('2d');
  const rec = { echoes: [], changes: [] };
  const signature = () => {
    const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i += 12) h = (h * 31 + d[i]) | 0;
    return h;
  };
  let last = signature();
  rec.encode = [];
  new MutationObserver(() => rec.encode.push(+el.dataset.encodeMs))
    .observe(el, { attributes: true, attributeFilter: ['data-encode-ms'] });
  rec.timer = setInterval(() => {
    const s = signature();
    if (s !== last) { last = s; rec.changes.push(performance.now()); }
  }, 4);
  new MutationObserver(() => {
    const now = performance.now();
    rec.echoes.push({ id: +el.dataset.shownFrame, t: now, latency: +el.dataset.latencyMs });
  }).observe(el, { attributes: true, attributeFilter: ['data-shown-frame'] });
  window.__cam = rec;
}"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def jpeg_frames(count: int) -> list[bytes]:
    """Random 85x64 JPEGs: what the camera sends for the embedded net's 64 px input."""
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (64, 85, 3), dtype=np.uint8)).save(
            buffer, "JPEG", quality=90)
        frames.append(buffer.getvalue())
    return frames


def python_frames(repeats: int) -> tuple[float, list[float], float]:
    """One camera frame through the dashboard without a front end: the median ms of a frame
    with ``threaded=False``; and, on the default threaded worker with frames pushed at 5 per
    second, each shown frame's ms from push to shown and the share of frames shown."""
    demo = dv.demo.load()  # type: ignore[attr-defined]
    frames = jpeg_frames(repeats + 1)
    view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes, max_images=8,
                      threaded=False, camera=True)
    camera = view._camera.camera  # type: ignore[union-attr]
    camera.push_frame(frames[0])  # adds the camera image
    times = []
    for data in frames[1:]:
        start = time.perf_counter()
        camera.push_frame(data)
        times.append(1000 * (time.perf_counter() - start))
    view.close()

    view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes, max_images=8,
                      camera=True)
    camera = view._camera.camera  # type: ignore[union-attr]
    camera.push_frame(frames[0])
    view.wait()
    pushed: dict[int, float] = {}
    shown: dict[int, float] = {}
    camera.observe(lambda c: shown.setdefault(c["new"], time.perf_counter()),
                   names="shown_frame")
    for i, data in enumerate(frames[1:], start=2):
        pushed[i] = time.perf_counter()
        camera.push_frame(data, i)
        time.sleep(0.2)
    view.wait()
    view.close()
    latencies = [1000 * (shown[i] - pushed[i]) for i in pushed if i in shown]
    return statistics.median(times), latencies, len(latencies) / len(pushed)


def browser_frames(count: int, in_flight: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from tests.browser import e2e_support as e2e

    tmp = Path(tempfile.mkdtemp(prefix="bench-camera-"))
    root = tmp / "root"
    root.mkdir()
    e2e._write_notebook(root / "camera.ipynb", [("code", CELL.format(in_flight=in_flight))])
    server = e2e.start_voila(tmp, root, "camera.ipynb")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=e2e.CHROMIUM, headless=True,
                                        args=[*e2e.CHROMIUM_ARGS, *FAKE_CAMERA])
            try:
                page = browser.new_page(viewport=e2e.VIEWPORT)
                page.goto(f"{server.base}/", timeout=180_000)
                page.wait_for_selector(e2e.SEL_GRID, timeout=120_000)
                page.click(".deepvis-camera .deepvis-camera-start")
                page.wait_for_function(  # the camera image exists and is selected
                    "() => +(document.querySelector('.deepvis-camera').dataset.shownFrame"
                    " || 0) >= 2", timeout=60_000)
                page.wait_for_timeout(500)
                page.evaluate(RECORD_JS)
                page.wait_for_function(f"() => window.__cam.echoes.length >= {count + 1}",
                                       timeout=300_000)
                page.click(".deepvis-camera .deepvis-camera-freeze")
                page.wait_for_timeout(2000)  # the last draws land
                rec = page.evaluate("() => { clearInterval(window.__cam.timer);"
                                    " return window.__cam; }")
                sent = int(page.eval_on_selector(".deepvis-camera", "e => e.dataset.sentFrames"))
            finally:
                browser.close()
    finally:
        server.stop()
    return {**rec, "sent": sent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames to time in the browser")
    parser.add_argument("--in-flight", type=int, default=2,
                        help="the camera's max_in_flight (frames sent and not yet shown)")
    args = parser.parse_args()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"load average {load} on {os.cpu_count()} cores; camera at 5 frames/s (200 ms "
          "between frames); Voila + Chromium's fake camera; embedded net (64 px)")
    python_ms, pushed, pushed_share = python_frames(20)
    rec = browser_frames(args.frames, args.in_flight)
    if os.environ.get("BENCH_CAMERA_DUMP"):
        import json

        Path(os.environ["BENCH_CAMERA_DUMP"]).write_text(json.dumps(rec))
    echoes = rec["echoes"][: args.frames + 1]
    changes = rec["changes"]
    to_echo = [e["latency"] for e in echoes[:args.frames]]
    to_pixels = []
    for echo, following in itertools.pairwise(echoes):
        drawn = [c for c in changes if echo["t"] - DRAW_SLACK_MS <= c < following["t"]]
        if drawn:
            to_pixels.append(drawn[0] - (echo["t"] - echo["latency"]))
    first, last = echoes[0]["id"], echoes[args.frames - 1]["id"]
    shown_share = args.frames / (last - first + 1)
    print()
    print(f"| {'measurement':<44} | {'median ms':>9} | {'p90 ms':>7} | notes |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 9}|-------|")
    print(f"| {'Python: one frame, threaded=False':<44} | {python_ms:9.1f} | {'':>7} | decode, "
          "forward, 4 panes, thumbnails, PNG encode; no front end |")
    print(f"| {'Python: 5 frames/s, threaded, push -> shown':<44} | "
          f"{statistics.median(pushed):9.1f} | {percentile(pushed, 0.9):7.1f} | "
          f"{len(pushed)} frames shown, {pushed_share:.2f} of those pushed; the kernel's part |")
    encode = rec["encode"]
    print(f"| {'browser: frame -> sent (JPEG encode)':<44} | {statistics.median(encode):9.1f} | "
          f"{percentile(encode, 0.9):7.1f} | {len(encode)} frames; canvas.toBlob in the page |")
    med, p90 = statistics.median(to_echo), percentile(to_echo, 0.9)
    print(f"| {'browser: frame -> kernel echo':<44} | {med:9.1f} | {p90:7.1f} | "
          f"{len(to_echo)} frames; {med / python_ms:.1f}x the Python frame |")
    if to_pixels:
        med_p, p90_p = statistics.median(to_pixels), percentile(to_pixels, 0.9)
        print(f"| {'browser: frame -> input canvas pixels':<44} | {med_p:9.1f} | {p90_p:7.1f} | "
              f"{len(to_pixels)} of {len(to_echo)} frames matched; {med_p / 200:.2f}x the "
              "frame period; "
              f"{med_p / med:.2f}x the echo |")
    else:
        print(f"| {'browser: frame -> input canvas pixels':<44} | {'nan':>9} | {'nan':>7} | "
              f"no canvas change near any of {len(to_echo)} echoes |")
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(echoes)]
    print(f"| {'browser: time between shown frames':<44} | {statistics.median(gaps):9.1f} | "
          f"{percentile(gaps, 0.9):7.1f} | frames {first}..{last}: {shown_share:.2f} of those "
          f"sent shown (newest wins); {rec['sent']} sent in all; the browser sends while at most "
          f"{args.in_flight} are unshown |")

if __name__ == "__main__":
    main()
