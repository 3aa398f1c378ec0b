"""J_z basis, harmonic components of symmetric tensors, Appendix C / e3nn bases, Appendix B."""

import doctest
import itertools

import numpy as np
import pytest
import torch
from e3nn import o3
from scipy.special import sph_harm_y

from crystensor.tensors import spherical
from crystensor.tensors.spherical import (
    APPENDIX_B,
    JZ_BASIS,
    PAPER_JZ_BASIS,
    cartesian_from_jz,
    check_appendix_b,
    complex_harmonic_components,
    complex_to_real_sh,
    e3nn_harmonic_components,
    e3nn_to_real_sh,
    harmonic_tensor,
    jz_coefficients,
    jz_components,
    real_harmonic_components,
)
from tests.helpers import random_orthogonal, rotate

DEGREES = [(n, l) for n in range(5) for l in range(n % 2, n + 1, 2)]

# The printed Appendix B numbers that do not hold, as (rank, l, |m|, column): all of rank 3,
# m <= 1 (the correct rows are y_1^0 = a_000 - 2 a_0+-, y_3^0 = a_000 + 3 a_0+-,
# y_1^{+-1} = a_00+- - 2 a_+-+-).
EXPECTED_INCONSISTENT = {
    (3, 1, 0, "000"),
    (3, 1, 0, "0+-"),
    (3, 3, 0, "000"),
    (3, 3, 0, "0+-"),
    (3, 1, 1, "00+"),
    (3, 1, 1, "+-+"),
}
CORRECT_VALUES = {
    (3, 1, 0, "000"): 1.0,
    (3, 1, 0, "0+-"): -2.0,
    (3, 3, 0, "000"): 1.0,
    (3, 3, 0, "0+-"): 3.0,
    (3, 1, 1, "00+"): 1.0,
    (3, 1, 1, "+-+"): -2.0,
}
AXIS = {"+": 0, "0": 1, "-": 2}
FLIP = str.maketrans("+-", "-+")


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def symmetrize(t):
    perms = list(itertools.permutations(range(t.ndim)))
    return sum(np.transpose(t, p) for p in perms) / len(perms)


def power(v, n):
    out = np.ones(())
    for _ in range(n):
        out = np.multiply.outer(out, v)
    return out


def racah_solid(l, m, v):
    """|v|^l C_l^m(v/|v|) from scipy (Condon-Shortley phase included)."""
    r = np.linalg.norm(v)
    theta, phi = np.arccos(v[2] / r), np.arctan2(v[1], v[0])
    return r**l * np.sqrt(4 * np.pi / (2 * l + 1)) * sph_harm_y(l, m, theta, phi)


def rotation_z(phi):
    c, s = np.cos(phi), np.sin(phi)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def random_elastic(rng):
    """A tensor with only the elastic symmetries ij = ji, kl = lk, ij <-> kl."""
    c = rng.normal(size=(3, 3, 3, 3))
    c = c + c.transpose(1, 0, 2, 3)
    c = c + c.transpose(0, 1, 3, 2)
    return c + c.transpose(2, 3, 0, 1)


def paper_row(c, l, m):
    """Evaluate the printed rank-4 row y_l^m on a tensor C: sum of printed value x a_column."""
    a = jz_components(c)
    total = 0.0
    for e in APPENDIX_B:
        if e.rank == 4 and e.l == l and e.m == abs(m):
            column = e.column if m >= 0 else e.column.translate(FLIP)
            total += e.value * a[tuple(AXIS[x] for x in column)]
    return total


def fit_wigner(rot, l, rng):
    """The matrix D with y_l(R . T) = D y_l(T), fitted on powers of random vectors."""
    vs = rng.normal(size=(4 * l + 4, 3))
    before = np.array([complex_harmonic_components(power(v, l), l) for v in vs])
    after = np.array([complex_harmonic_components(power(rot @ v, l), l) for v in vs])
    return np.linalg.lstsq(before, after, rcond=None)[0].T


# --- the J_z basis -------------------------------------------------------------------------


def test_jz_basis_is_unitary_and_differs_from_the_printed_matrix_in_row_minus():
    np.testing.assert_allclose(JZ_BASIS @ JZ_BASIS.conj().T, np.eye(3), atol=1e-15)
    np.testing.assert_allclose(PAPER_JZ_BASIS[:2], JZ_BASIS[:2])
    np.testing.assert_allclose(PAPER_JZ_BASIS[2], -JZ_BASIS[2])


