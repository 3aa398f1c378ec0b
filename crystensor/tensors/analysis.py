"""Everything ``crystensor decompose`` reports about one tensor, as a JSON-ready dictionary.

One library call (:func:`analyse_tensor`) so that the CLI only parses, calls and renders, and a
Python user gets the same numbers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from crystensor.tensors import harmonic, properties, young
from crystensor.tensors.kinds import TensorKind

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["analyse_tensor", "derived_properties"]

log = logging.getLogger(__name__)

_DERIVED = {
    "dielectric": properties.dielectric_properties,
    "piezoelectric": properties.piezoelectric_properties,
    "elastic": properties.elastic_properties,
}


def derived_properties(tensor: np.ndarray, kind: TensorKind) -> dict[str, Any]:
    """Derived physical quantities of a tensor of ``kind`` (moduli, eigenvalues, eij_max, ...)."""
    return _DERIVED[kind.name](tensor).as_dict() if kind.name in _DERIVED else {}


def _explicit_view(tensor: np.ndarray) -> tuple[list[dict], float]:
    from crystensor.tensors import spherical

    parts = young.split(tensor)
    rebuilt = young.reconstruct(parts, tensor.ndim)
    rows = []
    for part in parts:
        value = np.asarray(part.value)
        row = {
            "name": part.name,
            "description": part.description,
            "l": part.l,
            "rank": value.ndim,
            "norm": float(np.linalg.norm(value)),
            "value": value.tolist(),
        }
        if value.ndim:
            # Racah-normalised, Condon-Shortley phase (paper's Appendix B/C): complex as [re, im]
            cplx = spherical.complex_harmonic_components(value, part.l)
            row["complex_sh_components"] = [[float(c.real), float(c.imag)] for c in cplx]
            row["real_sh_components"] = spherical.real_harmonic_components(value, part.l).tolist()
        rows.append(row)
    return rows, _relative(rebuilt, tensor)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b) / norm) if norm else float(np.linalg.norm(a - b))


def _symmetry_report(
    tensor: np.ndarray,
    kind: TensorKind,
    structure: Structure,
    symprec: float,
    angle_tol: float | None,
) -> dict[str, Any]:
    from crystensor.tensors import symmetry

    group = symmetry.point_group_of(structure, symprec=symprec, angle_tolerance=angle_tol)
    projected = symmetry.project_to_point_group(tensor, group)
    return {
        "formula": structure.composition.reduced_formula,
        "space_group": group.space_group_symbol,
        "space_group_number": group.space_group_number,
        "point_group": group.symbol,
        "crystal_system": group.crystal_system,
        "symprec": symprec,
        "violation": symmetry.symmetry_violation(tensor, group),
        "projection_residual": symmetry.projection_residual(tensor, group),
        "independent_components": symmetry.independent_components(kind, group),
        "projected_voigt": kind.to_voigt(projected).tolist(),
        "projected_properties": derived_properties(projected, kind),
    }


def analyse_tensor(
    tensor: np.ndarray,
    kind: TensorKind,
    *,
    structure: Structure | None = None,
    symprec: float = 0.01,
    angle_tolerance: float | None = None,
) -> dict[str, Any]:
    """Harmonic decomposition, explicit view, derived properties and (optionally) symmetry.

    Parameters
    ----------
    tensor : array, shape ``kind.cartesian_shape``
        Full Cartesian tensor in ``kind.units``; a part that breaks the kind's index symmetry is
        measured and reported (``index_asymmetry``, ``asymmetric_part``), and the analysis uses
        the index-symmetric part.
    kind : TensorKind
    structure : pymatgen Structure, optional
        The crystal whose Cartesian frame the tensor is expressed in; adds the point group, the
        symmetry violation and the tensor projected onto the point group.
    symprec, angle_tolerance : float
        Tolerances (Angstrom, degrees) for finding the point group
        (:func:`~crystensor.tensors.symmetry.point_group_of`: moyo without an angle tolerance,
        spglib with one).

    Returns
    -------
    dict
        JSON-serialisable; the keys are documented by ``crystensor decompose --help``.
    """
    t = np.asarray(tensor, dtype=float)
    sym = kind.symmetrize_indices(t)
    irreps = harmonic.to_irreps(sym, kind)
    explicit, explicit_error = _explicit_view(sym)
    result: dict[str, Any] = {
        "kind": kind.name,
        "units": kind.units,
        "irreps": kind.irreps,
        "voigt": kind.to_voigt(sym).tolist(),
        "index_asymmetry": kind.index_asymmetry(t),
        "asymmetric_part": (t - sym).tolist(),
        "irreps_components": irreps.tolist(),
        "parts": harmonic.parts_report(sym, kind),
        "explicit": explicit,
        "reconstruction_error": {
            "irreps": _relative(harmonic.from_irreps(irreps, kind), sym),
            "explicit": explicit_error,
        },
        "properties": derived_properties(sym, kind),
    }
    if structure is not None:
        result["symmetry"] = _symmetry_report(sym, kind, structure, symprec, angle_tolerance)
    return result
