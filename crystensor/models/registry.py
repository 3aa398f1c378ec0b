"""The registry of architectures: name -> model class, and :func:`build_model`."""

from __future__ import annotations

import torch

from crystensor.models.base import TensorModel
from crystensor.models.config import CONFIG_CLASSES, ModelConfig
from crystensor.models.seconv import SEConv
from crystensor.models.segnn import SEGNN
from crystensor.models.setransformer import SETransformer

__all__ = ["ARCHITECTURES", "build_model"]

ARCHITECTURES: dict[str, type[TensorModel]] = {
    cls.arch: cls for cls in (SEGNN, SEConv, SETransformer)
}
if set(ARCHITECTURES) != set(CONFIG_CLASSES):  # pragma: no cover - a programming error
    raise RuntimeError("models.registry and models.config list different architectures")


def build_model(config: ModelConfig, pretrained: torch.nn.Module | None = None) -> TensorModel:
    """The model ``config`` describes, with freshly initialised weights.

    A pretrained backbone (``config.backbone``) is loaded by name unless ``pretrained`` gives
    the potential itself.

    >>> from crystensor.models import preset
    >>> type(build_model(preset("seconv", "small", num_node_features=8))).__name__
    'SEConv'
    """
    if not isinstance(config, ModelConfig):
        raise ValueError(f"build_model needs a ModelConfig, got {type(config).__name__}")
    return ARCHITECTURES[config.arch](config, pretrained)
