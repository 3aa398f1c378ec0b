"""predict -m sevennet-0: the potential's own elastic tensor through predict's pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from crystensor.cli.app import app
from crystensor.physics import elastic_tensor
from crystensor.prediction import load_predictor
from crystensor.tensors.symmetry import point_group_of, project_to_point_group
from tests.helpers import silicon


def test_the_potential_as_a_model(tmp_path):
    predictor = load_predictor("elastic", "sevennet-0")
    polonium = Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]])
    si, po = predictor.predict_results([silicon(), polonium])
    expected = project_to_point_group(elastic_tensor(silicon()), point_group_of(silicon()))
    np.testing.assert_allclose(si.tensor, expected, atol=1e-3)
    assert si.crystal_system == "cubic" and si.properties["born_stable"]
    assert 50 < si.properties["k_vrh"] < 150  # silicon: about 98 GPa (DFT)
    assert not po.ok and "Po" in po.error
    with pytest.raises(Exception, match="predicts 'elastic'"):
        load_predictor("dielectric", "sevennet-0")


def test_cli_model_name(tmp_path):
    poscar = tmp_path / "Si.vasp"
    silicon().to(filename=str(poscar), fmt="poscar")
    runner = CliRunner()
    result = runner.invoke(app, ["predict", str(poscar), "-m", "sevennet-0", "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == "sevennet-0 (clamped ions)"
    assert np.array(data["results"][0]["voigt"]).shape == (6, 6)
    info = runner.invoke(app, ["predict", "-m", "sevennet-0", "--model-info"])
    assert info.exit_code == 0 and "universal potential" in info.stdout
