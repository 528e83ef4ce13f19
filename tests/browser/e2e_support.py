"""What the browser tests and the dashboard benchmark share.

- Servers: JupyterLab and Voila on a free loopback port, with isolated Jupyter dirs (no news
  pop-up, no update check, no virtualised cells), stopped even when start-up fails.
- Subjects: the notebook a server shows (the real quickstart, or the stand-in with a 512-unit
  layer) and the same model and images loaded in the test process.
- Expected pixels: every dashboard frame computed independently in the test process, from
  :class:`ipydeepvis.Probe` and :mod:`ipydeepvis.render`, including the highlight ring the
  overlay layer draws on top (the browser shows one composited ``<canvas>`` per MultiCanvas).
- Page helpers: whole-canvas reads (``getImageData``), waiting for an exact frame, a websocket
  watch that lists the PNG frames the kernel sends, slider / click helpers, and JupyterLab's
  run-all and kernel-exec through ``window.jupyterapp``.

Adapted from the recipe in ``/work/shared/e2e`` (E2E.md explains every gotcha referred to here).
"""

from __future__ import annotations

import atexit
import base64
import functools
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image

import ipydeepvis as dv
from ipydeepvis import render
from ipydeepvis.core.layers import default_layer
from ipydeepvis.core.receptive import Box, ReceptiveField
from tests.widgets.field_oracle import field_frame, input_ring, seed_field

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent  # jupyter / voila next to the running python
ART_DIR = Path(os.environ.get("E2E_ARTIFACTS", REPO / "test-artifacts"))

CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # without these it floods refused connections
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1500, "height": 1300}

HIGHLIGHT = (255, 204, 0, 255)  # TileCanvas.highlight_color "#ffcc00"
MARKER = (0, 229, 255, 255)  # the seed marker on the enlarged unit, panes.MARKER_COLOR "#00e5ff"
NEUTRAL = 128  # the projection pane's grey when the unit has nothing to project
PANE = 192  # input, enlarged unit and projection canvases
CROP = 94  # with crop on (the default): the projection cropped to the seed's receptive field
# and the input patch, 94 px squares side by side; the field outlined on the input in cyan
GRID_WIDTH = 480  # the activation grid's width budget (ipydeepvis.widgets.dashboard)
THUMB, THUMB_PAD, THUMB_COLUMNS = 32, 1, PANE // 33
MAX_IMAGES = 16  # DeepVis(max_images=16): how many data-set images the strip shows

SEL_INPUT = "canvas.e2e-input"
SEL_THUMBS = "canvas.e2e-thumbs"
SEL_GRID = "canvas.e2e-grid"
SEL_UNIT_MAP = "canvas.e2e-unitmap"
SEL_PROJECTION = "canvas.e2e-projection"
SEL_PATCH = "canvas.e2e-patch"
SEL_CROP = ".e2e-crop"
SEL_SLIDER = ".e2e-unit"
SEL_LAYER = ".e2e-layer"
SEL_METHOD = ".e2e-method"
SEL_POSITION = ".e2e-position"
SEL_STATUS = ".e2e-status"
SEL_NOTICE = ".e2e-notice"
SEL_PREDICTIONS = ".e2e-predictions"
SEL_ERRORS = ".e2e-errors"
SEL_DASHBOARD = ".deepvis"
# The FileUpload has no e2e class of its own; it is the only upload button of the dashboard.
SEL_UPLOAD = ".deepvis .widget-upload"


def missing_requirements() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists():
        return f"Chromium not found at {CHROMIUM} (apt-get install -y chromium; .ci/run does it)"
    for tool in ("jupyter-lab", "voila"):
        if not (VENV_BIN / tool).exists():
            return f"{tool} not found next to {sys.executable} (pip install -e '.[test]')"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium through Playwright (Playwright cannot download its own browser here)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=CHROMIUM_ARGS)


# ---------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes],
              any_status: bool = False) -> None:
    """Poll ``url`` until it answers 200 (or any HTTP status with ``any_status``)."""
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except urllib.error.HTTPError:
            if any_status:
                return
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(url)
        time.sleep(0.1)


