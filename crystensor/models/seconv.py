"""SEConv: steerable equivariant convolutions (Brandstetter et al. 2021).

One steerable convolution per message, ``h_j ⊗ Y(r_ij)`` with channel-wise paths and per-edge
radial-MLP weights, nonlinearity after aggregation
(:class:`crystensor.nn.interaction.SEConvLayer`); the rest of the model is the shared
:class:`~crystensor.models.base.Backbone` and head.
"""

from __future__ import annotations

from e3nn import o3

from crystensor.models.base import TensorModel
from crystensor.models.config import SEConvConfig
from crystensor.nn.interaction import SEConvLayer

__all__ = ["SEConv"]


class SEConv(TensorModel):
    """Steerable equivariant convolutional network for tensor (or scalar) targets.

    Parameters
    ----------
    config : SEConvConfig
    """

    arch = "seconv"
    config_class = SEConvConfig

    def make_interaction(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_node_attr: o3.Irreps,
    ) -> SEConvLayer:
        return SEConvLayer(
            irreps_in,
            irreps_out,
            irreps_sh,
            num_radial=self.config.num_radial,
            radial_hidden=self.config.radial_hidden,
            avg_num_neighbors=self.config.avg_num_neighbors,
        )
