"""JSON files of structures and values, matminer / pymatgen style (source ``json``).

Layouts (``.gz`` allowed), detected from the content:

* a list of objects, one per material (matcalc's ``mp-binary-pbe-elasticity``);
* pandas' ``to_json`` column layout, ``{column: {row: value}}`` (MatTen's example file);
* pandas' ``split`` layout, ``{"columns": [...], "index": [...], "data": [[...], ...]}``;
* an object of objects keyed by id, ``{id: {field: value}}``;
* JSON Lines, one object per line.

In each object the structure is ``structure`` (a pymatgen ``Structure.as_dict()``, or a POSCAR
string), else ``poscar``, else ``cif`` (last resort: parsing CIF re-orients the lattice, so a
tensor given in another frame fails the consistency check). The value is the field named by
``--key`` (``options.key``; a dotted path such as ``bulk_modulus.vrh`` reaches into nested
objects) or the first of :data:`VALUE_FIELDS` present for the target. A tensor may be given in
Cartesian, Voigt or flat row-major form, or as an object with a ``raw`` entry (the Materials
Project's ``elastic_tensor``). Values must already be in the frame of the structure given with
them, and in the target's units. The id is ``material_id``, ``mp_id``, ``task_id`` or ``id``,
else ``<file stem>#<row>``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from crystensor.data.records import open_text
from crystensor.data.sources import FetchOptions, RawEntry, Rejected
from crystensor.data.sources._common import (
    BAD_STRUCTURE,
    MISSING_VALUE,
    Progress,
    as_cartesian,
    as_scalar,
    file_label,
    is_missing,
    property_of,
    require_file,
    structure_from_dict,
    structure_from_text,
    unsupported_target,
)
from crystensor.errors import InputError
from crystensor.tensors.kinds import PROPERTIES, TensorKind

__all__ = ["SOURCE", "VALUE_FIELDS", "load_rows", "read", "supported_targets"]

logger = logging.getLogger(__name__)

SOURCE = "json"

#: Fields looked up for each target when ``--key`` is not given, in order of preference.
VALUE_FIELDS: dict[str, tuple[str, ...]] = {
    "elastic": ("elastic_tensor_full", "elastic_tensor_original", "elastic_tensor_voigt",
                "elastic_tensor"),
    "dielectric": ("e_total", "dielectric_total", "epsilon_total"),
    "dielectric-electronic": ("e_electronic", "dielectric_electronic", "epsilon_electronic",
                              "eps_electronic"),
    "piezoelectric": ("piezoelectric_tensor", "piezo_tensor"),
    "band-gap": ("band_gap",),
    "formation-energy": ("formation_energy_per_atom",),
    "bulk-modulus": ("bulk_modulus_vrh", "K_VRH", "k_vrh", "bulk_modulus.vrh"),
    "shear-modulus": ("shear_modulus_vrh", "G_VRH", "g_vrh", "shear_modulus.vrh"),
}  # fmt: skip
STRUCTURE_FIELDS: tuple[str, ...] = ("structure", "poscar", "cif")
ID_FIELDS: tuple[str, ...] = ("material_id", "mp_id", "task_id", "id")
_KNOWN = (
    set(STRUCTURE_FIELDS)
    | set(ID_FIELDS)
    | {f.split(".")[0] for fields in VALUE_FIELDS.values() for f in fields}
)


def read(target: str, path: Path | None, options: FetchOptions) -> Iterator[RawEntry | Rejected]:
    """Entries of a JSON file of structures and values.

    Parameters
    ----------
    target : str
        Property name.
    path : Path
        ``.json`` / ``.jsonl``, optionally ``.gz``.
    options : FetchOptions
        ``key`` (the value field; default: :data:`VALUE_FIELDS`) and ``progress``.

    Yields
    ------
    RawEntry or Rejected
        One per object.

    Raises
    ------
    InputError
        Missing or unreadable file, a layout without structures, or a target the file does not
        provide (the message names the targets and fields it has).
    """
    p = require_file(path, SOURCE, "a JSON file of structures and values")
    prop = property_of(target)
    rows = load_rows(p)
    if not rows:
        raise InputError(f"{p.name} holds no entries")
    objects = [obj for _, obj in rows]
    fields = list(dict.fromkeys(k for obj in objects for k in obj))
    struct_field = next((f for f in STRUCTURE_FIELDS if f in fields), None)
    if struct_field is None:
        raise InputError(
            f"{p.name}: the entries have no structure field ({', '.join(STRUCTURE_FIELDS)}); "
            f"found {', '.join(fields[:12])}"
        )
    if options.key is not None:
        if not _present(objects, options.key):
            raise InputError(
                f"key {options.key!r} is not a field of the entries in {p.name}; available "
                f"fields: {', '.join(fields)}; choose one with --key"
            )
        value_field = options.key
    else:
        supported = supported_targets(objects)
        if target not in supported:
            err = unsupported_target(SOURCE, target, supported, p.name)
            raise InputError(f"{err} (fields: {', '.join(fields)}; or name one with --key)")
        value_field = next(f for f in VALUE_FIELDS[target] if _present(objects, f))
    label = file_label(p)
    source = {"dataset": f"json {label}", "citation": "", "file": p.name, "field": value_field}
    progress = Progress(options.progress, len(rows))
    logger.info("%s: %d entries, %s from field %s", p.name, len(rows), target, value_field)
    for row, obj in rows:
        yield _entry(obj, row, label, struct_field, value_field, prop.tensor_kind, source)
        progress.step()
    progress.finish()


def supported_targets(objects: list[Mapping[str, Any]]) -> list[str]:
    """The targets some entry among ``objects`` provides (by :data:`VALUE_FIELDS`)."""
    return [t for t in PROPERTIES if any(_present(objects, f) for f in VALUE_FIELDS.get(t, ()))]


def _present(objects: list[Mapping[str, Any]], field: str) -> bool:
    return any(_lookup(obj, field) is not _MISSING for obj in objects)


def load_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(row key, object)`` pairs of a JSON file in any of the supported layouts.

    Raises
    ------
    InputError
        Not JSON, or JSON of another shape.
    """
    try:
        with open_text(path) as fh:
            text = fh.read()
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read {path.name} ({type(err).__name__}: {err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        data = _json_lines(text, path) if err.msg == "Extra data" else None
        if data is None:
            raise InputError(
                f"{path.name} is not JSON (line {err.lineno}: {err.msg}); source {SOURCE!r} "
                "reads JSON files of structures and values"
            ) from None
    rows = _rows(data)
    if rows is None:
        raise InputError(
            f"{path.name}: unrecognised JSON layout (expected a list of objects, a pandas "
            "dict of columns or split layout, or objects keyed by id)"
        )
    return rows


def _json_lines(text: str, path: Path) -> list[Any] | None:
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise InputError(f"{path.name} line {number} is not JSON ({err.msg})") from None
    return out


def _rows(data: Any) -> list[tuple[str, dict[str, Any]]] | None:
    if isinstance(data, list):
        if all(isinstance(o, dict) for o in data):
            return [(str(i), o) for i, o in enumerate(data)]
        return None
    if not isinstance(data, dict):
        return None
    if {"columns", "data"} <= set(data) and isinstance(data["data"], list):
        index = data.get("index") or list(range(len(data["data"])))
        return [
            (str(i), dict(zip(data["columns"], values, strict=False)))
            for i, values in zip(index, data["data"], strict=False)
        ]
    if any(f in data for f in STRUCTURE_FIELDS) and isinstance(data.get("structure"), dict):
        if "lattice" in data["structure"]:
            return [("0", data)]  # one entry
    if data and all(isinstance(v, dict) for v in data.values()):
        if _KNOWN & set(data):  # column layout: the keys are field names
            rows: dict[str, dict[str, Any]] = {}
            for column, cells in data.items():
                for row, value in cells.items():
                    rows.setdefault(str(row), {})[column] = value
            return list(rows.items())
        return [(str(k), v) for k, v in data.items()]  # objects keyed by id
    return None


_MISSING = object()


def _lookup(obj: Mapping[str, Any], field: str) -> Any:
    """``obj[field]``, or the dotted path ``a.b`` through nested objects; ``_MISSING`` if absent."""
    if field in obj:
        return obj[field]
    node: Any = obj
    for part in field.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _entry(
    obj: dict[str, Any],
    row: str,
    label: str,
    struct_field: str,
    value_field: str,
    kind: TensorKind,
    source: dict,
) -> RawEntry | Rejected:
    entry_id = next(
        (str(obj[f]) for f in ID_FIELDS if f in obj and not is_missing(obj[f])), f"{label}#{row}"
    )
    value = _lookup(obj, value_field)
    if value is _MISSING or is_missing(value):
        return Rejected(entry_id, f"{MISSING_VALUE}: no {value_field!r}")
    try:
        structure = _structure(obj.get(struct_field), struct_field)
        if kind.rank == 0:
            tensor: Any = as_scalar(value)
        else:
            if isinstance(value, Mapping) and "raw" in value:
                value = value["raw"]
            tensor = as_cartesian(value, kind)
    except ValueError as err:
        return Rejected(entry_id, str(err))
    meta = {"row": row}
    return RawEntry(entry_id, structure, tensor, source, meta)


def _structure(value: Any, field: str) -> Any:
    if isinstance(value, Mapping):
        return structure_from_dict(value)
    if isinstance(value, str) and value.strip():
        fmt = "cif" if field == "cif" or value.lstrip().startswith(("data_", "#")) else "poscar"
        return structure_from_text(value, fmt)
    raise ValueError(f"{BAD_STRUCTURE}: no structure in field {field!r}")
