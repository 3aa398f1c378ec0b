"""Issue 14 part 3: compliance, directional Young's modulus, Pugh ratio, sound velocities, Debye
temperature, Born conditions per crystal system, d = e S, and the dielectric target rule.

Values are checked against pymatgen's ``ElasticTensor`` directly, against closed forms, and for
invariance / equivariance under random rotations and reflections in float64.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from pymatgen.analysis.elasticity import ElasticTensor
from pymatgen.core import Structure

from crystensor.tensors import properties
from crystensor.tensors.analysis import analyse_tensor, derived_properties
from crystensor.tensors.kinds import get_kind
from crystensor.tensors.properties import (
    born_stability_criteria,
    directional_youngs_modulus,
    elastic_properties,
    piezoelectric_properties,
    piezoelectric_strain_constants,
)
from crystensor.tensors.voigt import from_voigt, to_voigt
from tests.helpers import random_orthogonal, rotate, silicon, zno_wurtzite

REPO = Path(__file__).resolve().parents[2]
ZNO_VOIGT = np.array(
    json.loads((REPO / "examples/tensors/ZnO-mp-2133-elastic.json").read_text())["voigt"]
)
ZNO_POSCAR = REPO / "examples/structures/ZnO-mp-2133.POSCAR"
MANDEL = np.array([1.0, 1.0, 1.0, np.sqrt(2.0), np.sqrt(2.0), np.sqrt(2.0)])
ENGINEERING = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
# Invariant scalars of ElasticProperties (the Voigt eigenvalues are frame-dependent).
INVARIANT = (
    "k_voigt",
    "k_reuss",
    "k_vrh",
    "g_voigt",
    "g_reuss",
    "g_vrh",
    "youngs_modulus",
    "poisson_ratio",
    "universal_anisotropy",
    "pugh_ratio",
    "youngs_modulus_min",
    "youngs_modulus_max",
)


def cubic_stiffness(c11: float, c12: float, c44: float) -> np.ndarray:
    c = np.zeros((6, 6))
    c[:3, :3] = c12
    c[[0, 1, 2], [0, 1, 2]] = c11
    c[[3, 4, 5], [3, 4, 5]] = c44
    return c


def hexagonal_stiffness(c11: float, c12: float, c13: float, c33: float, c44: float) -> np.ndarray:
    c = np.zeros((6, 6))
    c[:3, :3] = [[c11, c12, c13], [c12, c11, c13], [c13, c13, c33]]
    c[3, 3] = c[4, 4] = c44
    c[5, 5] = (c11 - c12) / 2
    return c


SILICON = cubic_stiffness(165.7, 63.9, 79.6)  # GPa, McSkimin & Andreatch


def random_stiffness(rng: np.random.Generator, scale: float = 100.0) -> np.ndarray:
    """A random positive-definite (triclinic) 6x6 Voigt stiffness, GPa."""
    a = rng.normal(size=(6, 6))
    mandel = scale * (a @ a.T / 6.0 + 0.2 * np.eye(6))
    return mandel / np.outer(MANDEL, MANDEL)


def rotate_voigt(c: np.ndarray, r: np.ndarray) -> np.ndarray:
    return to_voigt(rotate(from_voigt(c), r))


def zno_piezo() -> np.ndarray:
    """A 6mm (wurtzite ZnO-like) stress-constant matrix, C/m^2."""
    e = np.zeros((3, 6))
    e[2, 0] = e[2, 1] = -0.57  # e31
    e[2, 2] = 1.32  # e33
    e[0, 4] = e[1, 3] = -0.48  # e15
    return e


# ---------------------------------------------------------------------------------------------
# against pymatgen
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("voigt", "structure"),
    [(SILICON, silicon()), (ZNO_VOIGT, Structure.from_file(ZNO_POSCAR))],
    ids=["cubic-Si", "hexagonal-ZnO"],
)
def test_values_agree_with_pymatgen(voigt, structure):
    reference = ElasticTensor.from_voigt(voigt)
    p = elastic_properties(voigt, structure=structure)
    np.testing.assert_allclose(p.compliance, 1e3 * reference.compliance_tensor.voigt, rtol=1e-12)
    assert p.pugh_ratio == pytest.approx(reference.g_vrh / reference.k_vrh, rel=1e-12)
    assert p.longitudinal_velocity == pytest.approx(reference.long_v(structure), rel=1e-12)
    assert p.transverse_velocity == pytest.approx(reference.trans_v(structure), rel=1e-12)
    assert p.debye_temperature == pytest.approx(reference.debye_temperature(structure), rel=1e-12)
    assert p.density == pytest.approx(structure.density, rel=1e-12)
    # E(n) = 1 / (S_ijkl n^4) with pymatgen's full compliance (its Voigt factors)
    abc = structure.lattice.matrix / np.array(structure.lattice.abc)[:, None]
    s_full = reference.compliance_tensor
    expected = [1.0 / s_full.einsum_sequence([n] * 4) for n in abc]
    np.testing.assert_allclose(p.youngs_modulus_abc, expected, rtol=1e-12)
    assert p.youngs_modulus_xyz is None


def test_constants_are_scipys():
    """Written out in properties.py (importing scipy.constants is slow); pymatgen uses scipy's."""
    from scipy import constants

    assert properties._HBAR == constants.hbar
    assert properties._BOLTZMANN == constants.k
    amu = constants.physical_constants["atomic mass unit-kilogram relationship"][0]
    assert properties._ATOMIC_MASS == amu


