"""Figures: heatmap of component MAE, learning curves, parity plot; atomic writes."""

import json

import numpy as np
import pytest

from crystensor.tensors.kinds import get_kind
from crystensor.train.metrics import tensor_metrics
from crystensor.train.plots import plot_component_heatmap, plot_learning_curves, plot_parity

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

HISTORY = [
    {"epoch": 1, "train_loss": 1.0, "val_loss": 1.2, "val_mae": 9.0, "lr": 1e-3},
    {"epoch": 2, "train_loss": 0.5, "val_loss": None, "lr": 1e-3},
    {"train_loss": 0.3, "val_loss": 0.6, "val_mae": 6.5, "lr": 5e-4},  # epoch missing
    {"epoch": 4, "train_loss": float("nan"), "val_loss": 0.7, "val_mae": 7.0, "lr": None},
]


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def random_tensors(rng, name, n):
    kind = get_kind(name)
    return kind.symmetrize_indices(rng.normal(size=(n, *kind.cartesian_shape)))


@pytest.mark.parametrize("name", ["dielectric", "piezoelectric", "elastic"])
def test_component_heatmap(rng, tmp_path, name):
    true = random_tensors(rng, name, 5)
    metrics = tensor_metrics(true + 0.1 * random_tensors(rng, name, 5), true, name)
    metrics = json.loads(json.dumps(metrics))  # as read back from a metrics file
    out = tmp_path / "plots" / f"{name}.png"
    assert plot_component_heatmap(metrics, out, title="test") == out
    assert_png(out)
    assert [p.name for p in out.parent.iterdir()] == [f"{name}.png"]


def test_heatmap_needs_tensor_metrics(tmp_path):
    scalar = tensor_metrics(np.zeros(3), np.ones(3), "band-gap")
    with pytest.raises(ValueError, match=r"tensor kind.*'scalar'"):
        plot_component_heatmap(scalar, tmp_path / "h.png")
    assert list(tmp_path.iterdir()) == []


def test_learning_curves(tmp_path):
    out = plot_learning_curves(HISTORY, tmp_path / "curves.png", units="GPa")
    assert_png(out)
    # negative losses fall back to a linear axis; no val_mae leaves the panel empty
    assert_png(plot_learning_curves([{"train_loss": -1.0}, {"train_loss": 2.0}], out))


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ({"epoch": 1}, "list of per-epoch dicts"),
        ([], "empty"),
        ([{"epoch": 1, "train_loss": 1.0}, 3], r"history\[1\] is int"),
        ([{"epoch": 1, "train_loss": "abc"}], r"history\[0\]\['train_loss'\] is 'abc'"),
        ([{"epoch": 1, "lr": 0.1}], "nothing to plot"),
    ],
)
def test_bad_history_writes_nothing(tmp_path, history, message):
    with pytest.raises(ValueError, match=message):
        plot_learning_curves(history, tmp_path / "curves.png")
    assert list(tmp_path.iterdir()) == []


def test_render_failure_leaves_old_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    out = tmp_path / "curves.png"
    out.write_bytes(b"old")

    def broken_savefig(self, fname, **kwargs):
        fname.write(b"partial")
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        plot_learning_curves(HISTORY, out)
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_write_failure_leaves_no_temporary_file(tmp_path, monkeypatch):
    import crystensor.io.atomic

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(crystensor.io.atomic.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        plot_parity(np.ones(3), np.ones(3), "band-gap", tmp_path / "parity.png")
    assert list(tmp_path.iterdir()) == []


def test_unknown_format(tmp_path):
    with pytest.raises(ValueError, match=r"unknown format 'xyz'.*\.png"):
        plot_parity(np.ones(3), np.ones(3), "scalar", tmp_path / "parity.xyz")
    assert list(tmp_path.iterdir()) == []


def test_parity_tensor_and_scalar(rng, tmp_path):
    true = random_tensors(rng, "elastic", 4) * 100
    out = plot_parity(true + random_tensors(rng, "elastic", 4), true, "elastic", tmp_path / "e.png")
    assert_png(out)
    assert_png(plot_parity([1.0, 2.0, 3.0], [1.1, 2.2, 2.9], "band-gap", tmp_path / "s.png"))
    with pytest.raises(ValueError, match="non-finite"):
        plot_parity([1.0, np.nan], [1.0, 2.0], "band-gap", tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.png", "s.png"]
