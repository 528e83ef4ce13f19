"""Pretend training runs written to disk, for the series analysis and scrubber tests."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ipydeepvis import demo


def perturbed(state: dict[str, torch.Tensor], generator: torch.Generator,
              noise: float) -> dict[str, torch.Tensor]:
    """``state`` plus seeded Gaussian noise on every floating tensor (input normalisation
    buffers kept)."""
    return {k: v + noise * torch.randn(v.shape, generator=generator)
            if v.is_floating_point() and not k.startswith("normalize.") else v.clone()
            for k, v in state.items()}


def diverged(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every weight NaN (what a diverged run saves)."""
    return {k: torch.full_like(v, float("nan"))
            if v.is_floating_point() and not k.startswith("normalize.") else v.clone()
            for k, v in state.items()}


def write_demo_series(root: Path, epochs: Iterable[int], *, noise: float = 0.02, seed: int = 0,
                      nan_epochs: Iterable[int] = ()) -> Path:
    """A series of the embedded net in ``ipydeepvis train``'s format (safetensors files and a
    manifest): the shipped final weights plus seeded noise per epoch, NaN at ``nan_epochs``."""
    source = demo.series_path()
    manifest = json.loads((source / "manifest.json").read_text())
    final = load_file(str(source / f"epoch_{manifest['saved_epochs'][-1]:03d}.safetensors"))
    generator = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    bad = set(nan_epochs)
    checkpoints = {}
    for epoch in epochs:
        state = perturbed(final, generator, noise)
        if epoch in bad:
            state = diverged(state)
        name = f"epoch_{epoch:03d}.safetensors"
        save_file(state, str(root / name))
        checkpoints[str(epoch)] = name
    manifest["checkpoints"] = checkpoints
    manifest["saved_epochs"] = [int(e) for e in checkpoints]
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def write_plain_series(root: Path, model: nn.Module, epochs: Iterable[int], *,
                       noise: float = 0.3, seed: int = 9,
                       nan_epochs: Iterable[int] = ()) -> dict[int, dict[str, torch.Tensor]]:
    """``torch.save(state_dict)`` files ``epoch_NNN.pt`` of a small model, each epoch the last
    plus seeded noise; returns the states written."""
    generator = torch.Generator().manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    bad = set(nan_epochs)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    written = {}
    for epoch in epochs:
        state = perturbed(state, generator, noise)
        saved = diverged(state) if epoch in bad else state
        torch.save(saved, root / f"epoch_{epoch:03d}.pt")
        written[epoch] = saved
    return written