def test_silicon_numbers():
    """Si: the textbook numbers (E<100> = 130 GPa, E<111> = 188 GPa, Theta_D ~ 650 K)."""
    p = elastic_properties(SILICON, structure=silicon(), crystal_system="cubic")
    assert p.youngs_modulus_min == pytest.approx(130.2, abs=0.1)
    assert p.youngs_modulus_max == pytest.approx(187.9, abs=0.1)
    assert 600 < p.debye_temperature < 700
    assert p.born_criteria_system == "cubic" and all(p.born_criteria.values())


def test_directional_youngs_modulus_matches_cartesian_formula(rng):
    c = random_stiffness(rng)
    s_full = np.asarray(ElasticTensor.from_voigt(c).compliance_tensor)
    n = rng.normal(size=(20, 3))
    unit = n / np.linalg.norm(n, axis=1, keepdims=True)
    expected = 1.0 / np.einsum("ijkl,ni,nj,nk,nl->n", s_full, unit, unit, unit, unit)
    np.testing.assert_allclose(directional_youngs_modulus(c, n), expected, rtol=1e-12)
    np.testing.assert_allclose(
        directional_youngs_modulus(from_voigt(c), n[0]), expected[0], rtol=1e-12
    )


def test_directional_youngs_modulus_rejects_zero_directions():
    with pytest.raises(ValueError, match="non-zero"):
        directional_youngs_modulus(SILICON, [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        directional_youngs_modulus(SILICON, [1.0, 0.0])


# ---------------------------------------------------------------------------------------------
# Young's modulus extremes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c11", "c12", "c44"),
    [(165.7, 63.9, 79.6), (250.0, 100.0, 80.0), (200.0, 120.0, 20.0), (120.0, 60.0, 45.0)],
)
def test_cubic_extremes_have_the_closed_form(c11, c12, c44):
    """E<100> = 1/S11 and E<111> = 1/(S11 - 2(S11 - S12 - S44/2)/3); which is the minimum
    depends on the sign of S11 - S12 - S44/2 (Zener ratio above or below 1)."""
    c = cubic_stiffness(c11, c12, c44)
    s = np.linalg.inv(c)
    s11, s12, s44 = s[0, 0], s[0, 1], s[3, 3]
    e100 = 1.0 / s11
    e111 = 1.0 / (s11 - 2.0 * (s11 - s12 - s44 / 2.0) / 3.0)
    p = elastic_properties(c)
    axis = np.array([1.0, 0.0, 0.0])
    diagonal = np.ones(3) / np.sqrt(3.0)
    low, high = (e100, e111) if e100 < e111 else (e111, e100)
    low_dir, high_dir = (axis, diagonal) if e100 < e111 else (diagonal, axis)
    assert p.youngs_modulus_min == pytest.approx(low, rel=1e-12)
    assert p.youngs_modulus_max == pytest.approx(high, rel=1e-12)
    # the directions are <100> and <111> (any of the equivalent ones)
    assert np.sort(np.abs(p.youngs_min_direction)) == pytest.approx(np.sort(low_dir), abs=1e-7)
    assert np.sort(np.abs(p.youngs_max_direction)) == pytest.approx(np.sort(high_dir), abs=1e-7)
    np.testing.assert_allclose(p.youngs_modulus_xyz, [e100] * 3, rtol=1e-12)


def test_isotropic_extremes_are_equal():
    lam, mu = 60.0, 40.0
    p = elastic_properties(cubic_stiffness(lam + 2 * mu, lam, mu))
    assert p.youngs_modulus_min == pytest.approx(p.youngs_modulus, rel=1e-12)
    assert p.youngs_modulus_max == pytest.approx(p.youngs_modulus, rel=1e-12)


def test_hexagonal_extremes_against_a_dense_search():
    """Transversely isotropic: the minimum lies on a cone (a ring of equivalent directions)."""
    p = elastic_properties(ZNO_VOIGT)
    rng = np.random.default_rng(5)
    dense = directional_youngs_modulus(ZNO_VOIGT, rng.normal(size=(100_000, 3)))
    assert dense.min() >= p.youngs_modulus_min * (1 - 1e-12)
    assert dense.max() <= p.youngs_modulus_max * (1 + 1e-12)
    assert dense.min() == pytest.approx(p.youngs_modulus_min, rel=1e-4)
    along = directional_youngs_modulus(
        ZNO_VOIGT, np.stack([p.youngs_min_direction, p.youngs_max_direction])
    )
    np.testing.assert_allclose(along, [p.youngs_modulus_min, p.youngs_modulus_max], rtol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_random_triclinic_extremes_against_a_dense_search(seed):
    c = random_stiffness(np.random.default_rng(seed))
    p = elastic_properties(c)
    dense = directional_youngs_modulus(
        c, np.random.default_rng(100 + seed).normal(size=(50_000, 3))
    )
    assert dense.min() >= p.youngs_modulus_min * (1 - 1e-12)
    assert dense.max() <= p.youngs_modulus_max * (1 + 1e-12)
    along = directional_youngs_modulus(
        c, np.stack([p.youngs_min_direction, p.youngs_max_direction])
    )
    np.testing.assert_allclose(along, [p.youngs_modulus_min, p.youngs_modulus_max], rtol=1e-12)
    for u in (p.youngs_min_direction, p.youngs_max_direction):
        assert np.linalg.norm(u) == pytest.approx(1.0)
        assert u[np.abs(u).argmax()] > 0


# ---------------------------------------------------------------------------------------------
# rotations and reflections
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
def test_invariants_unchanged_and_directions_rotate(proper):
    rng = np.random.default_rng(11 if proper else 12)
    for _ in range(4):
        c = random_stiffness(rng)
        r = random_orthogonal(rng, proper)
        a, b = elastic_properties(c), elastic_properties(rotate_voigt(c, r))
        for name in INVARIANT:
            assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-10), name
        # the Mandel compliance has invariant eigenvalues
        kelvin = [
            np.linalg.eigvalsh(p.compliance * np.outer(1 / MANDEL, 1 / MANDEL)) for p in (a, b)
        ]
        np.testing.assert_allclose(kelvin[1], kelvin[0], rtol=1e-10)
        for field in ("youngs_min_direction", "youngs_max_direction"):
            moved, direct = r @ getattr(a, field), getattr(b, field)
            assert abs(moved @ direct) == pytest.approx(1.0, abs=1e-8), field  # u and -u agree
        assert b.born_stable and all(b.born_criteria.values())


def test_axes_follow_the_structure_frame():
    """Rotating the crystal and the tensor together leaves E along a, b, c unchanged."""
    structure = zno_wurtzite()
    r = random_orthogonal(np.random.default_rng(3), True)
    turned = Structure(structure.lattice.matrix @ r.T, structure.species, structure.frac_coords)
    a = elastic_properties(ZNO_VOIGT, structure=structure)
    b = elastic_properties(rotate_voigt(ZNO_VOIGT, r), structure=turned)
    np.testing.assert_allclose(b.youngs_modulus_abc, a.youngs_modulus_abc, rtol=1e-10)
    for name in ("longitudinal_velocity", "transverse_velocity", "debye_temperature"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-10)


# ---------------------------------------------------------------------------------------------
# unstable tensors
# ---------------------------------------------------------------------------------------------


def test_not_positive_definite_gives_nan_extremes_and_a_warning(caplog):
    c = cubic_stiffness(250.0, 100.0, -5.0)  # C44 < 0
    with caplog.at_level(logging.WARNING, logger=properties.__name__):
        p = elastic_properties(c, structure=silicon(), crystal_system="cubic")
    assert "not positive definite" in caplog.text and "sound velocities" in caplog.text
    assert not p.born_stable
    assert np.isnan(p.youngs_modulus_min) and np.isnan(p.youngs_modulus_max)
    assert np.isnan(p.youngs_min_direction).all()
    assert np.isnan(p.longitudinal_velocity) and np.isnan(p.debye_temperature)
    assert p.density == pytest.approx(silicon().density)
    assert p.born_criteria == {"C11 - C12 > 0": True, "C11 + 2 C12 > 0": True, "C44 > 0": False}
    # E along a, b, c is still the uniaxial response (negative where the shear enters)
    along = directional_youngs_modulus(c, silicon().lattice.matrix)
    np.testing.assert_allclose(p.youngs_modulus_abc, along, rtol=1e-12)
    assert along.min() < 0 < along.max()  # c is along z, where C44 does not enter
    data = p.as_dict()
    json.dumps(data, allow_nan=False)
    assert data["youngs_modulus_min"] is None and data["debye_temperature"] is None


def test_singular_stiffness_never_raises(caplog):
    c = np.zeros((6, 6))
    c[0, 0] = 100.0
    with caplog.at_level(logging.WARNING, logger=properties.__name__):
        p = elastic_properties(c, structure=silicon())
    assert "singular" in caplog.text
    assert np.isnan(p.compliance).all() and np.isnan(p.youngs_modulus_abc).all()
    assert np.isnan(p.transverse_velocity)


# ---------------------------------------------------------------------------------------------
# Born stability conditions
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c", "failing"),
    [
        (cubic_stiffness(250.0, 100.0, 80.0), set()),
        (cubic_stiffness(100.0, 150.0, 80.0), {"C11 - C12 > 0"}),
        (cubic_stiffness(100.0, -60.0, 80.0), {"C11 + 2 C12 > 0"}),
        (cubic_stiffness(250.0, 100.0, -1.0), {"C44 > 0"}),
    ],
)
def test_cubic_conditions(c, failing):
    system, conditions = born_stability_criteria(c, "cubic")
    assert system == "cubic"
    assert list(conditions) == ["C11 - C12 > 0", "C11 + 2 C12 > 0", "C44 > 0"]
    assert {name for name, ok in conditions.items() if not ok} == failing
    assert all(conditions.values()) == elastic_properties(c).born_stable


