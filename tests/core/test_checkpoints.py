"""CheckpointSeries: every checkpoint layout read back, and every refusal explained."""

from __future__ import annotations

import json
import math
import os
import pathlib
import pickle
import re
import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from ipydeepvis.core.checkpoints import MANIFEST_FORMAT, MANIFEST_NAME, CheckpointSeries
from ipydeepvis.errors import CheckpointError
from ipydeepvis.models import MODELS, build_model, model_config


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
    series = CheckpointSeries(tmp_path, builders=MODELS)
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
    assert not series.skipped


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
    series = CheckpointSeries(tmp_path, builders=MODELS)
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
    series = CheckpointSeries(tmp_path, builders=MODELS)
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
    with pytest.warns(UserWarning, match=r"lists '../../etc/passwd.pt' for epoch 1"),\
            pytest.raises(CheckpointError, match=r"no usable checkpoints .*lists "
                          r"'../../etc/passwd.pt' for epoch 1"):  # fmt: skip
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


# -- one bad file or entry leaves the others usable (issue 9, bug 9) ------------------------


def _tiny_dict(epoch: object, state: dict[str, torch.Tensor]) -> dict[str, object]:
    return {"epoch": epoch, "state_dict": state}


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (torch.tensor([1, 2]), r"its 'epoch' entry tensor\(\[1, 2\]\) is not one epoch number"),
        (torch.tensor(float("nan")), r"its 'epoch' entry tensor\(nan\) is not one epoch number"),
        (float("nan"), r"its 'epoch' entry nan is not one epoch number"),
        (2.5, r"its 'epoch' entry 2\.5 is not one epoch number"),
        (True, r"its 'epoch' entry True is not one epoch number"),
        (-3, r"epoch -3 is out of range: use 0 \.\. 1000000"),
        (10**7, r"epoch 10000000 is out of range: use 0 \.\. 1000000"),
        (torch.tensor(-1), r"epoch -1 is out of range"),
        ("three", r"its 'epoch' entry 'three' is not one epoch number"),
    ],
)
def test_a_bad_epoch_inside_a_file_skips_that_file_only(
    tmp_path: Path, bad: object, reason: str
) -> None:
    a, b, c = _states(3)
    torch.save(_tiny_dict(1, a), tmp_path / "first.pt")
    torch.save(_tiny_dict(bad, b), tmp_path / "broken.pt")
    torch.save(_tiny_dict(torch.tensor(3), c), tmp_path / "third.pt")  # a 0-d tensor is fine
    with pytest.warns(UserWarning, match=rf"skipping '.*broken\.pt': {reason}"):
        series = CheckpointSeries(tmp_path, model=Tiny())
    assert series.epochs == [1, 3]
    assert list(series.skipped) == [tmp_path / "broken.pt"]
    assert "broken.pt" not in series.skipped[tmp_path / "broken.pt"]  # the key names it
    _assert_epoch_weights(series.load(1), 1)
    _assert_epoch_weights(series.model(3).state_dict(), 3)


def test_a_bad_epoch_inside_a_single_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    torch.save(_tiny_dict(torch.tensor([1, 2]), _states(1)[0]), tmp_path / "weights.pt")
    with pytest.warns(UserWarning), pytest.raises(
        CheckpointError, match=r"no usable checkpoints in '.*weights\.pt'.*weights\.pt: its "
        r"'epoch' entry tensor\(\[1, 2\]\) is not one epoch number"
    ):  # fmt: skip
        CheckpointSeries(tmp_path / "weights.pt", model=Tiny())


def test_absurd_epochs_in_file_names_are_refused(tmp_path: Path) -> None:
    a, b = _states(2)
    torch.save(a, tmp_path / "epoch_2.pt")
    torch.save(b, tmp_path / "epoch_20240101.pt")  # a date, not an epoch
    with pytest.warns(UserWarning, match=r"skipping '.*epoch_20240101\.pt': epoch 20240101 "
                      r"is out of range"):  # fmt: skip
        series = CheckpointSeries(tmp_path, model=Tiny())
    assert series.epochs == [2]


