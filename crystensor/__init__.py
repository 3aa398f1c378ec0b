"""crystensor: tensor properties of crystals from E(3)-equivariant graph networks.

The mathematics lives in :mod:`crystensor.tensors` (numpy only); the command line in
:mod:`crystensor.cli`; prediction in :mod:`crystensor.prediction`, whose :func:`predict` and
:func:`predict_results` are importable from here (loaded on first use, so that ``import
crystensor`` does not import torch).
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "predict", "predict_results"]

_LAZY = {"predict": "crystensor.prediction", "predict_results": "crystensor.prediction"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crystensor' has no attribute {name!r}")
