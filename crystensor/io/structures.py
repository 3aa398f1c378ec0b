"""Reading crystal structures with clear errors (pymatgen first, ASE for what pymatgen lacks)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from crystensor.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["read_structure"]

log = logging.getLogger(__name__)


def read_structure(path: str | Path) -> Structure:
    """Read one periodic structure (POSCAR/CONTCAR, CIF, vasprun.xml, extended XYZ, ...).

    Raises
    ------
    InputError
        The file is missing or unreadable as a structure, holds partial occupancies (disordered
        sites cannot be turned into a graph), or has no periodic cell.
    """
    from pymatgen.core import Structure

    p = Path(path)
    if not p.is_file():
        raise InputError(f"structure file {str(p)!r} does not exist; check the path")
    try:
        structure = Structure.from_file(p)
    except Exception as first:  # pymatgen raises many types; ASE gets a second try
        log.debug("pymatgen could not read %s: %s", p, first)
        try:
            from ase.io import read
            from pymatgen.io.ase import AseAtomsAdaptor

            atoms = read(p)
            if not all(atoms.pbc) or atoms.cell.rank < 3:
                raise InputError(f"{p.name} has no periodic 3D cell; crystensor needs a crystal")
            structure = AseAtomsAdaptor.get_structure(atoms)
        except InputError:
            raise
        except Exception:
            raise InputError(
                f"cannot read a crystal structure from {p.name} ({first}); give a POSCAR, CIF, "
                "vasprun.xml or extended XYZ file"
            ) from None
    if not structure.is_ordered:
        raise InputError(
            f"{p.name} has partially occupied sites; crystensor needs an ordered structure "
            "(pick one configuration, e.g. with pymatgen's OrderDisorderedStructureTransformation)"
        )
    return structure
