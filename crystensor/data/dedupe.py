"""Duplicate crystals among dataset records, found by structure rather than by id.

Datasets of one property from different sources hold the same material under unrelated ids
(``mp-441`` in one, ``phonon_becs_epsilon#17`` in the other), so combining them needs a
structural comparison. Two structures are taken to be the same crystal when they have

1. the same reduced formula (of the elements; oxidation states are dropped),
2. the same space group (spglib, ``symprec=0.1`` Angstrom), and
3. a fit of pymatgen's :class:`~pymatgen.analysis.structure_matcher.StructureMatcher`.

Structures are grouped by reduced formula, and a new structure is compared only with the
*first occurrences* in its group, so the cost grows with the size of the formula groups, not
with the square of the number of structures.

Matcher settings
----------------
pymatgen's default tolerances (``ltol=0.2`` fractional lattice length, ``stol=0.3`` site
distance in units of ``(V / n_sites)^(1/3)``, ``angle_tol=5`` degrees), with

- ``primitive_cell=True``: a supercell or a conventional cell is the same crystal as the
  primitive cell it repeats;
- ``scale=False``: lattices are compared as they are, so lengths must agree within ``ltol``
  (20 %); with ``scale=True`` a copy expanded by 30 % would match too;
- elements, not species, are compared.

The evidence, on the shared data (matminer ``e_electronic``, 1056 PBE records, then the e3nn
Born set's ``eps``, 1520 records):

- The Born lattices are smaller than the matminer ones by a median 1.7 % in length, up to
  6.4 % (PBEsol against PBE), and the mean dielectric constants of a pair agree (median ratio
  1.03). ``ltol=0.05`` would lose 15 of the cross-file pairs, all the same compound with a
  larger ``eps`` in step with the smaller lattice. So a uniformly strained copy (a few percent)
  *is* a duplicate.
- The matcher alone pairs 641 records (617 across the files, 24 within one). 21 of the 24
  and 13 of the 617 join distorted polymorphs of different space group: cubic with tetragonal
  BaTiO3 and KNbO3 (``eps`` 6.87 x3 against 5.18 / 6.27 / 6.27), rutile with CaCl2-type
  CaCl2 and SnO2, ... Their tensors differ in form, so they are different training examples;
  the space-group check keeps them apart and leaves 616 duplicates (613 across the files).
- ``symprec=0.01`` would also separate 7 cross-file pairs of one compound in which one copy
  breaks its symmetry numerically; 0.1 Angstrom does not.

On the 2576 structures the whole search takes about 10 s (about 650 matcher fits).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

__all__ = [
    "ANGLE_TOL",
    "LTOL",
    "STOL",
    "SYMPREC",
    "StructureIndex",
    "find_structure_duplicates",
    "formula_key",
    "space_group_number",
]

log = logging.getLogger(__name__)

LTOL = 0.2
"""Fractional lattice-length tolerance (pymatgen's default)."""
STOL = 0.3
"""Site tolerance in units of ``(V / n_sites)^(1/3)`` (pymatgen's default)."""
ANGLE_TOL = 5.0
"""Lattice-angle tolerance, degrees (pymatgen's default)."""
SYMPREC = 0.1
"""spglib distance tolerance (Angstrom) of the space-group check."""


def space_group_number(structure: Any, symprec: float = SYMPREC) -> int | None:
    """spglib's space group number of ``structure``, or None when spglib cannot tell."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        return int(SpacegroupAnalyzer(structure, symprec=symprec).get_space_group_number())
    except Exception:  # spglib fails on disordered or degenerate cells; then the matcher decides
        return None


class _Entry:
    """A first occurrence: its key, structure and (computed when first needed) space group."""

    __slots__ = ("key", "space_group", "structure")
    _UNKNOWN = -1

    def __init__(self, key: Hashable, structure: Any) -> None:
        self.key = key
        self.structure = structure
        self.space_group: int | None = self._UNKNOWN

    def group(self, symprec: float) -> int | None:
        if self.space_group == self._UNKNOWN:
            self.space_group = space_group_number(self.structure, symprec)
        return self.space_group


def formula_key(structure: Any) -> str:
    """Reduced formula of the elements, oxidation states dropped (``"NaCl"`` for Na+ Cl-)."""
    return structure.composition.element_composition.reduced_formula


def _compatible(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


class StructureIndex:
    """Structures seen so far, grouped by reduced formula; :meth:`add` finds earlier matches.

    Parameters
    ----------
    ltol, stol, angle_tol : float
        :class:`~pymatgen.analysis.structure_matcher.StructureMatcher` tolerances (see the
        module docstring for why the defaults are pymatgen's).
    symprec : float or None
        spglib tolerance of the space-group check; None leaves the decision to the matcher.

    Attributes
    ----------
    comparisons : int
        ``StructureMatcher.fit`` calls made so far.
    seconds : float
        Time spent searching (space groups and fits).

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> index = StructureIndex()
    >>> rocksalt = Structure(Lattice.cubic(4.2), ["Mg"] * 4 + ["O"] * 4,
    ...     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0],
    ...      [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])
    >>> index.add(rocksalt, "mp-1265") is None
    True
    >>> index.add(rocksalt.get_primitive_structure(), "copy")
    'mp-1265'
    """

    def __init__(
        self,
        *,
        ltol: float = LTOL,
        stol: float = STOL,
        angle_tol: float = ANGLE_TOL,
        symprec: float | None = SYMPREC,
    ) -> None:
        from pymatgen.analysis.structure_matcher import ElementComparator, StructureMatcher

        self.matcher = StructureMatcher(
            ltol=ltol,
            stol=stol,
            angle_tol=angle_tol,
            primitive_cell=True,
            scale=False,
            attempt_supercell=False,
            comparator=ElementComparator(),
        )
        self.symprec = symprec
        self._groups: dict[str, list[_Entry]] = {}
        self.comparisons = 0
        self.seconds = 0.0

    def __len__(self) -> int:
        """Number of distinct structures (first occurrences) held."""
        return sum(len(group) for group in self._groups.values())

    def find(self, structure: Any) -> Hashable | None:
        """The key of the first held structure that ``structure`` matches, or None."""
        return self._match(_Entry(None, structure))

    def add(self, structure: Any, key: Hashable) -> Hashable | None:
        """Hold ``structure`` under ``key`` unless it matches one held already.

        Returns
        -------
        The key of the earlier structure it duplicates (then it is not held), or None.
        """
        entry = _Entry(key, structure)
        earlier = self._match(entry)
        if earlier is None:
            self._groups.setdefault(formula_key(structure), []).append(entry)
        return earlier

    def _match(self, new: _Entry) -> Hashable | None:
        start = time.perf_counter()
        try:
            candidates = self._groups.get(formula_key(new.structure), [])
            if candidates and self.symprec is not None:
                # the space group decides the tensor's form: a distorted polymorph (tetragonal
                # against cubic BaTiO3) is another material even where the matcher fits it
                group = new.group(self.symprec)
                candidates = [c for c in candidates if _compatible(group, c.group(self.symprec))]
            for entry in candidates:
                self.comparisons += 1
                if self.matcher.fit(entry.structure, new.structure):
                    return entry.key
            return None
        finally:
            self.seconds += time.perf_counter() - start


def find_structure_duplicates(
    structures: Sequence[Any],
    ids: Sequence[str] | None = None,
    *,
    ltol: float = LTOL,
    stol: float = STOL,
    angle_tol: float = ANGLE_TOL,
    symprec: float | None = SYMPREC,
) -> dict[int, int]:
    """Which structures repeat an earlier one (same reduced formula, StructureMatcher fit).

    Parameters
    ----------
    structures : sequence of pymatgen Structure (or its ``as_dict()``)
        In order of preference: of two matching structures the earlier one is kept.
    ids : sequence of str, optional
        Names of the structures, for the log.
    ltol, stol, angle_tol : float
        Matcher tolerances (pymatgen's defaults; see the module docstring).
    symprec : float or None
        spglib tolerance of the space-group check (None: no check).

    Returns
    -------
    dict of int to int
        ``later index -> index of the first occurrence it duplicates``; the first occurrences
        themselves are not keys, so a chain of three copies maps both later ones to the first.

    Raises
    ------
    ValueError
        ``ids`` of another length than ``structures``.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> si = Structure(Lattice.cubic(5.43), ["Si"] * 8, [[0, 0, 0], [0, .5, .5], [.5, 0, .5],
    ...     [.5, .5, 0], [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]])
    >>> find_structure_duplicates([si, si.get_primitive_structure(), si * 2])
    {1: 0, 2: 0}
    """
    from pymatgen.core import Structure

    if ids is not None and len(ids) != len(structures):
        raise ValueError(f"{len(ids)} ids for {len(structures)} structures; give one id each")
    index = StructureIndex(ltol=ltol, stol=stol, angle_tol=angle_tol, symprec=symprec)
    duplicates: dict[int, int] = {}
    for i, structure in enumerate(structures):
        if isinstance(structure, Mapping):
            structure = Structure.from_dict(structure)
        earlier = index.add(structure, i)
        if isinstance(earlier, int):
            duplicates[i] = earlier
            if ids is not None:
                log.debug("%s duplicates %s", ids[i], ids[earlier])
    log.info(
        "%d of %d structures repeat an earlier one (%d comparisons, %.1f s)",
        len(duplicates),
        len(structures),
        index.comparisons,
        index.seconds,
    )
    return duplicates
