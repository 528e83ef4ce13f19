"""Correspondence analysis (Zeiler & Fergus Fig. 8, Table 1): does a layer encode a part of
an object the same way in different images?

Occlude the same part (say, the left eye) in every image and take, per image ``i`` and layer
``l``, the feature difference ``eps_i = x_i - x~_i`` between the original and the occluded
image's layer output. If the layer represents the part consistently, the differences point the
same way in every image: the paper measures that with

``Delta_l = mean over image pairs i < j of H(sign(eps_i), sign(eps_j))``

where ``H`` is the Hamming distance, here as a fraction of the layer's units (so ``Delta`` is
in ``[0, 1]``). A part whose ``Delta`` is smaller than that of random masks of the same size
(the paper's baseline, each image's random mask at its own random place) is encoded
consistently.

All occluded copies run through the model's shadow many at a time, the forward stopping at
the deepest layer asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ..errors import InvalidInputError, InvalidOptionError
from .batched import (
    Fill,
    Progress,
    batched_forward,
    check_batch_size,
    fill_tensor,
    images_and_labels,
)
from .probe import Probe

__all__ = ["Correspondence", "boxes_to_masks", "correspondence", "sign_hamming"]

# Feature differences this small, relative to the layer's largest activation on the image,
# are float noise between differently sized batches, not a change: their sign counts as 0.
_NOISE = 1e-5


@dataclass(frozen=True)
class Correspondence:
    """``Delta`` per layer and part, for the parts and for random masks of the same size.

    Attributes
    ----------
    layers : tuple of str
        The layers measured.
    parts : tuple of str
        The part names, in the order of the arrays.
    delta : dict of str to ndarray
        Per layer, ``(parts,)`` mean Hamming distance (fraction of units) between the sign
        vectors of the feature differences over all image pairs, the part occluded.
    random : dict of str to ndarray
        Per layer, ``(parts, n_random)`` the same for each draw of random masks.
    masks : dict of str to ndarray
        Per part, ``(N, H, W)`` bool: the occluded pixels of each image.
    random_masks : dict of str to ndarray
        Per part, ``(n_random, N, H, W)`` bool: the random masks used.
    done : int
        Occluded images computed (entries whose images were not all computed are NaN).
    total : int
        Occluded images of the whole analysis.
    """

    layers: tuple[str, ...]
    parts: tuple[str, ...]
    delta: dict[str, npt.NDArray[np.float64]]
    random: dict[str, npt.NDArray[np.float64]]
    masks: dict[str, npt.NDArray[np.bool_]]
    random_masks: dict[str, npt.NDArray[np.bool_]]
    done: int
    total: int

    @property
    def complete(self) -> bool:
        """True when every occluded image was computed."""
        return self.done == self.total

    @property
    def random_mean(self) -> dict[str, npt.NDArray[np.float64]]:
        """Per layer, ``(parts,)`` the random masks' ``Delta`` averaged over the draws."""
        return {layer: values.mean(axis=1) for layer, values in self.random.items()}

    def table(self) -> list[dict[str, Any]]:
        """One row per part: ``{"part", "<layer>", "<layer> random", ...}`` (Table 1's
        layout)."""
        rows = []
        means = self.random_mean
        for p, part in enumerate(self.parts):
            row: dict[str, Any] = {"part": part}
            for layer in self.layers:
                row[layer] = float(self.delta[layer][p])
                row[f"{layer} random"] = float(means[layer][p])
            rows.append(row)
        return rows


def sign_hamming(signs: torch.Tensor) -> float:
    """Mean Hamming distance, as a fraction of the entries, between the rows of ``signs``
    ``(N, D)`` (values -1, 0, 1) over all pairs of rows."""
    n, d = signs.shape
    if n < 2 or d == 0:
        msg = f"need at least two images with features to compare, got {n} x {d}"
        raise InvalidInputError(msg)
    onehot = torch.stack([signs == v for v in (-1, 0, 1)]).double()  # (3, N, D)
    matches = torch.einsum("vid,vjd->ij", onehot, onehot)
    pairs = torch.triu_indices(n, n, offset=1)
    return float((1.0 - matches[pairs[0], pairs[1]] / d).mean())


