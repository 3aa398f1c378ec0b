"""matminer's 2018 CSV datasets (source ``matminer-csv``).

Which targets a file provides is decided from its columns:

=========================  ==========================  ====================  ==================
target                     column                      stored frame          files
=========================  ==========================  ====================  ==================
``elastic``                ``elastic_tensor_original``  ``poscar``            elastic_tensor
``bulk-modulus``           ``K_VRH``                   scalar (GPa)          elastic_tensor
``shear-modulus``          ``G_VRH``                   scalar (GPa)          elastic_tensor
``dielectric``             ``e_total``                 ``poscar``            dielectric_constant
``dielectric-electronic``  ``e_electronic``            ``poscar``            dielectric_constant
``band-gap``               ``band_gap``                scalar (eV)           dielectric_constant
``piezoelectric``          ``piezoelectric_tensor``    IEEE                  piezoelectric_tensor
``formation-energy``       ``formation_energy_per_atom``  scalar (eV/atom)   flla_2015
=========================  ==========================  ====================  ==================

Structures come from the ``poscar`` column only: the ``structure`` column of the tensor files is a
CIF string, and parsing CIF re-orients the lattice, which breaks the frame of the tensors. A file
without ``poscar`` (``flla_2015``) must hold pymatgen structure dicts in ``structure``.

The piezoelectric tensors are stored in IEEE orientation; each is rotated into the frame of its
``poscar`` structure with ``e_poscar = R^T . e_ieee`` on every index, ``R`` being pymatgen's
``Tensor.get_ieee_rotation(structure)`` (``convert_to_ieee`` computes ``R . T``). Checked on the
data: 764 of the 941 tensors are then consistent with their structure's point group within 5 %,
against 361 with ``R`` instead of ``R^T`` and 382 without rotation.

Leading ``#`` lines (matminer writes the citation as ``# ref: ...``) are skipped and kept as the
citation of every entry.
"""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crystensor.data.records import open_text
from crystensor.data.sources import FetchOptions, RawEntry, Rejected
from crystensor.data.sources._common import (
    BAD_STRUCTURE,
    BAD_VALUE,
    MISSING_VALUE,
    Progress,
    as_cartesian,
    as_scalar,
    file_label,
    ieee_rotation,
    is_missing,
    property_of,
    require_file,
    rotate_tensor,
    structure_from_dict,
    structure_from_text,
    unsupported_target,
)
from crystensor.errors import InputError

__all__ = ["SOURCE", "TARGET_COLUMNS", "read", "supported_targets"]

logger = logging.getLogger(__name__)

SOURCE = "matminer-csv"

#: target -> (column, stored in IEEE orientation)
TARGET_COLUMNS: dict[str, tuple[str, bool]] = {
    "elastic": ("elastic_tensor_original", False),
    "dielectric": ("e_total", False),
    "dielectric-electronic": ("e_electronic", False),
    "piezoelectric": ("piezoelectric_tensor", True),
    "band-gap": ("band_gap", False),
    "formation-energy": ("formation_energy_per_atom", False),
    "bulk-modulus": ("K_VRH", False),
    "shear-modulus": ("G_VRH", False),
}


def supported_targets(columns: list[str]) -> list[str]:
    """The targets a table with ``columns`` provides (it also needs a structure column)."""
    if "poscar" not in columns and "structure" not in columns:
        return []
    return [t for t, (col, _) in TARGET_COLUMNS.items() if col in columns]


