"""Test helpers: random orthogonal matrices and rotating Cartesian tensors."""

from __future__ import annotations

import numpy as np


def random_orthogonal(rng: np.random.Generator, proper: bool | None = None) -> np.ndarray:
    """A random 3x3 orthogonal matrix (Haar); ``proper`` forces det +1 or -1, None leaves it."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if proper is not None and (np.linalg.det(q) > 0) != proper:
        q = -q
    return q


def rotate(tensor: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """Apply ``rot`` on every index of a Cartesian tensor: T'_{ab..} = R_ai R_bj .. T_{ij..}."""
    out = tensor
    for axis in range(tensor.ndim):
        out = np.moveaxis(np.tensordot(rot, out, axes=([1], [axis])), 0, axis)
    return out
