r"""SEGNN's steerable message passing layer (Brandstetter et al. 2021).

.. math::

    m_{ij} &= \phi_m\big(h_i \oplus h_j \oplus \rho(r_{ij}),\ Y(\hat r_{ij})\big), \\
    m_i &= \frac{1}{\bar n} \sum_j u(r_{ij})\, m_{ij}, \\
    h_i' &= h_i + \phi_f\big(h_i \oplus m_i,\ a_i\big),

``\phi_m`` two gated :class:`~crystensor.nn.tensor_product.SteerableLinear` layers steered by
the edge harmonics, ``\phi_f`` a gated and a plain one steered by the node attribute ``a_i``;
``\rho`` the smooth radial features (the paper's ``|r_ij|^2``, replaced by a basis that vanishes
at the cutoff) and ``u`` the envelope. Weights are shared by all edges, which is what keeps the
layer affordable on a CPU (no per-edge weight tensor).

Equivariance: with ``h -> D(R) h``, ``Y -> D(R) Y``, ``a -> D(R) a`` the output transforms as
``D_out(R) h'`` for every orthogonal ``R``.
"""

from __future__ import annotations

import torch
from e3nn import o3

from crystensor.nn.edges import EdgeData
from crystensor.nn.interaction import Residual
from crystensor.nn.irreps import EquivariantModule
from crystensor.nn.scatter import scatter_sum
from crystensor.nn.tensor_product import SteerableLinear

__all__ = ["GroupedConcat", "SEGNNLayer", "grouped_concatenation"]


def grouped_concatenation(
    *irreps: o3.Irreps | str,
) -> tuple[o3.Irreps, list[tuple[int, int, int]]]:
    """Irreps of several feature tensors concatenated and regrouped by irrep.

    Returns the (sorted, simplified) irreps and the pieces ``(tensor, start, stop)`` in their
    order: ``torch.cat([xs[t][:, a:b] for t, a, b in pieces], -1)`` has those irreps, so a
    tensor product sees one block per irrep type instead of many small ones.

    >>> grouped_concatenation("2x0e+1x1o", "1x0e")
    (3x0e+1x1o, [(0, 0, 2), (1, 0, 1), (0, 2, 5)])
    """
    entries = [
        (ir, t, sl.start, sl.stop)
        for t, irr in enumerate(o3.Irreps(i) for i in irreps)
        for sl, (_, ir) in zip(irr.slices(), irr, strict=True)
    ]
    joined = o3.Irreps([(mul, ir) for i in irreps for mul, ir in o3.Irreps(i)])
    order = sorted(range(len(entries)), key=lambda k: (entries[k][0], k))
    pieces = [entries[k][1:] for k in order]
    return joined.sort().irreps.simplify(), pieces


class GroupedConcat:
    """Concatenate feature tensors regrouped by irrep (see :func:`grouped_concatenation`).

    Uses ``split`` rather than slicing so that backward assembles each input's gradient in one
    pass. ``irreps`` is the layout of the result.
    """

    def __init__(self, *irreps: o3.Irreps | str) -> None:
        self.irreps, pieces = grouped_concatenation(*irreps)
        self._sizes = [[mul * ir.dim for mul, ir in o3.Irreps(i)] for i in irreps]
        starts = [[sl.start for sl in o3.Irreps(i).slices()] for i in irreps]
        self._order = [(t, starts[t].index(a)) for t, a, _ in pieces]

    def __call__(self, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """``tensors[t] (n, irreps[t].dim)`` -> ``(n, self.irreps.dim)``."""
        parts = [x.split(sizes, dim=1) for x, sizes in zip(tensors, self._sizes, strict=True)]
        return torch.cat([parts[t][k] for t, k in self._order], dim=1)


class SEGNNLayer(EquivariantModule):
    """One SEGNN message-passing layer (message MLP on edges, update MLP on nodes, residual).

    Parameters
    ----------
    irreps_in, irreps_out : Irreps or str
        Node features before and after (``irreps_out`` sorted, scalars first).
    irreps_sh : Irreps or str
        Edge harmonics ``a_ij`` that steer the message layers.
    irreps_node_attr : Irreps or str
        Node attributes ``a_i`` that steer the update layers.
    num_radial : int
        Width of the radial features appended to the message input.
    avg_num_neighbors : float
        Fixed normaliser of the neighbour sum.
    num_message_layers : int
        Depth of ``phi_m`` (the paper uses 2).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_sh: o3.Irreps | str,
        irreps_node_attr: o3.Irreps | str,
        *,
        num_radial: int,
        avg_num_neighbors: float,
        num_message_layers: int = 2,
    ) -> None:
        super().__init__()
        if num_message_layers < 1:
            raise ValueError(f"num_message_layers must be >= 1, got {num_message_layers}")
        self.irreps_in = o3.Irreps(irreps_in)
        irreps_out = o3.Irreps(irreps_out)
        self._message_input = GroupedConcat(self.irreps_in, self.irreps_in, f"{num_radial}x0e")
        message_in = self._message_input.irreps
        layers = [SteerableLinear(message_in, irreps_sh, irreps_out, gate=True)]
        for _ in range(num_message_layers - 1):
            layers.append(SteerableLinear(layers[-1].irreps_out, irreps_sh, irreps_out, gate=True))
        self.message = torch.nn.ModuleList(layers)

        self._update_input = GroupedConcat(self.irreps_in, irreps_out)
        update_in = self._update_input.irreps
        self.update_gated = SteerableLinear(update_in, irreps_node_attr, irreps_out, gate=True)
        self.update_linear = SteerableLinear(irreps_out, irreps_node_attr, irreps_out)
        self.residual = Residual(self.irreps_in, irreps_out)
        self.irreps_out = self.update_linear.irreps_out
        self.avg_num_neighbors = float(avg_num_neighbors)

    def forward(self, h: torch.Tensor, edges: EdgeData, node_attr: torch.Tensor) -> torch.Tensor:
        """``h (n_nodes, irreps_in.dim)`` -> ``(n_nodes, irreps_out.dim)``."""
        m = self._message_input((h[edges.dst], h[edges.src], edges.radial))
        # m: [n_edges, message_in.dim], (h_i, h_j, radial) grouped by irrep
        for layer in self.message:
            m = layer(m, edges.sh)  # [n_edges, irreps_out.dim]
        m = m * edges.envelope.unsqueeze(-1)
        aggregated = scatter_sum(m, edges.dst, h.shape[0]) / self.avg_num_neighbors
        u = self._update_input((h, aggregated))
        u = self.update_linear(self.update_gated(u, node_attr), node_attr)
        return self.residual(h) + u
