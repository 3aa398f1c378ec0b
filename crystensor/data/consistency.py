"""From source entries to dataset records: checks, frame consistency and symmetrisation.

A source (:mod:`crystensor.data.sources`) yields :class:`~crystensor.data.sources.RawEntry`
objects whose tensor is already in the Cartesian frame of their structure, and
:class:`~crystensor.data.sources.Rejected` ones for rows it could not read. This module turns the
entries into :class:`~crystensor.data.records.Record` objects and drops, with a reason, every
entry that is not fit for training:

=============================  =================================================================
reason (category)              when
=============================  =================================================================
``duplicate id``               an earlier entry had the same id (the first one is kept)
``wrong shape``                the value is not a ``(3,)*rank`` tensor (or not one number)
``non-finite value``           NaN or infinity in the value
``not a structure``            the entry carries no pymatgen ``Structure``
``not periodic``               no periodic 3D cell (pbc off, zero volume, NaN coordinates)
``disordered structure``       partial occupancies
``symmetry analysis failed``   spglib finds no space group (tensor targets only)
``index asymmetry``            the tensor breaks its kind's index symmetry by more than the
                               tolerance, ``|T - S(T)| / |T|`` (Frobenius)
``symmetry violation``         ``v(T) > tolerance`` with the violation of the data README,
                               ``v(T) = max_g max_a |(g.T)_a - T_a| / max_a |T_a|``
=============================  =================================================================

A tensor that passes is stored symmetrised: first over its kind's index permutations ``S``,
then projected onto the point group ``G`` of its structure,

.. math::

    T_{\\text{stored}} = \\frac{1}{|G|} \\sum_{g \\in G} g \\cdot S(T),

and ``v(T)``, measured on the tensor *before* any projection, is stored as ``consistency``.
Scalar targets only get the duplicate, value and structure checks (no symmetry analysis, so their
``symmetry`` is None: spglib would dominate the import time of large scalar sets).

Every reason is written ``"<category>: <detail>"``; :class:`ConsistencyReport` counts the
categories.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from crystensor.data.records import Record
from crystensor.data.sources import RawEntry, Rejected
from crystensor.errors import InputError
from crystensor.tensors.kinds import Property, get_property

if TYPE_CHECKING:
    from crystensor.tensors.symmetry import PointGroup

__all__ = [
    "DEFAULT_TOLERANCE",
    "ConsistencyChecker",
    "ConsistencyReport",
    "check_entries",
    "reason_category",
]

logger = logging.getLogger(__name__)

#: Largest accepted relative symmetry violation (5 %: DFT noise is 1-2 % at most).
DEFAULT_TOLERANCE = 0.05

DUPLICATE_ID = "duplicate id"
WRONG_SHAPE = "wrong shape"
NON_FINITE = "non-finite value"
NOT_A_STRUCTURE = "not a structure"
NOT_PERIODIC = "not periodic"
DISORDERED = "disordered structure"
NO_SYMMETRY = "symmetry analysis failed"
INDEX_ASYMMETRY = "index asymmetry"
VIOLATION = "symmetry violation"
UNPHYSICAL = "unphysical value"

#: ``Record.meta["label"]`` of entries whose value is the sorted principal values of a
#: symmetric rank-2 tensor (no frame), not the tensor itself.
PRINCIPAL_VALUES = "principal_values"
# principal values that must be equal, by crystal system (indices into the sorted values):
# all three for cubic, two (either pair) for the uniaxial systems
_DEGENERATE = {
    "cubic": "all",
    "hexagonal": "pair",
    "trigonal": "pair",
    "tetragonal": "pair",
}


def reason_category(reason: str) -> str:
    """The category of a rejection reason, the text before its first colon.

    >>> reason_category("symmetry violation: 23.1 % > 5 % under point group mm2")
    'symmetry violation'
    """
    return reason.split(":", 1)[0].strip()


@dataclass
class ConsistencyReport:
    """What happened to the entries of one import.

    Attributes
    ----------
    target : str
        Property name.
    tolerance, symprec : float
        The settings the checks ran with.
    read : int
        Entries seen (records and rejections of the source included).
    kept : int
        Entries turned into records.
    rejections : list of Rejected
        ``(id, reason)`` of every dropped entry, in reading order.
    """

    target: str
    tolerance: float = DEFAULT_TOLERANCE
    symprec: float = 0.01
    read: int = 0
    kept: int = 0
    rejections: list[Rejected] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        """Number of dropped entries."""
        return len(self.rejections)

    def rejected_by_reason(self) -> dict[str, int]:
        """Rejections counted by category, most frequent first."""
        counts = Counter(reason_category(r.reason) for r in self.rejections)
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (without the individual rejections)."""
        return {
            "target": self.target,
            "tolerance": self.tolerance,
            "symprec": self.symprec,
            "read": self.read,
            "kept": self.kept,
            "rejected": self.rejected,
            "rejected_by_reason": self.rejected_by_reason(),
        }


