r"""Convolution (SEConv) and self-interaction layers, and the parts they share with attention.

SEConv (Brandstetter et al. 2021, "steerable equivariant convolution"): one steerable
convolution per message, channel-wise paths with per-edge radial weights,

.. math::

    m_i = \frac{1}{\bar n} \sum_j u(r_{ij})\;
          h_j \otimes_{\mathrm{uvu}}^{w(r_{ij})} Y(\hat r_{ij}), \qquad
    h_i' = h_i + \mathrm{Gate}\big(W_m m_i + W_s h_i + b\big),

with ``w`` a radial MLP, ``\bar n`` a fixed neighbour count (not the per-node count, which
would jump when an edge crosses the cutoff) and the nonlinearity after aggregation. The
convolution, the self-connection ``W_s h_i + b``, the gate and the residual are
:class:`ConvolutionLayer`, which the attention layer (:mod:`crystensor.nn.attention`) shares.

Self-interaction (the paper's "N self-interaction layers"): a node updates itself only, with a
steerable linear layer conditioned on its geometric attribute ``a_i``,
``h_i' = h_i + Gate(SteerableLinear(h_i, a_i))``.

All layers: :math:`f(D_{in}(R) h) = D_{out}(R) f(h)` for every orthogonal ``R`` (rotations and
reflections), permutation equivariant over nodes.
"""

from __future__ import annotations

import torch
from e3nn import o3

from crystensor.nn.edges import EdgeData
from crystensor.nn.gate import EquivariantGate
from crystensor.nn.irreps import EquivariantModule
from crystensor.nn.radial import RadialMLP
from crystensor.nn.scatter import scatter_sum
from crystensor.nn.tensor_product import HarmonicProduct, PathMixing, SteerableLinear

__all__ = [
    "ChannelwiseConvolution",
    "ConvolutionLayer",
    "Residual",
    "SEConvLayer",
    "SelfInteraction",
]


class Residual(EquivariantModule):
    """The skip path ``irreps_in -> irreps_out``: identity when equal, else ``o3.Linear``.

    Irreps of ``irreps_out`` absent from ``irreps_in`` get zeros.
    """

    def __init__(self, irreps_in: o3.Irreps | str, irreps_out: o3.Irreps | str) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        if self.irreps_in.simplify() == self.irreps_out.simplify():
            self.linear = None
        else:
            self.linear = o3.Linear(self.irreps_in, self.irreps_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, irreps_in.dim)`` -> ``(n, irreps_out.dim)``."""
        return x if self.linear is None else self.linear(x)


class ChannelwiseConvolution(EquivariantModule):
    r"""``h_j ⊗ Y(r_ij)`` with channel-wise ("uvu") paths and per-edge radial weights.

    .. math::

        z^{(p)}_{ij,u} = w_{p u}(r_{ij})\, u(r_{ij})\,
            \big(h^{(l_1)}_{j u} \otimes Y^{(l_2)}(\hat r_{ij})\big)^{(l_3)}

    for every path ``p = (l_1, l_2) -> l_3`` with ``l_3`` among the irreps of
    ``irreps_target``; ``w`` is a :class:`~crystensor.nn.radial.RadialMLP` and ``u`` the
    envelope, so an edge at the cutoff contributes exactly zero. The output is in the
    :class:`~crystensor.nn.tensor_product.PathLayout` of :attr:`product` (channels kept).

    Parameters
    ----------
    irreps_in : Irreps or str
        Node features.
    irreps_sh : Irreps or str
        Edge spherical harmonics.
    irreps_target : Irreps or str
        Only paths producing one of its irreps are kept.
    num_radial, radial_hidden : int
        Radial MLP widths.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_sh: o3.Irreps | str,
        irreps_target: o3.Irreps | str,
        num_radial: int,
        radial_hidden: int,
    ) -> None:
        super().__init__()
        self.product = HarmonicProduct(irreps_in, irreps_sh, irreps_target)
        self.layout = self.product.layout
        self.irreps_in = self.product.irreps_in
        self.irreps_out = self.product.irreps_out
        self._weight_split = [b.mul * len(b.paths) for b in self.layout.blocks]
        self._shapes = [(b.mul, len(b.paths)) for b in self.layout.blocks]
        for n, block in enumerate(self.layout.blocks):
            path_of_k = [p for p, ir in enumerate(block.paths) for _ in range(ir.dim)]
            self.register_buffer(f"path_of_k_{n}", torch.tensor(path_of_k), persistent=False)
        self.radial = RadialMLP(num_radial, radial_hidden, sum(self._weight_split))

    def forward(self, h: torch.Tensor, edges: EdgeData) -> list[torch.Tensor]:
        """``h (n_nodes, irreps_in.dim)`` -> per-edge products, list of ``(n_edges, mul, K)``."""
        weights = self.radial(edges.radial) * edges.envelope.unsqueeze(-1)  # [n_edges, n_w]
        products = self.product(h[edges.src], edges.sh)
        out = []
        for n, (z, w) in enumerate(
            zip(products, weights.split(self._weight_split, dim=-1), strict=True)
        ):
            mul, num_paths = self._shapes[n]
            w = w.reshape(-1, mul, num_paths).index_select(2, getattr(self, f"path_of_k_{n}"))
            out.append(z * w)  # [n_edges, mul, K]
        return out


