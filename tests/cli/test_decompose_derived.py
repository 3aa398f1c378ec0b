"""``crystensor decompose`` derived properties (issue 14, part 3): ``--elastic`` for d = e S,
sound velocities with ``--structure``, and the refractive index only for the electronic target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.elasticity import ElasticTensor
from pymatgen.core import Structure
from typer.testing import CliRunner

from crystensor.cli.app import app
from crystensor.tensors.properties import piezoelectric_strain_constants
from crystensor.tensors.voigt import from_voigt

REPO = Path(__file__).resolve().parents[2]
ZNO_TENSOR = REPO / "examples/tensors/ZnO-mp-2133-elastic.json"
ZNO_POSCAR = REPO / "examples/structures/ZnO-mp-2133.POSCAR"
ZNO_VOIGT = np.array(json.loads(ZNO_TENSOR.read_text())["voigt"])

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output) < 400


@pytest.fixture
def piezo_file(tmp_path) -> Path:
    e = np.zeros((3, 6))
    e[2, 0] = e[2, 1] = -0.57
    e[2, 2] = 1.32
    e[0, 4] = e[1, 3] = -0.48
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"kind": "piezoelectric", "voigt": e.tolist()}))
    return path


def test_elastic_option_adds_strain_constants(piezo_file):
    data = run_json("decompose", str(piezo_file), "--elastic", str(ZNO_TENSOR))
    e = np.array(json.loads(piezo_file.read_text())["voigt"])
    expected = piezoelectric_strain_constants(e, ZNO_VOIGT)
    props = data["properties"]
    np.testing.assert_allclose(props["d_voigt"], expected, rtol=1e-12)
    assert props["units"]["d_voigt"] == "pC/N" and props["dij_max"] > 0
    assert data["elastic_source"] == "mp-2133"
    # the tables show the new rows
    result = run("decompose", str(piezo_file), "--elastic", str(ZNO_TENSOR))
    assert result.exit_code == 0, result.output
    for text in ("dij_max", "d_voigt", "pC/N", "d = e S with the elastic tensor of mp-2133"):
        assert text in result.stdout


def test_elastic_option_reads_a_prediction_file(piezo_file, tmp_path):
    """The JSON that ``crystensor predict -t elastic`` writes (``Prediction.as_dict``)."""
    prediction = {
        "source": "ZnO.vasp",
        "formula": "ZnO",
        "target": "elastic",
        "kind": "elastic",
        "units": "GPa",
        "tensor": from_voigt(ZNO_VOIGT).tolist(),
        "voigt": ZNO_VOIGT.tolist(),
    }
    path = tmp_path / "pred.json"
    path.write_text(json.dumps(prediction))
    a = run_json("decompose", str(piezo_file), "--elastic", str(path))
    b = run_json("decompose", str(piezo_file), "--elastic", str(ZNO_TENSOR))
    np.testing.assert_allclose(a["properties"]["d_voigt"], b["properties"]["d_voigt"], rtol=1e-12)
    assert a["elastic_source"] == "ZnO.vasp"


def test_elastic_option_with_structure_projects_both(piezo_file):
    data = run_json(
        "decompose", str(piezo_file), "--elastic", str(ZNO_TENSOR), "--structure", str(ZNO_POSCAR)
    )
    projected = data["symmetry"]["projected_properties"]
    d = np.array(projected["d_voigt"])
    assert d[2, 0] == pytest.approx(d[2, 1], abs=1e-9) and d[0, 0] == 0.0


def test_elastic_option_errors(piezo_file, tmp_path):
    eps = tmp_path / "eps.json"
    eps.write_text("[[5, 0, 0], [0, 5, 0], [0, 0, 6]]")
    result = run("decompose", str(piezo_file), "--elastic", str(eps))
    assert_one_line_error(result, "is a dielectric tensor, not an elastic stiffness")

    result = run("decompose", str(piezo_file), "--elastic", str(tmp_path / "nope.json"))
    assert_one_line_error(result, "--elastic: tensor file")

    broken = tmp_path / "broken.json"
    broken.write_text("[[1, 2], ")
    result = run("decompose", str(piezo_file), "--elastic", str(broken))
    assert_one_line_error(result, "--elastic: broken.json is not valid JSON")

    several = tmp_path / "several.json"
    entry = {"kind": "elastic", "voigt": ZNO_VOIGT.tolist()}
    several.write_text(json.dumps({"results": [entry, entry]}))
    result = run("decompose", str(piezo_file), "--elastic", str(several))
    assert_one_line_error(result, "holds 2 tensors")

    result = run("decompose", str(ZNO_TENSOR), "--elastic", str(ZNO_TENSOR))
    assert_one_line_error(result, "--elastic is for piezoelectric tensors")
    result = run("decompose", str(eps), "--elastic", str(ZNO_TENSOR))
    assert_one_line_error(result, "is a dielectric tensor; drop --elastic")


def test_structure_adds_sound_velocities_and_system_conditions():
    data = run_json("decompose", str(ZNO_TENSOR), "--structure", str(ZNO_POSCAR))
    props = data["properties"]
    reference = ElasticTensor.from_voigt(ZNO_VOIGT)
    structure = Structure.from_file(ZNO_POSCAR)
    assert props["longitudinal_velocity"] == pytest.approx(reference.long_v(structure), rel=1e-12)
    assert props["transverse_velocity"] == pytest.approx(reference.trans_v(structure), rel=1e-12)
    assert props["debye_temperature"] == pytest.approx(
        reference.debye_temperature(structure), rel=1e-12
    )
    assert props["born_criteria_system"] == "hexagonal"
    assert set(props["born_criteria"]) == {
        "C11 > |C12|",
        "2 C13^2 < C33 (C11 + C12)",
        "C44 > 0",
        "C66 > 0",
    }
    assert len(props["youngs_modulus_abc"]) == 3 and "youngs_modulus_xyz" not in props
    result = run("decompose", str(ZNO_TENSOR), "--structure", str(ZNO_POSCAR))
    for text in ("debye_temperature", "C11 > |C12|", "1/TPa", "m/s"):
        assert text in result.stdout


def test_without_structure_no_velocities():
    props = run_json("decompose", str(ZNO_TENSOR))["properties"]
    assert "debye_temperature" not in props and "youngs_modulus_xyz" in props
    assert props["born_criteria_system"] == "general (leading principal minors)"


@pytest.mark.parametrize(
    ("target", "has_index"),
    [("dielectric", False), ("dielectric-electronic", True), (None, True)],
)
def test_refractive_index_follows_the_file_target(tmp_path, target, has_index):
    obj = {"kind": "dielectric", "tensor": np.diag([4.0, 4.0, 9.0]).tolist()}
    if target is not None:
        obj = {"target": target, "tensor": obj["tensor"]}
    path = tmp_path / "eps.json"
    path.write_text(json.dumps(obj))
    props = run_json("decompose", str(path))["properties"]
    assert ("refractive_index" in props) == has_index
    result = run("decompose", str(path))
    assert ("refractive_index" in result.stdout) == has_index


def test_target_of_another_kind_is_an_input_error(tmp_path):
    path = tmp_path / "eps.json"
    path.write_text(
        json.dumps({"kind": "dielectric", "target": "elastic", "tensor": np.eye(3).tolist()})
    )
    assert_one_line_error(run("decompose", str(path)), "holds elastic tensors")


def test_help_mentions_elastic():
    result = run("decompose", "--help")
    assert result.exit_code == 0 and "--elastic" in result.output
