"""benchmarks/piezo_signs.py: the sign checks on structures built in code."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from tests.helpers import random_orthogonal

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "piezo_signs.py"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "structures"


@pytest.fixture(scope="module")
def signs():
    spec = importlib.util.spec_from_file_location("piezo_signs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def zinc_blende(a: float = 5.4) -> Structure:
    return Structure(Lattice.cubic(a), ["Zn"] * 4 + ["S"] * 4, _fcc() + _fcc(0.25))


def _fcc(shift: float = 0.0) -> list[list[float]]:
    base = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    return [[x + shift for x in p] for p in base]


def e14(value: float) -> np.ndarray:
    """The -43m piezoelectric tensor in the cubic axes: e_xyz = e_yzx = e_zxy = value."""
    e = np.zeros((3, 3, 3))
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        e[i, j, k] = e[i, k, j] = value
    return e


def test_the_bond_correlation_follows_the_sign_and_the_structure(signs, rng):
    s = zinc_blende()
    assert signs.bond_correlation(s, e14(0.1)) == pytest.approx(1.0)
    assert signs.bond_correlation(s, e14(-0.1)) == pytest.approx(-1.0)
    # rotating structure and tensor together changes nothing; inverting the structure alone
    # (the other polarity, what a flipped label looks like) flips it
    rot = random_orthogonal(rng, proper=True)
    turned = Structure(Lattice(s.lattice.matrix @ rot.T), s.species, s.frac_coords)
    tensor = np.einsum("ia,jb,kc,abc->ijk", rot, rot, rot, e14(0.1))
    assert signs.bond_correlation(turned, tensor) == pytest.approx(1.0)
    inverted = Structure(s.lattice, s.species, -s.frac_coords)
    assert signs.bond_correlation(inverted, e14(0.1)) == pytest.approx(-1.0)


def test_improper_operations_are_found(signs):
    assert signs.has_improper(zinc_blende()) == ("-43m", True)
    quartz = Structure.from_file(EXAMPLES / "SiO2-mp-7000.POSCAR")
    assert signs.has_improper(quartz) == ("32", False)


def test_the_report_counts_a_flipped_polymorph(signs, tmp_path, capsys):
    """Zinc blende with the bonds' sign and a wurtzite cell with the opposite one: 1 mismatch."""
    wurtzite = Structure(
        Lattice.hexagonal(3.8, 6.2),
        ["Zn", "Zn", "S", "S"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.375], [2 / 3, 1 / 3, 0.875]],
    )
    e33 = np.zeros((3, 3, 3))
    e33[2, 2, 2], e33[2, 0, 0], e33[2, 1, 1] = -1.0, 0.3, 0.3
    e33[0, 0, 2] = e33[0, 2, 0] = e33[1, 1, 2] = e33[1, 2, 1] = 0.2
    path = tmp_path / "records.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        # the script reads 2- and 4-atom cells
        primitive = zinc_blende().get_primitive_structure()
        for structure, value in ((primitive, e14(0.1)), (wurtzite, e33)):
            fh.write(json.dumps({"formula": "ZnS", "structure": structure.as_dict(),
                                 "value": value.tolist()}) + "\n")  # fmt: skip
    signs.point_groups_and_pairs(path)
    out = capsys.readouterr().out
    assert "with an improper operation (sign not checkable by symmetry): 2" in out
    assert "differs: 1 (ZnS)" in out
