r"""Graph pooling: node features ``(n_nodes, d)`` -> graph features ``(n_graphs, d)``.

Both poolings are invariant under permutations of the nodes and equivariant under O(3):
``pool(h D(R)^T) = pool(h) D(R)^T``. Mean pooling is also unchanged when a structure is replaced
by a supercell (intensive, as dielectric, piezoelectric and elastic tensors are).

**Max pooling, made equivariant.** A component-wise maximum of an ``l > 0`` feature is *not*
equivariant (the maximum of the x components is not the x component of anything after a
rotation), and for odd scalars (``0o``) it breaks under reflections (``max(-x) != -max(x)``).
So:

* ``0e`` channels: the usual maximum over the nodes of the graph;
* every other irrep, per channel: the feature vector of the node with the largest norm
  :math:`|h_{a c}^{(l)}|` (norms are invariant, so the same node wins after any rotation or
  reflection and its feature rotates with it). Nodes whose norm ties with the maximum (within a
  relative ``tolerance``) are averaged: symmetry-equivalent atoms, e.g. the two Si atoms that
  inversion swaps, have equal norms but opposite odd features, and picking either would make
  the result depend on rounding; averaging gives the symmetric answer (0 for them), and for
  the copies of an atom in a supercell gives the atom's own feature.

The selection is piecewise constant: gradients flow to the selected nodes only.

**Density pooling** (:class:`DensityPooling`): the sum of the node features over the cell volume,
times a learned volume ``v``, :math:`v \sum_a h_a / V`. Dielectric susceptibility and stiffness
are densities (polarisability and energy per volume); mean pooling cannot see empty space, so a
layered crystal in a cell with a vacuum gap looks like its bulk to it, while the density pooling
of that cell is smaller by the fraction of the cell the vacuum takes. Like the mean it is
unchanged by a supercell (sum and volume both scale) and equivariant (the volume is invariant).
"""

from __future__ import annotations

import math

import torch
from e3nn import o3

from crystensor.nn.irreps import EquivariantModule
from crystensor.nn.scatter import scatter_max, scatter_sum

__all__ = [
    "POOLINGS",
    "DensityPooling",
    "EquivariantMaxPooling",
    "MeanPooling",
    "build_pooling",
    "mean_pool",
]


class MeanPooling(EquivariantModule):
    """Mean of the node features of each graph (``irreps_in == irreps_out``)."""

    def __init__(self, irreps: o3.Irreps | str) -> None:
        super().__init__()
        self.irreps_in = self.irreps_out = o3.Irreps(irreps)

    def forward(self, h: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """``h (n_nodes, d)``, ``batch (n_nodes,)`` -> ``(num_graphs, d)``."""
        return mean_pool(h, batch, num_graphs)


def mean_pool(h: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    """Mean of the node features ``h (n_nodes, d)`` of each graph -> ``(num_graphs, d)``."""
    total = scatter_sum(h, batch, num_graphs)
    count = scatter_sum(torch.ones_like(h[:, 0]), batch, num_graphs).clamp_min(1.0)
    return total / count.unsqueeze(-1)


class EquivariantMaxPooling(EquivariantModule):
    """Max for ``0e`` channels, largest-norm feature for the others (see the module docstring).

    Parameters
    ----------
    irreps : Irreps or str
        ``irreps_in == irreps_out``.
    tolerance : float or None
        Relative tie window for the norms; ``None`` uses ``sqrt(machine epsilon)`` of the input
        dtype (1.5e-8 in float64, 3.5e-4 in float32).
    """

    def __init__(self, irreps: o3.Irreps | str, tolerance: float | None = None) -> None:
        super().__init__()
        self.irreps_in = self.irreps_out = o3.Irreps(irreps)
        self.tolerance = tolerance
        self._blocks = [(mul, ir.dim, ir == o3.Irrep("0e")) for mul, ir in self.irreps_in]

    def forward(self, h: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
        """``h (n_nodes, d)``, ``batch (n_nodes,)`` -> ``(num_graphs, d)``."""
        tol = self.tolerance if self.tolerance is not None else torch.finfo(h.dtype).eps ** 0.5
        pooled = []
        blocks = h.split([mul * d for mul, d, _ in self._blocks], dim=1)
        for block, (mul, d, even_scalar) in zip(blocks, self._blocks, strict=True):
            if even_scalar:
                pooled.append(scatter_max(block, batch, num_graphs))
                continue
            block = block.reshape(-1, mul, d)  # [n_nodes, mul, 2l+1]
            norm = torch.linalg.vector_norm(block.detach(), dim=-1)  # [n_nodes, mul]
            best = scatter_max(norm, batch, num_graphs)[batch]  # [n_nodes, mul]
            chosen = (norm >= best * (1.0 - tol)).to(h.dtype)  # [n_nodes, mul]
            total = scatter_sum(block * chosen.unsqueeze(-1), batch, num_graphs)
            count = scatter_sum(chosen, batch, num_graphs).clamp_min(1.0)
            pooled.append((total / count.unsqueeze(-1)).reshape(num_graphs, mul * d))
        return torch.cat(pooled, dim=-1)


class DensityPooling(EquivariantModule):
    r"""``v * sum_a h_a / V`` per graph: node features per cell volume times a learned volume.

    ``v`` starts at :data:`VOLUME_PER_ATOM` (a typical volume per atom of an inorganic crystal),
    so the pooled features start near the mean of the nodes for a dense solid, and is learned
    through its logarithm (it stays positive). ``irreps_in == irreps_out``.

    Parameters
    ----------
    irreps : Irreps or str
    """

    needs_volume = True

    def __init__(self, irreps: o3.Irreps | str) -> None:
        super().__init__()
        self.irreps_in = self.irreps_out = o3.Irreps(irreps)
        self.log_volume = torch.nn.Parameter(torch.tensor(math.log(VOLUME_PER_ATOM)))

    def forward(
        self, h: torch.Tensor, batch: torch.Tensor, num_graphs: int, volume: torch.Tensor
    ) -> torch.Tensor:
        """``h (n_nodes, d)``, ``batch (n_nodes,)``, ``volume (num_graphs,)`` in Angstrom^3.

        Returns ``(num_graphs, d)``.
        """
        total = scatter_sum(h, batch, num_graphs)
        return total * (self.log_volume.exp() / volume.to(h.dtype)).unsqueeze(-1)


# Angstrom^3; the median over the matminer elastic structures is 16.
VOLUME_PER_ATOM = 16.0

POOLINGS = {"mean": MeanPooling, "max": EquivariantMaxPooling, "density": DensityPooling}


def build_pooling(
    name: str, irreps: o3.Irreps | str
) -> MeanPooling | EquivariantMaxPooling | DensityPooling:
    """The pooling called ``name`` (``"mean"``, ``"max"`` or ``"density"``) for ``irreps``.

    Poolings with ``needs_volume`` take the cell volume of each graph as a fourth argument.
    """
    try:
        return POOLINGS[name](irreps)
    except KeyError:
        raise ValueError(f"unknown pooling {name!r}; choose one of {', '.join(POOLINGS)}") from None
