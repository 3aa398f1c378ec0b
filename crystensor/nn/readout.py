r"""Heads: pooled graph features -> irreps of the target -> Cartesian tensor (or a scalar).

:class:`TensorHead` applies ``M`` equivariant MLP layers (``o3.Linear`` + gate) and a final
``o3.Linear`` to the target kind's irreps (:attr:`crystensor.tensors.kinds.TensorKind.irreps`,
e.g. ``0e+0e+2e+2e+4e`` for elastic), then :class:`CartesianReadout` turns them into the
Cartesian tensor with the orthonormal change of basis ``Q`` of
:func:`crystensor.tensors.harmonic.change_of_basis`:

.. math::

    T = \mathrm{vec}^{-1}(Q^\top y), \qquad
    y \to D(R)\, y \;\Longrightarrow\; T_{a b \dots} \to R_{a i} R_{b j} \cdots T_{i j \dots}

for every orthogonal ``R`` (odd-rank tensors such as the piezoelectric one flip sign under
inversion because their irreps are odd). :class:`ScalarHead` is the same MLP ending in one
``0e`` (band gap, formation energy, moduli: pretraining targets).
"""

from __future__ import annotations

import numpy as np
import torch
from e3nn import o3

from crystensor.nn.gate import GatedLinear
from crystensor.nn.irreps import EquivariantModule, IrrepsMismatchError
from crystensor.tensors.harmonic import change_of_basis
from crystensor.tensors.kinds import KINDS, PROPERTIES, TensorKind

__all__ = ["CartesianReadout", "ScalarHead", "TensorHead", "build_head", "resolve_target"]


def resolve_target(target: str | TensorKind) -> TensorKind:
    """The tensor kind of a property name (``"band-gap"``) or a kind name (``"elastic"``)."""
    if isinstance(target, TensorKind):
        return target
    if target in PROPERTIES:
        return PROPERTIES[target].tensor_kind
    if target in KINDS:
        return KINDS[target]
    raise ValueError(
        f"unknown target {target!r}; choose a property ({', '.join(PROPERTIES)}) "
        f"or a tensor kind ({', '.join(KINDS)})"
    )