def test_bad_manifest_entries_skip_those_epochs_only(tmp_path: Path) -> None:
    _write_manifest_series(tmp_path, [1, 2, 3, 4, 5])
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["checkpoints"] = {
        "1": "epoch_001.safetensors",
        "two": "epoch_002.safetensors",
        "-3": "epoch_003.safetensors",
        "4000000": "epoch_004.safetensors",
        "5": ["epoch_005.safetensors"],
    }
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.warns(UserWarning) as record:
        series = CheckpointSeries(tmp_path, builders=MODELS)
    assert series.epochs == [1]
    text = "\n".join(str(w.message) for w in record)
    assert re.search(r"manifest\.json.*'two' is not an epoch number", text), text
    assert re.search(r"'-3' is not an epoch number", text), text
    assert re.search(r"epoch 4000000 is out of range", text), text
    assert re.search(r"lists \['epoch_005\.safetensors'\] for epoch 5", text), text
    assert set(series.skipped) == {tmp_path / f"epoch_00{e}.safetensors" for e in (2, 3, 4)} | {
        tmp_path / MANIFEST_NAME
    }
    assert series.model(1) is not None


def test_bad_metrics_are_dropped_with_a_warning(tmp_path: Path) -> None:
    _write_manifest_series(tmp_path, [1, 2])
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["metrics"] = [
        {"epoch": 1, "train_loss": "high", "val_acc": 0.5},
        {"epoch": "x", "train_loss": 1.0},
        7,
        {"epoch": 2, "train_loss": float("nan"), "val_acc": [0.1], "lr": True},
        {"epoch": -1, "train_loss": 1.0},
    ]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=r"manifest\.json.*metrics"):
        series = CheckpointSeries(tmp_path, builders=MODELS)
    metrics = series.metrics
    assert list(metrics) == [1, 2]
    assert metrics[1] == {"val_acc": 0.5}
    assert list(metrics[2]) == ["train_loss"] and math.isnan(metrics[2]["train_loss"])
    assert series.model(2) is not None  # the weights are not affected
    manifest["metrics"] = {"1": {"loss": 1.0}}
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=r"'metrics' is a dict, not a list of rows"):
        assert CheckpointSeries(tmp_path, builders=MODELS).metrics == {}


@pytest.mark.parametrize(
    ("model_entry", "message"),
    [
        ({"name": "zf", "config": [1]}, r"model config \[1\] is not a JSON object"),
        ("zf", r"model entry 'zf' is not a JSON object"),
        ({"config": {}}, r"does not name its model"),
        ({"name": "zf", "config": {"widths": "wide"}}, r"cannot rebuild the manifest's model"),
        ({"name": "zf", "config": {"depth": 3}}, r"unknown option\(s\) \['depth'\]"),
        ({"name": "resnet", "config": {}}, r"model 'resnet' is not one of the builders \['zf'\]"),
    ],
)
def test_a_bad_model_entry_fails_model_only(
    tmp_path: Path, model_entry: object, message: str
) -> None:
    _write_manifest_series(tmp_path, [1, 2])
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["model"] = model_entry
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        series = CheckpointSeries(tmp_path, builders=MODELS)
    assert series.epochs == [1, 2]
    assert "features.conv1.weight" in series.load(2)  # weights need no architecture
    with pytest.raises(CheckpointError, match=rf"manifest\.json.*{message}"):
        series.model(1)
    # With the architecture given, the manifest's model entry does not matter.
    template = build_model("zf", widths=[2, 2, 2, 2, 2], hidden=4, num_classes=3)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert CheckpointSeries(tmp_path, model=template).model(2) is not None
    # The warning (when the entry's shape is wrong) points at this file, not at ipydeepvis.
    assert all(w.filename == __file__ for w in record), [w.filename for w in record]


def test_symlinks_leaving_a_manifest_series_are_refused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _write_manifest_series(run, [1, 2, 3])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "epoch_002.safetensors").rename(elsewhere / "epoch_002.safetensors")
    (run / "epoch_002.safetensors").symlink_to(elsewhere / "epoch_002.safetensors")
    (run / "epoch_003.safetensors").rename(run / "real_3.safetensors")
    (run / "epoch_003.safetensors").symlink_to("real_3.safetensors")  # inside: fine
    with pytest.warns(UserWarning, match=r"skipping '.*epoch_002\.safetensors': it is a "
                      r"link to '.*elsewhere.*' outside the series folder"):  # fmt: skip
        series = CheckpointSeries(run, builders=MODELS)
    assert series.epochs == [1, 3]
    assert series.model(3) is not None
    # A link swapped in after the series was opened is refused when it is read.
    (run / "epoch_001.safetensors").rename(elsewhere / "epoch_001.safetensors")
    (run / "epoch_001.safetensors").symlink_to(elsewhere / "epoch_001.safetensors")
    with pytest.raises(CheckpointError, match=r"epoch 1: '.*epoch_001\.safetensors' is a link "
                       r"to '.*elsewhere.*' outside the series folder"):  # fmt: skip
        series.load(1)


