"""The embedded default's networks, and the registry a checkpoint manifest rebuilds them from.

A series written by ``ipydeepvis train`` stores ``{"name": ..., "config": {...}}`` for its
model; :func:`build_model` turns that back into a fresh module. The registry is a fixed,
read-only table: no import-time registration, no global state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from ipydeepvis.errors import InvalidOptionError

from .zf import Normalize, ZFNet, ZFNetConfig

__all__ = ["MODELS", "Normalize", "ZFNet", "ZFNetConfig", "build_model", "model_config"]


def _build_zf(generator: torch.Generator | None = None, **config: Any) -> nn.Module:
    """Build :class:`ZFNet` from keyword config values (as stored in a manifest)."""
    fields = ZFNetConfig.__dataclass_fields__
    unknown = sorted(set(config) - set(fields))
    if unknown:
        msg = f"unknown option(s) {unknown} for model 'zf'; valid options: {sorted(fields)}."
        raise InvalidOptionError(msg)
    return ZFNet(ZFNetConfig(**config), generator=generator)


MODELS: Mapping[str, Callable[..., nn.Module]] = MappingProxyType({"zf": _build_zf})
"""Model name -> builder taking ``generator=`` and the config as keyword arguments."""


def build_model(name: str, *, generator: torch.Generator | None = None, **config: Any) -> nn.Module:
    """Build a fresh, randomly initialised model of a registered architecture.

    Parameters
    ----------
    name : str
        A key of :data:`MODELS` (``'zf'``).
    generator : torch.Generator, optional
        Source of the initial weights (global random state is never used when given).
    **config
        Architecture options, e.g. ``num_classes=11, widths=[24, 48, 64, 64, 48]``.

    Returns
    -------
    torch.nn.Module
        A new model in training mode.

    Raises
    ------
    InvalidOptionError
        For an unknown name or option.
    """
    if name not in MODELS:
        msg = f"model {name!r} is not one of the registered models {sorted(MODELS)}."
        raise InvalidOptionError(msg)
    return MODELS[name](generator=generator, **config)


def model_config(model: nn.Module) -> dict[str, Any]:
    """The JSON-ready config that :func:`build_model` rebuilds ``model`` from.

    Raises
    ------
    InvalidOptionError
        When ``model`` is not one of the registered architectures.
    """
    if isinstance(model, ZFNet):
        return model.config.to_dict()
    msg = (
        f"model of type {type(model).__name__!r} is not a registered architecture "
        f"({sorted(MODELS)}); build it with ipydeepvis.models.build_model."
    )
    raise InvalidOptionError(msg)
