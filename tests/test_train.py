"""``ipydeepvis train`` and ``train()``: a tiny run writes a series that reads back, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ipydeepvis.cli import main
from ipydeepvis.core.checkpoints import MANIFEST_NAME, CheckpointSeries
from ipydeepvis.errors import CheckpointError, InvalidOptionError
from ipydeepvis.train import TrainConfig, default_save_epochs, train

TINY = {"train_size": 96, "val_size": 48, "batch_size": 32}


def _tiny(out: Path, seed: int = 0, epochs: int = 2) -> CheckpointSeries:
    config = TrainConfig(epochs=epochs, seed=seed, **TINY)
    return train(out, config=config, threads=1, progress=False)


def test_two_tiny_epochs_write_a_valid_series(tmp_path: Path) -> None:
    series = _tiny(tmp_path / "run")
    assert isinstance(series, CheckpointSeries)
    assert series.epochs == [1, 2]
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["epoch_001.safetensors", "epoch_002.safetensors", MANIFEST_NAME]

    manifest = json.loads((tmp_path / "run" / MANIFEST_NAME).read_text())
    assert manifest["model"]["name"] == "zf" and manifest["model"]["config"]["num_classes"] == 11
    assert manifest["data"]["name"] == "shapes" and manifest["data"]["config"]["image_size"] == 64
    assert manifest["data"]["train_size"] == 96
    assert manifest["seed"] == 0 and manifest["saved_epochs"] == [1, 2]
    assert manifest["package_version"] and manifest["complete"] is True
    assert manifest["train"]["batch_size"] == 32 and manifest["train"]["threads"] == 1

    metrics = series.metrics
    assert list(metrics) == [1, 2]
    for row in metrics.values():
        assert {"train_loss", "train_acc", "val_loss", "val_acc"} <= set(row)
        assert 0.0 <= row["val_acc"] <= 1.0 and row["train_loss"] > 0

    model = series.model(2)
    assert not model.training
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 11)
    # Training happened: the weights moved from epoch 1 to epoch 2.
    w1 = series.load(1)["features.conv1.weight"]
    w2 = series.load(2)["features.conv1.weight"]
    assert float((w2 - w1).norm()) > 0


def test_same_seed_same_files_other_seed_other_weights(tmp_path: Path) -> None:
    _tiny(tmp_path / "a", seed=5)
    _tiny(tmp_path / "b", seed=5)
    _tiny(tmp_path / "c", seed=6)
    for name in ("epoch_001.safetensors", "epoch_002.safetensors", MANIFEST_NAME):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    a = CheckpointSeries(tmp_path / "a").load(2)["features.conv1.weight"]
    c = CheckpointSeries(tmp_path / "c").load(2)["features.conv1.weight"]
    assert not torch.equal(a, c)


def test_training_leaves_global_state_alone(tmp_path: Path) -> None:
    rng = torch.random.get_rng_state()
    threads = torch.get_num_threads()
    _tiny(tmp_path / "run", epochs=1)
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert torch.get_num_threads() == threads


def test_existing_series_is_not_overwritten_without_asking(tmp_path: Path) -> None:
    _tiny(tmp_path / "run", epochs=1)
    with pytest.raises(CheckpointError, match=r"already holds a checkpoint series .*--force"):
        _tiny(tmp_path / "run", epochs=1)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    config = TrainConfig(epochs=2, save_epochs=(2,), **TINY)
    series = train(tmp_path / "run", config=config, threads=1, progress=False, overwrite=True)
    assert series.epochs == [2]
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names == ["epoch_002.safetensors", MANIFEST_NAME, "notes.txt"]  # old epoch 1 gone


def test_save_epochs() -> None:
    assert default_save_epochs(15) == (1, 2, 3, 5, 10, 15)
    assert default_save_epochs(12) == (1, 2, 3, 5, 10, 12)
    assert default_save_epochs(1) == (1,)
    assert TrainConfig(epochs=4, save_epochs=(4, 0, 2, 2)).save_epochs == (0, 2, 4)
    with pytest.raises(InvalidOptionError, match=r"save_epochs \[7\] are not valid for epochs=5"):
        TrainConfig(epochs=5, save_epochs=(1, 7))
    with pytest.raises(InvalidOptionError, match="epochs=0 is not valid"):
        TrainConfig(epochs=0)
    with pytest.raises(InvalidOptionError, match=r"epochs=1000001 is not valid: a series holds "
                       r"epochs 0 \.\. 1000000"):  # fmt: skip
        TrainConfig(epochs=10**6 + 1)


def test_epoch_zero_saves_the_initial_weights(tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, save_epochs=(0, 1), **TINY)
    series = train(tmp_path, config=config, threads=1, progress=False)
    assert series.epochs == [0, 1]
    assert list(series.metrics) == [1]


def test_cli_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["train", "--out", str(out), "--epochs", "2", "--save-epochs", "1,2", "--seed", "3"]
    argv += ["--train-size", "64", "--val-size", "32", "--threads", "1", "--quiet"]
    assert main(argv) == 0
    assert "wrote 2 checkpoints (epochs [1, 2])" in capsys.readouterr().out
    series = CheckpointSeries(out)
    assert series.epochs == [1, 2] and series.manifest is not None
    assert series.manifest["seed"] == 3
    # A second run into the same folder is refused with the fix in the message.
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "already holds a checkpoint series" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train"], "the following arguments are required: --out"),
        (["train", "--out", "x", "--save-epochs", "1,a"], "not a comma-separated list"),
        (["train", "--out", "x", "--epochs", "3", "--save-epochs", "5"], r"save_epochs \[5\]"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_cli_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [str(tmp_path / a) if a == "x" else a for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message.replace("\\", "") in capsys.readouterr().err


# -- replacing a series: only ours, only what we wrote (issue 9, bug 1) ---------------------


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (what "touch nothing" compares)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


def _foreign_folder(out: Path, manifest: object) -> None:
    """A folder of somebody else's files, with ``manifest`` as its manifest.json."""
    out.mkdir(parents=True)
    (out / "data.csv").write_text("precious,1\n")
    (out / "epoch_001.safetensors").write_bytes(b"not ours either")
    (out / "model.pt").write_bytes(b"\x80\x04K\x01.")
    text = manifest if isinstance(manifest, str) else json.dumps(manifest)
    (out / MANIFEST_NAME).write_text(text)


