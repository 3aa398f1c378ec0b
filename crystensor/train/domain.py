"""What a trained model has seen, recorded in its checkpoint for predict's domain warnings.

``Checkpoint.domain`` holds

============  ==================================================================================
``elements``  element symbols of the training split, sorted
``features``  :meth:`crystensor.domain.FeatureDomain.to_dict`: the training split's invariant
              descriptors of the pooled features (standardised), and the distance threshold:
              the 95th percentile of the test split's nearest-training-neighbour distances
============  ==================================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from crystensor.domain import FeatureDomain, invariant_descriptor

__all__ = ["descriptors", "model_domain", "pooled_irreps"]


def pooled_irreps(model: torch.nn.Module) -> list[tuple[int, int, int]]:
    """``(multiplicity, l, parity)`` of the backbone's pooled output."""
    return [(mul, ir.l, ir.p) for mul, ir in model.backbone.irreps_out]


@torch.no_grad()
def descriptors(model: torch.nn.Module, dataset: Any, batch_size: int = 64) -> np.ndarray:
    """Invariant descriptors ``(len(dataset), d)`` of the model's pooled features."""
    from crystensor.train.loop import _loader

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    irreps = pooled_irreps(model)
    out = [
        invariant_descriptor(model.backbone(batch.to(device)).double().cpu().numpy(), irreps)
        for batch in _loader(dataset, batch_size)
    ]
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, sum(m for m, _, _ in irreps)))


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
        fitted = FeatureDomain.fit(
            descriptors(model, train, batch_size), descriptors(model, held_out, batch_size)
        )
        domain["features"] = fitted.to_dict()
        domain["features"]["calibrated_on"] = held_out.split
    return domain
