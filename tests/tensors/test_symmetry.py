"""Tests of crystensor.tensors.symmetry: point groups, projection, violation, counting."""

from __future__ import annotations

import csv
import functools
import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

from crystensor.tensors.kinds import get_kind
from crystensor.tensors.symmetry import (
    POINT_GROUPS,
    PointGroup,
    _projector,
    _spglib_cell,
    crystal_system_of,
    independent_component_table,
    independent_components,
    normalize_point_group_symbol,
    point_group_from_symbol,
    point_group_of,
    project_to_point_group,
    projection_residual,
    symmetry_violation,
)
from crystensor.tensors.voigt import from_voigt, to_voigt
from tests.helpers import random_orthogonal, rotate

CENTROSYMMETRIC = ("-1", "2/m", "mmm", "4/m", "4/mmm", "-3", "-3m", "6/m", "6/mmm", "m-3", "m-3m")

# Textbook counts (Nye, Physical Properties of Crystals): dielectric, piezoelectric stress
# constants e_iJ, elastic stiffness C_IJ.
EXPECTED_COUNTS: dict[str, tuple[int, int, int]] = {
    "1": (6, 18, 21), "-1": (6, 0, 21),
    "2": (4, 8, 13), "m": (4, 10, 13), "2/m": (4, 0, 13),
    "222": (3, 3, 9), "mm2": (3, 5, 9), "mmm": (3, 0, 9),
    "4": (2, 4, 7), "-4": (2, 4, 7), "4/m": (2, 0, 7),
    "422": (2, 1, 6), "4mm": (2, 3, 6), "-42m": (2, 2, 6), "4/mmm": (2, 0, 6),
    "3": (2, 6, 7), "-3": (2, 0, 7), "32": (2, 2, 6), "3m": (2, 4, 6), "-3m": (2, 0, 6),
    "6": (2, 4, 5), "-6": (2, 2, 5), "6/m": (2, 0, 5),
    "622": (2, 1, 5), "6mm": (2, 3, 5), "-6m2": (2, 1, 5), "6/mmm": (2, 0, 5),
    "23": (1, 1, 3), "m-3": (1, 0, 3), "432": (1, 0, 3), "-43m": (1, 1, 3), "m-3m": (1, 0, 3),
}  # fmt: skip
ORDERS: dict[str, int] = {
    "1": 1, "-1": 2, "2": 2, "m": 2, "2/m": 4, "222": 4, "mm2": 4, "mmm": 8,
    "4": 4, "-4": 4, "4/m": 8, "422": 8, "4mm": 8, "-42m": 8, "4/mmm": 16,
    "3": 3, "-3": 6, "32": 6, "3m": 6, "-3m": 12,
    "6": 6, "-6": 6, "6/m": 12, "622": 12, "6mm": 12, "-6m2": 12, "6/mmm": 24,
    "23": 12, "m-3": 24, "432": 24, "-43m": 24, "m-3m": 48,
}  # fmt: skip
KIND_NAMES = ("dielectric", "piezoelectric", "elastic")


def random_tensor(rng: np.random.Generator, kind: str, batch: tuple[int, ...] = ()) -> np.ndarray:
    k = get_kind(kind)
    return k.symmetrize_indices(rng.normal(size=(*batch, *k.cartesian_shape)))


def random_group(rng: np.random.Generator, symbol: str, proper: bool | None = None) -> PointGroup:
    """The class ``symbol`` in a random (generic) orientation."""
    return point_group_from_symbol(symbol).rotated(random_orthogonal(rng, proper=proper))


def max_orthogonality_error(rot: np.ndarray) -> float:
    return float(np.abs(np.einsum("gji,gjk->gik", rot, rot) - np.eye(3)).max())


def max_closure_error(rot: np.ndarray) -> float:
    products = np.einsum("gij,hjk->ghik", rot, rot).reshape(-1, 1, 9)
    return float(np.abs(products - rot.reshape(1, -1, 9)).max(axis=2).min(axis=1).max())


def same_rotation_sets(a: np.ndarray, b: np.ndarray, atol: float = 1e-10) -> bool:
    if len(a) != len(b):
        return False
    dist = np.abs(a.reshape(-1, 1, 9) - b.reshape(1, -1, 9)).max(axis=2)
    return bool((dist.min(axis=1) < atol).all() and (dist.min(axis=0) < atol).all())


