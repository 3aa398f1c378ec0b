"""The models shipped with crystensor: one checkpoint ``<target>.pt`` and a model card
``<target>.md`` per target, in this folder (installed as package data).

Only the standard library is imported here, so the registry can be asked what exists without
loading torch.

>>> sorted(SHIPPED_TARGETS)
['dielectric', 'dielectric-electronic', 'elastic', 'piezoelectric']
"""

from __future__ import annotations

from pathlib import Path

from crystensor.errors import InputError

__all__ = [
    "PRETRAINED_DIR",
    "SELECTABLE_MODELS",
    "SHIPPED_TARGETS",
    "available",
    "model_card",
    "selectable_model",
    "shipped_model",
]

PRETRAINED_DIR = Path(__file__).resolve().parent
"""The folder holding the shipped checkpoints and model cards."""

SHIPPED_TARGETS: tuple[str, ...] = (
    "elastic",
    "dielectric",
    "dielectric-electronic",
    "piezoelectric",
)
"""Targets for which a default model is (or will be) shipped."""

SELECTABLE_MODELS: dict[str, str] = {"elastic-prior": "elastic"}
"""Shipped models that are not a target's default, chosen by name with ``predict --model
NAME``: name -> target. Their files are ``NAME.pt`` and ``NAME.md`` here."""


def selectable_model(name: str) -> Path | None:
    """Path of the shipped selectable model ``name`` (None if ``name`` is not one or its file is
    not installed)."""
    if name not in SELECTABLE_MODELS:
        return None
    path = PRETRAINED_DIR / f"{name}.pt"
    return path if path.is_file() else None


def _check_target(target: str) -> str:
    if target not in SHIPPED_TARGETS:
        raise InputError(
            f"no shipped model can exist for target {target!r}; choose one of "
            f"{', '.join(SHIPPED_TARGETS)}, or pass --model CKPT"
        )
    return target


def shipped_model(target: str) -> Path:
    """Path of the shipped checkpoint for ``target``.

    Raises
    ------
    InputError
        ``target`` is not a shipped target, or its checkpoint is not installed (yet).
    """
    path = PRETRAINED_DIR / f"{_check_target(target)}.pt"
    if not path.is_file():
        raise InputError(
            f"no shipped model for target {target} yet; pass --model CKPT (train one with "
            "crystensor train)"
        )
    return path


def model_card(target: str) -> str | None:
    """The Markdown model card of the shipped model for ``target`` (or of the selectable model
    of that name), or None if there is none."""
    name = target if target in SELECTABLE_MODELS else _check_target(target)
    path = PRETRAINED_DIR / f"{name}.md"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def available() -> dict[str, Path]:
    """The shipped checkpoints that are installed, by target."""
    return {
        t: PRETRAINED_DIR / f"{t}.pt"
        for t in SHIPPED_TARGETS
        if (PRETRAINED_DIR / f"{t}.pt").is_file()
    }
