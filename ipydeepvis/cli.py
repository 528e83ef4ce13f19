"""The ``ipydeepvis`` command line: subcommands over the package's batch jobs.

``ipydeepvis train --out DIR`` trains the embedded default (see :mod:`ipydeepvis.train`);
``ipydeepvis index ... --out DIR`` writes a data-set top-k index (see
:mod:`ipydeepvis.core.indexing`), on one process or under ``torchrun``.
Each subcommand is one ``_add_<name>`` function that declares its arguments and sets the
function that runs it, so more can be added without touching the others.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from ipydeepvis.errors import DeepVisError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ipydeepvis`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status (0 on success). Usage errors exit through ``argparse`` (status 2).
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args, parser))
    except DeepVisError as exc:
        parser.exit(2, f"ipydeepvis {args.command}: error: {exc}\n")
    return 2  # pragma: no cover - parser.exit raises SystemExit


def _parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="ipydeepvis",
        description="Batch jobs of ipydeepvis (the widgets themselves run in Jupyter).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_train(commands)
    _add_index(commands)
    return parser


def _epoch_list(text: str) -> tuple[int, ...]:
    """Parse ``"1,2,5,10"`` into a tuple of non-negative ints (for ``--save-epochs``)."""
    try:
        epochs = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        msg = f"{text!r} is not a comma-separated list of epochs, e.g. 1,2,5,10"
        raise argparse.ArgumentTypeError(msg) from None
    if not epochs or min(epochs) < 0:
        msg = f"{text!r}: give at least one epoch, each >= 0 (0 saves the initial weights)"
        raise argparse.ArgumentTypeError(msg)
    return epochs


def _add_train(commands: argparse._SubParsersAction) -> None:
    """Declare ``ipydeepvis train``."""
    from ipydeepvis.train import DEFAULT_EPOCHS

    p = commands.add_parser(
        "train",
        help="train the small ZF-style net on Shapes and write a checkpoint series",
        description=(
            "Train the embedded default (a ZF-style five-conv-layer net on the procedural "
            "Shapes data set) and write one safetensors file per saved epoch plus "
            "manifest.json. Same seed and thread count, same files."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write the series to")
    p.add_argument(
        "--epochs", type=int, default=DEFAULT_EPOCHS, metavar="N",
        help=f"passes over the training set (default {DEFAULT_EPOCHS})",
    )  # fmt: skip
    p.add_argument(
        "--save-epochs", type=_epoch_list, default=None, metavar="E,E,...",
        help="epochs to save, e.g. 1,2,5,10 (default: 1,2,3,5,10,15,... and the last)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of weights and shuffling (default 0)")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the Shapes images (default 0)")
    p.add_argument(
        "--train-size", type=int, default=10_000, metavar="N",
        help="number of training images (default 10000)",
    )  # fmt: skip
    p.add_argument(
        "--val-size", type=int, default=2_000, metavar="N",
        help="number of validation images (default 2000)",
    )  # fmt: skip
    p.add_argument(
        "--threads", type=int, default=None, metavar="T",
        help="torch threads (default: torch's own choice); files are bit-identical only "
        "for the same thread count",
    )  # fmt: skip
    p.add_argument(
        "--force", action="store_true",
        help="replace a series that ipydeepvis train wrote in DIR (only the files it wrote; "
        "a folder with anything else of the same names is still refused)",
    )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch log")
    p.set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``ipydeepvis train``."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ipydeepvis.train import TrainConfig, train

    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = TrainConfig(
        epochs=args.epochs,
        save_epochs=args.save_epochs or (),
        seed=args.seed,
        data_seed=args.data_seed,
        train_size=args.train_size,
        val_size=args.val_size,
    )
    started = time.perf_counter()
    with logging_redirect_tqdm():  # per-epoch log lines print above the progress bar
        series = train(
            args.out,
            config=config,
            threads=args.threads,
            progress=not args.quiet,
            overwrite=args.force,
        )
    elapsed = time.perf_counter() - started
    last = series.epochs[-1]
    val_acc = series.metrics.get(last, {}).get("val_acc", float("nan"))
    sys.stdout.write(
        f"wrote {len(series.epochs)} checkpoints (epochs {series.epochs}) to {series.path} "
        f"in {elapsed:.0f} s; val accuracy at epoch {last}: {val_acc:.1%}\n"
    )
    return 0


def _add_index(commands: argparse._SubParsersAction) -> None:
    """Declare ``ipydeepvis index``."""
    p = commands.add_parser(
        "index",
        help="scan a data set and write every unit's top-k images (resumable, torchrun-ready)",
        description=(
            "Scan a data set and write, for every unit of the given layers, its k strongest "
            "images (value, data-set index, position) to DIR/index.safetensors + "
            "DIR/index.json. Checkpointed as it goes: --resume continues an interrupted run. "
            "Under `torchrun --nproc-per-node N` each rank scans its shard (gloo on CPUs, "
            "nccl on GPUs) and rank 0 writes the merged index."
        ),
    )
    p.add_argument(
        "--model", required=True, metavar="MODULE:FACTORY",
        help="a callable returning the nn.Module, e.g. torchvision.models:alexnet; "
        "'demo' for the embedded default (its final epoch)",
    )  # fmt: skip
    p.add_argument(
        "--weights", metavar="FILE",
        help="state dict to load: .safetensors, or .pt/.pth read with weights_only=True",
    )  # fmt: skip
    p.add_argument(
        "--data", required=True, metavar="FOLDER|MODULE:FACTORY",
        help="an image folder (torchvision ImageFolder layout), a callable returning a "
        "Dataset or DataLoader, or 'demo' for the embedded default's test images",
    )  # fmt: skip
    p.add_argument(
        "--transform", metavar="MODULE:FACTORY",
        help="a callable returning the image transform for a folder, e.g. "
        "torchvision.models:AlexNet_Weights.DEFAULT.transforms (default: the ImageNet "
        "evaluation preset: resize 256, crop 224, normalise)",
    )  # fmt: skip
    p.add_argument("--layers", required=True, nargs="+", metavar="LAYER",
                   help="layer names (as probe.layers spells them), one or more")
    p.add_argument("--k", type=int, default=9, help="images kept per unit (default 9)")
    p.add_argument("--out", required=True, metavar="DIR", help="directory of the index")
    p.add_argument("--batch-size", type=int, default=64, metavar="B",
                   help="images per forward pass (default 64)")
    p.add_argument("--workers", type=int, default=0, metavar="W",
                   help="data loader processes per rank (default 0)")
    p.add_argument("--resume", action="store_true",
                   help="continue the index in DIR (same model, data, layers and k)")
    p.add_argument("--checkpoint-every", type=int, default=50, metavar="N",
                   help="write the partial index every N batches (default 50)")
    p.add_argument("--epoch", type=int, default=None, help="epoch to record in the index")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="torch threads per process (default: torch's own choice)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    p.set_defaults(run=_run_index)


def _run_index(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``ipydeepvis index`` (one process, or one rank of a torchrun job)."""
    import os

    import torch
    import torch.distributed as dist

    from ipydeepvis.core.indexing import build_index

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    started_group = False
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not (
        dist.is_initialized()
    ):
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
        started_group = True
    try:
        model = _index_model(args)
        data, transform = _index_data(args)
        started, started_cpu = time.perf_counter(), time.process_time()
        index = build_index(
            model, data, args.layers, args.k, batch_size=args.batch_size,
            workers=args.workers, preprocess=transform, out=args.out, resume=args.resume,
            checkpoint_every=args.checkpoint_every, progress=not args.quiet, epoch=args.epoch,
        )  # fmt: skip
        elapsed = time.perf_counter() - started  # the scan's own time: no start-up, no imports
        cpu, processes = _cpu_seconds(time.process_time() - started_cpu)
        rate = "" if args.resume else f"{index.seen / max(elapsed, 1e-9):,.0f} images/s, "
        if not dist.is_initialized() or dist.get_rank() == 0:
            sys.stdout.write(
                f"wrote the top-{index.k} index of {index.seen} images "
                f"({', '.join(index.layers)}) to {args.out} in {elapsed:.2f} s ({rate}"
                f"{cpu:.2f} CPU s in {processes} process{'es' if processes > 1 else ''})\n"
            )
    finally:
        if started_group:
            dist.destroy_process_group()
    return 0


