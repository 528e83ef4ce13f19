"""The streaming top-k scan equals a brute-force scan of every image."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ipydeepvis as dv
from ipydeepvis import errors
from ipydeepvis.core.topk import TopK, top_k
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


# ---------------------------------------------------------------- issue 10: any data source


def scan_of(data: object, model: nn.Module, layers: list[str], k: int = 5, **options: object
            ) -> dict[str, TopK]:
    from ipydeepvis.core.topk import top_k_many

    return top_k_many(model, data, layers, k, **options)


def assert_same(a: dict[str, TopK], b: dict[str, TopK]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equal(b[name]), name


@pytest.fixture
def net() -> nn.Module:
    """Weights on a 1/8 grid: every activation is exact whatever the batch it is computed in
    (a model's output can otherwise differ in its last bits with the batch size)."""
    model = ConvReluPool(pool=(2, 2), channels=(3, 6, 8), seed=5)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((p * 8).round() / 8)
    return model


@pytest.fixture
def images() -> torch.Tensor:
    """Pixels on a 1/8 grid (see ``net``)."""
    return (torch.rand(41, 3, 12, 12, generator=torch.Generator().manual_seed(1)) * 8).round() / 8


def test_dataloader_sampler_workers_and_collate_used_as_given(net: nn.Module,
                                                              images: torch.Tensor) -> None:
    from torch.utils.data import DataLoader

    pairs = [(img, i % 3) for i, img in enumerate(images)]
    reference = scan_of(images, net, ["1", "4"])
    shuffled = DataLoader(pairs, batch_size=6, shuffle=True,
                          generator=torch.Generator().manual_seed(0), num_workers=2)
    assert_same(scan_of(shuffled, net, ["1", "4"]), reference)
    seen_sizes: list[int] = []

    def collate(items: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        seen_sizes.append(len(items))
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

    custom = DataLoader(pairs, batch_size=10, collate_fn=collate)
    assert_same(scan_of(custom, net, ["1", "4"]), reference)
    assert seen_sizes == [10, 10, 10, 10, 1]  # its own batches, through its own collate_fn


def test_merge_of_disjoint_parts_equals_one_scan(net: nn.Module, images: torch.Tensor) -> None:
    from torch.utils.data import DataLoader, SubsetRandomSampler

    whole = scan_of(images, net, ["1", "5"], k=7)
    order = torch.randperm(41, generator=torch.Generator().manual_seed(2))
    parts = [scan_of(DataLoader(images, batch_size=4, sampler=SubsetRandomSampler(
        part.tolist(), generator=torch.Generator().manual_seed(3))), net, ["1", "5"], k=7)
             for part in (order[:17], order[17:])]
    for name in whole:
        merged = parts[0][name].merge(parts[1][name])
        assert merged.equal(whole[name])
        assert torch.equal(merged.done, torch.ones(41, dtype=torch.bool))
        with pytest.raises(errors.InvalidInputError, match=r"both scans covered 17 of the same"):
            merged.merge(parts[0][name])


def test_ties_rank_the_smaller_index_first_in_any_order() -> None:
    from torch.utils.data import DataLoader

    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU())
    flat = torch.ones(12, 1, 4, 4)  # every image gives the same value
    reverse = DataLoader(flat, batch_size=5, sampler=list(range(11, -1, -1)))
    for data in (flat, reverse):
        result = top_k(model, data, "0", k=4, batch_size=5)
        assert result.indices.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
        assert result.positions[:, :, :].tolist() == [[[0, 0]] * 4] * 2  # first position too


def test_pil_images_mixed_sizes_and_bad_loaders_get_clear_errors(net: nn.Module,
                                                                   images: torch.Tensor) -> None:
    from PIL import Image
    from torch.utils.data import DataLoader, IterableDataset
    from torchvision.transforms.functional import pil_to_tensor, to_pil_image

    pil = [to_pil_image(img) for img in images[:9]]
    with pytest.raises(errors.InvalidInputError,
                       match=r"item 0 .* is a PIL.Image.Image.*preprocess="):
        top_k(net, pil, "1")
    with pytest.raises(errors.InvalidInputError, match=r"collate_fn gave a PIL.Image.Image"):
        top_k(net, DataLoader(pil, batch_size=4, collate_fn=lambda b: b), "1")
    with pytest.raises(errors.InvalidInputError, match=r"item 0 .* is a PIL.Image.Image"):
        top_k(net, DataLoader(pil, batch_size=4), "1")

    def to_tensor(img: Image.Image) -> torch.Tensor:
        return pil_to_tensor(img).float() / 255

    expected = top_k(net, torch.stack([to_tensor(p) for p in pil]), "1")
    assert top_k(net, pil, "1", preprocess=to_tensor).equal(expected)
    assert top_k(dv.Probe(net, preprocess=to_tensor), pil, "1").equal(expected)
    loader = DataLoader([(p, 0) for p in pil], batch_size=9)  # default collate: no PIL
    assert top_k(net, loader, "1", preprocess=to_tensor).equal(expected)

    mixed = [images[0], images[1], torch.rand(3, 10, 12)]
    with pytest.raises(errors.InvalidInputError,
                       match=r"image 2 has shape \(3, 10, 12\) but image 0 has \(3, 12, 12\)"
                             r".*Resize"):
        top_k(net, mixed, "1")
    with pytest.raises(errors.InvalidInputError, match=r"image 2 has shape \(3, 10, 12\)"):
        top_k(net, DataLoader(mixed, batch_size=3), "1")

    def broken(_img: object) -> torch.Tensor:
        raise ValueError("bad pixel")

    with pytest.raises(errors.InvalidInputError,
                       match=r"preprocess raised ValueError on item 0: bad"):
        top_k(net, pil, "1", preprocess=broken)
    with pytest.raises(errors.InvalidInputError, match=r"dtype torch.uint8"):
        top_k(net, [(images[0] * 255).byte()], "1")

    class Stream(IterableDataset):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield from images

    with pytest.raises(errors.InvalidInputError, match=r"IterableDataset.*map-style"):
        top_k(net, DataLoader(Stream(), batch_size=4), "1")
    with pytest.raises(errors.InvalidInputError, match=r"batch_size=None"):
        top_k(net, DataLoader(images, batch_size=None), "1")


def test_image_folder_with_the_models_transforms(tmp_path: object, net: nn.Module) -> None:
    from pathlib import Path

    from PIL import Image
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    root = Path(str(tmp_path))
    pixels = torch.randint(0, 256, (10, 15, 17, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(4))
    for i, img in enumerate(pixels):
        (root / f"class{i % 2}").mkdir(exist_ok=True)
        Image.fromarray(img.numpy()).save(root / f"class{i % 2}" / f"{i:02d}.png")
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    transform = v2.Compose([v2.PILToTensor(), v2.CenterCrop(12),
                            v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
    folder = ImageFolder(str(root))
    result = top_k(net, folder, "4", k=3, preprocess=transform)
    # independently: ImageFolder's order (class folder, then file name); the centre crop of
    # 15 x 17 to 12 starts at round(1.5) = 2 and round(2.5) = 2 (half to even)
    ordered = [int(Path(path).stem) for path, _ in folder.samples]
    crops = pixels[ordered, 2:14, 2:14].permute(0, 3, 1, 2).float() / 255
    tensors = (crops - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    expected = top_k(net, tensors, "4", k=3)  # same pixels, last bits of the scaling aside
    torch.testing.assert_close(result.values, expected.values)
    assert torch.equal(result.indices, expected.indices)
    assert torch.equal(result.positions, expected.positions)


def test_reused_module_calls_and_untouched_model(images: torch.Tensor) -> None:
    from tests.nets import SharedRelu, assert_same_state, model_state

    model = SharedRelu(seed=3).train()
    before = model_state(model)
    second = top_k(model, images, "relu:2", k=4, batch_size=8)
    captured: list[torch.Tensor] = []
    ref = SharedRelu(seed=3).eval()
    ref.conv2.register_forward_hook(lambda m, i, o: captured.append(torch.relu(o)))
    with torch.no_grad():
        ref(images)
    values, _ = captured[0].flatten(2).max(dim=2)
    expected = values.T.sort(dim=1, descending=True, stable=True)
    torch.testing.assert_close(second.values, expected.values[:, :4], rtol=0, atol=0)
    assert torch.equal(second.indices, expected.indices[:, :4])
    assert_same_state(before, model)
    with pytest.raises(errors.LayerNotFoundError, match=r"'relu' is one module called 2 times"):
        top_k(model, images, "relu")
    assert_same_state(before, model)


def test_model_errors_are_wrapped_and_leave_the_model_as_it_was() -> None:
    from tests.nets import assert_same_state, model_state

    class Fails(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 3)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if bool((x < 0).any()):
                raise ValueError("negative pixels")
            return self.relu(self.conv(x))

    model = Fails().train()
    before = model_state(model)
    data = torch.cat([torch.rand(4, 3, 8, 8), -torch.rand(4, 3, 8, 8)])
    with pytest.raises(errors.ModelForwardError, match=r"raised ValueError .*: negative pixels"):
        top_k(model, data, "relu", k=2, batch_size=4)
    assert_same_state(before, model)
    assert top_k(model, data[:4], "relu", k=2).seen == 4  # still usable
    assert_same_state(before, model)


def test_entries_rows_for_the_pane(net: nn.Module, images: torch.Tensor) -> None:
    result = top_k(net, images[:3], "4", k=5)
    rows = result.entries(2)
    assert len(rows) == 3  # fewer images than k
    assert [r.index for r in rows] == result.indices[2, :3].tolist()
    assert rows[0].value == float(result.values[2, 0]) and len(rows[0].position) == 2
    with pytest.raises(errors.UnitOutOfRangeError, match=r"unit 8 is out of range.*0 .. 7"):
        result.entries(8)


def test_non_finite_activations_rank_in_order_and_empty_slots_last() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False))
    with torch.no_grad():
        model[0].weight.fill_(2e38)
    images = torch.tensor([1.0, -2.0, 2.0, 3.0])[:, None, None, None].expand(4, 1, 2, 2)
    result = top_k(model, images.clone(), "0", k=6, batch_size=1)  # 2e38, -inf, inf, inf
    assert result.indices.tolist() == [[2, 3, 0, 1, -1, -1]]
    inf = float("inf")
    assert result.values[0, :4].tolist() == [inf, inf, float(torch.tensor(2e38)), -inf]


def test_positions_are_the_first_maximum_in_row_major_order() -> None:
    from ipydeepvis.core.topk import _strongest

    maps = torch.zeros(2, 3, 4, 5)
    maps[0, 0, 2, 1] = maps[0, 0, 2, 3] = maps[0, 0, 3, 0] = 1.0  # ties: the first one
    maps[1, 2, 0, 4] = 2.0
    maps[0, 1] = -1.0  # all equal: (0, 0)
    generator = torch.Generator().manual_seed(0)
    noisy = (torch.rand(5, 7, 6, 9, generator=generator) * 4).round()  # many ties
    for output in (maps, noisy, noisy.reshape(5, 7, 54), noisy[:, :, :2, :1]):
        expected = output.flatten(2).max(dim=2)
        best, where, shape = _strongest(output, None)
        assert torch.equal(best, expected.values) and torch.equal(where, expected.indices)
        assert shape == tuple(output.shape[1:])
        # with a floor: positions only where an image can still enter a unit's top-k
        floor = expected.values.median(dim=0).values  # per unit
        best, where, _ = _strongest(output, (floor, 2))
        chosen = expected.values >= torch.maximum(floor, expected.values.topk(2, 0).values[-1])
        assert torch.equal(best, expected.values) and where is not None
        assert torch.equal(where[chosen], expected.indices[chosen])
    assert _strongest(maps, None)[1][0, 0] == 2 * 5 + 1
    nothing = _strongest(maps, (torch.full((3,), 5.0), 1))  # no image reaches the floor
    assert nothing[1] is None


def test_non_finite_pixels_are_refused_with_their_count(net: nn.Module,
                                                         images: torch.Tensor) -> None:
    # the scan looks for them in the maxima it computes anyway, then counts them in the images
    bad = images[:10].clone()
    bad[3, 0, 2, 2] = float("nan")
    bad[8, 1, 0, 0] = float("-inf")
    for layer, batch_size, count in (("4", 10, 2), ("4", 4, 1), ("0", 10, 2)):
        with pytest.raises(errors.InvalidInputError,
                           match=rf"the batch contains {count} NaN or infinite value\(s\)"):
            top_k(net, bad, layer, k=2, batch_size=batch_size)
    assert top_k(net, images[:10], "4", k=2, batch_size=4).seen == 10
