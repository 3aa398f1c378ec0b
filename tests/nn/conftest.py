"""The block tests run in float64 (equivariance to 1e-10) on one thread; restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="package", autouse=True)
def float64() -> Iterator[None]:
    previous, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)  # tiny graphs: thread start-up costs more than it saves
    yield
    torch.set_default_dtype(previous)
    torch.set_num_threads(threads)
