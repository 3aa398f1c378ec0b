"""Voigt notation <-> full Cartesian tensors.

One convention everywhere, pymatgen's: the Voigt index ``I`` runs over the index pairs

    0: xx   1: yy   2: zz   3: yz   4: xz   5: xy

and stress-type tensors carry **no factors of 2** (``C[I, J] = C_ijkl`` and ``e[i, J] = e_ijk``
with ``(i, j) = pair(I)``, ``(k, l) = pair(J)``). This matches ``pymatgen.core.tensors.Tensor
.from_voigt`` / ``.voigt`` for the dielectric (rank 2), piezoelectric stress constants (rank 3)
and elastic stiffness (rank 4) tensors.

Shapes: a rank-2 tensor ``(..., 3, 3)`` <-> ``(..., 6)``; rank 3 ``(..., 3, 3, 3)`` <->
``(..., 3, 6)``; rank 4 ``(..., 3, 3, 3, 3)`` <-> ``(..., 6, 6)``. Leading batch axes are kept.
"""

from __future__ import annotations

import numpy as np

__all__ = ["VOIGT_LABELS", "VOIGT_PAIRS", "from_voigt", "to_voigt", "voigt_rank", "voigt_shape"]

#: Cartesian index pair of each Voigt index.
VOIGT_PAIRS: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
#: Human-readable labels of the Voigt indices.
VOIGT_LABELS: tuple[str, ...] = ("xx", "yy", "zz", "yz", "xz", "xy")

# Inverse map: full index pair (i, j) -> Voigt index.
_PAIR_TO_VOIGT = np.array([[0, 5, 4], [5, 1, 3], [4, 3, 2]])
_FIRST = np.array([p[0] for p in VOIGT_PAIRS])
_SECOND = np.array([p[1] for p in VOIGT_PAIRS])

_VOIGT_SHAPES = {2: (6,), 3: (3, 6), 4: (6, 6)}


def voigt_shape(rank: int) -> tuple[int, ...]:
    """Shape of the Voigt form of a tensor of ``rank`` (2, 3 or 4).

    >>> voigt_shape(4)
    (6, 6)
    """
    try:
        return _VOIGT_SHAPES[rank]
    except KeyError:
        raise ValueError(
            f"Voigt notation is defined for rank 2, 3 and 4, not rank {rank}"
        ) from None


def voigt_rank(shape: tuple[int, ...]) -> int:
    """Rank of the Cartesian tensor whose (unbatched) Voigt form has ``shape``.

    >>> voigt_rank((3, 6))
    3
    """
    for rank, vshape in _VOIGT_SHAPES.items():
        if tuple(shape) == vshape:
            return rank
    raise ValueError(f"shape {tuple(shape)} is not a Voigt shape (6,), (3, 6) or (6, 6)")


def to_voigt(tensor: np.ndarray, rank: int | None = None) -> np.ndarray:
    """Voigt form of a full Cartesian tensor.

    Reads the components at the Voigt index pairs (the upper triangle); it does not average
    ``t_ij`` with ``t_ji``, so apply it to tensors that have the index symmetry.

    Parameters
    ----------
    tensor : array ``(..., 3, ..., 3)``
        Cartesian tensor of rank 2, 3 or 4 with optional leading batch axes.
    rank : int, optional
        The tensor rank; needed only when batch axes are present, otherwise ``tensor.ndim``.

    Returns
    -------
    array ``(..., 6)``, ``(..., 3, 6)`` or ``(..., 6, 6)``

    Examples
    --------
    >>> c = from_voigt(np.diag([1.0, 2, 3, 4, 5, 6]))
    >>> float(to_voigt(c)[3, 3]), float(c[1, 2, 2, 1])
    (4.0, 4.0)
    """
    t = np.asarray(tensor)
    rank = t.ndim if rank is None else rank
    if rank not in _VOIGT_SHAPES or t.shape[t.ndim - rank :] != (3,) * rank:
        raise ValueError(f"expected a Cartesian tensor of rank 2, 3 or 4, got shape {t.shape}")
    if rank == 2:
        return t[..., _FIRST, _SECOND]
    if rank == 3:
        return t[..., :, _FIRST, _SECOND]
    return t[..., _FIRST[:, None], _SECOND[:, None], _FIRST[None, :], _SECOND[None, :]]


def from_voigt(voigt: np.ndarray, rank: int | None = None) -> np.ndarray:
    """Full Cartesian tensor from its Voigt form.

    Every Cartesian component is filled from its Voigt entry, so the result has the minor
    symmetries by construction; a non-symmetric 6x6 matrix gives a tensor without the major
    symmetry ``C_ijkl = C_klij`` (which :mod:`crystensor.tensors.harmonic` can report).

    Parameters
    ----------
    voigt : array ``(..., 6)``, ``(..., 3, 6)`` or ``(..., 6, 6)``
    rank : int, optional
        Rank of the result; inferred from the shape when there are no batch axes.

    Returns
    -------
    array ``(..., 3, 3)``, ``(..., 3, 3, 3)`` or ``(..., 3, 3, 3, 3)``

    Examples
    --------
    >>> e = np.zeros((3, 6)); e[2, 3] = 0.5           # e_zyz = e_zzy = 0.5
    >>> t = from_voigt(e)
    >>> float(t[2, 1, 2]), float(t[2, 2, 1])
    (0.5, 0.5)
    """
    v = np.asarray(voigt)
    if rank is None:
        rank = voigt_rank(v.shape)
    vshape = voigt_shape(rank)
    if v.shape[v.ndim - len(vshape) :] != vshape:
        raise ValueError(f"expected Voigt shape (..., {vshape}) for rank {rank}, got {v.shape}")
    if rank == 2:
        return v[..., _PAIR_TO_VOIGT]
    if rank == 3:
        return v[..., :, _PAIR_TO_VOIGT]
    return v[..., _PAIR_TO_VOIGT[:, :, None, None], _PAIR_TO_VOIGT[None, None, :, :]]
