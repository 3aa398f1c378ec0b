"""Derived properties: hand-computed cases, pymatgen, rotation invariance, the matminer data."""

from __future__ import annotations

import dataclasses
import doctest
import gzip
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

from crystensor.tensors import properties
from crystensor.tensors.properties import (
    dielectric_properties,
    elastic_properties,
    piezoelectric_properties,
)
from crystensor.tensors.voigt import from_voigt, to_voigt
from tests.helpers import random_orthogonal, rotate

MANDEL = np.array([1.0, 1.0, 1.0, np.sqrt(2.0), np.sqrt(2.0), np.sqrt(2.0)])
ELASTIC_SCALARS = (
    "k_voigt",
    "k_reuss",
    "k_vrh",
    "g_voigt",
    "g_reuss",
    "g_vrh",
    "youngs_modulus",
    "poisson_ratio",
    "universal_anisotropy",
)
# pymatgen ElasticTensor attribute and the factor that converts it to our units.
PYMATGEN_NAMES = {
    "k_voigt": ("k_voigt", 1.0),
    "k_reuss": ("k_reuss", 1.0),
    "k_vrh": ("k_vrh", 1.0),
    "g_voigt": ("g_voigt", 1.0),
    "g_reuss": ("g_reuss", 1.0),
    "g_vrh": ("g_vrh", 1.0),
    "youngs_modulus": ("y_mod", 1e-9),  # pymatgen's y_mod is in Pa (9e9 K G / (3K + G))
    "poisson_ratio": ("homogeneous_poisson", 1.0),
    "universal_anisotropy": ("universal_anisotropy", 1.0),
}
HALF_SHEAR = np.array([1.0, 1.0, 1.0, 0.5, 0.5, 0.5])


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def random_stiffness(rng: np.random.Generator, scale: float = 100.0) -> np.ndarray:
    """A random positive-definite 6x6 Voigt stiffness (GPa), built from an SPD Mandel matrix."""
    a = rng.normal(size=(6, 6))
    mandel = scale * (a @ a.T / 6.0 + 0.2 * np.eye(6))
    return mandel / np.outer(MANDEL, MANDEL)


def cubic_stiffness(c11: float, c12: float, c44: float) -> np.ndarray:
    c = np.zeros((6, 6))
    c[:3, :3] = c12
    c[[0, 1, 2], [0, 1, 2]] = c11
    c[[3, 4, 5], [3, 4, 5]] = c44
    return c