def isolated_env(tmp: Path) -> dict[str, str]:
    """Fresh Jupyter config/runtime/settings/workspace dirs, so no user state leaks in."""
    env = dict(os.environ)
    settings = tmp / "lab-settings"
    (settings / "@jupyterlab/apputils-extension").mkdir(parents=True, exist_ok=True)
    (settings / "@jupyterlab/notebook-extension").mkdir(parents=True, exist_ok=True)
    (settings / "@jupyterlab/apputils-extension/notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True}))
    (settings / "@jupyterlab/notebook-extension/tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))  # every cell in the DOM
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "lab-workspaces"),
        JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"),
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
    )
    return env


_REAPERS: list[threading.Thread] = []


def reap_servers() -> None:
    """Wait until every stopped server has exited (the end of a test session)."""
    while _REAPERS:
        _REAPERS.pop().join()


atexit.register(reap_servers)


class Server:
    """A Jupyter server process; :meth:`stop` ends it (and its kernels)."""

    def __init__(self, cmd: list[str], tmp: Path, root: Path, ready_url: str, base: str,
                 timeout: float = 120, any_status: bool = False) -> None:
        self.base = base
        self.root = root
        self.log_path = tmp / "server.log"
        self._log = open(self.log_path, "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=isolated_env(tmp), cwd=root, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        try:
            wait_http(ready_url, timeout, self.proc, any_status)
        except BaseException:
            self.stop()  # never leak a server when start-up fails
            raise
        self.startup_s = time.monotonic() - t0

    def stop(self) -> None:
        """SIGTERM (the server shuts its kernels down, 2-4 s) and return: a thread waits for
        the exit, kills a server still there after 20 s, and :func:`reap_servers` joins it."""
        if self.proc.poll() is None:
            self.proc.terminate()
        reaper = threading.Thread(target=self._reap, name=f"reap {self.base}", daemon=True)
        reaper.start()
        _REAPERS.append(reaper)

    def _reap(self) -> None:
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_lab(tmp: Path, root: Path) -> Server:
    port = free_port()
    cmd = [str(VENV_BIN / "jupyter-lab"), "--no-browser", "--allow-root",
           "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
           "--IdentityProvider.token=", "--ServerApp.password=",
           f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
           "--LabApp.expose_app_in_browser=True",  # window.jupyterapp
           "--LabApp.extension_manager=readonly"]  # no PyPI queries
    base = f"http://127.0.0.1:{port}"
    return Server(cmd, tmp, root, f"{base}/api/status", base)


def start_notebook7(tmp: Path, root: Path) -> Server:
    """Jupyter Notebook 7 (the classic notebook's successor, built on JupyterLab's parts)."""
    port = free_port()
    cmd = [str(VENV_BIN / "jupyter-notebook"), "--no-browser", "--allow-root",
           "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
           "--IdentityProvider.token=", "--ServerApp.password=",
           f"--ServerApp.root_dir={root}",
           "--expose-app-in-browser"]  # window.jupyterapp
    base = f"http://127.0.0.1:{port}"
    return Server(cmd, tmp, root, f"{base}/api/status", base)


def choose_layer(page: Any, layers: list[str], name: str) -> None:
    """Pick ``name`` in the layer dropdown and wait for the kernel's answer (its status line
    names the layer): a unit typed before that could be reset by the layer change."""
    page.select_option(f"{SEL_LAYER} select", index=layers.index(name))
    page.wait_for_function("([sel, text]) => document.querySelector(sel).innerText"
                           ".startsWith(text)", arg=[SEL_STATUS, f"layer {name} "],
                           timeout=30_000)


def set_lab_theme(page: Any, theme: str) -> None:
    """Switch JupyterLab's theme as Settings > Theme does; wait until the page has it."""
    page.evaluate("t => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})",
                  theme)
    page.wait_for_function("light => document.body.dataset.jpThemeLight === light",
                           arg="false" if "Dark" in theme else "true", timeout=30_000)
    page.wait_for_timeout(500)  # the theme's CSS is applied; let the figures repaint


def notebook7_open(page: Any, base: str, notebook: str, timeout: float = 90_000) -> None:
    """Open a notebook in Notebook 7 and wait for its kernel to be idle."""
    page.goto(f"{base}/notebooks/{notebook}")
    page.wait_for_function(KERNEL_READY_JS, timeout=timeout)


def start_voila(tmp: Path, root: Path, notebook: str) -> Server:
    port = free_port()
    cmd = [str(VENV_BIN / "voila"), notebook, "--no-browser", f"--port={port}",
           "--Voila.ip=127.0.0.1", "--Voila.port_retries=0", "--show_tracebacks=True"]
    base = f"http://127.0.0.1:{port}"
    # GET / would execute the notebook, so poll a URL that only answers (403 is fine)
    return Server(cmd, tmp, root, f"{base}/voila/files/ping", base, any_status=True)


# ---------------------------------------------------------------------------- subjects


@dataclass(frozen=True)
class State:
    """The traits a dashboard frame depends on."""

    layer: str
    unit: int
    image: int = 0
    method: str = "deconvnet"
    position: str | tuple[int, int] = "max"
    crop: bool = True


@dataclass
class Subject:
    """A notebook a server shows, and the same model and images loaded here.

    ``initial`` is the dashboard's state once every cell ran (the quickstart's second cell
    sets unit 3 and guided backprop).
    """

    name: str
    notebook: str
    write: Callable[[Path], None]  # puts the notebook (and what it imports) into a server root
    load: Callable[[], Any]  # -> object with .model, .dataset, .classes
    unit_after_run: int = 3
    method_after_run: str = "guided"
    image_after_run: Callable[[], int] = lambda: 0  # the quickstart: demo.confident_index()


def _write_notebook(path: Path, cells: Sequence[tuple[str, str]]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) if kind == "code"
                else nbformat.v4.new_markdown_cell(src) for kind, src in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def _write_standin(root: Path) -> None:
    from tests.browser import standin

    shutil.copy(HERE / "standin.py", root / "standin.py")
    _write_notebook(root / "standin.ipynb", [
        ("markdown", "# ipydeepvis stand-in: a seeded net with a 512-unit layer"),
        ("code", standin.NOTEBOOK_CELL),
        ("code", 'view.unit = 3\nview.method = "guided"\nview.wait()\nprint(view)'),
    ])


def _write_quickstart(root: Path) -> None:
    shutil.copy(REPO / "notebooks" / "quickstart.ipynb", root / "quickstart.ipynb")


def _load_standin() -> Any:
    from tests.browser import standin

    return standin.load()


def _load_demo() -> Any:
    return dv.demo.load()  # type: ignore[attr-defined]


# The dashboard with the epoch scrubber (issue 5) on the shipped checkpoint series.
SCRUBBER_CELL = """\
import ipydeepvis as dv

demo = dv.demo.load()
view = dv.DeepVis(demo.model, demo.dataset, checkpoints=demo.series, classes=demo.classes,
                  max_images=8, probe_size=100)
view.image_index = demo.confident_index(among=8)
view"""


# Below it, a stand-alone scrubber on the same checkpoints saved without metrics (issue 12.11).
BARE_SCRUBBER_CELL = """\
import json, shutil
from pathlib import Path

run = Path("run_without_metrics")
shutil.copytree(dv.demo.series_path(), run, dirs_exist_ok=True)
manifest = json.loads((run / "manifest.json").read_text())
manifest.pop("metrics", None)
(run / "manifest.json").write_text(json.dumps(manifest))
bare = dv.EpochScrubber(run, demo.dataset, probe_size=10)
bare.add_class("e2e-bare-scrubber")
bare"""


def _write_scrubber(root: Path) -> None:
    _write_notebook(root / "scrubber.ipynb", [
        ("markdown", "# ipydeepvis: the dashboard following the epoch scrubber"),
        ("code", SCRUBBER_CELL),
        ("markdown", "The same checkpoints saved without metrics:"),
        ("code", BARE_SCRUBBER_CELL),
    ])


STANDIN = Subject("standin", "standin.ipynb", _write_standin, _load_standin)
QUICKSTART = Subject("quickstart", "quickstart.ipynb", _write_quickstart, _load_demo,
                     image_after_run=lambda: _load_demo().confident_index())
SCRUBBER = Subject("scrubber", "scrubber.ipynb", _write_scrubber, _load_demo, unit_after_run=0,
                   method_after_run="deconvnet",
                   image_after_run=lambda: _load_demo().confident_index(among=8))


@functools.lru_cache(maxsize=1)
def demo_available() -> bool:
    """True once ``dv.demo.load()`` works (the quickstart notebook needs it)."""
    try:
        dv.demo.load()  # type: ignore[attr-defined]
    except Exception:
        return False
    return True


# ---------------------------------------------------------------------------- expected pixels


def ring(frame: npt.NDArray[np.uint8], box: tuple[int, int, int, int] | None,
         color: Sequence[int] = HIGHLIGHT) -> npt.NDArray[np.uint8]:
    """``frame`` with the overlay's highlight on top: ``stroke_rect(x+1, y+1, w-2, h-2)`` with
    line width 2 covers exactly the two outermost pixel rows/columns inside the box."""
    out = frame.copy()
    if box is None:
        return out
    x, y, w, h = box
    height, width = out.shape[:2]
    mask = np.zeros((height, width), bool)
    mask[max(0, y):min(height, y + h), max(0, x):min(width, x + w)] = True
    mask[y + 2:y + h - 2, x + 2:x + w - 2] = False
    out[mask] = color
    return out


class Expected:
    """Every dashboard frame for a state, computed from the model in this process."""

    def __init__(self, model: torch.nn.Module, dataset: Any, classes: Sequence[str]) -> None:
        count = min(MAX_IMAGES, len(dataset))
        self.images: list[torch.Tensor] = []
        for i in range(count):
            item = dataset[i]
            self.images.append((item[0] if isinstance(item, (tuple, list)) else item).float())
        self.classes = list(classes)
        self.probe = dv.Probe(model, input_shape=tuple(self.images[0].shape))
        self.layers = {layer.name: layer for layer in self.probe.layers
                       if layer.shape is not None and len(layer.shape) in (1, 3)}
        # as the dashboard: the deepest conv, or its output rectified by a functional ReLU
        start = default_layer(list(self.layers.values()), modules=False)
        assert start is not None, "the subject has no conv layer"
        self.default_layer = start.name
        self._fields: ReceptiveField | None = None

    @classmethod
    def of(cls, subject: Subject) -> Expected:
        loaded = subject.load()
        return cls(loaded.model, loaded.dataset, loaded.classes)

    def image(self, index: int) -> torch.Tensor:
        return self.images[index]

    def maps(self, layer: str, image: torch.Tensor) -> torch.Tensor:
        return self.probe.activations(image, [layer])[layer][0]

    def alive_units(self, layer: str, index: int = 0) -> list[int]:
        """Units whose map has a positive value on image ``index`` (their pictures are not
        all black, so a test that moves to them sees the canvases change)."""
        maps = self.maps(layer, self.image(index))
        return [u for u in range(maps.shape[0]) if float(maps[u].max()) > 0]

    def layout(self, layer: str) -> render.GridLayout:
        return render.grid_layout(int(self.layers[layer].channels or 1), GRID_WIDTH)

    def tile_box(self, layer: str, unit: int) -> tuple[int, int, int, int]:
        layout = self.layout(layer)
        y, x = layout.origin(unit)
        return (x, y, layout.tile, layout.tile)

    def grid(self, state: State, image: torch.Tensor | None = None,
             highlight: bool = True) -> npt.NDArray[np.uint8]:
        image = self.image(state.image) if image is None else image
        frame = render.activation_grid_rgba(self.maps(state.layer, image),
                                            self.layout(state.layer))
        return ring(frame, self.tile_box(state.layer, state.unit) if highlight else None)

    def unit_map(self, state: State, image: torch.Tensor | None = None,
                 scale: str = "unit") -> npt.NDArray[np.uint8]:
        """The enlarged unit, white = its own largest value (or the layer's), with the seed
        marker on the overlay: the clicked cell, else the strongest."""
        image = self.image(state.image) if image is None else image
        maps = self.maps(state.layer, image)
        unit_map = maps[state.unit]
        top = float(unit_map.max()) if scale == "unit" else float(maps.clamp(min=0).max())
        frame = render.unit_map_rgba(unit_map, PANE, max(top, 0.0))
        if unit_map.dim() != 2:
            return frame
        cell = state.position if isinstance(state.position, tuple) else divmod(
            int(unit_map.flatten().argmax()), unit_map.shape[1])
        return ring(frame, render.cell_box(cell, tuple(unit_map.shape), PANE), MARKER)

    def seed_value(self, state: State, image: torch.Tensor | None = None) -> float:
        """The activation a projection of ``state`` is seeded with (<= 0: nothing shown)."""
        image = self.image(state.image) if image is None else image
        unit_map = self.maps(state.layer, image)[state.unit]
        if isinstance(state.position, tuple):
            return float(unit_map[state.position])
        return float(unit_map.max())

    def field(self, state: State, image: torch.Tensor | None = None) -> Box | None:
        """The receptive field the projection pane crops to for ``state`` (None: not cropped,
        because crop is off or the unit has nothing to project)."""
        image = self.image(state.image) if image is None else image
        if not state.crop or self.seed_value(state, image) <= 0:
            return None
        if self._fields is None:
            self._fields = ReceptiveField(self.probe, tuple(image.shape))
        return seed_field(self.probe, image, state.layer, state.unit, state.position,
                          self._fields)

    def projection(self, state: State,
                   image: torch.Tensor | None = None) -> npt.NDArray[np.uint8]:
        image = self.image(state.image) if image is None else image
        if self.seed_value(state, image) <= 0:  # a silent unit: a neutral frame
            frame = np.full((PANE, PANE, 4), NEUTRAL, np.uint8)
            frame[..., 3] = 255
            return frame
        projection = self.probe.project(image, state.layer, state.unit, method=state.method,
                                        position=state.position)[0]
        picture = render.projection_picture(projection)
        box = self.field(state, image)
        if box is not None:
            return field_frame(picture, box)
        return render.to_rgba(render.resize_nearest(picture, PANE, PANE))

    def patch(self, state: State,
              image: torch.Tensor | None = None) -> npt.NDArray[np.uint8] | None:
        """The input patch beside the cropped projection (None: not shown)."""
        image = self.image(state.image) if image is None else image
        box = self.field(state, image)
        return None if box is None else field_frame(render.image_to_uint8(image), box)

    def input(self, image: torch.Tensor, state: State | None = None) -> npt.NDArray[np.uint8]:
        """The input pane; with ``state``, the receptive field its projection is cropped to
        outlined on it (none for a field covering the whole image)."""
        frame = render.to_rgba(render.resize_nearest(render.image_to_uint8(image), PANE, PANE))
        box = None if state is None else self.field(state, image)
        if box is None:
            return frame
        return ring(frame, input_ring(box, tuple(image.shape[1:])), MARKER)

    def thumbnails(self, images: Sequence[torch.Tensor], selected: int) -> npt.NDArray[np.uint8]:
        """Transparent sheet (the page shows through), 32 px tiles in rows of 5 with 1 px
        gaps, the selected one ringed."""
        layout = render.GridLayout(len(images), THUMB_COLUMNS, THUMB, THUMB_PAD)
        height, width = layout.size
        sheet = np.zeros((height, width, 4), np.uint8)
        for k, img in enumerate(images):
            y, x = layout.origin(k)
            sheet[y:y + THUMB, x:x + THUMB] = render.to_rgba(render.resize_nearest(
                render.image_to_uint8(img), THUMB, THUMB))
        y, x = layout.origin(selected)
        return ring(sheet, (x, y, THUMB, THUMB))

    def top_class(self, image: torch.Tensor) -> str:
        logits = self.probe.output(image)[0]
        return self.classes[int(logits.argmax())]


def decode_upload(png: bytes, shape: Sequence[int]) -> torch.Tensor:
    """What an uploaded picture becomes: RGB (or L), then torchvision's ``Resize(short side)``
    and ``CenterCrop`` to the model's (square) size."""
    import torchvision.transforms.functional as TF

    channels, height, width = shape
    assert height == width, "the torchvision reference is for square inputs"
    picture = Image.open(__import__("io").BytesIO(png))
    picture = picture.convert("L" if channels == 1 else "RGB")
    picture = TF.center_crop(TF.resize(picture, height), [height, width])
    array = np.asarray(picture, dtype=np.float32).reshape(height, width, -1) / 255
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------------------- the open page


class Dashboard:
    """One open page showing the dashboard, in JupyterLab (``kind == "lab"``), Notebook 7
    (``"notebook7"``) or Voila."""

    def __init__(self, kind: str, page: Any, server: Server, subject: Subject,
                 expected: Expected, pngs: PngWatch, logs: list[str]) -> None:
        self.kind = kind
        self.page = page
        self.server = server
        self.subject = subject
        self.expected = expected
        self.pngs = pngs
        self.logs = logs
        self.images = list(expected.images)  # what the thumbnail strip should show
        self.timings: dict[str, float] = {}
        self.touched = False  # a test changed the page's state (the quickstart pages are shared)

    def kernel(self, code: str) -> str | None:
        """Output of ``code`` run in the notebook's kernel (JupyterLab and Notebook 7; None in
        Voila)."""
        if self.kind == "voila":
            return None
        out = lab_kernel_exec(self.page, code)
        assert "ERROR" not in out, out
        return out

    def python_state(self) -> str | None:
        """``layer unit method image_index position errors`` as the kernel sees them, once the
        worker is idle (JupyterLab only)."""
        return self.kernel("assert view.wait(); print(view.layer, view.unit, view.method, "
                           "view.image_index, view.position, len(view._errors.outputs))")


# ---------------------------------------------------------------------------- page helpers

READ_CANVAS_JS = """(c) => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = '';
  for (let i = 0; i < d.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
  }
  return [c.width, c.height, btoa(s)];
}"""


def read_canvas(page: Any, selector: str) -> npt.NDArray[np.uint8]:
    """The whole composited canvas as ``(H, W, 4)`` uint8 (all layers of a MultiCanvas)."""
    width, height, data = page.eval_on_selector(selector, READ_CANVAS_JS)
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 4)