# --- the 32 classes --------------------------------------------------------------------------


def test_point_group_list() -> None:
    assert len(POINT_GROUPS) == 32 == len(set(POINT_GROUPS))
    assert set(POINT_GROUPS) == set(EXPECTED_COUNTS)


@pytest.mark.parametrize("symbol", POINT_GROUPS)
def test_standard_groups_are_exact_closed_groups(symbol: str) -> None:
    g = point_group_from_symbol(symbol)
    rot = g.rotations
    assert g.symbol == symbol
    assert g.order == ORDERS[symbol] == len(rot)
    assert g.crystal_system == crystal_system_of(symbol)
    assert max_orthogonality_error(rot) < 1e-15
    assert max_closure_error(rot) < 1e-15
    # Unique, identity first, and centrosymmetric exactly for the Laue classes.
    dist = np.abs(rot.reshape(-1, 1, 9) - rot.reshape(1, -1, 9)).max(axis=2)
    assert (dist + np.eye(len(rot)) * 9 > 0.1).all()
    np.testing.assert_array_equal(rot[0], np.eye(3))
    assert g.is_centrosymmetric == (symbol in CENTROSYMMETRIC)
    assert not rot.flags.writeable


def test_standard_setting_axes() -> None:
    # Principal axis along z; hexagonal secondary axes along x (a).
    for symbol, axis in (("4", [0, 0, 1]), ("6", [0, 0, 1]), ("3", [0, 0, 1]), ("2", [0, 0, 1])):
        rot = point_group_from_symbol(symbol).rotations
        np.testing.assert_allclose(rot @ np.array(axis, float), np.tile(axis, (len(rot), 1)))
    c2x = np.diag([1.0, -1.0, -1.0])
    mx = np.diag([-1.0, 1.0, 1.0])
    assert any(np.array_equal(r, c2x) for r in point_group_from_symbol("32").rotations)
    assert any(np.array_equal(r, mx) for r in point_group_from_symbol("3m").rotations)
    assert any(np.array_equal(r, mx) for r in point_group_from_symbol("-6m2").rotations)


def test_crystal_systems() -> None:
    systems = [crystal_system_of(s) for s in POINT_GROUPS]
    assert systems.count("triclinic") == 2
    assert systems.count("monoclinic") == 3
    assert systems.count("orthorhombic") == 3
    assert systems.count("tetragonal") == 7
    assert systems.count("trigonal") == 5
    assert systems.count("hexagonal") == 7
    assert systems.count("cubic") == 5


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("-4m2", "-42m"), ("-62m", "-6m2"), ("m3m", "m-3m"), ("4/m-32/m", "m-3m"),
        ("m3", "m-3"), ("3m1", "3m"), ("31m", "3m"), ("321", "32"), ("-3m1", "-3m"),
        ("6/m2/m2/m", "6/mmm"), ("2mm", "mm2"), (" 6/mmm ", "6/mmm"),
        ("D4h", "4/mmm"), ("c6v", "6mm"), ("Td", "-43m"), ("Oh", "m-3m"), ("S6", "-3"),
    ],
)  # fmt: skip
def test_symbol_spellings(spelling: str, canonical: str) -> None:
    assert normalize_point_group_symbol(spelling) == canonical
    assert point_group_from_symbol(spelling).symbol == canonical


def test_unknown_symbol_raises() -> None:
    with pytest.raises(ValueError, match=r"'5mm'.*Hermann-Mauguin"):
        point_group_from_symbol("5mm")
    with pytest.raises(ValueError, match="PointGroup or a point-group symbol"):
        project_to_point_group(np.eye(3), 42)  # type: ignore[arg-type]


def test_point_group_validation() -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 3, 3\)"):
        PointGroup("1", "triclinic", np.eye(3))
    with pytest.raises(ValueError, match="not orthogonal"):
        PointGroup("1", "triclinic", 1.01 * np.eye(3)[None])
    with pytest.raises(ValueError, match="do not form a group"):
        PointGroup("4", "tetragonal", point_group_from_symbol("4").rotations[:3])
    with pytest.raises(ValueError, match="order 8"):
        PointGroup("4/m", "tetragonal", point_group_from_symbol("4").rotations)
    # Equality is identity, so groups are hashable despite holding an array.
    g = point_group_from_symbol("m")
    assert g == g and hash(g) == hash(g)
    assert "order=2" in repr(g)


