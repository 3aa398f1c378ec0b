"""Equivariant models for tensor properties: SEGNN, SEConv, SETransformer.

>>> from crystensor.models import build_model, preset
>>> model = build_model(preset("segnn", "small", num_node_features=8, target="piezoelectric"))
>>> model.head.kind.name
'piezoelectric'
"""

from crystensor.models.base import Backbone, TensorModel, graph_inputs
from crystensor.models.config import (
    CONFIG_CLASSES,
    PRESETS,
    ModelConfig,
    SEConvConfig,
    SEGNNConfig,
    SETransformerConfig,
    config_from_dict,
    preset,
)
from crystensor.models.registry import ARCHITECTURES, build_model
from crystensor.models.seconv import SEConv
from crystensor.models.segnn import SEGNN
from crystensor.models.setransformer import SETransformer

__all__ = [
    "ARCHITECTURES",
    "CONFIG_CLASSES",
    "PRESETS",
    "SEGNN",
    "Backbone",
    "ModelConfig",
    "SEConv",
    "SEConvConfig",
    "SEGNNConfig",
    "SETransformer",
    "SETransformerConfig",
    "TensorModel",
    "build_model",
    "config_from_dict",
    "graph_inputs",
    "preset",
]