def boxes_to_masks(boxes: Any, shape: tuple[int, int]) -> torch.Tensor:
    """Boxes ``(N, 4)`` as ``(x0, y0, x1, y1)`` pixels (``x1``, ``y1`` exclusive; torchvision's
    ``xyxy``) to bool masks ``(N, H, W)``."""
    h, w = shape
    box = torch.as_tensor(np.asarray(boxes, dtype=np.float64)).round().long().reshape(-1, 4)
    bad = (box[:, 0] < 0) | (box[:, 1] < 0) | (box[:, 2] > w) | (box[:, 3] > h) | (
        box[:, 2] <= box[:, 0]) | (box[:, 3] <= box[:, 1])
    if bad.any():
        k = int(bad.nonzero()[0])
        msg = (f"box {box[k].tolist()!r} (image {k}) is not a non-empty (x0, y0, x1, y1) box "
               f"inside the {h} x {w} image")
        raise InvalidOptionError(msg)
    ys, xs = torch.arange(h), torch.arange(w)
    rows = (ys >= box[:, 1:2]) & (ys < box[:, 3:4])
    cols = (xs >= box[:, 0:1]) & (xs < box[:, 2:3])
    return rows[:, :, None] & cols[:, None, :]


def correspondence(
    model_or_probe: nn.Module | Probe,
    images: Any,
    parts: Mapping[str, Any],
    *,
    layers: str | Sequence[str],
    n_random: int = 5,
    seed: int = 0,
    fill: Fill = "mean",
    batch_size: int = 64,
    progress: bool = False,
    callback: Callable[[int, int], bool | None] | None = None,
) -> Correspondence:
    """Correspondence of object parts across images (Zeiler & Fergus Fig. 8, Table 1).

    Parameters
    ----------
    model_or_probe : nn.Module or Probe
        The model (never modified; it runs on a shadow sharing its weights, in eval mode).
    images : Tensor or sequence
        ``(N, C, H, W)``, N >= 2, or a sequence of images or ``(image, label)`` pairs.
    parts : mapping of str to boxes or masks
        Per part name, where the part is in each image: boxes ``(N, 4)`` as
        ``(x0, y0, x1, y1)`` pixels (``x1``, ``y1`` exclusive; e.g. ``Shapes.boxes``), or
        masks ``(N, H, W)`` (nonzero = occluded).
    layers : str or sequence of str
        Layers whose feature differences are compared.
    n_random : int
        Draws of random masks per part: each image's part mask moved to a uniformly random
        place that keeps it inside the image (a box stays a box of the same size).
    seed : int
        Seed of the random placements (a private ``torch.Generator``).
    fill : "mean", float, sequence of float or Tensor
        What occluded pixels become (see :func:`~ipydeepvis.core.occlusion.occlusion`);
        ``"mean"``: each image's per-channel mean.
    batch_size : int
        Occluded images per forward pass.
    progress : bool
        Show a tqdm progress bar.
    callback : callable, optional
        ``callback(done, total)`` after every batch (occluded images); returning False stops
        the run (entries not computed are NaN).

    Returns
    -------
    Correspondence

    Notes
    -----
    Feature differences smaller than ``1e-5`` times the layer's largest absolute activation
    on the original image count as zero: they are float noise between batches of different
    sizes, not a response to the occlusion.
    """
    batch, _labels = images_and_labels(images)
    n, _c, h, w = batch.shape
    if n < 2:
        msg = f"correspondence compares images pairwise: give at least 2 images, got {n}"
        raise InvalidInputError(msg)
    batch_size = check_batch_size(batch_size)
    if not isinstance(n_random, int) or isinstance(n_random, bool) or n_random < 0:
        msg = f"n_random must be an int >= 0, got {n_random!r}"
        raise InvalidOptionError(msg)
    if not isinstance(seed, int) or isinstance(seed, bool):
        msg = f"seed must be an int, got {seed!r}"
        raise InvalidOptionError(msg)
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        msg = "layers is empty: name at least one layer (see probe.layers)"
        raise InvalidOptionError(msg)
    if not isinstance(parts, Mapping) or not parts:
        msg = f"parts must be a non-empty mapping of part name to boxes or masks, got {parts!r}"
        raise InvalidOptionError(msg)
    masks = {str(name): _part_masks(value, name, n, (h, w)) for name, value in parts.items()}
    generator = torch.Generator().manual_seed(seed)
    random_masks = {name: torch.stack([_moved(mask, generator) for _ in range(n_random)])
                    if n_random else torch.zeros(0, n, h, w, dtype=torch.bool)
                    for name, mask in masks.items()}
    # every set of N occluded images: (part index, draw or -1 for the part itself, masks)
    sets = [(p, -1, masks[name]) for p, name in enumerate(masks)]
    sets += [(p, r, random_masks[name][r]) for p, name in enumerate(masks)
             for r in range(n_random)]
    fills = fill_tensor(fill, batch)
    total = n * len(sets)
    delta = {name: np.full(len(masks), np.nan) for name in names}
    random = {name: np.full((len(masks), n_random), np.nan) for name in names}

    with batched_forward(model_or_probe, names, batch, output=False,
                         reduce=dict.fromkeys(names, _flat)) as run:
        clean, _ = run(batch)
        noise = {name: _NOISE * clean[name].abs().amax(dim=1, keepdim=True) for name in names}
        signs: dict[int, dict[str, list[torch.Tensor]]] = {}
        jobs = [(s, k) for s in range(len(sets)) for k in range(n)]
        with Progress(total, "correspondence", progress=progress, callback=callback) as bar:
            for start in range(0, total, batch_size):
                chunk = jobs[start:start + batch_size]
                index = torch.tensor([k for _s, k in chunk])
                mask = torch.stack([sets[s][2][k] for s, k in chunk])[:, None].to(batch.device)
                occluded = torch.where(mask, fills[index], batch[index])
                feats, _ = run(occluded)
                for name in names:
                    at = index.to(feats[name].device)
                    eps = clean[name][at] - feats[name]
                    sign = torch.where(eps.abs() <= noise[name][at], 0, eps.sign()).to(torch.int8)
                    for row, (s, _k) in enumerate(chunk):
                        signs.setdefault(s, {}).setdefault(name, []).append(sign[row].cpu())
                for s in sorted({s for s, _k in chunk}):
                    if len(signs[s][names[0]]) < n:
                        continue
                    p, r, _m = sets[s]
                    for name in names:
                        value = sign_hamming(torch.stack(signs[s][name]))
                        if r < 0:
                            delta[name][p] = value
                        else:
                            random[name][p, r] = value
                    del signs[s]
                if not bar.step(len(chunk)):
                    break
            done = bar.done
    return Correspondence(
        layers=tuple(names),
        parts=tuple(masks),
        delta=delta,
        random=random,
        masks={name: m.numpy() for name, m in masks.items()},
        random_masks={name: m.numpy() for name, m in random_masks.items()},
        done=done,
        total=total,
    )