def describe_difference(actual: npt.NDArray[np.uint8], expected: npt.NDArray[np.uint8],
                        layout: render.GridLayout | None = None) -> str:
    if actual.shape != expected.shape:
        return f"shape {actual.shape} != expected {expected.shape}"
    differ = np.any(actual != expected, axis=2)
    ys, xs = np.nonzero(differ)
    text = (f"{len(ys)} of {differ.size} pixels differ, in x {xs.min()}..{xs.max()}, "
            f"y {ys.min()}..{ys.max()}; first at (x={xs[0]}, y={ys[0]}): "
            f"{actual[ys[0], xs[0]].tolist()} != {expected[ys[0], xs[0]].tolist()}")
    if layout is not None:
        units = sorted({layout.unit_at(int(x), int(y)) for y, x in zip(ys, xs, strict=True)},
                       key=lambda u: -1 if u is None else u)
        text += f"; tiles with differences: {units[:20]}"
    return text


def save_mismatch(name: str, actual: npt.NDArray[np.uint8],
                  expected: npt.NDArray[np.uint8]) -> None:
    ART_DIR.mkdir(exist_ok=True)
    for which, frame in [("actual", actual), ("expected", expected)]:
        Image.fromarray(np.ascontiguousarray(frame), "RGBA").save(
            ART_DIR / f"MISMATCH_{name}_{which}.png")


