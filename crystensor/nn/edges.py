r"""Edge geometry: periodic edge vectors, lengths, spherical harmonics, radial features.

Conventions follow :mod:`crystensor.data.graph`: ``edge_index[0]`` is the source ``j`` (the
neighbour that sends the message), ``edge_index[1]`` the target ``i`` (the centre that receives
it), and the edge vector is

.. math::

    \vec r_{ij} = \vec x_j + \vec n_{ij} \cdot L_{g(i)} - \vec x_i

with ``n_ij`` the integer lattice shift and ``L_g`` the cell (lattice vectors as rows) of the
graph the centre belongs to. Rotating or reflecting a structure by ``R`` (``pos -> pos R^T``,
``cell -> cell R^T``) maps every ``r_ij`` to ``R r_ij``; translations leave them unchanged.

Equivariance: the spherical harmonics satisfy :math:`Y(R\vec r) = D(R)\,Y(\vec r)` with
``D = Irreps.spherical_harmonics(lmax).D_from_matrix(R)`` (parity :math:`(-1)^l`), lengths and
radial features are invariant.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from e3nn import o3

from crystensor.nn.irreps import EquivariantModule
from crystensor.nn.radial import RadialEmbedding
from crystensor.nn.scatter import scatter_sum

__all__ = ["EdgeData", "EdgeEmbedding", "NodeAttributes", "edge_vectors"]


class EdgeData(NamedTuple):
    """Everything the interaction layers read about the edges of a batch."""

    src: torch.Tensor  # (n_edges,) long: source j, the neighbour
    dst: torch.Tensor  # (n_edges,) long: target i, the centre
    vec: torch.Tensor  # (n_edges, 3) r_ij in Angstrom
    length: torch.Tensor  # (n_edges,) |r_ij| in Angstrom
    sh: torch.Tensor  # (n_edges, (lmax+1)**2) Y(r_ij / |r_ij|), component normalisation
    radial: torch.Tensor  # (n_edges, num_radial) b_n(|r_ij|) u(|r_ij|)
    envelope: torch.Tensor  # (n_edges,) u(|r_ij|), 0 at and beyond the cutoff


def edge_vectors(
    pos: torch.Tensor,
    cell: torch.Tensor,
    edge_index: torch.Tensor,
    edge_shift: torch.Tensor,
    batch: torch.Tensor,
) -> torch.Tensor:
    """Periodic edge vectors ``x_j + shift . cell - x_i``.

    Parameters
    ----------
    pos : Tensor, shape (n_nodes, 3)
        Cartesian positions, Angstrom.
    cell : Tensor, shape (n_graphs, 3, 3)
        Lattice vectors as rows, one cell per graph.
    edge_index : LongTensor, shape (2, n_edges)
        ``[source j, target i]``.
    edge_shift : Tensor, shape (n_edges, 3)
        Integer lattice shift of the neighbour's image (int or float dtype).
    batch : LongTensor, shape (n_nodes,)
        Graph of each node.

    Returns
    -------
    Tensor, shape (n_edges, 3)
    """
    src, dst = edge_index[0], edge_index[1]
    edge_cell = cell[batch[dst]]  # [n_edges, 3, 3]
    shift = torch.einsum("ei,eij->ej", edge_shift.to(pos.dtype), edge_cell)  # [n_edges, 3]
    return pos[src] + shift - pos[dst]


class EdgeEmbedding(EquivariantModule):
    """Edge vectors -> :class:`EdgeData` (spherical harmonics up to ``lmax``, radial features).

    ``irreps_in`` is ``1x1o`` (the edge vector); ``irreps_out`` is the spherical harmonics
    ``1x0e+1x1o+1x2e+...`` up to ``lmax`` (the ``sh`` field). Radial features are
    ``num_radial x 0e`` (``irreps_radial``).

    Parameters
    ----------
    lmax : int
        Highest spherical-harmonic degree.
    num_radial : int
        Number of Bessel functions.
    cutoff : float
        Radius of the graph in Angstrom; the envelope vanishes there.
    """

    def __init__(self, lmax: int, num_radial: int, cutoff: float) -> None:
        super().__init__()
        if lmax < 0:
            raise ValueError(f"lmax must be >= 0, got {lmax}")
        self.irreps_in = o3.Irreps("1x1o")
        self.irreps_out = o3.Irreps.spherical_harmonics(lmax)
        self.spherical_harmonics = o3.SphericalHarmonics(
            self.irreps_out, normalize=True, normalization="component"
        )
        self.radial = RadialEmbedding(num_radial, cutoff)
        self.irreps_radial = self.radial.irreps_out
        self.cutoff = float(cutoff)

    def forward(
        self,
        pos: torch.Tensor,
        cell: torch.Tensor,
        edge_index: torch.Tensor,
        edge_shift: torch.Tensor,
        batch: torch.Tensor,
    ) -> EdgeData:
        """Shapes as in :func:`edge_vectors`; returns the edges of the whole batch."""
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(
                f"edge_index must have shape (2, n_edges), got {tuple(edge_index.shape)}"
            )
        if edge_shift.shape != (edge_index.shape[1], 3):
            raise ValueError(
                f"edge_shift must have shape ({edge_index.shape[1]}, 3), "
                f"got {tuple(edge_shift.shape)}"
            )
        vec = edge_vectors(pos, cell, edge_index, edge_shift, batch)
        length = torch.linalg.vector_norm(vec, dim=-1)
        sh = self.spherical_harmonics(vec)
        radial, envelope = self.radial(length)
        return EdgeData(edge_index[0], edge_index[1], vec, length, sh, radial, envelope)


class NodeAttributes(EquivariantModule):
    r"""Geometric node attribute: the envelope-weighted mean of a node's edge harmonics.

    .. math::

        a_i = \frac{\sum_j u(r_{ij})\, Y(\hat r_{ij})}{\sum_j u(r_{ij})}, \qquad a_i^{(0)} = 1

    (SEGNN's node attribute, with the plain mean replaced by the envelope-weighted one so that a
    neighbour crossing the cutoff changes it continuously). It transforms like the harmonics:
    :math:`a_i \to D(R) a_i`. ``irreps_in == irreps_out`` = spherical harmonics up to ``lmax``.
    """

    def __init__(self, irreps_sh: o3.Irreps | str) -> None:
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_sh)
        self.irreps_out = self.irreps_in
        if not self.irreps_in or self.irreps_in[0].ir != o3.Irrep("0e"):
            raise ValueError(
                f"node attributes need spherical harmonics starting with 0e, got {irreps_sh}"
            )

    def forward(self, edges: EdgeData, num_nodes: int) -> torch.Tensor:
        """``edges.sh (n_edges, d)`` -> ``(num_nodes, d)``; isolated nodes get ``(1, 0, .., 0)``."""
        weighted = edges.sh * edges.envelope.unsqueeze(-1)  # [n_edges, d]
        total = scatter_sum(weighted, edges.dst, num_nodes)  # [n_nodes, d]
        norm = scatter_sum(edges.envelope, edges.dst, num_nodes).clamp_min(1e-12)  # [n_nodes]
        trivial, attrs = total.split([1, total.shape[1] - 1], dim=-1)
        return torch.cat([torch.ones_like(trivial), attrs / norm.unsqueeze(-1)], dim=-1)
