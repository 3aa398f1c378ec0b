"""Extended XYZ files (source ``extxyz``): one structure per frame, the value in the frame info.

The value of each frame is ``atoms.info[key]`` with ``key`` from ``--key`` (``options.key``) or,
when not given, the target's conventional name (:data:`DEFAULT_KEYS`, e.g. ``band_gap``). A
tensor is given as its Cartesian form, its Voigt form or either flattened in row-major order
(9 numbers for a 3x3 tensor); a scalar as one number. Values are taken to be in the structure's
frame (the lattice as stored) and in the target's units.

Ids come from ``material_id`` or ``id`` in the info, else ``<file stem>#<frame index>``. The other
per-atom arrays of a frame (e.g. Born effective charges ``becs``, shape ``(n_atoms, 9)`` as
stored) and the other info entries go to ``meta``. A frame ASE cannot parse is rejected
(``unreadable frame``); a broken frame layout (a count line that is not a number, a truncated
frame) stops the import with an error.

Reading streams: the file (``.gz`` allowed) is cut into frames line by line and each frame is
parsed by ASE's extxyz reader on its own. ``ase.io.read(path, index=":")`` would first index the
whole file by seeking in it, which on a gzip stream decompresses from the start at every seek:
on the 36.7k-frame MP-2018 file it had not yielded a frame after five minutes, while this reader
parses all frames in about 30 s.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from crystensor.data.records import open_text
from crystensor.data.sources import FetchOptions, RawEntry, Rejected
from crystensor.data.sources._common import (
    BAD_STRUCTURE,
    MISSING_VALUE,
    NOT_PERIODIC,
    Progress,
    as_cartesian,
    as_scalar,
    file_label,
    is_missing,
    json_safe,
    property_of,
    require_file,
)
from crystensor.errors import InputError
from crystensor.tensors.kinds import TensorKind

__all__ = ["DEFAULT_KEYS", "SOURCE", "iter_frames", "read"]

logger = logging.getLogger(__name__)

SOURCE = "extxyz"

#: Info key used for a target when ``options.key`` is not given.
DEFAULT_KEYS: dict[str, str] = {
    "elastic": "elastic_tensor",
    "dielectric": "dielectric_total",
    "dielectric-electronic": "dielectric_electronic",
    "piezoelectric": "piezoelectric_tensor",
    "band-gap": "band_gap",
    "formation-energy": "formation_energy_per_atom",
    "bulk-modulus": "bulk_modulus_vrh",
    "shear-modulus": "shear_modulus_vrh",
}
_ID_KEYS = ("material_id", "id")
# ASE's own arrays: the structure itself, and the site labels ase.spacegroup leaves behind.
_ASE_ARRAYS = ("numbers", "positions", "spacegroup_kinds")
BAD_FRAME = "unreadable frame"


def read(target: str, path: Path | None, options: FetchOptions) -> Iterator[RawEntry | Rejected]:
    """Entries of an extended XYZ file, value from each frame's info.

    Parameters
    ----------
    target : str
        Property name.
    path : Path
        ``.xyz`` / ``.extxyz`` file, optionally ``.gz``.
    options : FetchOptions
        ``key`` (the info key of the value) and ``progress``.

    Yields
    ------
    RawEntry or Rejected
        One per frame.

    Raises
    ------
    InputError
        Missing or unreadable file, a first frame without the key (the message lists the keys
        it has), or a key that names a per-atom array.
    """
    p = require_file(path, SOURCE, "an extended XYZ file")
    prop = property_of(target)
    key = options.key or DEFAULT_KEYS[target]
    label = file_label(p)
    source = {"dataset": f"extxyz {label}", "citation": "", "file": p.name, "key": key}
    progress = Progress(options.progress, None, every=100)
    first = True
    for index, atoms in enumerate(iter_frames(p)):
        if isinstance(atoms, str):
            if first:
                raise InputError(f"{p.name}: {atoms}; is it an extended XYZ file?")
            yield Rejected(f"{label}#{index}", f"{BAD_FRAME}: {atoms}")
        else:
            if first:
                _check_key(atoms, key, p, explicit=options.key is not None)
            yield _entry(atoms, index, key, prop.tensor_kind, label, source)
        first = False
        progress.step()
    if first:
        raise InputError(f"{p.name} holds no extended XYZ frame; check the file")
    progress.finish()


def iter_frames(path: Path) -> Iterator[Any]:
    """ASE ``Atoms`` of every frame of an extended XYZ file, read one frame at a time.

    A frame ASE cannot parse is yielded as a string saying why (so one bad frame does not stop
    the import); a file whose frame layout is broken (a count line that is not a number, a
    truncated frame) raises.

    Raises
    ------
    InputError
        Unreadable file or broken frame layout (the message gives the line number).
    """
    from ase.io import read as ase_read

    try:
        with open_text(path) as fh:
            for start, text in _chunks(fh, path):
                try:
                    yield ase_read(io.StringIO(text), format="extxyz")
                except Exception as err:  # ASE raises many types on malformed frames
                    yield f"cannot parse the frame at line {start} ({type(err).__name__}: {err})"
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read {path.name} ({type(err).__name__}: {err})") from None


def _chunks(fh: TextIO, path: Path) -> Iterator[tuple[int, str]]:
    """``(first line number, text)`` of each frame: count line, comment line, atom lines."""
    line_no = 0
    pending: str | None = None
    while True:
        head = pending if pending is not None else fh.readline()
        pending = None
        if not head:
            return
        line_no += 1
        if not head.strip():
            continue
        try:
            natoms = int(head)
        except ValueError:
            raise InputError(
                f"{path.name} line {line_no}: expected the atom count of an extended XYZ "
                f"frame, got {head.strip()[:40]!r}; is it an extended XYZ file?"
            ) from None
        start = line_no
        lines = [head]
        for _ in range(natoms + 1):
            line = fh.readline()
            if not line:
                raise InputError(f"{path.name}: the frame starting at line {start} is truncated")
            lines.append(line)
        line_no += natoms + 1
        # Optional VEC1..VEC3 lines (lattice vectors of plain XYZ) follow the atoms.
        while True:
            line = fh.readline()
            if line.lstrip().startswith("VEC"):
                lines.append(line)
                line_no += 1
                continue
            pending = line
            break
        yield start, "".join(lines)


def _check_key(atoms: Any, key: str, path: Path, explicit: bool) -> None:
    if key in atoms.info:
        return
    if key in atoms.arrays:
        raise InputError(
            f"{key!r} in {path.name} is a per-atom array, not a per-structure value; choose an "
            f"info key with --key ({', '.join(sorted(atoms.info)) or 'none'})"
        )
    available = ", ".join(sorted(atoms.info)) or "none"
    how = "" if explicit else " (the default for this target)"
    raise InputError(
        f"key {key!r}{how} is not in the frame info of {path.name}; available keys: "
        f"{available}; choose one with --key"
    )


def _entry(
    atoms: Any, index: int, key: str, kind: TensorKind, label: str, source: dict
) -> RawEntry | Rejected:
    entry_id = next(
        (str(atoms.info[k]) for k in _ID_KEYS if not is_missing(atoms.info.get(k))),
        f"{label}#{index}",
    )
    if key not in atoms.info:
        return Rejected(entry_id, f"{MISSING_VALUE}: no {key!r} in the frame info")
    if not all(atoms.pbc) or atoms.cell.rank < 3:
        return Rejected(entry_id, f"{NOT_PERIODIC}: pbc {atoms.pbc.tolist()} in frame {index}")
    try:
        value = (
            as_scalar(atoms.info[key]) if kind.rank == 0 else as_cartesian(atoms.info[key], kind)
        )
        structure = _structure(atoms)
    except ValueError as err:
        return Rejected(entry_id, str(err))
    meta: dict[str, Any] = {"frame": index}
    extra = {k: v for k, v in atoms.info.items() if k != key and k not in _ID_KEYS}
    if extra:
        meta["info"] = json_safe(extra)
    for name, array in atoms.arrays.items():
        if name not in _ASE_ARRAYS and np.issubdtype(np.asarray(array).dtype, np.number):
            meta[name] = np.asarray(array).tolist()
    return RawEntry(entry_id, structure, value, source, meta)


def _structure(atoms: Any) -> Any:
    from pymatgen.core import Lattice, Structure

    try:
        return Structure(
            Lattice(np.asarray(atoms.cell.array, dtype=float)),
            atoms.get_chemical_symbols(),
            np.asarray(atoms.positions, dtype=float),
            coords_are_cartesian=True,
        )
    except Exception as err:  # unknown element symbols, degenerate cells, ...
        raise ValueError(f"{BAD_STRUCTURE}: {type(err).__name__}: {err}") from None