def wait_frame(page: Any, selector: str, expected: npt.NDArray[np.uint8], *,
               timeout: float = 30.0, layout: render.GridLayout | None = None,
               name: str = "frame") -> float:
    """Wait until the canvas shows exactly ``expected`` (tolerance 0); returns seconds waited."""
    t0 = time.monotonic()
    actual = None
    while time.monotonic() - t0 < timeout:
        try:
            actual = read_canvas(page, selector)
        except Exception:  # not in the DOM yet
            actual = None
        if actual is not None and actual.shape == expected.shape and np.array_equal(
                actual, expected):
            return time.monotonic() - t0
        page.wait_for_timeout(100)
    if actual is None:
        raise AssertionError(f"{selector}: no canvas after {timeout:.0f} s")
    save_mismatch(name, actual, expected)
    raise AssertionError(f"{selector} after {timeout:.0f} s: "
                         f"{describe_difference(actual, expected, layout)}")


def pixel(page: Any, selector: str, x: int, y: int) -> list[int]:
    return list(page.eval_on_selector(
        selector, "(c, [x, y]) => Array.from(c.getContext('2d').getImageData(x, y, 1, 1).data)",
        [x, y]))


class PngWatch:
    """Sizes ``(width, height)`` of the PNG images the kernel sends over the page's websockets
    (``put_image_data`` of an RGBA frame travels as a raw PNG buffer)."""

    SIGNATURE = b"\x89PNG\r\n\x1a\n"

    def __init__(self, page: Any) -> None:
        self.sizes: list[tuple[int, int]] = []
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            return
        start = payload.find(self.SIGNATURE)
        while start >= 0:
            ihdr = payload[start + 16:start + 24]
            if len(ihdr) == 8:
                self.sizes.append((int.from_bytes(ihdr[:4], "big"),
                                   int.from_bytes(ihdr[4:], "big")))
            start = payload.find(self.SIGNATURE, start + 8)

    def mark(self) -> int:
        return len(self.sizes)

    def since(self, mark: int) -> list[tuple[int, int]]:
        return self.sizes[mark:]


