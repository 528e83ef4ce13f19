"""Tiny CNNs with hand-set or seeded weights, and a snapshot of what a probe must not change."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class ConvReluPool(nn.Sequential):
    """conv -> ReLU -> max-pool, twice; ``pool=(k, s)`` sets both pooling layers."""

    def __init__(self, pool: tuple[int, int] = (2, 2), inplace: bool = False,
                 channels: tuple[int, int, int] = (3, 4, 5), seed: int = 0) -> None:
        c0, c1, c2 = channels
        super().__init__(
            nn.Conv2d(c0, c1, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.MaxPool2d(*pool),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(inplace=inplace),
            nn.MaxPool2d(*pool),
        )
        g = seeded(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


class Classifier(nn.Module):
    """conv 3x3 -> ReLU -> pool 2 -> conv 3x3 -> ReLU -> pool 2 -> linear (5 classes), on
    16 x 16 inputs; ``forwards`` counts its forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.features = ConvReluPool(pool=(2, 2), channels=(3, 8, 12), seed=1)
        self.fc = nn.Linear(12 * 4 * 4, 5)
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        return self.fc(self.features(x).flatten(1))


class FunctionalRelus(nn.Module):
    """Same maths as ConvReluPool, but every ReLU is a different functional spelling."""

    def __init__(self, pool: tuple[int, int] = (2, 2), seed: int = 0) -> None:
        super().__init__()
        ref = ConvReluPool(pool, seed=seed)
        self.conv1, self.pool1, self.conv2, self.pool2 = ref[0], ref[2], ref[3], ref[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = self.pool1(x)
        x = self.conv2(x)
        x.relu_()
        return self.pool2(x)


class SharedRelu(nn.Module):
    """One nn.ReLU(inplace=True) module called twice per forward, as in torchvision's ResNet."""

    def __init__(self, pool: tuple[int, int] = (2, 2), seed: int = 0) -> None:
        super().__init__()
        ref = ConvReluPool(pool, seed=seed)
        self.conv1, self.pool1, self.conv2, self.pool2 = ref[0], ref[2], ref[3], ref[5]
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu(self.conv1(x)))
        return self.pool2(self.relu(self.conv2(x)))


def model_state(model: nn.Module) -> dict[str, Any]:
    """Everything a probe must leave as it was: weights, buffers, modes, flags, hooks."""
    hook_dicts = {}
    for name, module in model.named_modules():
        for attr, value in vars(module).items():
            if "hook" in attr and isinstance(value, dict):
                hook_dicts[(name, attr)] = list(value.items())
    return {
        "tensors": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": {n: p.grad for n, p in model.named_parameters()},
        "hooks": hook_dicts,
    }


def assert_same_state(before: dict[str, Any], model: nn.Module) -> None:
    after = model_state(model)
    assert before["tensors"].keys() == after["tensors"].keys()
    for key, value in before["tensors"].items():
        assert torch.equal(value, after["tensors"][key]), key
        assert value.dtype == after["tensors"][key].dtype
    assert before["training"] == after["training"]
    assert before["requires_grad"] == after["requires_grad"]
    assert all(g is None for g in after["grads"].values())
    assert before["hooks"] == after["hooks"]

