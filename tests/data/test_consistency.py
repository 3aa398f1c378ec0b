"""crystensor.data.consistency: checks, frame consistency, symmetrisation and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Molecule, Structure

from crystensor.data.consistency import ConsistencyChecker, check_entries, reason_category
from crystensor.data.records import read_records, write_records
from crystensor.data.sources import RawEntry, Rejected
from crystensor.errors import InputError
from crystensor.tensors.symmetry import point_group_of, project_to_point_group
from crystensor.tensors.voigt import from_voigt, to_voigt
from tests.helpers import random_orthogonal, rotate

SOURCE = {"dataset": "test", "citation": "", "file": "in-code"}
# Wurtzite ZnO (6mm) elastic constants (GPa, mp-2133 from the matminer set, frame: c along z)
# and piezoelectric stress constants (C/m^2; e31, e33, e15 as for ZnO).
ZNO_ELASTIC = np.array([
    [186.8428, 110.6681, 91.2861, 0, 0, 0],
    [110.6681, 185.6467, 92.7753, 0, 0, 0],
    [91.2861, 92.7753, 204.8173, 0, 0, 0],
    [0, 0, 0, 37.1824, 0, 0],
    [0, 0, 0, 0, 36.6964, 0],
    [0, 0, 0, 0, 0, 40.41],
])  # fmt: skip
ZNO_PIEZO = np.array([
    [0, 0, 0, 0, -0.45, 0],
    [0, 0, 0, -0.45, 0, 0],
    [-0.51, -0.51, 1.22, 0, 0, 0],
])  # fmt: skip


def nacl() -> Structure:
    """Rock salt in its primitive fcc cell."""
    a = 5.64 / 2
    lattice = Lattice([[0, a, a], [a, 0, a], [a, a, 0]])
    return Structure(lattice, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def wurtzite() -> Structure:
    return Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
    )


def triclinic() -> Structure:
    lattice = Lattice.from_parameters(4.1, 5.3, 6.2, 81, 95, 102)
    return Structure(lattice, ["Si", "O", "O"], [[0, 0, 0], [0.31, 0.12, 0.77], [0.63, 0.41, 0.29]])


def entry(entry_id: str, structure, value, **meta) -> RawEntry:
    return RawEntry(entry_id, structure, value, SOURCE, meta)


def rotated(structure: Structure, rot: np.ndarray) -> Structure:
    return Structure(
        Lattice(structure.lattice.matrix @ rot.T), structure.species, structure.frac_coords
    )


def test_cubic_dielectric_is_kept_symmetrised_and_described():
    eps = np.diag([2.95, 3.0, 3.05])
    eps[0, 1] = eps[1, 0] = 0.01
    records, report = check_entries([entry("mp-22862", nacl(), eps)], "dielectric")
    (record,) = records
    assert report.read == report.kept == 1 and report.rejected == 0
    np.testing.assert_allclose(record.value, 3.0 * np.eye(3), atol=1e-12)
    assert record.consistency == pytest.approx(0.1 / 3.05)
    assert record.symmetry == {
        "space_group_number": 225,
        "space_group": "Fm-3m",
        "point_group": "m-3m",
        "crystal_system": "cubic",
    }
    assert record.formula == "NaCl" and record.target == "dielectric" and record.units == ""
    assert record.source == SOURCE
    assert Structure.from_dict(record.structure).matches(nacl())


def test_violation_over_tolerance_is_rejected_with_its_size_and_group():
    eps = np.diag([1.0, 1.5, 2.0])  # not cubic
    records, report = check_entries([entry("bad", nacl(), eps)], "dielectric")
    assert records == [] and report.kept == 0
    (rejection,) = report.rejections
    assert rejection.id == "bad"
    assert rejection.reason == "symmetry violation: 50 % > 5 % under point group m-3m"
    assert report.rejected_by_reason() == {"symmetry violation": 1}
    # the tolerance decides
    records, _ = check_entries([entry("bad", nacl(), eps)], "dielectric", tolerance=0.6)
    assert len(records) == 1


def test_elastic_projection_restores_hexagonal_relations():
    c = from_voigt(ZNO_ELASTIC)
    (record,), report = check_entries([entry("mp-2133", wurtzite(), c)], "elastic")
    v = to_voigt(np.array(record.value))
    assert record.symmetry["point_group"] == "6mm" and record.units == "GPa"
    assert v[0, 0] == pytest.approx(v[1, 1], abs=1e-9)
    assert v[3, 3] == pytest.approx(v[4, 4], abs=1e-9)
    assert v[5, 5] == pytest.approx((v[0, 0] - v[0, 1]) / 2, abs=1e-9)
    # the violation is measured on the raw tensor: |C11 - C22| ... relative to C33
    assert 0 < record.consistency < 0.05
    assert report.kept == 1


@pytest.mark.parametrize("proper", [True, False])
def test_frame_consistency_is_equivariant(rng, proper):
    """A rotated structure with the tensor rotated alike is kept, with the same numbers;
    the structure rotated alone is rejected."""
    e = from_voigt(ZNO_PIEZO)
    base = wurtzite()
    q = random_orthogonal(rng, proper=True)
    (reference,), _ = check_entries([entry("a", base, e)], "piezoelectric")
    (moved,), _ = check_entries([entry("a", rotated(base, q), rotate(e, q))], "piezoelectric")
    assert moved.consistency == pytest.approx(reference.consistency, abs=1e-9)
    np.testing.assert_allclose(moved.value, rotate(np.array(reference.value), q), atol=1e-9)
    wrong = rotate(e, q) if proper else e
    records, report = check_entries(
        [entry("b", base if proper else rotated(base, q), wrong)], "piezoelectric"
    )
    assert records == [] and report.rejected_by_reason() == {"symmetry violation": 1}


def test_stored_value_is_the_point_group_projection():
    rng = np.random.default_rng(3)
    s = triclinic()
    eps = np.diag([3.0, 4.0, 5.0]) + 0.01 * rng.normal(size=(3, 3))
    (record,), _ = check_entries([entry("t", s, eps)], "dielectric")
    group = point_group_of(s)
    expected = project_to_point_group((eps + eps.T) / 2, group)
    np.testing.assert_allclose(record.value, expected, atol=1e-12)
    assert record.symmetry["crystal_system"] == "triclinic"


def test_duplicates_keep_the_first_and_say_what_happened_to_it():
    s = nacl()
    entries = [
        entry("mp-1", s, 2.0 * np.eye(3)),
        entry("mp-1", s, 3.0 * np.eye(3)),
        entry("mp-2", s, np.diag([1.0, 2.0, 3.0])),  # rejected: violation
        entry("mp-2", s, 2.0 * np.eye(3)),
    ]
    records, report = check_entries(entries, "dielectric")
    assert [r.id for r in records] == ["mp-1"] and records[0].value[0][0] == 2.0
    reasons = [(r.id, r.reason) for r in report.rejections]
    assert reasons[0] == ("mp-1", "duplicate id: the first entry with it was kept")
    assert reasons[2] == ("mp-2", "duplicate id: the first entry with it was rejected")
    assert report.rejected_by_reason() == {"duplicate id": 2, "symmetry violation": 1}
    assert (report.read, report.kept, report.rejected) == (4, 1, 3)


@pytest.mark.parametrize(
    ("value", "category"),
    [
        (np.full((3, 3), np.nan), "non-finite value"),
        (np.diag([1.0, np.inf, 1.0]), "non-finite value"),
        (np.zeros((3, 6)), "wrong shape"),  # Voigt, not Cartesian: a source's job
        (np.ones(9), "wrong shape"),
        ([[1, 2], [3]], "wrong shape"),
        (True, "wrong shape"),
        (None, "wrong shape"),
    ],
)
def test_bad_tensor_values_are_rejected(value, category):
    records, report = check_entries([entry("x", nacl(), value)], "dielectric")
    assert records == []
    assert reason_category(report.rejections[0].reason) == category


def test_bad_structures_are_rejected():
    disordered = nacl()
    disordered.replace_species({"Na": {"Na": 0.5, "K": 0.5}})
    slab = Structure(
        Lattice(np.diag([4.0, 4.0, 20.0]), pbc=(True, True, False)), ["Si"], [[0, 0, 0.5]]
    )
    overlapping = Structure(Lattice.cubic(3.0), ["Na", "Na"], [[0, 0, 0], [0, 0, 0]])
    molecule = Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]])
    entries = [
        entry("disordered", disordered, np.eye(3)),
        entry("slab", slab, np.eye(3)),
        entry("overlap", overlapping, np.eye(3)),
        entry("molecule", molecule, np.eye(3)),
        entry("text", "Si2", np.eye(3)),
    ]
    records, report = check_entries(entries, "dielectric")
    assert records == []
    got = {r.id: reason_category(r.reason) for r in report.rejections}
    assert got == {
        "disordered": "disordered structure",
        "slab": "not periodic",
        "overlap": "symmetry analysis failed",
        "molecule": "not periodic",
        "text": "not a structure",
    }


def test_index_asymmetry_is_rejected():
    eps = np.array([[3.0, 1.0, 0.0], [-1.0, 3.0, 0.0], [0.0, 0.0, 3.0]])
    records, report = check_entries([entry("x", triclinic(), eps)], "dielectric")
    assert records == []
    assert report.rejections[0].reason.startswith("index asymmetry: ")


def test_scalars_get_only_value_and_structure_checks():
    s = nacl()
    overlapping = Structure(Lattice.cubic(3.0), ["Na", "Na"], [[0, 0, 0], [0, 0, 0]])
    disordered = nacl()
    disordered.replace_species({"Na": {"Na": 0.5, "K": 0.5}})
    entries = [
        entry("a", s, 5.0),
        entry("b", overlapping, np.float64(1.5)),  # no symmetry analysis for scalars
        entry("c", s, float("nan")),
        entry("a", s, 4.0),
        entry("d", disordered, 2.0),
        entry("e", s, np.array([1.0, 2.0])),
    ]
    records, report = check_entries(entries, "band-gap")
    assert [(r.id, r.value) for r in records] == [("a", 5.0), ("b", 1.5)]
    assert all(r.symmetry is None and r.consistency is None for r in records)
    assert records[0].units == "eV" and isinstance(records[0].value, float)
    assert report.rejected_by_reason() == {
        "disordered structure": 1,
        "duplicate id": 1,
        "non-finite value": 1,
        "wrong shape": 1,
    }


def test_source_rejections_are_counted_and_reported():
    entries = [
        Rejected("row-3", "unreadable structure: not a poscar structure"),
        entry("a", nacl(), 1.0),
    ]
    checker = ConsistencyChecker("formation-energy")
    records = list(checker.records(entries))
    assert len(records) == 1 and records[0].units == "eV/atom"
    assert checker.report.as_dict() == {
        "target": "formation-energy",
        "tolerance": 0.05,
        "symprec": 0.01,
        "read": 2,
        "kept": 1,
        "rejected": 1,
        "rejected_by_reason": {"unreadable structure": 1},
    }


def test_records_round_trip_through_json_lines(tmp_path):
    meta = {"becs": np.ones((2, 3, 3)), "n": np.int64(3), "x": float("nan")}
    records, _ = check_entries(
        [entry("mp-2133", wurtzite(), from_voigt(ZNO_PIEZO), **meta)], "piezoelectric"
    )
    path = tmp_path / "piezo.jsonl.gz"
    assert write_records(path, records) == 1
    (back,) = read_records(path)
    assert back.id == "mp-2133" and back.units == "C/m^2"
    assert back.meta == {"becs": np.ones((2, 3, 3)).tolist(), "n": 3, "x": None}
    np.testing.assert_allclose(back.value, records[0].value)
    json.dumps(back.symmetry)


def test_bad_settings_raise_input_errors():
    with pytest.raises(InputError, match="unknown property 'elasticity'"):
        ConsistencyChecker("elasticity")
    with pytest.raises(InputError, match="tolerance must be a positive number"):
        ConsistencyChecker("elastic", tolerance=0)
    with pytest.raises(InputError, match="symprec must be a positive number"):
        ConsistencyChecker("elastic", symprec=float("nan"))
