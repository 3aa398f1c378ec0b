"""StrainTensorNet's Materials Project elastic tensors (source ``straintensornet``).

The file (``mp_elastic_ieee.json.gz``) is a pandas-style dict of columns,
``{column: {row: value}}``, with ``material_id``, ``cif`` and ``elasticity.elastic_tensor``
(6x6 Voigt, GPa, rounded to integer GPa) among others. It provides the ``elastic`` target only:
its moduli (``elasticity.K_Voigt`` / ``G_Voigt``) are Voigt bounds, not the Voigt-Reuss-Hill
averages the ``bulk-modulus`` / ``shear-modulus`` targets hold.

Frame. The tensors are in IEEE orientation and the CIF structures are not. Each *structure* is
rotated into IEEE orientation, lattice rows ``L -> L R^T`` with the same fractional coordinates,
``R`` being pymatgen's ``Tensor.get_ieee_rotation(structure)``; the tensor is left as stored (so
its integer components stay exact). Rotating the tensor out of IEEE instead (``R^T`` on every
index) gives the same counts. Measured on the 1061 rows: 1054 consistent within 5 % after the
rotation, 480 without it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crystensor.data.records import open_text
from crystensor.data.sources import FetchOptions, RawEntry, Rejected
from crystensor.data.sources._common import (
    MISSING_VALUE,
    Progress,
    as_cartesian,
    file_label,
    ieee_rotation,
    is_missing,
    require_file,
    rotate_structure,
    structure_from_text,
    unsupported_target,
)
from crystensor.errors import InputError
from crystensor.tensors.kinds import TensorKind, get_kind

__all__ = ["SOURCE", "TARGETS", "read"]

logger = logging.getLogger(__name__)

SOURCE = "straintensornet"
#: The targets this file provides.
TARGETS: tuple[str, ...] = ("elastic",)
_TENSOR = "elasticity.elastic_tensor"
_REQUIRED = ("cif", _TENSOR)
_CITATION = (
    "Materials Project elastic tensors (de Jong et al. 2015, Sci. Data 2:150009; Jain et al. "
    "2013) as packaged in StrainTensorNet's validation set (MIT)"
)


def read(target: str, path: Path | None, options: FetchOptions) -> Iterator[RawEntry | Rejected]:
    """Entries of StrainTensorNet's JSON file, structures rotated into IEEE orientation.

    Parameters
    ----------
    target : str
        ``"elastic"`` (the only target the file provides).
    path : Path
        ``mp_elastic_ieee.json`` or ``.json.gz``.
    options : FetchOptions
        Only ``progress`` is used.

    Yields
    ------
    RawEntry or Rejected
        Elastic tensors ``(3, 3, 3, 3)`` in GPa, in the frame of the rotated structure.

    Raises
    ------
    InputError
        Missing or unreadable file, a file of another layout, or another target.
    """
    p = require_file(path, SOURCE, "StrainTensorNet's mp_elastic_ieee.json.gz")
    columns = _read_columns(p)
    if target not in TARGETS:
        raise unsupported_target(SOURCE, target, TARGETS, p.name)
    kind = get_kind("elastic")
    rows = list(columns[_TENSOR])
    ids = columns.get("material_id", {})
    systems = columns.get("spacegroup.crystal_system", {})
    source = {"dataset": "straintensornet mp_elastic_ieee", "citation": _CITATION, "file": p.name}
    label = file_label(p)
    progress = Progress(options.progress, len(rows))
    logger.info("%s: %d rows", p.name, len(rows))
    for row in rows:
        raw_id = ids.get(row)
        entry_id = str(raw_id) if not is_missing(raw_id) else f"{label}#{row}"
        cif = columns["cif"].get(row)
        yield _entry(entry_id, cif, columns[_TENSOR][row], kind, source, systems.get(row))
        progress.step()
    progress.finish()


def _entry(
    entry_id: str, cif: Any, value: Any, kind: TensorKind, source: dict, system: Any
) -> RawEntry | Rejected:
    if is_missing(cif):
        return Rejected(entry_id, f"{MISSING_VALUE}: no CIF structure")
    if value is None:
        return Rejected(entry_id, f"{MISSING_VALUE}: no elastic tensor")
    try:
        structure = structure_from_text(cif, "cif")
        rotated = rotate_structure(structure, ieee_rotation(structure))
        tensor = as_cartesian(value, kind)
    except ValueError as err:
        return Rejected(entry_id, str(err))
    meta = {"reported_crystal_system": system} if system else {}
    return RawEntry(entry_id, rotated, tensor, source, meta)


def _read_columns(path: Path) -> dict[str, dict]:
    try:
        with open_text(path) as fh:
            data = json.load(fh)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(
            f"cannot read {path.name} as JSON ({type(err).__name__}); source {SOURCE!r} reads "
            "StrainTensorNet's mp_elastic_ieee.json.gz"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(data.get(c), dict) for c in _REQUIRED):
        found = ", ".join(list(data)[:8]) if isinstance(data, dict) else type(data).__name__
        raise InputError(
            f"{path.name} is not StrainTensorNet's dict of columns (needs {', '.join(_REQUIRED)}; "
            f"found {found}); use source 'json' for other JSON layouts"
        )
    return data
