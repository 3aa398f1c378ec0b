"""make_physical: floors on Kelvin moduli and principal permittivities, equivariant, nearest."""

from __future__ import annotations

import numpy as np
import pytest

from crystensor.tensors.kinds import get_kind
from crystensor.tensors.physical import (
    DIELECTRIC_FLOOR,
    ELASTIC_FLOOR,
    make_physical,
    shift_to_floor,
)
from crystensor.tensors.symmetry import point_group_from_symbol, project_to_point_group
from tests.helpers import random_orthogonal, rotate

ELASTIC = get_kind("elastic")
DIELECTRIC = get_kind("dielectric")
PIEZO = get_kind("piezoelectric")
MANDEL = np.array([1.0, 1.0, 1.0, np.sqrt(2.0), np.sqrt(2.0), np.sqrt(2.0)])


def kelvin(c: np.ndarray) -> np.ndarray:
    v = ELASTIC.to_voigt(c)
    return np.linalg.eigvalsh(MANDEL[:, None] * v * MANDEL[None, :])


def unstable_elastic(rng: np.random.Generator) -> np.ndarray:
    """A random symmetric Voigt matrix with some negative Kelvin moduli, as a 4-tensor."""
    a = rng.normal(size=(6, 6)) * 60.0
    v = 0.5 * (a + a.T) + 40.0 * np.eye(6)
    assert np.linalg.eigvalsh(v)[0] < 0
    return ELASTIC.from_voigt(v)


def bad_dielectric(rng: np.random.Generator) -> np.ndarray:
    q = random_orthogonal(rng, True)
    return q @ np.diag([0.3, 1.7, 6.0]) @ q.T


def test_dielectric_eigenvalues_floored_axes_kept(rng):
    eps = bad_dielectric(rng)
    out, adj = make_physical(eps, DIELECTRIC)
    values, vectors = np.linalg.eigh(out)
    np.testing.assert_allclose(values, [1.0, 1.7, 6.0], atol=1e-12)
    np.testing.assert_allclose(np.abs(vectors.T @ np.linalg.eigh(eps)[1]), np.eye(3), atol=1e-9)
    assert adj.changed and adj.smallest_before == pytest.approx(0.3)
    assert adj.floor == DIELECTRIC_FLOOR and adj.quantity == "principal permittivity"
    assert adj.relative_change == pytest.approx(0.7 / np.linalg.norm([0.3, 1.7, 6.0]))


def test_elastic_kelvin_moduli_floored(rng):
    c = unstable_elastic(rng)
    out, adj = make_physical(c, ELASTIC)
    before, after = kelvin(c), kelvin(out)
    assert adj.changed and adj.smallest_before == pytest.approx(before[0])
    np.testing.assert_allclose(after, np.maximum(before, ELASTIC_FLOOR), atol=1e-9)
    assert after[0] >= ELASTIC_FLOOR - 1e-9
    # index symmetry of an elastic tensor: ijkl = jikl = ijlk = klij
    for perm in ((1, 0, 2, 3), (0, 1, 3, 2), (2, 3, 0, 1)):
        np.testing.assert_array_equal(out, out.transpose(perm))


@pytest.mark.parametrize("kind", [ELASTIC, DIELECTRIC])
def test_valid_tensor_is_returned_bit_for_bit(rng, kind):
    if kind is ELASTIC:
        v = rng.normal(size=(6, 6))
        t = kind.from_voigt(v @ v.T * 20.0 + 50.0 * np.eye(6))
    else:
        t = bad_dielectric(rng) + 2.0 * np.eye(3)
    out, adj = make_physical(t, kind)
    assert out is t or np.array_equal(out, t)
    assert not adj.changed and adj.relative_change == 0.0


@pytest.mark.parametrize("proper", [True, False])
def test_equivariant_under_rotations_and_reflections(rng, proper):
    for _ in range(5):
        q = random_orthogonal(rng, proper)
        for kind, t in ((ELASTIC, unstable_elastic(rng)), (DIELECTRIC, bad_dielectric(rng))):
            out, adj = make_physical(t, kind)
            out_rot, adj_rot = make_physical(rotate(t, q), kind)
            np.testing.assert_allclose(out_rot, rotate(out, q), atol=1e-10 * np.abs(t).max())
            assert adj_rot.relative_change == pytest.approx(adj.relative_change, rel=1e-9)


def test_point_group_invariance_survives(rng):
    """A tensor invariant under 6/mmm stays invariant (up to rounding) after the floor."""
    group = point_group_from_symbol("6/mmm")
    c = project_to_point_group(unstable_elastic(rng), group)
    assert kelvin(c)[0] < 0
    out, adj = make_physical(c, ELASTIC)
    assert adj.changed
    np.testing.assert_allclose(project_to_point_group(out, group), out, atol=1e-9)


def test_nearest_valid_tensor(rng):
    """No other valid tensor is closer (Frobenius norm of the Cartesian tensor)."""
    c = unstable_elastic(rng)
    out, _ = make_physical(c, ELASTIC)
    best = np.linalg.norm(out - c)
    for _ in range(200):
        candidate = out + ELASTIC.from_voigt(np.diag(rng.uniform(0, 5, 6)))  # still valid
        a = rng.normal(size=(6, 6))
        candidate = candidate + ELASTIC.from_voigt(0.05 * (a + a.T))
        if kelvin(candidate)[0] >= ELASTIC_FLOOR:
            assert np.linalg.norm(candidate - c) >= best - 1e-9


def test_piezoelectric_has_no_floor(rng):
    e = rng.normal(size=(3, 3, 3))
    e = 0.5 * (e + e.transpose(0, 2, 1))
    out, adj = make_physical(e, PIEZO)
    assert adj is None and np.array_equal(out, e)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="shape"):
        make_physical(np.eye(6), ELASTIC)
    with pytest.raises(ValueError, match="non-finite"):
        make_physical(np.full((3, 3), np.nan), DIELECTRIC)


def test_shift_to_floor_keeps_symmetry_and_reaches_the_floor(rng):
    group = point_group_from_symbol("m-3m")
    c = project_to_point_group(unstable_elastic(rng), group)
    out = project_to_point_group(make_physical(c, ELASTIC)[0], group)  # exact equalities
    nudged = out - 1e-8 * ELASTIC.from_voigt(np.diag([1.0, 1.0, 1.0, 0.5, 0.5, 0.5]))
    assert kelvin(nudged)[0] < ELASTIC_FLOOR
    lifted = shift_to_floor(nudged, ELASTIC)
    assert kelvin(lifted)[0] >= ELASTIC_FLOOR
    np.testing.assert_allclose(lifted, nudged, atol=1e-7)
    v = ELASTIC.to_voigt(lifted)
    assert v[0, 0] == v[1, 1] == v[2, 2] and v[3, 3] == v[4, 4] == v[5, 5] and v[0, 3] == 0.0
    eps = np.diag([0.999999, 2.0, 2.0])
    assert np.linalg.eigvalsh(shift_to_floor(eps, DIELECTRIC))[0] >= DIELECTRIC_FLOOR
    assert shift_to_floor(lifted, ELASTIC) is lifted
