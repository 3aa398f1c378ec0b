r"""Cartesian tensors <-> irreducible (real spherical-harmonic) components, in e3nn's convention.

For a tensor kind with ``d`` independent components (6, 18, 21) this module builds one
orthonormal matrix ``Q`` of shape ``(d, 3**rank)`` with

.. math::

    y = Q\,\mathrm{vec}(T), \qquad T = \mathrm{vec}^{-1}(Q^\top y), \qquad
    Q\,(R^{\otimes n})\,Q^\top = \bigoplus_{\text{parts}} D^{l,p}(R)

for every orthogonal ``R`` (proper or improper), where :math:`D^{l,p}` is exactly what
``e3nn.o3.Irreps("lp").D_from_matrix(R)`` returns. An equivariant network's output irreps are
therefore read off as a Cartesian tensor with no extra rotation. ``Q Q^T = I`` and ``Q^T Q`` is
the orthogonal projector onto tensors with the kind's index symmetry.

How it is built (numpy only):

* e3nn's real spherical harmonic of degree ``l`` is, up to a positive factor per ``l``, the
  standard real solid harmonic without Condon-Shortley phase evaluated at the permuted point
  ``(z, x, y)``. Expanding those polynomials exactly gives the orthonormal harmonic tensors
  :math:`C^l_m` (symmetric, traceless, rank ``l``; :func:`harmonic_basis`).
* Each irreducible part of a kind is the harmonic content of one sub-tensor of the paper's
  explicit decomposition (:mod:`crystensor.tensors.young`): the rows of ``Q`` for that part are
  :math:`c\,C^l_m \cdot F(T)` with ``F`` the (linear, equivariant) map from ``T`` to the
  sub-tensor and ``c > 0`` the factor that makes the rows orthonormal. The signs of the
  components thus follow the paper's sub-tensors: the scalar part of a positive-definite
  dielectric or elastic tensor is positive.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from functools import cache

import numpy as np

from crystensor.tensors import young
from crystensor.tensors.kinds import IrrepPart, TensorKind, get_kind

__all__ = [
    "IrrepBlock",
    "change_of_basis",
    "from_irreps",
    "harmonic_basis",
    "irrep_blocks",
    "kron_power",
    "parts_report",
    "rotate_tensor",
    "to_irreps",
    "wigner_d",
]

Poly = dict[tuple[int, int, int], complex]


def _poly_mul(a: Poly, b: Poly) -> Poly:
    out: Poly = defaultdict(complex)
    for ea, ca in a.items():
        for eb, cb in b.items():
            out[(ea[0] + eb[0], ea[1] + eb[1], ea[2] + eb[2])] += ca * cb
    return dict(out)


def _poly_pow(a: Poly, n: int) -> Poly:
    out: Poly = {(0, 0, 0): 1.0}
    for _ in range(n):
        out = _poly_mul(out, a)
    return out


def _real_solid_harmonic(l: int, m: int) -> Poly:
    """Standard real solid harmonic (no Condon-Shortley phase) as a polynomial in (x, y, z).

    ``r^l Y_lm`` up to a positive factor: ``Pi_l^|m|(z, r) * Re/Im (x + i y)^|m|``.
    """
    x, y, z = {(1, 0, 0): 1.0}, {(0, 1, 0): 1.0}, {(0, 0, 1): 1.0}
    r2 = {(2, 0, 0): 1.0, (0, 2, 0): 1.0, (0, 0, 2): 1.0}
    am = abs(m)
    legendre: Poly = {}
    for k in range((l - am) // 2 + 1):
        coeff = (
            (-1) ** k
            * math.comb(l, k)
            * math.comb(2 * l - 2 * k, l)
            * math.factorial(l - 2 * k)
            / math.factorial(l - 2 * k - am)
        )
        term = _poly_mul(_poly_pow(r2, k), _poly_pow(z, l - 2 * k - am))
        for e, c in term.items():
            legendre[e] = legendre.get(e, 0.0) + coeff * c
    xy = _poly_pow({**x, **{e: 1j * c for e, c in y.items()}}, am)
    angular = {e: (c.real if m >= 0 else c.imag) for e, c in xy.items()}
    return _poly_mul(legendre, angular)


@cache
def harmonic_basis(l: int) -> np.ndarray:
    r"""Orthonormal harmonic tensors :math:`C^l_m` of e3nn's real basis, shape ``(2l+1, 3**l)``.

    Row ``m + l`` is the flattened symmetric traceless rank-``l`` tensor with
    :math:`C^l_m \cdot x^{\otimes l} \propto` ``e3nn.o3.spherical_harmonics(l, x)[m + l]``.
    So for a symmetric traceless tensor ``H``, ``harmonic_basis(l) @ H.ravel()`` are its
    components in e3nn's basis.

    >>> np.round(harmonic_basis(1), 12)          # l = 1 is (x, y, z) in e3nn
    array([[1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.]])
    """
    rows = []
    for m in range(-l, l + 1):
        poly = _real_solid_harmonic(l, m)
        # e3nn evaluates the standard harmonic at (x_s, y_s, z_s) = (z, x, y).
        poly_e3nn = {(ey, ez, ex): c for (ex, ey, ez), c in poly.items()}
        tensor = np.zeros((3,) * l)
        for index in np.ndindex(*tensor.shape):
            counts = tuple(index.count(axis) for axis in range(3))
            multinomial = math.factorial(l) // math.prod(math.factorial(c) for c in counts)
            tensor[index] = np.real(poly_e3nn.get(counts, 0.0)) / multinomial
        rows.append(tensor.ravel() / np.linalg.norm(tensor))
    basis = np.array(rows)
    basis.setflags(write=False)
    return basis


@dataclass(frozen=True)
class IrrepBlock:
    """Where one irreducible part sits in the irreps vector of a kind."""

    part: IrrepPart
    start: int
    stop: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


def _kind(kind: str | TensorKind) -> TensorKind:
    return get_kind(kind) if isinstance(kind, str) else kind


def irrep_blocks(kind: str | TensorKind) -> list[IrrepBlock]:
    """The parts of ``kind`` with their slices in the irreps vector.

    >>> [(b.part.irrep, b.start, b.stop) for b in irrep_blocks("dielectric")]
    [('0e', 0, 1), ('2e', 1, 6)]
    """
    blocks, start = [], 0
    for part in _kind(kind).parts:
        blocks.append(IrrepBlock(part, start, start + part.dim))
        start += part.dim
    return blocks


@cache
def _change_of_basis(name: str) -> np.ndarray:
    kind = get_kind(name)
    if kind.rank == 0:
        return np.ones((1, 1))
    n = 3**kind.rank
    units = kind.symmetrize_indices(np.eye(n).reshape((n, *kind.cartesian_shape)))
    # sub-tensors of every symmetrised unit tensor: columns of the linear maps F
    subs = [{p.name: p.value for p in young.split(u)} for u in units]
    blocks = []
    for part in kind.parts:
        f = np.stack([np.reshape(s[part.source], -1) for s in subs], axis=1)  # (3**l, n)
        block = harmonic_basis(part.l) @ f  # (2l+1, n)
        gram = block @ block.T
        scale = math.sqrt(gram[0, 0])
        if not np.allclose(gram, scale**2 * np.eye(part.dim), atol=1e-10 * scale**2):
            raise RuntimeError(f"part {part.source} of {name} is not a single irreducible copy")
        blocks.append(block / scale)
    q = np.concatenate(blocks)
    q.setflags(write=False)
    return q


def change_of_basis(kind: str | TensorKind) -> np.ndarray:
    """The orthonormal matrix ``Q``, shape ``(dim, 3**rank)``, from Cartesian to irreps.

    >>> q = change_of_basis("elastic")
    >>> q.shape, bool(np.allclose(q @ q.T, np.eye(21)))
    ((21, 81), True)
    """
    return _change_of_basis(_kind(kind).name)


def to_irreps(tensor: np.ndarray, kind: str | TensorKind) -> np.ndarray:
    r"""Irreducible components :math:`y = Q\,\mathrm{vec}(T)` of Cartesian tensors.

    Parameters
    ----------
    tensor : array ``(..., 3, ..., 3)``
        Cartesian tensors of the kind's rank, with optional leading batch axes. A part that
        breaks the kind's index symmetry is projected out (measure it with
        :meth:`TensorKind.index_asymmetry` first if it matters).
    kind : str or TensorKind

    Returns
    -------
    array ``(..., dim)`` in the order of ``kind.irreps``, e3nn's real basis within each part.

    Examples
    --------
    >>> y = to_irreps(np.diag([2.0, 2.0, 2.0]), "dielectric")
    >>> [round(float(v), 6) + 0.0 for v in y]    # isotropic: only 0e, 2 * sqrt(3)
    [3.464102, 0.0, 0.0, 0.0, 0.0, 0.0]
    """
    k = _kind(kind)
    t = np.asarray(tensor, dtype=float)
    if t.shape[t.ndim - k.rank :] != k.cartesian_shape:
        raise ValueError(
            f"expected {k.name} tensors of shape (..., {', '.join(['3'] * k.rank)}), got {t.shape}"
        )
    flat = t.reshape((*t.shape[: t.ndim - k.rank], 3**k.rank))
    return flat @ change_of_basis(k).T


def from_irreps(irreps: np.ndarray, kind: str | TensorKind) -> np.ndarray:
    r"""Cartesian tensors :math:`T = \mathrm{vec}^{-1}(Q^\top y)` from irreducible components.

    Parameters
    ----------
    irreps : array ``(..., dim)``
    kind : str or TensorKind

    Returns
    -------
    array ``(..., 3, ..., 3)`` with the kind's index symmetry.

    Examples
    --------
    >>> c = from_irreps(np.eye(21)[0], "elastic")     # the pure isotropic part s
    >>> bool(np.allclose(c, c.transpose(2, 3, 0, 1)))
    True
    """
    k = _kind(kind)
    y = np.asarray(irreps, dtype=float)
    if y.shape[-1:] != (k.dim,):
        raise ValueError(f"expected {k.name} irreps of shape (..., {k.dim}), got {y.shape}")
    return (y @ change_of_basis(k)).reshape((*y.shape[:-1], *k.cartesian_shape))


def rotate_tensor(tensor: np.ndarray, R: np.ndarray) -> np.ndarray:
    r"""Apply ``R`` on every index of a Cartesian tensor.

    .. math::

        T'_{a b \dots} = R_{a i}\, R_{b j} \cdots T_{i j \dots}

    For an orthogonal ``R`` this is the active rotation (or reflection) of ``T``; any other
    3x3 matrix acts by the same law (e.g. a change of basis, complex ones included). Under it
    the irreps transform with :func:`wigner_d`: ``to_irreps(T') = wigner_d(kind, R) @
    to_irreps(T)``.

    Parameters
    ----------
    tensor : array ``(3,) * n``
        One Cartesian tensor of any rank ``n >= 0`` (no batch axes).
    R : array ``(3, 3)`` or ``(..., 3, 3)``
        The matrix, or a stack of matrices (e.g. the operations of a point group).

    Returns
    -------
    array ``(..., 3, ..., 3)``
        ``T'``, with the leading axes of ``R``; the dtype follows numpy's promotion.

    Examples
    --------
    >>> rz = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
    >>> rotate_tensor(np.diag([1.0, 2.0, 3.0]), rz)
    array([[2., 0., 0.],
           [0., 1., 0.],
           [0., 0., 3.]])
    >>> rotate_tensor(np.ones((3, 3, 3)), np.stack([np.eye(3), -np.eye(3)]))[:, 0, 0, 0]
    array([ 1., -1.])
    """
    t = np.asarray(tensor)
    r = np.asarray(R)
    if t.shape != (3,) * t.ndim or r.shape[-2:] != (3, 3):
        raise ValueError(
            f"rotate_tensor needs a tensor of shape (3, ..., 3) and R of shape (..., 3, 3), "
            f"got {t.shape} and {r.shape}"
        )
    stack = r.reshape(-1, 3, 3)
    out = np.repeat(t[np.newaxis], len(stack), axis=0)  # [n_R, 3, ..., 3]
    for axis in range(1, t.ndim + 1):
        # contract index ``axis`` with the second index of every R, put the result back there
        moved = np.einsum("g...j,gij->g...i", np.moveaxis(out, axis, -1), stack)
        out = np.moveaxis(moved, -1, axis)
    return out.reshape((*r.shape[:-2], *t.shape))


def kron_power(matrix: np.ndarray, n: int) -> np.ndarray:
    """``M (x) M (x) ... (x) M`` (``n`` factors) of a matrix or of each matrix of a stack.

    ``matrix`` has shape ``(..., a, b)``; the result ``(..., a**n, b**n)``. With C-order
    flattening, ``(R . T).ravel() = kron_power(R, rank) @ T.ravel()`` for a rotation ``R``
    acting on every index of a rank-``rank`` tensor ``T``.

    >>> r = np.array([[0.0, -1.0], [1.0, 0.0]])
    >>> np.array_equal(kron_power(r, 2), np.kron(r, r))
    True
    >>> kron_power(np.stack([r, r.T]), 3).shape
    (2, 8, 8)
    """
    m = np.asarray(matrix, dtype=float)
    out = np.ones((*m.shape[:-2], 1, 1))
    for _ in range(n):
        rows, cols = out.shape[-2] * m.shape[-2], out.shape[-1] * m.shape[-1]
        out = np.einsum("...ab,...ij->...aibj", out, m).reshape(*m.shape[:-2], rows, cols)
    return out


def wigner_d(kind: str | TensorKind, rot: np.ndarray) -> np.ndarray:
    r"""Block-diagonal representation matrix of ``rot`` on the irreps of ``kind``.

    For every part ``(l, p)``: :math:`D^{l,p}(R) = p^{(1-\det R)/2}\, C^l (R'^{\otimes l})
    C^{l\top}` with :math:`R' = \det(R)\,R`, which is e3nn's ``D_from_matrix``.

    >>> r = np.diag([-1.0, -1.0, -1.0])             # inversion
    >>> np.diag(wigner_d("piezoelectric", r))[:3]   # odd parts change sign
    array([-1., -1., -1.])
    """
    k = _kind(kind)
    r = np.asarray(rot, dtype=float)
    det = np.linalg.det(r)
    if r.shape != (3, 3) or not np.allclose(r @ r.T, np.eye(3), atol=1e-8):
        raise ValueError("rot must be a 3x3 orthogonal matrix")
    proper = r * np.sign(det)
    d = np.zeros((k.dim, k.dim))
    for block in irrep_blocks(k):
        c = harmonic_basis(block.part.l)
        sign = block.part.parity if det < 0 else 1
        d[block.slice, block.slice] = sign * (c @ kron_power(proper, block.part.l) @ c.T)
    return d


def parts_report(tensor: np.ndarray, kind: str | TensorKind) -> list[dict]:
    """Per irreducible part: irrep, source sub-tensor, components, norm and share of the norm.

    The share is ``|y_part|^2 / |y|^2`` (the parts are orthogonal, so shares add up to 1).

    >>> [r["irrep"] for r in parts_report(np.eye(3), "dielectric")]
    ['0e', '2e']
    """
    k = _kind(kind)
    y = to_irreps(tensor, k)
    total = float(y @ y)
    report = []
    for block in irrep_blocks(k):
        values = y[block.slice]
        norm2 = float(values @ values)
        report.append(
            {
                "irrep": block.part.irrep,
                "l": block.part.l,
                "parity": block.part.parity,
                "source": block.part.source,
                "description": block.part.description,
                "components": values.tolist(),
                "norm": math.sqrt(norm2),
                "share": norm2 / total if total > 0 else 0.0,
            }
        )
    return report
