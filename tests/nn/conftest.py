"""The block tests run in float64 (equivariance to 1e-10) on one thread; restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import float64_one_thread


@pytest.fixture(scope="package", autouse=True)
def float64() -> Iterator[None]:
    with float64_one_thread():
        yield