def _flat(out: torch.Tensor) -> torch.Tensor:
    return out.reshape(out.shape[0], -1).clone()


def _part_masks(value: Any, name: object, n: int, shape: tuple[int, int]) -> torch.Tensor:
    """A part's ``(N, H, W)`` bool masks from boxes ``(N, 4)`` or masks ``(N, H, W)``."""
    try:
        array = np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError) as exc:
        msg = f"part {name!r}: expected boxes (N, 4) or masks (N, H, W), got {value!r}"
        raise InvalidOptionError(msg) from exc
    if array.shape == (n, 4):
        masks = boxes_to_masks(array, shape)
    elif array.shape == (n, *shape):
        masks = torch.from_numpy(array != 0)
    else:
        msg = (f"part {name!r} has shape {array.shape}; expected {n} boxes (N, 4) as "
               f"(x0, y0, x1, y1) or masks {(n, *shape)}")
        raise InvalidOptionError(msg)
    empty = ~masks.flatten(1).any(dim=1)
    if empty.any():
        msg = f"part {name!r} occludes nothing in image {int(empty.nonzero()[0])}"
        raise InvalidOptionError(msg)
    return masks


def _moved(masks: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image's mask moved so that its bounding box lands at a uniformly random place
    inside the image."""
    n, h, w = masks.shape
    out = torch.zeros_like(masks)
    for k in range(n):
        ys = masks[k].any(dim=1).nonzero().view(-1)
        xs = masks[k].any(dim=0).nonzero().view(-1)
        y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
        top = int(torch.randint(0, h - (y1 - y0) + 1, (), generator=generator))
        left = int(torch.randint(0, w - (x1 - x0) + 1, (), generator=generator))
        out[k, top:top + y1 - y0, left:left + x1 - x0] = masks[k, y0:y1, x0:x1]
    return out

