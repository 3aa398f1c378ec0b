"""Metrics of predicted tensors: per-component Voigt MAE, Frobenius error, EwT, per system."""

import json

import numpy as np
import pytest

from crystensor.tensors.kinds import get_kind
from crystensor.train.metrics import (
    CRYSTAL_SYSTEMS,
    check_predictions,
    format_metrics,
    resolve_kind,
    tensor_metrics,
)
from tests.helpers import random_orthogonal, rotate

TENSOR_KINDS = ["dielectric", "piezoelectric", "elastic"]


def random_tensors(rng, name, n):
    """``(n, 3, ..., 3)`` random tensors with the index symmetry of kind ``name``."""
    kind = get_kind(name)
    return kind.symmetrize_indices(rng.normal(size=(n, *kind.cartesian_shape)))


def dielectric_xx(values):
    """Dielectric tensors whose only non-zero component is eps_xx = ``values[s]``."""
    out = np.zeros((len(values), 3, 3))
    out[:, 0, 0] = values
    return out


@pytest.mark.parametrize("name", TENSOR_KINDS)
def test_exact_prediction(rng, name):
    true = random_tensors(rng, name, 4)
    m = tensor_metrics(true.copy(), true, name)
    kind = get_kind(name)
    assert m["kind"] == name and m["units"] == kind.units and m["n"] == 4
    assert np.shape(m["component_mae"]) == kind.voigt_shape
    assert m["mae"] == 0.0 and m["max_component_mae"] == 0.0 and m["frobenius_mae"] == 0.0
    assert m["relative_frobenius_median"] == 0.0
    assert m["ewt"] == {"25": 1.0, "10": 1.0, "5": 1.0}
    assert m["n_zero_target"] == 0


def test_voigt_labels():
    m = tensor_metrics(np.ones((1, 3, 3)), np.ones((1, 3, 3)), "dielectric")
    assert m["voigt_labels"] == {"rows": ["x", "y", "z"], "columns": ["x", "y", "z"]}
    m = tensor_metrics(np.zeros((1, 3, 3, 3)), np.zeros((1, 3, 3, 3)), "piezoelectric")
    assert m["voigt_labels"] == {"rows": list("123"), "columns": list("123456")}
    m = tensor_metrics(np.zeros((1,) + (3,) * 4), np.zeros((1,) + (3,) * 4), "elastic")
    assert m["voigt_labels"] == {"rows": list("123456"), "columns": list("123456")}


@pytest.mark.parametrize(
    ("name", "entry", "frobenius_factor"),
    [
        ("elastic", (0, 0), 1.0),  # C11 is the single component xxxx
        ("elastic", (3, 3), 2.0),  # C44 is yzyz, yzzy, zyyz, zyzy
        ("piezoelectric", (0, 4), np.sqrt(2.0)),  # e15 is xxz and xzx
        ("dielectric", (2, 2), 1.0),
    ],
)
def test_offset_in_one_voigt_component(rng, name, entry, frobenius_factor):
    kind = get_kind(name)
    true = random_tensors(rng, name, 5)
    offset = np.zeros(kind.voigt_shape)
    offset[entry] = 0.5
    pred = true + kind.from_voigt(offset)
    m = tensor_metrics(pred, true, name)
    expected = np.zeros(kind.voigt_shape)
    expected[entry] = 0.5
    np.testing.assert_allclose(m["component_mae"], expected, atol=1e-15)
    assert m["mae"] == pytest.approx(0.5 / expected.size, abs=1e-15)
    assert m["max_component_mae"] == pytest.approx(0.5)
    assert m["max_component"] == kind.voigt_labels()[np.ravel_multi_index(entry, kind.voigt_shape)]
    assert m["frobenius_mae"] == pytest.approx(0.5 * frobenius_factor)


@pytest.mark.parametrize(
    ("name", "independent"), [("elastic", 21), ("dielectric", 6), ("piezoelectric", 18)]
)
def test_mae_over_independent_components(rng, name, independent):
    """An off-diagonal error appears twice in a symmetric Voigt matrix but once among the
    independent components (C12 = C21; eps_xy = eps_yx)."""
    kind = get_kind(name)
    true = random_tensors(rng, name, 4)
    offset = np.zeros(kind.voigt_shape)
    offset[0, 1] = 0.6
    if kind.voigt_shape[0] == kind.voigt_shape[1]:
        offset[1, 0] = 0.6
    m = tensor_metrics(true + kind.from_voigt(offset), true, name)
    assert m["mae_independent"] == pytest.approx(0.6 / independent, abs=1e-14)
    assert m["mae"] == pytest.approx(offset.sum() / offset.size, abs=1e-14)


