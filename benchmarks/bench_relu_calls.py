"""What listing functional ReLU calls as layers costs.

torchvision's AlexNet (``nn.ReLU(inplace=True)`` modules) against the same network written with
``F.relu`` calls in its ``forward`` (same weights, so the same numbers), timed interleaved in one
process (medians; one torch thread): the functional net's ReLUs are seen through a
``TorchFunctionMode`` (one Python call per torch operation while ipydeepvis runs the model), the
module net's through forward hooks.

Rows: a probe's recorded pass on a new image (every layer), a projection of 8 units of the last
ReLU from that pass, and one batch of a top-k scan of the last ReLU. Target: ratio <= 1.10.

Run with ``make bench`` (or ``python benchmarks/bench_relu_calls.py [--quick]``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision
from _timing import interleaved_ms
from torch import nn

import ipydeepvis as dv
from ipydeepvis.core.topk import Scanner


class FunctionalAlexNet(nn.Module):
    """torchvision's AlexNet with its ReLU modules written as ``F.relu`` calls."""

    def __init__(self, net: torchvision.models.AlexNet) -> None:
        super().__init__()
        f = net.features
        self.conv1, self.conv2, self.conv3, self.conv4, self.conv5 = f[0], f[3], f[6], f[8], f[10]
        self.avgpool = net.avgpool
        self.fc6, self.fc7, self.fc8 = net.classifier[1], net.classifier[4], net.classifier[6]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 3, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 3, 2)
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc8(F.relu(self.fc7(F.relu(self.fc6(x)))))


def main() -> None:
    quick = "--quick" in sys.argv
    torch.set_num_threads(1)
    torch.manual_seed(0)
    size, repeats, batch = (128, 5, 4) if quick else (224, 9, 8)
    modules = torchvision.models.alexnet(num_classes=10).eval()
    functional = FunctionalAlexNet(modules).eval()
    x = torch.randn(repeats + 2, 3, size, size)
    data = torch.randn(batch, 3, size, size)
    assert torch.equal(modules(x[:1]), functional(x[:1]))
    nets = {"nn.ReLU modules": (modules, "features.11"), "F.relu calls": (functional,
                                                                       "conv5.relu")}
    probes = {name: dv.Probe(net, input_shape=(3, size, size)) for name, (net, _) in nets.items()}
    rows = []

    def row(label: str, make: Callable[[str], Callable[[int], object]]) -> None:
        got = dict(zip(nets, interleaved_ms([make(name) for name in nets], repeats), strict=True))
        a, b = got["nn.ReLU modules"], got["F.relu calls"]
        rows.append((label, a, b, b / a))

    row("recorded pass, new image (all layers)",
        lambda name: lambda i: probes[name].activations(x[i + 1]))
    for name in nets:
        probes[name].activations(x[0])
    row("project 8 units of the last ReLU",
        lambda name: lambda i: probes[name].project(x[0], nets[name][1], list(range(8))))
    scanners = {name: Scanner(probes[name], [nets[name][1]]) for name in nets}
    row(f"top-k scan, batch of {batch}", lambda name: lambda i: scanners[name].reduce(data))
    print(f"AlexNet at {size} x {size}, one thread, medians of {repeats} interleaved runs")
    print(f"{'':40s} {'nn.ReLU (ms)':>13s} {'F.relu (ms)':>12s} {'ratio':>6s}")
    for label, a, b, ratio in rows:
        print(f"{label:40s} {a:13.1f} {b:12.1f} {ratio:6.2f}")


if __name__ == "__main__":
    main()
