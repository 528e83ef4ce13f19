"""The embedded default, ready to look at: ``demo.load()``.

Returns the shipped training run of the small ZF-style net on ``Shapes`` (trained with
``ipydeepvis train``, see the README) as one object: the final model in eval mode, the
whole checkpoint series for the epoch scrubber, a test-split data set drawn like the
training data, and the class names. Nothing is downloaded or trained; it takes well under
two seconds once torch is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from ipydeepvis.checkpoints import CheckpointSeries
from ipydeepvis.core.index import TopKIndex, model_fingerprint
from ipydeepvis.core.probe import Probe
from ipydeepvis.data.shapes import Shapes, ShapesConfig
from ipydeepvis.errors import CheckpointError

__all__ = ["Demo", "index_path", "load", "series_path"]


@dataclass(frozen=True)
class Demo:
    """What :func:`load` returns.

    Attributes
    ----------
    model : nn.Module
        The network after the last saved epoch, in eval mode. It takes ``[0, 1]`` RGB
        images as the data set yields them (normalisation is inside): ``model(image[None])``.
    series : CheckpointSeries
        Every saved epoch of the run, with its per-epoch metrics.
    dataset : Shapes
        Test-split images (never seen in training), drawn with the run's data settings.
    classes : tuple of str
        Class names, in label order.
    index : TopKIndex or None
        The shipped top-9 index of every layer over the 2,000 test images at the final epoch
        (for ``DeepVis(..., index=demo.index)``); None for another series or data length, or
        when its weights fingerprint does not match the model.
    """

    model: nn.Module
    series: CheckpointSeries
    dataset: Shapes
    classes: tuple[str, ...]
    index: TopKIndex | None = None

    def confident_index(self, threshold: float = 0.9, among: int = 16) -> int:
        """The first test image the model gets right with at least ``threshold`` probability.

        A good first picture for the dashboard (a near tie between two classes shows little).
        Looks at the first ``among`` images (what ``DeepVis`` offers by default, 16); returns
        0 when none qualifies. The model runs in a :class:`~ipydeepvis.core.Probe`, so it is
        left exactly as it was.
        """
        count = min(among, len(self.dataset))
        images = torch.stack([self.dataset[i][0] for i in range(count)])
        labels = torch.tensor([self.dataset[i][1] for i in range(count)])
        probabilities = Probe(self.model).output(images).softmax(1)
        best, predicted = probabilities.max(1)
        sure = ((best >= threshold) & (predicted == labels)).nonzero().flatten()
        return int(sure[0]) if len(sure) else 0


def index_path() -> Path:
    """Folder of the top-k index shipped inside the package (final epoch, test images)."""
    return Path(str(resources.files("ipydeepvis") / "data" / "index"))


def series_path() -> Path:
    """Folder of the checkpoint series shipped inside the package."""
    return Path(str(resources.files("ipydeepvis") / "data" / "series"))


def load(path: str | os.PathLike[str] | None = None, *, length: int = 2_000) -> Demo:
    """Load the embedded default: model, checkpoint series, test images and class names.

    Parameters
    ----------
    path : path, optional
        A series written by ``ipydeepvis train`` to use instead of the shipped one.
    length : int
        Number of test images in ``dataset`` (rendered on access, so this costs nothing).

    Returns
    -------
    Demo
        ``.model`` (final epoch, eval mode), ``.series``, ``.dataset``, ``.classes``.

    Raises
    ------
    CheckpointError
        When the series is missing, unreadable, or was not trained on ``Shapes``.
    """
    series = CheckpointSeries(series_path() if path is None else path)
    manifest = series.manifest
    data = manifest.get("data") if manifest is not None else None
    if not isinstance(data, dict) or data.get("name") != "shapes":
        msg = (
            f"{str(series.path)!r} is not a series trained on Shapes by `ipydeepvis train` "
            "(its manifest.json does not record a 'shapes' data set)."
        )
        raise CheckpointError(msg)
    try:
        config = ShapesConfig(**data.get("config", {}))
        seed = int(data.get("seed", 0))
    except (TypeError, ValueError) as exc:
        msg = (
            f"the manifest of {str(series.path)!r} records Shapes settings that do not work "
            f"({data!r}): {exc}"
        )
        raise CheckpointError(msg) from exc
    dataset = Shapes("test", length, seed=seed, config=config)
    model = series.model(series.epochs[-1])
    index = None
    if path is None and length == 2_000:
        index = TopKIndex.load(index_path())
        if index.model != model_fingerprint(model) or index.length != length:
            index = None
    return Demo(model=model, series=series, dataset=dataset, classes=dataset.classes,
                index=index)
