"""``ipydeepvis.CheckpointSeries``: the core series reader, knowing the embedded default.

:class:`ipydeepvis.core.checkpoints.CheckpointSeries` rebuilds a manifest's architecture only
from the ``builders`` it is given (core knows nothing of :mod:`ipydeepvis.models`). This
thin subclass, which ``ipydeepvis`` exports, passes the embedded default's registry
(:data:`ipydeepvis.models.MODELS`) unless told otherwise, so ``dv.CheckpointSeries(path)``
opens a series written by ``ipydeepvis train`` (and the shipped one) and ``.model(epoch)``
works with no more arguments.
"""

from __future__ import annotations

import os

from ipydeepvis.core import checkpoints as _core
from ipydeepvis.models import MODELS

__all__ = ["CheckpointSeries"]


class CheckpointSeries(_core.CheckpointSeries):
    """The checkpoints of one training run, by epoch (see the core class for everything).

    Parameters
    ----------
    path : str or PathLike
        A series folder, a manifest file, or a single checkpoint file.
    model : nn.Module or callable, optional
        What ``.model(epoch)`` builds on when the series does not name a known architecture
        (a module to copy, or a function returning a new one).
    builders : mapping of str to callable, optional
        Architecture name -> builder; :data:`ipydeepvis.models.MODELS` (the embedded
        default's architectures) by default.

    Examples
    --------
    >>> import ipydeepvis as dv
    >>> series = dv.CheckpointSeries(dv.demo.series_path())
    >>> model = series.model(series.epochs[-1])
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        model: _core.ModelSpec = None,
        *,
        builders: _core.Builders | None = None,
    ) -> None:
        super().__init__(path, model, builders=MODELS if builders is None else builders)
