"""Thin views over the core: traitlets state, layout, event wiring; no model math here."""

from __future__ import annotations

from .camera import CameraView
from .dashboard import DeepVis
from .epochs import EpochScrubber
from .tiles import TileCanvas

__all__ = ["CameraView", "DeepVis", "EpochScrubber", "TileCanvas"]
