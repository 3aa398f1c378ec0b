"""A tiny stand-in for a pretrained potential: rotation-equivariant, parity-free, any dtype.

It has the interface :class:`crystensor.models.foundation.PretrainedEmbedding` uses
(``irreps_out``, ``cutoff``, ``forward(z, edge_index, edge_vec, batch, num_graphs)``,
``set_trainable``), and like SevenNet-0 its features have no definite parity: the ``l = 1``
block holds a cross product (a pseudovector) and the ``0e`` block a triple product (a
pseudoscalar), so reflecting a structure does not transform them as the labels say.
"""

from __future__ import annotations

import numpy as np
import torch
from e3nn import o3

from crystensor.nn.scatter import scatter_sum


class ToyPotential(torch.nn.Module):
    irreps_out = o3.Irreps("4x0e+3x1o+2x2e")
    cutoff = 4.0

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.species = torch.nn.Parameter(torch.randn(100, 3, generator=gen))
        self.block = torch.nn.Linear(3, 3)
        with torch.no_grad():  # the same weights every time it is built, like a loaded file
            self.block.weight.copy_(torch.randn(3, 3, generator=gen))
            self.block.bias.copy_(torch.randn(3, generator=gen))

    def set_trainable(self, which: str) -> list[str]:
        """``"last"``: only ``block``; ``"all"``: everything."""
        self.requires_grad_(which == "all")
        self.block.requires_grad_(which in ("last", "all"))
        return [n for n, p in self.named_parameters() if p.requires_grad]

    def unknown_elements(self, atomic_numbers) -> list[str]:
        return []

    @torch.no_grad()
    def features_of_many(self, structures, *, with_inverted=False, **limits):
        """What :mod:`crystensor.data.feature_cache` calls: ``(n, 2, dim)`` per structure."""
        from pymatgen.core import Lattice, Structure

        from crystensor.data.graph import build_graph

        out = []
        for numbers, positions, cell in structures:
            s = Structure(Lattice(cell), list(numbers), positions, coords_are_cartesian=True)
            g = build_graph(s, self.cutoff + 0.5)
            z = torch.as_tensor(np.asarray(numbers), dtype=torch.long)
            edge_index = torch.as_tensor(np.asarray(g.edge_index), dtype=torch.long)
            shift = np.asarray(g.edge_shift) @ np.asarray(g.cell)
            vec = g.positions[g.edge_index[0]] + shift - g.positions[g.edge_index[1]]
            vec = torch.as_tensor(vec, dtype=self.species.dtype)
            batch = torch.zeros(len(z), dtype=torch.long)
            images = [self(z, edge_index, v, batch, 1) for v in (vec, -vec)]
            out.append(torch.stack(images, dim=1).numpy())
        return out

    def forward(self, z, edge_index, edge_vec, batch, num_graphs):
        src, dst = edge_index
        length = torch.linalg.vector_norm(edge_vec, dim=-1)
        envelope = torch.clamp(1 - (length / self.cutoff) ** 2, min=0) ** 2  # [E]
        sh = o3.spherical_harmonics([0, 1, 2], edge_vec, normalize=True, normalization="component")
        w = self.block(self.species[z[src]]) * envelope.unsqueeze(-1)  # [E, 3]
        n = z.shape[0]
        a0 = scatter_sum(w * sh[:, :1], dst, n)  # [n, 3]
        a1 = scatter_sum(w.unsqueeze(-1) * sh[:, None, 1:4], dst, n)  # [n, 3, 3]
        a2 = scatter_sum(w[:, :2, None] * sh[:, None, 4:9], dst, n)  # [n, 2, 5]
        cross = torch.linalg.cross(a1[:, 0], a1[:, 1])  # pseudovector
        triple = (cross * a1[:, 2]).sum(-1, keepdim=True)  # pseudoscalar
        scalars = torch.cat([a0, triple], dim=1)  # [n, 4]
        vectors = torch.stack([a1[:, 0], a1[:, 1] + a1[:, 2], cross], dim=1)  # [n, 3, 3]
        return torch.cat([scalars, vectors.reshape(n, 9), a2.reshape(n, 10)], dim=1)
