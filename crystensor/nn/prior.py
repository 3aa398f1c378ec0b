r"""A head that corrects a physics prior: the network predicts what the prior gets wrong.

With ``p`` the prior's irreps (a universal potential's elastic tensor of the structure,
:mod:`crystensor.data.prior_cache`; ``(n_graphs, dim)`` in the target's units), ``m`` its mask
(1 where the prior exists, 0 where the potential could not give one), ``x`` the pooled graph
features and ``s`` the per-part scale of the training targets, :class:`PriorHead` returns

.. math::

    y = \underbrace{\mathrm{MLP}\big(x \oplus m\,p/s \oplus m\big)}_{\text{correction}}
        + m\, w(z) \odot p,
    \qquad w_k(z) = 1 + \mathrm{MLP}_w(z)_k,

one weight ``w_k`` per irrep part ``k`` of the target (five for elastic, ``0e+0e+2e+2e+4e``),
broadcast over its ``2l+1`` components, computed from invariants ``z``: the even scalars of
``x``, the prior's own invariants (its ``0e`` parts and the norms of its ``l > 0`` parts, over
``s``) and ``m``. The correction MLP is the usual :class:`~crystensor.nn.readout.TensorHead`,
which sees the whole prior as an equivariant input besides ``x``. ``MLP_w``'s last layer starts
at zero, so a new model starts from ``prior + network``; it learns how far to trust each part of
the prior for a given structure.

Equivariance: ``z`` is invariant and ``p`` transforms like ``y``, so for any orthogonal ``R``
applied to the structure *and to the prior*, ``y -> D(R) y``. A prior computed by a potential
without parity (SevenNet-0) is rotation-equivariant but only approximately
reflection-equivariant; the head adds no further error.
"""

from __future__ import annotations

from typing import Any

import torch
from e3nn import o3

from crystensor.nn.irreps import EquivariantModule
from crystensor.nn.readout import CartesianReadout, TensorHead, resolve_target
from crystensor.tensors.kinds import TensorKind

__all__ = ["PRIOR_KINDS", "PriorHead", "prior_inputs"]

#: tensor kinds a prior exists for (a potential's second strain derivative is a stiffness)
PRIOR_KINDS = ("elastic",)


def prior_inputs(batch: Any, num_graphs: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``prior (n_graphs, dim)`` and ``prior_mask (n_graphs,)`` of a batch, validated.

    Raises
    ------
    ValueError
        The batch has no ``prior`` field (a store featurized without the prior) or one of the
        wrong shape.
    """
    prior = getattr(batch, "prior", None)
    mask = getattr(batch, "prior_mask", None)
    if prior is None or mask is None:
        raise ValueError(
            "this model corrects a physics prior, but the input graphs carry none (fields "
            "prior, prior_mask); train and evaluate it with the store's prior cache "
            "(crystensor.data.prior_cache), predict with crystensor predict"
        )
    if prior.dim() == 1:
        prior = prior.unsqueeze(0)
    mask = mask.reshape(-1)
    if prior.shape != (num_graphs, dim) or mask.shape != (num_graphs,):
        raise ValueError(
            f"prior must have shape ({num_graphs}, {dim}) and prior_mask ({num_graphs},), got "
            f"{tuple(prior.shape)} and {tuple(mask.shape)}"
        )
    return prior, mask


class PriorHead(EquivariantModule):
    """Pooled features and a prior -> target irreps and Cartesian tensor (module docstring).

    Parameters
    ----------
    irreps_in : Irreps or str
        Pooled features from the backbone.
    target : str or TensorKind
        An elastic property or kind (:data:`PRIOR_KINDS`).
    num_layers, channels : int
        As for :class:`~crystensor.nn.readout.TensorHead` (the correction MLP); ``channels``
        is also the hidden width of ``MLP_w``.

    Notes
    -----
    ``prior_scale`` (a buffer, ``(dim,)``) is ``s``, set with the output normalisation.
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
        if self.kind.name not in PRIOR_KINDS:
            raise ValueError(
                f"a prior head exists for {', '.join(PRIOR_KINDS)} targets, not {self.kind.name}"
            )
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(self.kind.irreps)
        self.irreps_prior = self.irreps_out
        correction_in = self.irreps_in + self.irreps_prior + o3.Irreps("0e")
        self.correction = TensorHead(
            correction_in, self.kind, num_layers=num_layers, channels=channels
        )
        self.correction.cartesian = None  # the sum is read out below
        scalars, start = [], 0
        for mul, ir in self.irreps_in:
            if ir == o3.Irrep("0e"):
                scalars.extend(range(start, start + mul))
            start += mul * ir.dim
        self.register_buffer("scalar_index", torch.tensor(scalars, dtype=torch.long), False)
        self.parts = [ir.dim for mul, ir in self.irreps_out for _ in range(mul)]
        n_parts = len(self.parts)
        self.weight_mlp = torch.nn.Sequential(
            torch.nn.Linear(len(scalars) + n_parts + 1, channels),
            torch.nn.SiLU(),
            torch.nn.Linear(channels, n_parts),
        )
        torch.nn.init.zeros_(self.weight_mlp[-1].weight)
        torch.nn.init.zeros_(self.weight_mlp[-1].bias)
        self.register_buffer("prior_scale", torch.ones(self.irreps_out.dim))
        self.cartesian = CartesianReadout(self.kind)

    def set_output_normalization(
        self, scale: torch.Tensor, shift: torch.Tensor, prior_scale: torch.Tensor | None = None
    ) -> None:
        """The correction's ``scale`` and ``shift`` per irrep part (as
        :meth:`TensorHead.set_output_normalization`) and ``s``, the prior's (``scale`` if not
        given)."""
        self.correction.set_output_normalization(scale, shift)
        s = torch.as_tensor(scale if prior_scale is None else prior_scale).flatten()
        dims = torch.tensor(self.parts)
        self.prior_scale.copy_(s.to(self.prior_scale.dtype).repeat_interleave(dims))

    @property
    def output_scale(self) -> torch.Tensor:
        return self.correction.output_scale

    @property
    def output_shift(self) -> torch.Tensor:
        return self.correction.output_shift

    def prior_weights(self, x: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor):
        """``w``: ``(n_graphs, n_parts)``, one weight per irrep part (1 in a new model)."""
        p = prior / self.prior_scale * mask[:, None]
        invariants = []
        for block, dim in zip(p.split(self.parts, dim=1), self.parts, strict=True):
            invariants.append(block[:, 0] if dim == 1 else block.norm(dim=1))
        z = torch.cat([x[:, self.scalar_index], torch.stack(invariants, 1), mask[:, None]], 1)
        return 1.0 + self.weight_mlp(z)

    def forward(
        self, x: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``x (n_graphs, irreps_in.dim)``, ``prior (n_graphs, dim)``, ``mask (n_graphs,)`` ->
        ``{"irreps": (n_graphs, dim), "cartesian": (n_graphs, 3, 3, 3, 3)}``."""
        mask = mask.to(x.dtype)
        # a failed prior is 0, whatever it holds (NaN included)
        prior = torch.where(mask[:, None] > 0, prior.to(x.dtype), torch.zeros_like(x[:1, :1]))
        inputs = torch.cat([x, prior / self.prior_scale, mask[:, None]], dim=1)
        y = self.correction(inputs)["irreps"]
        w = self.prior_weights(x, prior, mask).repeat_interleave(
            torch.tensor(self.parts, device=x.device), dim=1
        )
        y = y + w * prior
        return {"irreps": y, "cartesian": self.cartesian(y)}
