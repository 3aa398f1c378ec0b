"""Shared fixtures: the shared data folder and a seeded random generator.

Tiny structures, random orthogonal matrices and the float64 switch of the nn and model tests
are plain functions in :mod:`tests.helpers`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CRYSTENSOR_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets in ``../shared/data``; tests that use it skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not present (set CRYSTENSOR_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


@pytest.fixture(scope="session")
def toy_backbone() -> str:
    """Registers ``"toy"``, a float64-capable stand-in for a pretrained potential
    (:mod:`tests.models.toy_potential`), and returns its name."""
    from crystensor.models.backbones import register_backbone
    from tests.models.toy_potential import ToyPotential

    register_backbone(
        "toy", ToyPotential, lambda: {"name": "toy", "package": "tests", "sha256": "0" * 64}
    )
    return "toy"