def slider_value(page: Any, selector: str = SEL_SLIDER) -> int:
    return int(page.inner_text(f"{selector} .widget-readout"))


def wait_slider_value(page: Any, value: int, selector: str = SEL_SLIDER,
                      timeout: float = 15_000) -> None:
    page.wait_for_function(
        "([sel, v]) => { const r = document.querySelector(sel + ' .widget-readout');"
        " return !!r && r.innerText.trim() === String(v); }",
        arg=[selector, value], timeout=timeout, polling=50)


def set_slider_via_readout(page: Any, value: int, selector: str = SEL_SLIDER) -> None:
    """Type into the contenteditable readout and press Enter (one value change)."""
    readout = page.locator(f"{selector} .widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(str(value))
    page.keyboard.press("Enter")


def press_slider_keys(page: Any, key: str, times: int = 1, selector: str = SEL_SLIDER) -> None:
    """Keyboard on the focused noUiSlider handle (each press is one value change). The pointer
    goes onto the handle first, as a user's would: over the dashboard's pictures, keys belong
    to the dashboard's keyboard navigation (ipyevents), not to the focused slider."""
    page.hover(f"{selector} .noUi-handle")
    page.focus(f"{selector} .noUi-handle")
    for _ in range(times):
        page.keyboard.press(key)


def click_toggle(page: Any, selector: str, label: str) -> None:
    page.locator(f"{selector} button", has_text=label).first.click()


def active_toggle(page: Any, selector: str) -> str:
    return page.locator(f"{selector} button.mod-active").inner_text().strip()


def wait_active_toggle(page: Any, selector: str, label: str, timeout: float = 15_000) -> None:
    page.wait_for_function(
        "([sel, label]) => { const b = document.querySelector(sel + ' button.mod-active');"
        " return !!b && b.innerText.trim() === label; }",
        arg=[selector, label], timeout=timeout, polling=50)


def selected_layer(page: Any) -> str:
    """The layer name shown by the layer dropdown (its label starts with the name)."""
    text = page.eval_on_selector(f"{SEL_LAYER} select", "s => s.selectedOptions[0].textContent")
    return str(text).split()[0]


def center_in_view(page: Any, selector: str) -> None:
    """Scroll the element to the middle of its scroller: ipycanvas focuses the canvas before it
    reads the bounding rect, so a partly hidden canvas would scroll and shift the click."""
    page.eval_on_selector(selector, "e => e.scrollIntoView({block: 'center', inline: 'center'})")


def click_canvas_at(page: Any, selector: str, x: float, y: float) -> None:
    """Click at canvas pixel ``(x, y)`` (its centre), whatever the CSS size of the element."""
    center_in_view(page, selector)
    w, h, cw, ch = page.eval_on_selector(
        selector,
        "c => { const r = c.getBoundingClientRect();"
        " return [c.width, c.height, r.width, r.height]; }")
    page.click(selector, position={"x": (x + 0.5) * cw / w, "y": (y + 0.5) * ch / h})


# Rendered canvases only: one inside a hidden tab (the analyses below the main row) has no
# client rects, and no box a person could see.
CANVAS_BOXES_JS = """(root) => Array.from(root.querySelectorAll('canvas'))
  .filter(c => c.getClientRects().length > 0).map(c => {
  const r = c.getBoundingClientRect();
  const name = Array.from(c.classList).find(k => k.startsWith('e2e-')) || c.className;
  const fluid = c.classList.contains('deepvis-fluid');
  return [name, fluid, c.width, c.height, r.left, r.top, r.width, r.height]; })"""


def layout_problems(page: Any) -> list[str]:
    """What a person would see as broken in the dashboard's layout: a canvas drawn at another
    CSS size than its pixels (distorted; a fluid canvas may be drawn smaller, at its own
    aspect ratio), two canvases overlapping, or a canvas sticking out of the dashboard's box
    (clipped by the output area). Canvases not displayed (an analysis tab not open) are
    skipped."""
    root = page.eval_on_selector(SEL_DASHBOARD,
                                 "e => { const r = e.getBoundingClientRect();"
                                 " return [r.left, r.top, r.right, r.bottom]; }")
    boxes = page.eval_on_selector(SEL_DASHBOARD, CANVAS_BOXES_JS)
    problems = []
    boxes = [b for b in boxes if b[6] > 0 or b[7] > 0]  # canvases in a hidden tab: not seen
    for name, fluid, w, h, left, _top, css_w, css_h in boxes:
        scaled = fluid and css_w <= w + 0.5 and abs(css_h - css_w * h / w) <= 1.0
        if (abs(css_w - w) > 0.5 or abs(css_h - h) > 0.5) and not scaled:
            problems.append(f"{name}: {w}x{h} px drawn at {css_w:.0f}x{css_h:.0f} CSS px")
        if left < root[0] - 0.5 or left + css_w > root[2] + 0.5:
            problems.append(f"{name}: x {left:.0f}..{left + css_w:.0f} outside the dashboard "
                            f"{root[0]:.0f}..{root[2]:.0f}")
    boxes = [[name, *rest] for name, _fluid, *rest in boxes]
    for i, (a, *_, al, at, aw, ah) in enumerate(boxes):
        for b, *_, bl, bt, bw, bh in boxes[i + 1:]:
            dx = min(al + aw, bl + bw) - max(al, bl)
            dy = min(at + ah, bt + bh) - max(at, bt)
            if dx > 0.5 and dy > 0.5:
                problems.append(f"{a} and {b} overlap by {dx:.0f}x{dy:.0f} CSS px")
    return problems


def screenshot(page: Any, name: str, selector: str = SEL_DASHBOARD) -> Path:
    ART_DIR.mkdir(exist_ok=True)
    path = ART_DIR / f"{name}.png"
    locator = page.locator(selector).first
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(path))
    return path


