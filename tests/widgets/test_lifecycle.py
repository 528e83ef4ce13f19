"""Views the way people use them: scripts that end mid-work, views closed and re-run, training
in the same kernel, bad values typed into traits. Each test here reproduces a reported bug."""

from __future__ import annotations

import gc
import math
import os
import subprocess
import sys
import textwrap
import threading
import warnings
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from traitlets import TraitError

import ipydeepvis as dv
from tests.nets import Classifier, assert_same_state, model_state

REPO = Path(__file__).resolve().parents[2]


def registered_widgets() -> set[str]:
    import ipywidgets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return set(ipywidgets.Widget.widgets)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def run_script(code: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=REPO)


@pytest.mark.slow
@pytest.mark.parametrize("view", ["DeepVis", "EpochScrubber"])
def test_a_script_that_ends_while_the_worker_computes_exits_cleanly(view: str) -> None:
    # before: "terminate called without an active exception", exit 134
    build = {
        "DeepVis": "v = dv.DeepVis(Wide(), torch.rand(2, 3, 160, 160)); v.unit = 3",
        "EpochScrubber": "d = dv.demo.load(); v = dv.EpochScrubber(d.series, d.dataset)",
    }[view]
    result = run_script(f"""
        import time, torch
        from torch import nn
        import ipydeepvis as dv

        class Wide(nn.Sequential):
            def __init__(self):
                super().__init__(*[m for _ in range(6) for m in
                                   (nn.Conv2d(3 if _ == 0 else 96, 96, 3, padding=1),
                                    nn.ReLU(inplace=True))])

        {build}
        time.sleep(0.3)  # the worker is now inside a torch kernel
        print("script done")
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "script done" in result.stdout
    assert "terminate called" not in result.stderr


def test_closed_views_free_their_widgets_threads_and_graphs(images: torch.Tensor) -> None:
    model = Classifier()
    before = registered_widgets()
    threads = threading.active_count()
    refs = []
    for _ in range(3):
        view = dv.DeepVis(model, images, classes=list("abcde"))
        view.unit = 3
        assert view.wait(60)
        refs += [weakref.ref(view), weakref.ref(view.probe)]
        view.close()
        del view
    gc.collect()
    left = registered_widgets() - before
    # ipycanvas creates one shared canvas manager on first use; nothing else may stay
    assert len(left) <= 1, len(left)
    assert all(ref() is None for ref in refs)
    for _ in range(100):
        if threading.active_count() <= threads:
            break
        threading.Event().wait(0.05)
    assert threading.active_count() <= threads


@pytest.mark.slow
def test_thirty_demo_dashboards_created_and_closed_keep_memory_flat() -> None:
    result = run_script("""
        import gc, os, warnings, torch, ipywidgets
        import ipydeepvis as dv
        warnings.simplefilter("ignore", DeprecationWarning)

        def rss():
            pages = int(open("/proc/self/statm").read().split()[1])
            return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

        d = dv.demo.load()
        images = torch.stack([d.dataset[i][0] for i in range(8)])

        def cycle():
            view = dv.DeepVis(d.model, images, classes=d.classes)
            view.unit = 3
            view.layer = "features.conv3"
            assert view.wait(60)
            view.close()
            del view
            gc.collect()

        cycle()  # first use: imports, the canvas manager, torch's caches
        widgets, start = set(ipywidgets.Widget.widgets), rss()
        for _ in range(30):
            cycle()
        print(len(set(ipywidgets.Widget.widgets) - widgets), round(rss() - start, 2))
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    left, growth = result.stdout.split()
    assert int(left) == 0
    assert float(growth) < 10.0, f"RSS grew {growth} MiB over 30 create/close cycles"


def test_a_failed_constructor_leaves_nothing_behind() -> None:
    result = run_script("""
        import gc, warnings, torch, ipywidgets, ipycanvas
        from torch import nn
        import ipydeepvis as dv
        warnings.simplefilter("ignore", DeprecationWarning)
        before = set(ipywidgets.Widget.widgets)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
        for bad in [dict(classes=list("abc")), dict(max_images=0), dict(probe_size=0)]:
            try:
                dv.DeepVis(model, torch.rand(2, 3, 8, 8), **bad)
            except dv.DeepVisError as exc:
                print(type(exc).__name__)
        gc.collect()
        print(len(set(ipywidgets.Widget.widgets) - before))
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["InvalidOptionError"] * 3 + ["0"]
    assert "Exception ignored" not in result.stderr, result.stderr


def test_after_close_calls_return_at_once_or_say_why(images: torch.Tensor,
                                                     tmp_path: Path) -> None:
    view = dv.DeepVis(Classifier(), images)
    assert view.wait(60)
    view.close()
    view.unit = 3  # nothing will be drawn any more: accepted, ignored
    started = threading.Event()
    started.set()
    assert view.wait(5) is True
    with pytest.raises(dv.errors.ViewClosedError, match="closed"):
        view.save_png(tmp_path / "view.png")
    with pytest.raises(dv.errors.ViewClosedError, match="closed"):
        view.add_image(images[0])
    assert repr(view) == "DeepVis(closed)"
    view.close()  # twice is fine


def test_every_trait_refuses_bad_values_and_keeps_its_state(images: torch.Tensor) -> None:
    view = dv.DeepVis(Classifier(), images, threaded=False)
    for bad in [math.nan, 0.0, -1.0, 100.0]:
        with pytest.raises(TraitError, match=r"contrast must be between 0\.125 and 16"):
            view.contrast = bad
        assert view.contrast == 1.0 and view._contrast_slider.value == 1.0
    with pytest.raises(TraitError, match="this dashboard has no checkpoints"):
        view.epoch = 99
    assert view.epoch == -1
    with pytest.raises(TraitError, match=r"clicked \(8, 0\) is outside the 8x8 map of "
                                         r"layer 'features.3'"):
        view.clicked = (8, 0)
    assert view.clicked == (0, 0)
    with pytest.raises(TraitError, match="unit 12 is out of range"):
        view.unit = 12
    assert view.unit == 0 and view._unit_slider.value == 0
    view.clicked = (7, 7)
    view.layer = "features.5"  # a 4x4 map: the old click moves inside it
    assert view.clicked == (3, 3)


def test_a_control_given_a_refused_value_is_put_back(images: torch.Tensor) -> None:
    view = dv.DeepVis(Classifier(), images, threaded=False)
    view._unit_slider.max = 50  # as if the front end sent a value the layer does not have
    view._unit_slider.value = 40
    assert view.unit == 0 and view._unit_slider.value == 0
    text = "".join(o["text"] for o in view._errors.outputs)
    assert "unit 40 is out of range for layer 'features.3': 0..11" in text


def test_epoch_outside_the_series_is_refused_and_weights_stay() -> None:
    demo = dv.demo.load()
    view = dv.DeepVis(demo.model, demo.dataset, checkpoints=demo.series, max_images=2,
                      probe_size=8, threaded=False)
    last = demo.series.epochs[-1]
    with pytest.raises(TraitError, match=r"epoch 99 is not a saved epoch; saved epochs are"):
        view.epoch = 99
    assert view.epoch == last and view.scrubber.epoch == last
    view.close()


def test_uint8_images_are_divided_by_255_not_fed_as_0_to_255(images: torch.Tensor) -> None:
    model = Classifier()
    as_uint8 = (images * 255).round().to(torch.uint8)
    view = dv.DeepVis(model, as_uint8, threaded=False)
    reference = dv.DeepVis(model, as_uint8.float() / 255, threaded=False)
    assert np.array_equal(view.frames["grid"], reference.frames["grid"])
    assert np.array_equal(view.frames["projection"], reference.frames["projection"])
    with pytest.raises(dv.errors.InvalidInputError, match=r"dtype torch\.int64"):
        dv.DeepVis(model, as_uint8.long(), threaded=False)


def test_bad_options_are_refused_by_name(images: torch.Tensor, tmp_path: Path) -> None:
    model = Classifier()
    with pytest.raises(dv.errors.InvalidOptionError, match="classes has 3 names but the model "
                                                           "returns 5 outputs"):
        dv.DeepVis(model, images, classes=list("abc"), threaded=False)
    with pytest.raises(dv.errors.InvalidOptionError, match="max_images must be a positive int"):
        dv.DeepVis(model, images, max_images=0, threaded=False)
    view = dv.DeepVis(model, images, threaded=False)
    index = view.add_image(np.random.default_rng(0).random((3, 16, 16), dtype=np.float32))
    assert index == 3 and view.image_index == 3
    with pytest.raises(dv.errors.InvalidInputError, match=r"must be one image \(C, H, W\)"):
        view.add_image(np.zeros((16, 16)))
    for bad, why in [(tmp_path / "v.jpg", "end in '.png'"),
                     (tmp_path, "is a folder"),
                     (tmp_path / "missing" / "v.png", "does not exist")]:
        with pytest.raises(dv.errors.InvalidOptionError, match=why):
            view.save_png(bad)


class BatchNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(8 * 16 * 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.relu(self.bn(self.conv(x)))).flatten(1))


def train_losses(model: nn.Module, steps: int, during: object = None) -> list[float]:
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(3)  # dropout draws from the global generator, as in a user's loop
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    model.train()
    for step in range(steps):
        x = torch.rand(8, 3, 16, 16, generator=generator)
        y = torch.randint(0, 4, (8,), generator=generator)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if callable(during):
            during(step)
    return losses


def test_training_beside_a_rendering_dashboard_trains_exactly_as_without_it(
        images: torch.Tensor) -> None:
    torch.manual_seed(0)
    alone = BatchNormNet()
    torch.manual_seed(0)
    watched = BatchNormNet()
    expected = train_losses(alone, 40)
    view = dv.DeepVis(watched, images)

    def poke(step: int) -> None:  # the user clicks around while training runs
        view.unit = step % 8
        view.method = ("deconvnet", "guided", "gradient")[step % 3]

    losses = train_losses(watched, 40, during=poke)
    assert view.wait(120)
    assert losses == expected  # bit-identical, from step 1 on
    assert all(m.training for m in watched.modules())
    for parameter in watched.parameters():
        parameter.grad = None  # model_state compares .grad with None
    before = model_state(watched)
    view.refresh()  # shows the trained weights
    assert view.wait(120)
    fresh = dv.DeepVis(watched, images, threaded=False)
    fresh.unit, fresh.method = view.unit, view.method
    assert np.array_equal(view.frames["grid"], fresh.frames["grid"])
    assert np.array_equal(view.frames["projection"], fresh.frames["projection"])
    assert_same_state(before, watched)
    view.close()
    fresh.close()
