"""``crystensor train --backbone``: the options, their errors, and a frozen run from the CLI."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from crystensor.checkpoint import load_checkpoint
from crystensor.cli.app import app
from tests.train.conftest import build_store

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _train_one_epoch(store, out, backbone, *options):
    """``crystensor -q train``: one epoch of the small SEConv on ``backbone``, 8 graphs a step."""
    return _run(
        "-q", "train", "-d", store, "-o", out, "--arch", "seconv", "--preset", "small",
        "--backbone", backbone, "--epochs", "1", "--batch-size", "8", *options,
    )  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("stores") / "diel.h5", "dielectric", 24)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--backbone", "mace"], "--backbone must be one of"),
        (["--backbone-mode", "full"], "--backbone-mode applies to a pretrained --backbone"),
        (["--backbone", "toy", "--backbone-mode", "melted"], "--backbone-mode must be one of"),
        (["--pooling", "sum"], "pooling must be one of mean, max, density"),
    ],
)
def test_bad_backbone_options(store, tmp_path, toy_backbone, options, message):
    result = _run("train", "-d", store, "-o", tmp_path / "run", *options)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "run").exists()


def test_frozen_backbone_run_from_the_cli(store, tmp_path, toy_backbone):
    result = _train_one_epoch(store, tmp_path / "run", toy_backbone, "--pooling", "density")
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    config = ckpt.model_config
    assert (config.backbone, config.backbone_mode, config.pooling) == ("toy", "frozen", "density")
    assert config.num_interactions == 1  # the default with a pretrained backbone
    assert ckpt.featurization["backbone"]["name"] == "toy"


def test_predict_isolates_elements_the_backbone_does_not_know(store, tmp_path):
    """A structure with an element the potential refuses fails alone; the others are
    predicted (exit 2, one line naming the structure and the element)."""
    from pymatgen.core import Lattice, Structure

    from crystensor.errors import InputError
    from crystensor.models.backbones import register_backbone
    from tests.models.toy_potential import ToyPotential

    class NoFluorine(ToyPotential):
        def check_species(self, atomic_numbers):
            if 9 in set(int(z) for z in atomic_numbers):
                raise InputError("backbone toy-noF was not trained on F")

    register_backbone("toy-noF", NoFluorine, lambda: {"name": "toy-noF", "sha256": "2" * 64})
    run = tmp_path / "run"
    result = _train_one_epoch(store, run, "toy-noF")
    assert result.exit_code == 0, result.output
    for name, pair in (("NaCl", ("Na", "Cl")), ("LiF", ("Li", "F"))):
        s = Structure(Lattice.cubic(2.9), list(pair), [[0, 0, 0], [0.5, 0.5, 0.5]])
        s.to(filename=str(tmp_path / f"{name}.POSCAR"), fmt="poscar")
    result = _run(
        "predict",
        tmp_path / "NaCl.POSCAR",
        tmp_path / "LiF.POSCAR",
        "--model",
        run / "best.pt",
        "--format",
        "csv",
    )
    assert result.exit_code == 2, result.output
    assert "LiF.POSCAR: backbone toy-noF was not trained on F" in result.output
    rows = [line for line in result.output.splitlines() if line.startswith(str(tmp_path))]
    assert any(line.startswith(f"{tmp_path / 'NaCl.POSCAR'},NaCl,") for line in rows), rows


def test_pretrain_checkpoint_brings_its_own_backbone(store, tmp_path):
    ckpt = tmp_path / "some.pt"
    ckpt.write_bytes(b"")
    result = _run(
        "train", "-d", store, "-o", tmp_path / "run", "--pretrain", ckpt, "--backbone", "toy"
    )
    assert result.exit_code == 2, result.output
    assert "drop --backbone" in " ".join(result.output.split())


def test_sevennet_l3i5_frozen_run_and_prediction(tmp_path):
    """The real SevenNet-l3i5 potential from the CLI: its features are cached beside the store
    under its own name, the checkpoint records its identity, and predict uses it."""
    pytest.importorskip("sevenn")
    from pymatgen.core import Lattice, Structure

    from crystensor.models.backbones import backbone_identity

    store = build_store(tmp_path / "diel5.h5", "dielectric", 16, cutoff=5.0)
    run = tmp_path / "run"
    result = _train_one_epoch(store, run, "sevennet-l3i5")
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt.model_config.backbone == "sevennet-l3i5"
    assert ckpt.featurization["backbone"] == backbone_identity("sevennet-l3i5")
    assert store.with_name(store.name + ".sevennet-l3i5.features.h5").is_file()
    rocksalt = Structure(Lattice.cubic(5.6), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    rocksalt.to(filename=str(tmp_path / "NaCl.POSCAR"), fmt="poscar")
    result = _run("predict", tmp_path / "NaCl.POSCAR", "--model", run / "best.pt", "-f", "json")
    assert result.exit_code == 0, result.output
    assert "NaCl" in result.output and "eigenvalues" in result.output