@pytest.mark.parametrize(
    ("c", "failing"),
    [
        (hexagonal_stiffness(200.0, 90.0, 80.0, 220.0, 50.0), set()),
        (hexagonal_stiffness(200.0, 90.0, 190.0, 220.0, 50.0), {"2 C13^2 < C33 (C11 + C12)"}),
        (hexagonal_stiffness(200.0, 90.0, 80.0, 220.0, -3.0), {"C44 > 0"}),
        (hexagonal_stiffness(100.0, 120.0, 10.0, 220.0, 50.0), {"C11 > |C12|", "C66 > 0"}),
    ],
)
def test_hexagonal_conditions(c, failing):
    system, conditions = born_stability_criteria(c, "hexagonal")
    assert system == "hexagonal"
    assert {name for name, ok in conditions.items() if not ok} == failing
    assert all(conditions.values()) == elastic_properties(c).born_stable


def test_triclinic_conditions_are_the_leading_minors(rng):
    c = random_stiffness(rng)
    system, conditions = born_stability_criteria(c, "triclinic")
    assert system == "triclinic: general (leading principal minors)"
    assert len(conditions) == 6 and all(conditions.values())
    # make it indefinite: a negative Kelvin modulus along a random mode
    w, v = np.linalg.eigh(MANDEL[:, None] * c * MANDEL[None, :])
    w[0] = -5.0
    bad = (v * w) @ v.T / np.outer(MANDEL, MANDEL)
    system, conditions = born_stability_criteria(bad, "triclinic")
    assert not all(conditions.values())
    assert not elastic_properties(bad).born_stable
    assert born_stability_criteria(bad)[0] == "general (leading principal minors)"


