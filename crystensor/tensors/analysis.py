"""Everything ``crystensor decompose`` reports about one tensor, as a JSON-ready dictionary.

One library call (:func:`analyse_tensor`) so that the CLI only parses, calls and renders, and a
Python user gets the same numbers.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from crystensor.tensors import harmonic, properties, young
from crystensor.tensors.kinds import TensorKind, get_kind, get_property

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["analyse_tensor", "derived_properties"]

log = logging.getLogger(__name__)

# Whether a target's dielectric tensor is the electronic (high-frequency) one, which alone has
# a meaningful refractive index; a target not listed (or none) keeps the index.
_ELECTRONIC_TARGET = {"dielectric": False, "dielectric-electronic": True}


def _elastic(tensor: np.ndarray, options: dict[str, Any]) -> properties.ElasticProperties:
    return properties.elastic_properties(
        tensor, structure=options["structure"], crystal_system=options["crystal_system"]
    )


def _dielectric(tensor: np.ndarray, options: dict[str, Any]) -> properties.DielectricProperties:
    electronic = _ELECTRONIC_TARGET.get(options["target"], True)
    return properties.dielectric_properties(tensor, electronic=electronic)


def _piezoelectric(
    tensor: np.ndarray, options: dict[str, Any]
) -> properties.PiezoelectricProperties:
    return properties.piezoelectric_properties(tensor, elastic=options["elastic"])


_DERIVED = {
    "dielectric": _dielectric,
    "piezoelectric": _piezoelectric,
    "elastic": _elastic,
}


def derived_properties(
    tensor: np.ndarray,
    kind: TensorKind | str,
    *,
    target: str | None = None,
    structure: Structure | None = None,
    crystal_system: str | None = None,
    elastic: np.ndarray | None = None,
) -> dict[str, Any]:
    """Derived physical quantities of a tensor of ``kind``, as plain JSON with ``"units"``.

    Elastic: moduli, compliance, Young's modulus extremes, Born stability and its conditions
    (:func:`~crystensor.tensors.properties.elastic_properties`); dielectric: principal values,
    average and refractive index; piezoelectric: eij_max and, with ``elastic``, d = e S.

    Parameters
    ----------
    tensor : array, shape ``kind.cartesian_shape`` (or the Voigt shape)
        In ``kind.units``.
    kind : TensorKind or str
    target : str, optional
        The property the tensor is (a name of :data:`~crystensor.tensors.kinds.PROPERTIES`
        of this kind). The static ``"dielectric"`` target has no ``refractive_index``: it is
        meaningful only for the electronic tensor (``"dielectric-electronic"``); without a
        target it is reported.
    structure : pymatgen Structure, optional
        Elastic only: adds density, sound velocities, Debye temperature and Young's modulus
        along the lattice vectors (the tensor in the structure's Cartesian frame).
    crystal_system : str, optional
        Elastic only: selects the Born stability conditions of that crystal system.
    elastic : array ``(6, 6)`` or ``(3, 3, 3, 3)``, optional
        Piezoelectric only: the elastic stiffness (GPa, same frame) for d = e S.

    Returns
    -------
    dict
        JSON-serialisable; ``{}`` for a kind without derived properties (scalars).

    Raises
    ------
    ValueError
        If ``target`` is unknown or of another kind, or ``elastic`` is given for a tensor that
        is not piezoelectric.
    """
    kind = get_kind(kind) if isinstance(kind, str) else kind
    if target is not None and get_property(target).kind != kind.name:
        raise ValueError(
            f"target {target!r} holds {get_property(target).kind} tensors, not {kind.name}"
        )
    if elastic is not None and kind.name != "piezoelectric":
        raise ValueError(
            f"an elastic tensor is used only for piezoelectric tensors (d = e S), not for a "
            f"{kind.name} tensor"
        )
    if kind.name not in _DERIVED:
        return {}
    options = {
        "target": target,
        "structure": structure,
        "crystal_system": crystal_system,
        "elastic": elastic,
    }
    return _DERIVED[kind.name](tensor, options).as_dict()


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
    group: Any,
    symprec: float,
    options: dict[str, Any],
) -> dict[str, Any]:
    from crystensor.tensors import symmetry

    projected = symmetry.project_to_point_group(tensor, group)
    elastic = options.get("elastic")
    if elastic is not None:  # the projected tensors with the projected stiffness
        options = {**options, "elastic": symmetry.project_to_point_group(elastic, group)}
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
        "projected_properties": derived_properties(projected, kind, **options),
    }


def analyse_tensor(
    tensor: np.ndarray,
    kind: TensorKind,
    *,
    structure: Structure | None = None,
    symprec: float = 0.01,
    angle_tolerance: float | None = None,
    target: str | None = None,
    elastic: np.ndarray | None = None,
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
        symmetry violation and the tensor projected onto the point group, and gives the
        derived properties the structure (elastic: density, sound velocities, Debye
        temperature, E along a, b, c) and its crystal system (the Born conditions).
    symprec, angle_tolerance : float
        Tolerances (Angstrom, degrees) for finding the point group
        (:func:`~crystensor.tensors.symmetry.point_group_of`: moyo without an angle tolerance,
        spglib with one).
    target : str, optional
        The property the tensor is (e.g. ``"dielectric"`` or ``"dielectric-electronic"``);
        see :func:`derived_properties`.
    elastic : array ``(3, 3, 3, 3)`` or ``(6, 6)``, optional
        Elastic stiffness (GPa) in the same frame, for a piezoelectric tensor: adds the strain
        constants d = e S. With a structure, the projected properties use the stiffness
        projected onto the same point group.

    Returns
    -------
    dict
        JSON-serialisable; the keys are documented by ``crystensor decompose --help``.
    """
    t = np.asarray(tensor, dtype=float)
    sym = kind.symmetrize_indices(t)
    group = None
    if structure is not None:
        from crystensor.tensors import symmetry

        group = symmetry.point_group_of(structure, symprec=symprec, angle_tolerance=angle_tolerance)
    if elastic is not None:
        elastic_kind = get_kind("elastic")
        elastic = np.asarray(elastic, dtype=float)
        if elastic.shape == elastic_kind.voigt_shape:
            elastic = elastic_kind.from_voigt(elastic)
        if elastic.shape != elastic_kind.cartesian_shape:
            raise ValueError(
                f"the elastic tensor must be 6x6 (Voigt) or 3x3x3x3, got shape {elastic.shape}"
            )
        elastic = elastic_kind.symmetrize_indices(elastic)
    options = {
        "target": target,
        "structure": structure,
        "crystal_system": None if group is None else group.crystal_system,
        "elastic": elastic,
    }
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
        "properties": derived_properties(sym, kind, **options),
    }
    if structure is not None:
        result["symmetry"] = _symmetry_report(sym, kind, structure, group, symprec, options)
    return result
