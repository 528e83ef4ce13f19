"""Building a top-k index as a batch job: checkpointed, resumable, sharded under ``torchrun``.

:func:`build_index` streams a data set through :mod:`~ipydeepvis.core.topk`'s scan and
writes a :class:`~ipydeepvis.core.index.TopKIndex`. Every ``checkpoint_every`` batches (and
on KeyboardInterrupt, and when a callback stops it) the index so far, with the images it has
done, is written atomically; ``resume=True`` continues from it and ends equal to an
uninterrupted run, because rankings are exact and order-free (see
:meth:`~ipydeepvis.core.topk.TopK.merge`).

Under ``torchrun`` (an initialised ``torch.distributed`` process group: gloo on CPUs, nccl
on GPUs) each rank scans its share of the batches still to do, batches ``rank, rank + world, ...``
of the single-process scan (no image twice, none missed, and each image computed in the
same batch as on one process, so the index is bit-identical to the single-process one). The
ranks run independently between checkpoints: only every ``checkpoint_every`` batches do they
meet, in one tiny ``all_reduce`` (who is still scanning, did anyone ask to stop) and, while
any is, a gather of the partial results, merged exactly; rank 0 writes the file and shows a
tqdm bar of the whole job (the other ranks' images added at each meeting), the other ranks
log their own progress. No collective runs per batch, so a rank slowed for a moment does not
hold the others back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import CheckpointError, InvalidInputError
from .index import TENSORS, TopKIndex, model_fingerprint
from .probe import Probe
from .sources import DataSource, Preprocess
from .topk import (
    RunningTopK,
    Scanner,
    TopK,
    as_probe,
    check_k,
    probe_preprocess,
    resolve_layers,
    scan_batch,
)

__all__ = ["build_index"]

log = logging.getLogger(__name__)


def build_index(
    model: Probe | nn.Module,
    data: Any,
    layers: Sequence[str],
    k: int = 9,
    *,
    batch_size: int = 64,
    workers: int = 0,
    preprocess: Preprocess | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: bool = False,
    checkpoint_every: int = 50,
    progress: bool = False,
    callback: Callable[[int, int], bool | None] | None = None,
    epoch: int | None = None,
) -> TopKIndex:
    """Scan ``data`` and return the top-``k`` index of ``layers``, optionally writing it.

    Parameters
    ----------
    model : Probe or nn.Module
        The model (never modified; the scan runs on a shadow sharing its weights).
    data : Tensor, sequence, Dataset or DataLoader
        See :class:`~ipydeepvis.core.sources.DataSource`.
    layers : sequence of str
        Layer names (``probe.layers``); all are captured in one forward per batch.
    k : int
        Images kept per unit.
    batch_size, workers : int
        Images per forward, and loader processes (a DataLoader keeps its own).
    preprocess : callable, optional
        Converts images that are not tensors (PIL); the probe's own by default.
    out : path, optional
        Directory to write the index to (and its checkpoints).
    resume : bool
        Continue from the index in ``out`` (an error if it was computed with another model,
        data set, layers or k). Without it, an index already in ``out`` is an error.
    checkpoint_every : int
        Write the partial index every this many batches (per rank).
    progress : bool
        tqdm bar (rank 0) and log lines (other ranks).
    callback : callable, optional
        ``callback(done, total)`` after each batch (images of this rank); returning False
        stops the scan, after writing the checkpoint: at that batch on one process, at the
        next checkpoint (within ``checkpoint_every`` batches) on the other ranks.
    epoch : int, optional
        Recorded in the index (the checkpoint epoch the weights come from).

    Returns
    -------
    TopKIndex
        The merged index (on every rank).

    Raises
    ------
    CheckpointError
        An index already in ``out`` without ``resume``, or one that does not match.
    InvalidInputError, InvalidOptionError, LayerNotFoundError
        Bad data, ``k``, ``batch_size`` or layer names.
    KeyboardInterrupt
        Re-raised after the checkpoint is written (single process).
    """
    check_k(k, batch_size)
    check_k(checkpoint_every, 1)
    probe = as_probe(model)
    source = DataSource(data, preprocess or probe_preprocess(probe))
    if source.length == 0:
        msg = "the data set is empty: nothing to scan"
        raise InvalidInputError(msg)
    rank, world = _rank_world()
    names = resolve_layers(probe, layers, source.image(0)[None])
    model_key, data_key = model_fingerprint(probe.model), source.fingerprint()
    folder = Path(out) if out is not None else None
    previous = _previous(folder, resume)
    if previous is not None:
        previous.check_compatible(model=model_key, data=data_key, length=source.length,
                                  layers=names, k=k, what="resume from")
    done = previous.done if previous is not None else torch.zeros(source.length, dtype=bool)
    todo = (~done).nonzero().flatten()
    running = RunningTopK(names, k, source.length)
    if previous is not None and rank == 0:
        running = RunningTopK.resume({name: previous[name] for name in names}, source.length)
    job = _Job(running, names, k, source.length, model_key, data_key, epoch, folder, rank,
               world)
    scanner = Scanner(probe, names)
    bar = _bar(progress and rank == 0, len(todo), int(done.sum()), k, names)
    batches = source.batches(todo, batch_size, workers=workers, shard=(rank, world))
    share = -(-len(todo) // world)  # this rank's images, about
    step, mine_done, mine_since = 0, 0, 0
    active = True  # this rank has batches left and was not asked to stop
    stop = False
    try:
        while True:
            if active:
                batch = next(batches, None)
                if batch is not None:
                    scan_batch(scanner, running, *batch)
                    images = int(batch[0].numel())
                    step, mine_done, mine_since = step + 1, mine_done + images, mine_since + images
                    if bar is not None:
                        bar.update(images)
                    stop = callback is not None and callback(mine_done, share) is False
                    if step % checkpoint_every and not stop:
                        continue
                active = batch is not None and not stop
            # A round, the only collective: every checkpoint_every batches of a rank still
            # scanning; a rank without batches joins the others' rounds until all are done.
            any_active, any_stop, images = _agree(active, stop, mine_since, world)
            if bar is not None:
                bar.update(images - mine_since)  # the other ranks' images since the last round
            mine_since = 0
            if not any_active or any_stop:
                break
            job.checkpoint()
            if progress and rank > 0:
                log.info("rank %d/%d: %d of about %d images", rank, world, mine_done, share)
    except KeyboardInterrupt:
        if world == 1:
            job.checkpoint()
        raise
    finally:
        if bar is not None:
            bar.close()
    return job.checkpoint()


class _Job:
    """What a checkpoint needs: the running scans and where and how to write them."""

    def __init__(self, running: RunningTopK, names: list[str], k: int, length: int,
                 model: str, data: str, epoch: int | None, folder: Path | None, rank: int,
                 world: int) -> None:
        self.running, self.names, self.k, self.length = running, names, k, length
        self.model, self.data, self.epoch = model, data, epoch
        self.folder, self.rank, self.world = folder, rank, world

    def local(self) -> TopKIndex:
        scans = (self.running.result() if self.running.started
                 else {name: _empty(name, self.k, self.running.done) for name in self.names})
        return TopKIndex.from_scans(scans, k=self.k, length=self.length, model=self.model,
                                    data=self.data, epoch=self.epoch)

    def checkpoint(self) -> TopKIndex:
        """Gather every rank's part, merge, and (rank 0) write; returns the merged index."""
        parts = [self.local()]
        if self.world > 1:
            gathered: list[Any] = [None] * self.world
            dist.all_gather_object(gathered, parts[0])
            parts = gathered
        merged = parts[0]
        for part in parts[1:]:
            merged = _merge(merged, part)
        if self.rank == 0 and self.folder is not None:
            merged.save(self.folder)
        return merged


