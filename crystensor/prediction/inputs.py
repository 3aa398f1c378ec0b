"""Reading what predict is given: files, directories, stdin, pymatgen and ASE structures."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystensor.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["StructureInput", "read_inputs"]

#: What the API accepts as one structure: a pymatgen Structure, an ASE Atoms, or a path (a
#: file, a directory of structure files, or ``-`` for a POSCAR on standard input).
StructureInput = Any

# Names (lower case) of the files a directory is searched for; anything else in it is skipped.
_STRUCTURE_SUFFIXES = (".vasp", ".poscar", ".cif", ".xyz", ".extxyz", ".mcif")
_STRUCTURE_STEMS = ("poscar", "contcar", "vasprun")


def _looks_like_structure(path: Path) -> bool:
    name = path.name.lower().removesuffix(".gz")
    return name.endswith(_STRUCTURE_SUFFIXES) or any(s in name for s in _STRUCTURE_STEMS)


def read_inputs(
    structures: StructureInput | Iterable[StructureInput], *, recursive: bool = True
) -> list[tuple[str, Any]]:
    """Expand the inputs into ``(name, Structure)`` pairs, in order.

    Files with several frames give several pairs; a directory gives the structure files in it
    (POSCAR/CONTCAR/vasprun names, ``.vasp``, ``.cif``, ``.xyz``, ``.extxyz``, optionally
    ``.gz``) and, with ``recursive``, in its subdirectories (one folder per calculation),
    sorted by path; hidden files and folders are skipped. An input that cannot be read becomes
    ``(name, InputError)`` instead of stopping the others.

    Returns
    -------
    list of (str, Structure or InputError)
    """
    if _is_single(structures) or isinstance(structures, str | os.PathLike):
        structures = [structures]
    out: list = []
    for item in structures:
        if isinstance(item, str | os.PathLike):
            path = Path(item)
            if str(item) != "-" and path.is_dir():
                files = _structure_files(path, recursive)
                if not files:
                    out.append((str(path), InputError(f"no structure files in directory {path}")))
                for p in files:
                    out.extend(_read_file(p))
            else:
                out.extend(_read_file(item))
        else:
            try:
                structure = _as_structure(item)
            except InputError as err:
                out.append((f"structure {len(out)}", err))
                continue
            out.append((structure.composition.reduced_formula, structure))
    return out


def _structure_files(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in found
        if p.is_file()
        and _looks_like_structure(p)
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _read_file(path: str | os.PathLike) -> list[tuple[str, Any]]:
    from crystensor.io.structures import read_frames

    name = "stdin" if str(path) == "-" else str(path)
    try:
        frames = read_frames(path)
    except InputError as err:
        return [(name, err)]
    if len(frames) == 1:
        return [(name, frames[0])]
    return [(f"{name}[{i}]", s) for i, s in enumerate(frames)]


def _is_single(item: Any) -> bool:
    """A pymatgen Structure or an ASE Atoms (both iterable, but one structure)."""
    cls = type(item)
    return any(c.__name__ in ("Structure", "IStructure", "Atoms") for c in cls.__mro__)


def _as_structure(item: Any) -> Structure:
    from pymatgen.core import IStructure

    from crystensor.io.structures import atoms_to_structure, check_cell, check_ordered

    ase = sys.modules.get("ase")  # an Atoms exists only if ASE was imported: no need to here
    if isinstance(item, IStructure):
        structure = item
    elif ase is not None and isinstance(item, ase.Atoms):
        structure = atoms_to_structure(item, "an ASE Atoms")
    else:
        raise InputError(
            f"cannot predict for a {type(item).__name__}; give a pymatgen Structure, an ASE "
            "Atoms or a path to a structure file"
        )
    check_ordered(structure, structure.composition.reduced_formula)
    check_cell(structure, structure.composition.reduced_formula)
    return structure