# ---------------------------------------------------------------------------- JupyterLab

KERNEL_READY_JS = """() => { const app = window.jupyterapp;
  const nb = app && app.shell.currentWidget;
  const s = nb && nb.sessionContext && nb.sessionContext.session;
  const k = s && s.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle'; }"""

RUN_ALL_JS = """async () => { const app = window.jupyterapp; const nb = app.shell.currentWidget;
  await nb.context.ready; await nb.sessionContext.ready;
  return await app.commands.execute('notebook:run-all-cells'); }"""

ALL_EXECUTED_JS = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .filter(c => c.model.type === 'code').every(c => c.model.executionCount !== null)"""

CELL_ERRORS_JS = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .filter(c => c.model.type === 'code')
  .flatMap(c => { const o = c.model.outputs; const out = [];
    for (let i = 0; i < o.length; i++) { const j = o.get(i).toJSON();
      if (j.output_type === 'error') out.push(j.ename + ': ' + j.evalue); }
    return out; })"""

KERNEL_EXEC_JS = """async (code) => {
  const k = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const fut = k.requestExecute({code, store_history: false, silent: false});
  let out = '';
  fut.onIOPub = (msg) => { const t = msg.header.msg_type;
    if (t === 'stream') out += msg.content.text;
    if (t === 'execute_result') out += msg.content.data['text/plain'] + '\\n';
    if (t === 'error') out += 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue + '\\n'; };
  await fut.done; return out; }"""


