"""Checkpoints: everything needed to rebuild a model, featurize a structure, and resume training.

A checkpoint is one ``torch.save`` file of plain containers and tensors, so it loads with
``torch.load(..., weights_only=True)`` (no pickled code runs when a file is opened). It holds

=================  ===========================================================================
``format``         ``"crystensor-checkpoint"`` and ``format_version`` (refused if newer)
``config``         :meth:`crystensor.models.ModelConfig.to_dict` (rebuilds the network)
``state_dict``     weights and buffers (including the head's output normalisation)
``featurization``  cutoff, auto-cutoff, feature set and table hash of the training store: a
                   structure must be turned into a graph exactly so before prediction; with a
                   pretrained backbone also ``backbone``: its name, package version and file
                   sha256 (a model is refused where another file is installed); with a
                   physics prior also ``prior``: the potential's name, package, version,
                   checkpoint and sha256, ``prior_kind`` and ``dtype``
``target``         property name (``"elastic"``, ``"band-gap"``, ...); the kind follows from it
``normalization``  per-irrep-part ``scale`` and ``shift`` of the target (training statistics)
``split``          material ids of the ``train`` / ``val`` / ``test`` graphs
``metrics``        validation / test metrics (:mod:`crystensor.train.metrics`)
``versions``       crystensor, torch, e3nn, torch_geometric, pymatgen, numpy
``training``       train config, epoch, history, optimizer / scheduler / RNG state (resume);
                   may be empty in a shipped model
``members``        an ensemble's weights: one ``state_dict`` per member (the first is also
                   ``state_dict``), same network and normalisation; empty for a single model
                   (:func:`make_ensemble`)
``domain``         what the model has seen, for predict's warnings (:mod:`crystensor.train.domain`):
                   training ``elements`` and pooled-feature ``features``; empty in checkpoints
                   written before crystensor recorded it
``meta``           free-form provenance: creation time, data store, command line, parent
                   checkpoint of a fine-tuned model; ``meta["split"]``: how ``split`` was made
                   (``method`` random or family, ``seed``, ``fractions``, ``source`` store or
                   recomputed; absent in checkpoints written before crystensor recorded it)
=================  ===========================================================================
"""

from __future__ import annotations

import copy
import datetime
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from crystensor.errors import InputError
from crystensor.io.atomic import atomic_open

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "FEATURIZATION_KEYS",
    "Checkpoint",
    "check_backbone",
    "check_featurization",
    "featurization_of",
    "library_versions",
    "load_checkpoint",
    "make_ensemble",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "crystensor-checkpoint"
CHECKPOINT_VERSION = 1

# Store attributes that decide how a structure becomes a graph; a model only fits graphs built
# with the same values.
FEATURIZATION_KEYS = (
    "cutoff",
    "auto_cutoff",
    "max_cutoff",
    "feature_set",
    "feature_dim",
    "feature_table_sha256",
)
# Keys that must agree between a checkpoint and a store (the table hash only warns: see
# crystensor.data.dataset).
_MUST_MATCH = ("cutoff", "feature_set", "feature_dim")