def test_component_mae_averages_over_structures():
    true = dielectric_xx([1.0, 2.0, 3.0, 4.0])
    pred = dielectric_xx([2.0, 2.0, 0.0, 4.0])  # |errors| in xx: 1, 0, 3, 0
    m = tensor_metrics(pred, true, "dielectric")
    assert m["component_mae"][0][0] == 1.0
    assert m["mae"] == pytest.approx(1.0 / 9)
    assert m["frobenius_mae"] == 1.0


def test_ewt_thresholds_are_strict():
    # relative errors: 0.25, 0.10, 0.05, 0/0, 1e-9/0, 0.24 (all exact in floating point)
    true = dielectric_xx([4.0, 10.0, 20.0, 0.0, 0.0, 4.0])
    pred = dielectric_xx([5.0, 11.0, 21.0, 0.0, 1e-9, 4.96])
    m = tensor_metrics(pred, true, "dielectric")
    assert m["ewt"] == {"25": 4 / 6, "10": 2 / 6, "5": 1 / 6}
    assert m["n_zero_target"] == 2
    # sorted: 0, 0.05, 0.1, 0.24, 0.25, inf
    assert m["relative_frobenius_median"] == pytest.approx(0.17)


def test_mostly_zero_targets_give_null_median():
    true = dielectric_xx([0.0, 0.0, 1.0])
    m = tensor_metrics(dielectric_xx([1.0, 1.0, 1.0]), true, "dielectric")
    assert m["relative_frobenius_median"] is None
    assert m["ewt"]["25"] == pytest.approx(1 / 3)
    assert "2 targets are zero" in format_metrics(m)[2]


@pytest.mark.parametrize("name", TENSOR_KINDS)
def test_frobenius_and_ewt_are_rotation_invariant(rng, name):
    true = random_tensors(rng, name, 12)
    pred = true + random_tensors(rng, name, 12) * rng.uniform(0.01, 0.5, size=12).reshape(
        (12,) + (1,) * get_kind(name).rank
    )
    before = tensor_metrics(pred, true, name)
    rot = random_orthogonal(rng)
    after = tensor_metrics(
        np.stack([rotate(p, rot) for p in pred]), np.stack([rotate(t, rot) for t in true]), name
    )
    assert after["frobenius_mae"] == pytest.approx(before["frobenius_mae"], rel=1e-12)
    assert after["relative_frobenius_median"] == pytest.approx(
        before["relative_frobenius_median"], rel=1e-12
    )
    assert after["ewt"] == before["ewt"]
    assert 0 < before["ewt"]["25"] < 1  # the check is not vacuous


def test_per_crystal_system(rng):
    systems = ["cubic", "triclinic", "cubic", "", "Hexagonal", "cubic"]
    true = dielectric_xx([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    pred = dielectric_xx([1.0, 3.0, 1.0, 1.0, 1.0, 1.6])  # errors: triclinic 2, one cubic 0.6
    m = tensor_metrics(pred, true, "dielectric", crystal_systems=np.array(systems))
    per = m["per_crystal_system"]
    assert list(per) == ["triclinic", "hexagonal", "cubic", "unknown"]
    assert {s: v["n"] for s, v in per.items()} == {
        "triclinic": 1,
        "hexagonal": 1,
        "cubic": 3,
        "unknown": 1,
    }
    assert per["triclinic"]["mae"] == pytest.approx(2 / 9)
    assert per["cubic"]["mae"] == pytest.approx(0.2 / 9)
    assert per["cubic"]["frobenius_mae"] == pytest.approx(0.2)
    assert per["cubic"]["ewt"] == {"25": 2 / 3, "10": 2 / 3, "5": 2 / 3}  # relative 0, 0, 0.6
    assert per["triclinic"]["ewt"] == {"25": 0.0, "10": 0.0, "5": 0.0}
    assert sum(v["n"] for v in per.values()) == m["n"]
    assert set(per) <= {*CRYSTAL_SYSTEMS, "unknown"}


def test_bad_crystal_systems():
    t = dielectric_xx([1.0, 2.0])
    with pytest.raises(ValueError, match="one name per structure"):
        tensor_metrics(t, t, "dielectric", crystal_systems=["cubic"])
    with pytest.raises(ValueError, match=r"crystal_systems\[1\] is 'rhombohedral'"):
        tensor_metrics(t, t, "dielectric", crystal_systems=["cubic", "rhombohedral"])


def test_scalar_metrics():
    m = tensor_metrics(
        np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]), "band-gap", ["cubic"] * 3
    )
    assert m["kind"] == "scalar" and m["units"] == "eV" and m["n"] == 3
    assert m["mae"] == pytest.approx(2 / 3)
    assert m["rmse"] == pytest.approx(np.sqrt(4 / 3))
    assert m["r2"] == pytest.approx(42 / 78)  # 1 - 4 / (78 / 9)
    assert m["per_crystal_system"] == {"cubic": {"n": 3, "mae": pytest.approx(2 / 3)}}
    assert "component_mae" not in m
    constant = tensor_metrics(np.array([1.0, 2.0]), np.array([1.5, 1.5]), "scalar", units="eV")
    assert constant["r2"] is None and constant["units"] == "eV"
    line = format_metrics(m)[0]
    assert "MAE 0.667 eV" in line and "R²" in line