class _System:
    """Unpickling this calls ``os.system``: the classic dangerous global (``posix.system``)."""

    def __init__(self, marker: Path) -> None:
        self.command = f"touch {marker}"

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (os.system, (self.command,))


TORCH_ADVICE = ("weights_only=False", "`weights_only` set to `False`", "Re-running",
                "arbitrary code execution", "Please file an issue")  # fmt: skip


@pytest.mark.parametrize("layout", ["zip", "zip, whole model first", "legacy"])
def test_refused_pickle_names_the_dangerous_global(tmp_path: Path, layout: str) -> None:
    marker = tmp_path / "pwned"
    obj: dict[str, object] = {"state_dict": _states(1)[0], "hook": _System(marker)}
    if layout == "zip, whole model first":
        obj = {"model": nn.Sequential(nn.Linear(2, 2)), **obj}
    torch.save(obj, tmp_path / "epoch_1.pt",
               _use_new_zipfile_serialization=layout != "legacy")  # fmt: skip
    torch.save(_states(2)[1], tmp_path / "epoch_2.pt")
    series = CheckpointSeries(tmp_path, model=Tiny())
    with pytest.raises(CheckpointError, match=r"refused to load '.*epoch_1\.pt'") as info:
        series.load(1)
    text = str(info.value)
    assert "'posix.system'" in text.split("]")[0] or "posix.system" in text[:200], text
    for advice in TORCH_ADVICE:
        assert advice not in text, advice
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not marker.exists()
    _assert_epoch_weights(series.load(2), 2)


def test_refused_raw_pickle_repeats_no_torch_advice(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "epoch_1.pth").write_bytes(pickle.dumps({"w": _System(marker)}, protocol=4))
    series = CheckpointSeries(tmp_path, model=Tiny())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch warns about the pickle protocol
        with pytest.raises(CheckpointError, match=r"refused to load '.*epoch_1\.pth'") as info:
            series.load(1)
    for advice in TORCH_ADVICE:
        assert advice not in str(info.value), advice
    assert not marker.exists()


def test_the_pickle_walker_is_gone() -> None:
    import ipydeepvis.core.checkpoints as mod

    assert not hasattr(mod, "_pickled_globals")
    source = Path(mod.__file__).read_text()
    assert "pickletools" not in source and "get_unsafe_globals_in_checkpoint" in source


# -- core does not reach the embedded default: builders are passed in -----------------------


def test_a_manifest_series_needs_builders_or_a_model(tmp_path: Path) -> None:
    _write_manifest_series(tmp_path, [1])
    series = CheckpointSeries(tmp_path)
    assert "features.conv1.weight" in series.load(1)
    with pytest.raises(CheckpointError, match=r"names its model 'zf' but no builders were "
                       r"given.*builders=\{'zf': \.\.\.\}.*or model="):  # fmt: skip
        series.model(1)
    built: list[dict[str, object]] = []

    def zf(**config: object) -> nn.Module:
        built.append(config)
        return build_model("zf", **config)  # type: ignore[arg-type]

    series = CheckpointSeries(tmp_path, builders={"zf": zf})
    assert series.model(1) is not None
    assert built[-1]["widths"] == [2, 2, 2, 2, 2]
    with pytest.raises(CheckpointError, match=r"builders=\['zf'\] is not valid"):
        CheckpointSeries(tmp_path, builders=["zf"])  # type: ignore[arg-type]


def test_a_builder_returning_no_module_is_named(tmp_path: Path) -> None:
    _write_manifest_series(tmp_path, [1])
    series = CheckpointSeries(tmp_path, builders={"zf": lambda **config: "a net"})
    with pytest.raises(CheckpointError, match=r"the builder of 'zf' .* returned str, not a "
                       r"module"):  # fmt: skip
        series.model(1)


def test_the_public_series_defaults_to_the_embedded_registry(tmp_path: Path) -> None:
    import ipydeepvis as dv
    from ipydeepvis.core import checkpoints as core_checkpoints

    last = _write_manifest_series(tmp_path, [1, 3])
    series = dv.CheckpointSeries(tmp_path)
    assert isinstance(series, core_checkpoints.CheckpointSeries)
    model = series.model(3)
    for k, v in last.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    # Warnings point at the caller, through the subclass's frames too.
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["metrics"] = [{"epoch": "one"}]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.warns(UserWarning, match=r"dropped metrics \(1\): row 0: its 'epoch' entry "
                      r"'one' is not one epoch number") as record:  # fmt: skip
        dv.CheckpointSeries(tmp_path)
    assert [w.filename for w in record] == [__file__]