def test_groups_closed_by_construction_skip_only_the_closure_check() -> None:
    four = point_group_from_symbol("4").rotations
    # what point_group_of and point_group_from_symbol use; the caller vouches for closure ...
    assert PointGroup("4", "tetragonal", four, _closed=True).order == 4
    PointGroup("4", "tetragonal", four[[0, 1, 3, 2]], _closed=True)  # not checked
    # ... but not for the rest
    with pytest.raises(ValueError, match="not orthogonal"):
        PointGroup("1", "triclinic", 1.01 * np.eye(3)[None], _closed=True)
    with pytest.raises(ValueError, match="order 8"):
        PointGroup("4/m", "tetragonal", four, _closed=True)


# --- counting --------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", POINT_GROUPS)
def test_independent_component_counts(symbol: str) -> None:
    expected = dict(zip(KIND_NAMES, EXPECTED_COUNTS[symbol], strict=True))
    got = {kind: independent_components(kind, symbol) for kind in KIND_NAMES}
    assert got == expected
    assert independent_components(get_kind("scalar"), symbol) == 1


def test_independent_component_table() -> None:
    table = independent_component_table()
    assert list(table) == list(POINT_GROUPS)
    for symbol, counts in table.items():
        assert tuple(counts[k] for k in KIND_NAMES) == EXPECTED_COUNTS[symbol]
    table["1"]["elastic"] = -1  # the caller's copy; the cache is unaffected
    assert independent_component_table()["1"]["elastic"] == 21


def test_counts_do_not_depend_on_frame(rng: np.random.Generator) -> None:
    for symbol in ("-42m", "3m", "-6m2", "23", "m"):
        group = random_group(rng, symbol)
        for kind, n in zip(KIND_NAMES, EXPECTED_COUNTS[symbol], strict=True):
            assert independent_components(kind, group) == n


def test_invalid_kind() -> None:
    with pytest.raises(ValueError, match="unknown tensor kind 'stress'"):
        independent_components("stress", "m-3m")


# --- projection ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KIND_NAMES)
@pytest.mark.parametrize("symbol", ["1", "m", "mm2", "-42m", "3m", "-3m", "-6m2", "6/mmm", "23"])
def test_projection_is_the_group_average(rng: np.random.Generator, kind: str, symbol: str) -> None:
    group = random_group(rng, symbol)
    t = random_tensor(rng, kind)
    brute = sum(rotate(t, g) for g in group.rotations) / group.order
    np.testing.assert_allclose(project_to_point_group(t, group), brute, atol=1e-12)


@pytest.mark.parametrize("rank", [0, 1, 2, 3, 4])
def test_projector_matrix_is_the_mean_of_the_kronecker_powers(
    rng: np.random.Generator, rank: int
) -> None:
    for symbol in POINT_GROUPS:
        group = random_group(rng, symbol)
        powers = [functools.reduce(np.kron, [g] * rank, np.ones((1, 1))) for g in group.rotations]
        matrix = _projector(group, rank).matrix
        np.testing.assert_allclose(matrix, np.mean(powers, axis=0), atol=1e-14, rtol=0)


@pytest.mark.parametrize("rank", [1, 2, 3, 4])
@pytest.mark.parametrize("symbol", ["2/m", "4mm", "-42m", "32", "6mm", "-6m2", "m-3m", "-43m"])
def test_projection_idempotent(rng: np.random.Generator, rank: int, symbol: str) -> None:
    t = rng.normal(size=(3,) * rank)
    for group in (point_group_from_symbol(symbol), random_group(rng, symbol)):
        once = project_to_point_group(t, group)
        twice = project_to_point_group(once, group)
        np.testing.assert_allclose(twice, once, atol=1e-12, rtol=0)
        assert symmetry_violation(once, group) < 1e-12
        assert projection_residual(once, group) < 1e-12


@pytest.mark.parametrize("proper", [True, False])
@pytest.mark.parametrize("kind", KIND_NAMES)
@pytest.mark.parametrize("symbol", ["m", "222", "4", "-4", "3", "-3m", "-6", "6mm", "m-3", "432"])
def test_projection_equivariant(
    rng: np.random.Generator, proper: bool, kind: str, symbol: str
) -> None:
    """P_{Q G Q^T}(Q . T) = Q . P_G(T), for rotations and reflections Q."""
    group = random_group(rng, symbol)
    t = random_tensor(rng, kind)
    for _ in range(3):
        q = random_orthogonal(rng, proper=proper)
        left = project_to_point_group(rotate(t, q), group.rotated(q))
        right = rotate(project_to_point_group(t, group), q)
        np.testing.assert_allclose(left, right, atol=1e-12)