def test_low_symmetry_classes_and_labels():
    tet = hexagonal_stiffness(200.0, 90.0, 80.0, 220.0, 50.0)
    tet[5, 5] = 70.0  # C66 free: tetragonal I
    assert born_stability_criteria(tet, "tetragonal")[0] == "tetragonal I"
    tet[0, 5], tet[5, 0], tet[1, 5], tet[5, 1] = 8.0, 8.0, -8.0, -8.0  # C16 = -C26: class II
    system, conditions = born_stability_criteria(tet, "tetragonal")
    assert system == "tetragonal II" and "2 C16^2 < C66 (C11 - C12)" in conditions
    trig = hexagonal_stiffness(200.0, 90.0, 80.0, 220.0, 50.0)
    for (i, j), v in {(0, 3): 10.0, (1, 3): -10.0, (4, 5): 10.0}.items():  # C14 = -C24 = C56
        trig[i, j] = trig[j, i] = v
    assert born_stability_criteria(trig, "trigonal")[0] == "trigonal I"
    assert born_stability_criteria(trig, "rhombohedral")[0] == "trigonal I"
    for (i, j), v in {(0, 4): 6.0, (1, 4): -6.0, (3, 5): -6.0}.items():  # C15 = -C25 = -C46
        trig[i, j] = trig[j, i] = v
    system, conditions = born_stability_criteria(trig, "trigonal")
    assert system == "trigonal II" and conditions["C14^2 + C15^2 < C44 C66"]
    ortho = np.diag([200.0, 180.0, 160.0, 50.0, 60.0, 70.0])
    ortho[0, 1] = ortho[1, 0] = 300.0  # C11 C22 < C12^2
    system, conditions = born_stability_criteria(ortho, "orthorhombic")
    assert system == "orthorhombic" and not conditions["C11 C22 > C12^2"]


