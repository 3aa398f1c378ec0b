"""The ``paper-v1`` atom features: layout, one-hot blocks, scaling, missing values, guards."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Element, Species

from crystensor.data import elements
from crystensor.data.elements import (
    BLOCKS,
    CONTINUOUS_FEATURES,
    FEATURE_DIM,
    FEATURE_NAMES,
    FEATURE_SET,
    Z_MAX,
    check_species,
    feature_table,
    node_features,
    valence_electrons,
)
from crystensor.errors import InputError

Z = np.arange(1, Z_MAX + 1)


def columns(prefix: str) -> np.ndarray:
    return np.array([k for k, name in enumerate(FEATURE_NAMES) if name.startswith(prefix)])


def test_layout():
    assert FEATURE_SET == "paper-v1" and Z_MAX == 94
    assert FEATURE_DIM == len(FEATURE_NAMES) == 94 + 18 + 7 + 4 + 6 + 2 == 131
    assert len(set(FEATURE_NAMES)) == FEATURE_DIM
    table = feature_table()
    assert table.shape == (Z_MAX + 1, FEATURE_DIM) and table.dtype == np.float32
    assert not table.flags.writeable and np.all(np.isfinite(table))


@pytest.mark.parametrize(("prefix", "width"), [("Z=", 94), ("group=", 18), ("period=", 7)])
def test_one_hot_blocks(prefix, width):
    block = feature_table()[1:, columns(prefix)]
    assert block.shape == (Z_MAX, width)
    assert set(np.unique(block)) == {0.0, 1.0} and np.all(block.sum(axis=1) == 1)


def test_one_hot_values_follow_pymatgen():
    table = feature_table()
    for symbol in ("H", "O", "Fe", "Zn", "Ga", "Ce", "Lu", "U", "Pu"):
        el = Element(symbol)
        row = table[el.Z]
        assert row[columns("Z=")].argmax() + 1 == el.Z
        assert row[columns("group=")].argmax() + 1 == el.group
        assert row[columns("period=")].argmax() + 1 == el.row
        assert BLOCKS[row[columns("block=")].argmax()] == el.block
    assert np.all(table[1:, columns("block=")].sum(axis=1) == 1)


def test_continuous_features_are_standardised():
    table = feature_table()
    raw = elements.raw_properties()
    fe = Element("Fe")
    for name in CONTINUOUS_FEATURES:
        col = FEATURE_NAMES.index(name)
        present = np.isfinite(raw[name])
        values = table[1:, col][present]
        assert abs(values.mean()) < 1e-5 and abs(values.std() - 1) < 1e-5, name
        mean, std = elements.feature_statistics()[name]
        assert table[fe.Z, col] == pytest.approx((raw[name][25] - mean) / std, rel=1e-6)
    assert raw["atomic_mass"][25] == pytest.approx(float(fe.atomic_mass))
    assert raw["ionization_energy"][7] == pytest.approx(13.618, abs=1e-3)  # O, eV


def test_missing_values_are_imputed_and_flagged():
    table = feature_table()
    symbols = {el.Z: el.symbol for el in Element}
    for name, expected in [
        ("electronegativity", {"He", "Ne", "Ar"}),
        ("atomic_radius", {"He", "Ne", "Kr", "Xe", "At", "Rn", "Fr"}),
    ]:
        flag = table[1:, FEATURE_NAMES.index(f"{name}_missing")]
        flagged = {symbols[int(z)] for z in Z[flag == 1]}
        assert flagged == expected, name
        assert np.all(table[1:, FEATURE_NAMES.index(name)][flag == 1] == 0.0)
    others = [FEATURE_NAMES.index(n) for n in CONTINUOUS_FEATURES[2:]]
    assert np.all(np.isfinite(elements.raw_properties()["ionization_energy"]))
    assert np.all(np.isfinite(table[1:, others]))


@pytest.mark.parametrize(
    ("symbol", "count"),
    [
        ("H", 1),
        ("He", 2),
        ("C", 4),
        ("Ne", 8),
        ("Na", 1),
        ("Fe", 8),
        ("Ni", 10),
        ("Cu", 1),
        ("Zn", 2),
        ("Ga", 3),
        ("Kr", 8),
        ("Pd", 10),
        ("Ag", 1),
        ("Ce", 4),
        ("Yb", 2),
        ("Lu", 3),
        ("Hf", 4),
        ("Hg", 2),
        ("Pb", 4),
        ("U", 6),
        ("Pu", 8),
    ],
)
def test_valence_electrons(symbol, count):
    assert valence_electrons(symbol) == count == valence_electrons(Element(symbol).Z)


def test_node_features_is_a_table_lookup():
    z = np.array([11, 17, 11, 8])
    x = node_features(z)
    assert x.shape == (4, FEATURE_DIM) and x.dtype == np.float32
    np.testing.assert_array_equal(x, feature_table()[z])
    np.testing.assert_array_equal(x[0], x[2])
    assert node_features(np.array([], dtype=int)).shape == (0, FEATURE_DIM)
    with pytest.raises(InputError, match=r"unsupported element\(s\) Am"):
        node_features([1, 95])
    with pytest.raises(InputError, match="Z=0"):
        node_features([0, 1])


def test_check_species_names_every_unsupported_element():
    assert check_species(["Fe", Element("O"), Species("Fe", 3), 8, "Fe2+"]).tolist() == [
        26,
        8,
        26,
        8,
        26,
    ]
    with pytest.raises(InputError) as err:
        check_species(["Na", "Cm", "Am", "Cm", "Xx"])
    message = str(err.value)
    assert message.startswith("unsupported element(s) Am, Cm, Xx:") and "Z = 1..94" in message


def test_feature_table_hash_is_stable():
    digest = elements.feature_table_sha256()
    assert len(digest) == 64 and digest == elements.feature_table_sha256()
