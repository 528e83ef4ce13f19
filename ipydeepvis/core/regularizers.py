"""The regularizers r_theta of Yosinski et al. (2015), as batched tensor operations.

Each function takes a batch of images ``v`` of shape ``(N, C, H, W)`` in *centred* pixel units
(the image minus its mean colour, on the 0..1 scale) and returns a new tensor; zero is the mean
colour, so "set a pixel to zero" means "paint it the mean colour", as in the paper. Every
statistic (percentiles) is taken per image, so a batch of N units regularizes exactly as N
separate runs would.

======================  =============================================================
``decay``               ``v * (1 - decay)``: L2 decay, a shrink toward the mean colour
``gaussian_blur``       the per-channel Gaussian filter of ``scipy.ndimage``
                        (``mode='reflect'``, ``truncate=4``), the blur the paper used;
                        ``GaussianBlur`` builds it once for repeated use
``clip_small_norm``     pixels whose norm over colour channels is below the
                        ``pct`` percentile of the image go to the mean colour
``clip_small_contrib``  pixels whose |contribution| ``|sum_c -v * g|`` is below the
                        ``pct`` percentile go to the mean colour
======================  =============================================================

Percentiles are NumPy's default (linear interpolation), and "below" is strict, exactly as in
the deep-visualization-toolbox's ``optimize/gradient_optimizer.py``.
"""

from __future__ import annotations

import torch

__all__ = [
    "GaussianBlur",
    "clip_small_contrib",
    "clip_small_norm",
    "decay",
    "gaussian_blur",
    "gaussian_kernel",
]


def decay(v: torch.Tensor, amount: float) -> torch.Tensor:
    """L2 decay: ``v * (1 - amount)`` (shrinks every pixel toward the mean colour)."""
    return v * (1.0 - amount)


def gaussian_kernel(sigma: float, *, truncate: float = 4.0, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """The 1-D kernel of ``scipy.ndimage.gaussian_filter``: radius ``int(truncate*sigma+0.5)``,
    weights ``exp(-x^2 / (2 sigma^2))`` normalised to sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / float(sigma)) ** 2)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def _symmetric_index(size: int, radius: int, device: torch.device) -> torch.Tensor:
    """Indices that pad a length-``size`` axis by ``radius`` on each side with scipy's
    ``'reflect'`` rule (``d c b a | a b c d | d c b a``), repeated for any radius."""
    positions = torch.arange(-radius, size + radius, device=device) % (2 * size)
    return torch.where(positions < size, positions, 2 * size - 1 - positions)


class GaussianBlur:
    """``scipy.ndimage.gaussian_filter(x, sigma)`` per channel of ``(N, C, H, W)`` images
    (separable kernel, ``mode='reflect'``, ``truncate=4``), its operators built once.

    torchvision's ``gaussian_blur`` pads with the other reflection (edge pixel not repeated) and
    needs the kernel to fit in the image; the paper's results were made with scipy's, so this is
    scipy's, borders included. Blurring one axis of length ``L`` is linear: a short axis is one
    matrix product with the ``(L, L)`` blur matrix (reflection folded in), a long one a weighted
    sum of shifted views of the padded image (``2r + 1`` multiply-adds), whichever is less work
    (both are several times faster on a CPU than a depthwise ``conv2d``). Built once per run,
    so a blur every few steps costs no kernel, index or matrix construction.
    """

    MATMUL_TAPS = 16
    """A matrix product costs about ``L`` multiply-adds per pixel and a tap sum ``2r + 1`` plus
    a per-tap overhead: matrices up to ``L = MATMUL_TAPS * (2r + 1)`` (measured on a CPU)."""

    def __init__(self, sigma: float, size: tuple[int, int], *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        self.sigma = float(sigma)
        self.size = tuple(size)
        weights = gaussian_kernel(sigma, dtype=torch.float64) if sigma > 0 else torch.ones(1)
        self._weights = weights.tolist()
        self.radius = (len(self._weights) - 1) // 2
        device = torch.device(device) if device is not None else torch.device("cpu")
        self._axes: list[tuple[int, torch.Tensor, bool]] = []  # (axis, operator, is a matrix)
        for axis, length in zip((2, 3), self.size, strict=True):
            index = _symmetric_index(length, self.radius, device)
            if length <= self.MATMUL_TAPS * len(self._weights):
                matrix = torch.zeros(length, length, dtype=torch.float64, device=device)
                rows = torch.arange(length, device=device)
                for tap, weight in enumerate(self._weights):
                    matrix.index_put_((rows, index[tap:tap + length]),
                                      torch.tensor(weight, dtype=torch.float64), accumulate=True)
                # rows blur axis 2 from the left; axis 3 multiplies by the transpose on the right
                operator = (matrix if axis == 2 else matrix.T).to(dtype).contiguous()
                self._axes.append((axis, operator, True))
            else:
                self._axes.append((axis, index, False))

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """The blurred images (a new tensor; ``v`` is not modified)."""
        if self.radius == 0:
            return v
        if tuple(v.shape[2:]) != self.size:
            msg = f"images of size {tuple(v.shape[2:])} for a blur built for {self.size}"
            raise ValueError(msg)
        for axis, operator, is_matrix in self._axes:
            if is_matrix:
                v = torch.matmul(operator, v) if axis == 2 else torch.matmul(v, operator)
                continue
            length = v.shape[axis]
            padded = v.index_select(axis, operator)
            out = padded.narrow(axis, 0, length) * self._weights[0]
            for tap in range(1, len(self._weights)):
                out.add_(padded.narrow(axis, tap, length), alpha=self._weights[tap])
            v = out
        return v


def gaussian_blur(v: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur every channel of ``(N, C, H, W)`` as ``scipy.ndimage.gaussian_filter(x, sigma)``
    does per channel (see :class:`GaussianBlur`; build one to blur the same size repeatedly)."""
    if sigma <= 0:
        return v
    return GaussianBlur(sigma, tuple(v.shape[2:]), dtype=v.dtype, device=v.device)(v)


def _below_percentile(values: torch.Tensor, pct: float) -> torch.Tensor:
    """Per image (rows of ``(N, P)``): True where the value is strictly below the ``pct``
    percentile of its row (linear interpolation, as ``numpy.percentile``)."""
    threshold = torch.quantile(values, pct / 100.0, dim=1, keepdim=True)
    return values < threshold


def clip_small_norm(v: torch.Tensor, pct: float) -> torch.Tensor:
    """Paint the mean colour over pixels whose L2 norm over channels is below the ``pct``
    percentile of their image (the paper's theta_n_pct)."""
    if pct <= 0:
        return v
    n, _c, h, w = v.shape
    norms = torch.linalg.vector_norm(v, dim=1).reshape(n, h * w)
    small = _below_percentile(norms, pct).reshape(n, 1, h, w)
    return v.masked_fill(small, 0.0)


def clip_small_contrib(v: torch.Tensor, grad: torch.Tensor, pct: float) -> torch.Tensor:
    """Paint the mean colour over pixels whose contribution is small (the paper's theta_c_pct).

    A pixel's contribution is the linear estimate of how much the objective would drop if the
    pixel were set to the mean colour, ``sum_c v * g`` (the toolbox's ``px_abs_benefit``
    uses ``-v * g``; only the absolute value matters). Pixels whose absolute contribution is
    below the ``pct`` percentile of their image are cleared.
    """
    if pct <= 0:
        return v
    n, _c, h, w = v.shape
    benefit = (v * grad).sum(dim=1).abs().reshape(n, h * w)
    small = _below_percentile(benefit, pct).reshape(n, 1, h, w)
    return v.masked_fill(small, 0.0)
