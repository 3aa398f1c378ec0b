"""SETransformer: SE(3)-Transformer attention (Fuchs et al. 2020), as in e3nn's guide.

Queries from node features, keys and values from a channel-wise tensor product of neighbour
features with the edge harmonics weighted by a radial MLP, invariant multi-head logits, softmax
over incoming edges with a smooth cutoff (:class:`crystensor.nn.attention.SE3AttentionLayer`);
the rest of the model is the shared :class:`~crystensor.models.base.Backbone` and head.
"""

from __future__ import annotations

from e3nn import o3

from crystensor.models.base import TensorModel
from crystensor.models.config import SETransformerConfig
from crystensor.nn.attention import SE3AttentionLayer

__all__ = ["SETransformer"]


class SETransformer(TensorModel):
    """SE(3)-equivariant graph transformer for tensor (or scalar) targets.

    Parameters
    ----------
    config : SETransformerConfig
    """

    arch = "setransformer"
    config_class = SETransformerConfig

    def make_interaction(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_node_attr: o3.Irreps,
    ) -> SE3AttentionLayer:
        return SE3AttentionLayer(
            irreps_in,
            irreps_out,
            irreps_sh,
            num_radial=self.config.num_radial,
            radial_hidden=self.config.radial_hidden,
            num_heads=self.config.num_heads,
        )