def longitudinal(e_full: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """e_ijk u_i u_j u_k for unit vectors ``directions`` (n, 3)."""
    return np.einsum("ijk,ni,nj,nk->n", e_full, directions, directions, directions)


def random_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    u = rng.normal(size=(n, 3))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


def read_matminer_csv(path: Path):
    """A matminer-2018 csv; its first line is a '# ref: ...' citation, not the header."""
    pd = pytest.importorskip("pandas")
    if not path.is_file():
        pytest.skip(f"{path} not present")
    with gzip.open(path, "rt") as handle:
        first = handle.readline()
    return pd.read_csv(path, skiprows=1 if first.startswith("#") else 0)


def stack(column) -> np.ndarray:
    """Nested-list strings -> one float array."""
    return np.array([json.loads(s) for s in column], dtype=np.float64)


def assert_json_clean(result) -> dict:
    data = result.as_dict()
    text = json.dumps(data, allow_nan=False)  # strict JSON: no NaN / Infinity
    # fields that do not apply (None, e.g. sound velocities without a structure) are left out
    field_names = {
        f.name for f in dataclasses.fields(result) if getattr(result, f.name) is not None
    }
    assert set(data) == field_names | {"units"}
    assert set(data["units"]) == field_names
    return json.loads(text)


# ---------------------------------------------------------------------------------------------
# fixtures: the real datasets (skipped without ../shared/data)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def elastic_data(shared_data):
    df = read_matminer_csv(shared_data / "matminer-2018/elastic_tensor.csv.gz")
    return df, stack(df["elastic_tensor_original"])


@pytest.fixture(scope="module")
def dielectric_data(shared_data):
    df = read_matminer_csv(shared_data / "matminer-2018/dielectric_constant.csv.gz")
    return df, stack(df["e_electronic"]), stack(df["e_total"])


@pytest.fixture(scope="module")
def piezo_data(shared_data):
    """The 941 Voigt tensors and our eij_max in the dataset's convention (halved shear columns).

    Computed once (about 2 s) and shared by the piezoelectric dataset tests.
    """
    df = read_matminer_csv(shared_data / "matminer-2018/piezoelectric_tensor.csv.gz")
    voigt = stack(df["piezoelectric_tensor"])
    results = [piezoelectric_properties(e * HALF_SHEAR) for e in voigt]
    return df, voigt, results


# ---------------------------------------------------------------------------------------------
# elastic
# ---------------------------------------------------------------------------------------------


def test_elastic_cubic_hand_values():
    c11, c12, c44 = 250.0, 100.0, 80.0
    p = elastic_properties(cubic_stiffness(c11, c12, c44))
    assert p.k_voigt == pytest.approx((c11 + 2 * c12) / 3, rel=1e-14)
    assert p.k_reuss == pytest.approx((c11 + 2 * c12) / 3, rel=1e-12)
    assert p.g_voigt == pytest.approx((c11 - c12 + 3 * c44) / 5, rel=1e-14)
    g_reuss = 5 * (c11 - c12) * c44 / (4 * c44 + 3 * (c11 - c12))
    assert p.g_reuss == pytest.approx(g_reuss, rel=1e-12)
    np.testing.assert_allclose(
        p.eigenvalues, sorted([c11 + 2 * c12, c11 - c12, c11 - c12, c44, c44, c44]), rtol=1e-12
    )
    # Kelvin moduli of a cubic crystal: C11 + 2 C12 (= 3K), C11 - C12 (twice), 2 C44 (3 times)
    np.testing.assert_allclose(
        p.kelvin_moduli, sorted([c11 + 2 * c12, c11 - c12, c11 - c12, *[2 * c44] * 3]), rtol=1e-12
    )
    assert p.born_stable


def test_elastic_isotropic_matches_lame():
    lam, mu = 60.0, 40.0
    p = elastic_properties(cubic_stiffness(lam + 2 * mu, lam, mu))
    for name in ("g_voigt", "g_reuss", "g_vrh"):
        assert getattr(p, name) == pytest.approx(mu, rel=1e-12)
    assert p.k_vrh == pytest.approx(lam + 2 * mu / 3, rel=1e-12)
    assert p.youngs_modulus == pytest.approx(mu * (3 * lam + 2 * mu) / (lam + mu), rel=1e-12)
    assert p.poisson_ratio == pytest.approx(lam / (2 * (lam + mu)), rel=1e-12)
    assert p.universal_anisotropy == pytest.approx(0.0, abs=1e-12)


def test_elastic_full_tensor_and_voigt_give_the_same(rng):
    c = random_stiffness(rng)
    a, b = elastic_properties(c), elastic_properties(from_voigt(c))
    assert a.as_dict() == b.as_dict()


def test_elastic_matches_pymatgen_on_random_tensors(rng):
    elasticity = pytest.importorskip("pymatgen.analysis.elasticity")
    for _ in range(25):
        c = random_stiffness(rng, scale=rng.uniform(10.0, 500.0))
        ours = elastic_properties(c)
        theirs = elasticity.ElasticTensor.from_voigt(c)
        for name, (attr, factor) in PYMATGEN_NAMES.items():
            assert getattr(ours, name) == pytest.approx(
                factor * getattr(theirs, attr), rel=1e-10, abs=1e-12
            ), name


def test_elastic_follows_pymatgen_for_slightly_asymmetric_input(rng, caplog):
    elasticity = pytest.importorskip("pymatgen.analysis.elasticity")
    c = random_stiffness(rng)
    c[0, 1] += 0.05 * np.abs(c).max()  # 5 % asymmetry: logged; moduli from the matrix as given
    with caplog.at_level(logging.WARNING, logger=properties.__name__):
        ours = elastic_properties(c)
    assert "not symmetric" in caplog.text
    # pymatgen accepts it silently: its symmetry check covers only the minor symmetries.
    theirs = elasticity.ElasticTensor.from_voigt(c)
    for name, (attr, factor) in PYMATGEN_NAMES.items():
        assert getattr(ours, name) == pytest.approx(factor * getattr(theirs, attr), rel=1e-10)
    np.testing.assert_allclose(ours.eigenvalues, np.linalg.eigvalsh(0.5 * (c + c.T)))


@pytest.mark.parametrize("proper", [True, False])
def test_elastic_scalars_are_rotation_invariant(rng, proper):
    unstable = random_stiffness(rng)
    unstable[2, 2] = -50.0  # not positive definite
    for c in (random_stiffness(rng), random_stiffness(rng), unstable):
        reference = elastic_properties(c)
        for _ in range(5):
            rotated = elastic_properties(rotate(from_voigt(c), random_orthogonal(rng, proper)))
            for name in ELASTIC_SCALARS:
                assert getattr(rotated, name) == pytest.approx(
                    getattr(reference, name), rel=1e-9, abs=1e-9
                ), name
            np.testing.assert_allclose(rotated.kelvin_moduli, reference.kelvin_moduli, rtol=1e-9)
            assert rotated.born_stable == reference.born_stable
            # The Voigt eigenvalues depend on the frame; only their signs (inertia) do not.
            np.testing.assert_array_equal(
                np.sign(rotated.eigenvalues), np.sign(reference.eigenvalues)
            )
    assert not elastic_properties(unstable).born_stable


def test_voigt_eigenvalues_are_frame_dependent_kelvin_moduli_are_not(rng):
    c = random_stiffness(rng)
    rotated = to_voigt(rotate(from_voigt(c), random_orthogonal(rng, proper=True)))
    a, b = elastic_properties(c), elastic_properties(rotated)
    assert not np.allclose(a.eigenvalues, b.eigenvalues, rtol=1e-3)
    np.testing.assert_allclose(a.kelvin_moduli, b.kelvin_moduli, rtol=1e-10)
    # Kelvin moduli are the eigenvalues of the Mandel matrix D C D.
    np.testing.assert_allclose(
        a.kelvin_moduli, np.linalg.eigvalsh(np.outer(MANDEL, MANDEL) * c), rtol=1e-12
    )


def test_born_stability_sign_test():
    c = cubic_stiffness(250.0, 100.0, 80.0)
    assert elastic_properties(c).born_stable
    assert not elastic_properties(cubic_stiffness(100.0, 150.0, 80.0)).born_stable  # C11 < C12
    assert not elastic_properties(cubic_stiffness(250.0, 100.0, -1.0)).born_stable  # C44 < 0


@pytest.mark.parametrize(
    "c",
    [
        np.full((6, 6), 100.0),  # rank 1, exactly singular
        np.diag([300.0, 300.0, 300.0, 80.0, 80.0, 0.0]),  # zero shear stiffness
        np.zeros((6, 6)),
    ],
    ids=["rank1", "zero-c66", "zeros"],
)
def test_singular_stiffness_gives_nan_reuss_not_an_error(c, caplog):
    with caplog.at_level(logging.WARNING, logger=properties.__name__):
        p = elastic_properties(c)
    assert "singular" in caplog.text
    for name in ("k_reuss", "g_reuss", "k_vrh", "g_vrh", "youngs_modulus", "poisson_ratio"):
        assert np.isnan(getattr(p, name)), name
    assert np.isnan(p.universal_anisotropy)
    assert np.isfinite(p.k_voigt) and np.isfinite(p.g_voigt)
    assert not p.born_stable
    data = assert_json_clean(p)
    assert data["k_reuss"] is None
    assert data["born_stable"] is False


def test_elastic_as_dict_is_json_with_units(rng):
    p = elastic_properties(random_stiffness(rng))
    data = assert_json_clean(p)
    assert data["units"]["k_vrh"] == "GPa"
    assert data["units"]["youngs_modulus"] == "GPa"
    assert data["units"]["poisson_ratio"] == "1"
    assert data["k_vrh"] == p.k_vrh
    assert data["eigenvalues"] == p.eigenvalues.tolist()


def test_results_are_immutable(rng):
    p = elastic_properties(random_stiffness(rng))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.k_vrh = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        p.eigenvalues[0] = 0.0


def test_elastic_dataset_hill_moduli_match_pymatgen(elastic_data):
    """K_VRH and G_VRH of all 1181 matminer tensors agree with pymatgen to 1e-6 relative.

    Measured: 1181 of 1181 (largest relative difference ~1e-13).
    """
    elasticity = pytest.importorskip("pymatgen.analysis.elasticity")
    _, tensors = elastic_data
    assert len(tensors) == 1181
    ours = np.array([[(p := elastic_properties(c)).k_vrh, p.g_vrh] for c in tensors])
    theirs = []
    for c in tensors:
        t = elasticity.ElasticTensor.from_voigt(c)
        theirs.append([t.k_vrh, t.g_vrh])
    rel = np.abs(ours - np.array(theirs)) / np.abs(np.array(theirs))
    assert (rel < 1e-6).all(), f"{int((rel >= 1e-6).any(axis=1).sum())} entries differ"


@pytest.mark.slow
def test_elastic_dataset_all_properties_match_pymatgen(elastic_data):
    """Every scalar of all 1181 tensors against pymatgen (~20 s: pymatgen recomputes a lot)."""
    elasticity = pytest.importorskip("pymatgen.analysis.elasticity")
    _, tensors = elastic_data
    for c in tensors:
        ours = elastic_properties(c)
        theirs = elasticity.ElasticTensor.from_voigt(c)
        for name, (attr, factor) in PYMATGEN_NAMES.items():
            assert getattr(ours, name) == pytest.approx(
                factor * getattr(theirs, attr), rel=1e-9, abs=1e-12
            ), name
        assert ours.born_stable  # the data README: all positive definite


def test_elastic_dataset_columns_loosely(elastic_data):
    """The csv's own moduli, which were computed by de Jong et al. from the same tensors.

    Measured within 1 % relative: K_VRH, G_VRH, K_Voigt, G_Voigt, K_Reuss, G_Reuss and
    poisson_ratio 1181 / 1181; elastic_anisotropy 1177 / 1181 (largest miss 2.2 %). Only
    1144-1152 agree to 1e-6: the stored tensors and moduli were rounded separately. Not an
    exact test.
    """
    df, tensors = elastic_data
    results = [elastic_properties(c) for c in tensors]
    columns = {
        "K_VRH": "k_vrh",
        "G_VRH": "g_vrh",
        "K_Voigt": "k_voigt",
        "G_Voigt": "g_voigt",
        "K_Reuss": "k_reuss",
        "G_Reuss": "g_reuss",
        "poisson_ratio": "poisson_ratio",
        "elastic_anisotropy": "universal_anisotropy",
    }
    for column, name in columns.items():
        ours = np.array([getattr(p, name) for p in results])
        ref = df[column].to_numpy(dtype=float)
        within = np.abs(ours - ref) <= 0.01 * np.abs(ref) + 1e-9
        assert within.mean() >= 0.99, f"{column}: {within.sum()} / {len(ref)} within 1 %"
    assert all(p.born_stable for p in results)


# ---------------------------------------------------------------------------------------------
# dielectric
# ---------------------------------------------------------------------------------------------


def test_dielectric_hand_values(rng):
    principal = np.array([2.0, 3.0, 5.0])
    r = random_orthogonal(rng, proper=True)
    eps = r @ np.diag(principal) @ r.T
    p = dielectric_properties(eps)
    np.testing.assert_allclose(p.eigenvalues, principal, rtol=1e-12)
    assert p.polycrystalline_average == pytest.approx(10.0 / 3.0, rel=1e-14)
    assert p.refractive_index == pytest.approx(np.sqrt(10.0 / 3.0), rel=1e-14)
    axes = p.principal_axes
    np.testing.assert_allclose(axes.T @ axes, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(eps @ axes, axes * p.eigenvalues, atol=1e-12)
    # each axis is the matching column of r, up to sign; the largest component is positive
    np.testing.assert_allclose(np.abs(axes.T @ r), np.eye(3), atol=1e-12)
    assert (axes[np.abs(axes).argmax(axis=0), range(3)] > 0).all()


@pytest.mark.parametrize("proper", [True, False])
def test_dielectric_rotation_invariance(rng, proper):
    a = rng.normal(size=(3, 3))
    eps = a @ a.T + np.eye(3)
    reference = dielectric_properties(eps)
    for _ in range(10):
        r = random_orthogonal(rng, proper)
        p = dielectric_properties(rotate(eps, r))
        np.testing.assert_allclose(p.eigenvalues, reference.eigenvalues, rtol=1e-12)
        assert p.polycrystalline_average == pytest.approx(reference.polycrystalline_average)
        assert p.refractive_index == pytest.approx(reference.refractive_index, rel=1e-13)
        # the axes rotate with the tensor (up to the sign convention)
        np.testing.assert_allclose(
            np.abs(np.sum(p.principal_axes * (r @ reference.principal_axes), axis=0)),
            1.0,
            rtol=1e-9,
        )


def test_dielectric_nonpositive_average_gives_nan_index():
    p = dielectric_properties(np.diag([-3.0, 1.0, 1.0]))
    assert p.polycrystalline_average == pytest.approx(-1.0 / 3.0)
    assert np.isnan(p.refractive_index)
    assert assert_json_clean(p)["refractive_index"] is None


def test_dielectric_dataset_columns(dielectric_data):
    """n, poly_electronic, poly_total of the 1056 entries, stored rounded to 2 decimals.

    Measured: all three agree within the rounding (0.005) for 1056 / 1056 entries; n is
    sqrt(trace(e_electronic) / 3), the Materials Project definition.
    """
    df, electronic, total = dielectric_data
    assert len(df) == 1056
    el = [dielectric_properties(e) for e in electronic]
    tot = [dielectric_properties(e) for e in total]
    checks = {
        "n": np.array([p.refractive_index for p in el]),
        "poly_electronic": np.array([p.polycrystalline_average for p in el]),
        "poly_total": np.array([p.polycrystalline_average for p in tot]),
    }
    for column, ours in checks.items():
        within = np.abs(ours - df[column].to_numpy(dtype=float)) <= 0.005 + 1e-9
        assert within.mean() >= 0.99, f"{column}: {within.sum()} / {len(within)} agree"
    # The mean eigenvalue is the trace / 3 also for the slightly non-symmetric entries (two
    # e_electronic tensors are asymmetric by more than 1 % relative, 44 of the 2112 by more
    # than 0.1 %; the eigenvalues are those of the symmetric part).
    for p in el + tot:
        assert p.eigenvalues.mean() == pytest.approx(p.polycrystalline_average, rel=1e-12)
    assert min(p.eigenvalues[0] for p in tot) > 0  # the README: no negative eigenvalues


# ---------------------------------------------------------------------------------------------
# piezoelectric
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_piezo_only_e333(sign):
    e = np.zeros((3, 3, 3))
    e[2, 2, 2] = sign
    p = piezoelectric_properties(e)
    assert p.eij_max == pytest.approx(1.0, rel=1e-12)
    # sign-normalised: the longitudinal coefficient along the direction is +eij_max
    np.testing.assert_allclose(p.max_direction, [0.0, 0.0, sign], atol=1e-6)
    assert longitudinal(e, p.max_direction[None])[0] == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("d", [0.3, -0.16])
def test_piezo_cubic_e14(d):
    """-43m: e14 = e25 = e36 = d gives e_ijk u_i u_j u_k = 6 d x y z, max 2|d|/sqrt(3) on <111>."""
    e = np.zeros((3, 6))
    e[0, 3] = e[1, 4] = e[2, 5] = d
    p = piezoelectric_properties(e)
    assert p.eij_max == pytest.approx(2 * abs(d) / np.sqrt(3), rel=1e-12)
    np.testing.assert_allclose(np.abs(p.max_direction), np.full(3, 1 / np.sqrt(3)), atol=1e-6)
    assert np.sign(d) * np.prod(p.max_direction) > 0


def test_piezo_voigt_and_full_agree_and_only_symmetric_part_counts(rng):
    e = rng.normal(size=(3, 6))
    full = from_voigt(e)
    a, b = piezoelectric_properties(e), piezoelectric_properties(full)
    assert a.eij_max == b.eij_max
    np.testing.assert_array_equal(a.max_direction, b.max_direction)
    antisymmetric = rng.normal(size=(3, 3, 3))
    antisymmetric = antisymmetric - antisymmetric.transpose(0, 2, 1)
    c = piezoelectric_properties(full + antisymmetric)
    assert c.eij_max == pytest.approx(a.eij_max, rel=1e-12)


def test_piezo_direction_reaches_the_maximum(rng):
    dense = random_directions(np.random.default_rng(7), 100_000)
    for _ in range(20):
        e = from_voigt(rng.normal(size=(3, 6)))
        p = piezoelectric_properties(e)
        u = p.max_direction
        assert np.linalg.norm(u) == pytest.approx(1.0, rel=1e-14)
        assert longitudinal(e, u[None])[0] == pytest.approx(p.eij_max, rel=1e-12)
        assert np.abs(longitudinal(e, dense)).max() <= p.eij_max * (1 + 1e-12)
        # stationary on the sphere: the tangential part of the gradient vanishes
        grad = (
            np.einsum("ajk,j,k->a", e, u, u)
            + np.einsum("iak,i,k->a", e, u, u)
            + np.einsum("ija,i,j->a", e, u, u)
        )
        tangential = grad - (grad @ u) * u
        assert np.linalg.norm(tangential) <= 1e-6 * np.abs(e).max()


@pytest.mark.parametrize("proper", [True, False])
def test_piezo_rotation_invariance(rng, proper):
    for _ in range(5):
        e = from_voigt(rng.normal(size=(3, 6)))
        reference = piezoelectric_properties(e)
        for _ in range(3):
            r = random_orthogonal(rng, proper)
            rotated = rotate(e, r)
            p = piezoelectric_properties(rotated)
            assert p.eij_max == pytest.approx(reference.eij_max, rel=1e-10)
            # R u is a maximising direction of the rotated tensor
            along = longitudinal(rotated, (r @ reference.max_direction)[None])[0]
            assert along == pytest.approx(p.eij_max, rel=1e-10)


def test_piezo_is_deterministic(rng):
    e = rng.normal(size=(3, 6))
    a, b = piezoelectric_properties(e), piezoelectric_properties(e.copy())
    assert a.eij_max == b.eij_max
    np.testing.assert_array_equal(a.max_direction, b.max_direction)


def test_piezo_zero_tensor():
    p = piezoelectric_properties(np.zeros((3, 6)))
    assert p.eij_max == 0.0
    assert np.isnan(p.max_direction).all()
    data = assert_json_clean(p)
    assert data["max_direction"] == [None, None, None]
    assert data["units"]["eij_max"] == "C/m^2"


def test_piezo_grid_covering_radius_bounds_the_margin():
    """The refinement's candidate margin assumes no direction is farther than _COVERING from
    the grid; check it with many random directions (measured max ~0.0425 rad vs 0.0474)."""
    grid, _ = properties._sphere_grid()
    probe = random_directions(np.random.default_rng(3), 100_000)
    chord, _ = cKDTree(grid).query(probe)
    assert 2 * np.arcsin(chord.max() / 2) < properties._COVERING


def test_piezo_dataset_eij_max_column(piezo_data):
    """The matminer ``eij_max`` column (de Jong et al. 2015) against our maximum.

    The column is NOT max |e_ijk u_i u_j u_k| of the stored Voigt tensor with e_ijk = e_iJ
    (pymatgen's convention, ours): that agrees within 0.1 % for only 288 / 941 entries (those
    whose maximum comes from the e_i1..e_i3 columns alone). It is that maximum for the Voigt
    tensor with the shear columns halved, searched over a finite set of directions (v_max has
    components k/7): measured 823 / 941 within 0.1 %, 936 / 941 within 1 %, 941 / 941 within
    5 %. The 5 misses are 3 values below 3e-5 stored with 6 decimals and 2 low-symmetry entries
    (point groups 3 and 1) where the dataset's coarse search found 1.0-1.2 % less. Ours is
    never below the column by more than the 6-decimal rounding, as expected of the true maximum.
    """
    df, _, results = piezo_data
    assert len(df) == 941
    ours = np.array([p.eij_max for p in results])
    ref = df["eij_max"].to_numpy(dtype=float)
    within = np.abs(ours - ref) <= 0.01 * ref
    assert within.mean() >= 0.99, f"{within.sum()} / {len(ref)} within 1 %"
    assert (ours >= ref - 1e-3 * ref - 5e-7).all()


def test_piezo_dataset_v_max_reproduces_eij_max(piezo_data):
    """Confirms the dataset's convention: the longitudinal coefficient of the halved-shear
    tensor along the stored v_max (Cartesian, IEEE frame) is the stored eij_max up to sign.

    Measured: 936 / 941 within 0.1 % (the 5 others are values below 2e-4 rounded to 6 decimals).
    """
    df, voigt, _ = piezo_data
    v_max = stack(df["v_max"])
    v_max /= np.linalg.norm(v_max, axis=1, keepdims=True)
    along = np.einsum("nijk,ni,nj,nk->n", from_voigt(voigt * HALF_SHEAR, rank=3), *[v_max] * 3)
    ref = df["eij_max"].to_numpy(dtype=float)
    agree = np.abs(np.abs(along) - ref) <= 1e-3 * ref + 5e-7
    assert agree.mean() >= 0.99, f"{agree.sum()} / {len(ref)} agree"


def test_piezo_dataset_no_direction_exceeds_the_maximum(piezo_data):
    _, voigt, results = piezo_data
    full = from_voigt(voigt * HALF_SHEAR, rank=3).reshape(len(voigt), 27)
    dense = random_directions(np.random.default_rng(11), 20_000)
    cubes = np.einsum("ni,nj,nk->nijk", dense, dense, dense).reshape(len(dense), 27)
    grid_max = np.abs(cubes @ full.T).max(axis=0)  # (941,)
    ours = np.array([p.eij_max for p in results])
    assert (grid_max <= ours * (1 + 1e-12)).all()
    # and the returned directions reach it
    directions = np.array([p.max_direction for p in results])
    along = np.einsum("nijk,ni,nj,nk->n", full.reshape(-1, 3, 3, 3), *[directions] * 3)
    np.testing.assert_allclose(along, ours, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function", "shape"),
    [
        (elastic_properties, (6, 5)),
        (elastic_properties, (36,)),
        (elastic_properties, (3, 3, 3)),
        (elastic_properties, (2, 6, 6)),
        (dielectric_properties, (3,)),
        (dielectric_properties, (6,)),
        (dielectric_properties, (2, 2)),
        (piezoelectric_properties, (6, 3)),
        (piezoelectric_properties, (3, 3)),
        (piezoelectric_properties, (3, 3, 3, 3)),
    ],
)
def test_bad_shapes_raise(function, shape):
    with pytest.raises(ValueError, match="got shape " + re.escape(str(shape))):
        function(np.ones(shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    ("function", "shape"),
    [
        (elastic_properties, (6, 6)),
        (elastic_properties, (3, 3, 3, 3)),
        (dielectric_properties, (3, 3)),
        (piezoelectric_properties, (3, 6)),
        (piezoelectric_properties, (3, 3, 3)),
    ],
)
def test_non_finite_values_raise(function, shape, bad):
    x = np.ones(shape)
    x.flat[4] = bad
    with pytest.raises(ValueError, match="non-finite"):
        function(x)


def test_non_numeric_input_raises():
    with pytest.raises(ValueError, match="must be real"):
        dielectric_properties(np.eye(3) * (1 + 1j))
    with pytest.raises(ValueError, match="numeric array"):
        dielectric_properties([[1, 2, 3], [4, 5]])
    with pytest.raises(ValueError, match="numeric array"):
        piezoelectric_properties("abc")


def test_docstring_examples_run():
    result = doctest.testmod(properties, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3
    assert result.failed == 0