class ConvolutionLayer(EquivariantModule):
    r"""The skeleton of the SEConv and attention layers: convolution, then gated residual update.

    .. math::

        z_{ij} = w(r_{ij})\, u(r_{ij})\, h_j \otimes Y(\hat r_{ij}), \qquad
        h_i' = h_i + \mathrm{Gate}\big(m_i + W_s h_i + b\big).

    :attr:`conv` (a :class:`ChannelwiseConvolution`) computes the per-edge products ``z_ij``,
    keeping the paths to every irrep the gate reads; a subclass turns them into the aggregated
    message ``m_i`` (in ``gate.irreps_in``) and returns :meth:`update`.

    Every interaction layer is built as ``Layer(irreps_in, irreps_out, irreps_sh,
    irreps_node_attr, **options)`` and called as ``layer(h, edges, node_attr)``
    (:class:`crystensor.models.base.Backbone` chains them); these layers read no node
    attributes.

    Parameters
    ----------
    irreps_in, irreps_out : Irreps or str
        Node features before and after (``irreps_out`` sorted, scalars first).
    irreps_sh : Irreps or str
        Edge spherical harmonics (up to the hidden ``lmax``).
    irreps_node_attr : Irreps or str or None
        Unused (the common signature of interaction layers).
    num_radial, radial_hidden : int
        Radial MLP widths.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_sh: o3.Irreps | str,
        irreps_node_attr: o3.Irreps | str | None = None,
        *,
        num_radial: int,
        radial_hidden: int,
    ) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.gate = EquivariantGate(irreps_out)
        self.irreps_out = self.gate.irreps_out
        self.conv = ChannelwiseConvolution(
            self.irreps_in, irreps_sh, self.gate.irreps_in, num_radial, radial_hidden
        )
        self.linear_self = o3.Linear(self.irreps_in, self.gate.irreps_in, biases=True)
        self.residual = Residual(self.irreps_in, self.irreps_out)

    def update(self, h: torch.Tensor, message: torch.Tensor) -> torch.Tensor:
        """``h (n_nodes, irreps_in.dim)``, ``message (n_nodes, gate.irreps_in.dim)``.

        Returns ``h' (n_nodes, irreps_out.dim)``.
        """
        return self.residual(h) + self.gate(message + self.linear_self(h))


class SEConvLayer(ConvolutionLayer):
    """One SEConv interaction: convolution, sum over neighbours, linear, gate, residual.

    Parameters
    ----------
    irreps_in, irreps_out, irreps_sh, irreps_node_attr, num_radial, radial_hidden
        As for :class:`ConvolutionLayer`.
    avg_num_neighbors : float
        Fixed normaliser of the neighbour sum.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_sh: o3.Irreps | str,
        irreps_node_attr: o3.Irreps | str | None = None,
        *,
        num_radial: int,
        radial_hidden: int,
        avg_num_neighbors: float,
    ) -> None:
        super().__init__(
            irreps_in, irreps_out, irreps_sh, num_radial=num_radial, radial_hidden=radial_hidden
        )
        self.linear_message = PathMixing(self.conv.layout, self.gate.irreps_in, bias=False)
        self.avg_num_neighbors = float(avg_num_neighbors)

    def forward(self, h: torch.Tensor, edges: EdgeData, node_attr: torch.Tensor) -> torch.Tensor:
        """``h (n_nodes, irreps_in.dim)`` -> ``(n_nodes, irreps_out.dim)``; ``node_attr`` unused."""
        num_nodes = h.shape[0]
        aggregated = [
            scatter_sum(z, edges.dst, num_nodes) / self.avg_num_neighbors  # [n_nodes, mul, K]
            for z in self.conv(h, edges)
        ]
        return self.update(h, self.linear_message(aggregated))


class SelfInteraction(EquivariantModule):
    """Node-wise update ``h + Gate(SteerableLinear(h, a))`` (no neighbours involved).

    With ``irreps_out`` of higher ``lmax`` than ``irreps_in`` it *lifts* the features, e.g. from
    the hidden ``lmax = 2`` to the ``3o``/``4e`` irreps a piezoelectric or elastic head needs,
    at the cost of a per-node (not per-edge) tensor product.

    Parameters
    ----------
    irreps_in, irreps_out : Irreps or str
    irreps_attr : Irreps or str
        The node attributes (:class:`~crystensor.nn.edges.NodeAttributes`).
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_attr: o3.Irreps | str,
    ) -> None:
        super().__init__()
        self.tp = SteerableLinear(irreps_in, irreps_attr, irreps_out, gate=True)
        self.irreps_in = self.tp.irreps_in
        self.irreps_attr = self.tp.irreps_attr
        self.irreps_out = self.tp.irreps_out
        self.residual = Residual(self.irreps_in, self.irreps_out)

    def forward(self, h: torch.Tensor, node_attr: torch.Tensor) -> torch.Tensor:
        """``h (n_nodes, irreps_in.dim)``, ``node_attr (n_nodes, irreps_attr.dim)``.

        Returns ``(n_nodes, irreps_out.dim)``.
        """
        return self.residual(h) + self.tp(h, node_attr)
