"""Random per-step image transforms for optimization (Lucid's "transformation robustness").

Before each forward pass the image may be shifted by a few pixels (jitter), rescaled and
rotated at random, so that the optimized pattern has to work wherever it lands rather than
exploit one pixel grid (Olah et al. 2017; lucent's ``transform.py``). Every image of a batch
draws its own transform from its own ``torch.Generator``, so a unit's run does not depend on
which other units share its batch, and runs are reproducible without any global RNG.

Jitter alone is an exact circular shift (``torch.roll``); scale or rotation resample with
bilinear ``grid_sample`` (reflection at the borders). Both are differentiable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["random_transform"]


def random_transform(x: torch.Tensor, generators: Sequence[torch.Generator], *, jitter: int,
                     scale: float, rotate: float) -> torch.Tensor:
    """Shift each image by up to ``jitter`` pixels, scale by ``1 +- scale``, rotate by
    ``+- rotate`` degrees, each drawn uniformly from that image's generator.

    Parameters
    ----------
    x : Tensor
        Images ``(N, C, H, W)``.
    generators : sequence of torch.Generator
        One per image (CPU generators).
    jitter : int
        Largest shift in pixels along each axis (0: none).
    scale : float
        Largest relative change of size (0: none).
    rotate : float
        Largest rotation in degrees (0: none).

    Returns
    -------
    Tensor
        The transformed images, same shape.
    """
    if jitter <= 0 and scale <= 0 and rotate <= 0:
        return x
    draws = []
    for g in generators:
        shift = torch.randint(-jitter, jitter + 1, (2,), generator=g).tolist() if jitter > 0 \
            else [0, 0]
        factor = 1.0 + scale * (2 * float(torch.rand((), generator=g)) - 1) if scale > 0 else 1.0
        angle = rotate * (2 * float(torch.rand((), generator=g)) - 1) if rotate > 0 else 0.0
        draws.append((shift, factor, angle))
    if scale <= 0 and rotate <= 0:
        return torch.stack([torch.roll(image, shifts=tuple(shift), dims=(1, 2))
                            for image, (shift, _f, _a) in zip(x, draws, strict=True)])
    n, _c, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    for k, ((dy, dx), factor, angle) in enumerate(draws):
        a = math.radians(angle)
        cos, sin = math.cos(a) / factor, math.sin(a) / factor
        theta[k, 0, 0], theta[k, 0, 1] = cos, -sin * h / w
        theta[k, 1, 0], theta[k, 1, 1] = sin * w / h, cos
        theta[k, 0, 2] = -2.0 * dx / w  # grid coordinates span 2 over the image
        theta[k, 1, 2] = -2.0 * dy / h
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)
