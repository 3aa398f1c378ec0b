"""SEConv: steerable equivariant convolutions (Brandstetter et al. 2021).

One steerable convolution per message, ``h_j ⊗ Y(r_ij)`` with channel-wise paths and per-edge
radial-MLP weights, nonlinearity after aggregation
(:class:`crystensor.nn.interaction.SEConvLayer`); the rest of the model is the shared
:class:`~crystensor.models.base.Backbone` and head.
"""

from __future__ import annotations

from crystensor.models.base import TensorModel
from crystensor.models.config import SEConvConfig
from crystensor.nn.interaction import SEConvLayer

__all__ = ["SEConv"]


class SEConv(TensorModel):
    """Steerable equivariant convolutional network for tensor (or scalar) targets.

    Parameters
    ----------
    config : SEConvConfig

    Examples
    --------
    >>> from crystensor.models import preset
    >>> model = SEConv(preset("seconv", "small", num_node_features=8, target="piezoelectric"))
    >>> [type(layer).__name__ for layer in model.backbone.interactions]
    ['SEConvLayer', 'SEConvLayer']
    """

    arch = "seconv"
    config_class = SEConvConfig
    interaction_layer = SEConvLayer
    interaction_options = ("num_radial", "radial_hidden", "avg_num_neighbors")
