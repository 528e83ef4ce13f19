"""SeriesAnalysis: epochs on demand, bounded caches, strips equal to an independent computation,
and diverged epochs reported rather than raised (issue 9, bugs 4, 6 and 10)."""

from __future__ import annotations

import copy
import itertools
import math
import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from ipydeepvis import errors
from ipydeepvis.checkpoints import CheckpointSeries  # knows the embedded net
from ipydeepvis.core.cache import ByteLRU, tensor_bytes
from ipydeepvis.core.evolution import evolution_strip
from ipydeepvis.core.series_analysis import SeriesAnalysis, probe_images
from tests.nets import ConvReluPool
from tests.series_runs import write_demo_series, write_plain_series

EPOCHS = [1, 2, 3, 5, 8]


class CountingSeries(CheckpointSeries):
    """A real CheckpointSeries that also counts the epochs it reads, and in which thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reads: list[tuple[int, int]] = []

    def load(self, epoch: int) -> dict[str, torch.Tensor]:
        self.reads.append((epoch, threading.get_ident()))
        return super().load(epoch)


def tiny_run(tmp_path: Path, nan_epochs: tuple[int, ...] = ()) -> tuple[CountingSeries, Any]:
    model = ConvReluPool(pool=(3, 2), channels=(3, 4, 6), seed=1)
    states = write_plain_series(tmp_path / "run", model, EPOCHS, nan_epochs=nan_epochs)
    return CountingSeries(tmp_path / "run", model=model), states


def images(count: int = 24) -> torch.Tensor:
    return torch.rand(count, 3, 13, 13, generator=torch.Generator().manual_seed(2))


def models_of(states: dict[int, dict[str, torch.Tensor]]) -> list[tuple[int, torch.nn.Module]]:
    out = []
    for epoch, state in states.items():
        model = ConvReluPool(pool=(3, 2), channels=(3, 4, 6))
        model.load_state_dict(state)
        out.append((epoch, model.eval()))
    return out


def test_construction_reads_one_epoch_and_models_match_the_files(tmp_path: Path) -> None:
    series, states = tiny_run(tmp_path)
    analysis = SeriesAnalysis(series, images(), probe_size=20)
    assert len(series.reads) == 1 and analysis.loads == 1
    assert analysis.conv_layers == ["0", "3"] and analysis.channels["3"] == 6
    for epoch in (8, 2):
        model = analysis.model(epoch)
        assert model is not None and not model.training
        reference = ConvReluPool(pool=(3, 2), channels=(3, 4, 6))
        reference.load_state_dict(states[epoch])
        x = images(3)
        assert torch.equal(model(x), reference.eval()(x))
    assert [e for e, _ in series.reads] == [1, 8, 2]  # each epoch read when first asked for


def test_strip_equals_the_standalone_computation(tmp_path: Path) -> None:
    series, states = tiny_run(tmp_path)
    analysis = SeriesAnalysis(series, images(), probe_size=20, batch_size=8)
    strip = analysis.strip("4", [0, 2, 5])
    expected = evolution_strip(models_of(states), images(), "4", [0, 2, 5], probe_size=20,
                               batch_size=8)
    assert strip is not None and strip.epochs == tuple(EPOCHS)
    for name in ("values", "indices", "positions", "boxes", "changed"):
        assert torch.equal(getattr(strip, name), getattr(expected, name)), name
    for e in range(len(EPOCHS)):
        for u in range(3):
            assert torch.equal(strip.projections[e][u], expected.projections[e][u])
            assert torch.equal(strip.patches[e][u], expected.patches[e][u])
    assert not strip.nonfinite.any() and strip.notes == ()
    # dead fractions and weight change agree with the files, computed by hand
    dead = analysis.dead()
    for (epoch, model) in models_of(states):
        with torch.no_grad():
            acts = torch.nn.Sequential(*list(model)[:2])(images(20))  # conv 0 -> ReLU
        assert dead["0"][1][EPOCHS.index(epoch)] == pytest.approx(
            float((acts.amax(dim=(0, 2, 3)) <= 0).float().mean()))
    change = analysis.weight_change()
    for k, (a, b) in enumerate(itertools.pairwise(EPOCHS)):
        w_a, w_b = states[a]["3.weight"].double(), states[b]["3.weight"].double()
        assert change["3"][1][k] == pytest.approx(float((w_b - w_a).norm() / w_b.norm()))
    assert change["3"][0] == EPOCHS[1:]


def test_caches_stay_within_their_byte_bounds_and_give_the_same_results(
        tmp_path: Path) -> None:
    series, _ = tiny_run(tmp_path)
    state_size = tensor_bytes(series.load(1))
    free = SeriesAnalysis(series, images(), probe_size=20)
    tight = SeriesAnalysis(series, images(), probe_size=20, state_bytes=2 * state_size,
                           scan_bytes=1500, cell_bytes=4000)
    for units in ([0, 1], [2, 3], [4, 5], [0, 5], [1, 2]):
        a, b = free.strip("4", units), tight.strip("4", units)
        assert a is not None and b is not None
        assert torch.equal(a.indices, b.indices) and torch.equal(a.boxes, b.boxes)
        assert all(torch.equal(p, q)
                   for row_a, row_b in zip(a.projections, b.projections, strict=True)
                   for p, q in zip(row_a, row_b, strict=True))
        for kind, used in tight.cache_bytes.items():
            assert 0 < used <= tight.cache_limits[kind], kind
    assert tight.cache_limits == {"states": 2 * state_size, "scans": 1500, "cells": 4000}


def test_a_diverged_epoch_is_marked_and_the_others_are_unchanged(tmp_path: Path) -> None:
    """Bug 6: all-NaN weights at epoch 3: reported, marked, NaN change; other epochs as if
    it were not there."""
    series, states = tiny_run(tmp_path, nan_epochs=(3,))
    analysis = SeriesAnalysis(series, images(), probe_size=20)
    strip = analysis.strip("4", [0, 2, 5])
    assert strip is not None and strip.epochs == tuple(EPOCHS)
    column = EPOCHS.index(3)
    assert strip.nonfinite[column].all() and not strip.nonfinite[[0, 1, 3, 4]].any()
    assert torch.isnan(strip.values[column]).all() and (strip.indices[column] == -1).all()
    assert not strip.changed[column].any() and not strip.changed[column + 1].any()
    assert any("epoch 3: non-finite weights in 0.weight" in note for note in strip.notes)
    assert "non-finite weights" in analysis.problem(3) and analysis.problem(2) == ""
    good = {e: s for e, s in states.items() if e != 3}
    expected = evolution_strip(models_of(good), images(), "4", [0, 2, 5], probe_size=20)
    keep = [0, 1, 3, 4]
    assert torch.equal(strip.indices[keep], expected.indices)
    assert torch.equal(strip.values[keep], expected.values)
    change = analysis.weight_change()["0"]
    assert change[0] == [2, 3, 5, 8]
    assert math.isnan(change[1][1]) and math.isnan(change[1][2])  # 2->3 and 3->5
    assert math.isfinite(change[1][0]) and math.isfinite(change[1][3])
    dead = analysis.dead()["3"]
    assert dead[0] == EPOCHS and math.isnan(dead[1][column])


def test_nonfinite_activations_are_marked_per_cell(tmp_path: Path) -> None:
    """Finite weights can still overflow: huge weights give inf activations for some units."""
    model = ConvReluPool(pool=(3, 2), channels=(3, 4, 6), seed=1)
    with torch.no_grad():
        model[3].weight[2].fill_(3e38)
    torch.save(model.state_dict(), tmp_path / "epoch_001.pt")
    torch.save(ConvReluPool(pool=(3, 2), channels=(3, 4, 6), seed=1).state_dict(),
               tmp_path / "epoch_002.pt")
    analysis = SeriesAnalysis(CheckpointSeries(tmp_path, model=model), images(), probe_size=20)
    strip = analysis.strip("4", [0, 2])
    assert strip is not None
    assert strip.nonfinite.tolist() == [[False, True], [False, False]]
    assert any("non-finite" in note and "unit 2" in note for note in strip.notes)


def test_unreadable_epochs_are_left_out_and_named(tmp_path: Path) -> None:
    series, _ = tiny_run(tmp_path)
    path = series.files[3].path
    path.write_bytes(path.read_bytes()[:200])
    analysis = SeriesAnalysis(series, images(), probe_size=20)
    assert analysis.available_epochs == EPOCHS  # not known yet: nothing read
    strip = analysis.strip("4", [1])
    assert strip is not None and 3 not in strip.epochs
    assert analysis.available_epochs == [1, 2, 5, 8]
    assert path.name in analysis.problem(3)
    assert analysis.state_dict(3) is None and analysis.model(3) is None


def test_bad_arguments_are_deepvis_errors(tmp_path: Path) -> None:
    series, _ = tiny_run(tmp_path)
    with pytest.raises(errors.InvalidOptionError, match=r"probe_size must be a positive .* 0"):
        SeriesAnalysis(series, images(), probe_size=0)
    with pytest.raises(errors.InvalidInputError, match="the data set is empty"):
        SeriesAnalysis(series, torch.zeros(0, 3, 13, 13))
    with pytest.raises(errors.InvalidInputError, match=r"has no \.epochs"):
        SeriesAnalysis(object(), images())
    with pytest.raises(errors.InvalidInputError, match=r"images must be tensors .*'str'"):
        probe_images(["a", "b"], 2)
    analysis = SeriesAnalysis(str(tmp_path / "run"), images(), model=ConvReluPool(
        pool=(3, 2), channels=(3, 4, 6)), probe_size=5)  # a path, like DeepVis takes
    assert analysis.epochs == EPOCHS and analysis.probe_size == 5
    with pytest.raises(errors.InvalidOptionError, match=r"layer 'nope' .* choose one of '0'"):
        analysis.strip("nope", [0])
    with pytest.raises(errors.InvalidOptionError,
                       match=r"units \[9\] do not fit layer '4'.*0\.\.5"):
        analysis.strip("4", [9])
    with pytest.raises(errors.InvalidOptionError, match=r"epoch 4 is not a saved epoch"):
        analysis.state_dict(4)


def test_stopping_a_strip_keeps_the_epochs_done(tmp_path: Path) -> None:
    series, _ = tiny_run(tmp_path)
    analysis = SeriesAnalysis(series, images(), probe_size=20)
    seen: list[tuple[int, int]] = []
    strip = analysis.strip("1", [0], callback=lambda done, total: seen.append(
        (done, total)) or done < 2)
    assert seen == [(1, 5), (2, 5)] and strip is not None and strip.epochs == (1, 2)


def test_byte_lru_evicts_least_recently_used_first() -> None:
    cache: ByteLRU[str] = ByteLRU(10, "test")
    cache.put("a", "A", 4)
    cache.put("b", "B", 4)
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("c", "C", 4)  # 12 > 10: b goes
    assert "b" not in cache and cache.get("a") == "A" and cache.nbytes == 8
    cache.put("huge", "H", 11)  # larger than the bound: not kept, nothing evicted
    assert "huge" not in cache and len(cache) == 2
    cache.put("a", "A2", 2)  # replacing re-counts
    assert cache.nbytes == 6 and cache.get("a") == "A2"
    assert tensor_bytes({"x": torch.zeros(3, dtype=torch.float64), "y": [torch.zeros(2)]}) == 32
    with pytest.raises(errors.InvalidOptionError, match=r"bound must be a number of bytes.*-1"):
        ByteLRU(-1, "bad")


def test_the_user_model_given_as_architecture_is_untouched(tmp_path: Path) -> None:
    from tests.nets import assert_same_state, model_state

    model = ConvReluPool(pool=(3, 2), channels=(3, 4, 6), seed=1).train()
    write_plain_series(tmp_path / "run", model, EPOCHS)
    before = model_state(model)
    original = copy.deepcopy(model.state_dict())
    analysis = SeriesAnalysis(tmp_path / "run", images(), model=model, probe_size=10)
    analysis.strip("4", [0, 1])
    analysis.weight_change()
    assert_same_state(before, model)
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_sixty_epochs_of_the_embedded_net_are_read_lazily(tmp_path: Path) -> None:
    root = write_demo_series(tmp_path / "run", range(1, 61))
    series = CountingSeries(root)
    analysis = SeriesAnalysis(series, torch.rand(8, 3, 64, 64), probe_size=8)
    assert [e for e, _ in series.reads] == [1] and analysis.loads == 1
    analysis.weight_change()
    assert sorted(e for e, _ in series.reads) == list(range(1, 61))  # each read once