@pytest.mark.parametrize("proper", [True, False])
def test_system_conditions_found_in_a_rotated_frame(proper):
    """A tensor not in the standard setting is rotated to the principal axes of C_ijkk or
    C_ikjk (uniaxial and orthorhombic systems), else the general criterion is used."""
    r = random_orthogonal(np.random.default_rng(8), proper)
    hexagonal = rotate_voigt(hexagonal_stiffness(200.0, 90.0, 80.0, 220.0, 50.0), r)
    system, conditions = born_stability_criteria(hexagonal, "hexagonal")
    assert system.startswith("hexagonal, in the principal axes of C_i")
    assert list(conditions)[-1] == "C66 > 0" and all(conditions.values())
    ortho = np.diag([200.0, 180.0, 160.0, 50.0, 60.0, 70.0])
    ortho[:3, :3] += [[0, 40, 30], [40, 0, 20], [30, 20, 0]]
    system, _ = born_stability_criteria(rotate_voigt(ortho, r), "orthorhombic")
    assert system.startswith("orthorhombic, in the principal axes")
    system, conditions = born_stability_criteria(rotate_voigt(SILICON, r), "cubic")
    assert system.startswith("general (leading principal minors): not of cubic form")
    assert len(conditions) == 6 and all(conditions.values())


def test_wrong_system_falls_back_to_the_general_criterion():
    system, conditions = born_stability_criteria(
        random_stiffness(np.random.default_rng(2)), "cubic"
    )
    assert system.startswith("general") and "% off" in system and len(conditions) == 6


def test_unknown_crystal_system_raises():
    with pytest.raises(ValueError, match="unknown crystal system 'cubical'"):
        elastic_properties(SILICON, crystal_system="cubical")


def test_system_conditions_agree_with_positive_definiteness(rng):
    """Within each system's form the Mouhat-Coudert conditions are necessary and sufficient."""
    agree = 0
    for _ in range(200):
        c11, c33, c44 = rng.uniform(-50, 300, size=3)
        c12, c13 = rng.uniform(-150, 200, size=2)
        for system, c in (
            ("cubic", cubic_stiffness(c11, c12, c44)),
            ("hexagonal", hexagonal_stiffness(c11, c12, c13, c33, c44)),
        ):
            _, conditions = born_stability_criteria(c, system)
            definite = bool(np.linalg.eigvalsh(c)[0] > 0)
            assert all(conditions.values()) == definite, (system, c)
            agree += definite
    assert agree > 20  # both outcomes were exercised


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------


def test_as_dict_is_strict_json_and_leaves_out_what_does_not_apply():
    without = elastic_properties(ZNO_VOIGT).as_dict()
    assert "youngs_modulus_xyz" in without and "debye_temperature" not in without
    assert "youngs_modulus_abc" not in without and "youngs_modulus_abc" not in without["units"]
    with_structure = elastic_properties(
        ZNO_VOIGT, structure=zno_wurtzite(), crystal_system="hexagonal"
    ).as_dict()
    text = json.dumps(with_structure, allow_nan=False)
    data = json.loads(text)
    assert data["units"]["compliance"] == "1/TPa"
    assert data["units"]["longitudinal_velocity"] == "m/s"
    assert data["units"]["debye_temperature"] == "K"
    assert data["born_criteria"] == {
        "C11 > |C12|": True,
        "2 C13^2 < C33 (C11 + C12)": True,
        "C44 > 0": True,
        "C66 > 0": True,
    }
    assert set(data) - {"units"} == set(data["units"])


