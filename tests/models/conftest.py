"""Fixtures for the model tests: float64, tiny structures and a cache of small models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from crystensor.models import TensorModel, build_model, preset
from tests.helpers import STRUCTURES, float64_one_thread
from tests.models.graphs import NUM_FEATURES, batch_of, to_data


@pytest.fixture(scope="package", autouse=True)
def float64() -> Iterator[None]:
    with float64_one_thread():
        yield


@pytest.fixture(scope="package")
def structures(float64):
    return {name: make() for name, make in STRUCTURES.items()}


@pytest.fixture(scope="package")
def graphs(structures):
    return {name: to_data(s) for name, s in structures.items()}


@pytest.fixture(scope="package")
def small_model(float64, graphs) -> Callable[..., TensorModel]:
    """``small_model(arch, target, pooling, **overrides)``: a cached ``small``-preset model in
    eval mode; ``overrides`` are further :func:`~crystensor.models.preset` settings (such as
    ``backbone="toy"``).

    Its pooled-feature gains (``pool_norm``) are calibrated on the test graphs, so every
    contract test runs with gains that differ from channel to channel.
    """
    cache: dict[tuple, TensorModel] = {}

    def get(
        arch: str, target: str = "elastic", pooling: str = "mean", **overrides: Any
    ) -> TensorModel:
        key = (arch, target, pooling, *sorted(overrides.items()))
        if key not in cache:
            torch.manual_seed(len(cache))
            config = preset(
                arch,
                "small",
                num_node_features=NUM_FEATURES,
                target=target,
                pooling=pooling,
                pool_norm=True,
                **overrides,
            )
            model = build_model(config).eval()
            model.backbone.calibrate_pool_norm([batch_of(*graphs.values())])
            cache[key] = model
        return cache[key]

    return get
