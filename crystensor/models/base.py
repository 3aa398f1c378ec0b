r"""What every architecture shares: the backbone skeleton and the backbone + head model.

.. code-block:: text

    x (n_nodes, F) --AtomEmbedding--> C x 0e
        --R interaction layers (architecture-specific)--> C x (0e + 1o + 2e)   [lmax = 2]
        --N self-interactions (last one lifts)----------> C x (0e+1o+2o+2e+3o+4e) [lmax_out = 4]
        --pooling (mean | equivariant max)--------------> (n_graphs, backbone.irreps_out.dim)
        --per-channel scale calibrated on the training data (config.pool_norm)
        --head: M x (Linear + Gate), Linear------------> target irreps -> Cartesian tensor

With a pretrained backbone (``config.backbone``, :mod:`crystensor.models.foundation`) the atom
embedding is replaced by the potential's node features (made O(3)-equivariant by pairing each
structure with its inversion image), mapped to ``C`` channels; the rest is the same.

The backbone is target-independent (its output holds every irrep any registered kind needs up
to ``lmax_out``), so a backbone pretrained on a scalar can be kept when the head is replaced
(:meth:`TensorModel.replace_head`).

Equivariance of the whole model: for any orthogonal ``R`` (rotation or reflection) applied to
the structure (``pos -> pos R^T``, ``cell -> cell R^T``), ``irreps -> irreps D(R)^T`` and the
Cartesian output is rotated by ``R`` on every index; translations, atom permutations and
supercells (mean or max pooling) leave the output unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from e3nn import o3

from crystensor.models.config import ModelConfig
from crystensor.nn.edges import EdgeEmbedding, NodeAttributes
from crystensor.nn.embedding import AtomEmbedding
from crystensor.nn.interaction import SelfInteraction
from crystensor.nn.irreps import EquivariantModule, check_irreps, kinds_irreps, spherical_irreps
from crystensor.nn.pooling import build_pooling, mean_pool
from crystensor.nn.readout import TensorHead, build_head, resolve_target
from crystensor.tensors.kinds import TensorKind

__all__ = ["Backbone", "InteractionFactory", "TensorModel", "graph_inputs"]

# (irreps_in, irreps_out, irreps_sh, irreps_node_attr) -> layer with
# forward(h, edges, node_attr) -> h'
InteractionFactory = Callable[[o3.Irreps, o3.Irreps, o3.Irreps, o3.Irreps], EquivariantModule]

_FIELDS = ("x", "pos", "cell", "edge_index", "edge_shift")


def graph_inputs(batch: Any) -> dict[str, Any]:
    """The fields a model reads from a PyG ``Batch`` (or a single ``Data``), validated.

    Returns ``x (n_nodes, F)``, ``z (n_nodes,)`` atomic numbers (None if the batch has none),
    ``pos (n_nodes, 3)``, ``cell (n_graphs, 3, 3)``,
    ``edge_index (2, n_edges)``, ``edge_shift (n_edges, 3)``, ``batch (n_nodes,)`` and
    ``num_graphs``. A single ``Data`` (no ``batch`` vector) is one graph.
    """
    missing = [name for name in _FIELDS if getattr(batch, name, None) is None]
    if missing:
        raise ValueError(
            f"the input graph lacks field(s) {', '.join(missing)}; models need "
            f"{', '.join(_FIELDS)} (see crystensor.data.graph)"
        )
    pos = batch.pos
    if pos.dim() != 2 or pos.shape[-1] != 3:
        raise ValueError(f"pos must have shape (n_nodes, 3), got {tuple(pos.shape)}")
    node_batch = getattr(batch, "batch", None)
    if node_batch is None:
        node_batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    num_graphs = int(getattr(batch, "num_graphs", 1) or 1)
    cell = batch.cell.to(pos.dtype)
    if cell.dim() == 2:
        cell = cell.unsqueeze(0)
    if cell.shape != (num_graphs, 3, 3):
        raise ValueError(f"cell must have shape ({num_graphs}, 3, 3), got {tuple(cell.shape)}")
    return dict(
        x=batch.x.to(pos.dtype),
        pos=pos,
        cell=cell,
        edge_index=batch.edge_index,
        edge_shift=batch.edge_shift,
        batch=node_batch,
        num_graphs=num_graphs,
        z=getattr(batch, "z", None),
    )


class Backbone(EquivariantModule):
    """Everything before the head: embedding, interactions, self-interactions, pooling.

    ``irreps_in`` is ``F x 0e`` (atom features), ``irreps_out`` the pooled graph features,
    ``channels`` copies of every irrep the registered tensor kinds need up to ``lmax_out``.

    Parameters
    ----------
    config : ModelConfig
    make_interaction : InteractionFactory
        Builds interaction layer ``r`` from ``(irreps_in, irreps_out, irreps_sh,
        irreps_node_attr)``; the architecture's only contribution.
    pretrained : torch.nn.Module, optional
        The potential of a pretrained backbone (by default loaded by ``config.backbone``).
    """

    def __init__(
        self,
        config: ModelConfig,
        make_interaction: InteractionFactory,
        pretrained: torch.nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.edge_embedding = EdgeEmbedding(config.lmax_out, config.num_radial, config.cutoff)
        self.node_attributes = NodeAttributes(self.edge_embedding.irreps_out)
        self.irreps_sh = o3.Irreps.spherical_harmonics(config.lmax)
        self._dim_sh = self.irreps_sh.dim  # forward reads ints only (torch.compile guards)
        if config.backbone == "native":
            self.embedding = AtomEmbedding(config.num_node_features, config.channels)
        else:
            from crystensor.models.foundation import PretrainedEmbedding

            self.embedding = PretrainedEmbedding(config, pretrained)
        self.irreps_in = self.embedding.irreps_in
        self._pretrained = config.backbone != "native"

        hidden = spherical_irreps(config.channels, config.lmax)
        irreps = self.embedding.irreps_out
        interactions = []
        for r in range(config.num_interactions):
            layer = make_interaction(irreps, hidden, self.irreps_sh, self.irreps_sh)
            check_irreps(layer.irreps_in, irreps, f"interaction {r} ({type(layer).__name__})")
            interactions.append(layer)
            irreps = layer.irreps_out
        self.interactions = torch.nn.ModuleList(interactions)

        irreps_attr = self.node_attributes.irreps_out
        lifted = kinds_irreps(config.channels, config.lmax_out)
        self_interactions = []
        for n in range(config.num_self_interactions):
            out = lifted if n == config.num_self_interactions - 1 else hidden
            layer = SelfInteraction(irreps, out, irreps_attr)
            check_irreps(layer.irreps_in, irreps, f"self-interaction {n}")
            self_interactions.append(layer)
            irreps = layer.irreps_out
        self.self_interactions = torch.nn.ModuleList(self_interactions)

        self.pooling = build_pooling(config.pooling, irreps)
        self.irreps_out = self.pooling.irreps_out
        # ModelConfig.pool_norm: one gain per (channel, irrep) of the pooled features, set by
        # calibrate_pool_norm() before training; a buffer, so checkpoints carry it.
        self.pool_norm = False
        if config.pool_norm:
            self.add_pool_gain()

    def add_pool_gain(self) -> None:
        """Turn ``pool_norm`` on with all gains 1 (:meth:`calibrate_pool_norm` sets them)."""
        param = next(self.parameters())
        self.pool_norm = True
        self.register_buffer(
            "pool_gain", torch.ones(self.irreps_out.dim, device=param.device, dtype=param.dtype)
        )

    def node_features(self, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        """Per-node features before pooling, ``(n_nodes, irreps_out.dim)``, and the inputs."""
        g = graph_inputs(batch)
        edges = self.edge_embedding(
            g["pos"], g["cell"], g["edge_index"], g["edge_shift"], g["batch"]
        )
        num_nodes = g["pos"].shape[0]
        node_attr = self.node_attributes(edges, num_nodes)  # [n_nodes, (lmax_out+1)**2]
        split = [self._dim_sh, node_attr.shape[1] - self._dim_sh]
        edges = edges._replace(sh=edges.sh.split(split, dim=1)[0])  # hidden layers: l <= lmax
        node_attr_hidden = node_attr.split(split, dim=1)[0]
        if self._pretrained:
            h = self.embedding(batch, g, edges)  # [n_nodes, C x (0e+0o+1o+1e+2e+2o)]
        else:
            h = self.embedding(g["x"])  # [n_nodes, C]
        for layer in self.interactions:
            h = layer(h, edges, node_attr_hidden)
        for layer in self.self_interactions:
            h = layer(h, node_attr)
        return h, g

    def forward(self, batch: Any) -> torch.Tensor:
        """PyG batch -> pooled features ``(n_graphs, irreps_out.dim)``."""
        h, g = self.node_features(batch)
        return self._gained(self._pool(h, g))

    def pooled_and_descriptor(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled features (:meth:`forward`) and the ones the domain check reads, both
        ``(n_graphs, irreps_out.dim)``: the same, except under density pooling, whose features
        shrink with empty space (a molecule in a large box pools to almost nothing, like a very
        soft solid); there the mean of the node features (with the pooled features' gains),
        which describes the atoms' environments whatever the cell's volume."""
        h, g = self.node_features(batch)
        pooled = self._gained(self._pool(h, g))
        if not getattr(self.pooling, "needs_volume", False):
            return pooled, pooled
        return pooled, self._gained(mean_pool(h, g["batch"], g["num_graphs"]))

    def _pool(self, h: torch.Tensor, g: dict[str, Any]) -> torch.Tensor:
        """The pooling of node features ``h`` (with the cell volume where it needs it)."""
        if getattr(self.pooling, "needs_volume", False):
            volume = torch.linalg.det(g["cell"]).abs()  # [n_graphs]
            return self.pooling(h, g["batch"], g["num_graphs"], volume)
        return self.pooling(h, g["batch"], g["num_graphs"])

    def _gained(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features times the calibrated gains (``pool_norm``), or as they are."""
        return pooled * self.pool_gain if self.pool_norm else pooled

    @torch.no_grad()
    def calibrate_pretrained(self, batches: Iterable[Any]) -> None:
        """Standardise a pretrained backbone's features on ``batches`` (training graphs; see
        :meth:`crystensor.models.foundation.PretrainedEmbedding.calibrate`)."""
        if not self._pretrained:
            raise ValueError("calibrate_pretrained needs a model with a pretrained backbone")

        def pairs():
            for batch in batches:
                g = graph_inputs(batch)
                edges = self.edge_embedding(
                    g["pos"], g["cell"], g["edge_index"], g["edge_shift"], g["batch"]
                )
                yield self.embedding.pair_features(batch, g, edges)

        self.embedding.calibrate(pairs())

    @torch.no_grad()
    def calibrate_pool_norm(self, batches: Iterable[Any], floor: float = 1e-3) -> torch.Tensor:
        """Set ``pool_gain`` so every pooled channel has unit mean square over ``batches``.

        One gain per multiplicity channel of each irrep (the mean square is taken over its
        ``2l+1`` components), so equivariance holds. A channel whose RMS is below ``floor``
        (nearly zero on every training structure) gets the gain ``1/floor`` at most, so
        round-off is not blown up. Returns the RMS per channel. Does nothing without
        ``pool_norm``.
        """
        if not self.pool_norm:
            return torch.ones(0)
        self.pool_gain.fill_(1.0)
        total, count = None, 0
        for batch in batches:
            pooled = self(batch)
            square = pooled.pow(2).sum(0)
            total = square if total is None else total + square
            count += pooled.shape[0]
        if total is None:
            raise ValueError("calibrate_pool_norm needs at least one batch")
        rms = []
        blocks = (total / count).split([m * i.dim for m, i in self.irreps_out])
        for (mul, ir), block in zip(self.irreps_out, blocks, strict=True):
            rms.append(block.reshape(mul, ir.dim).mean(1).sqrt())
        rms = torch.cat(rms)
        gain = 1.0 / rms.clamp_min(floor)
        dims = torch.tensor([ir.dim for mul, ir in self.irreps_out for _ in range(mul)])
        self.pool_gain.copy_(gain.repeat_interleave(dims.to(gain.device)))
        return rms


class TensorModel(torch.nn.Module):
    """Backbone + head. Subclasses name the architecture and its interaction layer.

    A subclass sets four class attributes: ``arch`` (the registry name), ``config_class``,
    ``interaction_layer`` (a block built as ``Layer(irreps_in, irreps_out, irreps_sh,
    irreps_node_attr, **options)``, called as ``layer(h, edges, node_attr)``) and
    ``interaction_options`` (the config fields passed as ``options``).

    ``forward(batch)`` returns ``{"irreps": (n_graphs, dim), "cartesian": (n_graphs, 3, ..., 3)}``
    for a tensor target and ``{"scalar": (n_graphs,), "irreps": (n_graphs, 1)}`` for a scalar.

    Attributes
    ----------
    config : ModelConfig
    backbone : Backbone
        Transferable between targets.
    head : TensorHead
        Replaced by :meth:`replace_head`.
    """

    arch: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    interaction_layer: ClassVar[Callable[..., EquivariantModule]]
    interaction_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ModelConfig, pretrained: torch.nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ValueError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got "
                f"{type(config).__name__} (arch {config.arch!r})"
            )
        self.config = config
        self.backbone = Backbone(config, self.make_interaction, pretrained)
        self.head = self._build_head(config.target)

    def make_interaction(
        self,
        irreps_in: o3.Irreps,
        irreps_out: o3.Irreps,
        irreps_sh: o3.Irreps,
        irreps_node_attr: o3.Irreps,
    ) -> EquivariantModule:
        """Interaction layer ``r`` of the backbone (an :data:`InteractionFactory`)."""
        options = {name: getattr(self.config, name) for name in self.interaction_options}
        return self.interaction_layer(irreps_in, irreps_out, irreps_sh, irreps_node_attr, **options)

    def _build_head(self, target: str) -> TensorHead:
        if self.config.prior is not None:
            from crystensor.nn.prior import PriorHead

            head = PriorHead(
                self.backbone.irreps_out,
                target,
                num_layers=self.config.num_mlp_layers,
                channels=self.config.channels,
            )
            check_irreps(head.irreps_in, self.backbone.irreps_out, "head")
            return head
        head = build_head(
            target,
            self.backbone.irreps_out,
            num_layers=self.config.num_mlp_layers,
            channels=self.config.channels,
        )
        check_irreps(head.irreps_in, self.backbone.irreps_out, "head")
        return head

    @property
    def kind(self) -> TensorKind:
        """The :class:`~crystensor.tensors.kinds.TensorKind` the head predicts."""
        return resolve_target(self.config.target)

    def replace_head(self, target: str) -> None:
        """Attach a fresh head for ``target`` (property or kind name), keeping the backbone.

        The config's ``target`` is updated; the new head has the backbone's device and dtype.
        """
        param = next(self.backbone.parameters())
        self.head = self._build_head(target).to(device=param.device, dtype=param.dtype)
        self.config = self.config.replace(target=target)

    def add_pool_norm(self) -> None:
        """Give the backbone pooled-feature gains (``config.pool_norm``), all 1 until
        :meth:`Backbone.calibrate_pool_norm` sets them. For a transferred backbone that gets a
        new head; does nothing if it has gains already."""
        if self.backbone.pool_norm:
            return
        self.backbone.add_pool_gain()
        self.config = self.config.replace(pool_norm=True)

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """PyG batch -> predictions (see the class docstring for the keys and shapes).

        A model with a prior (``config.prior``) also reads the batch's ``prior (n_graphs,
        dim)`` irreps and ``prior_mask (n_graphs,)`` (:func:`crystensor.nn.prior.prior_inputs`).
        """
        return self.head_of(self.backbone(batch), batch)

    def head_of(self, pooled: torch.Tensor, batch: Any) -> dict[str, torch.Tensor]:
        """The head's predictions from pooled features ``(n_graphs, dim)`` (and, with a
        prior, the batch's ``prior`` and ``prior_mask``)."""
        if self.config.prior is None:
            return self.head(pooled)
        from crystensor.nn.prior import prior_inputs

        prior, mask = prior_inputs(batch, pooled.shape[0], self.head.irreps_out.dim)
        return self.head(pooled, prior, mask)
