"""The procedural ``Shapes`` data set: the embedded default's images, rendered on the fly.

Nothing can be downloaded where ipydeepvis is built, tested and demonstrated, so the
package draws its own images. Each image shows one object on a cluttered background:
a solid shape (circle, square, triangle, cross, ring, star) or a patch of texture
(horizontal, vertical or diagonal stripes, a checkerboard, dots). Telling the classes apart
needs what Zeiler & Fergus's figures show a CNN learning: oriented edges (stripes, the
sides of a square), colour (half of the images have a foreground and a background of the
same luminance, so only hue separates them), texture (a striped disc is "stripes", not
"circle") and parts (the arms of a cross, the points of a star).

Every image is a pure function of ``(seed, split, index)``: the per-image parameters come
from a counter-based hash of those three numbers, never from a global random state, so
``Shapes("test", seed=0)[17]`` is the same tensor on every call, in every process, and the
train / val / test splits never share an image. Rendering is vectorised over a batch in
torch (anti-aliased signed distances), so generating a 10k-image epoch costs a fraction
of training on it (see ``benchmarks/bench_shapes.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ipydeepvis.errors import InvalidOptionError

__all__ = ["CLASSES", "SPLITS", "Shapes", "ShapesConfig"]

CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "cross",
    "ring",
    "star",
    "horizontal stripes",
    "vertical stripes",
    "diagonal stripes",
    "checkerboard",
    "dots",
)
"""Class names, in label order."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split names; each one draws from its own disjoint stream of images."""

_DEFAULT_LENGTH = {"train": 10_000, "val": 2_000, "test": 2_000}

# Classes whose object is a textured patch rather than a solid shape.
_TEXTURES = frozenset(range(6, 11))

# Slots of the per-image uniform draws (columns of the parameter matrix).
(
    _U_CX,
    _U_CY,
    _U_SCALE,
    _U_ANGLE,
    _U_SHAPE_A,
    _U_SHAPE_B,
    _U_FG_H,
    _U_FG_S,
    _U_FG_V,
    _U_BG_H,
    _U_BG_S,
    _U_BG_V,
    _U_ISOLUM,
    _U_C2_H,
    _U_C2_S,
    _U_C2_V,
    _U_C2_IS_BG,
    _U_GRAD,
    _U_GRAD_DIR,
    _U_SHADE,
    _U_SHADE_DIR,
    _U_NOISE,
    _U_PERIOD,
    _U_PHASE_A,
    _U_PHASE_B,
    _U_TEX_ANGLE,
    _U_DIAG_SIGN,
    _U_REGION,
    _U_NCLUTTER,
) = range(29)
_U_CLUTTER = 29  # then 8 draws per clutter line
_CLUTTER_DRAWS = 8

_MAX_LENGTH = 2**30  # indices take 30 bits of an image's 64-bit key (see Shapes._keys)
_GOLDEN = 0x9E3779B97F4A7C15


@dataclass(frozen=True)
class ShapesConfig:
    """How ``Shapes`` images look; the defaults are what the shipped model was trained on.

    Parameters
    ----------
    image_size : int
        Height and width in pixels (images are square), at least 16.
    min_scale, max_scale : float
        Range of a solid shape's radius, as a fraction of half the image width.
        Texture patches are 1.5 times larger so that they hold several periods.
    max_clutter : int
        Up to this many thin random line segments are drawn behind the object.
    max_noise : float
        The standard deviation of each image's pixel noise is drawn from ``[0, max_noise]``.
    isoluminant : float
        Fraction of images whose background has the foreground's luminance, so that only
        colour separates object and background.

    Raises
    ------
    InvalidOptionError
        When a value is outside its valid range.
    """

    image_size: int = 64
    min_scale: float = 0.3
    max_scale: float = 0.55
    max_clutter: int = 4
    max_noise: float = 0.06
    isoluminant: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 16:
            msg = f"image_size={self.image_size!r} is not valid: use an int >= 16."
            raise InvalidOptionError(msg)
        if not 0.05 <= self.min_scale <= self.max_scale <= 0.66:
            msg = (
                f"min_scale={self.min_scale!r}, max_scale={self.max_scale!r} are not valid: "
                "use 0.05 <= min_scale <= max_scale <= 0.66."
            )
            raise InvalidOptionError(msg)
        if not isinstance(self.max_clutter, int) or not 0 <= self.max_clutter <= 16:
            msg = f"max_clutter={self.max_clutter!r} is not valid: use an int in 0..16."
            raise InvalidOptionError(msg)
        if not 0.0 <= self.max_noise <= 0.5:
            msg = f"max_noise={self.max_noise!r} is not valid: use a float in [0, 0.5]."
            raise InvalidOptionError(msg)
        if not 0.0 <= self.isoluminant <= 1.0:
            msg = f"isoluminant={self.isoluminant!r} is not valid: use a float in [0, 1]."
            raise InvalidOptionError(msg)


