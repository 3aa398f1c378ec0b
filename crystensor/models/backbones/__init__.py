"""Backbones by name: the native ones, built from a model config, and pretrained potentials.

A backbone turns a structure graph into node features with declared irreps. The native
backbones (SEGNN, SEConv, SETransformer) are built and trained by
:func:`crystensor.models.build_model`; a pretrained backbone is a universal interatomic potential
loaded from an installed package (SevenNet-0 and SevenNet-l3i5 from ``sevenn``,
:class:`~crystensor.models.backbones.sevennet.PretrainedBackbone`) and identified by its name, the
package version and the sha256 of its checkpoint file.

>>> BACKBONES
('native', 'sevennet-0', 'sevennet-l3i5')
>>> backbone_identity("native")
{'name': 'native'}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crystensor.errors import InputError

if TYPE_CHECKING:
    import torch

    from crystensor.models.backbones.sevennet import PretrainedBackbone

__all__ = [
    "BACKBONES",
    "PRETRAINED_BACKBONES",
    "available_backbones",
    "backbone_identity",
    "load_backbone",
    "register_backbone",
]

PRETRAINED_BACKBONES = ("sevennet-0", "sevennet-l3i5")
BACKBONES = ("native", *PRETRAINED_BACKBONES)

# Backbones added at run time: name -> (load, identity).
_REGISTERED: dict[str, tuple[Callable[[], torch.nn.Module], Callable[[], dict[str, Any]]]] = {}


def register_backbone(
    name: str,
    load: Callable[[], torch.nn.Module],
    identity: Callable[[], dict[str, Any]],
) -> None:
    """Make another potential loadable by name (a plug-in, or a small stand-in in tests).

    ``load()`` returns a module with ``irreps_out``, ``cutoff``, ``set_trainable(which)`` and
    ``forward(atomic_numbers, edge_index, edge_vec, batch, num_graphs)`` like
    :class:`~crystensor.models.backbones.sevennet.PretrainedBackbone` (it must give the same
    weights every time: frozen weights are not saved); ``identity()`` returns at least
    ``name`` and ``sha256``. Registering a name again replaces it.
    """
    if name in BACKBONES:
        raise ValueError(f"{name!r} is a built-in backbone and cannot be replaced")
    _REGISTERED[name] = (load, identity)


def available_backbones() -> tuple[str, ...]:
    """Every name :func:`load_backbone` and the ``--backbone`` options accept."""
    return (*BACKBONES, *_REGISTERED)


def _check(name: str) -> None:
    if name not in BACKBONES and name not in _REGISTERED:
        known = (*BACKBONES, *_REGISTERED)
        raise InputError(f"unknown backbone {name!r}; choose one of {', '.join(known)}")


def load_backbone(name: str) -> PretrainedBackbone:
    """Load pretrained backbone ``name`` (in eval mode, float32, on the CPU).

    Each call builds a new module (fine-tuning changes its weights). Nothing is downloaded: the
    checkpoint ships inside the installed package.

    Raises
    ------
    InputError
        Unknown name, ``native`` (built by :func:`crystensor.models.build_model` instead), or the
        package / its checkpoint not installed.
    """
    _check(name)
    if name in _REGISTERED:
        return _REGISTERED[name][0]()
    if name == "native":
        raise InputError(
            "the native backbone is built from a model config by crystensor.models.build_model; "
            f"load_backbone loads the pretrained ones: {', '.join(PRETRAINED_BACKBONES)}"
        )
    from crystensor.models.backbones.sevennet import PretrainedBackbone

    return PretrainedBackbone.from_checkpoint(name)


def backbone_identity(name: str) -> dict[str, Any]:
    """What identifies backbone ``name``, to record in checkpoints and caches.

    Returns
    -------
    dict
        ``{"name": "native"}`` for the native backbone; for a pretrained one ``name``,
        ``package``, ``version`` (of the package), ``checkpoint`` (file name inside the
        package) and ``sha256`` (of the checkpoint file), without loading the network.
    """
    _check(name)
    if name in _REGISTERED:
        return dict(_REGISTERED[name][1]())
    if name == "native":
        return {"name": "native"}
    from crystensor.models.backbones.sevennet import identity

    return identity(name)
