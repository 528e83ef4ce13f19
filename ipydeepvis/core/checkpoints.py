"""Read a training run's checkpoints as one series of epochs, safely.

:class:`CheckpointSeries` is what the epoch scrubber turns: ``.epochs`` lists what can be
shown, ``.load(epoch)`` gives that epoch's weights as a state dict, ``.model(epoch)`` a new
module carrying them, and ``.metrics`` the per-epoch losses and accuracies when the run
recorded them. It reads:

- a series written by ``ipydeepvis train`` (``manifest.json`` + one ``.safetensors`` file
  per saved epoch; the manifest names the architecture, so ``.model()`` needs no help);
- a folder of plain ``state_dict`` files (``.pt`` / ``.pth``) with the epoch in their names
  (``epoch=3``, ``epoch_03``, ``ep3``, ...) or, failing that, an ``'epoch'`` entry inside;
- PyTorch Lightning ``.ckpt`` files (weights under ``'state_dict'``, usually with a
  ``model.`` prefix; the epoch as Lightning recorded it inside the file);
- ``.safetensors`` files (epoch in the name or in the header's metadata).

Loading never executes code from a file: pickles go through
``torch.load(..., map_location="cpu", weights_only=True)`` and everything else through
safetensors. Weights always go into a new module, never into a module the user passed.
This module imports torch, safetensors and the standard library only (``core`` is
widget-free).
"""

from __future__ import annotations

import copy
import importlib
import io
import json
import os
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
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
    "CheckpointFile",
    "CheckpointSeries",
]

MANIFEST_NAME = "manifest.json"
"""File name of the manifest ``ipydeepvis train`` writes next to its checkpoints."""

MANIFEST_FORMAT = "ipydeepvis.series/1"
"""Value of the manifest's ``"format"`` field."""

CHECKPOINT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth", ".ckpt")
"""File kinds a series folder may hold."""

