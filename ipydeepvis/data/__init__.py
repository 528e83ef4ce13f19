"""The embedded default's data: the procedural ``Shapes`` data set and the shipped series.

``ipydeepvis/data/series/`` holds the checkpoint series of the small ZF-style network
trained on ``Shapes`` with ``ipydeepvis train`` (see :mod:`ipydeepvis.demo`).
"""

from __future__ import annotations

from .shapes import CLASSES, SPLITS, Shapes, ShapesConfig

__all__ = ["CLASSES", "SPLITS", "Shapes", "ShapesConfig"]
