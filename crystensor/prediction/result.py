"""What :func:`~crystensor.prediction.predict_results` returns for one structure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from crystensor.errors import InputError
from crystensor.tensors.kinds import TensorKind

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["Prediction"]

# The pymatgen class that holds each kind (module, class name).
_PYMATGEN_CLASSES = {
    "elastic": ("pymatgen.analysis.elasticity", "ElasticTensor"),
    "piezoelectric": ("pymatgen.analysis.piezo", "PiezoTensor"),
    "dielectric": ("pymatgen.core.tensors", "Tensor"),
}


@dataclass
class Prediction:
    """The prediction for one structure (or why there is none).

    Attributes
    ----------
    name : str
        Where the structure came from: the file (with ``[i]`` for frame ``i`` of a multi-frame
        file), ``stdin``, or the formula of an in-memory structure.
    target : str
        Property predicted (``"elastic"``, ``"dielectric-electronic"``, ...).
    kind : TensorKind
    structure : pymatgen Structure or None
    raw : array ``kind.cartesian_shape`` or None
        The network's output as a Cartesian tensor in the frame of ``structure``, float64, in
        ``kind.units``.
    symmetrized : array ``kind.cartesian_shape`` or None
        ``raw`` projected onto the point group (exact zeros and equalities).
    symmetrize : bool
        Whether :attr:`tensor` (what is reported) starts from ``symmetrized`` (True) or ``raw``.
    physical : bool
        Whether :attr:`tensor` is floored to a physically valid tensor (``valid``).
    valid : array ``kind.cartesian_shape`` or None
        ``symmetrized`` (or ``raw``) made physically valid, projected onto the point group
        again when it was symmetrized (:func:`crystensor.tensors.physical.make_physical`).
    adjustment : dict or None
        What the floor did (``changed``, ``quantity``, ``floor``, ``smallest_before``,
        ``relative_change``); None for piezoelectric tensors, which have no floor.
    warnings : list of dict
        ``{"code", "message"}`` per reason to distrust the prediction (:mod:`crystensor.domain`).
    feature_distance : float or None
        Distance of the structure's pooled features from the nearest training structure (see
        :class:`crystensor.domain.FeatureDomain`); None if the model has no reference.
    std : array ``kind.cartesian_shape`` or None
        For an ensemble: the standard deviation of the members' tensors (each projected onto
        the point group when ``symmetrize``), per component, in ``kind.units``.
    uncertainty : float or None
        For an ensemble: ``||std|| / ||tensor||`` (Frobenius norms), one relative figure; 0 for
        a tensor that symmetry makes zero (no spread either), None for a zero tensor with a
        spread (members that cancel).
    elastic : array ``(3, 3, 3, 3)`` or None
        For a piezoelectric prediction with an elastic model: the elastic tensor (GPa) that
        gave the strain constants d = e S in ``properties``.
    point_group, crystal_system, space_group : str or None
        Hermann-Mauguin symbols and lowercase system, found with ``symprec``.
    space_group_number : int or None
    symmetry_violation : float or None
        How far ``raw`` is from invariant: max change under the group / max component.
    properties : dict
        Derived properties of :attr:`tensor` (:func:`crystensor.tensors.analysis.
        derived_properties`: moduli, eigenvalues, eij_max, ... with their ``units``).
    error : str or None
        Why this structure could not be predicted; everything else is then None / empty.
    """

    name: str
    target: str
    kind: TensorKind
    structure: Structure | None = None
    raw: np.ndarray | None = None
    symmetrized: np.ndarray | None = None
    symmetrize: bool = True
    physical: bool = True
    valid: np.ndarray | None = None
    adjustment: dict[str, Any] | None = None
    warnings: list[dict[str, str]] = field(default_factory=list)
    feature_distance: float | None = None
    elastic: np.ndarray | None = None
    std: np.ndarray | None = None
    uncertainty: float | None = None
    point_group: str | None = None
    crystal_system: str | None = None
    space_group: str | None = None
    space_group_number: int | None = None
    symmetry_violation: float | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def tensor(self) -> np.ndarray | None:
        """The reported Cartesian tensor: ``valid``, or ``symmetrized`` / ``raw`` without the
        physical floor (see ``physical`` and ``symmetrize``)."""
        if self.physical and self.valid is not None:
            return self.valid
        return self.symmetrized if self.symmetrize else self.raw

    @property
    def voigt(self) -> np.ndarray | None:
        """:attr:`tensor` in Voigt form (3x3, 3x6 or 6x6; xx, yy, zz, yz, xz, xy; no 2s)."""
        return None if self.tensor is None else self.kind.to_voigt(self.tensor)

    @property
    def formula(self) -> str | None:
        return None if self.structure is None else self.structure.composition.reduced_formula

    def to_pymatgen(self) -> Any:
        """:attr:`tensor` as ``ElasticTensor`` (GPa), ``PiezoTensor`` (C/m^2) or ``Tensor``."""
        if self.tensor is None:
            raise InputError(f"{self.name}: no prediction ({self.error})")
        import importlib

        module, name = _PYMATGEN_CLASSES[self.kind.name]
        return getattr(importlib.import_module(module), name)(self.tensor)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON; ``crystensor decompose`` reads it (``kind`` + ``tensor``)."""
        if not self.ok:
            return {"source": self.name, "target": self.target, "error": self.error}
        return {
            "source": self.name,
            "formula": self.formula,
            "target": self.target,
            "kind": self.kind.name,
            "units": self.kind.units,
            "symmetrized": self.symmetrize,
            "physical": self.physical,
            "tensor": self.tensor.tolist(),
            "voigt": self.voigt.tolist(),
            "raw_voigt": self.kind.to_voigt(self.raw).tolist(),
            "point_group": self.point_group,
            "crystal_system": self.crystal_system,
            "space_group": self.space_group,
            "space_group_number": self.space_group_number,
            "symmetry_violation": self.symmetry_violation,
            "adjustment": self.adjustment,
            "warnings": self.warnings,
            "feature_distance": self.feature_distance,
            **(
                {}
                if self.std is None
                else {
                    "voigt_std": self.kind.to_voigt(self.std).tolist(),
                    "uncertainty": self.uncertainty,
                }
            ),
            **({} if self.elastic is None else {"elastic_voigt": _voigt66(self.elastic)}),
            "properties": self.properties,
            "structure": self.structure.as_dict(),
        }


def _voigt66(elastic: np.ndarray) -> list:
    from crystensor.tensors.kinds import get_kind

    return get_kind("elastic").to_voigt(elastic).tolist()
