"""The graphs of the tiny structures (:mod:`tests.helpers`) as the PyG ``Data`` models read.

Atom features come from a fixed per-element table (random numbers seeded by Z), so that the
same element always has the same features: permutation and supercell tests are meaningful.
"""

from __future__ import annotations

import numpy as np
import torch
from pymatgen.core import Structure
from torch_geometric.data import Batch, Data

from crystensor.data.graph import build_graph

NUM_FEATURES = 8
CUTOFF = 5.0


def element_features(z: np.ndarray) -> np.ndarray:
    """``(n, NUM_FEATURES)`` features, a fixed function of the atomic number."""
    return np.stack([np.random.default_rng(int(zi)).normal(size=NUM_FEATURES) for zi in z])


def to_data(structure: Structure, cutoff: float = CUTOFF) -> Data:
    """The radius graph of ``structure`` as the ``Data`` the models read."""
    g = build_graph(structure, cutoff)
    dtype = torch.get_default_dtype()
    return Data(
        x=torch.tensor(element_features(g.atomic_numbers), dtype=dtype),
        z=torch.tensor(g.atomic_numbers),
        pos=torch.tensor(g.positions, dtype=dtype),
        cell=torch.tensor(g.cell, dtype=dtype).unsqueeze(0),
        edge_index=torch.tensor(g.edge_index),
        edge_shift=torch.tensor(g.edge_shift),
        num_nodes=g.num_nodes,
    )


def batch_of(*data: Data) -> Batch:
    return Batch.from_data_list(list(data))


def transformed(data: Data, rot: np.ndarray | None = None, shift=None) -> Data:
    """A copy with ``pos -> pos R^T + shift`` and ``cell -> cell R^T`` (same edges)."""
    out = data.clone()
    if rot is not None:
        r = torch.tensor(rot, dtype=data.pos.dtype)
        out.pos = data.pos @ r.T
        out.cell = data.cell @ r.T
    if shift is not None:
        out.pos = out.pos + torch.tensor(shift, dtype=data.pos.dtype)
    return out


def permuted(data: Data, perm: np.ndarray) -> Data:
    """Atoms reordered: new atom ``k`` is old atom ``perm[k]``; edges remapped and shuffled."""
    perm_t = torch.as_tensor(perm)
    inverse = torch.empty_like(perm_t)
    inverse[perm_t] = torch.arange(len(perm_t))
    edge_order = torch.randperm(
        data.edge_index.shape[1], generator=torch.Generator().manual_seed(0)
    )
    out = data.clone()
    out.x, out.z, out.pos = data.x[perm_t], data.z[perm_t], data.pos[perm_t]
    out.edge_index = inverse[data.edge_index][:, edge_order]
    out.edge_shift = data.edge_shift[edge_order]
    return out
