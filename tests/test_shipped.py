"""The models shipped in crystensor/pretrained: present, small, documented, and sensible.

Every check runs on each installed model (``crystensor.pretrained.available()``); the last one
compares the shipped elastic model with the DFT tensors of the example structures when
``../shared/data`` is there.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crystensor import pretrained
from crystensor.checkpoint import load_checkpoint
from crystensor.cli.app import app
from crystensor.prediction import load_predictor

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "structures"
DATA = Path(os.environ.get("CRYSTENSOR_SHARED_DATA", REPO.parent / "shared" / "data"))
SHIPPED = pretrained.available()
CENTROSYMMETRIC = ["Si-mp-149", "NaCl-mp-22862", "ZrO2-mp-2858", "PI2-mp-29443"]


def test_every_target_has_a_model_card_and_all_fit_in_30_mb():
    assert SHIPPED, "no shipped model installed"
    for target, path in SHIPPED.items():
        assert (path.parent / f"{target}.md").is_file(), target
    assert sum(p.stat().st_size for p in pretrained.PRETRAINED_DIR.iterdir()) < 30e6


@pytest.mark.parametrize("target", sorted(SHIPPED))
def test_the_card_is_the_checkpoints_own(target):
    checkpoint = load_checkpoint(SHIPPED[target])
    assert checkpoint.target == target
    assert set(checkpoint.training) <= {"train_config", "epoch", "history"}  # no optimizer
    card = pretrained.model_card(target)
    test = checkpoint.metrics["test"]
    assert card.startswith(f"# Shipped model: {target}")
    assert f"**MAE (mean of the Voigt components):** {test['mae']:.4g}" in card
    split = {k: len(v) for k, v in checkpoint.split.items()}
    assert f"train {split['train']}, validation {split['val']}, test {split['test']}" in card
    assert checkpoint.arch in card


@pytest.mark.parametrize("target", sorted(SHIPPED))
def test_model_info_and_the_examples_through_the_cli(target):
    runner = CliRunner()
    info = runner.invoke(app, ["predict", "--model-info", "-t", target, "-f", "json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["card"] == pretrained.model_card(target)
    result = runner.invoke(app, ["predict", str(EXAMPLES), "-t", target, "-f", "json"])
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)
    assert len(predictions["results"]) == len(list(EXAMPLES.glob("*.POSCAR")))
    assert predictions["errors"] == []
    # a caveat of the model (the piezoelectric sign) travels with the JSON, not only on stderr
    caveat = load_checkpoint(SHIPPED[target]).meta.get("caveat")
    assert predictions["model_caveat"] == caveat
    if target == "piezoelectric":
        assert "sign" in caveat


@pytest.mark.parametrize("target", sorted(SHIPPED))
def test_predictions_of_the_examples_are_physical(target):
    predictor = load_predictor(target)
    results = predictor.predict_results(sorted(EXAMPLES.glob("*.POSCAR")))
    assert all(r.ok for r in results)
    for r in results:
        name = Path(r.name).stem
        tensor = r.tensor
        assert np.isfinite(tensor).all()
        if target == "piezoelectric" and name in CENTROSYMMETRIC:
            assert not tensor.any(), name  # inversion forbids every component
        if target.startswith("dielectric"):
            assert np.linalg.eigvalsh(tensor).min() > 1.0, name  # eps > 1 in every direction
        if target == "elastic" and name != "PI2-mp-29443":
            # positive definite 6x6: mechanically stable, as every relaxed DFT structure here
            assert np.linalg.eigvalsh(r.voigt).min() > 0, name


def _matminer_elastic(material_id: str) -> np.ndarray | None:
    import pandas as pd

    path = DATA / "matminer-2018" / "elastic_tensor.csv.gz"
    if not path.is_file():
        return None
    with gzip.open(path, "rt") as fh:
        frame = pd.read_csv(fh, skiprows=1)
    row = frame[frame["material_id"] == material_id]
    return np.array(json.loads(row["elastic_tensor_original"].iloc[0])) if len(row) else None


@pytest.mark.skipif("elastic" not in SHIPPED, reason="no shipped elastic model")
def test_shipped_elastic_model_is_near_dft_for_the_examples():
    """Relative Frobenius error against the DFT tensors of four examples: a check against a
    broken model, not an accuracy claim (those are in the card). A wrong frame, wrong units or
    lost weights give errors near 1 or above. The single model shipped first was at 0.04-0.19
    (mean 0.14) on these, all in its training split. The ensemble shipped now, trained on the
    family split with bulk and shear moduli labels, has Si in its test split and scores
    0.12-0.21 (mean 0.17)."""
    names = ["Si-mp-149", "NaCl-mp-22862", "ZnO-mp-2133", "ZrO2-mp-2858"]
    dft = {name: _matminer_elastic(name.split("-", 1)[1]) for name in names}
    if any(value is None for value in dft.values()):
        pytest.skip("../shared/data/matminer-2018 not available")
    results = load_predictor("elastic").predict_results([EXAMPLES / f"{n}.POSCAR" for n in names])
    errors = {
        name: np.linalg.norm(r.voigt - dft[name]) / np.linalg.norm(dft[name])
        for name, r in zip(names, results, strict=True)
    }
    assert max(errors.values()) < 0.35, errors
    assert np.mean(list(errors.values())) < 0.25, errors


def test_shipped_models_flag_the_cases_of_issue_14():
    """The failing cases built in code, on the shipped models: each gets its warning."""
    from pymatgen.core import Lattice, Structure

    from crystensor.tensors.physical import make_physical

    elastic = load_predictor("elastic")
    h2 = Structure(Lattice.cubic(20), ["H", "H"], [[0, 0, 0], [0.74 / 20, 0, 0]])
    argon = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.26), ["Ar"], [[0, 0, 0]])
    c = 3.12 + 20.0
    layer = Structure(
        Lattice.hexagonal(3.19, c),
        ["Mo", "S", "S"],
        [[1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5 + 1.56 / c], [2 / 3, 1 / 3, 0.5 - 1.56 / c]],
    )
    cu = Structure(Lattice.cubic(3.6), ["Cu", "Cu"], [[0, 0, 0], [0.03 / 3.6, 0, 0]])
    pi2 = Path(__file__).resolve().parents[1] / "examples" / "structures" / "PI2-mp-29443.POSCAR"
    results = elastic.predict_results([h2, argon, layer, cu, pi2])
    codes = [{w["code"] for w in r.warnings} for r in results]
    assert {"vacuum-gap", "far-from-training"} <= codes[0]
    assert "unseen-element" in codes[1]
    assert "vacuum-gap" in codes[2]
    assert not results[3].ok and "overlapping" in results[3].error
    assert "not-physical" in codes[4] and results[4].adjustment["smallest_before"] < 0
    for r in results:
        if r.ok:  # every reported tensor is stable: nothing left below the floor
            _, adjustment = make_physical(r.tensor, r.kind)
            assert not adjustment.changed and r.properties["born_stable"]
            assert r.properties["k_vrh"] > 0


def test_shipped_checkpoints_carry_no_path_of_the_training_machine():
    for target, path in pretrained.available().items():
        text = json.dumps(load_checkpoint(path).meta, default=str)
        absolute = [w for w in text.replace(",", " ").split() if w.strip('"[').startswith("/")]
        assert absolute == [], (target, absolute)
        assert load_checkpoint(path).meta["command"][0] == "crystensor"