class Shapes(Dataset):
    """Procedural images of coloured shapes and textures, deterministic by seed.

    Parameters
    ----------
    split : {'train', 'val', 'test'}
        Which stream of images to draw from; the three never share an image.
    length : int, optional
        Number of images (default 10,000 for train, 2,000 for val and test). Image ``i``
        does not depend on ``length``: a longer data set extends a shorter one.
    seed : int
        Data set seed (a non-negative int below 2**32).
    image_size : int, optional
        Shortcut that overrides ``config.image_size``.
    config : ShapesConfig, optional
        How the images look; ``ShapesConfig()`` by default.

    Raises
    ------
    InvalidOptionError
        For an unknown split, a negative length or an invalid seed.

    Examples
    --------
    >>> ds = Shapes("test", length=100, seed=0)
    >>> image, label = ds[0]
    >>> image.shape, image.dtype, ds.classes[label] in ds.classes
    (torch.Size([3, 64, 64]), torch.float32, True)
    """

    def __init__(
        self,
        split: str = "train",
        length: int | None = None,
        *,
        seed: int = 0,
        image_size: int | None = None,
        config: ShapesConfig | None = None,
    ) -> None:
        if split not in SPLITS:
            msg = f"split={split!r} is not one of {list(SPLITS)}."
            raise InvalidOptionError(msg)
        if length is None:
            length = _DEFAULT_LENGTH[split]
        if (
            not isinstance(length, int)
            or isinstance(length, bool)
            or not 0 <= length <= _MAX_LENGTH
        ):
            msg = f"length={length!r} is not valid: use an int in 0 .. 2**30."
            raise InvalidOptionError(msg)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
            msg = f"seed={seed!r} is not valid: use an int in 0 .. 2**32 - 1."
            raise InvalidOptionError(msg)
        config = ShapesConfig() if config is None else config
        if image_size is not None:
            config = ShapesConfig(**{**_asdict(config), "image_size": image_size})
        self.split = split
        self.length = length
        self.seed = seed
        self.config = config
        self._prefix = np.uint64((seed << 32) | (SPLITS.index(split) << 30))

    # -- the Dataset protocol ------------------------------------------------------------

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Return image ``index`` as ``(float32 (3, H, W) tensor in [0, 1], label)``."""
        i = self._check_index(index)
        images, labels = self._render(np.array([i], dtype=np.uint64))
        return images[0], int(labels[0])

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[torch.Tensor, int]]:
        """Render several images in one vectorised call (used by ``DataLoader``)."""
        images, labels = self.batch(indices)
        return [(images[k], int(labels[k])) for k in range(len(labels))]

    def __repr__(self) -> str:
        return (
            f"Shapes(split={self.split!r}, length={self.length}, seed={self.seed}, "
            f"image_size={self.config.image_size})"
        )

    # -- public helpers ------------------------------------------------------------------

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, in label order."""
        return CLASSES

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(CLASSES)

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Class name -> label (as in torchvision's ``ImageFolder``)."""
        return {name: i for i, name in enumerate(CLASSES)}

    @property
    def labels(self) -> torch.Tensor:
        """Labels of all images as an int64 tensor, without rendering any image."""
        return torch.from_numpy(self._labels(np.arange(self.length, dtype=np.uint64)))

    def batch(
        self, indices: Sequence[int] | torch.Tensor | np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Render many images at once.

        Parameters
        ----------
        indices : sequence of int
            Image indices, each in ``-len(self) .. len(self) - 1``.

        Returns
        -------
        images : torch.Tensor
            float32 of shape ``(N, 3, H, W)``, values in ``[0, 1]``.
        labels : torch.Tensor
            int64 of shape ``(N,)``.

        Raises
        ------
        IndexError
            When an index is out of range.
        """
        images, labels = self._render(self._indices(indices))
        return images, labels

    def object_masks(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Where each image's object is: its anti-aliased coverage, float32 ``(N, H, W)`` in
        ``[0, 1]`` (1 inside the shape or texture patch, 0 on the background).

        The masks are the ones the images are drawn with (``batch`` is unchanged by this).
        """
        return self._render(self._indices(indices), cover=True)[2]

    def boxes(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> torch.Tensor:
        """Each image's object box, int64 ``(N, 4)`` as ``(x0, y0, x1, y1)`` in pixels, ``x1``
        and ``y1`` exclusive (torchvision's ``xyxy``): the tightest box around the pixels
        at least half covered by the object (:meth:`object_masks`)."""
        inside = self.object_masks(indices) >= 0.5
        rows, cols = inside.any(dim=2), inside.any(dim=1)
        out = torch.zeros(inside.shape[0], 4, dtype=torch.int64)
        for k in range(inside.shape[0]):  # every object covers some pixels at its scale
            ys, xs = rows[k].nonzero().view(-1), cols[k].nonzero().view(-1)
            if len(ys) and len(xs):
                out[k] = torch.stack([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1])
        return out

    # -- internals -----------------------------------------------------------------------

    def _indices(self, indices: Sequence[int] | torch.Tensor | np.ndarray) -> np.ndarray:
        """Indices as non-negative uint64, or ``IndexError`` for one out of range."""
        idx = np.asarray(indices.tolist() if isinstance(indices, torch.Tensor) else indices)
        idx = idx.reshape(-1).astype(np.int64)
        if idx.size and (idx.min() < -self.length or idx.max() >= self.length):
            bad = int(idx[(idx < -self.length) | (idx >= self.length)][0])
            msg = f"index {bad} is out of range for {self!r}: use 0 .. {self.length - 1}."
            raise IndexError(msg)
        return np.where(idx < 0, idx + self.length, idx).astype(np.uint64)

    def _check_index(self, index: int) -> int:
        """Return ``index`` as a non-negative int, or raise ``IndexError``."""
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            msg = f"index {index!r} is not an int; use dataset.batch(...) for many indices."
            raise TypeError(msg)
        i = int(index)
        if not -self.length <= i < self.length:
            msg = f"index {i} is out of range for {self!r}: use 0 .. {self.length - 1}."
            raise IndexError(msg)
        return i + self.length if i < 0 else i

    def _keys(self, idx: np.ndarray) -> np.ndarray:
        """The 64-bit key of each image: a bijective hash of ``(seed, split, index)``.

        ``seed`` (32 bits), the split (2 bits) and the index (30 bits) are packed into one
        64-bit word, which SplitMix64's finaliser maps one-to-one onto a key. Two images of
        different seeds, splits or indices therefore never share a key, which is what makes
        the splits disjoint by construction rather than by luck.
        """
        return _mix64(self._prefix | idx.astype(np.uint64))

    def _labels(self, idx: np.ndarray) -> np.ndarray:
        """Labels of images ``idx``: each block of ``C`` consecutive indices is a permutation.

        The data set is therefore balanced to within one image per class for any length,
        while consecutive images still come in a shuffled-looking order of classes.
        """
        n_cls = np.uint64(len(CLASSES))
        block_keys = _mix64(self._prefix | (idx // n_cls)) ^ np.uint64(0xB10C)
        classes = np.arange(len(CLASSES), dtype=np.uint64) * np.uint64(_GOLDEN)
        with np.errstate(over="ignore"):
            ranks = _mix64(block_keys[:, None] + classes)
        perm = np.argsort(ranks, axis=1, kind="stable")
        pos = (idx % n_cls).astype(np.int64)
        return perm[np.arange(len(idx)), pos].astype(np.int64)

    def _uniforms(self, keys: np.ndarray) -> torch.Tensor:
        """Per-image uniform draws in ``[0, 1)``, shape ``(N, slots)``, from the image keys."""
        n_slots = _U_CLUTTER + _CLUTTER_DRAWS * self.config.max_clutter
        slots = (np.arange(1, n_slots + 1, dtype=np.uint64)) * np.uint64(_GOLDEN)
        with np.errstate(over="ignore"):
            bits = _mix64(keys[:, None] + slots)
        u = (bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
        return torch.from_numpy(u)

    @staticmethod
    def _noise(keys: np.ndarray, size: int) -> torch.Tensor:
        """Uniform noise in ``[-1, 1]`` of shape ``(N, 3, H, W)`` from the image keys.

        A 32-bit integer hash of (image key, word) vectorised in NumPy, whose four bytes
        are four pixels' noise (256 levels are plenty for noise): cheaper than a torch
        generator per image, and free of global random state.
        """
        per_image = (keys >> np.uint64(32)).astype(np.uint32)
        n_pix = 3 * size * size
        n_words = (n_pix + 3) // 4
        with np.errstate(over="ignore"):
            x = per_image[:, None] * np.uint32(0x9E3779B1) + np.arange(n_words, dtype=np.uint32)
            x ^= x >> np.uint32(16)
            x *= np.uint32(0x7FEB352D)
            x ^= x >> np.uint32(15)
            x *= np.uint32(0x846CA68B)
            x ^= x >> np.uint32(16)
        levels = torch.from_numpy(x.view(np.uint8)[:, :n_pix])
        noise = levels.to(torch.float32).sub_(127.5).mul_(1.0 / 127.5)
        return noise.view(len(keys), 3, size, size)

    def _render(self, idx: np.ndarray, cover: bool = False) -> tuple[torch.Tensor, ...]:
        """Render images ``idx`` (non-negative uint64 indices); see the module docstring.

        Returns ``(images, labels)``, and with ``cover=True`` also the object's coverage
        ``(N, H, W)``."""
        cfg = self.config
        n = len(idx)
        size = cfg.image_size
        labels = torch.from_numpy(self._labels(idx))
        if n == 0:
            empty = torch.zeros(0, 3, size, size)
            return (empty, labels, empty[:, 0]) if cover else (empty, labels)
        keys = self._keys(idx)
        u = self._uniforms(keys)
        px = 2.0 / size  # one pixel in normalised coordinates ([-1, 1] across the image)

        coords = (torch.arange(size, dtype=torch.float32) + 0.5) * px - 1.0
        gx = coords.view(1, 1, size)
        gy = coords.view(1, size, 1)

        # Colours: foreground, background (isoluminant for a fraction), second texture colour.
        fg = _hsv_to_rgb(u[:, _U_FG_H], 0.45 + 0.55 * u[:, _U_FG_S], 0.35 + 0.65 * u[:, _U_FG_V])
        bg_h = (u[:, _U_FG_H] + 0.2 + 0.6 * u[:, _U_BG_H]) % 1.0
        bg = _hsv_to_rgb(bg_h, 0.7 * u[:, _U_BG_S], 0.1 + 0.9 * u[:, _U_BG_V])
        iso = u[:, _U_ISOLUM] < cfg.isoluminant
        scale_to_fg = _luma(fg) / _luma(bg).clamp_min(0.02)
        bg = torch.where(iso[:, None], (bg * scale_to_fg[:, None]).clamp(0.0, 1.0), bg)
        too_close = (fg - bg).norm(dim=1) < 0.3
        bg = torch.where(too_close[:, None] & ~iso[:, None], 1.0 - fg, bg)
        c2 = _hsv_to_rgb(u[:, _U_C2_H], 0.6 * u[:, _U_C2_S], 0.05 + 0.95 * u[:, _U_C2_V])
        c2 = torch.where((fg - c2).norm(dim=1, keepdim=True) < 0.3, 1.0 - fg, c2)
        c2 = torch.where((u[:, _U_C2_IS_BG] < 0.35)[:, None], bg, c2)

        # Background: a linear gradient of the background colour, then thin clutter lines.
        g_amp = 0.5 * (u[:, _U_GRAD] - 0.5)
        g_dir = 2 * math.pi * u[:, _U_GRAD_DIR]
        ramp = gx * torch.cos(g_dir).view(n, 1, 1) + gy * torch.sin(g_dir).view(n, 1, 1)
        img = bg.view(n, 3, 1, 1) * (1.0 + g_amp.view(n, 1, 1, 1) * ramp.unsqueeze(1))
        n_clutter = (u[:, _U_NCLUTTER] * (cfg.max_clutter + 1)).floor()
        for k in range(cfg.max_clutter):
            sel = (n_clutter > k).nonzero().view(-1)  # images with at least k + 1 lines
            if sel.numel() == 0:
                break
            m = sel.numel()
            d = u[sel, _U_CLUTTER + _CLUTTER_DRAWS * k : _U_CLUTTER + _CLUTTER_DRAWS * (k + 1)]
            a = (d[:, 0:2] * 2.2 - 1.1).view(m, 2, 1, 1)
            length = (0.3 + 0.9 * d[:, 2]).view(m, 1)
            ang = 2 * math.pi * d[:, 3]
            b = a + (length * torch.stack([torch.cos(ang), torch.sin(ang)], 1)).view(m, 2, 1, 1)
            dist = _segment_distance(gx, gy, a, b)
            width = (0.4 + 0.6 * d[:, 4]).view(m, 1, 1)
            alpha = (0.35 + 0.5 * d[:, 5]).view(m, 1, 1)
            cov = (width + 0.5 - dist / px).clamp_(0.0, 1.0).mul_(alpha).unsqueeze(1)
            col = _hsv_to_rgb(d[:, 6], 0.8 * d[:, 7], 1.0 - 0.8 * d[:, 7]).view(m, 3, 1, 1)
            img[sel] = torch.lerp(img[sel], col.expand(m, 3, size, size), cov)

        # The object: a coverage mask (anti-aliased) and a pattern choosing c1 vs c2.
        is_tex = torch.tensor([int(c) in _TEXTURES for c in labels.tolist()])
        scale = cfg.min_scale + (cfg.max_scale - cfg.min_scale) * u[:, _U_SCALE]
        scale = torch.where(is_tex, 1.5 * scale, scale)
        margin = (1.0 - 0.75 * scale).clamp_min(0.0)
        cx = (2 * u[:, _U_CX] - 1) * margin
        cy = (2 * u[:, _U_CY] - 1) * margin
        theta = 2 * math.pi * u[:, _U_ANGLE]
        cos_t, sin_t = torch.cos(theta).view(n, 1, 1), torch.sin(theta).view(n, 1, 1)
        dx = gx - cx.view(n, 1, 1)
        dy = gy - cy.view(n, 1, 1)
        r = scale.view(n, 1, 1)
        lx = (cos_t * dx + sin_t * dy) / r  # object-local coordinates, radius 1
        ly = (-sin_t * dx + cos_t * dy) / r

        sdf = torch.empty(n, size, size)
        pattern = torch.ones(n, size, size)
        for c in range(len(CLASSES)):
            sel = (labels == c).nonzero().view(-1)
            if sel.numel() == 0:
                continue
            sa, sb = u[sel, _U_SHAPE_A].view(-1, 1, 1), u[sel, _U_SHAPE_B].view(-1, 1, 1)
            x, y = lx[sel], ly[sel]
            if c in _TEXTURES:
                sdf[sel] = _region_sdf(x, y, u[sel, _U_REGION].view(-1, 1, 1))
                pattern[sel] = _texture(c, gx, gy, u[sel], px)
            else:
                sdf[sel] = _shape_sdf(c, x, y, sa, sb)
        coverage = (0.5 - sdf * (r / px)).clamp(0.0, 1.0).unsqueeze(1)

        shade_dir = 2 * math.pi * u[:, _U_SHADE_DIR]
        shade = 1.0 + 0.4 * (u[:, _U_SHADE] - 0.5).view(n, 1, 1) * (
            gx * torch.cos(shade_dir).view(n, 1, 1) + gy * torch.sin(shade_dir).view(n, 1, 1)
        )
        p = pattern.unsqueeze(1)
        obj = (p * fg.view(n, 3, 1, 1) + (1.0 - p) * c2.view(n, 3, 1, 1)) * shade.unsqueeze(1)
        img = torch.lerp(img, obj, coverage)

        if cfg.max_noise > 0:
            # Uniform noise on [-1, 1] has standard deviation 1 / sqrt(3).
            sigma = (cfg.max_noise * math.sqrt(3.0)) * u[:, _U_NOISE]
            img.add_(self._noise(keys, size).mul_(sigma.view(n, 1, 1, 1)))
        img = img.clamp_(0.0, 1.0).contiguous()
        return (img, labels, coverage[:, 0]) if cover else (img, labels)


# -- shapes and textures -----------------------------------------------------------------


def _shape_sdf(
    c: int, x: torch.Tensor, y: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor
) -> torch.Tensor:
    """Signed distance (object-local units, negative inside) of solid shape class ``c``.

    ``sa`` and ``sb`` are per-image uniforms in ``[0, 1)`` that vary the shape's proportions.
    """
    rho = torch.sqrt(x * x + y * y)
    name = CLASSES[c]
    if name == "circle":
        return rho - (0.8 + 0.15 * sa)
    if name == "square":
        half = 0.7 + 0.1 * sa
        return torch.maximum(x.abs(), y.abs()) - half
    if name == "triangle":
        # Equilateral, circumradius 1: three half-planes at 120 degrees.
        d = y - 0.5
        for k in (1, 2):
            a = 2 * math.pi * k / 3
            d = torch.maximum(d, math.cos(a) * y - math.sin(a) * x - 0.5)
        return d
    if name == "cross":
        arm = 0.2 + 0.12 * sa
        length = 0.9 + 0.1 * sb
        bar_h = torch.maximum(x.abs() - length, y.abs() - arm)
        bar_v = torch.maximum(y.abs() - length, x.abs() - arm)
        return torch.minimum(bar_h, bar_v)
    if name == "ring":
        outer = 0.85 + 0.1 * sb
        inner = (0.45 + 0.2 * sa) * outer
        mid, half = (outer + inner) / 2, (outer - inner) / 2
        return (rho - mid).abs() - half
    if name == "star":
        # Five points: fold the angle into one half-sector, then a half-plane through the
        # outer point (1, 0) and the inner corner at radius `inner`, angle pi/5.
        inner = 0.38 + 0.12 * sa
        sector = 2 * math.pi / 5
        phi = torch.atan2(y, x)
        a = torch.remainder(phi + sector / 2, sector) - sector / 2
        a = a.abs()
        px, py = rho * torch.cos(a), rho * torch.sin(a)
        qx, qy = inner * math.cos(sector / 2), inner * math.sin(sector / 2)
        ex, ey = qx - 1.0, qy - 0.0
        norm = torch.sqrt(ex * ex + ey * ey)
        # Distance to the edge line, positive on the side away from the origin.
        return ((px - 1.0) * ey - py * ex) / norm
    msg = f"class {c} ({name!r}) is not a solid shape"
    raise AssertionError(msg)


def _region_sdf(x: torch.Tensor, y: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """Outline of a texture patch: a disc, a square or a hexagon, chosen by ``which``."""
    disc = torch.sqrt(x * x + y * y) - 0.9
    square = torch.maximum(x.abs(), y.abs()) - 0.78
    hexa = x.abs() * 0.5 + y.abs() * (math.sqrt(3) / 2)
    hexa = torch.maximum(hexa, x.abs()) - 0.85
    return torch.where(which < 1 / 3, disc, torch.where(which < 2 / 3, square, hexa))


def _texture(
    c: int, gx: torch.Tensor, gy: torch.Tensor, u: torch.Tensor, px: float
) -> torch.Tensor:
    """Pattern in ``[0, 1]`` (1 = first colour) of texture class ``c`` in image coordinates.

    Orientation of stripes is the class (horizontal, vertical, diagonal, with 12 degrees of
    jitter), so textures are laid out in image coordinates, not object coordinates.
    """
    name = CLASSES[c]
    m = len(u)
    period = (0.15 + 0.11 * u[:, _U_PERIOD]).view(m, 1, 1)
    jitter = math.radians(12) * (2 * u[:, _U_TEX_ANGLE] - 1)
    phase_a = u[:, _U_PHASE_A].view(m, 1, 1)
    phase_b = u[:, _U_PHASE_B].view(m, 1, 1)
    sharp = period / (2 * px)  # pixels per half period: the soft square wave's slope

    def wave(t: torch.Tensor) -> torch.Tensor:
        """Anti-aliased square wave of ``t`` (in periods), values in [0, 1]."""
        tri = 2 * torch.abs(torch.remainder(t, 1.0) - 0.5)  # triangle wave, 0..1
        return ((tri - 0.5) * sharp * 2 + 0.5).clamp(0.0, 1.0)

    if name in ("horizontal stripes", "vertical stripes", "diagonal stripes"):
        base = {"horizontal stripes": 0.0, "vertical stripes": math.pi / 2}.get(name)
        if base is None:
            base = torch.where(u[:, _U_DIAG_SIGN] < 0.5, math.pi / 4, -math.pi / 4)
        alpha = (base + jitter).view(m, 1, 1)
        # Stripes run along direction alpha: the pattern varies along its normal.
        t = (-gx * torch.sin(alpha) + gy * torch.cos(alpha)) / period + phase_a
        return wave(t)
    alpha = (2 * math.pi * u[:, _U_TEX_ANGLE]).view(m, 1, 1)
    s = (gx * torch.cos(alpha) + gy * torch.sin(alpha)) / period + phase_a
    t = (-gx * torch.sin(alpha) + gy * torch.cos(alpha)) / period + phase_b
    if name == "checkerboard":
        a, b = wave(s * 0.5), wave(t * 0.5)
        return a * b + (1 - a) * (1 - b)
    if name == "dots":
        ds = torch.remainder(s, 1.0) - 0.5
        dt = torch.remainder(t, 1.0) - 0.5
        radius = 0.22 + 0.1 * u[:, _U_SHAPE_A].view(m, 1, 1)
        dist = (torch.sqrt(ds * ds + dt * dt) - radius) * (period / px)
        return (0.5 - dist).clamp(0.0, 1.0)
    msg = f"class {c} ({name!r}) is not a texture"
    raise AssertionError(msg)


def _segment_distance(
    gx: torch.Tensor, gy: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """Distance from every pixel to the segment ``a``-``b`` (each ``(N, 2, 1, 1)``)."""
    ax, ay = a[:, 0], a[:, 1]
    ex, ey = b[:, 0] - ax, b[:, 1] - ay
    wx, wy = gx - ax, gy - ay
    t = ((wx * ex + wy * ey) / (ex * ex + ey * ey).clamp_min(1e-8)).clamp(0.0, 1.0)
    qx, qy = wx - t * ex, wy - t * ey
    return torch.sqrt(qx * qx + qy * qy)


# -- colour and hashing helpers ------------------------------------------------------------


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Convert ``(N,)`` hue / saturation / value in ``[0, 1]`` to ``(N, 3)`` RGB."""
    k = torch.tensor([5.0, 3.0, 1.0])
    t = torch.remainder(k + h[:, None] * 6.0, 6.0)
    f = torch.minimum(t, 4.0 - t).clamp(0.0, 1.0)
    return v[:, None] - v[:, None] * s[:, None] * f


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma of ``(N, 3)`` RGB."""
    return rgb @ torch.tensor([0.299, 0.587, 0.114])


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 NumPy values: a bijection of 64-bit words."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, dtype=np.uint64) + np.uint64(_GOLDEN)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _asdict(config: ShapesConfig) -> dict[str, object]:
    """Fields of a config as a plain dict (``dataclasses.asdict`` without deep copies)."""
    return {f: getattr(config, f) for f in config.__dataclass_fields__}