@pytest.mark.parametrize("symbol", CENTROSYMMETRIC)
def test_piezoelectric_vanishes_exactly_with_inversion(
    rng: np.random.Generator, symbol: str
) -> None:
    t = random_tensor(rng, "piezoelectric", batch=(4,))
    for group in (point_group_from_symbol(symbol), random_group(rng, symbol)):
        out = project_to_point_group(t, group, rank=3)
        assert (out == 0.0).all()


def test_cubic_elastic_exact_equalities(rng: np.random.Generator) -> None:
    c = random_tensor(rng, "elastic")
    v = to_voigt(project_to_point_group(c, "m-3m"))
    assert v[0, 0] == v[1, 1] == v[2, 2]
    assert v[0, 1] == v[0, 2] == v[1, 2] == v[1, 0] == v[2, 0] == v[2, 1]
    assert v[3, 3] == v[4, 4] == v[5, 5]
    mask = np.zeros((6, 6), bool)
    mask[:3, :3] = True
    mask[3:, 3:] = np.eye(3, dtype=bool)
    assert (v[~mask] == 0.0).all()
    # The values are the averages of the original ones.
    vc = to_voigt(c)
    assert v[0, 0] == pytest.approx(np.trace(vc[:3, :3]) / 3, abs=1e-14)
    assert v[3, 3] == pytest.approx(np.trace(vc[3:, 3:]) / 3, abs=1e-14)


def test_hexagonal_elastic_structure(rng: np.random.Generator) -> None:
    v = to_voigt(project_to_point_group(random_tensor(rng, "elastic"), "6/mmm"))
    assert v[0, 0] == v[1, 1] and v[0, 2] == v[1, 2] and v[3, 3] == v[4, 4]
    assert v[5, 5] == pytest.approx((v[0, 0] - v[0, 1]) / 2, abs=1e-14)
    assert (v[:3, 3:] == 0.0).all() and v[3, 4] == v[3, 5] == v[4, 5] == 0.0


def test_dielectric_forms(rng: np.random.Generator) -> None:
    t = random_tensor(rng, "dielectric")
    cubic = project_to_point_group(t, "m-3m")
    assert cubic[0, 0] == cubic[1, 1] == cubic[2, 2]
    assert (cubic[~np.eye(3, dtype=bool)] == 0.0).all()
    mono = project_to_point_group(t, "2/m")  # 2-fold along z: eps_xz = eps_yz = 0
    assert mono[0, 2] == mono[1, 2] == mono[2, 0] == mono[2, 1] == 0.0
    assert mono[0, 1] == mono[1, 0] != 0.0


def test_projection_batch_matches_single(rng: np.random.Generator) -> None:
    group = random_group(rng, "-3m")
    batch = random_tensor(rng, "elastic", batch=(2, 3))
    out = project_to_point_group(batch, group, rank=4)
    assert out.shape == batch.shape
    for idx in np.ndindex(2, 3):
        # Equal up to BLAS summation order.
        np.testing.assert_allclose(out[idx], project_to_point_group(batch[idx], group), atol=1e-14)


def test_projection_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"shape \(3, 6\).*from_voigt"):
        project_to_point_group(np.zeros((3, 6)), "mm2")
    with pytest.raises(ValueError, match="rank 4"):
        project_to_point_group(np.zeros((2, 3, 3, 3)), "mm2", rank=4)