# ---------------------------------------------------------------------------------------------
# piezoelectric strain constants d = e S
# ---------------------------------------------------------------------------------------------


def test_strain_constants_of_a_6mm_crystal_by_hand():
    """d31 = e31 (S11 + S12) + e33 S13, d33 = 2 e31 S13 + e33 S33, d15 = e15 S44 (pC/N)."""
    e = zno_piezo()
    s = np.linalg.inv(ZNO_VOIGT)  # 1/GPa, Voigt (engineering shear)
    e31, e33, e15 = e[2, 0], e[2, 2], e[0, 4]
    d = piezoelectric_strain_constants(e, ZNO_VOIGT)
    assert d[2, 0] == pytest.approx(1e3 * (e31 * (s[0, 0] + s[0, 1]) + e33 * s[0, 2]), rel=1e-12)
    assert d[2, 1] == pytest.approx(1e3 * (e31 * (s[1, 0] + s[1, 1]) + e33 * s[1, 2]), rel=1e-12)
    assert d[2, 2] == pytest.approx(1e3 * (e31 * (s[2, 0] + s[2, 1]) + e33 * s[2, 2]), rel=1e-12)
    assert d[0, 4] == pytest.approx(1e3 * e15 * s[4, 4], rel=1e-12)
    assert d[1, 3] == pytest.approx(1e3 * e15 * s[3, 3], rel=1e-12)
    zero = np.ones((3, 6), dtype=bool)
    zero[2, :3] = zero[0, 4] = zero[1, 3] = False
    assert np.all(d[zero] == 0.0)
    # ZnO is about d33 = 12, d31 = -5, d15 = -13 pC/N
    assert 10 < d[2, 2] < 13 and -6 < d[2, 0] < -4 and -14 < d[0, 4] < -12


