"""The top-k index: file round trip, provenance checks, exact merge, resumable builds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ipydeepvis import errors
from ipydeepvis.core.index import TopKIndex, model_fingerprint
from ipydeepvis.core.indexing import build_index
from ipydeepvis.core.topk import top_k_many
from tests.nets import ConvReluPool, assert_same_state, model_state

LAYERS = ["1", "3", "5"]


def make_net(seed: int = 5) -> nn.Module:
    return ConvReluPool(pool=(2, 2), channels=(3, 6, 8), seed=seed)


def make_images(n: int = 53) -> torch.Tensor:
    return torch.rand(n, 3, 12, 12, generator=torch.Generator().manual_seed(8))


def test_build_equals_top_k_and_round_trips_through_the_file(tmp_path: Path) -> None:
    net, images = make_net(), make_images()
    index = build_index(net, images, LAYERS, 4, batch_size=10, out=tmp_path / "ix", epoch=7)
    scans = top_k_many(net, images, LAYERS, 4, batch_size=10)
    assert index.layers == LAYERS and index.complete and index.seen == 53
    for name in LAYERS:
        assert index[name].equal(scans[name])
    loaded = TopKIndex.load(tmp_path / "ix")
    assert loaded.equal(index) and loaded.epoch == 7
    assert loaded.entries("5", 2) == scans["5"].entries(2)
    header = (tmp_path / "ix" / "index.json").read_text()
    assert '"format": "ipydeepvis.topk/1"' in header and model_fingerprint(net) in header
    with pytest.raises(errors.LayerNotFoundError, match=r"'4' is not in this index.*'1', '3'"):
        loaded["4"]


def test_merge_refuses_another_model_or_data_set(tmp_path: Path) -> None:
    images = make_images()
    a = build_index(make_net(5), images[:20], ["3"], 3, batch_size=8)
    other_model = build_index(make_net(6), images[:20], ["3"], 3, batch_size=8)
    other_data = build_index(make_net(5), images[1:21], ["3"], 3, batch_size=8)
    with pytest.raises(errors.CheckpointError, match=r"cannot merge with this index: the model"):
        a.merge(other_model)
    with pytest.raises(errors.CheckpointError, match=r"the data set differs"):
        a.merge(other_data)
    with pytest.raises(errors.InvalidInputError, match=r"both scans covered 20 of the same"):
        a.merge(a)


def test_an_existing_index_needs_resume_and_must_match(tmp_path: Path) -> None:
    net, images = make_net(), make_images()
    build_index(net, images, LAYERS, 4, batch_size=10, out=tmp_path)
    with pytest.raises(errors.CheckpointError, match=r"already holds a top-k index; resume"):
        build_index(net, images, LAYERS, 4, batch_size=10, out=tmp_path)
    with pytest.raises(errors.CheckpointError, match=r"cannot resume from this index: the model"):
        build_index(make_net(6), images, LAYERS, 4, out=tmp_path, resume=True)
    with pytest.raises(errors.CheckpointError, match=r"k differs \(5 vs 4\)"):
        build_index(net, images, LAYERS, 5, out=tmp_path, resume=True)
    with pytest.raises(errors.CheckpointError, match=r"the data set differs \(52 images"):
        build_index(net, images[:52], LAYERS, 4, out=tmp_path, resume=True)
    (tmp_path / "index.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(errors.CheckpointError, match=r"is not a readable ipydeepvis top-k index"):
        TopKIndex.load(tmp_path)


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    net, images = make_net(), make_images()
    net.train()
    before = model_state(net)
    whole = build_index(net, images, LAYERS, 4, batch_size=5)

    def interrupt(done: int, _total: int) -> None:
        if done >= 25:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_index(net, images, LAYERS, 4, batch_size=5, out=tmp_path, checkpoint_every=100,
                    callback=interrupt)
    partial = TopKIndex.load(tmp_path)
    assert partial.seen == 25 and not partial.complete  # saved at the interrupt
    stopped = build_index(net, images, LAYERS, 4, batch_size=5, out=tmp_path, resume=True,
                          callback=lambda done, _t: done < 10)  # a callback stop saves too
    assert stopped.seen == 35 and TopKIndex.load(tmp_path).seen == 35
    resumed = build_index(net, images, LAYERS, 4, batch_size=5, out=tmp_path, resume=True)
    assert resumed.complete and resumed.equal(whole)
    assert TopKIndex.load(tmp_path).equal(whole)
    assert_same_state(before, net)


def test_checkpoints_are_written_as_the_scan_goes(tmp_path: Path) -> None:
    net, images = make_net(), make_images()
    seen_on_disk: list[int] = []

    def look(done: int, _total: int) -> None:
        if (tmp_path / "index.safetensors").exists():
            seen_on_disk.append(TopKIndex.load(tmp_path).seen)

    build_index(net, images, ["3"], 2, batch_size=5, out=tmp_path, checkpoint_every=3,
                callback=look)
    assert sorted(set(seen_on_disk)) == [15, 30, 45]  # every 3 batches of 5
    assert TopKIndex.load(tmp_path).seen == 53