def test_symmetry_violation_and_residual(rng: np.random.Generator) -> None:
    group = random_group(rng, "6mm")
    t = random_tensor(rng, "piezoelectric")
    expected = max(np.abs(rotate(t, g) - t).max() for g in group.rotations) / np.abs(t).max()
    assert symmetry_violation(t, group) == pytest.approx(expected, rel=1e-12)
    assert symmetry_violation(np.zeros((3, 3, 3)), group) == 0.0
    assert projection_residual(np.zeros((3, 3, 3)), group) == 0.0
    p = project_to_point_group(t, group)
    resid = projection_residual(t, group)
    assert 0 < resid < 1
    assert resid == pytest.approx(np.linalg.norm(t - p) / np.linalg.norm(t), rel=1e-12)
    # Invariant tensors: a small perturbation gives a small violation.
    noisy = p + 1e-3 * np.abs(p).max() * random_tensor(rng, "piezoelectric")
    assert 0 < symmetry_violation(noisy, group) < 1e-2
    # Odd-rank tensors vanish under inversion: the violation is 2 for any nonzero tensor.
    assert symmetry_violation(t, "-1") == pytest.approx(2.0)


# --- point groups of structures -------------------------------------------------------------


def _fcc(a: float) -> np.ndarray:
    return a / 2 * np.array([[0.0, 1, 1], [1, 0, 1], [1, 1, 0]])


def nacl():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(_fcc(5.64)), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def nacl_conventional():
    from pymatgen.core import Lattice, Structure

    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0] * 3, [0.5] * 3]
    )


def silicon():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice(_fcc(5.43)), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])


def wurtzite(a: float = 3.25, c: float = 5.21, gamma: float = 120.0):
    from pymatgen.core import Lattice, Structure

    u = 0.382
    return Structure(
        Lattice.from_parameters(a, a, c, 90, 90, gamma),
        ["Zn", "Zn", "O", "O"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]],
    )


def rutile():
    from pymatgen.core import Lattice, Structure

    u = 0.3053
    return Structure(
        Lattice.tetragonal(4.594, 2.959),
        ["Ti", "Ti", "O", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [u, u, 0], [-u, -u, 0], [0.5 + u, 0.5 - u, 0.5],
         [0.5 - u, 0.5 + u, 0.5]],
    )  # fmt: skip


def triclinic(centrosymmetric: bool):
    from pymatgen.core import Lattice, Structure

    lattice = Lattice.from_parameters(4.1, 5.3, 6.2, 81, 97, 103)
    if centrosymmetric:
        return Structure(
            lattice, ["Li", "B", "B"], [[0, 0, 0], [0.31, 0.17, 0.62], [-0.31, -0.17, -0.62]]
        )
    return Structure(
        lattice, ["Li", "Be", "B"], [[0, 0, 0], [0.31, 0.17, 0.62], [0.72, 0.44, 0.13]]
    )


STRUCTURES = {
    "NaCl": (nacl, "m-3m", 225, "cubic"),
    "NaCl-conventional": (nacl_conventional, "m-3m", 225, "cubic"),
    "Si": (silicon, "m-3m", 227, "cubic"),
    "ZnO": (wurtzite, "6mm", 186, "hexagonal"),
    "TiO2": (rutile, "4/mmm", 136, "tetragonal"),
    "P1": (lambda: triclinic(False), "1", 1, "triclinic"),
    "P-1": (lambda: triclinic(True), "-1", 2, "triclinic"),
}


def check_exact_group(group: PointGroup) -> None:
    rot = group.rotations
    assert max_orthogonality_error(rot) < 1e-12
    assert max_closure_error(rot) < 1e-12
    dist = np.abs(rot.reshape(-1, 1, 9) - rot.reshape(1, -1, 9)).max(axis=2)
    assert (dist + np.eye(len(rot)) * 9 > 0.1).all(), "duplicate operations"


def check_maps_lattice_to_itself(group: PointGroup, structure, atol: float = 1e-6) -> None:
    """Every g maps the translation lattice onto itself: A^-1 g A is an integer matrix."""
    prim = structure.get_primitive_structure()
    a = prim.lattice.matrix.T
    w = np.linalg.inv(a) @ group.rotations @ a
    np.testing.assert_allclose(w, np.round(w), atol=atol)


# None: moyo's search (the default); 5.0: spglib's, with an angle tolerance (the importers')
ENGINES = pytest.mark.parametrize("angle_tolerance", [None, 5.0], ids=["moyo", "spglib"])


@ENGINES
@pytest.mark.parametrize("name", list(STRUCTURES))
def test_point_group_of_structures(name: str, angle_tolerance: float | None) -> None:
    build, symbol, number, system = STRUCTURES[name]
    structure = build()
    group = point_group_of(structure, angle_tolerance=angle_tolerance)
    assert group.symbol == symbol
    assert group.space_group_number == number
    assert group.crystal_system == system
    assert group.order == ORDERS[symbol]
    check_exact_group(group)
    check_maps_lattice_to_itself(group, structure)


