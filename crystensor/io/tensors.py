"""Reading tensors from JSON: plain nested lists, ``{kind, voigt|tensor}`` objects, pymatgen's
tensor JSON, dataset records (``fetch``) and the output of ``crystensor predict``.

Every reader returns full Cartesian tensors *as given* (an index-asymmetric input is kept, so
that it can be reported rather than silently symmetrised) and raises :class:`InputError` with
one clear sentence for malformed JSON, non-numeric or non-finite entries, and unknown shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crystensor.errors import InputError
from crystensor.tensors.kinds import TensorKind, get_kind, get_property, kinds_for_shape

__all__ = ["TensorInput", "parse_tensor_json", "read_tensor_file", "to_array"]

# pymatgen classes whose name fixes the kind
_PYMATGEN_CLASSES = {
    "ElasticTensor": "elastic",
    "PiezoTensor": "piezoelectric",
    "DielectricTensor": "dielectric",
}
_SHAPE_HELP = (
    "a dielectric tensor is 3x3, a piezoelectric tensor 3x6 (Voigt) or 3x3x3, "
    "an elastic tensor 6x6 (Voigt) or 3x3x3x3"
)


@dataclass
class TensorInput:
    """One tensor read from a file.

    Attributes
    ----------
    kind : TensorKind
    tensor : np.ndarray
        Full Cartesian tensor, shape ``kind.cartesian_shape``, exactly as given.
    label : str
        Where it came from (file name, and entry id or index when the file holds several).
    source_format : str
        Which of the accepted JSON layouts it was read from.
    units : str or None
        Units stated in the file, if any.
    structure : dict or None
        A pymatgen ``Structure.as_dict()`` carried by the file (dataset records, predictions).
    meta : dict
    """

    kind: TensorKind
    tensor: np.ndarray
    label: str
    source_format: str
    units: str | None = None
    structure: dict | None = None
    meta: dict = field(default_factory=dict)


def _check_numeric(value: Any, where: str) -> None:
    if isinstance(value, list):
        for item in value:
            _check_numeric(item, where)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{where}: {value!r} is not a number; tensors must hold numbers only")


def to_array(value: Any, where: str) -> np.ndarray:
    """A nested list of numbers as a finite float64 array, or an :class:`InputError`.

    >>> to_array([[1, 2], [3, 4.5]], "x").shape
    (2, 2)
    """
    if not isinstance(value, list):
        raise InputError(f"{where}: expected a nested list of numbers, got {type(value).__name__}")
    _check_numeric(value, where)
    try:
        array = np.array(value, dtype=float)
    except ValueError:
        raise InputError(
            f"{where}: the nested lists have unequal lengths; give a rectangular array"
        ) from None
    if not np.all(np.isfinite(array)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise InputError(
            f"{where}: entry {bad} is {array[bad]}; every component must be a finite number"
        )
    return array


def _as_kind(array: np.ndarray, kind: str | TensorKind | None, where: str) -> tuple:
    candidates = kinds_for_shape(array.shape)
    if kind is not None:
        wanted = get_kind(kind) if isinstance(kind, str) else kind
        for candidate, is_voigt in candidates:
            if candidate.name == wanted.name:
                return wanted, (wanted.from_voigt(array) if is_voigt else array)
        raise InputError(
            f"{where}: shape {'x'.join(map(str, array.shape))} does not fit kind "
            f"{wanted.name!r} ({_SHAPE_HELP})"
        )
    if not candidates:
        raise InputError(
            f"{where}: shape {'x'.join(map(str, array.shape))} is not a tensor shape crystensor "
            f"knows; {_SHAPE_HELP}"
        )
    if len(candidates) > 1:
        names = ", ".join(c.name for c, _ in candidates)
        raise InputError(f"{where}: shape {array.shape} fits several kinds ({names}); pass --kind")
    found, is_voigt = candidates[0]
    return found, (found.from_voigt(array) if is_voigt else array)


def _kind_name(obj: dict, where: str) -> str | None:
    if "kind" in obj:
        name = obj["kind"]
    elif "target" in obj:
        try:
            name = get_property(str(obj["target"])).kind
        except ValueError as err:
            raise InputError(f"{where}: {err}") from None
    elif obj.get("@class") in _PYMATGEN_CLASSES:
        name = _PYMATGEN_CLASSES[obj["@class"]]
    else:
        return None
    try:
        return get_kind(str(name)).name
    except ValueError as err:
        raise InputError(f"{where}: {err}") from None


def _parse_object(obj: dict, kind: str | None, where: str) -> TensorInput:
    file_kind = _kind_name(obj, where)
    if kind is not None and file_kind is not None and file_kind != get_kind(kind).name:
        raise InputError(f"{where}: the file says kind {file_kind!r} but --kind is {kind!r}")
    kind = kind or file_kind
    if "@class" in obj and "input_array" in obj:
        fmt = f"pymatgen {obj['@class']}"
        array = to_array(obj["input_array"], where)
    elif "tensor" in obj:
        fmt = "object with 'tensor'"
        array = to_array(obj["tensor"], where)
    elif "voigt" in obj:
        fmt = "object with 'voigt'"
        array = to_array(obj["voigt"], where)
    elif "value" in obj:
        fmt = "dataset record"
        array = to_array(obj["value"], where)
    else:
        raise InputError(
            f"{where}: a tensor object needs a 'tensor', 'voigt', 'value' or pymatgen "
            f"'input_array' field; found {', '.join(map(repr, obj)) or 'none'}"
        )
    found, tensor = _as_kind(array, kind, where)
    label = str(obj.get("id") or obj.get("source") or where)
    return TensorInput(
        kind=found,
        tensor=tensor,
        label=label,
        source_format=fmt,
        units=obj.get("units"),
        structure=obj.get("structure") if isinstance(obj.get("structure"), dict) else None,
        meta={k: obj[k] for k in ("target", "id", "formula") if k in obj},
    )


def parse_tensor_json(obj: Any, kind: str | None = None, where: str = "input") -> list[TensorInput]:
    """Tensors from decoded JSON (see the module docstring for the accepted layouts).

    >>> [t.kind.name for t in parse_tensor_json([[1, 0, 0], [0, 1, 0], [0, 0, 1]])]
    ['dielectric']
    """
    if kind is not None:
        try:
            get_kind(kind)
        except ValueError as err:
            raise InputError(str(err)) from None
    if isinstance(obj, list):
        array = to_array(obj, where)
        found, tensor = _as_kind(array, kind, where)
        return [TensorInput(found, tensor, where, "nested list")]
    if isinstance(obj, dict):
        if isinstance(obj.get("results"), list):
            if not obj["results"]:
                raise InputError(f"{where}: the 'results' list is empty")
            inputs = []
            for i, item in enumerate(obj["results"]):
                if not isinstance(item, dict):
                    raise InputError(f"{where}[{i}]: each result must be a JSON object")
                inputs.append(_parse_object(item, kind, f"{where}[{i}]"))
            return inputs
        return [_parse_object(obj, kind, where)]
    raise InputError(f"{where}: expected a nested list or a JSON object, got {type(obj).__name__}")


def _reject_constant(token: str) -> float:
    raise InputError(f"the JSON holds {token}; every component must be a finite number")


def read_tensor_file(path: str | Path, kind: str | None = None) -> list[TensorInput]:
    """Read every tensor in a JSON file (``-`` reads standard input).

    Raises
    ------
    InputError
        Missing or unreadable file, malformed JSON, non-numeric or non-finite entries, a shape
        that is no known kind, or a shape that contradicts ``kind``.
    """
    import sys

    name = "stdin" if str(path) == "-" else Path(path).name
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text()
    except FileNotFoundError:
        raise InputError(f"tensor file {str(path)!r} does not exist; check the path") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read tensor file {str(path)!r}: {err}") from None
    if not text.strip():
        raise InputError(f"tensor file {str(path)!r} is empty; it must hold a JSON tensor")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{name} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); "
            "give a nested list or an object with 'kind' and 'voigt' or 'tensor'"
        ) from None
    return parse_tensor_json(obj, kind, where=name)
