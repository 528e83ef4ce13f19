"""How an optimized image is parameterized: pixels, or a scaled Fourier spectrum (Lucid).

A :class:`Parametrization` maps a parameter tensor ``p`` (the thing gradient ascent steps on)
to a batch of centred images ``v = image(p)`` (``(N, C, H, W)``, 0..1 scale, zero at the mean
colour), and back, ``p = inverse(v)``. Both maps are linear and exact inverses, so the paper's
regularizers, which act on pixels, apply to any parameterization: step on ``p``, regularize
``image(p)``, map back with ``inverse``.

- ``"pixel"``: ``p`` is the image (the paper's setting).
- ``"fft"``: ``p`` is the real view of an orthonormal 2-D real FFT of the image, with each
  frequency scaled by ``1 / max(f, 1/max(H, W))`` (Olah et al. 2017, lucid/lucent's
  ``fft_image``, ``decay_power=1``): a gradient step then moves low frequencies more than
  high ones, which favours smooth images without a blur.
- ``decorrelate=True``: the colour channels of ``p`` are decorrelated with Lucid's ImageNet
  colour-correlation square root (``lucid/optvis/param/color.py``), normalised so its largest
  column norm is 1; ``image`` mixes them back to RGB.

Unlike lucent, the valid range is kept by clipping (the paper's first step), not by a sigmoid,
so the parameterization stays linear and the paper's learning-rate translation still holds
for ``"pixel"``.
"""

from __future__ import annotations

import torch

__all__ = ["COLOR_CORRELATION", "PARAMETRIZATIONS", "Parametrization", "centre_position"]

PARAMETRIZATIONS: tuple[str, ...] = ("pixel", "fft")

# Lucid's square root of the ImageNet RGB colour covariance (lucid/optvis/param/color.py).
COLOR_CORRELATION: tuple[tuple[float, float, float], ...] = (
    (0.26, 0.09, 0.02),
    (0.27, 0.00, -0.05),
    (0.27, -0.09, 0.03),
)


class Parametrization:
    """A linear, invertible map between parameters ``p`` and centred images ``v``.

    Parameters
    ----------
    kind : {"pixel", "fft"}
        Pixels as they are, or Lucid's scaled spectrum.
    shape : tuple of 4 ints
        ``(N, C, H, W)`` of the images.
    decorrelate : bool
        Mix decorrelated colour channels to RGB (needs ``C == 3``).
    device, dtype
        Where and how the parameters live.
    """

    def __init__(self, kind: str, shape: tuple[int, int, int, int], *, decorrelate: bool,
                 device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.kind = kind
        self.shape = shape
        h, w = shape[2:]
        self._mix: torch.Tensor | None = None
        self._unmix: torch.Tensor | None = None
        if decorrelate:
            matrix = torch.tensor(COLOR_CORRELATION, dtype=torch.float64)
            matrix = matrix / torch.linalg.vector_norm(matrix, dim=0).max()
            self._mix = matrix.to(device, dtype)  # rgb = mix @ decorrelated
            self._unmix = torch.linalg.inv(matrix).to(device, dtype)
        self._scale: torch.Tensor | None = None
        if kind == "fft":
            fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
            fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
            freqs = torch.sqrt(fx * fx + fy * fy)
            scale = 1.0 / torch.clamp(freqs, min=1.0 / max(h, w))
            self._scale = scale.to(device, dtype)[None, None, :, :, None]  # (1,1,H,W//2+1,1)

    def image(self, p: torch.Tensor) -> torch.Tensor:
        """Centred images ``(N, C, H, W)`` from parameters (differentiable)."""
        v = p
        if self._scale is not None:
            h, w = self.shape[2:]
            v = torch.fft.irfft2(torch.view_as_complex((p * self._scale).contiguous()), s=(h, w),
                                 norm="ortho")
        if self._mix is not None:
            v = torch.einsum("ij,njhw->nihw", self._mix, v)
        return v

    def inverse(self, v: torch.Tensor) -> torch.Tensor:
        """Parameters whose :meth:`image` is ``v`` (exactly, up to rounding)."""
        p = v
        if self._unmix is not None:
            p = torch.einsum("ij,njhw->nihw", self._unmix, p)
        if self._scale is not None:
            p = torch.view_as_real(torch.fft.rfft2(p, norm="ortho")) / self._scale
        return p.contiguous()

    def __repr__(self) -> str:
        extra = ", decorrelated" if self._mix is not None else ""
        return f"Parametrization({self.kind!r}, shape={self.shape}{extra})"


def centre_position(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The centre of a map of size ``shape`` (``h // 2, w // 2``), the default conv target."""
    return tuple(s // 2 for s in shape)

