"""``crystensor train`` and ``crystensor finetune`` through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from crystensor.checkpoint import load_checkpoint
from crystensor.cli.app import app
from tests.train.conftest import MANY_SPECIES, build_store

pytestmark = pytest.mark.slow

runner = CliRunner()
FAST = ["--preset", "small", "--batch-size", "8", "--lr", "0.005"]


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-stores")
    return {t: build_store(root / f"{t}.h5", t, 40) for t in ("elastic", "dielectric", "band-gap")}


def test_train_pretrain_then_finetune(stores, tmp_path):
    out = tmp_path / "run"
    done = _run(
        "train", "-d", stores["elastic"], "-o", out, "--arch", "seconv", *FAST,
        "--epochs", "2", "--pretrain", "band-gap", "--pretrain-data", stores["band-gap"],
        "--pretrain-epochs", "1", "--channels", "6", "-R", "1", "--pooling", "max",
        "--loss", "cartesian", "--loss-function", "huber", "--schedule", "plateau",
        "--seed", "7",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "pretrain epoch 1/1" in done.output and "train epoch 2/2" in done.output
    assert "EwT25" in done.output and str(out / "best.pt") in done.output
    best = load_checkpoint(out / "best.pt")
    assert best.config["channels"] == 6 and best.config["num_interactions"] == 1
    assert best.config["pooling"] == "max" and best.config["cutoff"] == 4.0
    assert best.training["train_config"]["loss"] == "cartesian"
    assert best.training["train_config"]["loss_function"] == "huber"
    assert json.loads((out / "run.json").read_text())["stages"][0]["name"] == "pretrain"

    tuned = tmp_path / "tuned"
    done = _run(
        "finetune", out / "best.pt", "-d", stores["dielectric"], "-o", tuned,
        "--freeze", "embedding", "--epochs", "1", "--batch-size", "8", "--lr", "0.004",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    last = load_checkpoint(tuned / "last.pt")
    assert last.target == "dielectric" and last.meta["parent"] == str(out / "best.pt")
    lrs = [g["initial_lr"] for g in last.training["optimizer"]["param_groups"]]
    assert lrs[0] == pytest.approx(lrs[1] / 10)  # --backbone-lr defaults to --lr / 10


def test_resume_continues_and_refuses_new_settings(stores, tmp_path):
    out = tmp_path / "run"
    assert (
        _run("train", "-d", stores["dielectric"], "-o", out, *FAST, "--epochs", "1").exit_code == 0
    )
    done = _run("train", "--resume", out, "--epochs", "5")
    assert done.exit_code == 2 and "drop --epochs" in done.output
    done = _run("train", "--resume", out)
    assert done.exit_code == 0, done.output
    done = _run("train", "-d", stores["dielectric"], "-o", out, *FAST)
    assert done.exit_code == 2 and "already holds a run" in done.output


def test_split_options_of_train_and_finetune(tmp_path):
    data = build_store(tmp_path / "d.h5", "dielectric", 48, species=MANY_SPECIES)
    out = tmp_path / "run"
    done = _run("train", "-d", data, "-o", out, *FAST, "--epochs", "1", "--split", "family",
                "--split-seed", "2")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert json.loads((out / "run.json").read_text())["stages"][0]["split"] == {
        "method": "family",
        "seed": 2,
    }
    assert load_checkpoint(out / "best.pt").meta["split"]["method"] == "family"
    done = _run("train", "--resume", out, "--split", "random")
    assert done.exit_code == 2 and "drop --split" in done.output
    done = _run("train", "--resume", out, "--split-seed", "0")
    assert done.exit_code == 2 and "drop --split-seed" in done.output

    tuned = tmp_path / "tuned"
    done = _run("finetune", out / "best.pt", "-d", data, "-o", tuned, "--epochs", "1",
                "--batch-size", "8", "--split", "random")  # fmt: skip
    assert done.exit_code == 0, done.output
    split = load_checkpoint(tuned / "best.pt").meta["split"]
    assert split == {"method": "random", "seed": 0, "fractions": [0.7, 0.15, 0.15],
                     "source": "recomputed"}  # fmt: skip


def test_finetune_backbone_mode(stores, toy_backbone, tmp_path):
    from crystensor.checkpoint import Checkpoint, save_checkpoint
    from crystensor.models import build_model, preset

    data, frozen, full = stores["dielectric"], tmp_path / "frozen", tmp_path / "full"
    done = _run("train", "-d", data, "-o", frozen, "--arch", "seconv", *FAST, "--epochs", "1",
                "--backbone", "toy")  # fmt: skip
    assert done.exit_code == 0, done.output
    done = _run("finetune", frozen / "best.pt", "-d", data, "-o", full, "--epochs", "1",
                "--batch-size", "8", "--lr", "0.004", "--backbone-mode", "full")  # fmt: skip
    assert done.exit_code == 0, done.output
    last = load_checkpoint(full / "last.pt")
    assert last.config["backbone_mode"] == "full"
    assert any(k.startswith("backbone.embedding.pretrained.") for k in last.state_dict)
    assert json.loads((full / "run.json").read_text())["stages"][0]["backbone_mode"] == "full"
    # --backbone-lr (default --lr / 10) is the potential's learning rate too
    lrs = {g["name"]: g["initial_lr"] for g in last.training["optimizer"]["param_groups"]}
    assert lrs == pytest.approx({"potential": 4e-4, "backbone": 4e-4, "head": 4e-3})

    native = build_model(preset("seconv", "small", num_node_features=9, target="dielectric"))
    save_checkpoint(Checkpoint.from_model(native, {"cutoff": 4.0}), tmp_path / "native.pt")
    for checkpoint, mode, message in [
        (full / "best.pt", "frozen", "frozen would use the installed file's weights"),
        (tmp_path / "native.pt", "full", "applies to a checkpoint trained with a pretrained"),
    ]:
        done = _run("finetune", checkpoint, "-d", data, "-o", tmp_path / "r",
                    "--backbone-mode", mode)  # fmt: skip
        assert done.exit_code == 2, done.output
        assert message in done.output and len(done.output.strip().splitlines()) == 1
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arch", "mace"], "--arch must be one of segnn, seconv, setransformer"),
        (["--preset", "huge"], "--preset must be one of small, default"),
        (["--schedule", "linear"], "--schedule must be one of cosine, plateau, constant"),
        (["--loss", "l1"], "--loss must be one of irreps, cartesian"),
        (["--loss-function", "l2"], "--loss-function must be one of mse, huber, l1"),
        (["--lmax", "5"], "need 0 <= lmax <= lmax_out"),
        (["--pretrain", "bandgap"], "--pretrain band-gap needs --pretrain-data"),
        (["--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N"),
        (["--pretrain", "band-gap"], "--pretrain band-gap needs --pretrain-data"),
        (["--split", "element"], "--split must be one of store, random, family"),
        (["--split-seed", "1"], "--split-seed needs --split random or family"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(stores, tmp_path, args, message):
    done = _run("train", "-d", stores["dielectric"], "-o", tmp_path / "r", *FAST, *args)
    assert done.exit_code == 2, done.output
    assert message in done.output and "Traceback" not in done.output
    assert not (tmp_path / "r").exists()


def test_missing_inputs(tmp_path):
    done = _run("train", "-d", tmp_path / "none.h5", "-o", tmp_path / "r")
    assert done.exit_code == 2 and "does not exist" in done.output
    done = _run("train", "-o", tmp_path / "r")
    assert done.exit_code == 2 and "pass --data" in done.output
    done = _run("finetune", tmp_path / "none.pt", "-d", tmp_path / "x.h5", "-o", tmp_path / "r")
    assert done.exit_code == 2 and "does not exist" in done.output
    done = _run("train", "--resume", tmp_path)
    assert done.exit_code == 2 and "holds no run" in done.output


def test_train_an_ensemble(stores, tmp_path):
    import torch

    from crystensor.checkpoint import load_checkpoint

    out = tmp_path / "ens"
    args = ["train", "-d", stores["dielectric"], "-o", out, *FAST]
    result = _run(*args, "--epochs", "1", "--seed", "3", "--ensemble", "2")
    assert result.exit_code == 0, result.output
    ensemble = load_checkpoint(out / "ensemble.pt")
    assert ensemble.n_members == 2
    seeds = [load_checkpoint(out / f"seed-{s}" / "best.pt") for s in (3, 4)]
    assert [c.training["train_config"]["seed"] for c in seeds] == [3, 4]
    for member, single in zip(ensemble.members, seeds, strict=True):
        assert all(torch.equal(member[k], single.state_dict[k]) for k in member)
    refused = _run("train", "--resume", out / "seed-3", "--ensemble", "2")
    assert refused.exit_code == 2 and "--ensemble" in refused.output
