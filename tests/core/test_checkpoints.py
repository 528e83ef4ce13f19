"""CheckpointSeries: every checkpoint layout read back, and every refusal explained."""

from __future__ import annotations

import json
import pathlib
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ipydeepvis.core.checkpoints import MANIFEST_FORMAT, MANIFEST_NAME, CheckpointSeries
from ipydeepvis.errors import CheckpointError
from ipydeepvis.models import build_model, model_config


class Tiny(nn.Module):
    """A two-layer net; ``head`` renames the last layer to make "another architecture"."""

    def __init__(self, head: str = "fc", width: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)
        self.relu = nn.ReLU(inplace=True)
        setattr(self, head, nn.Linear(width, 2))
        self._head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self._head)(self.relu(self.conv(x)).mean((2, 3)))


def _states(n: int) -> list[OrderedDict[str, torch.Tensor]]:
    """``n`` distinct Tiny state dicts (epoch ``e`` has every weight filled with ``e``)."""
    out = []
    for e in range(1, n + 1):
        sd = Tiny().state_dict()
        out.append(OrderedDict((k, torch.full_like(v, float(e))) for k, v in sd.items()))
    return out


def _assert_epoch_weights(state: dict[str, torch.Tensor], epoch: int) -> None:
    assert set(state) == set(Tiny().state_dict())
    for v in state.values():
        assert torch.all(v == float(epoch))


