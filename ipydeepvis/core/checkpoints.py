"""Read a training run's checkpoints as one series of epochs, safely.

:class:`CheckpointSeries` is what the epoch scrubber turns: ``.epochs`` lists what can be
shown, ``.load(epoch)`` gives that epoch's weights as a state dict, ``.model(epoch)`` a new
module carrying them, and ``.metrics`` the per-epoch losses and accuracies when the run
recorded them. It reads:

- a series written by ``ipydeepvis train`` (``manifest.json`` + one ``.safetensors`` file
  per saved epoch; the manifest names the architecture and its config, and the *builders*
  passed in turn that name back into a module);
- a folder of plain ``state_dict`` files (``.pt`` / ``.pth``) with the epoch in their names
  (``epoch=3``, ``epoch_03``, ``ep3``, ...) or, failing that, an ``'epoch'`` entry inside;
- PyTorch Lightning ``.ckpt`` files (weights under ``'state_dict'``, usually with a
  ``model.`` prefix; the epoch as Lightning recorded it inside the file);
- ``.safetensors`` files (epoch in the name or in the header's metadata).

Loading never executes code from a file: pickles go through
``torch.load(..., map_location="cpu", weights_only=True)`` and everything else through
safetensors. Weights always go into a new module, never into a module the user passed.

One bad file does not spoil the series. What stops a file from taking its place (an epoch
that cannot be told, is not an integer in ``0 .. MAX_EPOCH``, a manifest entry that is not a
file name of the folder, a link out of a manifest's folder) leaves that file out, with a
warning, and is recorded in ``series.skipped``; what is wrong inside a file (truncated,
corrupt, a pickle that would run code, another architecture) is a :class:`CheckpointError`
when that epoch is loaded, naming the file; the other epochs load as before. Bad metrics
rows are dropped the same way, and a bad model entry fails ``.model()`` only.

This module imports torch, safetensors and the standard library only: ``core`` is
widget-free and knows nothing of the embedded default (``ipydeepvis.CheckpointSeries`` is
this class with the embedded default's architectures passed in as ``builders``).
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import os
import pickle
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from ipydeepvis.errors import CheckpointError

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "MAX_EPOCH",
    "Builders",
    "CheckpointFile",
    "CheckpointSeries",
]

MANIFEST_NAME = "manifest.json"
"""File name of the manifest ``ipydeepvis train`` writes next to its checkpoints."""

MANIFEST_FORMAT = "ipydeepvis.series/1"
"""Value of the manifest's ``"format"`` field."""

CHECKPOINT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth", ".ckpt")
"""File kinds a series folder may hold."""

MAX_EPOCH = 10**6
"""Largest epoch number a series accepts (larger ones are dates, steps or garbage)."""

Builders = Mapping[str, Callable[..., nn.Module]]
"""Architecture name (a manifest's ``model.name``) -> function taking the manifest's
``model.config`` as keyword arguments and returning a new module."""

# Containers under which training scripts commonly keep the weights, most specific first.
_WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module")
# Prefixes wrappers add to every key (DataParallel/DDP, torch.compile, Lightning, ...).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "net.")
# epoch=3, epoch_03, epoch-3, epoch3, ep3, ep_3, EPOCH=12 (but not the "ep" inside "step").
_EPOCH_IN_NAME = re.compile(r"(?:^|[^a-z])(?:epoch|ep)[=_\-]?(\d+)", re.IGNORECASE)
_MAX_LISTED = 8
# Modules whose globals are torch's own plumbing: listed after any other (dangerous) one.
_TORCH_OWN = ("torch", "collections", "builtins", "_codecs", "numpy")
# Lines of torch's weights_only error that are advice rather than the reason.
_TORCH_ADVICE = ("Weights only load failed", "weights_only", "Re-running", "arbitrary code",
                 "Check the documentation", "Please file an issue", "https://")  # fmt: skip

# Modules whose frames a warning skips to reach the caller (see _outside_caller).
_OWN_MODULES = frozenset({__name__, "ipydeepvis.checkpoints"})

ModelSpec = nn.Module | Callable[[], nn.Module] | None


