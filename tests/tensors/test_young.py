"""The paper's explicit decomposition: reconstruction, invariant sub-tensors, equivariance."""

import numpy as np
import pytest

from crystensor.tensors import young
from crystensor.tensors.kinds import get_kind
from tests.helpers import random_orthogonal, rotate

RANKS = {"dielectric": 2, "piezoelectric": 3, "elastic": 4}


def random_tensor(rng, name):
    kind = get_kind(name)
    return kind.symmetrize_indices(rng.normal(size=kind.cartesian_shape))


@pytest.mark.parametrize("name", RANKS)
def test_reconstruction_is_exact(rng, name):
    t = random_tensor(rng, name)
    np.testing.assert_allclose(young.reconstruct(young.split(t), RANKS[name]), t, atol=1e-13)


@pytest.mark.parametrize("name", RANKS)
def test_sub_tensors_are_fully_symmetric_and_traceless(rng, name):
    for part in young.split(random_tensor(rng, name)):
        v = np.asarray(part.value)
        assert v.ndim == part.l
        if v.ndim >= 2:
            np.testing.assert_allclose(young.symmetrize_fully(v), v, atol=1e-13)
            np.testing.assert_allclose(np.trace(v, axis1=0, axis2=1), 0, atol=1e-12)


@pytest.mark.parametrize("name", RANKS)
@pytest.mark.parametrize("proper", [True, False])
def test_sub_tensors_are_equivariant(rng, name, proper):
    """Traces commute with O(3); epsilon contractions pick up det(R) (pseudo-tensors)."""
    rot = random_orthogonal(rng, proper)
    det = np.linalg.det(rot)
    t = random_tensor(rng, name)
    before = {p.name: p.value for p in young.split(t)}
    after = {p.name: p.value for p in young.split(rotate(t, rot))}
    pseudo = {"b"}  # one epsilon: b is a pseudo-tensor; t = eps.eps.A has two, so is a tensor
    for key, value in before.items():
        expected = rotate(np.asarray(value), rot) * (det if key in pseudo else 1.0)
        np.testing.assert_allclose(after[key], expected, atol=1e-12)


def test_piezo_trace_vectors_relation(rng):
    """The paper: the other trace of the mixed part is -1/2 of v (factors 1 and -2)."""
    e = random_tensor(rng, "piezoelectric")
    mixed = e - young.symmetrize_fully(e)
    v = np.einsum("ijj->i", mixed)
    np.testing.assert_allclose(np.einsum("iik->k", mixed), -v / 2, atol=1e-13)


def test_paper_dielectric_residue_needs_one_third():
    eps = np.diag([2.0, 3.0, 7.0])
    parts = {p.name: p.value for p in young.split_dielectric(eps)}
    trace = parts["T"]
    assert np.trace(parts["R"]) == pytest.approx(0)
    # the printed R = eps - T g is not traceless
    assert np.trace(eps - trace * np.eye(3)) == pytest.approx(-2 * trace)


def test_bad_rank():
    with pytest.raises(ValueError, match="rank"):
        young.split(np.zeros((3,)))
    with pytest.raises(ValueError, match="shape"):
        young.split_elastic(np.zeros((3, 3)))


def test_paper_elastic_symmetric_part_needs_iljk(rng):
    c = random_tensor(rng, "elastic")
    sym = young.symmetrize_fully(c)
    ikjl, iljk, klij = (np.einsum(f"{p}->ijkl", c) for p in ("ikjl", "iljk", "klij"))
    np.testing.assert_allclose((c + ikjl + iljk) / 3, sym, atol=1e-13)  # corrected formula
    printed = (c + ikjl + klij) / 3
    assert np.abs(young.symmetrize_fully(printed) - printed).max() > 1e-3  # not symmetric