# Containers under which training scripts commonly keep the weights, most specific first.
_WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module")
# Prefixes wrappers add to every key (DataParallel/DDP, torch.compile, Lightning, ...).
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "net.")
# epoch=3, epoch_03, epoch-3, epoch3, ep3, ep_3, EPOCH=12 (but not the "ep" inside "step").
_EPOCH_IN_NAME = re.compile(r"(?:^|[^a-z])(?:epoch|ep)[=_\-]?(\d+)", re.IGNORECASE)
_MAX_LISTED = 8

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
        modified) or a function returning a new module. Needed unless the series has a
        manifest naming a registered architecture.

    Attributes
    ----------
    path : Path
        What was opened.
    manifest : dict or None
        The parsed ``manifest.json`` of a series written by ``ipydeepvis train``.
    skipped : dict of Path to str
        Files left out (with a warning) because their epoch could not be told, and why.

    Raises
    ------
    CheckpointError
        When ``path`` does not exist, holds no checkpoints, its manifest is unreadable,
        or two files claim the same epoch.

    Examples
    --------
    >>> series = CheckpointSeries("runs/shapes")            # doctest: +SKIP
    >>> series.epochs                                       # doctest: +SKIP
    [1, 2, 3, 5, 10, 15, 20]
    >>> model = series.model(series.epochs[-1])             # a new module, in eval mode
    """

    def __init__(self, path: str | os.PathLike[str], model: ModelSpec = None) -> None:
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
        self.path = root
        self._model_spec = model
        self._expected: frozenset[str] | None = None
        self.manifest: dict[str, Any] | None = None
        self.skipped: dict[Path, str] = {}

        manifest_path = _find_manifest(root)
        if manifest_path is not None:
            self.manifest = _read_manifest(manifest_path)
            self._files = _files_from_manifest(self.manifest, manifest_path)
        else:
            self._files = self._discover(root)
        if not self._files:
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
        """
        if self.manifest is None:
            return {}
        out: dict[int, dict[str, float]] = {}
        for row in self.manifest.get("metrics", []):
            values = {k: float(v) for k, v in row.items() if k != "epoch"}
            out[int(row["epoch"])] = values
        return dict(sorted(out.items()))

    @property
    def model_name(self) -> str | None:
        """Registry name of the architecture from the manifest, if any."""
        if self.manifest is None:
            return None
        return str(self.manifest["model"]["name"])

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[int]:
        return iter(self.epochs)

    def __contains__(self, epoch: object) -> bool:
        return epoch in self._files

    def __repr__(self) -> str:
        return f"CheckpointSeries({str(self.path)!r}, epochs={self.epochs})"

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
            code when unpickled, or a truncated / corrupt file (the message names it).
        """
        entry = self._entry(epoch)
        state = _read_weights(entry, self.epochs)
        expected = self._expected_keys()
        if expected is not None:
            fitted = _fit_keys(state, expected)
            if fitted is not None:
                return fitted
        return _strip_shared_prefix(state)

    def model(self, epoch: int) -> nn.Module:
        """A new module with the weights of ``epoch``, in eval mode.

        Built from the manifest's registered architecture, or from the ``model=`` given to
        the series (a deep copy, or a new instance from the factory). The module passed by
        the user is never modified.

        Raises
        ------
        CheckpointError
            For an unknown epoch, an unreadable file, no known architecture, or weights
            that do not fit the architecture (the message names the missing and the
            unexpected keys, and shape mismatches).
        """
        entry = self._entry(epoch)
        module = self._new_module()
        state = self.load(epoch)
        _check_fits(module, state, entry)
        module.load_state_dict(state, strict=True)
        return module.eval()

    # -- internals -----------------------------------------------------------------------

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
        if self.manifest is not None:
            arch = self.manifest["model"]
            # Imported here: core does not depend on the embedded default unless asked to.
            models = importlib.import_module("ipydeepvis.models")
            try:
                return models.build_model(arch["name"], **arch.get("config", {}))
            except ValueError as exc:
                msg = f"cannot rebuild the manifest's model {arch!r}: {exc}"
                raise CheckpointError(msg) from exc
        msg = (
            f"the series at {str(self.path)!r} does not name its architecture (no "
            f"{MANIFEST_NAME}); pass model= to CheckpointSeries: a module to copy or a "
            "function returning a new one."
        )
        raise CheckpointError(msg)

    def _expected_keys(self) -> frozenset[str] | None:
        """The state-dict keys of the series' model, or ``None`` when no model is known."""
        if self._expected is None:
            if isinstance(self._model_spec, nn.Module):
                self._expected = frozenset(self._model_spec.state_dict())
            elif self._model_spec is not None or self.manifest is not None:
                self._expected = frozenset(self._new_module().state_dict())
        return self._expected

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
                self.skipped[p] = kind
                warnings.warn(f"skipping {str(p)!r}: {kind}", stacklevel=3)
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


# -- manifest ------------------------------------------------------------------------------


def _find_manifest(root: Path) -> Path | None:
    """The manifest to read for ``root``: the file itself, or ``root/manifest.json``."""
    if root.is_file():
        return root if root.suffix == ".json" else None
    candidate = root / MANIFEST_NAME
    return candidate if candidate.is_file() else None


def _read_manifest(path: Path) -> dict[str, Any]:
    """Parse and check a manifest written by ``ipydeepvis train``."""
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
    for key in ("model", "checkpoints"):
        if not isinstance(manifest.get(key), dict):
            msg = f"the series manifest {str(path)!r} has no valid {key!r} entry."
            raise CheckpointError(msg)
    if "name" not in manifest["model"]:
        msg = f"the series manifest {str(path)!r} does not name its model ('model.name')."
        raise CheckpointError(msg)
    return manifest


