r"""A pretrained interatomic potential as the first stage of a crystensor backbone.

:class:`PretrainedEmbedding` takes the place of the atom embedding when ``config.backbone`` names
a pretrained potential (:mod:`crystensor.models.backbones`): the potential's last equivariant
node features, mapped to ``C`` channels of every irrep up to ``l = 2`` and both parities, enter
the backbone's interaction and self-interaction layers (which lift them to ``l = 3, 4``), pooling
and head as the native embedding's output would.

**Parity.** The potentials (SevenNet-0) are equivariant under rotations only: their features have
no definite parity, so under a reflection they do not transform as any O(3) irrep. Let
:math:`F(S)` be the node features of structure ``S`` (rotating as the irreps ``l`` of
``backbone.irreps_out``) and :math:`PS` its image under inversion (positions and cell negated,
same atom order). With :math:`p_k = \pm 1` the parity of component ``k`` of those labels,

.. math::

    F^{+} = \tfrac12\,(F(S) + p\,F(PS)), \qquad F^{-} = \tfrac12\,(F(S) - p\,F(PS)).

For every rotation ``R``, :math:`F(RS) = D(R) F(S)`, and inversion commutes with rotations, so
:math:`F^{\pm}(PRS) = \pm p\,D(R)\,F^{\pm}(S)`: :math:`F^{+}` transforms under every orthogonal
matrix as the labelled irreps (``0e + 1o + 2e``), :math:`F^{-}` as the same ``l`` with the
opposite parity (``0o + 1e + 2o``), and nothing is lost (:math:`F(S) = F^+ + F^-`). The model is
therefore exactly O(3)-equivariant, reflections included, at the price of a second pass of the
potential; in particular a centrosymmetric crystal gets exactly zero odd (piezoelectric)
response, as from the native networks.

**Standardisation.** The paired features are standardised before the linear map: the ``0e``
components are centred and every channel (all ``2l+1`` components of one irrep copy alike) is
scaled to unit mean square over the training structures (:meth:`PretrainedEmbedding.calibrate`,
called by the training loop for a new model). The shift touches invariants only and the gains
are per channel, so equivariance holds; both are saved with the weights.

**Modes** (``config.backbone_mode``). ``frozen``: the potential's weights never change, are not
stored in crystensor checkpoints (its identity is, and a different installed file is refused),
and training reads its features from a per-store cache (``backbone_x`` in the batch,
``(n_nodes, 2, dim)``: structure and inversion image); without a cache, as in prediction, they
are computed on the fly. ``partial``: the potential's last interaction block is trained, the
rest frozen. ``full``: every weight of the potential is trained. Both store its weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from e3nn import o3

from crystensor.errors import InputError
from crystensor.nn.irreps import EquivariantModule

__all__ = ["PretrainedEmbedding", "parity_pair_irreps"]


def parity_pair_irreps(irreps: o3.Irreps | str) -> tuple[o3.Irreps, torch.Tensor]:
    """The irreps of ``[F+, F-]`` and the parity sign ``p`` of each component of ``irreps``.

    >>> pair, sign = parity_pair_irreps("2x0e+1x1o")
    >>> str(pair), sign.tolist()
    ('2x0e+1x1o+2x0o+1x1e', [1.0, 1.0, -1.0, -1.0, -1.0])
    """
    irreps = o3.Irreps(irreps)
    flipped = o3.Irreps([(mul, (ir.l, -ir.p)) for mul, ir in irreps])
    sign = torch.cat([torch.full((mul * ir.dim,), float(ir.p)) for mul, ir in irreps])
    return irreps + flipped, sign


class PretrainedEmbedding(EquivariantModule):
    """Node features of a pretrained potential, parity-paired and mapped to ``C`` channels.

    ``irreps_out`` is ``C x (0e + 0o + 1o + 1e + 2e + 2o)`` (up to the potential's ``lmax``),
    with the native atom embedding added to the ``0e`` channels when ``config.atom_embedding``;
    ``irreps_in`` is the potential's own ``irreps_out`` (what it computes, or what a cache
    holds).

    Parameters
    ----------
    config : ModelConfig
        ``backbone`` (a registered name), ``backbone_mode`` and ``channels`` are read.
    pretrained : torch.nn.Module, optional
        The potential (a :class:`crystensor.models.backbones.PretrainedBackbone` or anything with
        its ``forward``, ``irreps_out`` and ``cutoff``); by default loaded by name.
    """

    def __init__(self, config: Any, pretrained: torch.nn.Module | None = None) -> None:
        super().__init__()
        if pretrained is None:
            from crystensor.models.backbones import load_backbone

            pretrained = load_backbone(config.backbone)
        self.name = config.backbone
        self.mode = config.backbone_mode
        self.irreps_in = o3.Irreps(pretrained.irreps_out)
        self.cutoff = float(pretrained.cutoff)
        if self.mode == "frozen":
            pretrained.requires_grad_(False)
            pretrained.eval()
            # Not a submodule: its weights stay out of state_dict (the checkpoint records its
            # identity instead), and .to(dtype) leaves it in the precision it was trained in.
            object.__setattr__(self, "_frozen", pretrained)
            self.pretrained = None
        else:
            self.pretrained = pretrained
            object.__setattr__(self, "_frozen", None)
            trainable = pretrained.set_trainable("last" if self.mode == "partial" else "all")
            if not trainable:
                raise InputError(
                    f"backbone {self.name!r} has no weights to train in mode {self.mode!r}; "
                    "use --backbone-mode frozen"
                )
        pair, sign = parity_pair_irreps(self.irreps_in)
        self.register_buffer("parity_sign", sign, persistent=False)
        self.irreps_pair = pair
        self._block_dims = [mul * ir.dim for mul, ir in pair]
        even = torch.cat([torch.full((mul * ir.dim,), ir == o3.Irrep("0e")) for mul, ir in pair])
        self.register_buffer("_even_scalar", even, persistent=False)
        # standardisation of the paired features (calibrate), saved with the weights
        self.register_buffer("input_shift", torch.zeros(pair.dim))
        self.register_buffer("input_gain", torch.ones(pair.dim))
        lmax = max(ir.l for _, ir in self.irreps_in)
        hidden = (
            o3.Irreps([(config.channels, (l, p)) for l in range(lmax + 1) for p in (1, -1)])
            .sort()
            .irreps.simplify()
        )
        self.linear = o3.Linear(pair, hidden)
        self.irreps_out = self.linear.irreps_out
        self.atoms = None
        if config.atom_embedding:
            from crystensor.nn.embedding import AtomEmbedding

            self.atoms = AtomEmbedding(config.num_node_features, config.channels)
            slices = self.irreps_out.slices()
            (self._scalars,) = [
                slices[k] for k, (_, ir) in enumerate(self.irreps_out) if ir == o3.Irrep("0e")
            ]

    @property
    def identity(self) -> dict[str, Any]:
        """Name, package version and file sha256 of the potential (saved in checkpoints)."""
        from crystensor.models.backbones import backbone_identity

        return backbone_identity(self.name)

    @property
    def potential(self) -> torch.nn.Module:
        """The pretrained potential (frozen or trainable)."""
        return self._frozen if self._frozen is not None else self.pretrained

    def potential_features(self, g: dict[str, Any], edges: Any) -> torch.Tensor:
        """``(n_nodes, 2, dim)``: the potential's features of each structure and its image."""
        if g.get("z") is None:
            raise ValueError(
                "a model with a pretrained backbone needs the atomic numbers (field z) in its "
                "input graphs"
            )
        potential = self.potential
        param = next(potential.parameters())
        if param.device != edges.vec.device:  # a frozen potential is not moved by .to()
            potential.to(edges.vec.device)
            param = next(potential.parameters())
        edge_index = torch.stack([edges.src, edges.dst])
        vec = edges.vec.to(param.dtype)
        grad = self.mode != "frozen" and torch.is_grad_enabled()
        with torch.set_grad_enabled(grad):
            images = [
                potential(g["z"], edge_index, v, g["batch"], g["num_graphs"]) for v in (vec, -vec)
            ]
        return torch.stack(images, dim=1)

    def pair_features(self, batch: Any, g: dict[str, Any], edges: Any) -> torch.Tensor:
        """``[F+, F-]`` of every node, ``(n_nodes, irreps_pair.dim)``, before standardisation.

        Reads the cached features ``batch.backbone_x (n_nodes, 2, dim)`` when the batch has
        them (frozen training), else runs the potential on both images.
        """
        cached = getattr(batch, "backbone_x", None)
        if cached is not None and self.mode == "frozen":
            features = cached
        else:
            features = self.potential_features(g, edges)
        dtype = g["pos"].dtype
        features = features.to(dtype)
        image, inverted = features[:, 0], features[:, 1]
        signed = inverted * self.parity_sign.to(dtype)
        return torch.cat([image + signed, image - signed], dim=1) * 0.5  # [n, 2 dim]

    @torch.no_grad()
    def calibrate(self, pairs: Iterable[torch.Tensor], floor: float = 1e-3) -> None:
        """Standardise the paired features: set :attr:`input_shift` (the mean of each ``0e``
        component; only invariants may be shifted) and :attr:`input_gain` (one per channel of
        each irrep, so equivariance holds) so that every channel has zero mean (``0e``) and unit
        mean square over ``pairs`` (blocks of :meth:`pair_features`). A channel whose RMS is
        below ``floor`` gets the gain ``1/floor`` at most.
        """
        total = square = None
        count = 0
        for pair in pairs:
            total = pair.sum(0) if total is None else total + pair.sum(0)
            square = pair.pow(2).sum(0) if square is None else square + pair.pow(2).sum(0)
            count += pair.shape[0]
        if total is None or count == 0:
            raise ValueError("calibrate needs at least one node")
        mean, mean_square = total / count, square / count
        shift = torch.where(self._even_scalar, mean, torch.zeros_like(mean))
        variance = (mean_square - 2 * shift * mean + shift.pow(2)).clamp_min(0)
        gains = []
        for (mul, ir), block in zip(
            self.irreps_pair, variance.split(self._block_dims), strict=True
        ):
            rms = block.reshape(mul, ir.dim).mean(1).sqrt()
            gains.append((1.0 / rms.clamp_min(floor)).repeat_interleave(ir.dim))
        self.input_shift.copy_(shift)
        self.input_gain.copy_(torch.cat(gains))

    @property
    def calibrated(self) -> bool:
        """Whether :meth:`calibrate` has set the standardisation (a new model has gains 1)."""
        return not bool(torch.all(self.input_gain == 1.0))

    def forward(self, batch: Any, g: dict[str, Any], edges: Any) -> torch.Tensor:
        """Graph fields ``g`` (:func:`crystensor.models.base.graph_inputs`) and the batch's
        :class:`~crystensor.nn.edges.EdgeData` -> ``(n_nodes, irreps_out.dim)``.
        """
        pair = self.pair_features(batch, g, edges)
        pair = (pair - self.input_shift) * self.input_gain
        h = self.linear(pair)  # [n, C x (0e + 0o + 1o + 1e + 2e + 2o)]
        if self.atoms is None:
            return h
        start, stop = self._scalars.start, self._scalars.stop
        scalars = h[:, start:stop] + self.atoms(g["x"])  # [n, C] even scalars
        return torch.cat([h[:, :start], scalars, h[:, stop:]], dim=1)