FOREIGN_MANIFESTS = {
    "other format": {
        "format": "acme.dataset/2", "checkpoints": {"1": "data.csv"},
        "files": ["data.csv", "model.pt"],
    },
    "no format": {"checkpoints": {"a": "data.csv", "b": "model.pt"}},
    "a list": ["data.csv", "model.pt"],
    "not json": "{data.csv, model.pt",
    "our format, a file we never write": {
        "format": "ipydeepvis.series/1", "model": {"name": "zf"},
        "checkpoints": {"1": "data.csv", "2": "model.pt"},
    },
    "our format, our file name, foreign bytes": {
        "format": "ipydeepvis.series/1", "model": {"name": "zf"},
        "checkpoints": {"1": "epoch_001.safetensors"},
    },
}


@pytest.mark.parametrize("kind", list(FOREIGN_MANIFESTS))
def test_force_never_deletes_files_of_a_foreign_manifest(tmp_path: Path, kind: str) -> None:
    out = tmp_path / "theirs"
    _foreign_folder(out, FOREIGN_MANIFESTS[kind])
    before = _snapshot(out)
    with pytest.raises(CheckpointError, match=r"not .*written by ipydeepvis.*even with --force"):
        train(out, config=TrainConfig(epochs=1, **TINY), threads=1, progress=False,
              overwrite=True)  # fmt: skip
    assert _snapshot(out) == before  # nothing deleted, nothing written


