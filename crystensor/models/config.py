"""Typed, frozen model configurations and their named presets.

A config holds everything needed to rebuild a model (checkpoints store ``config.to_dict()``
and rebuild with :func:`config_from_dict` + :func:`crystensor.models.build_model`).

Common fields (:class:`ModelConfig`), in the paper's notation:

=========================  =================================================================
``arch``                   ``"segnn"``, ``"seconv"`` or ``"setransformer"``
``num_node_features``      width ``F`` of the atom feature vector (set by the featurizer)
``target``                 property (``"elastic"``, ``"band-gap"``, ...) or kind name
``channels``               ``C``: multiplicity of every hidden irrep
``lmax``                   highest ``l`` of the hidden features and edge harmonics
``lmax_out``               highest ``l`` of the backbone output (4 serves every kind)
``num_interactions``       ``R`` message-passing / convolution / attention layers
``num_self_interactions``  ``N`` node-wise layers; the last lifts ``lmax -> lmax_out``
``num_mlp_layers``         ``M`` gated layers of the head
``pooling``                ``"mean"``, ``"max"`` (equivariant max) or ``"density"`` (sum over the
                           cell volume): :mod:`crystensor.nn.pooling`
``cutoff``                 graph radius in Angstrom (must match the featurization)
``num_radial``             Bessel functions of the radial basis
``avg_num_neighbors``      fixed normaliser of neighbour sums (~34 at 5 Angstrom)
``pool_norm``              calibrated gain per pooled irrep channel (see below)
``backbone``               ``"native"`` (atom features embedded and refined by the R layers) or a
                           pretrained potential of :mod:`crystensor.models.backbones`, whose
                           node features enter the R layers (R may then be 0)
``backbone_mode``          pretrained backbones only: ``"frozen"`` (its features are inputs,
                           cached per store), ``"partial"`` (its last interaction block is
                           trained) or ``"full"`` (all of it is trained)
``atom_embedding``         pretrained backbones only: also embed the atom features (as the
                           native backbone does) and add them to the scalar channels
``prior``                  None, or the potential whose elastic tensor of each structure the
                           head corrects (``"sevennet-0"``; :mod:`crystensor.nn.prior`)
``prior_kind``             ``"clamped"`` or ``"relaxed"`` ions: which tensor of the potential
=========================  =================================================================

``pool_norm`` (off by default; ``crystensor train`` turns it on for odd-rank targets, i.e.
piezoelectric, and a transferred backbone without it gets it with a new piezoelectric
head): the pooled graph features are multiplied by one gain per irrep channel, set before
training so that every channel has unit mean square over the training structures
(:meth:`crystensor.models.base.Backbone.calibrate_pool_norm`, called by the training loop).
Without it the odd-parity channels that a piezoelectric head reads come out of mean pooling
about 100x smaller than the scalars (crystal symmetry nearly cancels them: measured 1e-3
against 0.13 on the matminer piezoelectric set), the head's outputs start 1000x below the
targets, and the direct piezoelectric runs stayed at the zero tensor. For the even targets it
did not help (SEConv direct runs: elastic 7.13 -> 7.60 GPa, dielectric 2.81 -> 3.08 test MAE).
The gains are fixed numbers, not batch statistics: equivariant, the same in training and
evaluation, for one structure or a batch, and for every DDP process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from crystensor.tensors.kinds import KINDS, PROPERTIES

__all__ = [
    "BACKBONE_MODES",
    "CONFIG_CLASSES",
    "POOLINGS",
    "PRESETS",
    "ModelConfig",
    "SEConvConfig",
    "SEGNNConfig",
    "SETransformerConfig",
    "config_from_dict",
    "preset",
]


POOLINGS = ("mean", "max", "density")
BACKBONE_MODES = ("frozen", "partial", "full")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """Fields every architecture shares (see the module docstring)."""

    arch: str
    num_node_features: int
    target: str = "elastic"
    channels: int = 16
    lmax: int = 2
    lmax_out: int = 4
    num_interactions: int = 2
    num_self_interactions: int = 1
    num_mlp_layers: int = 2
    pooling: str = "mean"
    cutoff: float = 5.0
    num_radial: int = 8
    avg_num_neighbors: float = 34.0
    pool_norm: bool = False
    backbone: str = "native"
    backbone_mode: str = "frozen"
    atom_embedding: bool = False
    prior: str | None = None
    prior_kind: str = "clamped"

    def __post_init__(self) -> None:
        _require(
            self.arch in CONFIG_CLASSES and isinstance(self, CONFIG_CLASSES[self.arch]),
            f"arch {self.arch!r} does not match {type(self).__name__}; use "
            "preset()/config_from_dict() or the config class of the architecture",
        )
        _require(
            self.target in PROPERTIES or self.target in KINDS,
            f"unknown target {self.target!r}; choose a property ({', '.join(PROPERTIES)}) "
            f"or a tensor kind ({', '.join(KINDS)})",
        )
        _require(
            self.num_node_features >= 1,
            f"num_node_features must be >= 1, got {self.num_node_features}",
        )
        _require(self.channels >= 1, f"channels must be >= 1, got {self.channels}")
        _require(
            0 <= self.lmax <= self.lmax_out,
            f"need 0 <= lmax <= lmax_out, got {self.lmax}, {self.lmax_out}",
        )
        _require(
            self.num_interactions >= (1 if self.backbone == "native" else 0),
            f"num_interactions must be >= 1 (>= 0 with a pretrained backbone), got "
            f"{self.num_interactions}",
        )
        _require(
            isinstance(self.backbone, str) and bool(self.backbone),
            f"backbone must be a name, got {self.backbone!r}",
        )
        _require(
            not self.atom_embedding or self.backbone != "native",
            "atom_embedding adds atom features to a pretrained backbone's; the native one "
            "embeds them anyway",
        )
        _require(
            self.backbone_mode in BACKBONE_MODES,
            f"backbone_mode must be one of {', '.join(BACKBONE_MODES)}, got {self.backbone_mode!r}",
        )
        if self.prior is not None:
            from crystensor.nn.prior import PRIOR_KINDS

            kind = PROPERTIES[self.target].tensor_kind.name if self.target in PROPERTIES else None
            kind = kind or self.target
            _require(
                kind in PRIOR_KINDS,
                f"a physics prior exists for {', '.join(PRIOR_KINDS)} targets, not {self.target}",
            )
            _require(
                self.prior_kind in ("clamped", "relaxed"),
                f"prior_kind must be clamped or relaxed, got {self.prior_kind!r}",
            )
        _require(
            self.num_self_interactions >= 1,
            "num_self_interactions must be >= 1: the last self-interaction lifts the hidden "
            f"features to lmax_out; got {self.num_self_interactions}",
        )
        _require(
            self.num_mlp_layers >= 0, f"num_mlp_layers must be >= 0, got {self.num_mlp_layers}"
        )
        _require(
            self.pooling in POOLINGS,
            f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}",
        )
        _require(self.cutoff > 0, f"cutoff must be positive, got {self.cutoff}")
        _require(self.num_radial >= 1, f"num_radial must be >= 1, got {self.num_radial}")
        _require(
            self.avg_num_neighbors > 0,
            f"avg_num_neighbors must be positive, got {self.avg_num_neighbors}",
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (checkpoints store it)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class SEGNNConfig(ModelConfig):
    """SEGNN: ``num_message_layers`` steerable layers in the message MLP (the paper uses 2)."""

    arch: str = "segnn"
    num_message_layers: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(
            self.num_message_layers >= 1,
            f"num_message_layers must be >= 1, got {self.num_message_layers}",
        )


@dataclass(frozen=True, kw_only=True)
class SEConvConfig(ModelConfig):
    """SEConv: ``radial_hidden`` is the hidden width of the radial MLP."""

    arch: str = "seconv"
    radial_hidden: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.radial_hidden >= 1, f"radial_hidden must be >= 1, got {self.radial_hidden}")


@dataclass(frozen=True, kw_only=True)
class SETransformerConfig(ModelConfig):
    """SE(3)-Transformer: radial MLP width and attention heads (must divide ``channels``)."""

    arch: str = "setransformer"
    radial_hidden: int = 32
    num_heads: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        _require(self.radial_hidden >= 1, f"radial_hidden must be >= 1, got {self.radial_hidden}")
        _require(
            self.num_heads >= 1 and self.channels % self.num_heads == 0,
            f"num_heads ({self.num_heads}) must divide channels ({self.channels})",
        )


CONFIG_CLASSES: dict[str, type[ModelConfig]] = {
    "segnn": SEGNNConfig,
    "seconv": SEConvConfig,
    "setransformer": SETransformerConfig,
}

# Overrides of the dataclass defaults, per preset and architecture ("*" applies to all).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # Tiny: unit tests (a forward pass on a 2-atom cell takes milliseconds).
    "small": {
        "*": dict(
            channels=4,
            lmax=2,
            lmax_out=4,
            num_interactions=2,
            num_self_interactions=1,
            num_mlp_layers=1,
            num_radial=4,
        ),
        "seconv": dict(radial_hidden=8),
        "setransformer": dict(radial_hidden=8, num_heads=2),
    },
    # Real use on a CPU: sized for >= 20 structures/s training and > 200/s inference (batch 32,
    # ~11k edges, 2 threads) on the matminer elastic set; measured with
    # benchmarks/model_speed.py: SEGNN 110/231, SEConv 167/323, SETransformer 141/374 per s.
    # Inference is the binding aim: SEGNN's two edge-level steerable layers per interaction
    # limit it to 16 channels; SEConv, the cheapest per edge, affords 32.
    "default": {
        "*": dict(
            channels=16,
            lmax=2,
            lmax_out=4,
            num_interactions=2,
            num_self_interactions=2,
            num_mlp_layers=2,
            num_radial=8,
        ),
        "segnn": dict(num_message_layers=2),
        "seconv": dict(channels=32, radial_hidden=32),
        "setransformer": dict(radial_hidden=32, num_heads=2),
    },
}


def preset(arch: str, name: str = "default", **overrides: Any) -> ModelConfig:
    """The config of preset ``name`` for ``arch``, with ``overrides`` applied.

    ``num_node_features`` has no default (it is the featurizer's width) and must be passed.

    >>> preset("segnn", "small", num_node_features=8).channels
    4
    """
    if arch not in CONFIG_CLASSES:
        raise ValueError(
            f"unknown architecture {arch!r}; choose one of {', '.join(CONFIG_CLASSES)}"
        )
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if "num_node_features" not in overrides:
        raise ValueError("preset() needs num_node_features= (the width of the atom features)")
    cls = CONFIG_CLASSES[arch]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    values = {**PRESETS[name].get("*", {}), **PRESETS[name].get(arch, {}), **overrides}
    return cls(**values)


def config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild a config from :meth:`ModelConfig.to_dict` (the ``arch`` key picks the class)."""
    arch = data.get("arch")
    if arch not in CONFIG_CLASSES:
        raise ValueError(
            f"unknown architecture {arch!r}; choose one of {', '.join(CONFIG_CLASSES)}"
        )
    cls = CONFIG_CLASSES[arch]
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
    return cls(**data)
