"""``ipydeepvis index``: one process, killed and resumed, and two torchrun ranks, all equal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ipydeepvis.cli import main
from ipydeepvis.core.index import TopKIndex
from ipydeepvis.core.indexing import build_index
from tests import topk_fixtures

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["index", "--model", "tests.topk_fixtures:tiny_model", "--data",
        "tests.topk_fixtures:tiny_data", "--layers", "1", "3", "5", "--k", "5",
        "--batch-size", "16", "--quiet"]


def run(args: list[str], *, torchrun: bool = False, die_at: int | None = None
        ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("IPYDEEPVIS_DIE_AT", None)
    if die_at is not None:
        env["IPYDEEPVIS_DIE_AT"] = str(die_at)
    if torchrun:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        command = [torchrun or "torchrun", "--standalone", "--nproc-per-node", "2", "-m",
                   "ipydeepvis", *args]
    else:
        command = [sys.executable, "-m", "ipydeepvis", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def reference() -> TopKIndex:
    return build_index(topk_fixtures.tiny_model(), topk_fixtures.tiny_data(), ["1", "3", "5"],
                       5, batch_size=16)


def test_one_process_writes_the_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert main([*ARGS, "--out", str(tmp_path / "ix"), "--epoch", "3"]) == 0
    assert "wrote the top-5 index of 203 images (1, 3, 5)" in capsys.readouterr().out
    index = TopKIndex.load(tmp_path / "ix")
    assert index.equal(reference()) and index.epoch == 3
    with pytest.raises(SystemExit) as exit_info:
        main([*ARGS, "--out", str(tmp_path / "ix")])
    assert exit_info.value.code == 2
    assert "already holds a top-k index; resume it" in capsys.readouterr().err


@pytest.mark.slow
def test_weights_file_and_image_folder(tmp_path: Path) -> None:
    from PIL import Image
    from safetensors.torch import save_file

    other = topk_fixtures.tiny_model()
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-1)
    save_file(other.state_dict(), str(tmp_path / "w.safetensors"))
    pixels = torch.randint(0, 256, (6, 14, 14, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    for i, img in enumerate(pixels):
        (tmp_path / "img" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.numpy()).save(tmp_path / "img" / f"c{i % 2}" / f"{i}.png")
    assert main(["index", "--model", "tests.topk_fixtures:tiny_model", "--weights",
                 str(tmp_path / "w.safetensors"), "--data", str(tmp_path / "img"),
                 "--transform", "tests.topk_fixtures:folder_transform", "--layers", "4",
                 "--k", "2", "--out", str(tmp_path / "ix"), "--quiet"]) == 0
    from torchvision.datasets import ImageFolder

    expected = build_index(other, ImageFolder(str(tmp_path / "img")), ["4"], 2,
                           preprocess=topk_fixtures.folder_transform())
    assert TopKIndex.load(tmp_path / "ix").equal(expected)


@pytest.mark.parametrize(("option", "message"), [
    (["--model", "nowhere:model"], "--model 'nowhere:model' cannot be found"),
    (["--model", "torch"], "--model 'torch' is not MODULE:FACTORY"),
    (["--model", "tests.topk_fixtures:LENGTH"], "gave a int, not a torch nn.Module"),
    (["--data", "no/such/folder"], "--data 'no/such/folder' is neither a folder"),
    (["--layers", "9"], "layer '9' is not a layer"),
    (["--weights", "missing.pt"], "--weights 'missing.pt' cannot be loaded"),
])
def test_bad_arguments_exit_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             option: list[str], message: str) -> None:
    args = list(ARGS)
    flag = args.index(option[0]) if option[0] in args else None
    if flag is not None:
        args[flag + 1:flag + 2] = option[1:]
        if option[0] == "--layers":
            del args[flag + 2:flag + 4]
    else:
        args += option
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--out", str(tmp_path / "ix")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_killed_then_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    out = ["--out", str(tmp_path), "--checkpoint-every", "2"]
    killed = run([*ARGS, *out], die_at=150)  # batch 10 of 16 images: killed like kill -9
    assert killed.returncode == 9, killed.stderr
    assert TopKIndex.load(tmp_path).seen == 128  # the checkpoint after batch 8
    resumed = run([*ARGS, *out, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert TopKIndex.load(tmp_path).equal(reference())


@pytest.mark.slow
def test_two_torchrun_ranks_equal_one_process(tmp_path: Path) -> None:
    two = run([*ARGS, "--out", str(tmp_path)], torchrun=True)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("wrote the top-5 index of 203 images") == 1  # rank 0 only
    assert TopKIndex.load(tmp_path).equal(reference())


@pytest.mark.slow
def test_two_ranks_killed_then_resumed_equal_uninterrupted(tmp_path: Path) -> None:
    out = ["--out", str(tmp_path), "--checkpoint-every", "2"]
    killed = run([*ARGS, *out], torchrun=True, die_at=150)  # batch 9 (144..159): rank 1's 5th
    assert killed.returncode != 0
    assert TopKIndex.load(tmp_path).seen == 128  # checkpoint after step 4: 4 x 2 ranks x 16
    resumed = run([*ARGS, *out, "--resume"], torchrun=True)
    assert resumed.returncode == 0, resumed.stderr
    assert TopKIndex.load(tmp_path).equal(reference())
