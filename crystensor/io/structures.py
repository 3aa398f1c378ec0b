"""Reading crystal structures with clear errors (pymatgen first, ASE for what pymatgen lacks).

:func:`read_structure` reads one structure from a file; :func:`read_structures` reads every
structure a file holds (all frames of an extended XYZ file) and standard input (``-``, a POSCAR).

POSCAR files are read here when they have the plain VASP 5 layout (a line of element symbols
above the counts, no velocities): importing pymatgen's POSCAR reader imports all of its VASP
output parsers (about 1 s) and ASE's imports ``ase.io`` (0.5 s), a third of the start-up of
``crystensor predict`` either way. The numbers are those ASE's reader gives, bit for bit. Other
POSCARs go through ASE's reader, and pymatgen reads the ones ASE refuses.
"""

from __future__ import annotations

import io
import logging
import sys
import warnings
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from crystensor.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "MULTI_FRAME_SUFFIXES",
    "atoms_to_structure",
    "check_ordered",
    "read_structure",
    "read_structures",
]

log = logging.getLogger(__name__)

#: File suffixes (optionally followed by ``.gz``) read frame by frame by :func:`read_structures`.
MULTI_FRAME_SUFFIXES = (".xyz", ".extxyz")
_POSCAR_STEMS = ("poscar", "contcar")
_POSCAR_SUFFIXES = (".vasp", ".poscar")


def read_structure(path: str | Path) -> Structure:
    """Read one periodic structure (POSCAR/CONTCAR, CIF, vasprun.xml, extended XYZ, ...).

    Raises
    ------
    InputError
        The file is missing or unreadable as a structure, holds partial occupancies (disordered
        sites cannot be turned into a graph), or has no periodic cell.
    """

    p = Path(path)
    if not p.is_file():
        raise InputError(f"structure file {str(p)!r} does not exist; check the path")
    try:
        structure = _read_any(p)
    except np.linalg.LinAlgError:  # pymatgen inverts the lattice while building the structure
        raise InputError(
            f"{p.name}: the lattice vectors are linearly dependent (the cell has no volume); "
            "fix the lattice"
        ) from None
    check_ordered(structure, p.name)
    check_cell(structure, p.name)
    return structure


def check_cell(structure: Structure, where: str) -> None:
    """Refuse non-finite numbers, a cell without volume and unknown element symbols.

    Raises
    ------
    InputError
        Naming what is wrong and where.
    """
    from pymatgen.core import Element

    matrix = structure.lattice.matrix
    if not np.all(np.isfinite(matrix)):
        raise InputError(f"{where}: the lattice vectors are not finite numbers (nan or inf)")
    bad = [i for i, site in enumerate(structure) if not np.all(np.isfinite(site.coords))]
    if bad:
        raise InputError(
            f"{where}: atom {bad[0]} has coordinates that are not finite numbers (nan or inf)"
            + (f", and {len(bad) - 1} more" if len(bad) > 1 else "")
        )
    lengths = np.linalg.norm(matrix, axis=1)
    volume = abs(float(np.linalg.det(matrix)))
    if volume <= 1e-6 * float(np.prod(lengths)) or volume < 1e-3:
        raise InputError(
            f"{where}: the lattice vectors are (nearly) linearly dependent (cell volume "
            f"{volume:.3g} A^3 for vectors of {', '.join(f'{x:.3g}' for x in lengths)} A); fix "
            "the lattice"
        )
    for site in structure:
        for specie in site.species:
            if not isinstance(getattr(specie, "element", specie), Element):
                symbol = getattr(specie, "symbol", str(specie))
                raise InputError(f"{where}: {symbol!r} is not a chemical element symbol")


def _read_any(p: Path) -> Structure:
    """The structure of ``p`` (pymatgen, then ASE, then a POSCAR parse), unchecked."""
    from pymatgen.core import Structure

    structure = _read_poscar(p) if _is_poscar_name(p) else None
    if structure is None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                structure = Structure.from_file(p)
            except Exception as first:  # pymatgen raises many types; ASE gets a second try
                log.debug("pymatgen could not read %s: %s", p, first)
                structure = _read_with_ase_or_poscar(p, first)
        for warning in caught:  # pymatgen's CIF parser is chatty; the user sees them with -vv
            log.debug("%s: %s", p.name, warning.message)
    return structure