def _write_manifest_series(folder: Path, epochs: list[int]) -> nn.Module:
    """A series as ``ipydeepvis train`` writes it, for a very small registered zf net."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {"widths": [2, 2, 2, 2, 2], "hidden": 4, "num_classes": 3}
    checkpoints = {}
    for e in epochs:
        model = build_model("zf", generator=torch.Generator().manual_seed(e), **config)
        save_file(model.state_dict(), str(folder / f"epoch_{e:03d}.safetensors"),
                  metadata={"epoch": str(e)})  # fmt: skip
        checkpoints[str(e)] = f"epoch_{e:03d}.safetensors"
    manifest = {
        "format": MANIFEST_FORMAT,
        "package_version": "0.1.0",
        "model": {"name": "zf", "config": model_config(model)},
        "data": {"name": "shapes", "seed": 0, "config": {}},
        "seed": 0,
        "saved_epochs": epochs,
        "checkpoints": checkpoints,
        "metrics": [
            {"epoch": e, "train_loss": 1.0 / e, "val_acc": 0.5 + e / 100} for e in range(1, 4)
        ],
    }
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    return model


# -- formats ------------------------------------------------------------------------------


def test_manifest_series(tmp_path: Path) -> None:
    last = _write_manifest_series(tmp_path, [1, 3])
    series = CheckpointSeries(tmp_path)
    assert series.epochs == [1, 3] and len(series) == 2 and 3 in series
    assert series.model_name == "zf"
    assert series.metrics[2] == {"train_loss": 0.5, "val_acc": 0.52}
    assert list(series.metrics) == [1, 2, 3]  # every trained epoch, not only saved ones
    model = series.model(3)
    assert not model.training
    for k, v in last.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert series.model(3) is not model  # a new instance every time
    # The manifest file itself is a valid path too.
    assert CheckpointSeries(tmp_path / MANIFEST_NAME).epochs == [1, 3]


@pytest.mark.parametrize(
    ("names", "epochs"),
    [
        (["model_epoch=1.pt", "model_epoch=2.pt", "model_epoch=10.pt"], [1, 2, 10]),
        (["epoch_01.pth", "epoch_02.pth", "epoch_10.pth"], [1, 2, 10]),
        (["ep1.pt", "ep2.pt", "ep10.pt"], [1, 2, 10]),
        (["run-EPOCH3-step=9.pt", "run-EPOCH7-step=9.pt", "run-EPOCH12-step=9.pt"], [3, 7, 12]),
    ],
)
def test_folder_of_plain_state_dicts(tmp_path: Path, names: list[str], epochs: list[int]) -> None:
    for name, sd in zip(names, _states(len(names)), strict=True):
        torch.save(sd, tmp_path / name)
    template = Tiny()
    before = {k: v.clone() for k, v in template.state_dict().items()}
    series = CheckpointSeries(tmp_path, model=template)
    assert series.epochs == epochs
    for i, epoch in enumerate(series.epochs, start=1):
        _assert_epoch_weights(series.load(epoch), i)
        model = series.model(epoch)
        assert model is not template and isinstance(model, Tiny)
        _assert_epoch_weights(model.state_dict(), i)
    # The user's instance is untouched.
    for k, v in template.state_dict().items():
        assert torch.equal(v, before[k])


def test_tutorial_style_dicts_with_epoch_inside(tmp_path: Path) -> None:
    for e, sd in enumerate(_states(2), start=1):
        torch.save({"epoch": e + 4, "model_state_dict": sd, "loss": 0.1}, tmp_path / f"ck{e}.pt")
    series = CheckpointSeries(tmp_path, model=Tiny)
    assert series.epochs == [5, 6]
    _assert_epoch_weights(series.load(6), 2)
    assert isinstance(series.model(5), Tiny)  # model= may be a factory


def test_lightning_ckpt(tmp_path: Path) -> None:
    for e, sd in enumerate(_states(3)):
        ckpt = {
            "epoch": e,  # Lightning's own numbering is kept
            "global_step": 100 * (e + 1),
            "pytorch-lightning_version": "2.4.0",
            "state_dict": {
                **{f"model.{k}": v for k, v in sd.items()},
                "loss_fn.pos_weight": torch.ones(1),  # another submodule of the LightningModule
            },
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}],
            "lr_schedulers": [],
            "callbacks": {},
            "loops": {},
            "hyper_parameters": {"lr": 0.1, "widths": [4]},
        }
        torch.save(ckpt, tmp_path / f"epoch={e}-step={100 * (e + 1)}.ckpt")
    torch.save(ckpt, tmp_path / "last.ckpt")  # Lightning's duplicate of the final epoch
    series = CheckpointSeries(tmp_path, model=Tiny())
    assert series.epochs == [0, 1, 2]
    assert series.files[2].path.name == "epoch=2-step=300.ckpt"
    assert series.files[2].kind == "lightning"
    _assert_epoch_weights(series.load(1), 2)
    _assert_epoch_weights(series.model(2).state_dict(), 3)


def test_lightning_ckpt_epoch_is_read_from_inside(tmp_path: Path) -> None:
    sd = _states(1)[0]
    torch.save({"epoch": 7, "pytorch-lightning_version": "2.4.0",
                "state_dict": {f"model.{k}": v for k, v in sd.items()}},
               tmp_path / "best.ckpt")  # fmt: skip
    series = CheckpointSeries(tmp_path)
    assert series.epochs == [7]
    # Without a model, a prefix shared by every key is taken off.
    _assert_epoch_weights(series.load(7), 1)


def test_loose_safetensors_and_wrapper_prefixes(tmp_path: Path) -> None:
    a, b = _states(2)
    save_file(dict(a), str(tmp_path / "weights_ep4.safetensors"))
    save_file({f"module.{k}": v for k, v in b.items()}, str(tmp_path / "final.safetensors"),
              metadata={"epoch": "9"})  # fmt: skip
    series = CheckpointSeries(tmp_path, model=Tiny())
    assert series.epochs == [4, 9]
    _assert_epoch_weights(series.load(9), 2)  # DataParallel's "module." is gone
    _assert_epoch_weights(series.model(4).state_dict(), 1)


def test_single_file(tmp_path: Path) -> None:
    torch.save(_states(1)[0], tmp_path / "epoch_5.pt")
    series = CheckpointSeries(tmp_path / "epoch_5.pt", model=Tiny())
    assert series.epochs == [5]


def test_real_zf_model_from_template(tmp_path: Path) -> None:
    model = build_model("zf", generator=torch.Generator().manual_seed(123))
    torch.save(model.state_dict(), tmp_path / "epoch_1.pt")
    template = build_model("zf")
    series = CheckpointSeries(tmp_path, model=template)
    rebuilt = series.model(1)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(rebuilt(x), model.eval()(x))
    assert not torch.equal(template.features.conv1.weight, rebuilt.features.conv1.weight)


# -- refusals and errors ------------------------------------------------------------------


class _Touch:
    """Unpickling this creates a file: a stand-in for any code a pickle could run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "epoch_1.pt"
    torch.save({"state_dict": _states(1)[0], "hparams": _Touch(marker)}, ckpt)
    # Sanity: the file really runs code when unpickled without protection.
    torch.load(ckpt, weights_only=False)
    assert marker.exists()
    marker.unlink()

    series = CheckpointSeries(tmp_path, model=Tiny())
    with pytest.raises(CheckpointError, match=r"refused to load .*epoch_1\.pt.*could run code"):
        series.load(1)
    with pytest.raises(CheckpointError, match="refused to load"):
        series.model(1)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_raw_malicious_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "epoch_2.pth").write_bytes(pickle.dumps({"w": _Touch(marker)}))
    series = CheckpointSeries(tmp_path, model=Tiny())
    with pytest.raises(CheckpointError, match=r"refused to load .*epoch_2\.pth"):
        series.load(2)
    assert not marker.exists()