def read(target: str, path: Path | None, options: FetchOptions) -> Iterator[RawEntry | Rejected]:
    """Entries of one matminer CSV file for ``target``, tensors in the ``poscar`` frame.

    Parameters
    ----------
    target : str
        Property name; must be one the file's columns provide (see the module table).
    path : Path
        One of matminer's CSV files (``.csv`` or ``.csv.gz``).
    options : FetchOptions
        Only ``progress`` is used.

    Yields
    ------
    RawEntry or Rejected
        One per row; tensors as full Cartesian arrays in the units of the property.

    Raises
    ------
    InputError
        Missing or unreadable file, or a target the file's columns cannot provide.
    """
    p = require_file(path, SOURCE, "a matminer CSV file")
    comments, table = _read_table(p)
    columns = [str(c) for c in table.columns]
    supported = supported_targets(columns)
    if target not in supported:
        raise unsupported_target(SOURCE, target, supported, p.name)
    column, ieee = TARGET_COLUMNS[target]
    kind = property_of(target).tensor_kind
    struct_col = "poscar" if "poscar" in columns else "structure"
    if struct_col == "structure":
        _require_structure_dicts(table["structure"], p)
    label = file_label(p)
    source = {
        "dataset": f"matminer {label}",
        "citation": comments,
        "file": p.name,
        "column": column,
    }
    ids = table["material_id"].tolist() if "material_id" in columns else [None] * len(table)
    space_groups = table["space_group"].tolist() if "space_group" in columns else None
    progress = Progress(options.progress, len(table))
    logger.info("%s: %d rows, target %s from column %s", p.name, len(table), target, column)
    for row, (raw_id, text, value) in enumerate(
        zip(ids, table[struct_col].tolist(), table[column].tolist(), strict=True)
    ):
        entry_id = f"{label}#{row}" if is_missing(raw_id) else str(raw_id)
        meta: dict[str, Any] = {"row": row}
        if space_groups is not None and not is_missing(space_groups[row]):
            meta["reported_space_group"] = int(space_groups[row])
        yield _entry(entry_id, text, value, struct_col, kind, ieee, source, meta)
        progress.step()
    progress.finish()


def _entry(
    entry_id: str,
    text: Any,
    value: Any,
    struct_col: str,
    kind: Any,
    ieee: bool,
    source: dict,
    meta: dict,
) -> RawEntry | Rejected:
    if is_missing(value):
        return Rejected(entry_id, f"{MISSING_VALUE}: empty cell")
    if is_missing(text):
        return Rejected(entry_id, f"{BAD_STRUCTURE}: empty {struct_col} cell")
    try:
        if struct_col == "poscar":
            structure = structure_from_text(text, "poscar")
        else:
            structure = structure_from_dict(_literal(text))
        if kind.rank == 0:
            tensor: Any = as_scalar(value)
        else:
            tensor = as_cartesian(_literal(value) if isinstance(value, str) else value, kind)
            if ieee:
                tensor = rotate_tensor(tensor, ieee_rotation(structure).T)
    except ValueError as err:
        return Rejected(entry_id, str(err))
    return RawEntry(entry_id, structure, tensor, source, meta)


def _literal(text: Any) -> Any:
    """A JSON or Python literal from a cell (matminer wrote Python reprs of lists and dicts)."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(f"{BAD_VALUE}: not a JSON or Python literal ({text[:30]!r}...)") from None


def _read_table(path: Path) -> tuple[str, Any]:
    """The leading ``#`` comment lines (joined) and the table below them."""
    import pandas as pd

    comments: list[str] = []
    try:
        with open_text(path) as fh:
            for line in fh:
                if not line.startswith("#"):
                    break
                comments.append(line.lstrip("#").strip())
        table = pd.read_csv(path, skiprows=len(comments), low_memory=False)
    except (OSError, EOFError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as err:
        raise InputError(
            f"cannot read {path.name} as a CSV table ({type(err).__name__}); source {SOURCE!r} "
            "reads matminer's CSV files (e.g. elastic_tensor.csv.gz)"
        ) from None
    citation = " ".join(c.removeprefix("ref:").strip() for c in comments)
    return citation, table


def _require_structure_dicts(column: Any, path: Path) -> None:
    first = next((v for v in column.tolist() if not is_missing(v)), None)
    if not (isinstance(first, str) and first.lstrip().startswith("{")):
        raise InputError(
            f"{path.name} has no 'poscar' column and its 'structure' column holds no pymatgen "
            "structure dicts; CIF structures are not used (parsing CIF re-orients the lattice "
            "and breaks the tensor frame)"
        )
