"""The shipped series and ``demo.load()``: it loads whole, and the net it holds really learned.

How fast it loads is measured in ``benchmarks/`` (no timing assertions here).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import ipydeepvis as dv
from ipydeepvis import demo
from ipydeepvis.core.checkpoints import MANIFEST_NAME, CheckpointSeries
from ipydeepvis.data import Shapes
from ipydeepvis.errors import CheckpointError
from ipydeepvis.train import evaluate


@pytest.fixture(scope="module")
def shipped() -> demo.Demo:
    return demo.load()


def test_load_is_complete() -> None:
    d = demo.load()
    assert isinstance(d.series, CheckpointSeries) and isinstance(d.series, dv.CheckpointSeries)
    assert not d.model.training
    assert d.dataset.split == "test" and len(d.dataset) > 0
    assert d.classes == d.dataset.classes and len(d.classes) >= 10


def test_model_takes_dataset_images_as_they_are(shipped: demo.Demo) -> None:
    image, label = shipped.dataset[0]
    with torch.no_grad():
        logits = shipped.model(image[None])
    assert logits.shape == (1, len(shipped.classes))
    assert 0 <= label < len(shipped.classes)


def test_shipped_series_epochs_and_size(shipped: demo.Demo) -> None:
    series = shipped.series
    last = series.epochs[-1]
    assert {1, 2, 5, 10, last} <= set(series.epochs)
    assert series.manifest is not None and series.manifest["complete"] is True
    assert list(series.metrics) == list(range(1, last + 1))
    total = sum(p.stat().st_size for p in demo.series_path().iterdir() if p.is_file())
    assert total <= 6_000_000, total


@pytest.mark.parametrize("seed", ["training data seed", 12345])
def test_final_epoch_accuracy_on_a_fresh_test_split(shipped: demo.Demo, seed: object) -> None:
    """>= 90 % on test images never seen in training (same look, and a new data seed)."""
    data = shipped.dataset
    seed = data.seed if seed == "training data seed" else seed
    test = Shapes("test", 1100, seed=int(seed), config=data.config)  # type: ignore[arg-type]
    _, accuracy = evaluate(shipped.model, test)
    assert accuracy >= 0.90, accuracy


def test_first_layer_settles_during_training(shipped: demo.Demo) -> None:
    """conv1 moves more from epoch 1 to 2 than between the last two saved epochs."""
    series = shipped.series
    w = {e: series.load(e)["features.conv1.weight"] for e in series.epochs}
    early = float((w[2] - w[1]).norm())
    late = float((w[series.epochs[-1]] - w[series.epochs[-2]]).norm())
    assert early > late > 0, (early, late)
    # The recorded curves tell the same story.
    metrics = series.metrics
    assert metrics[series.epochs[-1]]["val_acc"] > metrics[1]["val_acc"] + 0.3


def test_series_model_is_a_new_instance(shipped: demo.Demo) -> None:
    a = shipped.series.model(1)
    b = shipped.series.model(1)
    assert a is not b and a is not shipped.model
    assert not torch.equal(a.features.conv1.weight, shipped.model.features.conv1.weight)


def test_public_series_opens_the_shipped_one_with_no_more_arguments(shipped: demo.Demo) -> None:
    """The contract: ``dv.CheckpointSeries(path)`` and ``.model(epoch)``, nothing else."""
    series = dv.CheckpointSeries(demo.series_path())
    assert series.epochs == shipped.series.epochs and not series.skipped
    model = series.model(series.epochs[-1])
    for key, value in shipped.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


@pytest.mark.parametrize("data", [["shapes"], {"name": "shapes", "config": {"colour": 1}},
                                  {"name": "shapes", "config": [1]}])  # fmt: skip
def test_load_refuses_a_series_with_bad_data_settings(tmp_path: Path, data: object) -> None:
    root = tmp_path / "series"
    shutil.copytree(demo.series_path(), root)
    manifest = json.loads((root / MANIFEST_NAME).read_text())
    manifest["data"] = data
    (root / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"not a series trained on Shapes|records Shapes "
                       r"settings that do not work"):  # fmt: skip
        demo.load(root)
