"""A finished run records what its model has seen (elements, pooled features) in best.pt."""

from __future__ import annotations

import numpy as np

from crystensor.checkpoint import load_checkpoint
from crystensor.domain import FeatureDomain
from crystensor.prediction import load_predictor
from crystensor.train.domain import training_elements
from tests.helpers import nacl
from tests.train.conftest import SPECIES, train_tiny


def test_best_pt_records_the_training_domain(tiny_stores, tmp_path):
    from crystensor.data.store import GraphStore

    train_tiny(tiny_stores["dielectric"], tmp_path / "run", epochs=1)
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    with GraphStore(tiny_stores["dielectric"]) as store:
        expected = training_elements(store)
    assert best.domain["elements"] == expected
    assert set(expected) <= {e for pair in SPECIES for e in pair}
    features = best.domain["features"]
    assert features["calibrated_on"] == "test" and 0 < features["threshold"] < np.inf
    assert features["descriptor"] == "pooled"  # mean pooling: the pooled features
    fitted = FeatureDomain.from_dict(features)
    assert fitted.reference.shape[0] == best.metrics["counts"]["train"]
    # a structure of the training chemistry predicts without an unseen-element warning
    (result,) = load_predictor(model=tmp_path / "run" / "best.pt").predict_results([nacl()])
    assert result.ok and np.isfinite(result.feature_distance)
    unseen = [w for w in result.warnings if w["code"] == "unseen-element"]
    assert unseen == [] if {"Na", "Cl"} <= set(expected) else len(unseen) == 1


def test_the_flag_quality_is_measured(tiny_stores, tmp_path):
    train_tiny(tiny_stores["elastic"], tmp_path / "run", epochs=1)
    features = load_checkpoint(tmp_path / "run" / "best.pt").domain["features"]
    rho = features["error_rank_correlation"]
    assert rho is None or -1.0 <= rho <= 1.0
    medians = features["median_relative_error"]
    assert medians["others"] is not None and medians["others"] > 0


def test_a_density_pooled_model_records_node_mean_descriptors(tiny_stores, tmp_path, caplog):
    from crystensor.checkpoint import save_checkpoint

    train_tiny(tiny_stores["elastic"], tmp_path / "run", epochs=1)  # density pooling: default
    path = tmp_path / "run" / "best.pt"
    checkpoint = load_checkpoint(path)
    assert checkpoint.model_config.pooling == "density"
    assert checkpoint.domain["features"]["descriptor"] == "node-mean"
    assert load_predictor(model=path).feature_domain is not None
    # a reference of the pooled features (as recorded before) is not compared with node means
    del checkpoint.domain["features"]["descriptor"]
    save_checkpoint(checkpoint, path)
    predictor = load_predictor(model=path)
    assert predictor.feature_domain is None and "--refresh-domain" in caplog.text
    (result,) = predictor.predict_results([nacl()])
    assert result.ok and "far-from-training" not in str(result.warnings)
