r"""The paper's J_z (spherical) basis and the harmonic components of fully symmetric tensors.

Heilman, Schlesinger & Yan (section 4, Appendices B and C) pass from a fully symmetric Cartesian
tensor to its harmonic components :math:`y_l^m` through the *J_z basis*, the spherical basis of
angular momentum theory, and then to real components :math:`y_{lm}`. This module implements that
route in numpy, states every convention, and checks the paper's printed table (Appendix B)
against the mathematics (:func:`check_appendix_b`).

Conventions
-----------
* **J_z basis** (:data:`JZ_BASIS`, rows :math:`a_+, a_0, a_-`) is the standard spherical basis

  .. math::

      a_{+} = -\tfrac{1}{\sqrt2}(x + i y), \qquad a_0 = z, \qquad
      a_{-} = +\tfrac{1}{\sqrt2}(x - i y),

  so that :math:`a_m = |x|\,C_1^m(\hat x)` (Racah-normalised harmonic with Condon-Shortley
  phase). The paper prints the row :math:`a_- = -\tfrac{1}{\sqrt2}(x - iy)`, the negative of
  ours (:data:`PAPER_JZ_BASIS`). Its own table needs our sign: the rank-2 row
  :math:`y_0^0 = a_{00} - 2a_{+-}` is the trace only if :math:`a_+a_- = -(x^2+y^2)/2`.
* **Harmonic components.** For a fully symmetric rank-``n`` tensor ``T`` and
  :math:`l = n, n-2, \dots`,

  .. math::

      y_l^m(T) = T_{i_1 \dots i_n}\, Y^{(n,l,m)}_{i_1 \dots i_n}, \qquad
      Y^{(n,l,m)} \cdot x^{\otimes n} = |x|^{n-l}\,R_l^m(x),

  with :math:`R_l^m(x) = |x|^l C_l^m(\hat x)`, :math:`C_l^m = \sqrt{4\pi/(2l+1)}\,Y_l^m` the
  Racah-normalised regular solid harmonic (Condon-Shortley phase) and :math:`Y^{(n,l,m)}` the
  unique symmetric tensor with that polynomial (:func:`harmonic_tensor`). Equivalently
  :math:`y_l^m(v^{\otimes n}) = |v|^{n-l} R_l^m(v)`, extended linearly; and
  :math:`y_l^m(T)` is :math:`y_l^m` of the :math:`(n-l)/2`-fold trace of ``T`` (rank 2:
  :math:`y_0^0 = T_{ii}`; rank 3: :math:`y_1^m` are the J_z components of :math:`T_{ijj}`).
  In J_z components :math:`a_{\alpha\beta\dots}` of ``T`` (:func:`jz_components`),

  .. math::

      y_l^m(T) = \sum_{M} q^{(n,l,m)}_M\, a_M,

  summed over multisets ``M`` of ``n`` labels in ``{+, 0, -}`` (each distinct component once),
  where :math:`q_M` is the coefficient of the monomial :math:`a^M` in :math:`|x|^{n-l}R_l^m`
  written in the J_z components of ``x``, using
  :math:`|x|^2 = a_0^2 - 2a_+a_-` and

  .. math::

      R_l^m = \sqrt{(l+m)!\,(l-m)!}\sum_{p-q=m,\;p+q+s=l}
      \frac{a_+^p\, a_-^q\, a_0^s}{2^{(p+q)/2}\, p!\, q!\, s!}.

  These :math:`q_M` (:func:`jz_coefficients`) are what Appendix B tabulates: a column such as
  :math:`a_{+-}` carries the coefficient of the component, summed over both orderings
  :math:`a_{+-} = a_{-+}`. Of the readings tried (this one; the paper's printed basis; the
  expansion coefficients of :math:`T(x) = T_{i\dots}x_i\cdots` in solid harmonics), this is
  the only one under which most entries hold (39 of 45 printed numbers; see
  ``docs/appendix-b.md``).
* **Rotations.** Under an active rotation by :math:`\varphi` about z,
  :math:`T'_{i\dots} = R_{ia}\cdots T_{a\dots}`, each :math:`a_\pm` gains
  :math:`e^{\pm i\varphi}`, hence :math:`y_l^m(T') = e^{+im\varphi}\,y_l^m(T)` (the phase is
  :math:`e^{-im\varphi}` for a rotation of the frame instead of the tensor).
* **Real components** (Appendix C, :func:`complex_to_real_sh`):
  :math:`y_{l0} = y_l^0`, :math:`y_{lm} = \tfrac{1}{\sqrt2}(y_l^{-m} + (-1)^m y_l^m)` for
  :math:`m > 0` and :math:`y_{lm} = \tfrac{i}{\sqrt2}(y_l^{m} - (-1)^m y_l^{-m})` for
  :math:`m < 0`. For a real tensor these are real, and
  :math:`y_{lm}(v^{\otimes n}) = |v|^{n-l} S_l^m(v)` with :math:`S_l^m` the standard real solid
  harmonics *without* Condon-Shortley phase (:math:`\propto \cos m\varphi` for :math:`m > 0`,
  :math:`\sin |m|\varphi` for :math:`m < 0`), normalised so that
  :math:`\sum_m S_l^m(\hat v)^2 = 1`.
* **e3nn.** e3nn's real spherical harmonic of degree ``l`` at :math:`(x, y, z)` is
  :math:`S_l` at the permuted point :math:`(z, x, y)`, times a positive factor per ``l``
  (exactly 1 for ``normalization="norm"``). :func:`e3nn_harmonic_components` gives the
  components in e3nn's basis and :func:`e3nn_to_real_sh` the orthogonal matrix back to ours.

All functions take a single unbatched tensor of shape ``(3,) * n`` and need only numpy.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache

import numpy as np

from crystensor.tensors.harmonic import rotate_tensor

__all__ = [
    "APPENDIX_B",
    "JZ_BASIS",
    "JZ_LABELS",
    "PAPER_JZ_BASIS",
    "AppendixBCheck",
    "AppendixBEntry",
    "cartesian_from_jz",
    "check_appendix_b",
    "complex_harmonic_components",
    "complex_to_real_sh",
    "e3nn_harmonic_components",
    "e3nn_to_real_sh",
    "harmonic_tensor",
    "jz_coefficients",
    "jz_components",
    "real_harmonic_components",
]

_S2 = math.sqrt(2.0)

JZ_LABELS: tuple[str, str, str] = ("+", "0", "-")
"""Labels of the rows of :data:`JZ_BASIS` and of every axis of :func:`jz_components`."""

JZ_BASIS: np.ndarray = np.array(
    [[-1 / _S2, -1j / _S2, 0], [0, 0, 1], [1 / _S2, -1j / _S2, 0]], dtype=complex
)
r"""The J_z basis, shape ``(3, 3)``: :math:`(a_+, a_0, a_-) = \mathrm{JZ\_BASIS}\,(x, y, z)`.