def test_point_group_of_distorted_lattice_is_still_exact() -> None:
    """A relaxed-looking lattice (a != b, gamma != 120 by 1e-4) still gives an exact group."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    ideal = wurtzite(a=3.25, gamma=120.004)
    stretched = Lattice(ideal.lattice.matrix * [[1.0], [1.0002], [1.0]])  # b longer than a
    structure = Structure(stretched, ideal.species, ideal.frac_coords)

    naive = np.array(
        [op.rotation_matrix for op in SpacegroupAnalyzer(structure).get_symmetry_operations(True)]
    )
    assert max_orthogonality_error(naive) > 1e-5  # the straightforward operations are not exact
    group = point_group_of(structure)
    assert group.symbol == "6mm"
    check_exact_group(group)
    # ... and the exact ones are within the lattice distortion of them.
    unique = np.unique(naive.round(8), axis=0)
    assert same_rotation_sets(group.rotations, unique, atol=1e-3)


@ENGINES
@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
@pytest.mark.parametrize("name", ["NaCl", "ZnO", "TiO2", "P-1"])
def test_point_group_of_rotated_structure(
    rng: np.random.Generator, name: str, proper: bool, angle_tolerance: float | None
) -> None:
    from pymatgen.core import Lattice, Structure

    structure = STRUCTURES[name][0]()
    q = random_orthogonal(rng, proper=proper)
    moved = Structure(
        Lattice(structure.lattice.matrix @ q.T), structure.species, structure.frac_coords
    )
    group = point_group_of(structure, angle_tolerance=angle_tolerance)
    moved_group = point_group_of(moved, angle_tolerance=angle_tolerance)
    assert moved_group.symbol == group.symbol
    check_exact_group(moved_group)
    assert same_rotation_sets(moved_group.rotations, q @ group.rotations @ q.T, atol=1e-10)
    # Projecting the rotated tensor with the rotated structure's group commutes with rotation.
    for kind in KIND_NAMES:
        t = random_tensor(rng, kind)
        left = project_to_point_group(rotate(t, q), moved_group)
        right = rotate(project_to_point_group(t, group), q)
        np.testing.assert_allclose(left, right, atol=1e-10)


@ENGINES
@pytest.mark.parametrize("name", ["NaCl-conventional", "ZnO", "TiO2"])
def test_point_group_of_supercell(name: str, angle_tolerance: float | None) -> None:
    # A 2x1x1 supercell of a cubic cell has a tetragonal lattice: the operations in the
    # supercell basis miss the 3-folds, but the crystal's point group is unchanged.
    structure = STRUCTURES[name][0]()
    group = point_group_of(structure, angle_tolerance=angle_tolerance)
    super_group = point_group_of(structure * (2, 1, 1), angle_tolerance=angle_tolerance)
    assert super_group.symbol == group.symbol
    assert super_group.space_group_number == group.space_group_number
    assert same_rotation_sets(super_group.rotations, group.rotations, atol=1e-12)


def test_spglib_sees_the_cell_spacegroupanalyzer_gives_it() -> None:
    """point_group_of calls spglib directly, on the cell pymatgen's analyzer would build."""
    from pymatgen.core import Lattice, Species, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    spinel_like = Structure(
        Lattice.cubic(8.1),
        [Species("Fe", 3), Species("Fe", 2), "O", Species("Fe", 3), "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], [0.5, 0, 0.5], [0.75, 0.75, 0.75]],
    )
    for structure in [*(build() for build, *_ in STRUCTURES.values()), spinel_like]:
        lattice, frac, numbers = _spglib_cell(structure)
        theirs = SpacegroupAnalyzer(structure)._cell
        np.testing.assert_array_equal(lattice, np.array(theirs[0]))
        np.testing.assert_array_equal(frac, np.array(theirs[1]))
        assert numbers == list(theirs[2])
    assert _spglib_cell(spinel_like)[2] == [1, 2, 3, 1, 3]


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_moyo_and_spglib_find_the_same_operations(name: str) -> None:
    structure = STRUCTURES[name][0]()
    moyo = point_group_of(structure)
    spglib = point_group_of(structure, angle_tolerance=5.0)
    assert (moyo.symbol, moyo.space_group_number, moyo.space_group_symbol) == (
        spglib.symbol,
        spglib.space_group_number,
        spglib.space_group_symbol,
    )
    assert same_rotation_sets(moyo.rotations, spglib.rotations, atol=1e-12)


def test_search_engine_follows_the_angle_tolerance(monkeypatch) -> None:
    from crystensor.tensors import symmetry

    calls = []
    search = symmetry._moyo_search
    monkeypatch.setattr(symmetry, "_moyo_search", lambda *args: calls.append(args) or search(*args))
    point_group_of(nacl(), angle_tolerance=5.0)
    assert calls == []
    assert point_group_of(nacl()).symbol == "m-3m"
    assert len(calls) == 1


def test_spglib_searches_when_moyo_fails(monkeypatch) -> None:
    from crystensor.tensors import symmetry

    expected = point_group_of(wurtzite())

    def broken(*args):
        raise RuntimeError("moyo failed")

    monkeypatch.setattr(symmetry, "_moyo_search", broken)
    group = point_group_of(wurtzite())
    assert (group.symbol, group.space_group_number) == ("6mm", 186)
    assert same_rotation_sets(group.rotations, expected.rotations, atol=1e-12)


@ENGINES
def test_no_symmetry_is_a_clear_error(angle_tolerance: float | None) -> None:
    from pymatgen.core import Lattice, Structure

    overlapping = Structure(Lattice.cubic(3.0), ["Na", "Na"], [[0, 0, 0], [0, 0, 1e-4]])
    with pytest.raises(
        ValueError,
        match=r"no symmetry found for Na2 with symprec=0.01; try a different symprec \(e.g. 0.1\)",
    ):
        point_group_of(overlapping, angle_tolerance=angle_tolerance)


def test_point_group_of_rejects_non_structures() -> None:
    with pytest.raises(ValueError, match="expected a pymatgen Structure, got ndarray"):
        point_group_of(np.eye(3))  # type: ignore[arg-type]


def test_import_is_light() -> None:
    code = (
        "import sys, crystensor.tensors.symmetry; "
        "print(any(m.split('.')[0] in ('pymatgen', 'spglib', 'moyopy') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- real data -------------------------------------------------------------------------------


def read_elastic_rows(path, n: int) -> list[dict[str, str]]:
    csv.field_size_limit(10**8)
    rows = []
    with gzip.open(path, "rt") as f:
        f.readline()  # a '# ref: ...' citation line precedes the header
        for row in csv.DictReader(f):
            rows.append(row)
            if len(rows) == n:
                break
    return rows


def test_elastic_dataset_is_consistent_with_poscar_frame(shared_data) -> None:
    from pymatgen.io.vasp import Poscar

    path = shared_data / "matminer-2018" / "elastic_tensor.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    violations = []
    for row in read_elastic_rows(path, 100):
        structure = Poscar.from_str(row["poscar"]).structure
        group = point_group_of(structure)
        check_exact_group(group)
        c = from_voigt(np.array(json.loads(row["elastic_tensor_original"]), dtype=float))
        violations.append(symmetry_violation(c, group))
        projected = project_to_point_group(c, group)
        assert symmetry_violation(projected, group) < 1e-12
    violations = np.array(violations)
    # Measured on the first 100: 97 under 0.05, median ~1e-4, max ~0.09 (hexagonal DFT noise).
    assert (violations < 0.05).sum() >= 90
    assert np.median(violations) < 0.01
    assert violations.max() < 0.3


def test_moyo_and_spglib_agree_on_real_structures(shared_data) -> None:
    """The first 300 matminer elastic structures: the same group from both searches.

    (Of the 5199 distinct structures of the shared tensor sets 12 differ, all at the tolerance edge;
    ``benchmarks/symmetry_search.py`` lists them.)
    """
    from pymatgen.io.vasp import Poscar

    path = shared_data / "matminer-2018" / "elastic_tensor.csv.gz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    for row in read_elastic_rows(path, 300):
        structure = Poscar.from_str(row["poscar"]).structure
        moyo = point_group_of(structure)
        spglib = point_group_of(structure, angle_tolerance=5.0)
        assert moyo.space_group_number == spglib.space_group_number, row["material_id"]
        assert same_rotation_sets(moyo.rotations, spglib.rotations, atol=1e-9)
