"""A literal NumPy / SciPy port of the toolbox's ``GradientOptimizer._optimize`` (for tests).

It works where the toolbox worked: Caffe units, pixels on a 0..255 scale minus the mean colour,
learning rates as written in Table 1. Only the gradient comes from torch (``grad_fn``). Each
numbered step mirrors ``optimize/gradient_optimizer.py`` of yosinski/deep-visualization-toolbox
line by line, so :func:`ipydeepvis.core.maximize.maximize` (0..1 pixels, translated learning
rates) can be checked against it number for number.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.ndimage import gaussian_filter


def optimize(
    grad_fn: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    mean: np.ndarray,
    *,
    max_iter: int,
    lr_policy: str,
    lr: float = 0.0,
    max_lr: float = 0.0,
    desired_prog: float = 0.0,
    decay: float = 0.0,
    blur_radius: float = 0.0,
    blur_every: int = 0,
    small_norm_percentile: float = 0.0,
    px_abs_benefit_percentile: float = 0.0,
) -> tuple[np.ndarray, list[float]]:
    """Run the toolbox's loop; return the last iterate (Caffe units, ``(C, H, W)``) and the
    objective at every iteration.

    ``grad_fn(xx)`` returns the unit's value and its gradient with respect to ``xx``.
    ``mean`` is ``(C, 1, 1)`` in 0..255 units.
    """
    xx = x0.copy()
    objectives = []
    for ii in range(max_iter):
        # 0. Crop data
        xx = np.minimum(255.0, np.maximum(0.0, xx + mean)) - mean
        # 1. Push data through net / 4. backward
        obj, grad = grad_fn(xx)
        objectives.append(obj)
        if np.linalg.norm(grad) == 0:
            break
        # 5. learning rate
        if lr_policy == "progress":
            prog_lr = desired_prog / np.linalg.norm(grad) ** 2
            step_lr = min(max_lr, prog_lr)
        else:
            step_lr = lr
        # 6. update and regularizations, skipped on the last iteration
        if ii < max_iter - 1:
            xx += step_lr * grad
            xx *= 1 - decay
            if blur_every != 0 and blur_radius > 0 and ii % blur_every == 0:
                for channel in range(xx.shape[0]):
                    xx[channel] = gaussian_filter(xx[channel], blur_radius)
            if small_norm_percentile > 0:
                pxnorms = np.linalg.norm(xx, axis=0)
                smallpx = pxnorms < np.percentile(pxnorms, small_norm_percentile)
                xx = xx - xx * smallpx[np.newaxis]
            if px_abs_benefit_percentile > 0:
                px_benefit = (grad * -xx).sum(0)
                smallaben = abs(px_benefit) < np.percentile(abs(px_benefit),
                                                            px_abs_benefit_percentile)
                xx = xx - xx * smallaben[np.newaxis]
    return xx, objectives