@dataclass(frozen=True)
class CheckpointFile:
    """One epoch's file in a series.

    Parameters
    ----------
    epoch : int
        The epoch it holds.
    path : Path
        Where it is.
    kind : {'safetensors', 'torch', 'lightning'}
        How it is read (safetensors, or ``torch.load(weights_only=True)``).
    """

    epoch: int
    path: Path
    kind: str


class CheckpointSeries:
    """The checkpoints of one training run, by epoch.

    Parameters
    ----------
    path : str or PathLike
        A series folder (with a ``manifest.json`` or checkpoint files), a manifest file, or
        a single checkpoint file.
    model : nn.Module or callable, optional
        What ``.model(epoch)`` builds on: a module (deep-copied for every call, never
        modified) or a function returning a new module. Wins over the manifest's model.
    builders : mapping of str to callable, optional
        How a manifest's architecture is rebuilt: ``{name: builder}``, each builder taking
        the manifest's ``model.config`` as keyword arguments and returning a new module.
        Needed by ``.model()`` for a manifest series unless ``model`` is given.
        ``ipydeepvis.CheckpointSeries`` passes the embedded default's registry.

    Attributes
    ----------
    path : Path
        What was opened.
    manifest : dict or None
        The parsed ``manifest.json`` of a series written by ``ipydeepvis train``.
    skipped : dict of Path to str
        What was left out, with a warning, and why: files whose epoch could not be told or is
        out of range, manifest entries that are not a file of its folder, links leaving a
        manifest's folder; problems of the manifest itself (bad metrics rows, a bad model
        entry) are recorded under the manifest's path.

    Raises
    ------
    CheckpointError
        When ``path`` does not exist, holds no usable checkpoints, its manifest is
        unreadable or not ipydeepvis', two files claim the same epoch, or ``model`` /
        ``builders`` are of the wrong kind.

    Examples
    --------
    >>> series = CheckpointSeries("runs/shapes", builders={"zf": build_zf})  # doctest: +SKIP
    >>> series.epochs                                       # doctest: +SKIP
    [1, 2, 3, 5, 10, 15, 20]
    >>> model = series.model(series.epochs[-1])             # a new module, in eval mode
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        model: ModelSpec = None,
        *,
        builders: Builders | None = None,
    ) -> None:
        root = Path(path)
        if not root.exists():
            msg = f"checkpoint path {str(root)!r} does not exist."
            raise CheckpointError(msg)
        if model is not None and not isinstance(model, nn.Module) and not callable(model):
            msg = (
                f"model={model!r} is not valid: pass an nn.Module (it is copied, never "
                "changed) or a function that returns a new one."
            )
            raise CheckpointError(msg)
        if builders is not None and not (
            isinstance(builders, Mapping)
            and all(isinstance(k, str) and callable(v) for k, v in builders.items())
        ):
            msg = (
                f"builders={builders!r} is not valid: pass a mapping of architecture name "
                "(the manifest's model.name) to a function that returns a new module."
            )
            raise CheckpointError(msg)
        self.path = root
        self._model_spec = model
        self._builders: Builders = MappingProxyType(dict(builders or {}))
        self._expected: frozenset[str] | None = None
        self._expected_known = False
        self.manifest: dict[str, Any] | None = None
        self.skipped: dict[Path, str] = {}
        self._manifest_path: Path | None = None
        self._metrics: dict[int, dict[str, float]] = {}

        manifest_path = _find_manifest(root)
        if manifest_path is not None:
            self.manifest = _read_manifest(manifest_path)
            self._manifest_path = manifest_path
            self._files = self._files_from_manifest(self.manifest, manifest_path)
            problems = []
            self._metrics, bad_rows = _parse_metrics(self.manifest.get("metrics"))
            if bad_rows:
                problems.append(
                    f"the series manifest {str(manifest_path)!r}: dropped metrics "
                    f"({len(bad_rows)}): {_listing(bad_rows)}."
                )
            try:
                _architecture(self.manifest, manifest_path)
            except CheckpointError as exc:
                problems.append(str(exc))
            for problem in problems:
                self._skip(manifest_path, problem)
        else:
            self._files = self._discover(root)
        if not self._files:
            if self.skipped:
                left_out = [f"{p.name}: {why}" for p, why in self.skipped.items()]
                msg = f"no usable checkpoints in {str(root)!r}; left out: {_listing(left_out)}."
            else:
                msg = (
                    f"no checkpoints found in {str(root)!r}: expected {MANIFEST_NAME} or files "
                    f"ending in {', '.join(CHECKPOINT_SUFFIXES)}."
                )
            raise CheckpointError(msg)

    # -- what the series holds -----------------------------------------------------------

    @property
    def epochs(self) -> list[int]:
        """The saved epochs, ascending."""
        return sorted(self._files)

    @property
    def files(self) -> dict[int, CheckpointFile]:
        """Epoch -> the file that holds it."""
        return {e: self._files[e] for e in self.epochs}

    @property
    def metrics(self) -> dict[int, dict[str, float]]:
        """Per-epoch metrics recorded by the run (every trained epoch, not only saved ones).

        ``{epoch: {"train_loss": ..., "train_acc": ..., "val_loss": ..., "val_acc": ...}}``
        for a series written by ``ipydeepvis train``; empty when the run recorded none.
        Rows or values that are not numbers were dropped (see ``skipped``); NaN and inf
        are kept (a diverged run records them).
        """
        return {epoch: dict(row) for epoch, row in self._metrics.items()}

    @property
    def model_name(self) -> str | None:
        """Registry name of the architecture from the manifest, if it names one."""
        entry = self.manifest.get("model") if self.manifest is not None else None
        name = entry.get("name") if isinstance(entry, dict) else None
        return name if isinstance(name, str) else None

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[int]:
        return iter(self.epochs)

    def __contains__(self, epoch: object) -> bool:
        return epoch in self._files

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, epochs={self.epochs})"

    # -- loading -------------------------------------------------------------------------

    def load(self, epoch: int) -> dict[str, torch.Tensor]:
        """The weights saved at ``epoch``, as a CPU state dict.

        Keys are matched to the series' model when it is known (a Lightning module's
        ``model.`` prefix, DataParallel's ``module.`` or ``torch.compile``'s ``_orig_mod.``
        are taken off); otherwise only a prefix shared by every key is removed.

        Raises
        ------
        CheckpointError
            For an unknown epoch (the message lists the valid ones), a file that would run
            code when unpickled, a link out of a manifest's folder, or a truncated / corrupt
            file (the message names it).
        """
        entry = self._entry(epoch)
        if self._manifest_path is not None:
            outside = _link_outside(entry.path, self._manifest_path.parent)
            if outside is not None:
                msg = (
                    f"epoch {entry.epoch}: {str(entry.path)!r} is a link to {str(outside)!r} "
                    "outside the series folder; a manifest only lists files of its own folder."
                )
                raise CheckpointError(msg)
        state = _read_weights(entry, self.epochs)
        expected = self._expected_keys()
        if expected is not None:
            fitted = _fit_keys(state, expected)
            if fitted is not None:
                return fitted
        return _strip_shared_prefix(state)

    def model(self, epoch: int) -> nn.Module:
        """A new module with the weights of ``epoch``, in eval mode.

        Built from the ``model=`` given to the series (a deep copy, or a new instance from
        the factory), or else from the manifest's architecture with the matching builder.
        The module passed by the user is never modified.

        Raises
        ------
        CheckpointError
            For an unknown epoch, an unreadable file, no known architecture (no ``model=``,
            no manifest, or no builder for the manifest's model), a bad model entry in the
            manifest, or weights that do not fit the architecture (the message names the
            missing and the unexpected keys, and shape mismatches).
        """
        entry = self._entry(epoch)
        module = self._new_module()
        state = self.load(epoch)
        _check_fits(module, state, entry)
        module.load_state_dict(state, strict=True)
        return module.eval()

    # -- internals -----------------------------------------------------------------------

    def _skip(self, path: Path, reason: str) -> None:
        """Leave ``path`` out, or record a problem of the manifest ``path``, with a warning."""
        if path == self._manifest_path:
            text = reason  # names the manifest itself
        else:
            text = f"skipping {str(path)!r}: {reason}"
        if path in self.skipped:
            reason = f"{self.skipped[path]}; {reason}"
        self.skipped[path] = reason
        warnings.warn(text, stacklevel=_outside_caller())

    def _entry(self, epoch: int) -> CheckpointFile:
        """The file of ``epoch``, or a :class:`CheckpointError` listing the valid epochs."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch not in self._files:
            msg = f"epoch {epoch!r} is not in this series; saved epochs: {self.epochs}."
            raise CheckpointError(msg)
        return self._files[epoch]

    def _new_module(self) -> nn.Module:
        """A new, independent module of the series' architecture."""
        spec = self._model_spec
        if isinstance(spec, nn.Module):
            return copy.deepcopy(spec)
        if spec is not None:
            module = spec()
            if not isinstance(module, nn.Module):
                msg = f"the model factory {spec!r} returned {type(module).__name__}, not a module."
                raise CheckpointError(msg)
            return module
        if self.manifest is not None and self._manifest_path is not None:
            return self._build_from_manifest(self.manifest, self._manifest_path)
        msg = (
            f"the series at {str(self.path)!r} does not name its architecture (no "
            f"{MANIFEST_NAME}); pass model= to CheckpointSeries: a module to copy or a "
            "function returning a new one."
        )
        raise CheckpointError(msg)

    def _build_from_manifest(self, manifest: Mapping[str, Any], path: Path) -> nn.Module:
        """A new module of the manifest's architecture, from the matching builder."""
        name, config = _architecture(manifest, path)
        if not self._builders:
            msg = (
                f"the series manifest {str(path)!r} names its model {name!r} but no builders "
                f"were given: pass builders={{{name!r}: ...}} (a function taking the "
                "manifest's model config as keyword arguments and returning a new module) or "
                "model= (a module to copy); ipydeepvis.CheckpointSeries knows the embedded "
                "default's models."
            )
            raise CheckpointError(msg)
        if name not in self._builders:
            msg = (
                f"the series manifest {str(path)!r}: its model {name!r} is not one of the "
                f"builders {sorted(self._builders)}; pass builders={{{name!r}: ...}} or model=."
            )
            raise CheckpointError(msg)
        builder = self._builders[name]
        try:
            module = builder(**config)
        except Exception as exc:  # the builder is the caller's code: report, keep the cause
            msg = (
                f"the series manifest {str(path)!r}: cannot rebuild the manifest's model "
                f"{name!r} with config {config!r} ({type(exc).__name__}: {exc})."
            )
            raise CheckpointError(msg) from exc
        if not isinstance(module, nn.Module):
            msg = (
                f"the builder of {name!r} ({builder!r}) returned {type(module).__name__}, not "
                "a module."
            )
            raise CheckpointError(msg)
        return module

    def _expected_keys(self) -> frozenset[str] | None:
        """The state-dict keys of the series' model, or ``None`` when it cannot be built."""
        if not self._expected_known:
            if isinstance(self._model_spec, nn.Module):
                self._expected = frozenset(self._model_spec.state_dict())
            elif self._model_spec is not None or self.manifest is not None:
                try:
                    self._expected = frozenset(self._new_module().state_dict())
                except CheckpointError:  # .model() reports it; weights load without it
                    self._expected = None
            self._expected_known = True
        return self._expected

    def _files_from_manifest(
        self, manifest: Mapping[str, Any], path: Path
    ) -> dict[int, CheckpointFile]:
        """Epoch -> file as listed by the manifest; bad entries are skipped with a warning.

        Only a bare file name inside the manifest's folder, under an integer epoch key in
        ``0 .. MAX_EPOCH``, is accepted, and not a link leaving the folder, so a manifest
        cannot point the loader anywhere else on disk.
        """
        folder = path.parent
        files: dict[int, CheckpointFile] = {}
        for key, name in manifest["checkpoints"].items():
            base = Path(name).name if isinstance(name, str) else None
            if base is None or base != name or not base.endswith(CHECKPOINT_SUFFIXES):
                self._skip(path, (
                    f"the series manifest {str(path)!r} lists {name!r} for epoch {key}: "
                    "expected a file name in the same folder ending in "
                    f"{', '.join(CHECKPOINT_SUFFIXES)}; that entry is left out."
                ))  # fmt: skip
                continue
            target = folder / base
            epoch, why = _epoch_from_key(key)
            if epoch is None:
                self._skip(target, f"the manifest {str(path)!r} lists it under {key!r}: {why}")
                continue
            if epoch in files:
                self._skip(target, (
                    f"the manifest {str(path)!r} lists epoch {epoch} twice (also "
                    f"{files[epoch].path.name!r})"
                ))  # fmt: skip
                continue
            outside = _link_outside(target, folder)
            if outside is not None:
                self._skip(target, (
                    f"it is a link to {str(outside)!r} outside the series folder; a manifest "
                    "only lists files of its own folder"
                ))  # fmt: skip
                continue
            kind = "safetensors" if base.endswith(".safetensors") else "torch"
            files[epoch] = CheckpointFile(epoch, target, kind)
        return files

    def _discover(self, root: Path) -> dict[int, CheckpointFile]:
        """Find checkpoint files (a folder, or one file) and tell each one's epoch."""
        if root.is_file():
            candidates = [root]
        else:
            candidates = sorted(
                p for p in root.iterdir() if p.is_file() and p.suffix in CHECKPOINT_SUFFIXES
            )
        found: dict[int, list[tuple[CheckpointFile, bool]]] = {}
        for p in candidates:
            if p.suffix not in CHECKPOINT_SUFFIXES:
                msg = f"{str(p)!r} is not a checkpoint file ({', '.join(CHECKPOINT_SUFFIXES)})."
                raise CheckpointError(msg)
            epoch, from_name, kind = _epoch_of(p)
            if epoch is None:
                self._skip(p, kind)
                continue
            entry = CheckpointFile(epoch, p, "safetensors" if p.suffix == ".safetensors" else kind)
            found.setdefault(epoch, []).append((entry, from_name))
        files: dict[int, CheckpointFile] = {}
        for epoch, entries in found.items():
            named = [e for e, from_name in entries if from_name] or [e for e, _ in entries]
            if len(named) > 1:
                names = [str(e.path.name) for e in named]
                msg = (
                    f"several files claim epoch {epoch} in {str(root)!r}: {names}; keep one "
                    "per epoch (or put them in separate folders)."
                )
                raise CheckpointError(msg)
            files[epoch] = named[0]
        return files


def _outside_caller() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside this module.

    Subclasses (``ipydeepvis.CheckpointSeries``) add frames of their own, so the level is
    counted rather than fixed.
    """
    level, frame = 2, sys._getframe(2)
    while frame is not None and frame.f_globals.get("__name__") in _OWN_MODULES:
        level, frame = level + 1, frame.f_back
    return level


# -- manifest ------------------------------------------------------------------------------


def _find_manifest(root: Path) -> Path | None:
    """The manifest to read for ``root``: the file itself, or ``root/manifest.json``."""
    if root.is_file():
        return root if root.suffix == ".json" else None
    candidate = root / MANIFEST_NAME
    return candidate if candidate.is_file() else None


def _read_manifest(path: Path) -> dict[str, Any]:
    """Parse a manifest written by ``ipydeepvis train``; check what every epoch needs.

    Only an unreadable file, another format, or a ``checkpoints`` entry that is not an
    object fail the whole series; the model entry and the metrics are checked apart (they
    concern ``.model()`` and ``.metrics`` only).
    """
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = f"cannot read the series manifest {str(path)!r}: {exc}."
        raise CheckpointError(msg) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        msg = (
            f"{str(path)!r} is not an ipydeepvis series manifest: format {found!r}, expected "
            f"{MANIFEST_FORMAT!r}."
        )
        raise CheckpointError(msg)
    if not isinstance(manifest.get("checkpoints"), dict):
        msg = f"the series manifest {str(path)!r} has no valid 'checkpoints' entry."
        raise CheckpointError(msg)
    return manifest


def _architecture(manifest: Mapping[str, Any], path: Path) -> tuple[str, dict[str, Any]]:
    """The manifest's model ``(name, config)``, or a :class:`CheckpointError` naming the file."""
    entry = manifest.get("model")
    if not isinstance(entry, dict):
        msg = f"the series manifest {str(path)!r}: its model entry {entry!r} is not a JSON object."
        raise CheckpointError(msg)
    name = entry.get("name")
    if not isinstance(name, str):
        msg = f"the series manifest {str(path)!r} does not name its model ('model.name')."
        raise CheckpointError(msg)
    config = entry.get("config", {})
    if not isinstance(config, dict):
        msg = (
            f"the series manifest {str(path)!r}: its model config {config!r} is not a JSON "
            "object of options."
        )
        raise CheckpointError(msg)
    return name, config


def _parse_metrics(raw: object) -> tuple[dict[int, dict[str, float]], list[str]]:
    """The manifest's metrics rows by epoch, and what was dropped (and why)."""
    if raw is None:
        return {}, []
    if not isinstance(raw, list):
        return {}, [f"'metrics' is a {type(raw).__name__}, not a list of rows"]
    out: dict[int, dict[str, float]] = {}
    dropped: list[str] = []
    for i, row in enumerate(raw):
        if not isinstance(row, dict):
            dropped.append(f"row {i} is {row!r}, not an object")
            continue
        epoch, why = _epoch_value(row.get("epoch"))
        if epoch is None:
            dropped.append(f"row {i}: {why}")
            continue
        values: dict[str, float] = {}
        for key, value in row.items():
            if key == "epoch":
                continue
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                values[str(key)] = float(value)
            else:
                dropped.append(f"row {i} (epoch {epoch}): {key!r} = {value!r} is not a number")
        out[epoch] = values
    return dict(sorted(out.items())), dropped


# -- epoch numbers -------------------------------------------------------------------------


def _in_range(epoch: int) -> tuple[int | None, str]:
    """``(epoch, "")`` when ``0 <= epoch <= MAX_EPOCH``, else ``(None, why)``."""
    if 0 <= epoch <= MAX_EPOCH:
        return epoch, ""
    return None, f"epoch {epoch} is out of range: use 0 .. {MAX_EPOCH}"


def _epoch_from_key(key: object) -> tuple[int | None, str]:
    """A manifest key (or safetensors metadata value) as an epoch: decimal digits only."""
    if isinstance(key, str) and re.fullmatch(r"[0-9]{1,12}", key):
        return _in_range(int(key))
    return None, f"{key!r} is not an epoch number (an integer 0 .. {MAX_EPOCH})"


def _epoch_value(value: object) -> tuple[int | None, str]:
    """An ``'epoch'`` entry stored inside a file or a metrics row, as an epoch.

    Accepts an int, an integral finite float, or a one-element tensor holding one.
    """
    number: object = value
    if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
        number = value.item()
    if isinstance(number, numbers.Integral) and not isinstance(number, bool):
        return _in_range(int(number))
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        return _in_range(int(number))
    return None, f"its 'epoch' entry {value!r} is not one epoch number"


def _link_outside(path: Path, folder: Path) -> Path | None:
    """Where ``path`` really leads when that is outside ``folder`` (a link), else ``None``."""
    try:
        real = path.resolve()
        home = folder.resolve()
    except (OSError, RuntimeError):  # a link loop: treat as leaving
        return path
    return None if real.is_relative_to(home) else real


# -- epochs of loose files -----------------------------------------------------------------


def _epoch_from_name(path: Path) -> int | None:
    """The epoch written in a file name (``epoch=3``, ``epoch_03``, ``ep3``), if any."""
    match = _EPOCH_IN_NAME.search(path.stem)
    return int(match.group(1)) if match else None


def _epoch_of(path: Path) -> tuple[int | None, bool, str]:
    """Tell a file's epoch.

    Returns
    -------
    epoch : int or None
        ``None`` when it cannot be told or is out of range (then the third item says why).
    from_name : bool
        Whether the file name carries the epoch (such files win over, say, Lightning's
        ``last.ckpt`` holding the same epoch).
    kind : str
        ``'torch'`` or ``'lightning'`` for pickles (``'safetensors'`` otherwise), or the
        reason the epoch is unknown.
    """
    by_name = _epoch_from_name(path)
    name_problem = ""
    if by_name is not None:
        by_name, name_problem = _in_range(by_name)
    if path.suffix == ".safetensors":
        if by_name is not None:
            return by_name, True, "safetensors"
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as exc:  # any failure means "epoch unknown"
            return None, False, name_problem or f"unreadable header ({type(exc).__name__}: {exc})"
        if "epoch" not in meta:
            return None, False, name_problem or "no epoch in its name or metadata"
        epoch, why = _epoch_from_key(meta["epoch"])
        return epoch, False, "safetensors" if epoch is not None else f"its metadata epoch: {why}"
    if path.suffix == ".ckpt" or by_name is None:
        # Lightning keeps the epoch inside; plain dicts may too ({'epoch': 3, ...}).
        try:
            obj = _torch_load(path, mmap=True)
        except CheckpointError as exc:
            if by_name is not None:  # the error will surface when this epoch is loaded
                return by_name, True, "lightning" if path.suffix == ".ckpt" else "torch"
            return None, False, name_problem or str(exc)
        kind = "lightning" if path.suffix == ".ckpt" or _looks_lightning(obj) else "torch"
        if isinstance(obj, Mapping) and "epoch" in obj:
            inside, why = _epoch_value(obj["epoch"])
            if inside is not None:
                return inside, by_name == inside, kind
            if by_name is None:  # the name cannot stand in for a bad entry
                return None, False, why
        if by_name is not None:
            return by_name, True, kind
        reason = name_problem or (
            "no epoch in its name (epoch=3, epoch_03, ep3, ...) or an 'epoch' entry inside; "
            "rename it with its epoch"
        )
        return None, False, reason
    return by_name, True, "torch"


def _looks_lightning(obj: object) -> bool:
    """Whether a loaded object has the layout of a PyTorch Lightning checkpoint."""
    return isinstance(obj, Mapping) and "state_dict" in obj and "pytorch-lightning_version" in obj


# -- reading weights -----------------------------------------------------------------------


def _torch_load(path: Path, *, mmap: bool = False) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with clear errors.

    Raises
    ------
    CheckpointError
        When the file would need to run code to be unpickled (refused: the message names
        the globals it would import, and does not repeat torch's advice to load it
        unsafely), or is truncated or corrupt.
    """
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError as exc:
            if mmap and "mmap" in str(exc):  # a legacy (non-zip) file cannot be mapped
                return torch.load(path, map_location="cpu", weights_only=True)
            raise
    except pickle.UnpicklingError as exc:
        text = str(exc)
        weights_only = "Weights only load failed" in text
        if not weights_only or not _starts_like_checkpoint(path):
            reason = _torch_reason(text)
            msg = f"cannot read {str(path)!r}: the file is truncated or corrupt ({reason})."
            # torch's weights-only text advises loading unsafely: do not pass it on.
            raise CheckpointError(msg) from (None if weights_only else exc)
        found = _unsafe_globals(path, text)
        if found:
            what = f"the Python object(s) {_listing(found, 4)}"
        else:
            what = (
                f"data torch's safe loader cannot read ({_torch_reason(text)}): it is not a "
                "checkpoint of tensors written by torch.save (a raw pickle?)"
            )
        msg = (
            f"refused to load {str(path)!r}: it contains {what}, and unpickling it could run "
            "code. ipydeepvis only loads tensors, numbers, strings and containers "
            "(torch.load(weights_only=True)). Re-save the weights with "
            "torch.save(model.state_dict(), path) or safetensors; if you trust the file and "
            "the object is harmless, allow it with torch.serialization.add_safe_globals."
        )
        raise CheckpointError(msg) from None  # torch's own text advises unsafe loading
    except Exception as exc:  # every other failure is an unreadable file
        msg = (
            f"cannot read {str(path)!r}: the file is truncated or corrupt "
            f"({type(exc).__name__}: {str(exc)[:200]})."
        )
        raise CheckpointError(msg) from exc


def _starts_like_checkpoint(path: Path) -> bool:
    """Whether the file opens like a torch checkpoint: a zip, or a pickle's protocol marker.

    Other bytes that torch's safe loader stops at are a corrupt file, not a refused one.
    """
    try:
        with path.open("rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return head == b"PK" or (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def _unsafe_globals(path: Path, text: str) -> list[str]:
    """The globals a refused checkpoint would import, the non-torch ones first.

    Asks :func:`torch.serialization.get_unsafe_globals_in_checkpoint` (zip checkpoints);
    for a legacy file, takes the one global named in torch's error ``text``.
    """
    try:
        found = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint: torch can only tell what stopped it
        named = re.search(r"GLOBAL ([\w.]+)", text)
        found = [named.group(1)] if named else []
    return sorted(dict.fromkeys(found), key=lambda name: name.split(".")[0] in _TORCH_OWN)


def _torch_reason(text: str) -> str:
    """The reason in torch's weights-only error, without its advice to load unsafely."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reasons = [line for line in lines if not any(a in line for a in _TORCH_ADVICE)]
    return reasons[0][:200] if reasons else "unsupported pickle data"


def _read_weights(entry: CheckpointFile, epochs: list[int]) -> dict[str, torch.Tensor]:
    """Load one file's state dict, as stored (keys not yet matched to a model)."""
    others = [e for e in epochs if e != entry.epoch]
    hint = f" The other epochs {others} are not affected." if others else ""
    if not entry.path.is_file():
        msg = f"the checkpoint of epoch {entry.epoch}, {str(entry.path)!r}, is missing.{hint}"
        raise CheckpointError(msg)
    if entry.kind == "safetensors":
        try:
            return load_file(str(entry.path), device="cpu")
        except Exception as exc:  # any failure means an unreadable file
            msg = (
                f"cannot read the checkpoint of epoch {entry.epoch}, {str(entry.path)!r}: the "
                f"file is truncated or corrupt ({type(exc).__name__}: {exc}).{hint}"
            )
            raise CheckpointError(msg) from exc
    try:
        obj = _torch_load(entry.path)
    except CheckpointError as exc:
        msg = f"epoch {entry.epoch}: {exc}{hint}"
        raise CheckpointError(msg) from exc.__cause__
    return _extract_state_dict(obj, entry.path)


def _is_state_dict(obj: object) -> bool:
    """Whether ``obj`` is a non-empty mapping of names to tensors."""
    if not isinstance(obj, Mapping) or not obj:
        return False
    return all(
        isinstance(k, str) and (isinstance(v, torch.Tensor) or k.endswith("_extra_state"))
        for k, v in obj.items()
    )


def _extract_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Find the weights in a loaded object: the object itself, or under a usual key."""
    if _is_state_dict(obj):
        return dict(obj)  # type: ignore[arg-type]
    if isinstance(obj, Mapping):
        for key in _WEIGHT_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
        keys = [str(k) for k in list(obj)[:_MAX_LISTED]]
        msg = (
            f"no weights found in {str(path)!r}: expected a state dict (names -> tensors) or "
            f"one under {list(_WEIGHT_KEYS)}; the file holds keys {keys}."
        )
        raise CheckpointError(msg)
    msg = f"no weights found in {str(path)!r}: it holds a {type(obj).__name__}, not a state dict."
    raise CheckpointError(msg)


# -- matching keys to a model --------------------------------------------------------------


def _strip_shared_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (``module.``, ``model.``, ...) shared by every key."""
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
    return state


def _fit_keys(
    state: dict[str, torch.Tensor], expected: frozenset[str]
) -> dict[str, torch.Tensor] | None:
    """Re-key ``state`` to exactly ``expected`` by dropping one prefix, if that works.

    A Lightning module's weights are ``model.<name>`` next to other entries (a loss
    module's buffers, say): the prefix under which all expected names are found wins, and
    entries outside it are dropped. Returns ``None`` when no prefix gives exactly the
    expected keys.
    """
    if set(state) == expected:
        return state
    counts: dict[str, int] = {}
    for key in state:
        for i, ch in enumerate(key):
            if ch == "." and key[i + 1 :] in expected:
                counts[key[: i + 1]] = counts.get(key[: i + 1], 0) + 1
    for prefix, _ in sorted(counts.items(), key=lambda kv: -kv[1]):
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if set(sub) == expected:
            return sub
    return None


def _check_fits(
    module: nn.Module, state: Mapping[str, torch.Tensor], entry: CheckpointFile
) -> None:
    """Raise a :class:`CheckpointError` naming every way ``state`` does not fit ``module``."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if isinstance(state[k], torch.Tensor) and state[k].shape != own[k].shape
    ]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): {_listing(shapes)}")
    msg = (
        f"the checkpoint of epoch {entry.epoch} ({str(entry.path)!r}) is for another "
        f"architecture than {type(module).__name__}: {'; '.join(parts)}. Pass the model it "
        "was trained with as CheckpointSeries(path, model=...)."
    )
    raise CheckpointError(msg)


def _listing(items: list[str], most: int = _MAX_LISTED) -> str:
    """Up to ``most`` items, then how many more."""
    shown = ", ".join(items[:most])
    more = len(items) - most
    return f"{shown}, ... and {more} more" if more > 0 else shown