def test_malicious_lightning_ckpt_is_refused_while_listing(tmp_path: Path) -> None:
    """The epoch of a .ckpt is read from inside the file: that read must be safe too."""
    marker = tmp_path / "pwned"
    torch.save({"epoch": 1, "state_dict": _states(1)[0], "x": _Touch(marker)},
               tmp_path / "epoch=1.ckpt")  # fmt: skip
    series = CheckpointSeries(tmp_path, model=Tiny())
    assert series.epochs == [1]  # from the name; the file is refused when loaded
    with pytest.raises(CheckpointError, match="refused to load"):
        series.load(1)
    assert not marker.exists()


def test_other_architecture_names_missing_and_unexpected_keys(tmp_path: Path) -> None:
    torch.save(Tiny(head="fc").state_dict(), tmp_path / "epoch_1.pt")
    series = CheckpointSeries(tmp_path, model=Tiny(head="classifier"))
    with pytest.raises(
        CheckpointError,
        match=r"another architecture than Tiny: missing keys \(2\): classifier\.bias, "
        r"classifier\.weight; unexpected keys \(2\): fc\.bias, fc\.weight",
    ):
        series.model(1)


def test_shape_mismatch_is_named(tmp_path: Path) -> None:
    torch.save(Tiny(width=4).state_dict(), tmp_path / "epoch_1.pt")
    series = CheckpointSeries(tmp_path, model=Tiny(width=8))
    with pytest.raises(CheckpointError, match=r"conv\.weight: checkpoint \(4, 3, 3, 3\) vs "
                       r"model \(8, 3, 3, 3\)"):  # fmt: skip
        series.model(1)


def test_manifest_series_against_another_template(tmp_path: Path) -> None:
    _write_manifest_series(tmp_path, [1])
    series = CheckpointSeries(tmp_path, model=Tiny())
    with pytest.raises(CheckpointError, match=r"missing keys \(4\): conv\.bias.*unexpected keys"):
        series.model(1)


def test_truncated_safetensors_names_the_file_and_others_still_load(tmp_path: Path) -> None:
    _write_manifest_series(tmp_path, [1, 2, 5])
    bad = tmp_path / "epoch_002.safetensors"
    bad.write_bytes(bad.read_bytes()[:200])
    series = CheckpointSeries(tmp_path)
    with pytest.raises(
        CheckpointError,
        match=r"epoch 2, '.*epoch_002\.safetensors': the file is truncated or corrupt.*"
        r"other epochs \[1, 5\] are not affected",
    ):
        series.load(2)
    assert series.model(1) is not None and series.model(5) is not None


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_pt_names_the_file_and_others_still_load(tmp_path: Path, damage: str) -> None:
    for e, sd in enumerate(_states(3), start=1):
        torch.save(sd, tmp_path / f"epoch_{e}.pt")
    bad = tmp_path / "epoch_2.pt"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x00garbage" * 50)
    series = CheckpointSeries(tmp_path, model=Tiny())
    with pytest.raises(CheckpointError, match=r"epoch 2: cannot read '.*epoch_2\.pt': the file "
                       r"is truncated or corrupt"):  # fmt: skip
        series.model(2)
    _assert_epoch_weights(series.load(1), 1)
    _assert_epoch_weights(series.model(3).state_dict(), 3)


