"""Hostile inputs to `crystensor predict`: one clear line per bad item, the good ones predicted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.io import write as ase_write
from pymatgen.core import Lattice, Structure

from crystensor.prediction import Predictor, load_predictor
from tests.cli.test_predict import ZNO, run
from tests.helpers import nacl
from tests.test_predict import make_checkpoint

POSCAR = """{comment}
1.0
{a}
{b}
{c}
{symbols}
{counts}
direct
{sites}
"""


def poscar(path: Path, a="4 0 0", b="0 4 0", c="0 0 4", symbols="Na Cl", sites=None) -> Path:
    sites = sites or ["0 0 0", "0.5 0.5 0.5"]
    counts = " ".join("1" for _ in symbols.split())
    path.write_text(
        POSCAR.format(
            comment=path.stem,
            a=a,
            b=b,
            c=c,
            symbols=symbols,
            counts=counts,
            sites="\n".join(sites),
        )
    )
    return path


# file name -> (how it is made, a phrase the error must contain)
HOSTILE = {
    "singular.vasp": (lambda p: poscar(p, b="8 0 0"), "linearly dependent"),
    "flat.vasp": (lambda p: poscar(p, c="0 0 1e-9"), "linearly dependent"),
    "nan.vasp": (lambda p: poscar(p, sites=["0 0 0", "nan 0.5 0.5"]), "not finite"),
    "inf-lattice.vasp": (lambda p: poscar(p, a="inf 0 0"), "not finite"),
    "overlap.vasp": (lambda p: poscar(p, sites=["0 0 0", "0 0 0.001"]), "overlapping"),
    "unknown.vasp": (lambda p: poscar(p, symbols="Xx Cl"), "not a chemical element"),
    "americium.vasp": (lambda p: poscar(p, symbols="Am Cl"), "Am"),
    "isolated.vasp": (
        lambda p: poscar(p, "14 0 0", "0 14 0", "0 0 14", "Cs", ["0 0 0"]),
        "5 A cutoff",
    ),
    "empty.vasp": (lambda p: p.write_text(""), "cannot read"),
    "truncated.vasp": (lambda p: p.write_text(ZNO.read_text()[:60]), "truncated"),
    "garbage.cif": (lambda p: p.write_bytes(bytes(range(256)) * 4), "cannot read"),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("m") / "elastic.pt", "elastic")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    for name, (make, _) in HOSTILE.items():
        make(folder / name)
    good = nacl()
    good.to(filename=str(folder / "good.vasp"), fmt="poscar")
    frames = [
        Atoms("NaCl", positions=[[0, 0, 0], [2.0, 2.0, 2.0]], cell=np.eye(3) * 4, pbc=True),
        Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]]),  # a molecule without a cell
        Atoms("NaCl", positions=[[0, 0, 0], [2.1, 2.1, 2.1]], cell=np.eye(3) * 4.2, pbc=True),
    ]
    ase_write(folder / "frames.extxyz", frames, format="extxyz")
    return folder


def test_each_bad_item_is_one_line_and_the_good_ones_are_predicted(hostile, model):
    result = run(str(hostile), "-m", str(model), "-f", "json")
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    predicted = sorted(Path(r["source"]).name for r in data["results"])
    assert predicted == ["frames.extxyz[0]", "frames.extxyz[2]", "good.vasp"]
    errors = {Path(e["source"]).name: e["error"] for e in data["errors"]}
    assert "no periodic 3D cell" in errors.pop("frames.extxyz[1]")
    for name, (_, phrase) in HOSTILE.items():
        assert phrase in errors.pop(name), (name, errors.get(name))
    assert errors == {}
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == len(HOSTILE) + 1  # one per bad item, none wrapped or repeated
    assert "internal error" not in result.output and "Traceback" not in result.output
    assert f"{len(HOSTILE) + 1} of {len(HOSTILE) + 4} structures could not be predicted" in (
        result.stderr.replace("\n", " ")
    )


class _Failing(Predictor):
    """A predictor whose domain check breaks on one formula, as a bug inside it would."""

    def structure_warnings(self, structure: Structure) -> list[dict[str, str]]:
        if structure.composition.reduced_formula == "LiF":
            raise RuntimeError("boom")
        return super().structure_warnings(structure)


def test_an_internal_error_stays_with_its_structure(model):
    checkpoint = load_predictor(model=model).checkpoint
    predictor = _Failing(checkpoint, source="test model")
    lif = Structure(Lattice.cubic(4.0), ["Li", "F"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    results = predictor.predict_results([nacl(), lif, nacl()])
    assert [r.ok for r in results] == [True, False, True]
    assert "internal error (RuntimeError: boom)" in results[1].error
    assert "please report" in results[1].error


def test_directories_are_searched_recursively(tmp_path, model):
    for name in ("a", "b/deeper", ".hidden"):
        (tmp_path / name).mkdir(parents=True)
        nacl().to(filename=str(tmp_path / name / "POSCAR"), fmt="poscar")
    (tmp_path / "b" / "notes.txt").write_text("not a structure")
    data = json.loads(run(str(tmp_path), "-m", str(model), "-f", "json").stdout)
    found = [str(Path(r["source"]).relative_to(tmp_path)) for r in data["results"]]
    assert found == ["a/POSCAR", "b/deeper/POSCAR"] and data["errors"] == []
    flat = run(str(tmp_path), "-m", str(model), "-f", "json", "--no-recursive")
    assert flat.exit_code == 2 and "no structure files in directory" in flat.output
