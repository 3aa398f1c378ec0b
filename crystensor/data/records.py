"""The dataset record: what ``crystensor fetch`` writes and ``crystensor featurize`` reads.

One JSON object per line (JSON Lines; gzip-compressed when the file name ends in ``.gz``):

=============  ==========================================================================
``id``         material id (e.g. ``mp-2133``), unique within a file
``formula``    reduced formula
``structure``  pymatgen ``Structure.as_dict()``; the tensor is in *its* Cartesian frame
``target``     property name from :data:`crystensor.tensors.kinds.PROPERTIES`
``value``      full Cartesian tensor as a nested list, or a number for scalar targets
``units``      units of ``value``
``source``     ``{"dataset": ..., "citation": ..., "file": ...}``
``symmetry``   ``{"space_group_number", "space_group", "point_group", "crystal_system"}``
``consistency`` relative symmetry violation of the tensor *before* projection (None for scalars)
``meta``       free-form extras (e.g. per-atom arrays such as Born effective charges)
=============  ==========================================================================

``value`` holds the point-group-symmetrised tensor; the unsymmetrised one is not kept.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from crystensor.errors import InputError
from crystensor.io.atomic import atomic_open

__all__ = [
    "FORMAT_VERSION",
    "Record",
    "dump_records",
    "open_text",
    "read_records",
    "write_records",
]

FORMAT_VERSION = 1
_REQUIRED = ("id", "structure", "target", "value")


@dataclass
class Record:
    """One material with one target value, in the frame of its structure."""

    id: str
    formula: str
    structure: dict
    target: str
    value: Any
    units: str
    source: dict
    symmetry: dict | None = None
    consistency: float | None = None
    meta: dict = field(default_factory=dict)

    def to_json(self) -> str:
        """One compact JSON line (no newline); NaN or infinity raise ``ValueError``."""
        # a shallow dict: dataclasses.asdict would deep-copy the structure dict of every record
        obj = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, obj: dict, where: str = "record") -> Record:
        missing = [k for k in _REQUIRED if k not in obj]
        if missing:
            raise InputError(f"{where}: missing field(s) {', '.join(missing)}; not a record file?")
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        known.setdefault("formula", "")
        known.setdefault("units", "")
        known.setdefault("source", {})
        return cls(**known)

    def pymatgen_structure(self):
        """The structure as a pymatgen ``Structure``."""
        from pymatgen.core import Structure

        return Structure.from_dict(self.structure)


def open_text(path: str | Path, mode: str = "r") -> IO[str]:
    """Open a text file, transparently gzip-compressed when the name ends in ``.gz``."""
    p = Path(path)
    if p.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(p, mode.replace("t", "") + "b"), encoding="utf-8")
    return open(p, mode, encoding="utf-8")


def read_records(path: str | Path) -> Iterator[Record]:
    """Iterate over the records of a JSON Lines file (``.gz`` allowed).

    Raises
    ------
    InputError
        Missing file, or a line that is not a JSON record (with its line number).
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"record file {str(p)!r} does not exist; create it with crystensor fetch")
    try:
        with open_text(p) as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputError(
                        f"{p.name} line {number} is not valid JSON ({err.msg}); not a record file?"
                    ) from None
                if not isinstance(obj, dict):
                    raise InputError(f"{p.name} line {number} is not a JSON object")
                yield Record.from_dict(obj, f"{p.name} line {number}")
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise InputError(f"cannot read {p.name}: {err}") from None


def write_records(path: str | Path, records: Iterable[Record]) -> int:
    """Write records atomically (temp file, then rename); gzip when ``path`` ends in ``.gz``.

    The output rules of :mod:`crystensor.io.atomic` apply (symbolic links, FIFOs, devices).
    Returns the number of records written.
    """
    with atomic_open(path, "wb", what="records file") as fh:
        return dump_records(fh, records)


def dump_records(stream: IO[bytes], records: Iterable[Record]) -> int:
    """Write records as JSON Lines to an open binary ``stream``; returns how many.

    Raises
    ------
    ValueError
        A scalar value that is not finite (the stream holds the records before it).
    """
    count = 0
    for record in records:
        if isinstance(record.value, float) and not math.isfinite(record.value):
            raise ValueError(f"record {record.id}: value is not finite")
        stream.write((record.to_json() + "\n").encode())
        count += 1
    return count
