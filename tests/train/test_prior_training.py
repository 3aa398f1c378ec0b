"""Training, evaluating and refusing a model that corrects a physics prior (``--prior``).

The potential is replaced by a stand-in (a tensor that depends on the cell) so that the
cache builds in milliseconds; :mod:`tests.data.test_prior_cache` checks the real one.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from crystensor.checkpoint import load_checkpoint
from crystensor.cli.app import app
from crystensor.data import prior_cache
from crystensor.data.store import GraphStore
from crystensor.errors import InputError
from crystensor.train.loop import _prior_fields
from tests.train.conftest import build_store

pytest.importorskip("sevenn")

runner = CliRunner()


def stand_in(state, index):
    """An isotropic stiffness that grows with the density; graph 3 has none."""
    if index == 3:
        return np.full((6, 6), np.nan), "not trained on Xx", np.nan, 0.0
    volume = abs(np.linalg.det(state["cells"][index]))
    k = 2000.0 / volume
    c = np.zeros((6, 6))
    c[:3, :3] = k
    c[np.diag_indices(6)] = [3 * k] * 3 + [k] * 3
    return c, "", 0.0, 0.001


@pytest.fixture
def fake_potential(monkeypatch):
    monkeypatch.setattr(prior_cache, "_prior_of", stand_in)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("stores") / "elastic.h5", "elastic", 24)


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    """``crystensor -q train --prior sevennet-0``: one epoch of the small SEGNN (the run)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    args = ["-q", "train", "-d", store, "-o", out, "--preset", "small", "--epochs", "1"]
    args += ["--batch-size", "8", "--prior", "sevennet-0"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prior_cache, "_prior_of", stand_in)
        result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return out


def test_the_checkpoint_records_the_prior(store, trained):
    assert prior_cache.prior_cache_path(store).exists()
    ckpt = load_checkpoint(trained / "best.pt")
    assert ckpt.model_config.prior == "sevennet-0"
    recorded = ckpt.featurization["prior"]
    assert recorded["potential_name"] == "sevennet-0" and recorded["prior_kind"] == "clamped"
    assert len(recorded["potential_sha256"]) == 64
    assert ckpt.build_model().prior_identity == recorded


def test_evaluate_reads_the_cached_prior(store, trained):
    import json

    from crystensor.evaluation import evaluate_store

    scores = evaluate_store(trained / "best.pt", store, split="test")
    test = json.loads((trained / "metrics.json").read_text())["test"]
    assert scores["metrics"]["mae"] == pytest.approx(test["mae"], rel=1e-5)


def test_a_store_without_its_prior_is_refused(trained, store, tmp_path, fake_potential):
    other = build_store(tmp_path / "other.h5", "elastic", 8, seed=1)
    model = load_checkpoint(trained / "best.pt").build_model()
    with pytest.raises(InputError, match="has no current sevennet-0 clamped-ion prior"):
        _prior_fields(model, GraphStore(other), build=False)
    # graphs without the prior fields
    from crystensor.data.dataset import GraphDataset

    with pytest.raises(ValueError, match="carry none"):
        model(GraphDataset(other)[0])
    # a prior made by another potential file than the model's
    model.prior_identity = {**model.prior_identity, "potential_sha256": "f" * 64}
    with pytest.raises(InputError, match="trained on the prior of sevennet-0 with file sha256"):
        _prior_fields(model, GraphStore(store))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--prior", "mace"], "--prior must be one of none, sevennet-0"),
        (["--prior-kind", "relaxed"], "--prior-kind needs --prior sevennet-0"),
        (["--prior", "sevennet-0", "--prior-kind", "x"], "--prior-kind must be one of"),
        (["--prior", "sevennet-0", "--pretrain", "band-gap"], "cannot be combined"),
    ],
)
def test_bad_prior_options(store, tmp_path, options, message):
    result = runner.invoke(app, ["train", "-d", str(store), "-o", str(tmp_path / "r"), *options])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_a_prior_needs_an_elastic_store(tmp_path, fake_potential):
    diel = build_store(tmp_path / "diel.h5", "dielectric", 8)
    result = runner.invoke(
        app, ["train", "-d", str(diel), "-o", str(tmp_path / "r"), "--prior", "sevennet-0"]
    )
    assert result.exit_code == 2, result.output
    assert "prior exists for elastic" in " ".join(result.output.split())


class _Prior:
    def __init__(self, scale):
        c = np.zeros((6, 6))
        c[:3, :3] = 40.0 * scale
        c[np.diag_indices(6)] = [120.0 * scale] * 3 + [35.0 * scale] * 3
        from crystensor.tensors.voigt import from_voigt

        self.tensor = from_voigt(c)


def test_predict_computes_the_prior_of_each_structure(trained, monkeypatch):
    import crystensor.physics
    from crystensor.prediction.api import predict_results
    from tests.helpers import nacl

    calls = []

    def fake(structure, potential, *, relaxed_ions, threads):
        calls.append((potential, relaxed_ions))
        if len(calls) == 3:
            raise InputError("SevenNet-0 was not trained on Xx")
        return _Prior(len(calls))

    monkeypatch.setattr(crystensor.physics, "compute_elastic_prior", fake)
    raw = [
        predict_results(nacl(), model=trained / "best.pt", symmetrize=False, physical=False)[0].raw
        for _ in range(3)
    ]
    assert calls == [("sevennet-0", False)] * 3
    assert np.abs(raw[0] - raw[1]).max() > 1.0  # the prior enters the prediction
    assert np.isfinite(raw[2]).all()  # without a prior the network still predicts


def test_predict_refuses_another_potential_file(trained):
    from crystensor.prediction.api import Predictor

    ckpt = load_checkpoint(trained / "best.pt")
    ckpt.featurization["prior"]["potential_sha256"] = "e" * 64
    with pytest.raises(InputError, match="corrects the sevennet-0 prior of file sha256 eeee"):
        Predictor(ckpt)


def test_a_selectable_shipped_model_is_chosen_by_name(trained, tmp_path, monkeypatch):
    import shutil

    import crystensor.pretrained as pretrained
    from crystensor.prediction.api import load_predictor, model_info

    shutil.copy(trained / "best.pt", tmp_path / "elastic-prior.pt")
    (tmp_path / "elastic-prior.md").write_text("# elastic-prior card\n")
    monkeypatch.setattr(pretrained, "PRETRAINED_DIR", tmp_path)
    monkeypatch.setattr(pretrained, "SELECTABLE_MODELS", {"elastic-prior": "elastic"})
    predictor = load_predictor("elastic", "elastic-prior")
    assert predictor.source == "shipped elastic-prior model" and predictor.prior == "sevennet-0"
    assert model_info(None, "elastic-prior")["card"] == "# elastic-prior card\n"
    monkeypatch.setattr(pretrained, "SELECTABLE_MODELS", {})
    with pytest.raises(InputError):
        load_predictor("elastic", "elastic-prior")
