r"""Gated nonlinearities (Weiler et al. 2018) and the equivariant "Linear + Gate" block.

For output irreps ``scalars + gated`` (``gated`` all with ``l > 0``) the gate block expects
``scalars + gates + gated`` with one ``0e`` gate per gated irrep, and returns

.. math::

    \big(\phi(s),\ \sigma(g_k)\, v_k\big), \qquad \phi = \mathrm{SiLU}\ (0e),\
    \tanh\ (0o), \qquad \sigma = \mathrm{sigmoid}.

Invariant gates times equivariant features are equivariant; odd scalars need an odd
activation (``tanh``) so that a reflection, which flips their sign, commutes with it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from e3nn import o3

from crystensor.nn.irreps import EquivariantModule

__all__ = ["EquivariantGate", "GatedLinear", "gate_irreps"]


def gate_irreps(
    irreps_out: o3.Irreps | str,
) -> tuple[o3.Irreps, o3.Irreps, o3.Irreps]:
    """Split ``irreps_out`` into ``(scalars, gates, gated)`` for a gate.

    ``gates`` is ``k x 0e`` with ``k`` the number of gated (``l > 0``) irreps.

    >>> [str(i) for i in gate_irreps("4x0e+4x1o+2x2e")]
    ['4x0e', '6x0e', '4x1o+2x2e']
    """
    irreps_out = o3.Irreps(irreps_out)
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
    gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
    return scalars, gates, gated


@functools.cache
def _second_moment_scale(name: str) -> float:
    """``1 / sqrt(E[f(z)^2])`` for ``z ~ N(0, 1)`` (e3nn's ``normalize2mom``), by quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(100)
    z = torch.as_tensor(nodes, dtype=torch.float64)
    moment = float((torch.as_tensor(weights) * _ACTIVATIONS[name](z) ** 2).sum()) / math.sqrt(
        2 * math.pi
    )
    return 1.0 / math.sqrt(moment)


_ACTIVATIONS = {
    "silu": torch.nn.functional.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


class EquivariantGate(EquivariantModule):
    """The gate nonlinearity producing ``irreps_out``.

    ``irreps_out`` must list its scalars before its ``l > 0`` irreps (as sorted irreps do).
    The input layout is ``irreps_in = scalars + gates + gated`` (in that order, not sorted),
    the output ``scalars + gated``. Activations are scaled to preserve the second moment of a
    unit normal input, as e3nn's ``Gate`` does.

    Parameters
    ----------
    irreps_out : Irreps or str
        What the gate returns.
    """

    def __init__(self, irreps_out: o3.Irreps | str) -> None:
        super().__init__()
        irreps_out = o3.Irreps(irreps_out)
        scalars, gates, gated = gate_irreps(irreps_out)
        if scalars + gated != irreps_out:
            raise ValueError(
                f"gate output irreps {irreps_out} must list all scalars before the l > 0 "
                "irreps; sort them first (Irreps.sort().irreps.simplify())"
            )
        self.irreps_in = (scalars + gates + gated).simplify()
        self.irreps_out = irreps_out
        self.num_scalars, self.num_gates = scalars.dim, gates.dim
        # (width, activation, scale) per scalar block: SiLU for 0e, tanh (odd) for 0o
        self._scalar_acts = []
        for mul, ir in scalars:
            name = "silu" if ir.p == 1 else "tanh"
            self._scalar_acts.append((mul, name, _second_moment_scale(name)))
        self._all_even = all(name == "silu" for _, name, _ in self._scalar_acts)
        self._gate_scale = _second_moment_scale("sigmoid")
        self._gated = [(mul, ir.dim) for mul, ir in gated]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, irreps_in.dim)`` -> ``(n, irreps_out.dim)``."""
        ns, ng = self.num_scalars, self.num_gates
        scalars, gates, gated = x.split([ns, ng, x.shape[1] - ns - ng], dim=1)
        if self._all_even:
            scalars = torch.nn.functional.silu(scalars) * self._scalar_acts[0][2] if ns else scalars
        else:
            parts = scalars.split([width for width, _, _ in self._scalar_acts], dim=1)
            scalars = torch.cat(
                [
                    _ACTIVATIONS[name](part) * c
                    for part, (_, name, c) in zip(parts, self._scalar_acts, strict=True)
                ],
                dim=1,
            )
        if not ng:
            return scalars
        n = x.shape[0]
        gates = torch.sigmoid(gates) * self._gate_scale  # [n, n_gated_irreps]
        pieces = [scalars]
        blocks = gated.split([mul * d for mul, d in self._gated], dim=1)
        factors = gates.split([mul for mul, _ in self._gated], dim=1)
        for block, factor, (mul, d) in zip(blocks, factors, self._gated, strict=True):
            pieces.append((block.reshape(n, mul, d) * factor.unsqueeze(-1)).reshape(n, mul * d))
        return torch.cat(pieces, dim=1)


class GatedLinear(EquivariantModule):
    r"""Equivariant MLP layer: ``Gate(Linear(x))`` (``o3.Linear`` with biases on ``0e``).

    :math:`f(D_{in}(R) x) = D_{out}(R) f(x)` for every orthogonal ``R``.

    Parameters
    ----------
    irreps_in : Irreps or str
    irreps_out : Irreps or str
        Sorted (scalars first); see :class:`EquivariantGate`.
    """

    def __init__(self, irreps_in: o3.Irreps | str, irreps_out: o3.Irreps | str) -> None:
        super().__init__()
        self.gate = EquivariantGate(irreps_out)
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = self.gate.irreps_out
        missing = [str(ir) for _, ir in self.gate.irreps_in if ir not in self.irreps_in]
        if missing:
            raise ValueError(
                f"GatedLinear: output irreps {', '.join(sorted(set(missing)))} do not occur in "
                f"irreps_in {self.irreps_in}; a linear layer cannot create them"
            )
        self.linear = o3.Linear(self.irreps_in, self.gate.irreps_in, biases=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., irreps_in.dim)`` -> ``(..., irreps_out.dim)``."""
        return self.gate(self.linear(x))
