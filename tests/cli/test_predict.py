"""``crystensor predict`` through typer's CliRunner: inputs, formats, failures, model cards."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from ase.io import write as ase_write
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from typer.testing import CliRunner

from crystensor import pretrained
from crystensor.cli.app import app as root_app
from crystensor.cli.predict import predict
from tests.helpers import nacl, silicon, zno_wurtzite
from tests.test_predict import make_checkpoint, rattled

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "structures"
SI = EXAMPLES / "Si-mp-149.POSCAR"
NACL = EXAMPLES / "NaCl-mp-22862.POSCAR"
ZNO = EXAMPLES / "ZnO-mp-2133.POSCAR"
PARTIAL_CIF = """data_FeCoO
_cell_length_a 4.2
_cell_length_b 4.2
_cell_length_c 4.2
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_symmetry_equiv_pos_as_xyz
'x, y, z'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Fe1 Fe 0 0 0 0.5
Co1 Co 0 0 0 0.5
O1 O 0.5 0.5 0.5 1
"""

runner = CliRunner()


def _app() -> typer.Typer:
    """The root app once ``predict`` is registered there; until then a one-command app."""
    if any(c.name == "predict" for c in root_app.registered_commands):
        return root_app
    local = typer.Typer()
    local.command("predict", no_args_is_help=True)(predict)
    local.callback()(lambda: None)
    return local


APP = _app()


def run(*args: str, input: str | None = None):
    return runner.invoke(APP, ["predict", *args], input=input)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("m") / "elastic.pt", "elastic")


@pytest.fixture(scope="module")
def piezo_model(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("m") / "piezo.pt", "piezoelectric")


def run_json(*args: str, input: str | None = None, code: int = 0) -> dict:
    result = run(*args, "--format", "json", input=input)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_tables_for_the_example_structures(model, monkeypatch):
    from crystensor.cli import common

    # wide enough that no cell wraps, whatever the length of the checkout's path
    monkeypatch.setattr(common.console, "_width", 250)
    result = run(str(SI), str(ZNO), "--model", str(model))
    assert result.exit_code == 0, result.output
    out = result.stdout
    expected = ["Si-mp-149.POSCAR: Si", "m-3m (cubic)", "Fd-3m", "ZnO-mp-2133.POSCAR: ZnO"]
    expected += ["6mm (hexagonal)", "[GPa]", "Projected onto the point group", "k_vrh"]
    expected += ["youngs_modulus", "poisson_ratio", "universal_anisotropy", "born_stable"]
    for text in expected:
        assert text in out, text
    assert "Traceback" not in result.output


def test_files_directory_and_stdin_together(tmp_path, model):
    folder = tmp_path / "structures"
    folder.mkdir()
    (folder / "NaCl.vasp").write_text(NACL.read_text())
    (folder / "README.md").write_text("# not a structure\n")
    data = run_json(str(SI), str(folder), "-", "--model", str(model), input=ZNO.read_text())
    sources = [r["source"] for r in data["results"]]
    assert sources == [str(SI), str(folder / "NaCl.vasp"), "stdin"]
    assert [r["point_group"] for r in data["results"]] == ["m-3m", "m-3m", "6mm"]
    assert data["errors"] == [] and data["target"] == "elastic"


def test_multi_frame_extxyz(tmp_path, model):
    path = tmp_path / "frames.xyz"
    frames = [AseAtomsAdaptor.get_atoms(s()) for s in (nacl, silicon, zno_wurtzite)]
    ase_write(path, frames, format="extxyz")
    data = run_json(str(path), "-m", str(model), "--batch-size", "2")
    assert [r["source"] for r in data["results"]] == [f"{path}[{i}]" for i in range(3)]
    assert [r["formula"] for r in data["results"]] == ["NaCl", "Si", "ZnO"]
    assert [r["crystal_system"] for r in data["results"]] == ["cubic", "cubic", "hexagonal"]


def test_partial_occupancy_and_unknown_element_fail_alone(tmp_path, model):
    (tmp_path / "FeCoO.cif").write_text(PARTIAL_CIF)
    am = Structure(Lattice.cubic(3.0), ["Am"], [[0, 0, 0]])
    am.to(filename=str(tmp_path / "Am.POSCAR"), fmt="poscar")
    args = [str(tmp_path / "FeCoO.cif"), str(ZNO), str(tmp_path / "Am.POSCAR")]
    result = run(*args, "-m", str(model), "-f", "json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert [r["source"] for r in data["results"]] == [str(ZNO)]
    assert [e["source"] for e in data["errors"]] == [args[0], args[2]]
    err = result.stderr
    assert "error: FeCoO.cif has partially occupied sites" in err and "Fe0.5 Co0.5" in err
    assert "Am.POSCAR: unsupported element(s) Am" in err
    assert "2 of 3 structures could not be predicted" in err
    assert "Traceback" not in result.output


def test_json_round_trip_through_decompose(tmp_path, piezo_model):
    out = tmp_path / "pred.json"
    result = run(str(ZNO), str(SI), "-m", str(piezo_model), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the JSON went to the file (format from the suffix)
    predicted = json.loads(out.read_text())["results"]
    decomposed = runner.invoke(root_app, ["decompose", str(out), "--json"])
    assert decomposed.exit_code == 0, decomposed.output
    results = json.loads(decomposed.stdout)["results"]
    assert [r["label"] for r in results] == [str(ZNO), str(SI)]
    for mine, theirs in zip(predicted, results, strict=True):
        assert theirs["kind"] == "piezoelectric"
        np.testing.assert_allclose(theirs["voigt"], mine["voigt"], rtol=1e-12, atol=1e-15)
    assert np.all(np.array(results[1]["voigt"]) == 0.0)  # Si: centrosymmetric


def test_csv_one_row_per_structure(tmp_path, model):
    (tmp_path / "FeCoO.cif").write_text(PARTIAL_CIF)
    result = run(str(SI), str(tmp_path / "FeCoO.cif"), str(ZNO), "-m", str(model), "-f", "csv")
    assert result.exit_code == 2
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["source"] for r in rows] == [str(SI), str(tmp_path / "FeCoO.cif"), str(ZNO)]
    labels = [f"C{i}{j}" for i in range(1, 7) for j in range(1, 7)]
    assert all(label in rows[0] for label in labels)
    si = np.array([float(rows[0][label]) for label in labels]).reshape(6, 6)
    assert si[0, 0] == si[1, 1] == si[2, 2] and si[0, 3] == 0.0
    assert rows[0]["point_group"] == "m-3m" and float(rows[0]["k_vrh"]) != 0
    assert rows[1]["C11"] == "" and "partially occupied" in rows[1]["error"]
    assert rows[2]["crystal_system"] == "hexagonal" and rows[2]["error"] == ""


def test_output_file_is_atomic_and_format_follows_suffix(tmp_path, model):
    out = tmp_path / "sub" / "pred.csv"
    result = run(str(NACL), "-m", str(model), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.parent.iterdir()] == ["pred.csv"]
    assert out.read_text().startswith("source,formula,target,point_group")
    table = tmp_path / "pred.txt"
    assert run(str(NACL), "-m", str(model), "-o", str(table)).exit_code == 0
    assert "NaCl-mp-22862.POSCAR: NaCl" in table.read_text() and "\x1b[" not in table.read_text()


def test_raw_shows_the_network_output(tmp_path, model):
    path = tmp_path / "Si-rattled.vasp"
    rattled(Structure.from_file(SI)).to(filename=str(path), fmt="poscar")
    sym = run_json(str(path), "-m", str(model))["results"][0]
    raw = run_json(str(path), "-m", str(model), "--raw")["results"][0]
    assert sym["symmetrized"] and sym["physical"]
    assert not raw["symmetrized"] and not raw["physical"]
    assert raw["point_group"] == sym["point_group"] == "m-3m"
    assert raw["voigt"] == sym["raw_voigt"] and raw["voigt"] != sym["voigt"]
    assert sym["voigt"][0][3] == 0.0 and raw["voigt"][0][3] != 0.0
    both = run_json(str(path), "-m", str(model), "--no-symmetrize", "--no-physical")
    assert both["results"][0]["voigt"] == raw["voigt"]
    table = run(str(path), "-m", str(model), "--raw")
    assert "Not symmetrized" in table.stdout and "Raw network output" in table.stdout


def test_unstable_prediction_is_made_stable_and_flagged(tmp_path, model):
    """The untrained test model's tensor is tiny and not positive definite: floored."""
    path = tmp_path / "Si-rattled.vasp"
    rattled(Structure.from_file(SI)).to(filename=str(path), fmt="poscar")
    result = run_json(str(path), "-m", str(model))["results"][0]
    mandel = np.array(result["voigt"]) * np.outer(*2 * [[1, 1, 1, 2**0.5, 2**0.5, 2**0.5]])
    assert np.linalg.eigvalsh(mandel)[0] >= 1.0 - 1e-9
    assert result["adjustment"]["changed"] and result["adjustment"]["smallest_before"] < 1.0
    assert [w["code"] for w in result["warnings"]].count("not-physical") == 1
    assert result["properties"]["born_stable"]
    kept = run_json(str(path), "-m", str(model), "--no-physical")["results"][0]
    assert np.linalg.eigvalsh(np.array(kept["voigt"]))[0] < 1.0
    assert (
        "not corrected"
        in next(w for w in kept["warnings"] if w["code"] == "not-physical")["message"]
    )
    csv_text = run(str(path), "-m", str(model), "-f", "csv").stdout
    header, row = list(csv.reader(io.StringIO(csv_text)))
    record = dict(zip(header, row, strict=True))
    assert float(record["adjustment"]) > 0 and "not-physical: " in record["warnings"]