Unitary; its rows are the standard spherical basis :math:`a_m = |x| C_1^m(\hat x)`. The last
row is the negative of the paper's printed :math:`a_-` row (:data:`PAPER_JZ_BASIS`).
"""
JZ_BASIS.setflags(write=False)

PAPER_JZ_BASIS: np.ndarray = np.array(
    [[-1 / _S2, -1j / _S2, 0], [0, 0, 1], [-1 / _S2, 1j / _S2, 0]], dtype=complex
)
"""The matrix as printed in section 4 of the paper, kept for comparison only (row ``a_-`` has
the opposite sign to :data:`JZ_BASIS`, under which the paper's own Appendix B fails)."""
PAPER_JZ_BASIS.setflags(write=False)

# The order used to write a multiset of labels canonically (zeros first, then +, then -:
# "0+-", "00+-", "++--").
_CANONICAL_ORDER = {"0": 0, "+": 1, "-": 2}
_FLIP = str.maketrans("+-", "-+")

# e3nn's polar axis is y: its harmonic at p equals ours at P p = (p_z, p_x, p_y).
_E3NN_PERMUTATION = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _canonical(label: str) -> str:
    return "".join(sorted(label, key=_CANONICAL_ORDER.__getitem__))


def _multiplicity(label: str) -> int:
    out = math.factorial(len(label))
    for count in Counter(label).values():
        out //= math.factorial(count)
    return out


def _check_shape(tensor: np.ndarray, name: str) -> np.ndarray:
    t = np.asarray(tensor)
    if t.shape != (3,) * t.ndim:
        raise ValueError(
            f"{name} must have shape (3,) * n (one Cartesian or J_z tensor), got {t.shape}"
        )
    return t


def _check_indices(l: int, rank: int | None = None, m: int | None = None) -> None:
    """Raise unless ``l >= 0`` is a degree of a symmetric rank-``rank`` tensor (when ``rank`` is
    given) and ``-l <= m <= l`` (when ``m`` is given)."""
    if rank is None:
        if l < 0:
            raise ValueError(f"degree l must be >= 0, got {l}")
    elif rank < 0 or not 0 <= l <= rank or (rank - l) % 2:
        raise ValueError(
            f"no harmonic component of degree l={l} in a fully symmetric rank-{rank} tensor; "
            f"use l in {list(range(rank % 2, rank + 1, 2)) if rank >= 0 else []}"
        )
    if m is not None and abs(m) > l:
        raise ValueError(f"order m={m} is outside -l..l for l={l}")


def _check_symmetric(t: np.ndarray) -> None:
    scale = max(float(np.max(np.abs(t), initial=0.0)), 1e-300)
    for axis in range(t.ndim - 1):
        swapped = np.swapaxes(t, axis, axis + 1)
        if np.max(np.abs(t - swapped), initial=0.0) > 1e-10 * scale:
            raise ValueError(
                "tensor is not fully symmetric (axes "
                f"{axis} and {axis + 1} differ); pass its fully symmetric part, e.g. "
                "crystensor.tensors.young.symmetrize_fully(tensor)"
            )


def _symmetric_input(sym_tensor: np.ndarray, l: int, *, real: bool = False) -> np.ndarray:
    """``sym_tensor`` checked for the harmonic-component functions: shape ``(3,) * n``, real
    (when ``real``), ``l`` a degree of rank ``n``, fully symmetric."""
    t = _check_shape(sym_tensor, "sym_tensor")
    if real and np.iscomplexobj(t):
        raise ValueError(
            "real harmonic components need a real tensor; for a complex one use "
            "complex_to_real_sh(l) @ complex_harmonic_components(t, l)"
        )
    _check_indices(l, t.ndim)
    _check_symmetric(t)
    return t


def jz_components(tensor: np.ndarray) -> np.ndarray:
    r"""Components of a rank-``n`` Cartesian tensor in the J_z basis.

    .. math::

        a_{\alpha\beta\dots} = U_{\alpha i}\, U_{\beta j} \cdots T_{ij\dots},
        \qquad U = \mathrm{JZ\_BASIS},

    with index order ``(+, 0, -)`` on every axis. For a vector this is
    :math:`(a_+, a_0, a_-)`; for ``T`` symmetric, ``a`` is symmetric too.

    Parameters
    ----------
    tensor : np.ndarray, shape ``(3,) * n``
        Cartesian tensor (real or complex), any rank ``n >= 0``.

    Returns
    -------
    np.ndarray, complex, shape ``(3,) * n``
        The J_z components; :func:`cartesian_from_jz` is the inverse.

    Examples
    --------
    >>> np.round(jz_components(np.array([1.0, 0.0, 2.0])), 6)  # (-1/sqrt2, 2, 1/sqrt2)
    array([-0.707107+0.j,  2.      +0.j,  0.707107+0.j])
    """
    t = _check_shape(tensor, "tensor")
    return rotate_tensor(t.astype(complex), JZ_BASIS)


def cartesian_from_jz(components: np.ndarray) -> np.ndarray:
    r"""Cartesian tensor from its J_z components, the inverse of :func:`jz_components`.

    .. math::

        T_{ij\dots} = \bar U_{\alpha i}\, \bar U_{\beta j} \cdots a_{\alpha\beta\dots}
        \qquad (U^{-1} = U^\dagger).

    Parameters
    ----------
    components : np.ndarray, shape ``(3,) * n``
        J_z components, index order ``(+, 0, -)`` on every axis.

    Returns
    -------
    np.ndarray, complex, shape ``(3,) * n``
        The Cartesian tensor; its imaginary part vanishes (to rounding) when it is real, so
        take ``.real`` for a real tensor.

    Examples
    --------
    >>> t = np.arange(9.0).reshape(3, 3)
    >>> np.allclose(cartesian_from_jz(jz_components(t)), t)
    True
    """
    a = _check_shape(components, "components")
    return rotate_tensor(a.astype(complex), JZ_BASIS.conj().T)


def _poly_mul(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for ka, va in a.items():
        for kb, vb in b.items():
            k = _canonical(ka + kb)
            out[k] = out.get(k, 0.0) + va * vb
    return out


@cache
def _jz_coefficients(rank: int, l: int, m: int) -> dict[str, float]:
    # R_l^m in the J_z components of x, times |x|^(rank - l) = (a_0^2 - 2 a_+ a_-)^k.
    poly: dict[str, float] = {}
    norm = math.sqrt(math.factorial(l + m) * math.factorial(l - m))
    for p in range(l + 1):
        q, s = p - m, l - 2 * p + m
        if q < 0 or s < 0:
            continue
        denom = 2 ** ((p + q) / 2) * math.factorial(p) * math.factorial(q) * math.factorial(s)
        poly[_canonical("0" * s + "+" * p + "-" * q)] = norm / denom
    for _ in range((rank - l) // 2):
        poly = _poly_mul(poly, {"00": 1.0, "+-": -2.0})
    return {k: v for k, v in poly.items() if v != 0.0}


def jz_coefficients(rank: int, l: int, m: int) -> dict[str, float]:
    r"""The coefficients :math:`q_M` of :math:`y_l^m = \sum_M q_M a_M` for a symmetric tensor.

    :math:`q_M` is the coefficient of the monomial :math:`a^M` in the polynomial
    :math:`|x|^{n-l} R_l^m(x)` written in the J_z components of ``x`` (see the module
    docstring). Each key is a multiset ``M`` of ``rank`` labels, written zeros first, then
    ``+``, then ``-`` (``"0+-"``, ``"++--"``); its value multiplies the one component
    :math:`a_M` (all orderings of ``M`` being equal in a symmetric tensor). This is one row of
    the paper's Appendix B, derived.

    Parameters
    ----------
    rank : int
        Rank ``n`` of the fully symmetric tensor.
    l : int
        Degree, ``n, n - 2, ..., >= 0``.
    m : int
        Order, ``-l <= m <= l``.

    Returns
    -------
    dict[str, float]
        Non-zero coefficients by canonical label.

    Examples
    --------
    >>> jz_coefficients(2, 0, 0)  # y_0^0 = a_00 - 2 a_+-, the trace
    {'00': 1.0, '+-': -2.0}
    >>> {k: round(v, 12) for k, v in jz_coefficients(3, 3, 1).items()}  # 2 sqrt(3/2), sqrt(3/2)
    {'00+': 2.449489742783, '++-': 1.224744871392}
    """
    _check_indices(l, rank, m)
    return dict(_jz_coefficients(rank, l, m))


@cache
def _harmonic_matrix(rank: int, l: int) -> np.ndarray:
    # Rows: the flattened harmonic tensors Y^(rank, l, m), m = -l..l.
    rows = []
    for m in range(-l, l + 1):
        q = _jz_coefficients(rank, l, m)
        jz_tensor = np.zeros((3,) * rank, dtype=complex)
        for index in itertools.product(range(3), repeat=rank):
            label = _canonical("".join(JZ_LABELS[i] for i in index))
            jz_tensor[index] = q.get(label, 0.0) / _multiplicity(label)
        # Y_{i..} = sum_beta Ytilde_beta U_{beta i} ..: apply U^T on every axis.
        rows.append(rotate_tensor(jz_tensor, JZ_BASIS.T).reshape(-1))
    out = np.array(rows).reshape(2 * l + 1, 3**rank)
    out.setflags(write=False)
    return out


def harmonic_tensor(rank: int, l: int, m: int) -> np.ndarray:
    r"""The symmetric Cartesian tensor :math:`Y^{(n,l,m)}` that defines :math:`y_l^m`.

    .. math::

        Y^{(n,l,m)}_{i_1\dots i_n} x_{i_1}\cdots x_{i_n} = |x|^{n-l} R_l^m(x),
        \qquad y_l^m(T) = T_{i_1\dots i_n} Y^{(n,l,m)}_{i_1\dots i_n}
        \quad\text{(no complex conjugation)}.

    Parameters
    ----------
    rank : int
        ``n``.
    l : int
        Degree, ``n, n - 2, ..., >= 0``.
    m : int
        Order, ``-l <= m <= l``.

    Returns
    -------
    np.ndarray, complex, shape ``(3,) * rank``
        Fully symmetric; traceless when ``l == rank``.

    Examples
    --------
    >>> y = harmonic_tensor(2, 2, 0)  # R_2^0 = z^2 - (x^2 + y^2) / 2
    >>> np.round(np.diag(y).real, 12)
    array([-0.5, -0.5,  1. ])
    """
    _check_indices(l, rank, m)
    return _harmonic_matrix(rank, l)[m + l].reshape((3,) * rank).copy()


def complex_harmonic_components(sym_tensor: np.ndarray, l: int) -> np.ndarray:
    r"""Complex harmonic components :math:`y_l^m`, ``m = -l..l``, of a fully symmetric tensor.

    .. math::

        y_l^m(T) = T_{i_1\dots i_n} Y^{(n,l,m)}_{i_1\dots i_n}
        = \sum_M q^{(n,l,m)}_M\, a_M,

    with :math:`Y^{(n,l,m)}` from :func:`harmonic_tensor` and :math:`q_M` from
    :func:`jz_coefficients` (Racah normalisation, Condon-Shortley phase). For a real tensor
    :math:`y_l^{-m} = (-1)^m \overline{y_l^m}`; under an active rotation by :math:`\varphi`
    about z, :math:`y_l^m \to e^{im\varphi} y_l^m`.

    Parameters
    ----------
    sym_tensor : np.ndarray, shape ``(3,) * n``
        Fully symmetric Cartesian tensor (real or complex).
    l : int
        Degree, ``n, n - 2, ..., >= 0``.

    Returns
    -------
    np.ndarray, complex, shape ``(2 * l + 1,)``
        Index ``m + l`` holds :math:`y_l^m`.

    Raises
    ------
    ValueError
        If the tensor is not fully symmetric or ``l`` is not a degree of its rank.

    Examples
    --------
    >>> eps = np.diag([1.0, 2.0, 4.0])
    >>> complex_harmonic_components(eps, 0)  # the trace
    array([7.+0.j])
    >>> y2 = complex_harmonic_components(eps, 2)  # m = 0: 4 - (1 + 2) / 2
    >>> np.round(y2.real, 6), np.abs(y2.imag).max()
    (array([-0.612372,  0.      ,  2.5     ,  0.      , -0.612372]), np.float64(0.0))
    """
    return _complex_components(_symmetric_input(sym_tensor, l), l)


def _complex_components(t: np.ndarray, l: int) -> np.ndarray:
    # y_l^m of a checked symmetric tensor (complex_harmonic_components without the checks)
    return _harmonic_matrix(t.ndim, l) @ t.reshape(-1).astype(complex)


def _real_components(t: np.ndarray, l: int) -> np.ndarray:
    # y_lm of a checked real symmetric tensor (real_harmonic_components without the checks)
    return (_complex_to_real(l) @ _complex_components(t, l)).real


@cache
def _complex_to_real(l: int) -> np.ndarray:
    w = np.zeros((2 * l + 1, 2 * l + 1), dtype=complex)
    w[l, l] = 1.0
    for m in range(1, l + 1):
        sign = (-1) ** m
        w[l + m, l - m] = 1 / _S2  # m > 0: (y^{-m} + (-1)^m y^{m}) / sqrt 2
        w[l + m, l + m] = sign / _S2
        w[l - m, l - m] = 1j / _S2  # -m < 0: i (y^{-m} - (-1)^m y^{m}) / sqrt 2
        w[l - m, l + m] = -1j * sign / _S2
    w.setflags(write=False)
    return w


def complex_to_real_sh(l: int) -> np.ndarray:
    r"""The unitary matrix ``W`` of Appendix C: :math:`y_{lm} = \sum_{m'} W_{mm'} y_l^{m'}`.

    .. math::

        y_{lm} = \begin{cases}
        \tfrac{i}{\sqrt2}\,(y_l^{-|m|} - (-1)^m y_l^{|m|}) & m < 0 \\
        y_l^0 & m = 0 \\
        \tfrac{1}{\sqrt2}\,(y_l^{-|m|} + (-1)^m y_l^{|m|}) & m > 0
        \end{cases}

    With the Condon-Shortley phase in :math:`y_l^m` this gives
    :math:`y_{lm} = \sqrt2\,(-1)^m\,\mathrm{Re}\,y_l^m` for :math:`m > 0` and
    :math:`\sqrt2\,(-1)^m\,\mathrm{Im}\,y_l^{|m|}` for :math:`m < 0`: real harmonics
    :math:`\propto \cos m\varphi` and :math:`\sin|m|\varphi` with positive factors.

    Parameters
    ----------
    l : int
        Degree, ``>= 0``.

    Returns
    -------
    np.ndarray, complex, shape ``(2 * l + 1, 2 * l + 1)``
        Rows and columns in order ``m = -l..l``.

    Examples
    --------
    >>> w = complex_to_real_sh(1)
    >>> np.allclose(w @ w.conj().T, np.eye(3))
    True
    """
    _check_indices(l)
    return _complex_to_real(l).copy()


def real_harmonic_components(sym_tensor: np.ndarray, l: int) -> np.ndarray:
    r"""Real harmonic components :math:`y_{lm}` (Appendix C) of a real fully symmetric tensor.

    :math:`y_{lm} = \sum_{m'} W_{mm'}\, y_l^{m'}` with ``W`` = :func:`complex_to_real_sh` and
    :math:`y_l^{m'}` from :func:`complex_harmonic_components`. For
    :math:`T = v^{\otimes n}`, :math:`y_{lm} = |v|^{n-l} S_l^m(v)` with :math:`S_l^m` the real
    solid harmonics without Condon-Shortley phase, :math:`\sum_m S_l^m(\hat v)^2 = 1`.

    Parameters
    ----------
    sym_tensor : np.ndarray, real, shape ``(3,) * n``
        Fully symmetric Cartesian tensor.
    l : int
        Degree, ``n, n - 2, ..., >= 0``.

    Returns
    -------
    np.ndarray, float, shape ``(2 * l + 1,)``
        Index ``m + l`` holds :math:`y_{lm}`.

    Examples
    --------
    >>> np.round(real_harmonic_components(np.array([1.0, 2.0, 3.0]), 1), 12)  # (y, z, x)
    array([2., 3., 1.])
    """
    return _real_components(_symmetric_input(sym_tensor, l, real=True), l)


def e3nn_harmonic_components(sym_tensor: np.ndarray, l: int) -> np.ndarray:
    r"""Real harmonic components of a fully symmetric tensor in e3nn's basis.

    .. math::

        y^{\mathrm{e3nn}}_{l}(T) = y_{l\cdot}(P \cdot T), \qquad P\,(x, y, z) = (z, x, y),

    where :math:`P \cdot T` applies ``P`` on every index. For :math:`T = v^{\otimes n}` this is
    :math:`|v|^{n}` times ``e3nn.o3.spherical_harmonics(l, v, normalize=True,
    normalization="norm")`` (other e3nn normalisations differ by a positive factor per ``l``:
    :math:`\sqrt{2l+1}` for ``"component"``, :math:`\sqrt{(2l+1)/4\pi}` for ``"integral"``).

    Parameters
    ----------
    sym_tensor : np.ndarray, real, shape ``(3,) * n``
        Fully symmetric Cartesian tensor.
    l : int
        Degree, ``n, n - 2, ..., >= 0``.

    Returns
    -------
    np.ndarray, float, shape ``(2 * l + 1,)``
        In e3nn's order ``m = -l..l``;
        ``e3nn_to_real_sh(l) @ result == real_harmonic_components(sym_tensor, l)``.

    Examples
    --------
    >>> np.round(e3nn_harmonic_components(np.array([1.0, 2.0, 3.0]), 1), 12)  # e3nn: (x, y, z)
    array([1., 2., 3.])
    """
    t = _symmetric_input(sym_tensor, l, real=True)
    return _real_components(rotate_tensor(t, _E3NN_PERMUTATION), l)


@cache
def _e3nn_to_real(l: int) -> np.ndarray:
    # Solve M S(P v) = S(v) on a fixed spread of points (S = real solid harmonics, exact
    # polynomials), i.e. M = D_l(P^T) in the real basis.
    k = 4 * l + 4
    z = 1 - (2 * np.arange(k) + 1) / k
    phi = np.pi * (3 - math.sqrt(5)) * np.arange(k)
    points = np.stack([np.sqrt(1 - z**2) * np.cos(phi), np.sqrt(1 - z**2) * np.sin(phi), z], 1)

    def values(p: np.ndarray) -> np.ndarray:
        power = np.ones(())
        for _ in range(l):
            power = np.multiply.outer(power, p)
        return _real_components(power, l)

    ours = np.array([values(p) for p in points])
    theirs = np.array([values(_E3NN_PERMUTATION @ p) for p in points])
    m_transposed = np.linalg.lstsq(theirs, ours, rcond=None)[0]
    out = np.where(np.abs(m_transposed.T) < 1e-14, 0.0, m_transposed.T)
    out.setflags(write=False)
    return out


def e3nn_to_real_sh(l: int) -> np.ndarray:
    r"""The orthogonal matrix ``M`` from e3nn's real basis to Appendix C's real basis.

    .. math::

        y_{l\cdot}(T) = M\, y^{\mathrm{e3nn}}_l(T), \qquad M = D_l(P^{\top}),

    with :math:`D_l` the real Wigner matrix in Appendix C's basis and ``P`` the cyclic axis
    permutation of :func:`e3nn_harmonic_components` (a rotation by 120 degrees about
    :math:`(1, 1, 1)`). It is a signed permutation only for ``l <= 1``.

    Parameters
    ----------
    l : int
        Degree, ``>= 0``.

    Returns
    -------
    np.ndarray, float, shape ``(2 * l + 1, 2 * l + 1)``

    Examples
    --------
    >>> e3nn_to_real_sh(1)  # e3nn (x, y, z) -> ours (y, z, x)
    array([[0., 1., 0.],
           [0., 0., 1.],
           [1., 0., 0.]])
    """
    _check_indices(l)
    return _e3nn_to_real(l).copy()


@dataclass(frozen=True)
class AppendixBEntry:
    """One printed number of the paper's Appendix B table.

    Attributes
    ----------
    rank : int
        Rank of the fully symmetric tensor (2, 3, or 4 for the elastic block).
    l, m : int
        The row :math:`y_l^{\\pm m}`, ``m >= 0``; for ``m > 0`` the printed number stands for
        both :math:`y_l^{+m}` (with ``column``) and :math:`y_l^{-m}` (with ``+`` and ``-``
        swapped in ``column``).
    column : str
        J_z indices of the column for :math:`+m`, e.g. ``"0+-"`` for :math:`a_{0+-}` and
        ``"0+"`` for the paper's :math:`a_{0\\pm}`.
    value : float
        The printed coefficient, square roots evaluated.
    printed : str
        The coefficient as printed, in plain text (``"-2 sqrt(3/2)"`` for
        :math:`-2\\sqrt{3/2}`).
    """

    rank: int
    l: int
    m: int
    column: str
    value: float
    printed: str


_NUMBER = re.compile(r"^(-?)(\d+)?(?:/(\d+))?(?:\s*sqrt\((\d+)(?:/(\d+))?\))?$")


def _evaluate(printed: str) -> float:
    # "-2 sqrt(3/2)", "15/7", "1/2 sqrt(35/2)": [sign][p[/q]] [sqrt(r[/s])].
    match = _NUMBER.match(printed)
    if not match or not (match[2] or match[4]):
        raise ValueError(f"cannot read the coefficient {printed!r}")
    sign, num, den, root_num, root_den = match.groups()
    value = int(num or 1) / int(den or 1)
    if root_num:
        value *= math.sqrt(int(root_num) / int(root_den or 1))
    return -value if sign else value


# (rank, l, m >= 0, {column for +m: coefficient as printed}), in the paper's row order.
_APPENDIX_B_ROWS: tuple[tuple[int, int, int, dict[str, str]], ...] = (
    (2, 0, 0, {"00": "1", "+-": "-2"}),
    (2, 2, 0, {"00": "1", "+-": "1"}),
    (2, 2, 1, {"0+": "sqrt(3)"}),
    (2, 2, 2, {"++": "sqrt(3/2)"}),
    (3, 1, 0, {"000": "3", "0+-": "-6"}),
    (3, 3, 0, {"000": "15/7", "0+-": "-5/7"}),
    (3, 1, 1, {"00+": "sqrt(3/2)", "+-+": "-2 sqrt(3/2)"}),
    (3, 3, 1, {"00+": "2 sqrt(3/2)", "+-+": "sqrt(3/2)"}),
    (3, 3, 2, {"0++": "sqrt(15/2)"}),
    (3, 3, 3, {"+++": "sqrt(5/2)"}),
    (4, 0, 0, {"0000": "1", "00+-": "2", "0+0-": "-6", "+-+-": "1", "++--": "3"}),
    (4, 2, 0, {"0000": "1", "00+-": "2", "0+0-": "-3", "+-+-": "1", "++--": "-3"}),
    (4, 4, 0, {"0000": "1", "00+-": "2", "0+0-": "4", "+-+-": "1", "++--": "1/2"}),
    (4, 2, 1, {"000+": "sqrt(3)", "0++-": "sqrt(3)", "0-++": "-3 sqrt(3)"}),
    (4, 4, 1, {"000+": "2 sqrt(5/2)", "0++-": "2 sqrt(5/2)", "0-++": "sqrt(5/2)"}),
    (4, 2, 2, {"00++": "-2 sqrt(3/2)", "+-++": "-2 sqrt(3/2)", "0+0+": "3 sqrt(3/2)"}),
    (4, 4, 2, {"00++": "sqrt(5/2)", "+-++": "sqrt(5/2)", "0+0+": "2 sqrt(5/2)"}),
    (4, 4, 3, {"0+++": "sqrt(35/2)"}),
    (4, 4, 4, {"++++": "1/2 sqrt(35/2)"}),
)


APPENDIX_B: tuple[AppendixBEntry, ...] = tuple(
    AppendixBEntry(rank, l, m, column, _evaluate(printed), printed)
    for rank, l, m, cells in _APPENDIX_B_ROWS
    for column, printed in cells.items()
)
r"""The 45 printed numbers of Appendix B (Figure 8), in the paper's row order.

Rank-2 and rank-3 columns are as printed (:math:`a_{0\pm}` is stored as ``"0+"`` with ``m > 0``).
The elastic (rank-4) block is written for a tensor with only the elastic index symmetries
(``ij = ji``, ``kl = lk``, ``ij <-> kl``), which is why it has columns such as
:math:`a_{00+-}` and :math:`a_{0+0-}` that coincide for a fully symmetric tensor. Its
``m = 0`` columns are the paper's header; the ``m = 1, 2`` sub-headers are missing from the text
copy of the paper and are reconstructed as :math:`a_{000\pm}, a_{0\pm+-}, a_{0\mp\pm\pm}` and
:math:`a_{00\pm\pm}, a_{+-\pm\pm}, a_{0\pm0\pm}` (the only orders, up to swapping the first two
columns, under which the fully harmonic rows :math:`y_4^{\pm1}, y_4^{\pm2}` hold cell by cell;
swapping the first two changes no result), and ``m = 3, 4`` as :math:`a_{0\pm\pm\pm}`,
:math:`a_{\pm\pm\pm\pm}`.
"""


@dataclass(frozen=True)
class AppendixBCheck:
    """The verdict on one :class:`AppendixBEntry`.

    Attributes
    ----------
    entry : AppendixBEntry
        The printed number.
    consistent : bool
        True if the entry holds for a fully symmetric tensor (for ``m > 0`` for both signs).
    paper : float
        The printed value.
    derived : float
        The value this cell must have (for ``+m``): the coefficient :math:`q_M` of
        :func:`jz_coefficients` minus the other printed cells of the same row that are the same
        component ``M`` of a fully symmetric tensor (only the elastic block has such cells).
    component : str
        The canonical multiset label ``M`` of the cell (``"00+-"`` for both :math:`a_{00+-}`
        and :math:`a_{0+0-}`).
    paper_total, derived_total : float
        Sum of the printed cells of component ``M`` in this row, and :math:`q_M`.
    """

    entry: AppendixBEntry
    consistent: bool
    paper: float
    derived: float
    component: str
    paper_total: float
    derived_total: float


def check_appendix_b(atol: float = 1e-12) -> list[AppendixBCheck]:
    r"""Check every printed entry of Appendix B against :func:`jz_coefficients`.

    For a fully symmetric tensor, row :math:`y_l^m` of the table is correct iff, for each
    component ``M``, the printed cells whose columns are orderings of ``M`` add up to
    :math:`q^{(n,l,m)}_M` (and, for the :math:`\pm` rows, the same holds for :math:`-m` with
    ``+``/``-`` swapped). Each cell is judged by its component; ``derived`` is what the cell
    must be given the other cells of its component, so ``consistent`` is
    ``abs(paper - derived) <= atol`` (also for :math:`-m`).

    Parameters
    ----------
    atol : float
        Absolute tolerance.

    Returns
    -------
    list[AppendixBCheck]
        One per entry of :data:`APPENDIX_B`, same order.

    Examples
    --------
    >>> checks = check_appendix_b()
    >>> len(checks), sum(c.consistent for c in checks)
    (45, 39)
    >>> for c in checks:
    ...     if not c.consistent:
    ...         e = c.entry
    ...         print(f"rank {e.rank} y_{e.l}^{e.m} a_{e.column}: {e.printed} -> {c.derived:.6g}")
    rank 3 y_1^0 a_000: 3 -> 1
    rank 3 y_1^0 a_0+-: -6 -> -2
    rank 3 y_3^0 a_000: 15/7 -> 1
    rank 3 y_3^0 a_0+-: -5/7 -> 3
    rank 3 y_1^1 a_00+: sqrt(3/2) -> 1
    rank 3 y_1^1 a_+-+: -2 sqrt(3/2) -> -2
    """
    totals: dict[tuple[int, int, int, str], float] = {}
    for e in APPENDIX_B:
        key = (e.rank, e.l, e.m, _canonical(e.column))
        totals[key] = totals.get(key, 0.0) + e.value
    out = []
    for e in APPENDIX_B:
        component = _canonical(e.column)
        paper_total = totals[(e.rank, e.l, e.m, component)]
        derived_total = _jz_coefficients(e.rank, e.l, e.m).get(component, 0.0)
        consistent = abs(paper_total - derived_total) <= atol
        if e.m:
            flipped = _canonical(e.column.translate(_FLIP))
            derived_minus = _jz_coefficients(e.rank, e.l, -e.m).get(flipped, 0.0)
            consistent = consistent and abs(paper_total - derived_minus) <= atol
        derived = derived_total - (paper_total - e.value)
        out.append(
            AppendixBCheck(
                e, bool(consistent), e.value, derived, component, paper_total, derived_total
            )
        )
    return out
