"""A small ZF-style classifier: the embedded default's network.

In the spirit of Zeiler & Fergus's ImageNet network (itself a fix of AlexNet): a larger
stride-2 first filter (7x7/2), overlapping 3x3/2 max pooling, five convolutional layers and
``nn.ReLU(inplace=True)`` rectifiers as torchvision writes them, scaled down to 64x64 images
and a few hundred thousand parameters. The layers carry readable names for the layer picker
(``features.conv1``, ``features.relu1``, ``features.pool1``, ..., ``classifier.fc``).

The input normalisation lives inside the model (a first ``normalize`` module with fixed
mean / std buffers), so plain ``[0, 1]`` RGB images go in as they are: ``model(image[None])``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ipydeepvis.errors import InvalidOptionError

__all__ = ["Normalize", "ZFNet", "ZFNetConfig"]

# Per-channel mean and standard deviation of Shapes images (measured over 10k train images).
SHAPES_MEAN: tuple[float, float, float] = (0.450, 0.443, 0.455)
SHAPES_STD: tuple[float, float, float] = (0.243, 0.227, 0.251)


class Normalize(nn.Module):
    """Subtract a fixed per-channel mean and divide by a fixed standard deviation.

    Parameters
    ----------
    mean, std : sequence of float
        One value per input channel. Both are kept as (persistent) buffers, so they travel
        with the state dict and the model accepts plain ``[0, 1]`` images.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std) or any(s <= 0 for s in std):
            msg = (
                f"mean={tuple(mean)!r}, std={tuple(std)!r} are not valid: use one value per "
                "channel for both, and std > 0."
            )
            raise InvalidOptionError(msg)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(x - mean) / std`` per channel."""
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        mean = [round(v, 3) for v in self.mean.view(-1).tolist()]
        std = [round(v, 3) for v in self.std.view(-1).tolist()]
        return f"mean={mean}, std={std}"


@dataclass(frozen=True)
class ZFNetConfig:
    """Architecture of :class:`ZFNet`; stored in a series' manifest to rebuild the model.

    Parameters
    ----------
    num_classes : int
        Number of output classes (11 for ``Shapes``).
    widths : tuple of 5 ints
        Output channels of ``conv1`` .. ``conv5``.
    hidden : int
        Width of the hidden fully connected layer ``classifier.fc6``.
    image_size : int
        Input height and width the classifier's input size is computed for (a multiple of
        16, at least 32).
    in_channels : int
        Input channels.
    mean, std : tuple of float
        The input normalisation (see :class:`Normalize`).

    Raises
    ------
    InvalidOptionError
        When a value is outside its valid range.
    """

    num_classes: int = 11
    widths: tuple[int, int, int, int, int] = (24, 48, 64, 64, 48)
    hidden: int = 64
    image_size: int = 64
    in_channels: int = 3
    mean: tuple[float, ...] = SHAPES_MEAN
    std: tuple[float, ...] = SHAPES_STD

    def __post_init__(self) -> None:
        # JSON round trips turn tuples into lists: normalise so configs compare equal.
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.widths) != 5 or any(w < 1 for w in self.widths):
            msg = f"widths={self.widths!r} is not valid: use five positive channel counts."
            raise InvalidOptionError(msg)
        for name in ("num_classes", "hidden", "in_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                msg = f"{name}={value!r} is not valid: use a positive int."
                raise InvalidOptionError(msg)
        if not isinstance(self.image_size, int) or self.image_size < 32 or self.image_size % 16:
            msg = f"image_size={self.image_size!r} is not valid: use a multiple of 16, >= 32."
            raise InvalidOptionError(msg)
        if len(self.mean) != self.in_channels or len(self.std) != self.in_channels:
            msg = (
                f"mean={self.mean!r} and std={self.std!r} need {self.in_channels} values "
                "(one per input channel)."
            )
            raise InvalidOptionError(msg)

    def to_dict(self) -> dict[str, object]:
        """The config as JSON-ready plain values (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class ZFNet(nn.Module):
    """Five conv layers, ZFNet-style, for small images (64x64 RGB in ``[0, 1]`` by default).

    ``normalize`` -> ``features`` (conv1 7x7/2, pool1 3x3/2, conv2 5x5, pool2 3x3/2,
    conv3..conv5 3x3, pool5 3x3/2) -> flatten -> ``classifier`` (fc6, relu6, fc).
    At 64x64 the spatial sizes are 32 (conv1), 16 (pool1, conv2), 8 (pool2 .. conv5) and
    4 (pool5).

    Parameters
    ----------
    config : ZFNetConfig, optional
        The architecture; ``ZFNetConfig()`` by default.
    generator : torch.Generator, optional
        Source of the initial weights (see :meth:`reset_parameters`). With a seeded
        generator the initial weights are reproducible without touching torch's global
        random state.
    """

    def __init__(
        self, config: ZFNetConfig | None = None, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        cfg = ZFNetConfig() if config is None else config
        self.config = cfg
        self.normalize = Normalize(cfg.mean, cfg.std)
        # Layers are created on the meta device (torch's own initialisation would draw from
        # the global random state), then materialised and initialised from `generator`.
        with torch.device("meta"):
            features, classifier = _layers(cfg)
        self.features = features.to_empty(device="cpu")
        self.classifier = classifier.to_empty(device="cpu")
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise all weights and biases from ``generator``.

        ``conv1`` starts from N(0, 0.01), as in Zeiler & Fergus, so that what it learns
        (oriented edges, colour blobs) is not buried under its random start; the other
        layers are He-normal; biases are zero.
        """
        with torch.no_grad():
            for name, module in self.named_modules():
                if not isinstance(module, (nn.Conv2d, nn.Linear)):
                    continue
                if name == "features.conv1":
                    nn.init.normal_(module.weight, 0.0, 0.01, generator=generator)
                else:
                    nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of shape ``(N, num_classes)`` for ``[0, 1]`` images ``(N, C, H, W)``."""
        x = self.features(self.normalize(x))
        return self.classifier(torch.flatten(x, 1))


def _layers(cfg: ZFNetConfig) -> tuple[nn.Sequential, nn.Sequential]:
    """The ``features`` and ``classifier`` stacks of :class:`ZFNet` for ``cfg``."""
    w1, w2, w3, w4, w5 = cfg.widths
    features = nn.Sequential(
        OrderedDict(
            [
                ("conv1", nn.Conv2d(cfg.in_channels, w1, kernel_size=7, stride=2, padding=3)),
                ("relu1", nn.ReLU(inplace=True)),
                ("pool1", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                ("conv2", nn.Conv2d(w1, w2, kernel_size=5, padding=2)),
                ("relu2", nn.ReLU(inplace=True)),
                ("pool2", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                ("conv3", nn.Conv2d(w2, w3, kernel_size=3, padding=1)),
                ("relu3", nn.ReLU(inplace=True)),
                ("conv4", nn.Conv2d(w3, w4, kernel_size=3, padding=1)),
                ("relu4", nn.ReLU(inplace=True)),
                ("conv5", nn.Conv2d(w4, w5, kernel_size=3, padding=1)),
                ("relu5", nn.ReLU(inplace=True)),
                ("pool5", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
        )
    )
    side = cfg.image_size // 16
    classifier = nn.Sequential(
        OrderedDict(
            [
                ("fc6", nn.Linear(w5 * side * side, cfg.hidden)),
                ("relu6", nn.ReLU(inplace=True)),
                ("fc", nn.Linear(cfg.hidden, cfg.num_classes)),
            ]
        )
    )
    return features, classifier
