"""Test helpers: tiny structures built in code, random orthogonal matrices, float64 switching.

Rotating a Cartesian tensor is the library's own
:func:`crystensor.tensors.harmonic.rotate_tensor` (``rotate`` here, the name the tests use).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from pymatgen.core import Lattice, Structure

from crystensor.tensors.harmonic import rotate_tensor as rotate

__all__ = [
    "STRUCTURES",
    "americium",
    "float64_one_thread",
    "isolated_cs",
    "nacl",
    "random_orthogonal",
    "rotate",
    "silicon",
    "triclinic",
    "zno_wurtzite",
]


def random_orthogonal(rng: np.random.Generator, proper: bool | None = None) -> np.ndarray:
    """A random 3x3 orthogonal matrix (Haar); ``proper`` forces det +1 or -1, None leaves it."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if proper is not None and (np.linalg.det(q) > 0) != proper:
        q = -q
    return q


@contextmanager
def float64_one_thread() -> Iterator[None]:
    """torch in float64 (equivariance is checked to 1e-10) on one thread; both restored after.

    One thread because on tiny graphs thread start-up costs more than it saves.
    """
    import torch  # here, so that the numpy-only tests do not pay for importing it

    previous, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)
        torch.set_num_threads(threads)


# -- tiny structures ---------------------------------------------------------------------------
def nacl() -> Structure:
    """Rock salt, primitive fcc cell (m-3m, centrosymmetric)."""
    return Structure(
        Lattice.from_parameters(3.99, 3.99, 3.99, 60, 60, 60),
        ["Na", "Cl"],
        [[0, 0, 0], [0.5, 0.5, 0.5]],
    )


def silicon() -> Structure:
    """Diamond Si, primitive fcc cell (m-3m, centrosymmetric)."""
    return Structure(
        Lattice.from_parameters(3.84, 3.84, 3.84, 60, 60, 60),
        ["Si", "Si"],
        [[0, 0, 0], [0.25, 0.25, 0.25]],
    )


def zno_wurtzite() -> Structure:
    """Wurtzite ZnO (6mm, polar: piezoelectric)."""
    u = 0.382
    return Structure(
        Lattice.hexagonal(3.25, 5.21),
        ["Zn", "Zn", "O", "O"],
        [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]],
    )


def triclinic() -> Structure:
    """Three atoms in a triclinic cell, no symmetry (P1)."""
    return Structure(
        Lattice.from_parameters(3.9, 4.4, 4.8, 78, 84, 97),
        ["Ga", "N", "O"],
        [[0.02, 0.05, 0.01], [0.47, 0.31, 0.42], [0.21, 0.68, 0.77]],
    )


def isolated_cs() -> Structure:
    """One Cs atom in a 6.3 A cube: no neighbour within 5 A (or 6 A)."""
    return Structure(Lattice.cubic(6.3), ["Cs"], [[0, 0, 0]])


def americium() -> Structure:
    """An element outside the atom-feature table."""
    return Structure(Lattice.cubic(3.0), ["Am"], [[0, 0, 0]])


STRUCTURES = {"NaCl": nacl, "Si": silicon, "ZnO": zno_wurtzite, "triclinic": triclinic}