def _files_from_manifest(manifest: dict[str, Any], path: Path) -> dict[int, CheckpointFile]:
    """Epoch -> file as listed by the manifest (files resolve next to the manifest).

    Only a bare file name inside the manifest's folder is accepted, so a manifest cannot
    point the loader anywhere else on disk.
    """
    files: dict[int, CheckpointFile] = {}
    for key, name in manifest["checkpoints"].items():
        base = Path(str(name)).name
        if base != str(name) or not base.endswith(CHECKPOINT_SUFFIXES):
            msg = (
                f"the series manifest {str(path)!r} lists {name!r} for epoch {key}: expected "
                f"a file name in the same folder ending in {', '.join(CHECKPOINT_SUFFIXES)}."
            )
            raise CheckpointError(msg)
        kind = "safetensors" if base.endswith(".safetensors") else "torch"
        files[int(key)] = CheckpointFile(int(key), path.parent / base, kind)
    return files


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
        ``None`` when it cannot be told (then the third item says why).
    from_name : bool
        Whether the file name carries the epoch (such files win over, say, Lightning's
        ``last.ckpt`` holding the same epoch).
    kind : str
        ``'torch'`` or ``'lightning'`` for pickles (``'safetensors'`` otherwise), or the
        reason the epoch is unknown.
    """
    by_name = _epoch_from_name(path)
    if path.suffix == ".safetensors":
        if by_name is not None:
            return by_name, True, "safetensors"
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
            return int(meta["epoch"]), False, "safetensors"
        except Exception as exc:  # any failure means "epoch unknown"
            reason = f"no epoch in its name or metadata ({type(exc).__name__}: {exc})"
            return None, False, reason
    if path.suffix == ".ckpt" or by_name is None:
        # Lightning keeps the epoch inside; plain dicts may too ({'epoch': 3, ...}).
        try:
            obj = _torch_load(path, mmap=True)
        except CheckpointError as exc:
            if by_name is not None:  # the error will surface when this epoch is loaded
                return by_name, True, "lightning" if path.suffix == ".ckpt" else "torch"
            return None, False, str(exc)
        kind = "lightning" if path.suffix == ".ckpt" or _looks_lightning(obj) else "torch"
        inside = obj.get("epoch") if isinstance(obj, Mapping) else None
        if isinstance(inside, (int, torch.Tensor)) and not isinstance(inside, bool):
            return int(inside), by_name == int(inside), kind
        if by_name is not None:
            return by_name, True, kind
        reason = (
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
        When the file would need to run code to be unpickled (refused), or is truncated or
        corrupt.
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
        named = re.search(r"GLOBAL ([\w.]+)", text)
        found = [named.group(1)] if named else _pickled_globals(path)
        if "Weights only load failed" not in text or not found:
            msg = f"cannot read {str(path)!r}: the file is truncated or corrupt ({text[:200]})."
            raise CheckpointError(msg) from exc
        msg = (
            f"refused to load {str(path)!r}: it contains the Python object(s) {found[:3]}, and "
            "unpickling it could run code. ipydeepvis only loads tensors, numbers, strings "
            "and containers (torch.load(weights_only=True)). Re-save the weights with "
            "torch.save(model.state_dict(), path) or safetensors; if you trust the file and "
            "the object is harmless, allow it with torch.serialization.add_safe_globals."
        )
        raise CheckpointError(msg) from None
    except Exception as exc:  # every other failure is an unreadable file
        msg = (
            f"cannot read {str(path)!r}: the file is truncated or corrupt "
            f"({type(exc).__name__}: {str(exc)[:200]})."
        )
        raise CheckpointError(msg) from exc


def _pickled_globals(path: Path) -> list[str]:
    """Names a pickle would import (``module.name``), found by parsing it without running it.

    Reads a raw or legacy pickle file, or the ``data.pkl`` of a zip checkpoint, with
    :func:`pickletools.genops` (which only decodes opcodes). Returns ``[]`` when the bytes are
    not a pickle at all (a corrupt file) or import nothing.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                member = next(n for n in archive.namelist() if n.endswith("data.pkl"))
                data = archive.read(member)
        else:
            data = path.read_bytes()
    except (OSError, StopIteration, zipfile.BadZipFile):
        return []
    names: list[str] = []
    strings: list[str] = []
    stream = io.BytesIO(data)
    try:
        while stream.tell() < len(data):  # a legacy torch file is several pickles in a row
            for op, arg, _ in pickletools.genops(stream):
                if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                    names.append(arg.replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
                if isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # not (or no longer) pickle data: keep what was decoded so far
        pass
    return list(dict.fromkeys(names))


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


def _listing(items: list[str]) -> str:
    """Up to ``_MAX_LISTED`` items, then how many more."""
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return f"{shown}, ... and {more} more" if more > 0 else shown