def test_missing_file_of_a_manifest(tmp_path: Path) -> None:
    _write_manifest_series(tmp_path, [1, 2])
    (tmp_path / "epoch_001.safetensors").unlink()
    series = CheckpointSeries(tmp_path)
    with pytest.raises(CheckpointError, match=r"epoch 1, '.*epoch_001\.safetensors', is missing"):
        series.load(1)
    assert series.model(2) is not None


def test_unknown_epoch_lists_the_valid_ones(tmp_path: Path) -> None:
    _write_manifest_series(tmp_path, [1, 2, 5])
    series = CheckpointSeries(tmp_path)
    with pytest.raises(CheckpointError, match=r"epoch 7 is not in this series; saved epochs: "
                       r"\[1, 2, 5\]"):  # fmt: skip
        series.load(7)
    with pytest.raises(CheckpointError, match=r"epoch '5' is not in this series"):
        series.model("5")  # type: ignore[arg-type]


def test_no_architecture_known(tmp_path: Path) -> None:
    torch.save(_states(1)[0], tmp_path / "epoch_1.pt")
    series = CheckpointSeries(tmp_path)
    _assert_epoch_weights(series.load(1), 1)  # weights alone need no model
    assert series.metrics == {}
    with pytest.raises(CheckpointError, match=r"does not name its architecture .*pass model="):
        series.model(1)


def test_folder_problems(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"'.*nowhere' does not exist"):
        CheckpointSeries(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError, match=r"no checkpoints found in .*\.safetensors, \.pt"):
        CheckpointSeries(tmp_path)
    a, b = _states(2)
    torch.save(a, tmp_path / "epoch_3.pt")
    torch.save(b, tmp_path / "run_ep3.pth")
    with pytest.raises(CheckpointError, match=r"several files claim epoch 3 .*epoch_3\.pt"):
        CheckpointSeries(tmp_path)


def test_file_without_epoch_is_skipped_with_a_warning(tmp_path: Path) -> None:
    torch.save(_states(1)[0], tmp_path / "epoch_1.pt")
    torch.save(_states(1)[0], tmp_path / "weights.pt")
    with pytest.warns(UserWarning, match=r"skipping '.*weights\.pt': no epoch in its name"):
        series = CheckpointSeries(tmp_path, model=Tiny())
    assert series.epochs == [1] and list(series.skipped) == [tmp_path / "weights.pt"]


def test_bad_manifests(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match=r"cannot read the series manifest"):
        CheckpointSeries(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(CheckpointError, match=r"format 'other/1', expected 'ipydeepvis.series/1'"):
        CheckpointSeries(tmp_path)
    escape = {"format": MANIFEST_FORMAT, "model": {"name": "zf"},
              "checkpoints": {"1": "../../etc/passwd.pt"}}  # fmt: skip
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(escape))
    with pytest.raises(CheckpointError, match=r"lists '../../etc/passwd.pt' for epoch 1"):
        CheckpointSeries(tmp_path)


def test_weights_not_found_in_a_dict(tmp_path: Path) -> None:
    torch.save({"epoch": 1, "notes": "no weights here"}, tmp_path / "epoch_1.pt")
    series = CheckpointSeries(tmp_path, model=Tiny())
    with pytest.raises(
        CheckpointError, match=r"no weights found in .*holds keys \['epoch', 'notes'\]"
    ):
        series.load(1)


def test_bad_model_argument(tmp_path: Path) -> None:
    torch.save(_states(1)[0], tmp_path / "epoch_1.pt")
    with pytest.raises(CheckpointError, match=r"model='tiny' is not valid"):
        CheckpointSeries(tmp_path, model="tiny")  # type: ignore[arg-type]
    series = CheckpointSeries(tmp_path, model=lambda: 3)  # type: ignore[arg-type,return-value]
    with pytest.raises(CheckpointError, match=r"returned int, not a module"):
        series.model(1)


def test_core_checkpoints_imports_no_widget_library() -> None:
    import ipydeepvis.core.checkpoints as mod

    source = Path(mod.__file__).read_text()
    for lib in ("ipywidgets", "ipycanvas", "bqplot", "traitlets"):
        assert f"import {lib}" not in source and f"from {lib}" not in source