def test_model_info(model):
    result = run("--model-info", "--model", str(model))
    assert result.exit_code == 0, result.output
    expected = ["segnn", "elastic", "split.train", "featurization.cutoff", "versions.torch"]
    for text in [*expected, "meta.note", "untrained test model", "No metrics"]:
        assert text in result.stdout, text
    info = run_json("--model-info", "-m", str(model))
    assert info["split"] == {"train": 3, "val": 1, "test": 1} and info["parameters"] > 0
    assert info["config"]["arch"] == "segnn" and info["card"] is None


def test_missing_shipped_model_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    for args in ([str(SI), "--target", "elastic"], ["--model-info", "-t", "piezoelectric"]):
        result = run(*args)
        assert result.exit_code == 2
        target = args[-1]
        assert result.stderr.strip() == (
            f"error: no shipped model for target {target} yet; pass --model CKPT (train one "
            "with crystensor train)"
        )


def test_bad_invocations(tmp_path, model):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    cases = {
        (str(SI),): "pass --target or --model",
        ("--model", str(model)): "give at least one structure",
        (str(SI), "-m", str(junk)): "junk.pt is not a readable checkpoint",
        (str(SI), "-m", str(model), "-t", "piezoelectric"): "predicts 'elastic', not",
    }
    for args, message in cases.items():
        result = run(*args)
        assert result.exit_code == 2, args
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert run(str(SI), "-t", "band-gap").exit_code == 2  # not a choice