def lab_open(page: Any, base: str, notebook: str, timeout: float = 90_000) -> None:
    """Open a notebook in a throw-away workspace and wait for its kernel to be idle."""
    workspace = f"e2e-{uuid.uuid4().hex[:8]}"
    page.goto(f"{base}/lab/workspaces/{workspace}/tree/{notebook}?reset")
    page.wait_for_function(KERNEL_READY_JS, timeout=timeout)
    page.evaluate("() => { const app = window.jupyterapp;"
                  " app.shell.activateById(app.shell.currentWidget.id); }")


def lab_run_all(page: Any, retries: int = 1) -> int:
    """Run every cell through ``notebook:run-all-cells`` (resolves after the last cell), check
    each code cell got an execution count, retry once if not (JupyterLab silently skips when
    the session has no kernel yet); returns the retries used."""
    for attempt in range(retries + 1):
        assert page.evaluate(RUN_ALL_JS) is True
        if page.evaluate(ALL_EXECUTED_JS):
            errors = page.evaluate(CELL_ERRORS_JS)
            assert not errors, f"notebook cells raised: {errors}"
            return attempt
        page.wait_for_function(KERNEL_READY_JS, timeout=60_000)
    raise AssertionError("notebook:run-all-cells did not execute the cells")


def lab_kernel_exec(page: Any, code: str) -> str:
    """Run ``code`` in the notebook's kernel (nothing goes into the notebook); its output."""
    return str(page.evaluate(KERNEL_EXEC_JS, code))