def _cpu_seconds(mine: float) -> tuple[float, int]:
    """The CPU seconds of the scan summed over all ranks (the work, whatever the machine's
    load), and the number of processes."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        return mine, 1
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor([mine], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item()), dist.get_world_size()


def _resolve(spec: str, what: str) -> object:
    """``MODULE:ATTR.PATH`` -> that object (imported, attributes followed)."""
    import importlib

    from ipydeepvis.errors import InvalidOptionError

    module_name, sep, path = spec.partition(":")
    if not sep or not module_name or not path:
        msg = f"{what} {spec!r} is not MODULE:FACTORY (e.g. torchvision.models:alexnet)"
        raise InvalidOptionError(msg)
    try:
        found: object = importlib.import_module(module_name)
        for part in path.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        msg = f"{what} {spec!r} cannot be found: {exc}"
        raise InvalidOptionError(msg) from exc
    return found


def _index_model(args: argparse.Namespace) -> object:
    """The model of ``ipydeepvis index`` with ``--weights`` loaded, in eval mode."""
    from pathlib import Path

    import torch
    from torch import nn

    from ipydeepvis.errors import CheckpointError, InvalidOptionError

    if args.model == "demo":
        from ipydeepvis import demo

        model = demo.load().model
    else:
        factory = _resolve(args.model, "--model")
        model = factory() if callable(factory) and not isinstance(factory, nn.Module) else factory
        if not isinstance(model, nn.Module):
            msg = f"--model {args.model!r} gave a {type(model).__name__}, not a torch nn.Module"
            raise InvalidOptionError(msg)
    if args.weights:
        path = Path(args.weights)
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                state = load_file(str(path))
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
                if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                    state = state["state_dict"]
            model.load_state_dict(state)
        except Exception as exc:
            msg = f"--weights {str(path)!r} cannot be loaded into the model: {exc}"
            raise CheckpointError(msg) from exc
    if torch.cuda.is_available():
        import os

        model = model.to(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}")
    return model.eval()


def _index_data(args: argparse.Namespace) -> tuple[object, object]:
    """The data set of ``ipydeepvis index`` and the transform of its images."""
    from pathlib import Path

    from ipydeepvis.errors import InvalidOptionError

    transform = None
    if args.transform:
        factory = _resolve(args.transform, "--transform")
        transform = factory() if callable(factory) else factory
    if args.data == "demo":
        from ipydeepvis import demo

        return demo.load().dataset, transform
    if Path(args.data).is_dir():
        from torchvision.datasets import ImageFolder
        from torchvision.transforms._presets import ImageClassification

        transform = transform or ImageClassification(crop_size=224)
        try:
            return ImageFolder(args.data), transform
        except (FileNotFoundError, OSError) as exc:
            msg = f"--data {args.data!r} is not an image folder (class/image.png): {exc}"
            raise InvalidOptionError(msg) from exc
    if ":" not in args.data:
        msg = f"--data {args.data!r} is neither a folder nor MODULE:FACTORY"
        raise InvalidOptionError(msg)
    factory = _resolve(args.data, "--data")
    return (factory() if callable(factory) else factory), transform
