"""Every error ipydeepvis raises on purpose.

One base class, :class:`DeepVisError`; each subclass also inherits the matching built-in
(``ValueError``, ``IndexError``, ...) so that both ``except DeepVisError`` and the usual
``except ValueError`` work. Messages name the bad value, the valid choices and the fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "DeepVisError",
    "InvalidInputError",
    "InvalidOptionError",
    "LayerNotFoundError",
    "ModelForwardError",
    "PositionOutOfRangeError",
    "ProbeBusyError",
    "UnitOutOfRangeError",
    "UnsupportedModelError",
    "ViewClosedError",
    "WeightsChangedError",
]


class DeepVisError(Exception):
    """Base class of every error raised by ipydeepvis on purpose."""


class LayerNotFoundError(DeepVisError, KeyError, ValueError):
    """A layer name that the model does not have (or a reused module named without its call)."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return str(self.args[0]) if self.args else ""


class UnitOutOfRangeError(DeepVisError, IndexError):
    """A unit (channel) index outside ``0 .. channels - 1``."""


class PositionOutOfRangeError(DeepVisError, IndexError):
    """A spatial position outside the layer's activation map."""


class InvalidInputError(DeepVisError, ValueError):
    """An input tensor of the wrong type, dtype, rank, channel count, or with NaN/inf values."""


class InvalidOptionError(DeepVisError, ValueError):
    """An option (method, position, preset, ...) that is not one of the documented choices."""


class UnsupportedModelError(DeepVisError, TypeError):
    """A model, or a part of one, that a requested analysis cannot handle."""


class ModelForwardError(DeepVisError, RuntimeError):
    """The user's model raised while ipydeepvis ran it; the original error is chained."""


class ProbeBusyError(DeepVisError, RuntimeError):
    """A probe was called again while one of its calls was still running (re-entrant use)."""


class WeightsChangedError(DeepVisError, RuntimeError):
    """The model's weights kept changing (a training loop in another thread) while a call ran,
    every time it was tried; the call can simply be made again."""


class CheckpointError(DeepVisError, ValueError):
    """A checkpoint file or series that cannot be read safely or does not fit the model."""


class ViewClosedError(DeepVisError, RuntimeError):
    """A view was used after ``close()``: build a new one."""


def close_matches(name: str, choices: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` of ``choices`` that look like ``name`` (for "did you mean" hints).

    Substring matches come first (``"conv5"`` -> ``"features.conv5"``), then fuzzy ones.
    """
    choices = list(choices)
    contains = [c for c in choices if name and name in c]
    fuzzy = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    out: list[str] = []
    for c in contains + fuzzy:
        if c not in out:
            out.append(c)
    return out[:n]
