"""crystensor: tensor properties of crystals from E(3)-equivariant graph networks.

The mathematics lives in :mod:`crystensor.tensors` (numpy only); the command line in
:mod:`crystensor.cli`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