def library_versions() -> dict[str, str]:
    """Versions of crystensor and the libraries a model's numbers depend on."""
    import importlib.metadata as md

    import crystensor

    out = {"crystensor": crystensor.__version__}
    for name in ("torch", "e3nn", "torch_geometric", "pymatgen", "numpy"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "absent"
    return out


def featurization_of(store: Any) -> dict[str, Any]:
    """The :data:`FEATURIZATION_KEYS` attributes of a :class:`~crystensor.data.store.GraphStore`."""
    attrs = store.attrs
    out = {}
    for key in FEATURIZATION_KEYS:
        value = attrs[key]
        out[key] = value.item() if hasattr(value, "item") else value
    return out


def check_featurization(featurization: dict[str, Any], store: Any, what: str) -> None:
    """Refuse a store whose graphs were built differently from ``featurization``.

    Raises
    ------
    InputError
        Naming the differing attribute, both values, and the fix.
    """
    theirs = featurization_of(store)
    for key in _MUST_MATCH:
        if featurization.get(key) != theirs[key]:
            raise InputError(
                f"{store.path.name} was featurized with {key}={theirs[key]!r} but {what} "
                f"expects {key}={featurization.get(key)!r}; re-run crystensor featurize with "
                f"--cutoff {featurization.get('cutoff')}"
                if key == "cutoff"
                else f"{store.path.name} has {key}={theirs[key]!r} but {what} expects "
                f"{featurization.get(key)!r}; re-run crystensor featurize with this crystensor"
            )


def check_backbone(recorded: dict[str, Any] | None) -> None:
    """Refuse a model whose pretrained backbone file differs from the installed one.

    ``recorded`` is the checkpoint's ``featurization["backbone"]`` (None for native models).

    Raises
    ------
    InputError
        The backbone is not installed, or its file hash differs; names both versions.
    """
    if not recorded:
        return
    from crystensor.models.backbones import backbone_identity

    name = recorded.get("name", "?")
    have = backbone_identity(name)
    if have.get("sha256") != recorded.get("sha256"):
        trained = f"{recorded.get('package', 'its package')} {recorded.get('version', '?')}"
        raise InputError(
            f"the model was trained on backbone {name} from {trained} (file sha256 "
            f"{str(recorded.get('sha256'))[:12]}), but the installed one is "
            f"{have.get('version', '?')} (sha256 {str(have.get('sha256'))[:12]}); install the "
            "version the model was trained with"
        )


@dataclass
class Checkpoint:
    """The contents of a checkpoint file (see the module docstring for each field)."""

    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    featurization: dict[str, Any]
    target: str
    normalization: dict[str, Any] = field(default_factory=dict)
    split: dict[str, list[str]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)
    training: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    domain: dict[str, Any] = field(default_factory=dict)
    members: list[dict[str, torch.Tensor]] = field(default_factory=list)

    @property
    def n_members(self) -> int:
        """Networks in the checkpoint: 1, or the size of the ensemble."""
        return max(1, len(self.members))

    @property
    def model_config(self):
        """The :class:`~crystensor.models.ModelConfig` of the network."""
        from crystensor.models import config_from_dict

        return config_from_dict(self.config)

    @property
    def kind(self):
        """The :class:`~crystensor.tensors.kinds.TensorKind` the model predicts."""
        from crystensor.nn.readout import resolve_target

        return resolve_target(self.target)

    @property
    def arch(self) -> str:
        return str(self.config["arch"])

    def build_model(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        """The network with its weights loaded, in eval mode."""
        from crystensor.models import build_model

        check_backbone(self.featurization.get("backbone"))
        model = build_model(self.model_config)
        model.load_state_dict(self.state_dict)
        if self.featurization.get("prior"):
            model.prior_identity = dict(self.featurization["prior"])
        return model.to(device=device, dtype=dtype).eval()

    def build_members(
        self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> list[Any]:
        """Every network of the checkpoint (one for a single model), weights loaded, eval mode."""
        from crystensor.models import build_model

        check_backbone(self.featurization.get("backbone"))
        models = []
        for state in self.members or [self.state_dict]:
            model = build_model(self.model_config)
            model.load_state_dict(state)
            if self.featurization.get("prior"):
                model.prior_identity = dict(self.featurization["prior"])
            models.append(model.to(device=device, dtype=dtype).eval())
        return models

    @classmethod
    def from_model(cls, model: Any, featurization: dict[str, Any], **fields: Any) -> Checkpoint:
        """A checkpoint of ``model``'s current config and weights (copied to the CPU)."""
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        featurization = dict(featurization)
        identity = getattr(model.backbone.embedding, "identity", None)
        if identity is not None:
            featurization["backbone"] = dict(identity)
        prior = getattr(model, "prior_identity", None)
        if prior is not None:
            featurization["prior"] = dict(prior)
        return cls(
            config=model.config.to_dict(),
            state_dict=state,
            featurization=featurization,
            target=model.config.target,
            **fields,
        )

    def to_payload(self) -> dict[str, Any]:
        """The dict written by :func:`save_checkpoint`."""
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "config": self.config,
            "state_dict": self.state_dict,
            "featurization": self.featurization,
            "target": self.target,
            "normalization": self.normalization,
            "split": self.split,
            "metrics": self.metrics,
            "versions": self.versions,
            "training": self.training,
            "meta": self.meta,
            "domain": self.domain,
            "members": self.members,
        }

    def without_training_state(self) -> Checkpoint:
        """A copy without optimizer and RNG state (what a shipped model needs)."""
        out = copy.copy(self)
        out.training = {
            k: v for k, v in self.training.items() if k in ("train_config", "epoch", "history")
        }
        return out


def save_checkpoint(checkpoint: Checkpoint, path: str | os.PathLike) -> Path:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, then rename)."""
    path = Path(path)
    payload = checkpoint.to_payload()
    payload["meta"] = {
        **payload["meta"],
        "saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_open(path, "wb") as fh:
        torch.save(payload, fh)
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises
    ------
    InputError
        The file is missing, not a torch file, not a crystensor checkpoint, or written by a
        newer crystensor.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(
            f"{path} is a directory; pass a checkpoint file such as {path / 'best.pt'}"
        )
    if not path.exists():
        raise InputError(f"checkpoint {path} does not exist; check the path")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{path} is not a readable checkpoint ({first[:120]}); pass a best.pt or last.pt "
            "written by crystensor train"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise InputError(
            f"{path} is a torch file but not a crystensor checkpoint; pass a best.pt or last.pt "
            "written by crystensor train"
        )
    version = int(payload.get("format_version", 0))
    if version > CHECKPOINT_VERSION:
        raise InputError(
            f"{path} has checkpoint format {version}, newer than this crystensor reads "
            f"({CHECKPOINT_VERSION}); upgrade crystensor"
        )
    try:
        return Checkpoint(
            config=payload["config"],
            state_dict=payload["state_dict"],
            featurization=payload["featurization"],
            target=payload["target"],
            normalization=payload.get("normalization", {}),
            split=payload.get("split", {}),
            metrics=payload.get("metrics", {}),
            versions=payload.get("versions", {}),
            training=payload.get("training", {}),
            meta=payload.get("meta", {}),
            domain=payload.get("domain", {}),
            members=payload.get("members", []),
        )
    except KeyError as exc:
        raise InputError(
            f"{path} lacks the checkpoint field {exc.args[0]!r}; it is damaged"
        ) from exc


def make_ensemble(checkpoints: list[Checkpoint], meta: dict[str, Any] | None = None) -> Checkpoint:
    """One checkpoint holding the networks of ``checkpoints`` (e.g. the same run, other seeds).

    The first checkpoint gives everything but the weights (featurization, split, metrics,
    domain, ...); the others must have the same network configuration, target, featurization,
    target normalisation and split, so that their outputs can be averaged.

    Raises
    ------
    InputError
        Fewer than two checkpoints, or one that differs in any of the above (named).
    """
    if len(checkpoints) < 2:
        raise InputError("an ensemble needs at least two checkpoints")
    first = checkpoints[0]

    def facts(checkpoint: Checkpoint, name: str) -> Any:
        if name == "config":  # with the defaults of fields added since it was written
            return checkpoint.model_config.to_dict()
        return _comparable(getattr(checkpoint, name))

    for i, other in enumerate(checkpoints[1:], 2):
        for name in ("config", "target", "featurization", "normalization", "split"):
            if facts(other, name) != facts(first, name):
                raise InputError(
                    f"checkpoint {i} differs from the first in its {name}; ensemble members "
                    "must be the same network trained on the same data (other seeds)"
                )
    out = copy.copy(first).without_training_state()
    states = []
    for checkpoint in checkpoints:
        states.extend(checkpoint.members or [checkpoint.state_dict])
    out.members = states
    out.state_dict = states[0]
    out.meta = {**first.meta, **(meta or {}), "ensemble": {"members": len(states)}}
    return out


def _comparable(value: Any) -> Any:
    """Tensors as lists, so that two loaded dicts compare by value."""
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_comparable(v) for v in value]
    return value
