"""ModelShadow: a module tree of its own over the user's very tensors, following the model."""

from __future__ import annotations

import threading
import warnings

import pytest
import torch
from torch import nn

from ipydeepvis import errors
from ipydeepvis.core.shadow import ModelShadow, unwrap_model
from tests.nets import ConvReluPool, assert_same_state, model_state


def test_shares_every_tensor_but_no_module() -> None:
    model = ConvReluPool(seed=0).train()
    before = model_state(model)
    shadow, _key = ModelShadow(model).current()
    assert all(a is b for a, b in zip(shadow.parameters(), model.parameters(), strict=True))
    assert not any(a is b for a, b in zip(shadow.modules(), model.modules(), strict=True))
    shadow.eval()
    handle = shadow[0].register_forward_hook(lambda *a: None)
    shadow(torch.randn(1, 3, 8, 8))
    handle.remove()
    assert_same_state(before, model)  # training flags and hook dicts of the model untouched
    with torch.no_grad():
        model[0].weight.mul_(2)  # an optimiser step shows in the shadow at once
    assert torch.equal(shadow[0].weight, model[0].weight)


def test_key_follows_in_place_updates_and_replaced_tensors() -> None:
    model = ConvReluPool(seed=0)
    shadow = ModelShadow(model)
    first, key = shadow.current()
    assert shadow.current() == (first, key) and shadow.unchanged(key)
    with torch.no_grad():
        model[3].bias.add_(1)
    assert not shadow.unchanged(key)
    same, moved = shadow.current()
    assert same is first and moved != key and moved.layout == key.layout  # no rebuild
    model[0].weight = nn.Parameter(model[0].weight.detach().clone())
    rebuilt, replaced = shadow.current()
    assert rebuilt is not first and replaced.layout == key.layout + 1
    assert rebuilt[0].weight is model[0].weight


def test_replaced_submodule_rebuilds_the_tree() -> None:
    model = ConvReluPool(seed=0)
    shadow = ModelShadow(model)
    _, key = shadow.current()
    model[3] = nn.Conv2d(4, 7, 1)
    tree, new = shadow.current()
    assert new.layout > key.layout and isinstance(tree[3], nn.Conv2d)
    assert tree[3].out_channels == 7 and tree[3].weight is model[3].weight


def test_a_new_user_hook_is_followed_without_a_new_layout() -> None:
    model = ConvReluPool(seed=0)
    shadow = ModelShadow(model)
    _, key = shadow.current()
    seen: list[int] = []
    handle = model[0].register_forward_hook(lambda *a: seen.append(1))
    tree, new = shadow.current()
    tree(torch.randn(1, 3, 8, 8))
    assert seen == [1] and new.generation > key.generation and new.layout == key.layout
    handle.remove()
    tree, _ = shadow.current()
    tree(torch.randn(1, 3, 8, 8))
    assert seen == [1]


def test_wrappers_are_unwrapped_at_the_root_and_inside() -> None:
    inner = ConvReluPool(seed=0)
    assert unwrap_model(nn.DataParallel(nn.DataParallel(inner))) is inner
    model = nn.Sequential(nn.DataParallel(ConvReluPool(seed=1)), nn.Flatten())
    tree, _ = ModelShadow(model).current()
    names = [n for n, _ in tree.named_modules()]
    assert "0.0" in names and not any("module" in n for n in names)
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(tree(x), model(x))


def test_torchscript_parts_are_copied_and_follow_their_weights() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()))
    model = nn.Sequential(scripted, nn.Conv2d(2, 2, 3))
    shadow = ModelShadow(model)
    tree, key = shadow.current()
    x = torch.randn(1, 3, 9, 9)
    assert torch.equal(tree(x), model(x))
    with torch.no_grad():
        next(scripted.parameters()).add_(1)  # the copy cannot share it: it is copied again
    tree, moved = shadow.current()
    assert moved.generation > key.generation and torch.equal(tree(x), model(x))


def test_legacy_weight_norm_runs_on_the_shadow() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.Sequential(nn.utils.weight_norm(nn.Conv2d(3, 2, 3)), nn.ReLU())
    tree, _ = ModelShadow(model).current()
    x = torch.randn(1, 3, 6, 6)
    assert torch.equal(tree(x), model(x))


def test_models_that_cannot_be_copied_are_refused() -> None:
    model = ConvReluPool(seed=0)
    model.lock = threading.Lock()  # type: ignore[assignment]
    with pytest.raises(errors.UnsupportedModelError,
                       match=r"cannot make a private copy of ConvReluPool.*locks, files"):
        ModelShadow(model)
    with pytest.raises(errors.UnsupportedModelError, match=r"must be a torch.nn.Module, got str"):
        ModelShadow("model")  # type: ignore[arg-type]


def test_hooks_are_shared_not_copied() -> None:
    """A hook that is a method of some object (a logger holding a lock, say) is called as
    itself: its owner is not copied, and copying it could fail."""

    class Logger:
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.calls = 0

        def hook(self, *_: object) -> None:
            with self.lock:
                self.calls += 1

    model = ConvReluPool(seed=0)
    logger = Logger()
    model[0].register_forward_hook(logger.hook)
    tree, _ = ModelShadow(model).current()
    tree(torch.randn(1, 3, 8, 8))
    assert logger.calls == 1
    assert tree[0]._forward_hooks is not model[0]._forward_hooks