def _merge(a: TopKIndex, b: TopKIndex) -> TopKIndex:
    """Merge, where a rank that has scanned nothing yet contributes nothing."""
    if b.seen == 0:
        return a
    if a.seen == 0:
        return b
    return a.merge(b)


def _empty(layer: str, k: int, done: torch.Tensor) -> TopK:
    """The TopK of a layer that has seen no image (shape unknown, no units)."""
    return TopK(layer, torch.zeros(0, k), torch.zeros(0, k, dtype=torch.long),
                torch.zeros(0, k, 0, dtype=torch.long), 0, done.clone(), ())


def _previous(folder: Path | None, resume: bool) -> TopKIndex | None:
    """The index already in ``folder`` (when resuming), or an error if one is there."""
    if folder is None:
        if resume:
            msg = "resume=True needs out= (the folder holding the index to continue)"
            raise CheckpointError(msg)
        return None
    exists = (folder / TENSORS).is_file()
    if exists and not resume:
        msg = (f"{str(folder)!r} already holds a top-k index; resume it (resume=True, "
               "--resume) or choose another folder")
        raise CheckpointError(msg)
    return TopKIndex.load(folder) if exists else None


def _rank_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 without torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _agree(active: bool, stop: bool, images: int, world: int) -> tuple[bool, bool, int]:
    """Across ranks: is any rank still scanning, did any ask to stop, images since the last
    round (one small ``all_reduce``)."""
    if world == 1:
        return active, stop, images
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    flags = torch.tensor([int(active), int(stop), images], dtype=torch.long, device=device)
    dist.all_reduce(flags)
    flags = flags.cpu()
    return bool(flags[0]), bool(flags[1]), int(flags[2])


def _bar(show: bool, total: int, initial: int, k: int, names: list[str]) -> Any:
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total + initial, initial=initial, unit="img",
                desc=f"top-{k} {', '.join(names)}")