def _is_poscar_name(p: Path) -> bool:
    name = p.name.lower()
    return any(stem in name for stem in _POSCAR_STEMS) or name.endswith(_POSCAR_SUFFIXES)


def _read_poscar(path: Path) -> Structure | None:
    """A POSCAR (plain layout parsed here, else by ASE), or None if neither can read it."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):  # e.g. compressed: ASE knows
        text = None
    structure = None if text is None else _parse_plain_poscar(text)
    return structure if structure is not None else _poscar_with_ase(path)


def _parse_plain_poscar(text: str) -> Structure | None:
    """The structure ASE's VASP reader + :func:`atoms_to_structure` give, for a plain POSCAR.

    Plain: comment; one positive scale factor or three; three lattice vectors; element symbols
    (VASP 5); counts; optional ``Selective dynamics``; ``Direct`` or ``Cartesian``; one line per
    atom; nothing but blank lines after them. Returns None for anything else, for ASE to read.
    The arithmetic is ASE's (``cell * scale``, ``fractional @ cell``), so the structure is
    identical to the one read through ASE.
    """
    import numpy as np
    from ase.data import atomic_numbers  # the symbols ASE accepts (ase.data is light)
    from pymatgen.core import Lattice, Structure

    lines = text.split("\n")
    try:
        scale = []
        for word in lines[1].split()[:3]:
            scale.append(float(word))
        if len(scale) not in (1, 3) or min(scale) <= 0:
            return None
        cell = np.array([lines[2 + i].split()[:3] for i in range(3)], dtype=float)
        cell *= np.array(scale)
        symbols, counts = lines[5].split(), lines[6].split()
        if symbols[0].isdigit() or any("!" in c for c in counts) or len(symbols) < len(counts):
            return None  # VASP 4 (symbols in the comment) or annotated counts
        symbols = [s.split("/")[0].split("_")[0] for s in symbols]  # POTCAR labels: Na_pv/hash
        species = [s for s, n in zip(symbols, counts, strict=False) for _ in range(int(n))]
        mode = lines[7].strip()
        selective = mode[0].lower() == "s"
        if selective:
            mode = lines[8].strip()
        cartesian = mode[0].lower() in "ck"
        start = 9 if selective else 8
        rows = [lines[start + i].split() for i in range(len(species))]
    except (ValueError, IndexError):
        return None
    if any(line.strip() for line in lines[start + len(species) :]):
        return None  # velocities or other blocks: ASE's reader checks them
    if not species or not all(s in atomic_numbers for s in species):
        return None
    if not cell.any(axis=1).all():  # a missing lattice vector: ASE's path names the error
        return None
    if any(len(row) < (6 if selective else 3) for row in rows):
        return None
    try:
        coords = np.array([[float(w) for w in row[:3]] for row in rows])
    except ValueError:
        return None
    positions = coords * np.array(scale) if cartesian else coords @ cell
    return Structure(Lattice(cell), species, positions, coords_are_cartesian=True)


def _poscar_with_ase(source: Path | IO[str]) -> Structure | None:
    """A POSCAR read by ASE, or None if ASE cannot read it (pymatgen then tries)."""
    from ase.io import read

    try:
        atoms = read(source, format="vasp")
    except Exception as err:  # ASE raises many types for a malformed file
        log.debug("ASE could not read a POSCAR from %s: %s", source, err)
        return None
    return atoms_to_structure(atoms, getattr(source, "name", "stdin"))


def _read_with_ase_or_poscar(p: Path, first: Exception) -> Structure:
    """ASE's reader, then (for a file whose name says nothing, e.g. ``ONE``) a POSCAR parse."""
    from pymatgen.core import Structure

    try:
        from ase.io import read

        return atoms_to_structure(read(p), p.name)
    except InputError:
        raise
    except Exception as second:
        log.debug("ASE could not read %s: %s", p, second)
    try:
        return Structure.from_str(p.read_text(), fmt="poscar")
    except Exception:
        reason = str(first) or type(first).__name__
        if isinstance(first, IndexError | StopIteration):
            reason = f"the file ends too early: truncated? ({reason})"
        raise InputError(
            f"cannot read a crystal structure from {p.name} ({reason}); give a POSCAR, CIF, "
            "vasprun.xml or extended XYZ file"
        ) from None


