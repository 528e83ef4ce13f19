"""The streaming top-k scan equals a brute-force scan of every image."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ipydeepvis as dv
from ipydeepvis import errors
from ipydeepvis.core.topk import top_k
from tests.nets import ConvReluPool


def brute_force(model: nn.Module, images: torch.Tensor, module: nn.Module, k: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    captured = []
    handle = module.register_forward_hook(lambda m, i, o: captured.append(o.detach().clone()))
    with torch.no_grad():
        for image in images:  # one image at a time, nothing shared with the scan
            model.eval()(image[None])
    handle.remove()
    acts = torch.cat(captured)  # (N, C, h, w)
    n, c, _h, w = acts.shape
    values, where = acts.flatten(2).max(dim=2)  # (N, C)
    out_v, out_i, out_p = [], [], []
    for unit in range(c):
        ranked = sorted(range(n), key=lambda i: (-float(values[i, unit]), i))[:k]
        out_v.append(values[ranked, unit])
        out_i.append(torch.tensor(ranked))
        out_p.append(torch.tensor([[int(where[i, unit]) // w, int(where[i, unit]) % w]
                                   for i in ranked]))
    return torch.stack(out_v), torch.stack(out_i), torch.stack(out_p)


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_top_k_equals_brute_force(batch_size: int) -> None:
    model = ConvReluPool(pool=(3, 2), channels=(3, 6, 8), seed=2)
    images = torch.rand(50, 3, 13, 13, generator=torch.Generator().manual_seed(3))
    probe = dv.Probe(model)
    result = top_k(probe, images, "4", k=9, batch_size=batch_size)
    values, indices, positions = brute_force(model, images, model[4], 9)
    assert result.seen == 50 and result.k == 9 and result.layer == "4"
    torch.testing.assert_close(result.values, values)
    assert torch.equal(result.indices, indices)
    assert torch.equal(result.positions, positions)


def test_dataset_of_pairs_limit_and_linear_layer() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    images = torch.rand(20, 3, 8, 8)
    pairs = [(img, i % 3) for i, img in enumerate(images)]
    probe = dv.Probe(model)
    result = top_k(probe, pairs, "3", k=3, limit=12, batch_size=5)
    logits = model(images[:12]).detach()
    expected = logits.T.sort(dim=1, descending=True, stable=True)
    torch.testing.assert_close(result.values, expected.values[:, :3])
    assert torch.equal(result.indices, expected.indices[:, :3])
    assert result.positions.shape == (5, 3, 0) and result.seen == 12


def test_stop_early_pad_and_dead_units() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU())
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
    images = torch.rand(10, 1, 4, 4) + 0.1  # positive: unit 1 is always 0 after the ReLU
    probe = dv.Probe(model)
    seen = []
    result = top_k(probe, images, "1", k=20, batch_size=4,
                   callback=lambda done, total: seen.append((done, total)) or done < 8)
    assert seen == [(4, 10), (8, 10)] and result.seen == 8
    assert torch.equal(result.indices[0, 8:], torch.full((12,), -1))
    assert torch.isinf(result.values[0, 8:]).all()
    assert result.dead_fraction() == 0.5


def test_bad_arguments() -> None:
    probe = dv.Probe(ConvReluPool())
    images = torch.rand(4, 3, 12, 12)
    with pytest.raises(errors.InvalidOptionError, match=r"k must be a positive int, got 0"):
        top_k(probe, images, "1", k=0)
    with pytest.raises(errors.LayerNotFoundError, match=r"'9' is not a layer"):
        top_k(probe, images, "9")
    with pytest.raises(errors.InvalidInputError, match=r"the data set is empty"):
        top_k(probe, images[:0], "1")
    with pytest.raises(errors.InvalidInputError, match=r"dataset must be a tensor"):
        top_k(probe, 5, "1")


def test_many_layers_in_one_pass_equal_single_scans() -> None:
    model = ConvReluPool(pool=(2, 2), channels=(3, 4, 6), seed=4)
    images = torch.rand(30, 3, 12, 12)
    probe = dv.Probe(model, input_shape=(3, 12, 12))  # traced: the scan adds no extra pass
    calls = []
    model[0].register_forward_pre_hook(lambda *a: calls.append(1))
    from ipydeepvis.core.topk import top_k_many

    many = top_k_many(probe, images, ["0", "3", "5"], k=4, batch_size=10)
    assert len(calls) == 3  # one forward per batch for all three layers
    for name in ["0", "3", "5"]:
        single = top_k(probe, images, name, k=4, batch_size=10)
        assert torch.equal(many[name].indices, single.indices)
        assert torch.equal(many[name].values, single.values)


def test_scan_runs_the_model_only_up_to_the_layer() -> None:
    model = ConvReluPool(pool=(2, 2), channels=(3, 4, 6), seed=4)
    probe = dv.Probe(model, input_shape=(3, 12, 12))
    later = []
    model[3].register_forward_pre_hook(lambda *a: later.append(1))
    top_k(probe, torch.rand(20, 3, 12, 12), "1", k=2, batch_size=5)
    assert later == []
