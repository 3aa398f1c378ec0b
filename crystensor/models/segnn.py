"""SEGNN: steerable E(3)-equivariant message passing (Brandstetter et al. 2021).

Messages ``m_ij = phi_m(h_i, h_j, rho(r_ij), a_ij)`` from gated tensor products steered by the
edge harmonics, with weights shared across edges; updates ``h_i + phi_f(h_i, sum_j m_ij, a_i)``
steered by the node attribute. The layer is :class:`crystensor.nn.message.SEGNNLayer`; the rest
of the model is the shared :class:`~crystensor.models.base.Backbone` and head.
"""

from __future__ import annotations

from crystensor.models.base import TensorModel
from crystensor.models.config import SEGNNConfig
from crystensor.nn.message import SEGNNLayer

__all__ = ["SEGNN"]


class SEGNN(TensorModel):
    """Steerable E(3) equivariant graph neural network for tensor (or scalar) targets.

    Parameters
    ----------
    config : SEGNNConfig

    Examples
    --------
    >>> from crystensor.models import preset
    >>> model = SEGNN(preset("segnn", "small", num_node_features=8, target="dielectric"))
    >>> str(model.head.irreps_out)
    '1x0e+1x2e'
    """

    arch = "segnn"
    config_class = SEGNNConfig
    interaction_layer = SEGNNLayer
    interaction_options = ("num_radial", "avg_num_neighbors", "num_message_layers")
