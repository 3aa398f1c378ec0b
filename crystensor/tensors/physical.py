"""Physically valid tensors: the nearest stable elastic tensor, the nearest dielectric >= 1.

A network's elastic tensor need not be positive definite (mechanically unstable, negative
moduli) and its dielectric tensor may have an eigenvalue below 1 (screening weaker than
vacuum). :func:`make_physical` maps such a tensor to the nearest one that is valid:

.. math::

    \\text{elastic:}\\quad M = D\\,C_{\\mathrm{Voigt}}\\,D = V \\Lambda V^T
        \\;\\mapsto\\; V \\max(\\Lambda, \\lambda_{\\min}) V^T, \\qquad
        D = \\mathrm{diag}(1, 1, 1, \\sqrt2, \\sqrt2, \\sqrt2);

    \\text{dielectric:}\\quad \\varepsilon = V \\Lambda V^T
        \\;\\mapsto\\; V \\max(\\Lambda, 1) V^T.

The Mandel (Kelvin) matrix :math:`M` is the elastic tensor as a symmetric operator on
symmetric strains in an orthonormal basis, so clipping its eigenvalues is the projection onto
:math:`\\{M \\succeq \\lambda_{\\min} I\\}` that is nearest in the Frobenius norm of the full
Cartesian tensor. Both maps are isotropic tensor functions: they commute with every rotation
and reflection, so an equivariant prediction stays equivariant and a tensor invariant under a
point group stays invariant (the caller re-projects onto the group to restore exact zeros,
which rounding in the eigendecomposition blurs). A tensor that already satisfies the floor is
returned unchanged, bit for bit. Piezoelectric tensors have no such constraint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from crystensor.tensors.kinds import TensorKind

__all__ = [
    "DIELECTRIC_FLOOR",
    "ELASTIC_FLOOR",
    "Adjustment",
    "floor_of",
    "make_physical",
    "shift_to_floor",
]

#: Smallest Kelvin modulus (eigenvalue of the Mandel matrix) an elastic prediction keeps, GPa.
#: Low enough to leave every tensor of the training data untouched (their smallest Kelvin
#: modulus is above it), high enough that the result is clearly positive definite.
ELASTIC_FLOOR = 1.0
#: Smallest eigenvalue of a predicted relative permittivity (vacuum screens with exactly 1).
DIELECTRIC_FLOOR = 1.0

# Mandel (Kelvin) scaling of the Voigt indices: D C_voigt D is the matrix of C in an
# orthonormal basis of symmetric 3x3 tensors.
_MANDEL = np.array([1.0, 1.0, 1.0, np.sqrt(2.0), np.sqrt(2.0), np.sqrt(2.0)])


@dataclass(frozen=True)
class Adjustment:
    """What :func:`make_physical` did to one tensor.

    Attributes
    ----------
    changed : bool
        Whether any eigenvalue was below the floor (the tensor was replaced).
    quantity : str
        Which eigenvalues are floored (``"Kelvin modulus"`` or ``"principal permittivity"``).
    floor : float
        The floor, in the tensor's units.
    smallest_before : float
        The smallest such eigenvalue of the tensor given.
    relative_change : float
        ``||T' - T|| / ||T||`` (Frobenius norms of the full Cartesian tensors); 0 if unchanged.
    """

    changed: bool
    quantity: str
    floor: float
    smallest_before: float
    relative_change: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def floor_of(kind: TensorKind) -> float | None:
    """The eigenvalue floor of ``kind`` (None: piezoelectric and scalars have none)."""
    return {"elastic": ELASTIC_FLOOR, "dielectric": DIELECTRIC_FLOOR}.get(kind.name)


def _floored_matrix(tensor: np.ndarray, kind: TensorKind) -> np.ndarray:
    """The matrix whose eigenvalues the floor bounds: the Mandel matrix of an elastic tensor
    ``(6, 6)``, the tensor itself otherwise."""
    if kind.name == "elastic":
        return _MANDEL[:, None] * kind.to_voigt(tensor) * _MANDEL[None, :]
    return tensor


def _clip(matrix: np.ndarray, floor: float) -> tuple[np.ndarray, float, bool]:
    sym = 0.5 * (matrix + matrix.T)
    values, vectors = np.linalg.eigh(sym)
    smallest = float(values[0])
    if smallest >= floor:
        return matrix, smallest, False
    clipped = (vectors * np.maximum(values, floor)) @ vectors.T
    return 0.5 * (clipped + clipped.T), smallest, True


def make_physical(
    tensor: np.ndarray, kind: TensorKind, floor: float | None = None
) -> tuple[np.ndarray, Adjustment | None]:
    """The nearest physically valid tensor to ``tensor`` and what changed.

    Parameters
    ----------
    tensor : array ``kind.cartesian_shape``
        Cartesian tensor in ``kind.units`` (GPa for elastic, dimensionless for dielectric),
        with the kind's index symmetry.
    kind : TensorKind
    floor : float, optional
        Smallest eigenvalue allowed; :data:`ELASTIC_FLOOR` (GPa, of the Mandel matrix) or
        :data:`DIELECTRIC_FLOOR` by default.

    Returns
    -------
    tensor : array ``kind.cartesian_shape``
        ``tensor`` itself when no eigenvalue is below the floor, else the clipped tensor
        (float64, index-symmetric).
    adjustment : Adjustment or None
        None for a kind without a floor (piezoelectric), whose tensor is returned as given.

    Raises
    ------
    ValueError
        A non-finite value, or a shape other than ``kind.cartesian_shape``.

    Examples
    --------
    >>> from crystensor.tensors.kinds import get_kind
    >>> eps, adj = make_physical(np.diag([0.5, 2.0, 3.0]), get_kind("dielectric"))
    >>> np.diag(eps).tolist(), adj.changed, adj.smallest_before
    ([1.0, 2.0, 3.0], True, 0.5)
    """
    t = np.asarray(tensor, dtype=float)
    if t.shape != kind.cartesian_shape:
        raise ValueError(f"a {kind.name} tensor has shape {kind.cartesian_shape}, got {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"the {kind.name} tensor has non-finite values")
    if floor is None:
        floor = floor_of(kind)
    if floor is None:
        return t, None
    clipped, smallest, changed = _clip(_floored_matrix(t, kind), floor)
    if kind.name == "elastic":
        out = kind.from_voigt(clipped / _MANDEL[:, None] / _MANDEL[None, :]) if changed else t
        quantity = "Kelvin modulus"
    else:
        out = clipped
        quantity = "principal permittivity"
    norm = float(np.linalg.norm(t))
    change = float(np.linalg.norm(out - t))
    relative = change / norm if norm else change
    return out, Adjustment(changed, quantity, float(floor), smallest, relative if changed else 0.0)


def _smallest(tensor: np.ndarray, kind: TensorKind) -> float:
    matrix = _floored_matrix(tensor, kind)
    return float(np.linalg.eigvalsh(0.5 * (matrix + matrix.T))[0])


def shift_to_floor(tensor: np.ndarray, kind: TensorKind, floor: float | None = None) -> np.ndarray:
    """``tensor`` plus the smallest isotropic tensor that lifts its eigenvalues to the floor.

    After :func:`make_physical`, a projection onto a point group whose operations are known
    only to the symmetry tolerance can push the smallest eigenvalue a rounding error below the
    floor (seen: 1e-8 GPa). Adding ``s * I`` (the identity on symmetric strains, or on vectors)
    raises every eigenvalue by ``s`` and keeps every symmetry, zero and equality of the tensor,
    since the identity is invariant under all rotations and reflections. Returns ``tensor``
    itself when nothing is below the floor (or the kind has none).
    """
    if floor is None:
        floor = floor_of(kind)
    if floor is None:
        return tensor
    # the target sits a margin above the floor, beyond the rounding of an eigendecomposition of
    # the tensor's size, so that the result passes make_physical however it is recomputed
    margin = 1e-12 * max(1.0, abs(floor), float(np.abs(tensor).max()))
    smallest = _smallest(tensor, kind)
    if smallest >= floor + 0.5 * margin:  # half the margin: a lifted tensor stays as it is
        return tensor
    shift = (floor + margin - smallest) * (1.0 + 1e-9)
    if kind.name == "elastic":
        return tensor + shift * kind.from_voigt(np.diag([1.0, 1.0, 1.0, 0.5, 0.5, 0.5]))
    return tensor + shift * np.eye(3)
