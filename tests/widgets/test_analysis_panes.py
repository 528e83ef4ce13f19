"""The analysis panes headless: what they draw equals the core's own result, Run / Stop / cache
behave, and they never hold up the main panes."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import torch

import ipydeepvis as dv
from ipydeepvis import render
from ipydeepvis.widgets.panes import PANE


@pytest.fixture(scope="module")
def demo() -> object:
    return dv.demo.load()


def make(demo: object, **kw: object) -> dv.DeepVis:
    return dv.DeepVis(demo.model, demo.dataset, classes=demo.classes, max_images=4,
                      threaded=False, **kw)


def test_occlusion_pane_draws_the_core_maps_and_the_clicked_occlusion(demo: object) -> None:
    view = make(demo)
    pane = view.panes["occlusion"]
    assert "press <b>Run</b>" in pane.status.value and pane.unit_canvas.frame is None
    pane.patch.value, pane.stride.value = 16, 8
    pane.request(run=True)
    image = view._images[0]
    unit_map = dv.occlusion(demo.model, image, target=("features.conv5", 0), patch=16,
                            stride=8)
    class_map = dv.occlusion(demo.model, image, target=None, patch=16, stride=8)
    values = unit_map.values
    expected = render.heat_rgba(values, float(np.nanmin(values)), float(np.nanmax(values)),
                         (PANE, PANE))
    assert np.array_equal(view.frames["occlusion_unit"], expected)
    label = view.frames["occlusion_labels"]
    assert label.shape == (PANE, PANE, 4)
    # one colour per class of the label map, as many distinct colours as classes found
    colours = {tuple(px) for px in label.reshape(-1, 4)[:, :3].tolist()}
    assert len(colours) == len(np.unique(class_map.label))
    pane.click(0, 0)  # the top-left patch position
    shown = view.frames["occlusion_occluded"]
    top, left, _bottom, _right = unit_map.box(0, 0)
    scale = PANE / image.shape[-1]
    inside = shown[int(top * scale) + 1, int(left * scale) + 1, :3]
    mean = (image.mean(dim=(1, 2)) * 255).round().to(torch.uint8).tolist()
    assert inside.tolist() == mean
    assert "7 x 7 positions" in pane.status.value


def test_a_manual_pane_shows_its_cached_result_when_the_unit_comes_back(demo: object) -> None:
    view = make(demo)
    pane = view.panes["occlusion"]
    pane.patch.value, pane.stride.value = 16, 16
    pane.request(run=True)
    first = view.frames["occlusion_unit"].copy()
    assert "cache" not in pane.status.value
    view.unit = 3
    assert "press <b>Run</b>" in pane.status.value
    view.unit = 0
    assert np.array_equal(view.frames["occlusion_unit"], first)
    assert "from the cache" in pane.status.value


def test_stop_ends_a_run_within_one_step_and_keeps_the_main_panes_free(demo: object) -> None:
    view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes, max_images=4)
    assert view.wait(120)
    pane = view.panes["occlusion"]
    pane.patch.value, pane.stride.value = 4, 1  # 61 x 61 positions: many batches
    assert view.wait(120)
    steps = []
    original = pane.progress

    def progress(done: int, total: int) -> bool:
        steps.append(done)
        if len(steps) == 3:
            pane.stop()
        return original(done, total)

    pane.progress = progress  # type: ignore[method-assign]
    before = view.frames["projection"].copy()
    pane.request(run=True)
    view.method = "gradient"  # the main panes answer while the occlusion pane works
    assert view.wait(120)
    assert not np.array_equal(view.frames["projection"], before)
    assert "(stopped)" in pane.status.value
    assert len(steps) <= 4
    view.close()


def test_invariance_and_correspondence_panes_show_the_core_numbers(demo: object) -> None:
    view = make(demo)
    pane = view.panes["invariance"]
    pane.request(run=True)
    images = torch.stack(view._images)
    labels = [int(label) for label in view._labels]
    core = dv.invariance(demo.model, images, transform="translate",
                         layers=["features.conv1", "features.conv5"], labels=labels)
    figures = pane.box.children
    assert [f.title for f in figures] == ["features.conv1: feature distance",
                                          "features.conv5: feature distance",
                                          "true class probability"]
    np.testing.assert_allclose(figures[1].figure.marks[0].y, core.distance["features.conv5"])
    np.testing.assert_allclose(figures[2].figure.marks[0].y, core.probability)
    table = view.panes["correspondence"]
    table.request(run=True)
    boxes = demo.dataset.boxes(list(range(4)))
    result = dv.correspondence(demo.model, images, {"object": boxes,
                                                    "centre": torch.tensor([[16, 16, 48, 48]] * 4)},
                               layers=["features.conv5"])
    for row in result.table():
        assert f"<td>{row['part']}</td><td>{row['features.conv5']:.3f}</td>" in table.table.value


def test_closing_stops_the_analysis_workers(demo: object) -> None:
    before = threading.active_count()
    view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes, max_images=4)
    assert threading.active_count() == before + 1  # analysis workers start on first Run
    for name in ("occlusion", "invariance", "correspondence"):
        view.panes[name].request(run=True)
    assert threading.active_count() == before + 4
    view.close()
    for _ in range(100):
        if threading.active_count() <= before:
            break
        threading.Event().wait(0.05)
    assert threading.active_count() <= before


def test_top_images_pane_shows_the_index_patches_and_a_click_loads_the_image(
        demo: object) -> None:
    from ipydeepvis.core.indexing import build_index
    from ipydeepvis.core.topk_images import patches

    data = [demo.dataset[i] for i in range(48)]
    index = build_index(demo.model, data, ["features.conv3"], k=9)
    view = make(demo, index=index)
    view.layer = "features.conv3"
    view.unit = 5
    pane = view.panes["top"]
    assert "9 top images" in pane.status.value  # with an index: shown without Run
    crops = patches(demo.model, data, index["features.conv3"], 5)
    expected = pane._sheet([render.image_to_uint8(c) for c in crops.images])
    assert np.array_equal(view.frames["top_patches"], expected)
    entry = crops.entries[1]
    pane.click(pane.cell + 3, 3)  # the second patch of the first row
    assert view.image_index == 4  # appended after the 4 shown images
    assert torch.equal(view._images[4], data[entry.index][0])
    assert view.position == "clicked" and view.clicked == tuple(entry.position)


def test_top_images_pane_indexes_the_dashboard_images_on_run(demo: object) -> None:
    view = make(demo)
    pane = view.panes["top"]
    assert "press <b>Run</b>" in pane.status.value
    pane.request(run=True)
    assert "4 top images" in pane.status.value  # k is capped by the 4 images shown
    view.unit = 2  # the index of this layer is kept: the next unit shows at once
    assert "4 top images" in pane.status.value and "press" not in pane.status.value


def test_optimize_pane_streams_the_image_and_the_curve_and_matches_the_core(
        demo: object) -> None:
    view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes, max_images=2)
    assert view.wait(120)
    pane = view.panes["optimize"]
    pane.steps.value = 30
    pictures, points = [], []
    original = pane._draw_curve

    def spy(trace: list, argmax: int, total: int) -> None:
        pictures.append(pane.canvas.frame.copy())
        points.append(len(trace))
        original(trace, argmax, total)

    pane._draw_curve = spy  # type: ignore[method-assign]
    pane.request(run=True)
    assert view.wait(300)
    assert len(pictures) >= 3 and points == sorted(points) and points[-1] >= 25
    assert any(not np.array_equal(a, b) for a, b in itertools.pairwise(pictures))
    assert pictures[-1][..., :3].std() > 5  # not blank
    result = dv.maximize(demo.model, view.layer, view.unit, params=pane.params())
    expected = pane.canvas.frame
    pane._draw_image(result.images[0])
    assert np.array_equal(pane.canvas.frame, expected)
    assert len(pane.objective.x) == 30
    view.close()


def test_optimize_stop_ends_the_run_within_one_step(demo: object) -> None:
    view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes, max_images=2)
    assert view.wait(120)
    pane = view.panes["optimize"]
    pane.steps.value = 1000
    steps = []
    original = pane.progress

    def progress(done: int, total: int) -> bool:
        steps.append(done)
        if done == 5:
            pane.stop()
        return original(done, total)

    pane.progress = progress  # type: ignore[method-assign]
    pane.request(run=True)
    assert view.wait(300)
    assert steps[-1] == 5 and "(stopped)" in pane.status.value
    view.close()


def test_top_images_with_an_index_compute_on_the_pane_worker_not_the_caller(
        demo: object) -> None:
    """With an index the pane computes without Run; that work belongs on its own worker (a
    unit change from the slider must not hold up the kernel), also before any Run."""
    from ipydeepvis.core.indexing import build_index

    data = [demo.dataset[i] for i in range(24)]
    index = build_index(demo.model, data, ["features.conv5"], k=9)
    view = dv.DeepVis(demo.model, demo.dataset, classes=demo.classes, max_images=4, index=index)
    pane = view.panes["top"]
    threads = []
    original = pane.compute

    def compute(state: object) -> object:
        threads.append(threading.current_thread().name)
        return original(state)

    pane.compute = compute  # type: ignore[method-assign]
    assert view.wait(120)
    view.unit = 3
    assert view.wait(120)
    assert threads and set(threads) == {"ipydeepvis-top"}, threads
    assert "unit 3: 9 top images" in pane.status.value
    view.close()


def test_a_new_run_starts_with_an_empty_progress_bar(demo: object) -> None:
    view = make(demo)
    pane = view.panes["occlusion"]
    pane.patch.value, pane.stride.value = 16, 16
    pane.request(run=True)
    assert pane.bar.value == pane.bar.max > 1  # the finished run fills the bar
    seen = []
    original = pane.compute

    def compute(state: object) -> object:
        seen.append((pane.bar.value, pane.status.value))
        return original(state)

    pane.compute = compute  # type: ignore[method-assign]
    pane.stride.value = 8
    pane.request(run=True)
    assert seen == [(0, "computing...")]