def test_strain_constants_equal_the_cartesian_contraction(rng):
    """d_ijk = e_ilm S_lmjk with pymatgen's full compliance; d_iJ = d_ijk, 2 d_ijk on shear."""
    e = rng.normal(size=(3, 6))
    c = random_stiffness(rng)
    s_full = np.asarray(ElasticTensor.from_voigt(c).compliance_tensor)
    d_full = 1e3 * np.einsum("ilm,lmjk->ijk", from_voigt(e), s_full)
    d = piezoelectric_strain_constants(e, c)
    np.testing.assert_allclose(d, to_voigt(d_full) * ENGINEERING, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(
        piezoelectric_strain_constants(from_voigt(e), from_voigt(c)), d, rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
def test_strain_constants_are_equivariant(proper):
    rng = np.random.default_rng(21 if proper else 22)
    for _ in range(4):
        e = from_voigt(rng.normal(size=(3, 6)))
        c = random_stiffness(rng)
        r = random_orthogonal(rng, proper)
        d = from_voigt(piezoelectric_strain_constants(e, c) / ENGINEERING)
        d_rotated = from_voigt(
            piezoelectric_strain_constants(rotate(e, r), rotate_voigt(c, r)) / ENGINEERING
        )
        np.testing.assert_allclose(d_rotated, rotate(d, r), atol=1e-10)
        a = piezoelectric_properties(e, elastic=c)
        b = piezoelectric_properties(rotate(e, r), elastic=rotate_voigt(c, r))
        assert b.dij_max == pytest.approx(a.dij_max, rel=1e-10)
        assert b.eij_max == pytest.approx(a.eij_max, rel=1e-10)
        np.testing.assert_allclose(b.d_max_direction, r @ a.d_max_direction, atol=1e-7)


def test_dij_max_against_a_dense_search():
    p = piezoelectric_properties(zno_piezo(), elastic=ZNO_VOIGT)
    d_full = from_voigt(p.d_voigt / ENGINEERING)
    u = np.random.default_rng(4).normal(size=(50_000, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    dense = np.einsum("ijk,ni,nj,nk->n", d_full, u, u, u)
    assert np.abs(dense).max() <= p.dij_max * (1 + 1e-12)
    along = np.einsum("ijk,i,j,k->", d_full, *[p.d_max_direction] * 3)
    assert along == pytest.approx(p.dij_max, rel=1e-12)


def test_piezo_with_a_singular_stiffness_gives_nan_d(caplog):
    with caplog.at_level(logging.WARNING, logger=properties.__name__):
        p = piezoelectric_properties(zno_piezo(), elastic=np.zeros((6, 6)))
    assert "singular" in caplog.text
    assert np.isnan(p.d_voigt).all() and np.isnan(p.dij_max)
    data = p.as_dict()
    json.dumps(data, allow_nan=False)
    assert data["units"]["d_voigt"] == "pC/N" and data["dij_max"] is None
    assert "d_voigt" not in piezoelectric_properties(zno_piezo()).as_dict()


def test_piezo_elastic_shape_is_checked():
    with pytest.raises(ValueError, match="elastic stiffness"):
        piezoelectric_properties(zno_piezo(), elastic=np.eye(3))


# ---------------------------------------------------------------------------------------------
# derived_properties / analyse_tensor
# ---------------------------------------------------------------------------------------------


def test_refractive_index_only_for_the_electronic_target():
    eps = np.diag([4.0, 4.0, 9.0])
    dielectric = get_kind("dielectric")
    assert "refractive_index" in derived_properties(eps, dielectric)  # the old call
    static = derived_properties(eps, dielectric, target="dielectric")
    assert "refractive_index" not in static and "refractive_index" not in static["units"]
    electronic = derived_properties(eps, "dielectric", target="dielectric-electronic")
    assert electronic["refractive_index"] == pytest.approx(np.sqrt(17 / 3))


def test_derived_properties_checks_its_options():
    eps = np.eye(3)
    with pytest.raises(ValueError, match="unknown property"):
        derived_properties(eps, "dielectric", target="optical")
    with pytest.raises(ValueError, match="holds elastic tensors, not dielectric"):
        derived_properties(eps, "dielectric", target="elastic")
    with pytest.raises(ValueError, match="only for piezoelectric"):
        derived_properties(from_voigt(SILICON), "elastic", elastic=SILICON)
    assert derived_properties(np.array(1.0), "scalar") == {}


def test_derived_properties_passes_structure_and_system():
    props = derived_properties(
        from_voigt(ZNO_VOIGT), "elastic", structure=zno_wurtzite(), crystal_system="hexagonal"
    )
    assert props["born_criteria_system"] == "hexagonal"
    assert props["debye_temperature"] > 0 and "youngs_modulus_abc" in props
    piezo = derived_properties(from_voigt(zno_piezo()), "piezoelectric", elastic=ZNO_VOIGT)
    assert piezo["d_voigt"][2][2] == pytest.approx(
        piezoelectric_strain_constants(zno_piezo(), ZNO_VOIGT)[2, 2]
    )


def test_analyse_tensor_uses_the_structure_and_the_elastic_tensor():
    structure = Structure.from_file(ZNO_POSCAR)
    result = analyse_tensor(from_voigt(ZNO_VOIGT), get_kind("elastic"), structure=structure)
    assert result["properties"]["born_criteria_system"] == "hexagonal"
    assert result["properties"]["longitudinal_velocity"] == pytest.approx(
        ElasticTensor.from_voigt(ZNO_VOIGT).long_v(structure), rel=1e-12
    )
    projected = result["symmetry"]["projected_properties"]
    assert projected["born_criteria_system"] == "hexagonal" and "debye_temperature" in projected

    piezo = analyse_tensor(
        from_voigt(zno_piezo()), get_kind("piezoelectric"), structure=structure, elastic=ZNO_VOIGT
    )
    expected = piezoelectric_strain_constants(zno_piezo(), ZNO_VOIGT)
    np.testing.assert_allclose(piezo["properties"]["d_voigt"], expected, rtol=1e-12)
    # the projected report uses the stiffness projected onto 6mm as well
    d_projected = np.array(piezo["symmetry"]["projected_properties"]["d_voigt"])
    assert d_projected[0, 0] == 0.0 and d_projected[2, 0] == pytest.approx(d_projected[2, 1])

    static = analyse_tensor(np.diag([5.0, 5.0, 6.0]), get_kind("dielectric"), target="dielectric")
    assert "refractive_index" not in static["properties"]
