r"""Smooth radial features of the edge length.

The radial basis is the Bessel basis of DimeNet times a polynomial envelope,

.. math::

    b_n(r) = \sqrt{2 / r_c}\, \frac{\sin(n \pi r / r_c)}{r}\; u(r / r_c), \qquad
    u(x) = 1 - \tfrac{(p+1)(p+2)}{2} x^p + p(p+2) x^{p+1} - \tfrac{p(p+1)}{2} x^{p+2}

for :math:`x < 1` and 0 beyond. ``u`` and its first two derivatives vanish at the cutoff, so an
edge entering or leaving the cutoff sphere contributes nothing discontinuously: every message,
attention weight and node attribute is multiplied by ``u`` (or built from ``b_n``, which already
contains it). Radial features are invariants (irreps ``num_basis x 0e``).
"""

from __future__ import annotations

import math

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet

from crystensor.nn.irreps import EquivariantModule

__all__ = ["BesselBasis", "PolynomialEnvelope", "RadialEmbedding", "RadialMLP"]


class PolynomialEnvelope(torch.nn.Module):
    """The cutoff function ``u(r / r_c)``: 1 at ``r = 0``, 0 with two zero derivatives at ``r_c``.

    Parameters
    ----------
    cutoff : float
        ``r_c`` in Angstrom.
    exponent : int
        ``p`` (DimeNet uses 6); larger is flatter near 0 and steeper near ``r_c``.
    """

    def __init__(self, cutoff: float, exponent: int = 6) -> None:
        super().__init__()
        if cutoff <= 0:
            raise ValueError(f"cutoff must be positive, got {cutoff}")
        if exponent < 2:
            raise ValueError(f"envelope exponent must be >= 2, got {exponent}")
        self.cutoff = float(cutoff)
        self.exponent = int(exponent)

    def forward(self, length: torch.Tensor) -> torch.Tensor:
        """``(n_edges,)`` lengths in Angstrom -> ``(n_edges,)`` envelope values in [0, 1]."""
        p = self.exponent
        x = length / self.cutoff
        u = (
            1.0
            - (p + 1) * (p + 2) / 2 * x**p
            + p * (p + 2) * x ** (p + 1)
            - p * (p + 1) / 2 * x ** (p + 2)
        )
        return torch.where(x < 1.0, u, torch.zeros_like(u))


class BesselBasis(torch.nn.Module):
    """``sqrt(2 / r_c) sin(n pi r / r_c) / r`` for ``n = 1..num_basis``.

    Parameters
    ----------
    num_basis : int
    cutoff : float
        ``r_c`` in Angstrom.
    """

    def __init__(self, num_basis: int, cutoff: float) -> None:
        super().__init__()
        if num_basis < 1:
            raise ValueError(f"num_basis must be >= 1, got {num_basis}")
        self.cutoff = float(cutoff)
        freqs = (
            math.pi / self.cutoff * torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype())
        )
        self.register_buffer("frequencies", freqs, persistent=False)

    def forward(self, length: torch.Tensor) -> torch.Tensor:
        """``(n_edges,)`` lengths -> ``(n_edges, num_basis)``."""
        r = length.unsqueeze(-1)  # [n_edges, 1]
        return math.sqrt(2.0 / self.cutoff) * torch.sin(self.frequencies * r) / r


class RadialEmbedding(EquivariantModule):
    """Edge length -> smooth invariant features ``b_n(r) u(r)`` and the envelope ``u(r)``.

    ``irreps_in`` is ``1x0e`` (the length), ``irreps_out`` is ``num_basis x 0e``.

    Parameters
    ----------
    num_basis : int
    cutoff : float
        Angstrom.
    envelope_exponent : int
    """

    def __init__(self, num_basis: int, cutoff: float, envelope_exponent: int = 6) -> None:
        super().__init__()
        self.basis = BesselBasis(num_basis, cutoff)
        self.envelope = PolynomialEnvelope(cutoff, envelope_exponent)
        self.irreps_in = o3.Irreps("1x0e")
        self.irreps_out = o3.Irreps(f"{num_basis}x0e")

    def forward(self, length: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n_edges,)`` -> ``(radial (n_edges, num_basis), envelope (n_edges,))``."""
        envelope = self.envelope(length)
        return self.basis(length) * envelope.unsqueeze(-1), envelope


class RadialMLP(torch.nn.Module):
    """Per-edge weights of a tensor product from the radial features (an invariant MLP).

    e3nn's :class:`~e3nn.nn.FullyConnectedNet` (no biases, normalised SiLU), so zero radial
    features, i.e. an edge at the cutoff, give exactly zero weights.

    Parameters
    ----------
    num_basis : int
        Width of the radial features.
    hidden : int
        Hidden width.
    num_weights : int
        Output width (the tensor product's ``weight_numel``).
    """

    def __init__(self, num_basis: int, hidden: int, num_weights: int) -> None:
        super().__init__()
        self.net = FullyConnectedNet([num_basis, hidden, num_weights], torch.nn.functional.silu)
        self.num_weights = num_weights

    def forward(self, radial: torch.Tensor) -> torch.Tensor:
        """``(n_edges, num_basis)`` -> ``(n_edges, num_weights)``."""
        return self.net(radial)