def test_json_round_trip(rng):
    true = random_tensors(rng, "elastic", 6)
    true[0] = 0.0
    pred = true + 0.1 * random_tensors(rng, "elastic", 6)
    systems = ["cubic", "cubic", "hexagonal", "", "trigonal", "cubic"]
    scalar = tensor_metrics(np.array([1.0, 1.0]), np.array([2.0, 2.0]), "formation-energy")
    for m in (tensor_metrics(pred, true, get_kind("elastic"), systems), scalar):
        text = json.dumps(m, allow_nan=False)
        assert json.loads(text) == m
        assert format_metrics(json.loads(text)) == format_metrics(m)


def test_format_metrics(rng):
    true = random_tensors(rng, "elastic", 3) * 100
    pred = true + random_tensors(rng, "elastic", 3)
    lines = format_metrics(tensor_metrics(pred, true, "elastic", ["cubic", "cubic", "monoclinic"]))
    assert "GPa (mean of 36 Voigt components)" in lines[0]
    assert lines[1].startswith("Frobenius MAE ") and "GPa" in lines[1]
    assert lines[2].startswith("EwT25 ") and "EwT10 " in lines[2] and "EwT5 " in lines[2]
    assert lines[3].strip().startswith("monoclinic (n = 1)")
    assert lines[4].strip().startswith("cubic (n = 2)")
    with pytest.raises(ValueError, match="tensor_metrics"):
        format_metrics({"mae": 1.0})


@pytest.mark.parametrize(
    ("pred", "true", "kind", "message"),
    [
        (np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), "elastic", r"\(2, 3, 3\).*\(n, 3, 3, 3, 3\)"),
        (np.zeros((2, 6, 6)), np.zeros((2, 6, 6)), "elastic", "from_voigt"),
        (np.zeros((2, 3, 3)), np.zeros((3, 3, 3)), "dielectric", "2 structures but true has 3"),
        (np.zeros((0, 3, 3)), np.zeros((0, 3, 3)), "dielectric", "empty"),
        (np.zeros((2, 1)), np.zeros((2, 1)), "scalar", r"reshape\(-1\)"),
        (np.array(["a", "b"]), np.zeros(2), "scalar", "dtype"),
        (np.zeros(2), np.zeros(2), "stiffness", "unknown tensor kind or property 'stiffness'"),
    ],
)
def test_bad_input(pred, true, kind, message):
    with pytest.raises(ValueError, match=message):
        tensor_metrics(pred, true, kind)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values(rng, bad):
    true = random_tensors(rng, "piezoelectric", 4)
    pred = true.copy()
    pred[2, 1, 0, 2] = bad
    with pytest.raises(ValueError, match=r"pred has non-finite.*1 of 4 structures.*index 2"):
        tensor_metrics(pred, true, "piezoelectric")
    with pytest.raises(ValueError, match="true has non-finite"):
        check_predictions(true, pred, "piezoelectric")


def test_resolve_kind():
    assert resolve_kind("dielectric-electronic")[0].name == "dielectric"
    assert resolve_kind(get_kind("elastic"), units="kbar") == (get_kind("elastic"), "kbar")


def test_sign_agnostic_metrics_of_odd_tensors(rng):
    """Piezoelectric metrics carry a sign-agnostic block: a prediction that is right up to the
    sign of each structure scores 0 there, and its signed MAE counts every sign error."""
    true = random_tensors(rng, "piezoelectric", 6)
    signs = np.array([1, -1, 1, -1, -1, 1.0]).reshape(6, 1, 1, 1)
    m = tensor_metrics(true * signs, true, "piezoelectric")
    free = m["sign_agnostic"]
    assert free["mae"] == 0.0 and free["frobenius_mae"] == 0.0
    assert free["ewt"]["5"] == 1.0 and free["sign_agreement"] == pytest.approx(0.5)
    assert m["mae"] > 0.0
    flipped = tensor_metrics(-true * signs, true, "piezoelectric")["sign_agnostic"]
    assert flipped["mae"] == 0.0 and flipped["sign_agreement"] == pytest.approx(0.5)
    # a genuine error is still counted, the same for either sign of the prediction
    off = true * signs + 0.1
    a = tensor_metrics(off, true, "piezoelectric")["sign_agnostic"]["mae"]
    b = tensor_metrics(-off, -true, "piezoelectric")["sign_agnostic"]["mae"]
    assert a > 0 and a == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("name", ["dielectric", "elastic"])
def test_even_tensors_have_no_sign_agnostic_block(rng, name):
    true = random_tensors(rng, name, 3)
    assert "sign_agnostic" not in tensor_metrics(true, true, name)
