"""Irreps layouts and the build-time checks every block uses.

Every block in :mod:`crystensor.nn` declares ``irreps_in`` and ``irreps_out`` (e3nn
:class:`~e3nn.o3.Irreps`). A feature tensor with irreps ``I`` has shape ``(..., I.dim)``; under
an orthogonal matrix ``R`` (rotations *and* reflections) it transforms as
``x -> x @ D_I(R).T`` with ``D_I = I.D_from_matrix(R)``. Blocks are chained only after
:func:`check_irreps` confirmed that one block's output layout is the next block's input layout,
so a wiring mistake fails when the model is built, not as a silent wrong answer.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from e3nn import o3

from crystensor.tensors.kinds import KINDS, TensorKind

__all__ = [
    "EquivariantModule",
    "IrrepsMismatchError",
    "check_irreps",
    "kinds_irreps",
    "spherical_irreps",
]


class IrrepsMismatchError(ValueError):
    """Two blocks were wired together with different irreps layouts."""


class EquivariantModule(torch.nn.Module):
    """Base class of the equivariant blocks: they declare ``irreps_in`` and ``irreps_out``.

    Subclasses set both attributes in ``__init__``; :func:`check_irreps` compares them when
    blocks are chained.
    """

    irreps_in: o3.Irreps
    irreps_out: o3.Irreps

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}"


def check_irreps(expected: o3.Irreps | str, actual: o3.Irreps | str, where: str) -> None:
    """Raise :class:`IrrepsMismatchError` unless two layouts hold the same data.

    Layouts are compared after merging neighbouring equal irreps (``4x0e+4x0e == 8x0e``), which
    is exactly when the two feature vectors are indexed identically.

    Parameters
    ----------
    expected, actual : Irreps or str
        What the receiving block declares and what it is given.
    where : str
        Names the receiving block in the message.
    """
    exp, act = o3.Irreps(expected).simplify(), o3.Irreps(actual).simplify()
    if exp != act:
        raise IrrepsMismatchError(
            f"{where}: expects irreps {exp} but is given {act}; "
            "the previous block's irreps_out must equal this block's irreps_in"
        )


def spherical_irreps(channels: int, lmax: int) -> o3.Irreps:
    """``channels`` copies of each spherical-harmonic irrep up to ``lmax``: ``Cx0e+Cx1o+Cx2e+...``.

    These are the "natural" parities :math:`(-1)^l` of polar features (positions, edge
    directions); products of them produce the other parities where the output needs them.
    """
    if channels < 1 or lmax < 0:
        raise ValueError(f"channels must be >= 1 and lmax >= 0, got {channels} and {lmax}")
    return o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])


def kinds_irreps(channels: int, lmax: int, kinds: Iterable[TensorKind] | None = None) -> o3.Irreps:
    """``channels`` copies of every distinct irrep with ``l <= lmax`` that a tensor kind needs.

    With all registered kinds (the default) and ``lmax = 4`` this is
    ``Cx0e+Cx1o+Cx2o+Cx2e+Cx3o+Cx4e``: every head (dielectric, piezoelectric, elastic, scalar)
    can read its irreps off it, so one backbone serves every target (transfer learning).
    ``0e`` is always included.
    """
    if channels < 1 or lmax < 0:
        raise ValueError(f"channels must be >= 1 and lmax >= 0, got {channels} and {lmax}")
    kinds = KINDS.values() if kinds is None else kinds
    found = {o3.Irrep("0e")}
    for kind in kinds:
        found |= {mul_ir.ir for mul_ir in o3.Irreps(kind.irreps) if mul_ir.ir.l <= lmax}
    return o3.Irreps([(channels, ir) for ir in sorted(found)])
