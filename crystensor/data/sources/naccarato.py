"""Naccarato et al. 2019: principal values of the electronic dielectric tensor, no frame.

``../shared/data/naccarato-2019/`` holds ``refractive_index.csv.gz`` (the three principal
refractive indices ``Ref_index (1..3)`` of 4029 materials from high-throughput DFPT, keyed by
``MP_id``) and ``structures_optimade.jsonl.gz`` (the Materials Project's structures of 3677 of
them as OPTIMADE entries). The principal values of eps_inf are ``n_i ** 2``; their axes are not
given, and the structures are MP's rather than those of the calculation, so the data can only
label rotation-invariant quantities: each entry becomes the three principal values, sorted
ascending, with ``meta["label"] = "principal_values"`` (checked by
:class:`~crystensor.data.consistency.ConsistencyChecker` against the crystal system: three equal
values for a cubic crystal, two for a uniaxial one).

    crystensor fetch -s naccarato -i ../shared/data/naccarato-2019 -t dielectric-electronic \\
        -o nac.jsonl.gz

References
----------
G. Naccarato, G. Petretto, G.-M. Rignanese et al., "Searching for materials with high
refractive index and wide band gap: a first-principles high-throughput study", Phys. Rev.
Materials 3, 044602 (2019); structures: the Materials Project (Jain et al. 2013) via OPTIMADE.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from crystensor.data.consistency import PRINCIPAL_VALUES
from crystensor.data.sources import FetchOptions, RawEntry, Rejected
from crystensor.errors import InputError

__all__ = ["read"]

_VALUES = "refractive_index.csv.gz"
_STRUCTURES = "structures_optimade.jsonl.gz"
_COLUMNS = ("Ref_index (1)", "Ref_index (2)", "Ref_index (3)")
_SOURCE = {
    "dataset": "naccarato-2019",
    "citation": "Naccarato et al., Phys. Rev. Materials 3, 044602 (2019)",
    "quantity": "principal values of eps_inf (n_i^2), sorted; no frame",
}


def _files(path: Path) -> tuple[Path, Path]:
    folder = path if path.is_dir() else path.parent
    values, structures = folder / _VALUES, folder / _STRUCTURES
    for needed in (values, structures):
        if not needed.is_file():
            raise InputError(
                f"{needed.name} is not in {folder}; give the naccarato-2019 folder "
                f"(with {_VALUES} and {_STRUCTURES})"
            )
    return values, structures


def _structure(attributes: dict[str, Any]) -> Any:
    from pymatgen.core import Lattice, Structure

    names = attributes["species_at_sites"]
    symbols = {
        s["name"]: s["chemical_symbols"][0]
        for s in attributes.get("species") or []
        if len(s.get("chemical_symbols") or []) == 1
    }
    return Structure(
        Lattice(attributes["lattice_vectors"]),
        [symbols.get(name, name) for name in names],
        attributes["cartesian_site_positions"],
        coords_are_cartesian=True,
    )


def _read_structures(path: Path) -> dict[str, dict[str, Any]]:
    out = {}
    with gzip.open(path, "rt") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                out[str(entry["attributes"]["immutable_id"])] = entry["attributes"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise InputError(
                    f"{path.name} line {number} is not an OPTIMADE structure ({err})"
                ) from None
    return out


def read(target: str, path: Path | None, options: FetchOptions) -> Iterator[RawEntry | Rejected]:
    """Entries of sorted principal values of eps_inf (see the module docstring).

    Raises
    ------
    InputError
        A target other than ``dielectric-electronic``, or missing / unreadable files.
    """
    if target != "dielectric-electronic":
        raise InputError(
            f"naccarato-2019 holds refractive indices (the electronic dielectric tensor's "
            f"principal values), not {target!r}; use -t dielectric-electronic"
        )
    if path is None:
        raise InputError("give the naccarato-2019 folder with -i")
    values_path, structures_path = _files(Path(path))
    structures = _read_structures(structures_path)
    with gzip.open(values_path, "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = [c for c in ("MP_id", *_COLUMNS) if rows and c not in rows[0]]
    if missing:
        raise InputError(f"{values_path.name} lacks the column(s) {', '.join(missing)}")
    for done, row in enumerate(rows, 1):
        if options.progress is not None:
            options.progress(done, len(rows))
        entry_id = str(row["MP_id"])
        yield _entry(entry_id, row, structures.get(entry_id))


def _entry(entry_id: str, row: dict[str, str], attributes: dict | None) -> RawEntry | Rejected:
    try:
        indices = [float(row[c]) for c in _COLUMNS]
    except (TypeError, ValueError):
        return Rejected(entry_id, f"not a number: refractive indices {[row[c] for c in _COLUMNS]}")
    if not all(math.isfinite(n) and n > 0 for n in indices):
        return Rejected(entry_id, f"non-finite value: refractive indices {indices}")
    if attributes is None:
        return Rejected(entry_id, f"no structure: {entry_id} is not in {_STRUCTURES}")
    try:
        structure = _structure(attributes)
    except Exception as err:  # a malformed OPTIMADE entry
        return Rejected(entry_id, f"not a structure: {type(err).__name__}: {err}")
    return RawEntry(
        id=entry_id,
        structure=structure,
        value=np.sort(np.square(indices)),
        source=dict(_SOURCE),
        meta={
            "label": PRINCIPAL_VALUES,
            "refractive_indices": indices,
            "formula": row.get("Formula"),
        },
    )