def test_jz_rows_are_racah_harmonics_of_degree_one(rng):
    v = rng.normal(size=3)
    expected = [racah_solid(1, m, v) for m in (1, 0, -1)]
    np.testing.assert_allclose(JZ_BASIS @ v, expected, atol=1e-14)


@pytest.mark.parametrize("n", range(5))
def test_jz_transform_is_unitary_on_tensors(rng, n):
    t = rng.normal(size=(3,) * n) + 1j * rng.normal(size=(3,) * n)
    s = rng.normal(size=(3,) * n)
    a, b = jz_components(t), jz_components(s)
    assert a.shape == (3,) * n
    np.testing.assert_allclose(np.vdot(a, b), np.vdot(t, s), atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(a), np.linalg.norm(t), rtol=1e-13)


@pytest.mark.parametrize("n", range(5))
def test_round_trip(rng, n):
    t = rng.normal(size=(3,) * n)
    back = cartesian_from_jz(jz_components(t))
    np.testing.assert_allclose(back.real, t, atol=1e-13)
    np.testing.assert_allclose(back.imag, 0.0, atol=1e-13)
    a = rng.normal(size=(3,) * n) + 1j * rng.normal(size=(3,) * n)
    np.testing.assert_allclose(jz_components(cartesian_from_jz(a)), a, atol=1e-13)


def test_printed_matrix_does_not_give_the_trace():
    # Appendix B, rank 2: y_0^0 = a_00 - 2 a_+- must be the trace.
    eps = symmetrize(np.random.default_rng(1).normal(size=(3, 3)))
    for basis, gives_trace in [(JZ_BASIS, True), (PAPER_JZ_BASIS, False)]:
        a = basis @ eps @ basis.T
        assert np.isclose(a[1, 1] - 2 * a[0, 2], np.trace(eps)) == gives_trace


# --- complex harmonic components -----------------------------------------------------------


@pytest.mark.parametrize(("n", "l"), DEGREES)
def test_components_of_a_power_are_solid_harmonics(rng, n, l):
    v = rng.normal(size=3)
    y = complex_harmonic_components(power(v, n), l)
    expected = [np.linalg.norm(v) ** (n - l) * racah_solid(l, m, v) for m in range(-l, l + 1)]
    np.testing.assert_allclose(y, expected, atol=1e-12)


@pytest.mark.parametrize(("n", "l"), DEGREES)
def test_harmonic_tensor_is_symmetric_and_defines_the_components(rng, n, l):
    t = symmetrize(rng.normal(size=(3,) * n))
    y = complex_harmonic_components(t, l)
    for m in range(-l, l + 1):
        h = harmonic_tensor(n, l, m)
        np.testing.assert_allclose(symmetrize(h), h, atol=1e-15)
        np.testing.assert_allclose(np.sum(h * t), y[m + l], atol=1e-12)
        # ... and the sum over distinct J_z components with the tabulated coefficients.
        a = jz_components(t)
        from_table = sum(
            q * a[tuple(AXIS[x] for x in label)] for label, q in jz_coefficients(n, l, m).items()
        )
        np.testing.assert_allclose(from_table, y[m + l], atol=1e-12)
        if l == n and n >= 2:
            np.testing.assert_allclose(np.trace(h, axis1=0, axis2=1), 0.0, atol=1e-15)


@pytest.mark.parametrize(("n", "l"), DEGREES)
def test_rotation_about_z_multiplies_by_exp_i_m_phi(rng, n, l):
    t = symmetrize(rng.normal(size=(3,) * n))
    phi = 0.7
    y = complex_harmonic_components(t, l)
    y_rot = complex_harmonic_components(rotate(t, rotation_z(phi)), l)
    m = np.arange(-l, l + 1)
    np.testing.assert_allclose(y_rot, np.exp(1j * m * phi) * y, atol=1e-12)


@pytest.mark.parametrize(("n", "l"), DEGREES)
def test_components_are_equivariant(rng, n, l):
    t = symmetrize(rng.normal(size=(3,) * n))
    rot = random_orthogonal(rng, proper=True)
    d = fit_wigner(rot, l, rng)
    np.testing.assert_allclose(d @ d.conj().T, np.eye(2 * l + 1), atol=1e-12)
    y_rot = complex_harmonic_components(rotate(t, rot), l)
    np.testing.assert_allclose(y_rot, d @ complex_harmonic_components(t, l), atol=1e-11)