def atoms_to_structure(atoms: Any, where: str) -> Structure:
    """An ASE ``Atoms`` with a periodic 3D cell as a pymatgen Structure (species, positions)."""
    from pymatgen.core import Lattice, Structure

    if not all(atoms.pbc) or atoms.cell.rank < 3:
        raise InputError(f"{where} has no periodic 3D cell; crystensor needs a crystal")
    return Structure(
        Lattice(atoms.cell.array),
        atoms.get_chemical_symbols(),
        atoms.get_positions(),
        coords_are_cartesian=True,
    )


def check_ordered(structure: Structure, where: str) -> None:
    """Refuse partial occupancies (a disordered site has no single atom to put in a graph)."""
    if not structure.is_ordered:
        disordered = [i for i, site in enumerate(structure) if not site.is_ordered]
        first = disordered[0]
        raise InputError(
            f"{where} has partially occupied sites ({len(disordered)}, e.g. site {first}: "
            f"{structure[first].species}); crystensor needs an ordered structure (pick one "
            "configuration, e.g. with pymatgen's OrderDisorderedStructureTransformation)"
        )


def _is_multi_frame(p: Path) -> bool:
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return bool(suffixes) and suffixes[-1] in MULTI_FRAME_SUFFIXES


def read_structures(path: str | Path) -> list[Structure]:
    """Every periodic structure in a file: all frames of an extended XYZ file, else one.

    ``-`` reads one POSCAR from standard input. Other files go through :func:`read_structure`.

    Raises
    ------
    InputError
        As :func:`read_structure`; for a multi-frame file, the first frame without a periodic
        cell is named.
    """
    if str(path) == "-":
        return [_read_stdin()]
    p = Path(path)
    if not _is_multi_frame(p):
        return [read_structure(p)]
    frames = _xyz_frames(p)
    return [atoms_to_structure(atoms, f"{p.name} frame {i}") for i, atoms in enumerate(frames)]


def _xyz_frames(p: Path) -> list[Any]:
    """The ASE ``Atoms`` of every frame of an extended XYZ file (at least one)."""
    if not p.is_file():
        raise InputError(f"structure file {str(p)!r} does not exist; check the path")
    from ase.io import read

    try:
        frames = read(p, index=":")
    except Exception as err:  # ASE raises many types for a malformed file
        raise InputError(f"cannot read extended XYZ frames from {p.name} ({err})") from None
    if not frames:
        raise InputError(f"{p.name} holds no frames")
    return frames


def read_frames(path: str | Path) -> list[Structure | InputError]:
    """Like :func:`read_structures`, but a bad frame is returned as its error, not raised.

    Each structure is checked (:func:`check_ordered`, :func:`check_cell`), so one frame
    without a periodic cell, with nan coordinates or a flat cell does not cost the others.

    Raises
    ------
    InputError
        When the file as a whole cannot be read.
    """
    if str(path) == "-" or not _is_multi_frame(Path(path)):
        return [_checked(lambda: read_structures(path)[0])]
    p = Path(path)
    frames = _xyz_frames(p)
    out = []
    for i, atoms in enumerate(frames):
        where = f"{p.name} frame {i}"
        out.append(_checked(lambda a=atoms, w=where: _frame(a, w)))
    return out


def _frame(atoms: Any, where: str) -> Structure:
    try:
        structure = atoms_to_structure(atoms, where)
    except np.linalg.LinAlgError:
        raise InputError(f"{where}: the lattice vectors are linearly dependent") from None
    check_ordered(structure, where)
    check_cell(structure, where)
    return structure


def _checked(read: Any) -> Structure | InputError:
    try:
        return read()
    except InputError as err:
        return err
    except np.linalg.LinAlgError:
        return InputError("the lattice vectors are linearly dependent (no volume); fix the lattice")


def _read_stdin() -> Structure:
    from pymatgen.core import Structure

    text = sys.stdin.read()
    if not text.strip():
        raise InputError("standard input is empty; pipe a POSCAR into '-'")
    structure = _parse_plain_poscar(text)
    if structure is None:
        structure = _poscar_with_ase(io.StringIO(text))
    if structure is None:
        try:
            structure = Structure.from_str(text, fmt="poscar")
        except Exception as err:
            raise InputError(f"cannot read a POSCAR from standard input ({err})") from None
    check_ordered(structure, "stdin")
    check_cell(structure, "stdin")
    return structure
