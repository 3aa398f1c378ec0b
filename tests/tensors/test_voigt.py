"""Voigt <-> Cartesian: round trips and agreement with pymatgen."""

import numpy as np
import pytest
from pymatgen.core.tensors import Tensor

from crystensor.tensors.voigt import VOIGT_PAIRS, from_voigt, to_voigt, voigt_rank


@pytest.mark.parametrize("shape", [(6,), (3, 6), (6, 6)])
def test_agrees_with_pymatgen(rng, shape):
    v = rng.normal(size=shape)
    if shape == (6, 6):
        v = v + v.T
    full = from_voigt(v)
    reference = Tensor.from_voigt(v)
    np.testing.assert_array_equal(full, np.asarray(reference))
    np.testing.assert_array_equal(to_voigt(full), reference.voigt)
    np.testing.assert_array_equal(to_voigt(full), v)


def test_index_order_is_xx_yy_zz_yz_xz_xy():
    assert VOIGT_PAIRS == ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
    c = np.zeros((6, 6))
    c[3, 5] = c[5, 3] = 7.0  # C_yz,xy
    full = from_voigt(c)
    for i, j, k, l in [(1, 2, 0, 1), (2, 1, 1, 0), (0, 1, 2, 1), (1, 0, 1, 2)]:
        assert full[i, j, k, l] == 7.0
    assert np.count_nonzero(full) == 8  # no factors of 2, just the 8 equivalent positions


def test_batched_round_trip(rng):
    batch = rng.normal(size=(4, 2, 3, 6))
    full = from_voigt(batch, rank=3)
    assert full.shape == (4, 2, 3, 3, 3)
    np.testing.assert_array_equal(to_voigt(full, rank=3), batch)
    np.testing.assert_array_equal(full[1, 0], from_voigt(batch[1, 0]))


def test_bad_shapes():
    with pytest.raises(ValueError, match="not a Voigt shape"):
        voigt_rank((5, 5))
    with pytest.raises(ValueError, match="rank 2, 3 or 4"):
        to_voigt(np.zeros((3, 3, 3, 3, 3)))
    with pytest.raises(ValueError, match="Voigt shape"):
        from_voigt(np.zeros((2, 6)), rank=3)