def test_one_poscar_loads_only_what_it_needs(model):
    """The start-up of `crystensor predict ONE.POSCAR` (aim: < 3 s) pays for none of these."""
    code = (
        "import sys; from crystensor.cli.app import app; "
        f"app(['predict', {str(ZNO)!r}, '-m', {str(model)!r}], standalone_mode=False); "
        "heavy = ('torch._dynamo', 'torch_geometric', 'ase.io', 'scipy.optimize', "
        "'pymatgen.io.vasp', 'pymatgen.symmetry.analyzer', 'sympy'); "
        "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "Point group 6mm" in out.stdout
    assert out.stderr.strip().splitlines()[-1] == "[]"


def test_importing_the_command_is_light():
    code = (
        "import sys, crystensor.cli.predict; "
        "print(sorted(m for m in ('numpy', 'torch', 'pymatgen', 'e3nn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_with_elastic_reports_d_equal_e_times_compliance(tmp_path, model, piezo_model):
    data = run_json(str(ZNO), "-m", str(piezo_model), "--elastic-model", str(model))
    (result,) = data["results"]
    e = np.array(result["voigt"])  # (3, 6)
    c = np.array(result["elastic_voigt"])  # (6, 6), GPa
    d = np.array(result["properties"]["d_voigt"])  # pC/N, shear columns doubled
    s = np.linalg.inv(c)  # Voigt compliance (engineering shear strains): d = e S
    np.testing.assert_allclose(d, 1e3 * e @ s, rtol=1e-6, atol=1e-9 * np.abs(d).max())
    assert result["properties"]["units"]["d_voigt"] == "pC/N"
    plain = run_json(str(ZNO), "-m", str(piezo_model))["results"][0]
    assert "d_voigt" not in plain["properties"] and "elastic_voigt" not in plain
    wrong = run(str(ZNO), "-m", str(model), "--with-elastic")
    assert wrong.exit_code == 2 and "for piezoelectric models" in wrong.output


def test_quiet_prints_errors_and_the_json_asked_for_only(tmp_path, model):
    bad = tmp_path / "bad.POSCAR"
    bad.write_text("junk\n")
    done = runner.invoke(root_app, ["-q", "predict", str(SI), "-m", str(model)])
    assert (done.exit_code, done.stdout, done.stderr) == (0, "", "")
    done = runner.invoke(root_app, ["-q", "predict", str(SI), str(bad), "-m", str(model)])
    assert done.exit_code == 2 and done.stdout == ""
    assert done.stderr.startswith("error: ") and "bad.POSCAR" in done.stderr
    assert "1 of 2 structures could not be predicted" in done.stderr
    done = runner.invoke(root_app, ["-q", "predict", str(SI), "-m", str(model), "-f", "json"])
    assert done.stderr == "" and len(json.loads(done.stdout)["results"]) == 1
    done = runner.invoke(root_app, ["-q", "predict", str(SI), "-m", str(model), "--json"])
    assert done.exit_code == 0 and len(json.loads(done.stdout)["results"]) == 1
