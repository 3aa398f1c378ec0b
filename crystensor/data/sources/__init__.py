"""Importers: one module per data source, each yielding :class:`RawEntry` objects.

A source's only job is to read its data and put every tensor in the Cartesian frame of the
structure it yields (rotating out of IEEE orientation where the data is stored that way). The
shared consistency step (:mod:`crystensor.data.consistency`) then measures the symmetry
violation, drops and reports bad entries and symmetrises the rest into
:class:`~crystensor.data.records.Record` objects. Problems with one entry are reported by
yielding a :class:`Rejected` instead of raising, so one bad row never stops an import.

Every source module exposes one function with this signature::

    def read(target: str, path: Path | None, options: FetchOptions) -> Iterator[RawEntry | Rejected]

``target`` is a property name from :data:`crystensor.tensors.kinds.PROPERTIES`; ``path`` the
source file or folder (None for the Materials Project). A source that cannot provide ``target``
at all, or whose file is unreadable, raises :class:`crystensor.errors.InputError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["FetchOptions", "RawEntry", "Rejected"]


@dataclass
class RawEntry:
    """One material from a source, tensor already in the frame of ``structure``.

    ``value`` is a full Cartesian tensor (``(3,)*rank`` array) or a float for scalar targets,
    in the target's units.
    """

    id: str
    structure: Structure
    value: np.ndarray | float
    source: dict
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Rejected:
    """An entry a source could not turn into a :class:`RawEntry`, with the reason."""

    id: str
    reason: str


@dataclass
class FetchOptions:
    """Options a source may use; each source ignores the ones it has no use for.

    Attributes
    ----------
    api_key : str or None
        Materials Project API key (never logged or printed).
    endpoint : str or None
        Materials Project API endpoint override (tests point it at a local server).
    key : str or None
        Name of the value in an extended XYZ frame's info (``--key``).
    cache_dir : Path or None
        Where a source may keep downloaded pages so an interrupted fetch can resume.
    progress : callable or None
        ``progress(done, total)`` called as entries are read; ``total`` may be None.
    timeout : float
        Seconds to wait for a network answer before giving up with a clear error.
    """

    api_key: str | None = field(default=None, repr=False)
    endpoint: str | None = None
    key: str | None = None
    cache_dir: Path | None = None
    progress: Callable[[int, int | None], None] | None = None
    timeout: float = 20.0
