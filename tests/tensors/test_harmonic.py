"""Cartesian <-> irreps: orthonormality, round trips, equivariance, and e3nn's conventions."""

import numpy as np
import pytest
import torch
from e3nn import o3
from e3nn.io import CartesianTensor

from crystensor.tensors import harmonic, young
from crystensor.tensors.kinds import get_kind
from tests.helpers import random_orthogonal, rotate

TENSOR_KINDS = ["dielectric", "piezoelectric", "elastic"]


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def random_tensor(rng, name, batch=()):
    kind = get_kind(name)
    return kind.symmetrize_indices(rng.normal(size=(*batch, *kind.cartesian_shape)))


@pytest.mark.parametrize("l", range(5))
def test_harmonic_basis_matches_e3nn_spherical_harmonics(rng, l):
    c = harmonic.harmonic_basis(l)
    np.testing.assert_allclose(c @ c.T, np.eye(2 * l + 1), atol=1e-14)
    points = rng.normal(size=(50, 3))
    ours = np.stack([c @ np.reshape(harmonic.kron_power(p[None], l), -1) for p in points])
    theirs = o3.spherical_harmonics(l, torch.tensor(points), normalize=False).numpy()
    ratio = theirs / ours
    np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-10)  # one positive factor per l
    assert ratio[0, 0] > 0


@pytest.mark.parametrize("name", TENSOR_KINDS)
def test_change_of_basis_is_orthonormal(name):
    kind = get_kind(name)
    q = harmonic.change_of_basis(kind)
    assert q.shape == (kind.dim, 3**kind.rank)
    np.testing.assert_allclose(q @ q.T, np.eye(kind.dim), atol=1e-14)
    n = 3**kind.rank
    projector = kind.symmetrize_indices(np.eye(n).reshape((n, *kind.cartesian_shape)))
    np.testing.assert_allclose(q.T @ q, projector.reshape(n, n), atol=1e-14)


@pytest.mark.parametrize("name", TENSOR_KINDS)
def test_round_trip(rng, name):
    t = random_tensor(rng, name, batch=(5,))
    y = harmonic.to_irreps(t, name)
    assert y.shape == (5, get_kind(name).dim)
    np.testing.assert_allclose(harmonic.from_irreps(y, name), t, atol=1e-12)
    y2 = rng.normal(size=(3, get_kind(name).dim))
    np.testing.assert_allclose(
        harmonic.to_irreps(harmonic.from_irreps(y2, name), name), y2, atol=1e-12
    )


@pytest.mark.parametrize("name", TENSOR_KINDS)
@pytest.mark.parametrize("proper", [True, False])
def test_equivariance_against_e3nn_wigner_d(rng, name, proper):
    kind = get_kind(name)
    for _ in range(3):
        rot = random_orthogonal(rng, proper)
        t = random_tensor(rng, name)
        d_e3nn = o3.Irreps(kind.irreps).D_from_matrix(torch.tensor(rot)).numpy()
        np.testing.assert_allclose(harmonic.wigner_d(kind, rot), d_e3nn, atol=1e-12)
        np.testing.assert_allclose(
            harmonic.to_irreps(rotate(t, rot), kind),
            d_e3nn @ harmonic.to_irreps(t, kind),
            atol=1e-12,
        )


@pytest.mark.parametrize("name", TENSOR_KINDS)
def test_agrees_with_e3nn_cartesian_tensor_up_to_fixed_orthogonal_map(rng, name):
    kind = get_kind(name)
    ct = CartesianTensor(kind.index_symmetry)
    assert o3.Irreps(kind.irreps).simplify() == ct.simplify()
    rtp = ct.reduced_tensor_products()
    n = 3**kind.rank
    units = torch.eye(n).reshape(n, *kind.cartesian_shape)
    q_e3nn = ct.from_cartesian(units, rtp).numpy().T  # (dim, n)
    m = harmonic.change_of_basis(kind) @ q_e3nn.T
    np.testing.assert_allclose(m @ m.T, np.eye(kind.dim), atol=1e-12)
    for proper in (True, False):
        d = harmonic.wigner_d(kind, random_orthogonal(rng, proper))
        np.testing.assert_allclose(m @ d, d @ m, atol=1e-12)  # only mixes equal irreps
    t = random_tensor(rng, name)
    y_e3nn = ct.from_cartesian(torch.tensor(t), rtp).numpy()
    np.testing.assert_allclose(harmonic.to_irreps(t, kind), m @ y_e3nn, atol=1e-10)


def test_isotropic_tensors_have_only_scalar_parts():
    delta = np.eye(3)
    y = harmonic.to_irreps(2.5 * delta, "dielectric")
    np.testing.assert_allclose(y, [2.5 * np.sqrt(3), 0, 0, 0, 0, 0], atol=1e-14)
    lam, mu = 50.0, 30.0
    iso = lam * np.einsum("ij,kl->ijkl", delta, delta) + mu * (
        np.einsum("ik,jl->ijkl", delta, delta) + np.einsum("il,jk->ijkl", delta, delta)
    )
    report = harmonic.parts_report(iso, "elastic")
    assert sum(r["share"] for r in report if r["l"] == 0) == pytest.approx(1.0, abs=1e-14)
    assert report[0]["components"][0] > 0  # positive-definite: positive isotropic part


@pytest.mark.parametrize("name", TENSOR_KINDS)
def test_parts_match_explicit_sub_tensors(rng, name):
    """Each irrep block carries exactly the norm of its sub-tensor's harmonic content."""
    kind = get_kind(name)
    t = random_tensor(rng, name)
    y = harmonic.to_irreps(t, kind)
    subs = {p.name: p.value for p in young.split(t)}
    for block in harmonic.irrep_blocks(kind):
        sub = np.reshape(subs[block.part.source], -1)
        expected = harmonic.harmonic_basis(block.part.l) @ sub
        ratio = y[block.slice] @ expected / (expected @ expected)
        np.testing.assert_allclose(y[block.slice], ratio * expected, atol=1e-12)
        assert ratio > 0
    report = harmonic.parts_report(t, kind)
    assert sum(r["share"] for r in report) == pytest.approx(1.0, abs=1e-12)
    assert np.sqrt(sum(r["norm"] ** 2 for r in report)) == pytest.approx(np.linalg.norm(t))


def test_scalar_kind_and_bad_shapes():
    np.testing.assert_allclose(harmonic.to_irreps(np.array([1.5, 2.0]), "scalar"), [[1.5], [2.0]])
    with pytest.raises(ValueError, match="shape"):
        harmonic.to_irreps(np.zeros((3, 3)), "elastic")
    with pytest.raises(ValueError, match="shape"):
        harmonic.from_irreps(np.zeros(5), "dielectric")
    with pytest.raises(ValueError, match="orthogonal"):
        harmonic.wigner_d("elastic", np.ones((3, 3)))