class CartesianReadout(EquivariantModule):
    """Irreps ``(n, dim)`` -> Cartesian tensor ``(n, 3, ..., 3)`` (rank of the kind).

    ``Q`` is a non-persistent buffer (rebuilt from the kind, not stored in checkpoints).
    """

    def __init__(self, kind: str | TensorKind) -> None:
        super().__init__()
        self.kind = resolve_target(kind)
        if self.kind.rank == 0:
            raise ValueError("CartesianReadout needs a tensor kind of rank >= 1, got a scalar")
        self.irreps_in = o3.Irreps(self.kind.irreps)
        self.irreps_out = self.irreps_in
        q = torch.tensor(np.array(change_of_basis(self.kind)), dtype=torch.get_default_dtype())
        self.register_buffer("change_of_basis", q, persistent=False)  # [dim, 3**rank]
        self._shape = tuple(self.kind.cartesian_shape)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` -> ``(n, 3, ..., 3)``."""
        flat = y @ self.change_of_basis  # [n, 3**rank]
        return flat.reshape(y.shape[0], *self._shape)  # [n, 3, ..., 3]


class TensorHead(EquivariantModule):
    """``M`` x (Linear + Gate), then Linear to the target irreps; returns irreps and Cartesian.

    Parameters
    ----------
    irreps_in : Irreps or str
        Pooled features from the backbone; must contain every irrep of the target.
    target : str or TensorKind
        Property or kind name (see :func:`resolve_target`).
    num_layers : int
        ``M``, the number of gated MLP layers (0 allowed).
    channels : int
        Width of the MLP: ``channels`` copies of ``0e`` and of each distinct target irrep.

    Raises
    ------
    IrrepsMismatchError
        ``irreps_in`` lacks an irrep the target needs (e.g. ``4e`` with ``lmax_out < 4``).

    Notes
    -----
    ``output_scale`` and ``output_shift`` (buffers, saved with the weights) de-normalise the
    output: ``y = scale * linear(x) + shift``; see :meth:`set_output_normalization`.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        target: str | TensorKind,
        *,
        num_layers: int,
        channels: int,
    ) -> None:
        super().__init__()
        self.kind = resolve_target(target)
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(self.kind.irreps)
        available = {ir for _, ir in self.irreps_in}
        missing = sorted({str(ir) for _, ir in self.irreps_out if ir not in available})
        if missing:
            raise IrrepsMismatchError(
                f"a {self.kind.name} head needs irreps {', '.join(missing)} that the backbone "
                f"does not produce (it gives {self.irreps_in}); raise lmax_out to "
                f"{max(ir.l for _, ir in self.irreps_out)}"
            )
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        hidden = o3.Irreps(
            [(channels, ir) for ir in sorted({o3.Irrep("0e")} | {ir for _, ir in self.irreps_out})]
        )
        layers, irreps = [], self.irreps_in
        for _ in range(num_layers):
            layers.append(GatedLinear(irreps, hidden))
            irreps = layers[-1].irreps_out
        self.mlp = torch.nn.Sequential(*layers)
        self.linear = o3.Linear(irreps, self.irreps_out, biases=True)
        self.register_buffer("output_scale", torch.ones(self.irreps_out.dim))
        self.register_buffer("output_shift", torch.zeros(self.irreps_out.dim))
        self.cartesian = CartesianReadout(self.kind) if self.kind.rank > 0 else None

    def set_output_normalization(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """Set ``y = scale * linear(x) + shift`` with one ``scale`` and ``shift`` per irrep part.

        Parameters
        ----------
        scale : Tensor, shape (n_parts,)
            Positive factor per part (e.g. the training-set std of each part).
        shift : Tensor, shape (n_parts,)
            Offset per part; must be 0 for every part that is not ``0e`` (a constant
            non-scalar offset would break equivariance).
        """
        scale = torch.as_tensor(scale, dtype=self.output_scale.dtype).flatten()
        shift = torch.as_tensor(shift, dtype=self.output_shift.dtype).flatten()
        n_parts = len(self.irreps_out)
        if scale.shape != (n_parts,) or shift.shape != (n_parts,):
            raise ValueError(
                f"scale and shift need one value per part of {self.kind.name} ({n_parts}: "
                f"{self.irreps_out}), got shapes {tuple(scale.shape)} and {tuple(shift.shape)}"
            )
        if not bool((scale > 0).all()):
            raise ValueError(f"output scales must be positive, got {scale.tolist()}")
        for value, (_, ir) in zip(shift.tolist(), self.irreps_out, strict=True):
            if value != 0 and ir != o3.Irrep("0e"):
                raise ValueError(
                    f"a shift on a {ir} part breaks equivariance; only 0e parts may shift"
                )
        dims = torch.tensor([ir.dim for _, ir in self.irreps_out])
        self.output_scale.copy_(scale.repeat_interleave(dims))
        self.output_shift.copy_(shift.repeat_interleave(dims))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(n_graphs, irreps_in.dim)`` -> ``{"irreps": (n_graphs, dim), "cartesian": ...}``.

        ``cartesian`` has shape ``(n_graphs, 3, ..., 3)`` (absent for scalar kinds).
        """
        y = self.linear(self.mlp(x)) * self.output_scale + self.output_shift
        out = {"irreps": y}
        if self.cartesian is not None:
            out["cartesian"] = self.cartesian(y)
        return out


class ScalarHead(TensorHead):
    """A :class:`TensorHead` ending in one ``0e``; returns ``{"scalar": (n,), "irreps": (n, 1)}``.

    Parameters as for :class:`TensorHead`; ``target`` must be a scalar property or ``"scalar"``.
    """

    def __init__(
        self, irreps_in: o3.Irreps | str, target: str = "scalar", *, num_layers: int, channels: int
    ) -> None:
        super().__init__(irreps_in, target, num_layers=num_layers, channels=channels)
        if self.kind.rank != 0:
            raise ValueError(f"ScalarHead needs a scalar target, got {self.kind.name!r}")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``(n_graphs, irreps_in.dim)`` -> ``{"scalar": (n_graphs,), "irreps": (n_graphs, 1)}``."""
        y = super().forward(x)["irreps"]
        return {"scalar": y[:, 0], "irreps": y}


def build_head(
    target: str | TensorKind, irreps_in: o3.Irreps | str, *, num_layers: int, channels: int
) -> TensorHead:
    """A :class:`ScalarHead` for scalar targets, else a :class:`TensorHead`."""
    kind = resolve_target(target)
    cls = ScalarHead if kind.rank == 0 else TensorHead
    return cls(irreps_in, target, num_layers=num_layers, channels=channels)
