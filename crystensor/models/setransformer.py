"""SETransformer: SE(3)-Transformer attention (Fuchs et al. 2020), as in e3nn's guide.

Queries from node features, keys and values from a channel-wise tensor product of neighbour
features with the edge harmonics weighted by a radial MLP, invariant multi-head logits, softmax
over incoming edges with a smooth cutoff (:class:`crystensor.nn.attention.SE3AttentionLayer`);
the rest of the model is the shared :class:`~crystensor.models.base.Backbone` and head.
"""

from __future__ import annotations

from crystensor.models.base import TensorModel
from crystensor.models.config import SETransformerConfig
from crystensor.nn.attention import SE3AttentionLayer

__all__ = ["SETransformer"]


class SETransformer(TensorModel):
    """SE(3)-equivariant graph transformer for tensor (or scalar) targets.

    Parameters
    ----------
    config : SETransformerConfig

    Examples
    --------
    >>> from crystensor.models import preset
    >>> model = SETransformer(preset("setransformer", "small", num_node_features=8))
    >>> model.backbone.interactions[0].num_heads, model.kind.name
    (2, 'elastic')
    """

    arch = "setransformer"
    config_class = SETransformerConfig
    interaction_layer = SE3AttentionLayer
    interaction_options = ("num_radial", "radial_hidden", "num_heads")
