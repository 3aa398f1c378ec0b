"""Atom features -> invariant node features (``channels x 0e``)."""

from __future__ import annotations

import torch
from e3nn import o3

from crystensor.nn.irreps import EquivariantModule

__all__ = ["AtomEmbedding"]


class AtomEmbedding(EquivariantModule):
    """A two-layer MLP from the atom feature vector to ``channels`` scalars.

    Atom features (one-hot element, group, period, block, electronegativity, radius, ...) are
    invariants, so any MLP of them is: ``irreps_in = num_features x 0e``,
    ``irreps_out = channels x 0e``.

    Parameters
    ----------
    num_features : int
        Width ``F`` of the input features.
    channels : int
        Width ``C`` of the embedding.
    """

    def __init__(self, num_features: int, channels: int) -> None:
        super().__init__()
        if num_features < 1 or channels < 1:
            raise ValueError(
                f"num_features and channels must be >= 1, got {num_features} and {channels}"
            )
        self.num_features = num_features
        self.irreps_in = o3.Irreps(f"{num_features}x0e")
        self.irreps_out = o3.Irreps(f"{channels}x0e")
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(num_features, channels),
            torch.nn.SiLU(),
            torch.nn.Linear(channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n_nodes, F)`` -> ``(n_nodes, C)``."""
        if x.dim() != 2 or x.shape[-1] != self.num_features:
            raise ValueError(
                f"atom features must have shape (n_nodes, {self.num_features}), got "
                f"{tuple(x.shape)}; the model was built for num_node_features={self.num_features}"
            )
        return self.mlp(x)
