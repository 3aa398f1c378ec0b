"""Helpers the file-based sources share: tensor shapes, frame rotations, structures, errors.

Private to :mod:`crystensor.data.sources`; nothing here is part of the public API.

Rejection reasons are written ``"<category>: <detail>"``; the consistency report counts them by
the category (the text before the first colon), so keep the categories short and stable.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crystensor.errors import InputError
from crystensor.tensors.harmonic import rotate_tensor as rotate_tensor  # the sources' import
from crystensor.tensors.kinds import Property, TensorKind, get_property

if TYPE_CHECKING:
    from pymatgen.core import Structure

# Rejection categories used by the sources (the consistency step adds its own).
MISSING_VALUE = "missing value"
BAD_VALUE = "unreadable value"
WRONG_SHAPE = "wrong shape"
BAD_STRUCTURE = "unreadable structure"
NOT_PERIODIC = "not periodic"
NO_IEEE = "no IEEE rotation"

_COMPRESSION = (".gz", ".bz2", ".xz")


def file_label(path: Path) -> str:
    """File name without compression and data suffixes: ``phonon_becs_epsilon.xyz.gz`` ->
    ``phonon_becs_epsilon``; used to build ids for entries that carry none."""
    name = path.name
    for suffix in _COMPRESSION:
        name = name.removesuffix(suffix)
    stem, _, _ = name.partition(".")
    return stem or name


def require_file(path: Path | None, source: str, what: str) -> Path:
    """``path`` as an existing file, or an :class:`InputError` that says what to give instead."""
    if path is None:
        raise InputError(f"source {source!r} reads {what}; give its path (--input FILE)")
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{str(p)!r} is a folder; source {source!r} reads one file ({what})")
    if not p.is_file():
        raise InputError(f"input file {str(p)!r} does not exist; check the path")
    return p


def property_of(target: str) -> Property:
    """The registered property ``target``, or an :class:`InputError` listing the valid names."""
    try:
        return get_property(target)
    except ValueError as err:
        raise InputError(str(err)) from None


def unsupported_target(
    source: str, target: str, supported: Iterable[str], where: str
) -> InputError:
    """The error for a target a file cannot provide, naming the targets it can."""
    property_of(target)  # an unknown property name gets the registry's own message
    names = ", ".join(supported) or "none"
    return InputError(
        f"{where} cannot provide target {target!r} (source {source!r}); it provides: {names}"
    )


def as_cartesian(value: Any, kind: TensorKind) -> np.ndarray:
    """A full Cartesian tensor of ``kind`` from a Cartesian, Voigt or flat (row-major) value.

    Accepted shapes: the Cartesian shape ``(3,)*rank``, the Voigt shape (``(3, 6)`` for rank 3,
    ``(6, 6)`` for rank 4, ``(6,)`` for rank 2), or either flattened in row-major order (9 or 6
    numbers for rank 2, 27 or 18 for rank 3, 81 or 36 for rank 4). Voigt order is
    ``xx, yy, zz, yz, xz, xy`` without factors of 2 (:mod:`crystensor.tensors.voigt`).

    Raises
    ------
    ValueError
        ``"wrong shape: ..."`` or ``"unreadable value: ..."`` (the rejection reason).
    """
    from crystensor.tensors import voigt

    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{BAD_VALUE}: not an array of numbers ({err})") from None
    cart = kind.cartesian_shape
    vshape = voigt.voigt_shape(kind.rank)
    if arr.shape == cart:
        return arr
    if arr.shape == vshape:
        return voigt.from_voigt(arr, kind.rank)
    if arr.ndim == 1 and arr.size == math.prod(cart):
        return arr.reshape(cart)
    if arr.ndim == 1 and arr.size == math.prod(vshape):
        return voigt.from_voigt(arr.reshape(vshape), kind.rank)
    raise ValueError(
        f"{WRONG_SHAPE}: expected a {kind.name} tensor of shape {cart} or Voigt {vshape}, "
        f"got shape {arr.shape}"
    )


def as_scalar(value: Any) -> float:
    """A float from a number (numpy scalars and 1-element arrays included).

    Raises
    ------
    ValueError
        ``"unreadable value: ..."`` or ``"wrong shape: ..."``.
    """
    if isinstance(value, bool | np.bool_) or value is None:
        raise ValueError(f"{BAD_VALUE}: expected a number, got {value!r}")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{BAD_VALUE}: expected a number, got {str(value)[:40]!r}") from None
    if arr.size != 1:
        raise ValueError(f"{WRONG_SHAPE}: expected one number, got shape {arr.shape}")
    return float(arr.reshape(()))


def ieee_rotation(structure: Structure) -> np.ndarray:
    """pymatgen's rotation ``R`` into the IEEE orientation of ``structure``'s crystal.

    ``Tensor.convert_to_ieee(structure)`` computes ``T_ieee = R . T`` (on every index), so a
    tensor stored in IEEE form is put into the frame of ``structure`` with ``R^T``; equivalently
    the structure is rotated into the IEEE frame (lattice rows ``L R^T``).

    Raises
    ------
    ValueError
        ``"no IEEE rotation: ..."`` when pymatgen cannot determine it.
    """
    from pymatgen.core.tensors import Tensor

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rot = np.asarray(Tensor.get_ieee_rotation(structure), dtype=float)
    except Exception as err:  # spglib and pymatgen raise many types here
        raise ValueError(f"{NO_IEEE}: {type(err).__name__}: {err}") from None
    if rot.shape != (3, 3) or not np.allclose(rot @ rot.T, np.eye(3), atol=1e-6):
        raise ValueError(f"{NO_IEEE}: pymatgen returned a matrix that is not a rotation")
    return rot


def rotate_structure(structure: Structure, rotation: np.ndarray) -> Structure:
    """The structure rotated by ``rotation``: lattice rows ``L R^T``, same fractional coords."""
    from pymatgen.core import Lattice, Structure

    lattice = Lattice(structure.lattice.matrix @ np.asarray(rotation).T, pbc=structure.lattice.pbc)
    return Structure(
        lattice,
        [site.species for site in structure],
        structure.frac_coords,
        site_properties=structure.site_properties or None,
    )


def structure_from_text(text: str, fmt: str) -> Structure:
    """Parse a POSCAR or CIF string (pymatgen warnings silenced).

    Raises
    ------
    ValueError
        ``"unreadable structure: ..."``.
    """
    from pymatgen.core import Structure

    return _parse_structure(lambda: Structure.from_str(text, fmt=fmt), f"{fmt} structure")


def structure_from_dict(obj: Mapping[str, Any]) -> Structure:
    """A pymatgen structure from its ``as_dict()`` form.

    Raises
    ------
    ValueError
        ``"unreadable structure: ..."``.
    """
    from pymatgen.core import Structure

    return _parse_structure(
        lambda: Structure.from_dict(dict(obj)), "pymatgen structure dict", detail=True
    )


def _parse_structure(parse: Callable[[], Structure], what: str, detail: bool = False) -> Structure:
    """``parse()`` with pymatgen's warnings silenced; any failure becomes
    ``"unreadable structure: not a <what> (<error type>[: <message>])"``.

    ``detail`` adds the error's message (useful for dicts; for text, pymatgen's parser messages
    say little and can be long).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return parse()
    except Exception as err:  # pymatgen raises many types on malformed input
        reason = f"{type(err).__name__}: {err}" if detail else type(err).__name__
        raise ValueError(f"{BAD_STRUCTURE}: not a {what} ({reason})") from None


def is_missing(value: Any) -> bool:
    """None, an empty string or a float NaN (pandas' empty cell)."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, float) and math.isnan(value)


def json_safe(obj: Any) -> Any:
    """``obj`` with numpy arrays and scalars turned into lists and numbers, NaN/inf into None."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    return str(obj)


class Progress:
    """Calls ``options.progress(done, total)`` at most every ``every`` entries (and at the end)."""

    def __init__(self, callback: Any, total: int | None, every: int = 1) -> None:
        self.callback = callback
        self.total = total
        self.every = max(1, every)
        self.done = 0

    def step(self) -> None:
        self.done += 1
        if self.callback is not None and (self.done % self.every == 0 or self.done == self.total):
            self.callback(self.done, self.total)

    def finish(self) -> None:
        if self.callback is not None:
            self.callback(self.done, self.total if self.total is not None else self.done)
