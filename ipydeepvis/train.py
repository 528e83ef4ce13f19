"""Train the embedded default (ZF-style net on ``Shapes``) and write a checkpoint series.

``train(out)`` is what ``ipydeepvis train --out DIR`` runs. It writes one safetensors file
per saved epoch and a JSON manifest (``manifest.json``) that records everything needed to
rebuild and judge the run: the model's registry name and config, the data config and seed,
the training options, the saved epochs, per-epoch train / val loss and accuracy, and the
package version. :class:`ipydeepvis.core.checkpoints.CheckpointSeries` reads it back.

Randomness comes only from ``torch.Generator`` objects seeded from ``seed`` (initial
weights, shuffling) and from the data set's own ``(seed, split, index)`` hash, never from
global random state; with the same seed, thread count and machine, the files written are
bit-identical. The manifest is rewritten after every epoch, so an interrupted run still
leaves a readable series of the epochs saved so far.

Nothing that ipydeepvis did not write is ever overwritten or deleted: a folder with a
foreign ``manifest.json``, or with files named like the ones this run would write but no
manifest of ours, is refused (also with ``overwrite=True`` / ``--force``), and replacing one
of our series removes only the checkpoint files its manifest lists and that we wrote (the
safetensors header records the epoch as we write it).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ipydeepvis.checkpoints import CheckpointSeries
from ipydeepvis.core.checkpoints import MANIFEST_FORMAT, MANIFEST_NAME, MAX_EPOCH
from ipydeepvis.data.shapes import Shapes, ShapesConfig
from ipydeepvis.errors import CheckpointError, InvalidOptionError
from ipydeepvis.models import build_model, model_config

__all__ = ["DEFAULT_EPOCHS", "TrainConfig", "default_save_epochs", "evaluate", "train"]

_log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 15
"""Epochs of the default run (the shipped series)."""

_MILESTONES = (1, 2, 3, 5, 10, 15, 20, 30, 40, 50, 64)


def default_save_epochs(epochs: int) -> tuple[int, ...]:
    """Zeiler & Fergus's snapshot epochs (1, 2, 5, 10, ...) plus 3 and 15, up to ``epochs``.

    The last epoch is always included.
    """
    return tuple(sorted({e for e in _MILESTONES if e <= epochs} | {epochs}))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (and its files).

    Parameters
    ----------
    epochs : int
        Passes over the training set.
    save_epochs : tuple of int, optional
        Epochs after which to write a checkpoint (``0`` saves the initial weights);
        :func:`default_save_epochs` when empty.
    seed : int
        Seed of the initial weights and of the shuffling order.
    data_seed : int
        Seed of the ``Shapes`` images (train, val and the test split used for evaluation).
    train_size, val_size : int
        Number of ``Shapes`` training and validation images.
    batch_size : int
        Mini-batch size.
    lr : float
        Peak learning rate of AdamW (linear warm-up over the first epoch, then cosine decay
        to zero at the end of the last epoch).
    weight_decay : float
        AdamW's decoupled weight decay.
    model : str
        Registry name of the architecture (see :func:`ipydeepvis.models.build_model`).
    model_config : dict
        Architecture options passed to the registry.
    data : ShapesConfig
        How the images look.
    """

    epochs: int = DEFAULT_EPOCHS
    save_epochs: tuple[int, ...] = ()
    seed: int = 0
    data_seed: int = 0
    train_size: int = 10_000
    val_size: int = 2_000
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    model: str = "zf"
    model_config: dict[str, Any] = field(default_factory=dict)
    data: ShapesConfig = field(default_factory=ShapesConfig)

    def __post_init__(self) -> None:
        for name in ("epochs", "train_size", "val_size", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                msg = f"{name}={value!r} is not valid: use a positive int."
                raise InvalidOptionError(msg)
        if self.epochs > MAX_EPOCH:
            msg = f"epochs={self.epochs!r} is not valid: a series holds epochs 0 .. {MAX_EPOCH}."
            raise InvalidOptionError(msg)
        for name in ("seed", "data_seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
                msg = f"{name}={value!r} is not valid: use an int in 0 .. 2**32 - 1."
                raise InvalidOptionError(msg)
        if not self.lr > 0 or not self.weight_decay >= 0:
            msg = f"lr={self.lr!r}, weight_decay={self.weight_decay!r}: use lr > 0, decay >= 0."
            raise InvalidOptionError(msg)
        saves = tuple(sorted(set(self.save_epochs))) or default_save_epochs(self.epochs)
        bad = [e for e in saves if not isinstance(e, int) or not 0 <= e <= self.epochs]
        if bad:
            msg = (
                f"save_epochs {bad} are not valid for epochs={self.epochs}: use epochs in "
                f"0 .. {self.epochs} (0 saves the initial weights)."
            )
            raise InvalidOptionError(msg)
        object.__setattr__(self, "save_epochs", saves)

    def to_dict(self) -> dict[str, Any]:
        """The training options as JSON-ready values (model and data are recorded apart)."""
        out = asdict(self)
        for key in ("model", "model_config", "data", "data_seed", "save_epochs", "seed"):
            out.pop(key)
        return out


def train(
    out: str | os.PathLike[str],
    *,
    epochs: int = DEFAULT_EPOCHS,
    save_epochs: Sequence[int] | None = None,
    seed: int = 0,
    config: TrainConfig | None = None,
    threads: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> CheckpointSeries:
    """Train the embedded default model on ``Shapes`` and write a checkpoint series to ``out``.

    Parameters
    ----------
    out : path
        Directory to write into (created if needed).
    epochs : int
        Passes over the training set (ignored when ``config`` is given).
    save_epochs : sequence of int, optional
        Epochs to save (ignored when ``config`` is given); default
        :func:`default_save_epochs`.
    seed : int
        Seed of initial weights and shuffling (ignored when ``config`` is given).
    config : TrainConfig, optional
        All options at once; overrides ``epochs``, ``save_epochs`` and ``seed``.
    threads : int, optional
        torch intra-op threads for the run (restored afterwards); the current setting by
        default. Results are bit-identical only for the same thread count.
    progress : bool
        Show a tqdm progress bar.
    overwrite : bool
        Replace a series that ``ipydeepvis train`` wrote in ``out`` (only the files its
        manifest lists and that it wrote are removed); otherwise that is an error.

    Returns
    -------
    CheckpointSeries
        The series just written.

    Raises
    ------
    CheckpointError
        When ``out`` already holds a series and ``overwrite`` is false; when it holds a
        ``manifest.json`` that ipydeepvis did not write, or files this run would overwrite
        that are not ours (refused even with ``overwrite``, and nothing is touched); when
        ``out`` cannot be created or written.
    InvalidOptionError
        For invalid options.
    """
    if config is None:
        config = TrainConfig(epochs=epochs, save_epochs=tuple(save_epochs or ()), seed=seed)
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        msg = f"threads={threads!r} is not valid: use a positive int (or None)."
        raise InvalidOptionError(msg)
    out_dir = Path(out)
    _prepare_out(out_dir, config.save_epochs, overwrite=overwrite)
    try:
        with _torch_threads(threads):
            _run(config, out_dir, progress=progress)
    except OSError as exc:  # a full disk, a folder removed or made read-only meanwhile
        msg = f"cannot write the series to {str(out_dir)!r}: {exc}"
        raise CheckpointError(msg) from exc
    return CheckpointSeries(out_dir)


def _run(cfg: TrainConfig, out_dir: Path, *, progress: bool) -> None:
    """The training loop proper; writes the checkpoints and the manifest into ``out_dir``."""
    gen = torch.Generator().manual_seed(cfg.seed)
    model = build_model(cfg.model, generator=gen, **cfg.model_config)
    arch = {"name": cfg.model, "config": model_config(model)}
    model = model.to(memory_format=torch.channels_last)
    train_set = Shapes("train", cfg.train_size, seed=cfg.data_seed, config=cfg.data)
    val_set = Shapes("val", cfg.val_size, seed=cfg.data_seed, config=cfg.data)

    steps_per_epoch = math.ceil(cfg.train_size / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _lr_factor(step, steps_per_epoch, total_steps)
    )
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "package_version": _package_version(),
        "torch_version": torch.__version__.split("+")[0],
        "model": arch,
        "data": {
            "name": "shapes",
            "seed": cfg.data_seed,
            "config": asdict(cfg.data),
            "train_size": cfg.train_size,
            "val_size": cfg.val_size,
        },
        "seed": cfg.seed,
        "train": {**cfg.to_dict(), "threads": torch.get_num_threads()},
        "epochs": cfg.epochs,
        "saved_epochs": [],
        "checkpoints": {},
        "metrics": [],
        "complete": False,
    }

    _write_manifest(out_dir, manifest)  # first, so that no file of ours is ever unlisted
    if 0 in cfg.save_epochs:
        _save_checkpoint(model, out_dir, 0, manifest)
        _write_manifest(out_dir, manifest)

    bar = tqdm(total=total_steps, disable=not progress, unit="batch", desc="train")
    try:
        for epoch in range(1, cfg.epochs + 1):
            started = time.perf_counter()
            bar.set_description(f"epoch {epoch}/{cfg.epochs}")
            model.train()
            order = torch.randperm(cfg.train_size, generator=gen)
            loss_sum, correct, seen = 0.0, 0, 0
            for start in range(0, cfg.train_size, cfg.batch_size):
                images, labels = train_set.batch(order[start : start + cfg.batch_size])
                images = images.contiguous(memory_format=torch.channels_last)
                logits = model(images)
                loss = F.cross_entropy(logits, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                loss_sum += float(loss.detach()) * len(labels)
                correct += int((logits.argmax(1) == labels).sum())
                seen += len(labels)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
            val_loss, val_acc = evaluate(model, val_set, batch_size=256)
            row = {
                "epoch": epoch,
                "train_loss": loss_sum / seen,
                "train_acc": correct / seen,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "lr": optimizer.param_groups[0]["lr"],
            }
            manifest["metrics"].append(row)
            _log.info(
                "epoch %d/%d: train loss %.4f acc %.4f, val loss %.4f acc %.4f (%.1f s)",
                epoch, cfg.epochs, row["train_loss"], row["train_acc"], val_loss, val_acc,
                time.perf_counter() - started,
            )  # fmt: skip
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{val_acc:.3f}")
            if epoch in cfg.save_epochs:
                _save_checkpoint(model, out_dir, epoch, manifest)
            manifest["complete"] = epoch == cfg.epochs
            _write_manifest(out_dir, manifest)
    finally:
        bar.close()


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, dataset: Shapes, *, batch_size: int = 256
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on all of ``dataset``.

    The model's train / eval mode is restored afterwards.

    Returns
    -------
    loss, accuracy : float
    """
    was_training = model.training
    model.eval()
    try:
        loss_sum, correct = 0.0, 0
        for start in range(0, len(dataset), batch_size):
            images, labels = dataset.batch(range(start, min(start + batch_size, len(dataset))))
            logits = model(images)
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            correct += int((logits.argmax(1) == labels).sum())
    finally:
        model.train(was_training)
    n = max(len(dataset), 1)
    return loss_sum / n, correct / n


def _lr_factor(step: int, steps_per_epoch: int, total_steps: int) -> float:
    """Linear warm-up over the first epoch, then cosine decay to 0 at ``total_steps``."""
    warmup = min(steps_per_epoch, max(total_steps // 2, 1))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total_steps - warmup, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _save_checkpoint(
    model: torch.nn.Module, out_dir: Path, epoch: int, manifest: dict[str, Any]
) -> None:
    """Write ``epoch_NNN.safetensors`` (atomically) and record it in ``manifest``."""
    name = _checkpoint_name(epoch)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    # One metadata entry only: safetensors writes metadata in hash-map order, so several
    # entries would make the bytes differ from run to run. The manifest has the rest.
    meta = {"epoch": str(epoch)}
    tmp = out_dir / f".{name}.tmp"
    save_file(state, str(tmp), metadata=meta)
    tmp.chmod(0o644)  # safetensors creates owner-only files; a series is meant to be shared
    os.replace(tmp, out_dir / name)
    manifest["saved_epochs"].append(epoch)
    manifest["checkpoints"][str(epoch)] = name


def _write_manifest(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest atomically (a reader never sees half a file)."""
    tmp = out_dir / f".{MANIFEST_NAME}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / MANIFEST_NAME)


def _checkpoint_name(epoch: int) -> str:
    """The file name ``train`` gives the checkpoint of ``epoch``."""
    return f"epoch_{epoch:03d}.safetensors"


def _prepare_out(out_dir: Path, epochs: Sequence[int], *, overwrite: bool) -> None:
    """Create ``out_dir``; refuse anything not ours in it; with ``overwrite``, clear our series.

    Every check runs before anything is removed, so a refusal leaves the folder as it was.

    Parameters
    ----------
    out_dir : Path
        Where the series goes.
    epochs : sequence of int
        The epochs this run will save (``epoch_NNN.safetensors``).
    overwrite : bool
        Remove a series that ``ipydeepvis train`` wrote there (its listed files we wrote,
        and its manifest) instead of refusing.

    Raises
    ------
    CheckpointError
        When ``out_dir`` is not a directory or cannot be created, holds a series and
        ``overwrite`` is false, holds a manifest that is not ours, or holds files this run
        would overwrite that are not part of our series.
    """
    if out_dir.exists() and not out_dir.is_dir():
        msg = f"out={str(out_dir)!r} exists and is not a directory; choose a directory path."
        raise CheckpointError(msg)
    manifest_path = out_dir / MANIFEST_NAME
    ours: list[Path] = []
    has_manifest = manifest_path.exists() or manifest_path.is_symlink()
    if has_manifest:
        ours, why = _our_series_files(out_dir)
        if why:
            even = ", even with --force (overwrite=True)" if overwrite else ""
            msg = (
                f"{str(out_dir)!r}: {why}; it is not a series written by ipydeepvis, so nothing "
                f"was changed{even}: choose another --out directory (or move those files away "
                "yourself)."
            )
            raise CheckpointError(msg)
        if not overwrite:
            msg = (
                f"{str(out_dir)!r} already holds a checkpoint series written by ipydeepvis "
                f"train ({MANIFEST_NAME}); choose another --out directory or pass "
                "overwrite=True (--force) to replace it."
            )
            raise CheckpointError(msg)
    clash = []
    for epoch in epochs:
        path = out_dir / _checkpoint_name(epoch)
        if not _exists(path) or path in ours:
            continue
        if has_manifest and _is_our_checkpoint(path, str(epoch)):
            ours.append(path)  # ours, written just before a run of ours stopped
        else:
            clash.append(path.name)
    if clash:
        kind = "a" if has_manifest else "no"
        msg = (
            f"{str(out_dir)!r}: {', '.join(clash)} would be overwritten, and the folder has "
            f"{kind} {MANIFEST_NAME} of a series written by ipydeepvis that lists "
            f"{'them' if len(clash) > 1 else 'it'}; nothing was changed (even with --force): "
            "choose another --out directory."
        )
        raise CheckpointError(msg)
    try:
        for path in ours:
            path.unlink(missing_ok=True)
        if has_manifest:
            manifest_path.unlink()
    except OSError as exc:
        msg = f"cannot remove the old series in {str(out_dir)!r}: {exc}"
        raise CheckpointError(msg) from exc
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create the directory out={str(out_dir)!r}: {exc}"
        raise CheckpointError(msg) from exc


def _exists(path: Path) -> bool:
    """Whether anything (a file, a folder, a dangling link) is at ``path``."""
    try:
        return path.exists() or path.is_symlink()
    except OSError:
        return True


def _our_series_files(out_dir: Path) -> tuple[list[Path], str]:
    """The checkpoint files of the series ``ipydeepvis train`` wrote in ``out_dir``.

    Returns
    -------
    files : list of Path
        The existing files the manifest lists, each checked to be what we wrote: named
        ``epoch_NNN.safetensors`` after its epoch key, a regular file (not a link), and a
        safetensors file whose metadata is exactly ``{"epoch": "<key>"}``.
    why : str
        Empty when the whole series is ours; otherwise why it is not (then ``files`` is
        empty and nothing may be removed).
    """
    manifest_path = out_dir / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return [], f"its {MANIFEST_NAME} cannot be read as JSON ({exc})"
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        return [], f"its {MANIFEST_NAME} has format {found!r}, not {MANIFEST_FORMAT!r}"
    checkpoints = manifest.get("checkpoints")
    if not isinstance(checkpoints, dict):
        return [], f"its {MANIFEST_NAME} has no 'checkpoints' object"
    files = []
    for key, name in checkpoints.items():
        if not (re.fullmatch(r"[0-9]{1,9}", key) and name == _checkpoint_name(int(key))):
            return [], (
                f"its {MANIFEST_NAME} lists {name!r} for epoch {key!r}, a file that "
                "ipydeepvis train never writes"
            )
        path = out_dir / name
        if not _exists(path):
            continue  # already gone
        if not _is_our_checkpoint(path, key):
            return [], (
                f"{name!r} (listed for epoch {key}) is not the file ipydeepvis train wrote (a "
                f"regular safetensors file whose header records epoch {key})"
            )
        files.append(path)
    return files, ""


def _is_our_checkpoint(path: Path, epoch: str) -> bool:
    """Whether ``path`` is a checkpoint ``train`` wrote for ``epoch``.

    A regular file (not a link) in safetensors format whose metadata is exactly what
    :func:`_save_checkpoint` writes: ``{"epoch": epoch}``.
    """
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {}) == {"epoch": epoch}
    except Exception:  # any failure: not a safetensors file we wrote
        return False


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op thread count for the block, and restore it afterwards."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _package_version() -> str:
    """The installed ipydeepvis version, or the source tree's ``__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ipydeepvis")
    except PackageNotFoundError:
        import ipydeepvis

        return str(getattr(ipydeepvis, "__version__", "0+unknown"))
