"""What a trained model has seen, recorded in its checkpoint for predict's domain warnings.

``Checkpoint.domain`` holds

============  ==================================================================================
``elements``  element symbols of the training split, sorted
``features``  :meth:`crystensor.domain.FeatureDomain.to_dict`: the training split's invariant
              descriptors of the pooled features (standardised), and the distance threshold:
              the 95th percentile of the test split's nearest-training-neighbour distances;
              ``calibrated_on`` (the split), and how well the distance tells the error there:
              ``error_rank_correlation`` (Spearman, distance vs relative Frobenius error of
              the network's tensor) and ``median_relative_error`` ``{"flagged", "others"}``
============  ==================================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from crystensor.domain import FeatureDomain, descriptor_kind, invariant_descriptor, pooled_irreps

__all__ = ["descriptors", "model_domain", "pooled_irreps"]


def descriptors(model: torch.nn.Module, dataset: Any, batch_size: int = 64) -> np.ndarray:
    """Invariant descriptors ``(len(dataset), d)`` of the model's pooled features (the node
    features' mean under density pooling: ``Backbone.pooled_and_descriptor``)."""
    return _descriptors_and_errors(model, dataset, batch_size)[0]


@torch.no_grad()
def _descriptors_and_errors(
    model: torch.nn.Module, dataset: Any, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors and the relative Frobenius error ``(n,)`` of the network's tensor."""
    from crystensor.train.loop import _loader

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    irreps = pooled_irreps(model)
    found, errors = [], []
    for batch in _loader(dataset, batch_size):
        batch = batch.to(device)
        pooled, features = model.backbone.pooled_and_descriptor(batch)
        found.append(invariant_descriptor(features.double().cpu().numpy(), irreps))
        out = model.head_of(pooled, batch)
        pred = out["scalar" if "scalar" in out else "cartesian"].double().cpu().numpy()
        true = batch.y_cartesian.double().cpu().numpy().reshape(pred.shape)
        diff = np.linalg.norm((pred - true).reshape(len(pred), -1), axis=1)
        norm = np.linalg.norm(true.reshape(len(true), -1), axis=1)
        errors.append(np.divide(diff, norm, out=np.full_like(diff, np.nan), where=norm > 0))
    model.train(was_training)
    if not found:
        return np.zeros((0, sum(m for m, _, _ in irreps))), np.zeros(0)
    return np.concatenate(found), np.concatenate(errors)


def training_elements(store: Any) -> list[str]:
    """Sorted element symbols of the graphs in the store's training split (in use)."""
    systems = store.chemical_systems
    found: set[str] = set()
    for index in store.split_indices("train"):
        found.update(systems[index].split("-"))
    return sorted(found)


def model_domain(model: torch.nn.Module, dataset: Any, batch_size: int = 64) -> dict[str, Any]:
    """``Checkpoint.domain`` of ``model`` trained on ``dataset``'s train split.

    The feature threshold is calibrated on the test split (the validation split if the test
    split is empty); without either, only the elements are recorded.
    """
    domain: dict[str, Any] = {"elements": training_elements(dataset.store)}
    train = dataset.subset("train")
    held_out = dataset.subset("test")
    if len(held_out) == 0:
        held_out = dataset.subset("val")
    if len(train) and len(held_out):
        reference = descriptors(model, train, batch_size)
        test, errors = _descriptors_and_errors(model, held_out, batch_size)
        fitted = FeatureDomain.fit(reference, test)
        domain["features"] = {
            **fitted.to_dict(),
            "descriptor": descriptor_kind(model.config),
            "calibrated_on": held_out.split,
            **_error_link(fitted.distances(test), errors, fitted.threshold),
        }
    return domain


def _error_link(distance: np.ndarray, errors: np.ndarray, threshold: float) -> dict[str, Any]:
    """How the distance relates to the error on the calibration split (None where undefined)."""
    from scipy.stats import spearmanr

    keep = np.isfinite(errors)
    distance, errors = distance[keep], errors[keep]
    flagged = distance > threshold
    rho = spearmanr(distance, errors).statistic if len(errors) > 2 else float("nan")
    return {
        "error_rank_correlation": float(rho) if np.isfinite(rho) else None,
        "median_relative_error": {
            "flagged": float(np.median(errors[flagged])) if flagged.any() else None,
            "others": float(np.median(errors[~flagged])) if (~flagged).any() else None,
        },
    }