@pytest.mark.parametrize("force", [False, True])
def test_cli_refuses_a_foreign_manifest_without_calling_it_a_series(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], force: bool
) -> None:
    out = tmp_path / "theirs"
    _foreign_folder(out, FOREIGN_MANIFESTS["other format"])
    before = _snapshot(out)
    argv = ["train", "--out", str(out), "--epochs", "1", "--train-size", "32", "--val-size",
            "16", "--threads", "1", "--quiet"] + (["--force"] if force else [])  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "checkpoint series" not in err
    assert "manifest.json" in err and "acme.dataset/2" in err and "Traceback" not in err
    assert _snapshot(out) == before


def test_files_train_would_overwrite_without_a_manifest_are_refused(tmp_path: Path) -> None:
    """No manifest, but a file named like ours: not ours (ours always has a manifest)."""
    out = tmp_path / "mixed"
    out.mkdir()
    (out / "epoch_001.safetensors").write_bytes(b"someone's weights")
    before = _snapshot(out)
    for overwrite in (False, True):
        with pytest.raises(CheckpointError, match=r"epoch_001\.safetensors.*would be "
                           r"overwritten.*no manifest\.json"):  # fmt: skip
            train(out, config=TrainConfig(epochs=1, **TINY), threads=1, progress=False,
                  overwrite=overwrite)  # fmt: skip
        assert _snapshot(out) == before


def test_force_replaces_only_the_files_our_manifest_lists(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _tiny(out, epochs=1)
    (out / "epoch_001.safetensors.bak").write_bytes(b"mine")
    (out / "epoch_007.safetensors").write_bytes(b"mine too")  # named like ours, not listed
    series = train(out, config=TrainConfig(epochs=1, save_epochs=(0,), **TINY), threads=1,
                   progress=False, overwrite=True)  # fmt: skip
    assert series.epochs == [0]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["epoch_000.safetensors", "epoch_001.safetensors.bak",
                     "epoch_007.safetensors", MANIFEST_NAME]  # fmt: skip
    assert (out / "epoch_007.safetensors").read_bytes() == b"mine too"


def test_force_refuses_our_manifest_when_a_listed_file_was_replaced(tmp_path: Path) -> None:
    """Our manifest, but the file it lists is no longer the one we wrote: keep it."""
    out = tmp_path / "run"
    _tiny(out, epochs=1)
    (out / "epoch_001.safetensors").write_bytes(b"edited by hand")
    before = _snapshot(out)
    with pytest.raises(CheckpointError, match=r"epoch_001\.safetensors.*not .*written by "
                       r"ipydeepvis"):  # fmt: skip
        _tiny_force(out)
    assert _snapshot(out) == before


def test_force_takes_back_a_checkpoint_a_stopped_run_of_ours_left_unlisted(
    tmp_path: Path,
) -> None:
    """A run stopped between writing a checkpoint and listing it: the file is still ours."""
    out = tmp_path / "run"
    _tiny(out, epochs=1)
    weights = {"w": torch.ones(2)}
    save_file(weights, str(out / "epoch_002.safetensors"), metadata={"epoch": "2"})
    series = train(out, config=TrainConfig(epochs=2, save_epochs=(2,), **TINY), threads=1,
                   progress=False, overwrite=True)  # fmt: skip
    assert series.epochs == [2] and "features.conv1.weight" in series.load(2)
    # Stamped for another epoch: not what we wrote there, so refused.
    save_file(weights, str(out / "epoch_001.safetensors"), metadata={"epoch": "7"})
    before = _snapshot(out)
    with pytest.raises(CheckpointError, match=r"epoch_001\.safetensors would be overwritten"):
        _tiny_force(out)
    assert _snapshot(out) == before


def _tiny_force(out: Path) -> CheckpointSeries:
    return train(out, config=TrainConfig(epochs=1, **TINY), threads=1, progress=False,
                 overwrite=True)  # fmt: skip


# -- an unwritable --out (issue 9, bug 10) --------------------------------------------------


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("out", ["/proc/x", "/proc/x/run", "/proc/self/status/run", "/proc/self"])
def test_cli_unwritable_out_is_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], out: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", out, "--epochs", "1", "--train-size", "32", "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ipydeepvis train: error: ") and err.count("\n") == 1, err
    assert out in err and "Traceback" not in err

