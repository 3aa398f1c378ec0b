"""The registry of tensor kinds and properties."""

import numpy as np
import pytest

from crystensor.tensors.kinds import KINDS, PROPERTIES, get_kind, get_property, kinds_for_shape


def test_registry_entries():
    assert get_kind("dielectric").irreps == "0e+2e"
    assert get_kind("piezoelectric").irreps == "1o+1o+2o+3o"
    assert get_kind("elastic").irreps == "0e+0e+2e+2e+4e"
    assert [get_kind(n).dim for n in ("dielectric", "piezoelectric", "elastic")] == [6, 18, 21]
    assert get_kind("elastic").units == "GPa" and get_kind("piezoelectric").units == "C/m^2"
    for prop in PROPERTIES.values():
        assert prop.tensor_kind.name in KINDS


@pytest.mark.parametrize("name", ["dielectric", "piezoelectric", "elastic"])
def test_index_projector(rng, name):
    kind = get_kind(name)
    n = 3**kind.rank
    units = np.eye(n).reshape((n, *kind.cartesian_shape))
    projector = kind.symmetrize_indices(units).reshape(n, n)
    np.testing.assert_allclose(projector @ projector, projector, atol=1e-14)
    np.testing.assert_allclose(projector, projector.T, atol=1e-14)
    assert np.linalg.matrix_rank(projector) == kind.dim
    t = rng.normal(size=kind.cartesian_shape)
    assert kind.index_asymmetry(t) > 0.1
    assert kind.index_asymmetry(kind.symmetrize_indices(t)) < 1e-15


def test_shape_inference():
    assert [(k.name, v) for k, v in kinds_for_shape((6, 6))] == [("elastic", True)]
    assert [(k.name, v) for k, v in kinds_for_shape((3, 3, 3))] == [("piezoelectric", False)]
    assert [(k.name, v) for k, v in kinds_for_shape((3, 3))] == [("dielectric", False)]
    assert kinds_for_shape((4, 4)) == []


def test_unknown_names():
    with pytest.raises(ValueError, match="choose one of"):
        get_kind("magnetic")
    with pytest.raises(ValueError, match="choose one of"):
        get_property("hardness")
