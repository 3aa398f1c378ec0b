"""``crystensor decompose`` through typer's CliRunner: outputs, numbers and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.elasticity import ElasticTensor
from typer.testing import CliRunner

from crystensor import __version__
from crystensor.cli.app import app
from crystensor.tensors import harmonic
from crystensor.tensors.voigt import from_voigt

REPO = Path(__file__).resolve().parents[2]
ZNO_TENSOR = REPO / "examples/tensors/ZnO-mp-2133-elastic.json"
ZNO_POSCAR = REPO / "examples/structures/ZnO-mp-2133.POSCAR"

runner = CliRunner()


def run(*args: str, input: str | None = None):
    return runner.invoke(app, list(args), input=input)


def run_json(*args: str, input: str | None = None):
    result = run(*args, "--json", input=input)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_version_and_help():
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.stdout
    result = run()
    assert "decompose" in result.output and "Usage" in result.output
    result = run("decompose", "--help")
    assert result.exit_code == 0 and "--structure" in result.output


def test_root_import_is_light():
    """``crystensor --help`` must not pay for numpy, torch or pymatgen at import."""
    code = (
        "import sys, crystensor.cli.app; "
        "print(sorted(m for m in ('numpy', 'torch', 'pymatgen', 'e3nn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_decompose_example_tables():
    result = run("decompose", str(ZNO_TENSOR))
    assert result.exit_code == 0, result.output
    for text in ("0e+0e+2e+2e+4e", "Irreducible parts", "Explicit decomposition", "k_vrh"):
        assert text in result.stdout


def test_decompose_json_numbers_agree_with_pymatgen():
    data = run_json("decompose", str(ZNO_TENSOR))
    voigt = np.array(json.loads(ZNO_TENSOR.read_text())["voigt"])
    assert data["kind"] == "elastic" and data["units"] == "GPa"
    assert data["reconstruction_error"]["irreps"] < 1e-12
    assert data["reconstruction_error"]["explicit"] < 1e-12
    np.testing.assert_allclose(data["voigt"], voigt, atol=1e-12)
    np.testing.assert_allclose(
        data["irreps_components"], harmonic.to_irreps(from_voigt(voigt), "elastic"), atol=1e-9
    )
    reference = ElasticTensor.from_voigt(voigt)
    props = data["properties"]
    assert props["k_vrh"] == pytest.approx(reference.k_vrh, rel=1e-9)
    assert props["g_vrh"] == pytest.approx(reference.g_vrh, rel=1e-9)
    assert sum(p["share"] for p in data["parts"]) == pytest.approx(1.0)


def test_decompose_with_structure_projects_onto_6mm():
    data = run_json("decompose", str(ZNO_TENSOR), "--structure", str(ZNO_POSCAR))
    sym = data["symmetry"]
    assert sym["point_group"] == "6mm" and sym["crystal_system"] == "hexagonal"
    assert sym["space_group_number"] == 186
    assert 0 < sym["violation"] < 0.05  # DFT noise: C66 != (C11 - C12) / 2 by a few GPa
    c = np.array(sym["projected_voigt"])
    assert c[0, 0] == pytest.approx(c[1, 1], abs=1e-9)
    assert c[5, 5] == pytest.approx((c[0, 0] - c[0, 1]) / 2, abs=1e-9)
    assert c[0, 3] == 0.0 and c[3, 5] == 0.0  # components that must vanish are exactly zero
    assert sym["independent_components"] == 5


def test_output_file_is_written_atomically(tmp_path):
    out = tmp_path / "sub" / "analysis.json"
    result = run("decompose", str(ZNO_TENSOR), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["kind"] == "elastic"
    assert [p.name for p in out.parent.iterdir()] == ["analysis.json"]


def test_input_layouts_agree(tmp_path):
    voigt = json.loads(ZNO_TENSOR.read_text())["voigt"]
    layouts = {
        "plain.json": voigt,
        "full.json": {"kind": "elastic", "tensor": from_voigt(np.array(voigt)).tolist()},
        "pymatgen.json": ElasticTensor.from_voigt(voigt).as_dict(),
        "pymatgen-voigt.json": ElasticTensor.from_voigt(voigt).as_dict(voigt=True),
        "record.json": {
            "id": "mp-2133",
            "target": "elastic",
            "value": from_voigt(np.array(voigt)).tolist(),
        },
    }
    reference = run_json("decompose", str(ZNO_TENSOR))["irreps_components"]
    for name, obj in layouts.items():
        path = tmp_path / name
        path.write_text(json.dumps(obj))
        data = run_json("decompose", str(path))
        np.testing.assert_allclose(data["irreps_components"], reference, atol=1e-9, err_msg=name)


def test_prediction_file_with_several_results(tmp_path):
    path = tmp_path / "pred.json"
    results = [
        {"source": "a.vasp", "kind": "dielectric", "tensor": np.diag([4.0, 4.0, 5.0]).tolist()},
        {"source": "b.vasp", "kind": "piezoelectric", "voigt": np.eye(3, 6).tolist()},
    ]
    path.write_text(json.dumps({"crystensor_version": __version__, "results": results}))
    data = run_json("decompose", str(path))
    assert [r["kind"] for r in data["results"]] == ["dielectric", "piezoelectric"]
    assert [r["label"] for r in data["results"]] == ["a.vasp", "b.vasp"]


def test_stdin_and_dielectric_properties():
    data = run_json("decompose", "-", input="[[4, 0, 0], [0, 4, 0], [0, 0, 9]]")
    assert data["kind"] == "dielectric"
    props = data["properties"]
    assert props["eigenvalues"] == pytest.approx([4, 4, 9])
    assert props["polycrystalline_average"] == pytest.approx(17 / 3)


def test_piezoelectric_centrosymmetric_projection_is_exactly_zero(tmp_path):
    poscar = tmp_path / "NaCl.vasp"
    poscar.write_text(
        "NaCl\n1.0\n0 2.82 2.82\n2.82 0 2.82\n2.82 2.82 0\nNa Cl\n1 1\ndirect\n0 0 0\n0.5 0.5 0.5\n"
    )
    path = tmp_path / "e.json"
    path.write_text(json.dumps(np.random.default_rng(0).normal(size=(3, 6)).tolist()))
    data = run_json("decompose", str(path), "--structure", str(poscar))
    assert data["symmetry"]["point_group"] == "m-3m"
    assert np.all(np.array(data["symmetry"]["projected_voigt"]) == 0.0)
    assert data["symmetry"]["independent_components"] == 0


def test_asymmetric_dielectric_is_reported_not_hidden(tmp_path):
    path = tmp_path / "eps.json"
    path.write_text(json.dumps([[5.0, 0.1, 0.0], [-0.1, 5.0, 0.0], [0.0, 0.0, 6.0]]))
    result = run("decompose", str(path))
    assert result.exit_code == 0
    assert "breaks the dielectric index symmetry" in result.output
    data = run_json("decompose", str(path))
    assert data["index_asymmetry"] == pytest.approx(np.sqrt(0.02) / np.sqrt(86.02))
    assert data["asymmetric_part"][0][1] == pytest.approx(0.1)
    assert data["voigt"][0][1] == 0.0  # the analysis is of the symmetric part


BAD_INPUTS = {
    "malformed": ("[[1, 2], [3, 4]", "not valid JSON"),
    "wrong shape": ("[[1, 2], [3, 4]]", "shape 2x2"),
    "nan": ("[[NaN, 0, 0], [0, 1, 0], [0, 0, 1]]", "finite"),
    "infinity": ("[[Infinity, 0, 0], [0, 1, 0], [0, 0, 1]]", "finite"),
    "non-numeric": ('[["abc", 0, 0], [0, 1, 0], [0, 0, 1]]', "is not a number"),
    "numeric string": ('[["1.0", 0, 0], [0, 1, 0], [0, 0, 1]]', "is not a number"),
    "ragged": ("[[1, 0, 0], [0, 1], [0, 0, 1]]", "unequal lengths"),
    "empty": ("", "is empty"),
    "scalar": ("3.5", "nested list or a JSON object"),
    "no tensor field": ('{"kind": "elastic"}', "needs a 'tensor'"),
    "unknown kind": ('{"kind": "magnetic", "tensor": [[1]]}', "unknown tensor kind"),
    "empty results": ('{"results": []}', "empty"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_gives_one_line_and_exit_2(tmp_path, case):
    text, message = BAD_INPUTS[case]
    path = tmp_path / "bad.json"
    path.write_text(text)
    out = tmp_path / "out.json"
    result = run("decompose", str(path), "-o", str(out))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 or len(result.output) < 300
    assert not out.exists() and list(tmp_path.iterdir()) == [path]


def test_kind_mismatch_and_missing_files(tmp_path):
    path = tmp_path / "eps.json"
    path.write_text("[[1, 0, 0], [0, 1, 0], [0, 0, 1]]")
    result = run("decompose", str(path), "--kind", "elastic")
    assert result.exit_code == 2 and "does not fit kind 'elastic'" in result.output
    result = run("decompose", str(tmp_path / "nope.json"))
    assert result.exit_code == 2 and "does not exist" in result.output
    result = run("decompose", str(path), "--structure", str(tmp_path / "nope.vasp"))
    assert result.exit_code == 2 and "does not exist" in result.output
    garbage = tmp_path / "garbage.vasp"
    garbage.write_text("this is not a structure\n")
    result = run("decompose", str(path), "--structure", str(garbage))
    assert result.exit_code == 2 and "cannot read a crystal structure" in result.output


def test_prediction_file_uses_each_results_own_structure(tmp_path):
    """Each result of a predict JSON is analysed with the structure it carries."""
    from tests.helpers import nacl, zno_wurtzite

    path = tmp_path / "pred.json"
    eps = np.diag([4.0, 4.0, 5.0]).tolist()
    results = [
        {"source": "a", "kind": "dielectric", "tensor": eps, "structure": nacl().as_dict()},
        {"source": "b", "kind": "dielectric", "tensor": eps, "structure": zno_wurtzite().as_dict()},
        {"source": "c", "kind": "dielectric", "tensor": eps},
    ]
    path.write_text(json.dumps({"crystensor_version": __version__, "results": results}))
    data = run_json("decompose", str(path))["results"]
    assert data[0]["symmetry"]["point_group"] == "m-3m"
    assert data[1]["symmetry"]["point_group"] == "6mm"
    assert "symmetry" not in data[2]
    # cubic: the 4, 4, 5 tensor is not invariant; its projection is isotropic
    assert data[0]["symmetry"]["violation"] > 0 and data[1]["symmetry"]["violation"] < 1e-12
    poscar = REPO / "examples" / "structures" / "NaCl-mp-22862.POSCAR"
    refused = run("decompose", str(path), "--structure", str(poscar))
    assert refused.exit_code == 2 and "holds 3 tensors" in refused.output