class ConsistencyChecker:
    """Turns entries into records for one target, keeping a :class:`ConsistencyReport`.

    Parameters
    ----------
    target : str
        Property name from :data:`crystensor.tensors.kinds.PROPERTIES`.
    tolerance : float
        Largest accepted symmetry violation and index asymmetry (relative, default 0.05).
    symprec : float
        spglib distance tolerance in Angstrom for finding the point group.
    angle_tolerance : float
        spglib angle tolerance in degrees.

    Raises
    ------
    InputError
        Unknown target, or a tolerance / symprec that is not a positive finite number.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> a = 5.43 / 2  # diamond Si, primitive fcc cell
    >>> si = Structure(Lattice([[0, a, a], [a, 0, a], [a, a, 0]]), ["Si", "Si"],
    ...                [[0, 0, 0], [0.25, 0.25, 0.25]])
    >>> checker = ConsistencyChecker("dielectric")
    >>> entries = [RawEntry("si", si, np.diag([11.75, 12.0, 12.25]), {}),
    ...            RawEntry("si", si, np.eye(3), {})]
    >>> records = list(checker.records(entries))
    >>> records[0].value[0][0], records[0].symmetry["point_group"], checker.report.kept
    (12.0, 'm-3m', 1)
    >>> checker.report.rejected_by_reason()
    {'duplicate id': 1}
    """

    def __init__(
        self,
        target: str,
        *,
        tolerance: float = DEFAULT_TOLERANCE,
        symprec: float = 0.01,
        angle_tolerance: float = 5.0,
    ) -> None:
        try:
            self.property: Property = get_property(target)
        except ValueError as err:
            raise InputError(str(err)) from None
        for name, value in (("tolerance", tolerance), ("symprec", symprec)):
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise InputError(f"{name} must be a positive number, got {value!r}")
        self.kind = self.property.tensor_kind
        self.tolerance = float(tolerance)
        self.symprec = float(symprec)
        self.angle_tolerance = float(angle_tolerance)
        self.report = ConsistencyReport(target, self.tolerance, self.symprec)
        self._first_fate: dict[str, bool] = {}  # id -> was the first entry with it kept

    def records(self, entries: Iterable[RawEntry | Rejected]) -> Iterator[Record]:
        """Check every entry; yield the records, report the rest (streaming)."""
        for entry in entries:
            record = self.check(entry)
            if record is not None:
                yield record
        report = self.report
        logger.info(
            "%s: read %d, kept %d, rejected %d %s",
            report.target,
            report.read,
            report.kept,
            report.rejected,
            report.rejected_by_reason() or "",
        )

    def check(self, entry: RawEntry | Rejected) -> Record | None:
        """The record for one entry, or None (and a rejection in the report)."""
        self.report.read += 1
        if isinstance(entry, Rejected):
            return self._reject(entry.id, entry.reason)
        entry_id = str(entry.id)
        if entry_id in self._first_fate:
            fate = "kept" if self._first_fate[entry_id] else "rejected"
            return self._reject(entry_id, f"{DUPLICATE_ID}: the first entry with it was {fate}")
        self._first_fate[entry_id] = False
        try:
            record = self._build(entry_id, entry)
        except _Reject as why:
            return self._reject(entry_id, str(why))
        self._first_fate[entry_id] = True
        self.report.kept += 1
        return record

    def _reject(self, entry_id: str, reason: str) -> None:
        logger.debug("rejected %s: %s", entry_id, reason)
        self.report.rejections.append(Rejected(str(entry_id), reason))
        return None

    def _build(self, entry_id: str, entry: RawEntry) -> Record:
        principal = (entry.meta or {}).get("label") == PRINCIPAL_VALUES
        value = (
            self._checked_principal(entry.value) if principal else self._checked_value(entry.value)
        )
        structure = _checked_structure(entry.structure)
        symmetry: dict[str, Any] | None = None
        consistency: float | None = None
        if principal:
            group = self._point_group(structure)
            stored, consistency = self._degenerate(value, group)
            symmetry = _symmetry_of(group)
        elif self.kind.rank == 0:
            stored: Any = float(value)
        else:
            group = self._point_group(structure)
            stored, consistency = self._symmetrised(value, group)
            symmetry = _symmetry_of(group)
        with warnings.catch_warnings():
            # pymatgen warns about missing electronegativities (noble gases) while sorting
            warnings.simplefilter("ignore")
            formula = structure.composition.reduced_formula
        return Record(
            id=entry_id,
            formula=formula,
            structure=structure.as_dict(),
            target=self.property.name,
            value=stored,
            units=self.property.units,
            source=_json_safe(dict(entry.source)),
            symmetry=symmetry,
            consistency=consistency,
            meta=_json_safe(dict(entry.meta)),
        )

    def _checked_value(self, value: Any) -> np.ndarray:
        if isinstance(value, bool | np.bool_) or value is None:
            raise _Reject(f"{WRONG_SHAPE}: expected a number or tensor, got {value!r}")
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise _Reject(f"{WRONG_SHAPE}: not an array of numbers") from None
        expected = self.kind.cartesian_shape
        if arr.shape != expected:
            what = "one number" if self.kind.rank == 0 else f"a Cartesian tensor {expected}"
            raise _Reject(f"{WRONG_SHAPE}: expected {what}, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            bad = "NaN" if np.isnan(arr).any() else "infinity"
            raise _Reject(f"{NON_FINITE}: {bad} in the value")
        return arr

    def _checked_principal(self, value: Any) -> np.ndarray:
        """Three principal values of a symmetric rank-2 tensor (dielectric kinds only)."""
        if self.kind.rank != 2:
            raise _Reject(f"{WRONG_SHAPE}: principal values label only rank-2 tensors")
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise _Reject(f"{WRONG_SHAPE}: not an array of numbers") from None
        if arr.shape != (3,):
            raise _Reject(f"{WRONG_SHAPE}: expected three principal values, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise _Reject(f"{NON_FINITE}: in the principal values")
        if arr.min() < 1.0:
            raise _Reject(
                f"{UNPHYSICAL}: a principal permittivity of {arr.min():.4g} < 1 (weaker "
                "screening than vacuum)"
            )
        return np.sort(arr)

    def _degenerate(self, values: np.ndarray, group: PointGroup) -> tuple[list, float]:
        """Check that the values the crystal system makes equal are equal; their spread."""
        rule = _DEGENERATE.get(group.crystal_system)
        if rule is None:  # orthorhombic and lower: three independent values
            return values.tolist(), 0.0
        if rule == "all":
            spread = float((values[2] - values[0]) / values.mean())
            what = "three equal values"
        else:
            spread = float(min(values[1] - values[0], values[2] - values[1]) / values.mean())
            what = "two equal values"
        if spread > self.tolerance:
            raise _Reject(
                f"{VIOLATION}: a {group.crystal_system} crystal ({group.symbol}) has {what}, "
                f"got {', '.join(f'{v:.4g}' for v in values)} ({100 * spread:.3g} % > "
                f"{100 * self.tolerance:.3g} %)"
            )
        return values.tolist(), spread

    def _point_group(self, structure: Any) -> PointGroup:
        from crystensor.tensors.symmetry import point_group_of

        try:
            return point_group_of(
                structure, symprec=self.symprec, angle_tolerance=self.angle_tolerance
            )
        except Exception as err:  # spglib/pymatgen raise many types on odd structures
            raise _Reject(
                f"{NO_SYMMETRY}: {type(err).__name__}: {err}".replace("\n", " ")
            ) from None

    def _symmetrised(self, tensor: np.ndarray, group: PointGroup) -> tuple[list, float]:
        from crystensor.tensors.symmetry import project_to_point_group, symmetry_violation

        asymmetry = self.kind.index_asymmetry(tensor)
        if asymmetry > self.tolerance:
            raise _Reject(
                f"{INDEX_ASYMMETRY}: {100 * asymmetry:.3g} % > {100 * self.tolerance:.3g} % "
                f"({self.kind.name} needs {self.kind.index_symmetry})"
            )
        violation = symmetry_violation(tensor, group)
        if violation > self.tolerance:
            raise _Reject(
                f"{VIOLATION}: {100 * violation:.3g} % > {100 * self.tolerance:.3g} % under "
                f"point group {group.symbol}"
            )
        stored = project_to_point_group(self.kind.symmetrize_indices(tensor), group)
        return stored.tolist(), float(violation)


def _symmetry_of(group: PointGroup) -> dict[str, Any]:
    return {
        "space_group_number": group.space_group_number,
        "space_group": group.space_group_symbol,
        "point_group": group.symbol,
        "crystal_system": group.crystal_system,
    }


def check_entries(
    entries: Iterable[RawEntry | Rejected],
    target: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    symprec: float = 0.01,
    angle_tolerance: float = 5.0,
) -> tuple[list[Record], ConsistencyReport]:
    """All records of ``entries`` and the report (see :class:`ConsistencyChecker`).

    Parameters
    ----------
    entries : iterable of RawEntry or Rejected
        What a source's ``read`` yields.
    target : str
        Property name.
    tolerance, symprec, angle_tolerance : float
        See :class:`ConsistencyChecker`.

    Returns
    -------
    records : list of Record
    report : ConsistencyReport
    """
    checker = ConsistencyChecker(
        target, tolerance=tolerance, symprec=symprec, angle_tolerance=angle_tolerance
    )
    records = list(checker.records(entries))
    return records, checker.report


class _Reject(Exception):
    """Internal: an entry fails a check; the message is the rejection reason."""


def _checked_structure(structure: Any) -> Any:
    from pymatgen.core import Structure

    if not isinstance(structure, Structure):
        if hasattr(structure, "sites") and not hasattr(structure, "lattice"):
            raise _Reject(f"{NOT_PERIODIC}: a molecule has no periodic cell")
        raise _Reject(f"{NOT_A_STRUCTURE}: got {type(structure).__name__}")
    if len(structure) == 0:
        raise _Reject(f"{NOT_A_STRUCTURE}: no sites")
    lattice = structure.lattice
    if not all(lattice.pbc):
        raise _Reject(f"{NOT_PERIODIC}: periodic only along {lattice.pbc}")
    matrix = np.asarray(lattice.matrix, dtype=float)
    if not np.all(np.isfinite(matrix)) or not np.all(np.isfinite(structure.frac_coords)):
        raise _Reject(f"{NOT_PERIODIC}: non-finite lattice or coordinates")
    if abs(np.linalg.det(matrix)) < 1e-6:
        raise _Reject(f"{NOT_PERIODIC}: the cell has zero volume")
    if not structure.is_ordered:
        raise _Reject(f"{DISORDERED}: partial occupancies")
    return structure


def _json_safe(obj: Any) -> Any:
    from crystensor.data.sources._common import json_safe

    return json_safe(obj)
