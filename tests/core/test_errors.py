"""Bad input raises a DeepVisError subclass that names the bad value and the way out."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from torch import nn

import ipydeepvis as dv
from ipydeepvis import errors
from tests.nets import ConvReluPool


@pytest.fixture
def probe() -> dv.Probe:
    model = nn.Sequential()
    model.add_module("features", ConvReluPool(seed=0))
    model.add_module("flatten", nn.Flatten())
    model.add_module("fc", nn.Linear(5 * 3 * 3, 7))
    return dv.Probe(model, input_shape=(3, 12, 12))


X = torch.randn(3, 12, 12)


def test_unknown_layer_lists_close_matches(probe: dv.Probe) -> None:
    with pytest.raises(errors.LayerNotFoundError, match=r"'features\.33' is not a layer.*did you "
                       r"mean 'features\.3'") as info:
        probe.project(X, "features.33", 0)
    assert isinstance(info.value, ValueError) and isinstance(info.value, KeyError)
    with pytest.raises(errors.LayerNotFoundError, match=r"layer must be a layer name.*got 3"):
        probe.project(X, 3, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("units", "pattern"), [
    (5, r"unit 5 is out of range for layer 'features.3', which has 5 units: valid units are 0..4"),
    ([0, -1], r"unit -1 is out of range .* valid units are 0..4"),
])
def test_unit_out_of_range(probe: dv.Probe, units: object, pattern: str) -> None:
    with pytest.raises(errors.UnitOutOfRangeError, match=pattern) as info:
        probe.project(X, "features.3", units)  # type: ignore[arg-type]
    assert isinstance(info.value, IndexError)


@pytest.mark.parametrize("units", [[], "3", 1.5, [True]])
def test_units_of_the_wrong_type(probe: dv.Probe, units: object) -> None:
    with pytest.raises(errors.InvalidOptionError, match=r"units must be an int or a non-empty"):
        probe.project(X, "features.3", units)  # type: ignore[arg-type]


def test_numpy_and_tensor_units_are_fine(probe: dv.Probe) -> None:
    a = probe.project(X, "features.3", np.array([1, 2]))
    b = probe.project(X, "features.3", torch.tensor([1, 2]))
    c = probe.project(X, "features.3", range(1, 3))
    assert torch.equal(a, b) and torch.equal(b, c)


@pytest.mark.parametrize(("x", "pattern"), [
    (torch.randn(1, 12, 12), r"x has 1 channel\(s\) \(shape \(1, 1, 12, 12\)\) but the model's "
                             r"first convolution 'features.0' expects 3"),
    (torch.randn(12, 12), r"x has shape \(12, 12\); expected one image \(C, H, W\)"),
    (torch.randn(1, 1, 3, 12, 12), r"x has shape \(1, 1, 3, 12, 12\)"),
    (torch.randint(0, 255, (3, 12, 12), dtype=torch.uint8),
     r"x has dtype torch.uint8, expected a floating-point image; .* x.float\(\) / 255"),
    (torch.full((3, 12, 12), float("nan")), r"x contains 432 NaN or infinite value\(s\)"),
    (torch.full((3, 12, 12), float("inf")), r"NaN or infinite"),
    (torch.randn(2, 3, 12, 12), r"projections take one image .* call project once per image"),
    (np.zeros((3, 12, 12), np.float32), r"x must be a torch.Tensor image .* preprocess="),
])
def test_bad_inputs(probe: dv.Probe, x: object, pattern: str) -> None:
    with pytest.raises(errors.InvalidInputError, match=pattern) as info:
        probe.project(x, "features.3", 0)
    assert isinstance(info.value, ValueError)


def test_preprocess_is_applied_to_non_tensors() -> None:
    model = ConvReluPool(seed=0)
    probe = dv.Probe(model, preprocess=lambda a: torch.from_numpy(a).permute(2, 0, 1) / 255)
    image = np.full((12, 12, 3), 255, np.uint8)
    acts = probe.activations(image)
    torch.testing.assert_close(acts["0"], dv.Probe(model).activations(torch.ones(3, 12, 12))["0"])


@pytest.mark.parametrize(("position", "error", "pattern"), [
    ((6, 0), errors.PositionOutOfRangeError,
     r"position \(6, 0\) is outside the 6x6 map of layer 'features.3' \(axis 0 is 6\); "
     r"valid positions are \(0..5, 0..5\)"),
    ((0, -1), errors.PositionOutOfRangeError, r"outside the 6x6 map"),
    ((1,), errors.InvalidOptionError, r"a tuple of 2 ints \(row, column\), got \(1,\)"),
    ("centre", errors.InvalidOptionError, r"position must be 'max', 'all' or a tuple of 2 ints, "
                                          r"got 'centre'"),
])
def test_bad_positions(probe: dv.Probe, position: object, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        probe.project(X, "features.3", 0, position=position)  # type: ignore[arg-type]


def test_position_on_a_layer_without_map(probe: dv.Probe) -> None:
    with pytest.raises(errors.InvalidOptionError, match=r"'fc' has no spatial map"):
        probe.project(X, "fc", 0, position=(0, 0))
    # max and all on a linear layer project the unit itself
    assert probe.project(X, "fc", [0, 6]).shape == (2, 3, 12, 12)


def test_bad_method(probe: dv.Probe) -> None:
    with pytest.raises(errors.InvalidOptionError,
                       match=r"method must be one of 'deconvnet', 'guided', 'gradient', got 'lrp'"):
        probe.project(X, "features.3", 0, method="lrp")


def test_not_a_module() -> None:
    with pytest.raises(errors.UnsupportedModelError, match=r"must be a torch.nn.Module, got dict"):
        dv.Probe({})  # type: ignore[arg-type]


def test_device_mismatch() -> None:
    with pytest.raises(errors.InvalidOptionError, match=r"never moves your model"):
        dv.Probe(ConvReluPool(), device="meta")


def test_coverage_without_input() -> None:
    with pytest.raises(errors.InvalidInputError, match=r"coverage\(\) needs an input"):
        dv.Probe(ConvReluPool()).coverage()


@pytest.mark.parametrize(("device", "pattern"), [
    ("bogus", r"device must be a torch device such as 'cpu'.*got 'bogus'"),
    (3.5, r"device must be a torch device .*got 3.5"),
    ([0], r"device must be a torch device .*got \[0\]"),
])
def test_unknown_device(device: object, pattern: str) -> None:
    with pytest.raises(errors.InvalidOptionError, match=pattern) as info:
        dv.Probe(ConvReluPool(), device=device)  # type: ignore[arg-type]
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("shape", [(3, -12, 12), (3, 12.0, 12), ("3", 12, 12), (3, 0, 12),
                                   (3, 12), (True, 12, 12), 12, "3x12x12"])
def test_bad_input_shape(shape: object) -> None:
    with pytest.raises(errors.InvalidOptionError,
                       match=r"input_shape must be \(C, H, W\), three positive ints .*got "):
        dv.Probe(ConvReluPool(), input_shape=shape)  # type: ignore[arg-type]


def test_input_shape_may_be_a_torch_size_or_have_a_batch() -> None:
    assert dv.Probe(ConvReluPool(), input_shape=torch.Size([3, 8, 8])).layer("5").shape == (5, 2, 2)
    assert dv.Probe(ConvReluPool(), input_shape=(2, 3, 8, 8)).layer("5").shape == (5, 2, 2)


@pytest.mark.parametrize(("x", "pattern"), [
    (torch.empty(3, 12, 12, device="meta"), r"x is on the meta device, which holds no values"),
    (torch.randn(3, 12, 12).to_sparse(), r"x is a sparse tensor \(layout torch.sparse_coo\); "
                                         r"pass a dense image, e.g. x.to_dense\(\)"),
    (torch.zeros(0, 3, 12, 12), r"the batch \(or the image\) is empty"),
    (torch.zeros(3, 0, 12), r"x has shape \(1, 3, 0, 12\): the batch \(or the image\) is empty"),
])
def test_tensors_without_values(probe: dv.Probe, x: torch.Tensor, pattern: str) -> None:
    with pytest.raises(errors.InvalidInputError, match=pattern):
        probe.activations(x)


def test_a_model_on_the_meta_device() -> None:
    with pytest.raises(errors.UnsupportedModelError, match=r"on the meta device.*to_empty"):
        dv.Probe(ConvReluPool().to("meta"))


def test_an_error_inside_preprocess_is_wrapped_with_its_cause() -> None:
    def preprocess(image: object) -> torch.Tensor:
        msg = "not an RGB image"
        raise ValueError(msg)

    probe = dv.Probe(ConvReluPool(), preprocess=preprocess)
    with pytest.raises(errors.InvalidInputError,
                       match=r"preprocess raised ValueError on a list input: not an RGB image"
                       ) as info:
        probe.activations([[1, 2]])
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(errors.InvalidOptionError, match=r"preprocess must be a callable .*got 3"):
        dv.Probe(ConvReluPool(), preprocess=3)  # type: ignore[arg-type]


def test_a_1d_model_is_refused_plainly() -> None:
    model = nn.Sequential(nn.Conv1d(2, 4, 3), nn.ReLU(), nn.Conv1d(4, 4, 3))
    with pytest.raises(errors.UnsupportedModelError,
                       match=r"1-D inputs are not supported: .* layer '0' is a Conv1d"):
        dv.Probe(model)
    with pytest.raises(errors.UnsupportedModelError, match=r"3-D inputs are not supported"):
        dv.Probe(nn.Sequential(nn.Conv3d(1, 2, 3)))


def test_a_1d_convolution_reached_by_an_image_is_named() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.seq = nn.Conv1d(4, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.seq(self.conv(x))

    with pytest.raises(errors.UnsupportedModelError,
                       match=r"1-D inputs are not supported: .* layer 'seq' is a Conv1d"):
        dv.Probe(Mixed()).activations(X)


def test_layers_of_the_wrong_type(probe: dv.Probe) -> None:
    with pytest.raises(errors.LayerNotFoundError, match=r"layer must be a layer name .*got 3"):
        probe.activations(X, layers=3)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidOptionError,
                       match=r"method must be one of .*got \['gradient'\]"):
        probe.project(X, "fc", 0, method=["gradient"])  # type: ignore[arg-type]


def test_a_failed_call_never_breaks_later_calls() -> None:
    """After each kind of failure (bad input, the model raising, preprocess raising, a bad
    unit, a scan's reduce raising) the same probe answers exactly like a fresh one."""

    class Flaky(ConvReluPool):
        fail = False  # on the class: the probe's copy of the model sees it too

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if Flaky.fail:
                msg = "flaky"
                raise RuntimeError(msg)
            return super().forward(x)

    def preprocess(image: object) -> torch.Tensor:
        if image == "bad":
            msg = "unreadable"
            raise OSError(msg)
        return X

    def boom(output: torch.Tensor) -> torch.Tensor:
        msg = "reduce failed"
        raise ValueError(msg)

    model = Flaky(seed=0)
    probe = dv.Probe(model, preprocess=preprocess)
    x = torch.randn(3, 12, 12)
    failures = [
        lambda: probe.project(x, "3", 99),
        lambda: probe.project(x * float("nan"), "3", 0),
        lambda: probe.activations("bad"),
        lambda: probe.reduce_batch(x[None], ["1"], boom),
        lambda: probe.project(x + 1, "no.such", 0),
    ]
    for index, fail in enumerate(failures):
        with pytest.raises(dv.DeepVisError):
            fail()
        Flaky.fail = index % 2 == 0
        expect = pytest.raises(errors.ModelForwardError, match="flaky")
        with expect if Flaky.fail else contextlib.nullcontext():
            probe.project(x + 10 + index, "4", [0, 2], method="guided")  # a new image
        Flaky.fail = False
        fresh = dv.Probe(model, preprocess=preprocess)
        assert torch.equal(probe.project(x, "4", [0, 2], method="guided"),
                           fresh.project(x, "4", [0, 2], method="guided"))
        assert probe.layers == fresh.layers
        assert torch.equal(probe.activations("ok")["5"], fresh.activations("ok")["5"])
        assert probe.coverage() == fresh.coverage(X)