@pytest.mark.parametrize(("n", "l"), DEGREES)
def test_real_tensor_has_condon_shortley_conjugation(rng, n, l):
    y = complex_harmonic_components(symmetrize(rng.normal(size=(3,) * n)), l)
    m = np.arange(-l, l + 1)
    np.testing.assert_allclose(y[::-1], (-1.0) ** m * y.conj(), atol=1e-12)


def test_lower_degrees_are_harmonics_of_the_traces(rng):
    eps = symmetrize(rng.normal(size=(3, 3)))
    np.testing.assert_allclose(complex_harmonic_components(eps, 0), [np.trace(eps)])
    s3 = symmetrize(rng.normal(size=(3, 3, 3)))
    vector = np.einsum("ijj->i", s3)
    np.testing.assert_allclose(
        complex_harmonic_components(s3, 1), jz_components(vector)[::-1], atol=1e-12
    )
    s4 = symmetrize(rng.normal(size=(3, 3, 3, 3)))
    np.testing.assert_allclose(complex_harmonic_components(s4, 0), [np.einsum("iijj->", s4)])
    np.testing.assert_allclose(
        complex_harmonic_components(s4, 2),
        complex_harmonic_components(np.einsum("ijkk->ij", s4), 2),
        atol=1e-12,
    )


# --- real components: Appendix C and e3nn --------------------------------------------------


@pytest.mark.parametrize("l", range(5))
def test_appendix_c_matrix(l):
    w = complex_to_real_sh(l)
    np.testing.assert_allclose(w @ w.conj().T, np.eye(2 * l + 1), atol=1e-15)


@pytest.mark.parametrize(("n", "l"), DEGREES)
def test_real_components_follow_appendix_c(rng, n, l):
    t = symmetrize(rng.normal(size=(3,) * n))
    y = complex_harmonic_components(t, l)
    real = real_harmonic_components(t, l)
    for m in range(-l, l + 1):
        if m > 0:
            expected = np.sqrt(2) * (-1) ** m * y[l + m].real
        elif m < 0:
            expected = np.sqrt(2) * (-1) ** m * y[l - m].imag
        else:
            expected = y[l].real
        np.testing.assert_allclose(real[m + l], expected, atol=1e-12)


@pytest.mark.parametrize(("n", "l"), DEGREES)
def test_e3nn_components_are_e3nn_spherical_harmonics(rng, n, l):
    vs = rng.normal(size=(4, 3))
    coeffs = rng.normal(size=4)
    t = sum(c * power(v, n) for c, v in zip(coeffs, vs, strict=True))
    sh = o3.spherical_harmonics(l, torch.tensor(vs), normalize=True, normalization="norm")
    expected = sum(
        c * np.linalg.norm(v) ** n * s for c, v, s in zip(coeffs, vs, sh.numpy(), strict=True)
    )
    np.testing.assert_allclose(e3nn_harmonic_components(t, l), expected, atol=1e-12)


@pytest.mark.parametrize("l", range(5))
def test_real_harmonics_are_e3nn_at_the_permuted_point(rng, l):
    # e3nn's Y_l(x, y, z) = c_l S_l(z, x, y) with one positive c_l per l (1 for "norm").
    points = rng.normal(size=(20, 3))
    ours = np.array([real_harmonic_components(power(p[[2, 0, 1]], l), l) for p in points])
    for normalization, factor in [("norm", 1.0), ("component", np.sqrt(2 * l + 1))]:
        theirs = o3.spherical_harmonics(
            l, torch.tensor(points), normalize=False, normalization=normalization
        ).numpy()
        np.testing.assert_allclose(theirs, factor * ours, atol=1e-12)


@pytest.mark.parametrize(("n", "l"), DEGREES)
def test_e3nn_to_real_matrix(rng, n, l):
    m = e3nn_to_real_sh(l)
    np.testing.assert_allclose(m @ m.T, np.eye(2 * l + 1), atol=1e-13)
    t = symmetrize(rng.normal(size=(3,) * n))
    np.testing.assert_allclose(
        m @ e3nn_harmonic_components(t, l), real_harmonic_components(t, l), atol=1e-12
    )


@pytest.mark.parametrize("l", range(5))
def test_e3nn_to_real_matrix_is_e3nn_wigner_of_the_permutation(l):
    # e3nn's D(R) = M^T D_ours(R) M (the bases differ by M = D_ours(P^T)), so for R = P^T
    # e3nn's own Wigner matrix is M itself.
    p = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    d_e3nn = o3.Irrep(l, 1).D_from_matrix(torch.tensor(p.T)).numpy()
    m = e3nn_to_real_sh(l)
    np.testing.assert_allclose(d_e3nn, m, atol=1e-12)


