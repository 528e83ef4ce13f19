"""The ``ipydeepvis`` command line: subcommands over the package's batch jobs.

``ipydeepvis train --out DIR`` trains the embedded default (see :mod:`ipydeepvis.train`).
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