# --- Appendix B ----------------------------------------------------------------------------


def _key(entry):
    return (entry.rank, entry.l, entry.m, entry.column)


def test_appendix_b_transcription():
    assert len(APPENDIX_B) == 45
    assert {_key(e) for e in APPENDIX_B} >= EXPECTED_INCONSISTENT
    by_key = {_key(e): e for e in APPENDIX_B}
    assert by_key[(3, 3, 1, "00+")].value == pytest.approx(2 * np.sqrt(1.5))
    assert by_key[(4, 4, 4, "++++")].value == pytest.approx(0.5 * np.sqrt(17.5))
    assert by_key[(3, 3, 0, "0+-")].value == pytest.approx(-5 / 7)


@pytest.mark.parametrize(
    "check", check_appendix_b(), ids=lambda c: "-".join(map(str, _key(c.entry)))
)
def test_appendix_b_entry(check):
    key = _key(check.entry)
    if key in EXPECTED_INCONSISTENT:
        assert not check.consistent
        assert abs(check.paper - check.derived) > 1e-3
        assert check.derived == pytest.approx(CORRECT_VALUES[key], abs=1e-12)
    else:
        assert check.consistent
        assert abs(check.paper - check.derived) <= 1e-12
        assert abs(check.paper_total - check.derived_total) <= 1e-12


def test_most_appendix_b_entries_hold():
    checks = check_appendix_b()
    assert sum(c.consistent for c in checks) == 39
    assert {_key(c.entry) for c in checks if not c.consistent} == EXPECTED_INCONSISTENT


def test_appendix_b_derived_values_do_not_depend_on_the_sign_of_m():
    for e in APPENDIX_B:
        if e.m:
            plus = jz_coefficients(e.rank, e.l, e.m)
            minus = jz_coefficients(e.rank, e.l, -e.m)
            flipped = {
                "".join(sorted(k.translate(FLIP), key="0+-".index)): v for k, v in minus.items()
            }
            assert plus == pytest.approx(flipped, abs=1e-15)


def test_rank_2_and_3_cells_are_distinct_components():
    # Only the elastic block has several cells per component; there `derived` is a completion.
    for c in check_appendix_b():
        if c.entry.rank < 4:
            assert c.derived == pytest.approx(c.derived_total, abs=1e-15)


@pytest.mark.parametrize("l", [0, 2, 4])
def test_elastic_rows_are_the_harmonic_components_on_symmetric_tensors(rng, l):
    s = symmetrize(rng.normal(size=(3, 3, 3, 3)))
    printed = [paper_row(s, l, m) for m in range(-l, l + 1)]
    np.testing.assert_allclose(printed, complex_harmonic_components(s, l), atol=1e-12)


@pytest.mark.parametrize("l", [0, 2, 4])
def test_elastic_rows_are_equivariant_on_elastic_tensors(rng, l):
    # Every printed rank-4 row is an equivariant functional of a tensor with only the elastic
    # symmetries; the y_4 rows equal y_4(Sym C), the y_0, y_2 rows also see the mixed part.
    c = random_elastic(rng)
    rot = random_orthogonal(rng, proper=True)
    d = fit_wigner(rot, l, rng)
    printed = np.array([paper_row(c, l, m) for m in range(-l, l + 1)])
    printed_rot = np.array([paper_row(rotate(c, rot), l, m) for m in range(-l, l + 1)])
    np.testing.assert_allclose(printed_rot, d @ printed, atol=1e-11)
    of_sym = complex_harmonic_components(symmetrize(c), l)
    assert np.allclose(printed, of_sym, atol=1e-12) == (l == 4)


# --- errors and doctests -------------------------------------------------------------------


def test_errors():
    with pytest.raises(ValueError, match="not fully symmetric"):
        complex_harmonic_components(np.arange(9.0).reshape(3, 3), 2)
    with pytest.raises(ValueError, match="degree l=1"):
        complex_harmonic_components(np.eye(3), 1)
    with pytest.raises(ValueError, match=r"shape \(3,\) \* n"):
        jz_components(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="outside"):
        jz_coefficients(2, 2, 3)
    with pytest.raises(ValueError, match="real tensor"):
        real_harmonic_components(np.eye(3) * 1j, 0)


def test_doctests():
    result = doctest.testmod(spherical, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 10
    assert result.failed == 0
