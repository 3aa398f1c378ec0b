"""Dataset records -> HDF5 graph store: the library behind ``crystensor featurize``.

:func:`featurize` reads one or several JSON Lines record files (:mod:`crystensor.data.records`)
in the order given, turns every structure into a periodic radius graph
(:func:`crystensor.data.graph.build_graph`), puts its target in both Cartesian and irreducible
form, and writes one store (:mod:`crystensor.data.store`). Records that cannot become a
training example are *rejected*, not fatal: each rejection (file, record position in it, id, a
short code and a sentence) is reported and written to ``<store stem>.featurize-rejects.jsonl``
next to the store (a :class:`~crystensor.data.rejects.Rejection` per line, the type ``fetch``
uses for its own ``<stem>.fetch-rejects.jsonl``, which is never touched here). The rejection
codes:

=======================  ===================================================================
``bad-structure``        the structure dict cannot be read, is empty or partially occupied
``unsupported-element``  an element outside the atom features (Z > 94, dummy species)
``isolated-atom``        an atom without neighbour within the cutoff (try ``auto_cutoff``)
``bad-value``            the target is not finite, has the wrong shape or index symmetry
``units``                the record states units other than the target's
``duplicate-id``         an id already seen in an earlier record (the first one is kept)
``duplicate-structure``  with ``dedupe="structure"``: the same crystal as an earlier kept
                         record (:mod:`crystensor.data.dedupe`); ``duplicate_of`` names it
``thin-cell``            a neighbour image more than 127 cells away
=======================  ===================================================================

Combining sources: records of one property from several files (e.g. matminer and
StrainTensorNet elastic tensors) go into one store with ``featurize([a, b], ...)``. Earlier files
win: a later record whose id was already kept is a ``duplicate-id``, and with
``dedupe="structure"`` a later record whose structure matches a kept one (same reduced formula
and space group, and a :class:`~pymatgen.analysis.structure_matcher.StructureMatcher` fit) is a
``duplicate-structure``, which is how sources without shared ids are combined. The store's
``sources`` attribute lists every file (name, path, sha256, number of records) in order; the
stored ``record_index`` counts records across the files in that order, so graph ``g`` came from
the source whose cumulative record range holds ``record_index[g]``.

Problems with the file itself (missing, not JSON Lines, a record of another target) raise
:class:`~crystensor.errors.InputError`, and so does a run in which every record is rejected.

Large files are built in deterministic slices (``shard=(i, n)``: the ``i``-th of ``n``
contiguous blocks of records, 0-based) on several machines and combined with
:func:`merge_stores`; the merged store equals the one a single run writes (same graphs, same
order, same split), apart from the creation time. Sharding takes one record file and id
deduplication: duplicates in different shards would escape a per-shard check.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from crystensor.data.consistency import PRINCIPAL_VALUES
from crystensor.data.rejects import Rejection, read_rejects, rejects_path, write_rejects
from crystensor.data.store import (
    DEFAULT_SPLIT_FRACTIONS,
    SPLIT_NAMES,
    GraphStore,
    StoredGraph,
    StoreWriter,
    file_sha256,
)
from crystensor.errors import InputError
from crystensor.parallel import ForkPool

__all__ = [
    "DEDUPE_MODES",
    "INDEX_SYMMETRY_TOLERANCE",
    "FeaturizeReport",
    "Rejection",
    "check_output",
    "featurize",
    "merge_stores",
    "rejects_path_for",
    "shard_bounds",
]

log = logging.getLogger(__name__)

INDEX_SYMMETRY_TOLERANCE = 1e-3
"""Largest relative index asymmetry of a target tensor that is symmetrised rather than rejected."""

DEDUPE_MODES = ("id", "structure")
"""How :func:`featurize` finds repeated materials: by id only, or by id and then by structure."""

_WINDOW = 1024  # records handed to the pool at a time (bounds memory, keeps order)
_CHUNK = 16  # records per task sent to a worker

Progress = Callable[[int, int | None], None]


@dataclass
class FeaturizeReport:
    """What :func:`featurize` or :func:`merge_stores` did.

    Attributes
    ----------
    output : Path
        The store written.
    target, kind, units : str
    records : int
        Records read (in this shard) or, for a merge, graphs plus rejections of the inputs.
    graphs, nodes, edges : int
        Written to the store.
    rejected : list of Rejection
    rejects_path : Path or None
        The ``.featurize-rejects.jsonl`` file, if anything was rejected.
    cutoff : float
        Angstrom.
    auto_cutoff : bool
    extended : int
        Graphs whose radius ``auto_cutoff`` had to grow.
    split_counts : dict of str to int
        Graphs in train / val / test.
    split_method : str
        ``"random"`` (by material id) or ``"family"`` (by chemical system).
    seconds : float
        Wall time.
    workers : int
    shard : (i, n) or None
    inputs : list of Path
    dedupe : str
        ``"id"`` or ``"structure"`` (:data:`DEDUPE_MODES`).
    """

    output: Path
    target: str
    kind: str
    units: str
    records: int
    graphs: int
    nodes: int
    edges: int
    rejected: list[Rejection]
    rejects_path: Path | None
    cutoff: float
    auto_cutoff: bool
    extended: int
    split_counts: dict[str, int]
    seconds: float
    workers: int
    shard: tuple[int, int] | None
    inputs: list[Path] = field(default_factory=list)
    dedupe: str = "id"
    split_method: str = "random"

    @property
    def structures_per_second(self) -> float:
        """Records processed per second of wall time."""
        return self.records / self.seconds if self.seconds > 0 else math.inf

    def rejection_counts(self) -> dict[str, int]:
        """Number of rejections per code."""
        return dict(Counter(r.code for r in self.rejected))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        out = asdict(self)
        out["output"] = str(self.output)
        out["rejects_path"] = str(self.rejects_path) if self.rejects_path else None
        out["inputs"] = [str(p) for p in self.inputs]
        out["shard"] = list(self.shard) if self.shard else None
        out["structures_per_second"] = self.structures_per_second
        return out


def rejects_path_for(store: str | os.PathLike) -> Path:
    """``graphs.h5`` -> ``graphs.featurize-rejects.jsonl`` (same folder).

    >>> rejects_path_for("data/elastic.h5").as_posix()
    'data/elastic.featurize-rejects.jsonl'
    """
    return rejects_path(store, "featurize")


def check_output(output: str | os.PathLike, *, overwrite: bool = True) -> None:
    """Raise :class:`InputError` unless the store and its rejects file can be written.

    What ``crystensor featurize`` checks before any work: a regular file (HDF5 seeks, so no
    FIFO or device, and no ``.gz``: the store compresses its arrays itself) in a folder that
    can be written; ``overwrite=False`` refuses an existing store.
    """
    from crystensor.io.atomic import check_writable

    check_writable(output, "graph store", overwrite=overwrite, gzip_ok=False, streams_ok=False)
    check_writable(rejects_path_for(output), "rejects file")


def shard_bounds(shard: tuple[int, int], total: int) -> tuple[int, int]:
    """Record range ``[start, stop)`` of shard ``i`` of ``n`` over ``total`` records.

    Contiguous blocks ``[i * total // n, (i + 1) * total // n)``, so that concatenating the
    shards in order gives the records in file order.

    >>> [shard_bounds((i, 3), 10) for i in range(3)]
    [(0, 3), (3, 6), (6, 10)]
    """
    i, n = _check_shard(shard)
    return i * total // n, (i + 1) * total // n


def _check_shard(shard: Sequence[int]) -> tuple[int, int]:
    try:
        i, n = (int(v) for v in shard)
    except (TypeError, ValueError):
        raise InputError(f"shard must be (i, n), got {shard!r}") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"shard {i}/{n} is out of range: use i/n with 0 <= i < n")
    return i, n


# -- per-record work (runs in the pool's workers) ------------------------------------------


@dataclass(frozen=True)
class _Config:
    target: str
    kind: str
    units: str
    cutoff: float
    auto_cutoff: bool
    max_cutoff: float
    files: tuple[str, ...]
    offsets: tuple[int, ...]  # records in the files before each one
    label: str = "tensor"  # or PRINCIPAL_VALUES (crystensor.data.store.LABELS)


@dataclass(frozen=True)
class _Fatal:
    message: str


_CONFIG: _Config | None = None


def _init_worker(config: _Config) -> None:
    global _CONFIG
    _CONFIG = config


def _parse(line: str, number: int, file: str):
    from crystensor.data.records import Record

    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        return _Fatal(f"{file} line {number} is not valid JSON ({err.msg}); not a record file?")
    if not isinstance(obj, dict):
        return _Fatal(f"{file} line {number} is not a JSON object; not a record file?")
    try:
        return Record.from_dict(obj, f"{file} line {number}")
    except InputError as err:
        return _Fatal(str(err))


def _target_value(record, kind, label: str = "tensor") -> tuple[np.ndarray, np.ndarray] | str:
    """The symmetrised Cartesian target and its irreps, or the reason it is unusable.

    A principal-value record (``label`` :data:`PRINCIPAL_VALUES`, three values sorted
    ascending) gives ``diag(v)``: the store's tensor layout, in no particular frame.
    """
    from crystensor.tensors.harmonic import to_irreps

    try:
        value = np.asarray(record.value, dtype=float)
    except (TypeError, ValueError):
        return f"the {kind.name} value is not a number or a nested list of numbers"
    if label == PRINCIPAL_VALUES:
        if value.shape != (3,) or kind.cartesian_shape != (3, 3):
            return f"principal values need three numbers of a 3x3 tensor, got shape {value.shape}"
        if not np.all(np.isfinite(value)):
            return "the value is not finite (NaN or infinity)"
        if np.any(np.diff(value) < 0):
            return "the principal values are not sorted ascending"
        value = np.diag(value)
        return value, to_irreps(value, kind)
    if kind.rank == 0 and value.shape == (1,):
        value = value.reshape(())
    if value.shape != kind.cartesian_shape:
        if kind.rank > 2 and value.shape == kind.voigt_shape:
            value = kind.from_voigt(value)
        else:
            need = kind.cartesian_shape or "a number"
            return f"the value has shape {value.shape}, a {kind.name} target needs {need}"
    if not np.all(np.isfinite(value)):
        return "the value is not finite (NaN or infinity)"
    if kind.rank > 0:
        asym = kind.index_asymmetry(value)
        if asym > INDEX_SYMMETRY_TOLERANCE:
            return (
                f"the tensor breaks the {kind.name} index symmetry ({kind.index_symmetry}) "
                f"by {100 * asym:.2g} %"
            )
        value = kind.symmetrize_indices(value)
    return value, to_irreps(value, kind)


def _structure(d: dict):
    """``Structure.from_dict`` for the common case, ~3x faster; the graph is the same.

    ``Structure.from_dict`` rebuilds every site through monty's JSON round trip, which is half
    of the time featurization takes. An ordered structure of plain elements is built directly
    from the lattice matrix, the element symbols and the fractional coordinates (site
    properties and oxidation states do not enter the graph); anything else goes through
    pymatgen's own reader.
    """
    from pymatgen.core import Lattice, Structure

    try:
        lattice = d["lattice"]
        symbols, coords = [], []
        for site in d["sites"]:
            (species,) = site["species"]
            if species.get("occu", 1) != 1 or "@class" in species:
                raise ValueError("disordered site or special species")
            symbols.append(species["element"])
            coords.append(site["abc"])
        pbc = tuple(lattice.get("pbc", (True, True, True)))
        return Structure(Lattice(lattice["matrix"], pbc=pbc), symbols, coords)
    except Exception:
        return Structure.from_dict(d)


def _process(item: tuple[int, int, int, str]) -> StoredGraph | Rejection | _Fatal:
    """One record line ``(file number, index, line number, text)`` -> graph, rejection or fatal."""
    from crystensor.data.elements import check_species
    from crystensor.data.graph import IsolatedAtomError, build_graph
    from crystensor.tensors.kinds import get_kind

    config = _CONFIG
    if config is None:
        raise RuntimeError("featurize worker used before _init_worker")
    file_number, index, number, line = item
    file = config.files[file_number]
    record = _parse(line, number, file)
    if isinstance(record, _Fatal):
        return record
    rid = str(record.id)
    if record.target != config.target:
        return _Fatal(
            f"{file} line {number} ({rid}) holds target {record.target!r}, not "
            f"{config.target!r}; a record file must hold one target"
        )

    def reject(code: str, reason: str) -> Rejection:
        return Rejection(
            id=rid, code=code, reason=reason, stage="featurize", file=file, index=index
        )

    if record.units and record.units != config.units:
        return reject("units", f"units {record.units!r}, expected {config.units!r}")
    kind = get_kind(config.kind)
    if _label_of(record) != config.label:
        return _Fatal(
            f"{file} line {number} ({rid}) holds {_label_of(record)} labels, but the records "
            f"before it hold {config.label}; featurize each kind of label into its own store"
        )
    target = _target_value(record, kind, config.label)
    if isinstance(target, str):
        return reject("bad-value", target)
    try:
        structure = _structure(record.structure)
    except Exception as err:  # pymatgen raises many types for a malformed dict
        return reject("bad-structure", f"cannot read the structure ({err})")
    if len(structure) == 0:
        return reject("bad-structure", "the structure has no sites")
    if not structure.is_ordered:
        return reject("bad-structure", "partially occupied sites; pick one configuration")
    try:
        check_species(structure.species)
    except InputError as err:
        return reject("unsupported-element", str(err))
    try:
        graph = build_graph(
            structure,
            config.cutoff,
            auto_extend=config.auto_cutoff,
            max_cutoff=config.max_cutoff,
        )
    except IsolatedAtomError as err:
        return reject("isolated-atom", str(err))
    except InputError as err:
        return reject("bad-structure", str(err))
    if graph.num_edges and np.abs(graph.edge_shift).max() > np.iinfo(np.int8).max:
        return reject("thin-cell", "a neighbour image lies more than 127 cells away")
    symmetry = record.symmetry or {}
    return StoredGraph(
        id=rid,
        atomic_numbers=graph.atomic_numbers.astype(np.uint8),
        positions=graph.positions,
        cell=graph.cell,
        edge_index=graph.edge_index.astype(np.int32),
        edge_shift=graph.edge_shift.astype(np.int8),
        target_cartesian=target[0],
        target_irreps=target[1],
        cutoff=graph.cutoff,
        formula=record.formula or structure.composition.reduced_formula,
        crystal_system=str(symmetry.get("crystal_system") or ""),
        space_group_number=int(symmetry.get("space_group_number") or 0),
        record_index=config.offsets[file_number] + index,
    )


# -- reading the record files --------------------------------------------------------------

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _lines(path: Path) -> Iterator[tuple[int, int, str]]:
    """``(record index, line number, text)`` of every non-blank line."""
    from crystensor.data.records import open_text

    index = 0
    try:
        with open_text(path) as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    yield index, number, line
                    index += 1
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read {path.name}: {err}") from None


def _items(paths: Sequence[Path]) -> Iterator[tuple[int, int, int, str]]:
    """``(file number, record index, line number, text)`` over the files in order."""
    for file_number, path in enumerate(paths):
        for index, number, line in _lines(path):
            yield file_number, index, number, line


def _count_records(path: Path) -> int:
    return sum(1 for _ in _lines(path))


def _label_of(record) -> str:
    """``"tensor"`` or :data:`PRINCIPAL_VALUES`: what a record's value is."""
    return PRINCIPAL_VALUES if (record.meta or {}).get("label") == PRINCIPAL_VALUES else "tensor"


def _record_paths(
    records_path: str | os.PathLike | Sequence[str | os.PathLike], out: Path, target: str
) -> tuple[list[Path], str]:
    """The record files as paths, each checked: exists, given once, records of ``target``;
    and their label (``"tensor"`` or :data:`PRINCIPAL_VALUES`, the same in every file)."""
    if isinstance(records_path, str | os.PathLike):
        paths = [Path(records_path)]
    else:
        paths = [Path(p) for p in records_path]
    if not paths:
        raise InputError("give at least one record file to featurize")
    seen: dict[Path, Path] = {}
    labels: set[str] = set()
    for src in paths:
        if not src.is_file():
            raise InputError(
                f"record file {str(src)!r} does not exist; create it with crystensor fetch"
            )
        if src.resolve() in seen:
            raise InputError(f"the record file {src.name} is given twice; give each file once")
        seen[src.resolve()] = src
        if out.exists() and out.resolve() == src.resolve():
            raise InputError(f"the output {out.name} would overwrite the record file")
        with open(src, "rb") as fh:
            if fh.read(len(_HDF5_SIGNATURE)) == _HDF5_SIGNATURE:
                raise InputError(
                    f"{src.name} is an HDF5 graph store, not a record file; to combine stores "
                    "use merge_stores (crystensor featurize --merge)"
                )
        lines = _lines(src)
        first = next(lines, None)
        lines.close()
        if first is None:
            raise InputError(f"{src.name} holds no records")
        record = _parse(first[2], first[1], src.name)
        if isinstance(record, _Fatal):
            raise InputError(record.message)
        labels.add(_label_of(record))
        if len(labels) > 1:
            raise InputError(
                f"{src.name} holds {_label_of(record)} labels and an earlier file the other "
                "kind; featurize tensors and principal values into separate stores"
            )
        if record.target != target:
            raise InputError(
                f"{src.name} holds {record.target!r} records, not {target!r}; pass --target "
                f"{record.target} or use a record file of {target}"
            )
    return paths, labels.pop()


def _featurize_one(config: _Config, item: tuple[int, int, int, str]) -> Any:
    """:func:`_process` of ``item`` in a process set up for ``config`` (here or forked)."""
    if _CONFIG is not config:
        _init_worker(config)
    return _process(item)


class _Duplicates:
    """The graphs kept so far, by id and (``dedupe="structure"``) by crystal structure.

    Runs in the main process on finished graphs, in record order, so "earlier" is the order of
    the files and of the records in them whatever the number of workers.
    """

    def __init__(self, dedupe: str, config: _Config) -> None:
        from crystensor.data.dedupe import StructureIndex

        self.config = config
        self.kept: dict[str, int] = {}  # id -> global record index
        self.structures = StructureIndex() if dedupe == "structure" else None

    def _where(self, record_index: int) -> tuple[int, int]:
        """Global record index -> (file number, position in that file)."""
        k = bisect_right(self.config.offsets, record_index) - 1
        return k, record_index - self.config.offsets[k]

    def _describe(self, record_index: int, file_number: int) -> str:
        k, index = self._where(record_index)
        where = "earlier in the file" if k == file_number else f"in {self.config.files[k]}"
        return f"{where} (record {index})"

    def check(self, graph: StoredGraph) -> Rejection | None:
        """The rejection of ``graph`` as a duplicate, or None (then it is kept)."""
        k, index = self._where(graph.record_index)
        file = self.config.files[k]
        first = self.kept.get(graph.id)
        if first is not None:
            return Rejection(
                id=graph.id,
                code="duplicate-id",
                reason=f"the id already occurred {self._describe(first, k)}; the first one is kept",
                stage="featurize",
                file=file,
                index=index,
            )
        if self.structures is not None:
            earlier = self.structures.add(_graph_structure(graph), graph.id)
            if isinstance(earlier, str):
                return Rejection(
                    id=graph.id,
                    code="duplicate-structure",
                    reason=(
                        f"the same crystal as {earlier} {self._describe(self.kept[earlier], k)} "
                        "(same reduced formula and space group, StructureMatcher fit); the first "
                        "one is kept"
                    ),
                    stage="featurize",
                    file=file,
                    index=index,
                    duplicate_of=earlier,
                )
        self.kept[graph.id] = graph.record_index
        return None


def _graph_structure(graph: StoredGraph):
    """The pymatgen structure of a graph (cell, Z and Cartesian positions are all it needs)."""
    from pymatgen.core import Lattice, Structure

    return Structure(
        Lattice(graph.cell),
        np.asarray(graph.atomic_numbers).tolist(),
        graph.positions,
        coords_are_cartesian=True,
    )


def _check_common(cutoff: float, max_cutoff: float | None, workers: int) -> float:
    if not (isinstance(cutoff, int | float) and math.isfinite(cutoff) and cutoff > 0):
        raise InputError(f"cutoff must be a positive number of Angstrom, got {cutoff!r}")
    max_c = float(max_cutoff) if max_cutoff is not None else max(10.0, float(cutoff))
    if max_c < cutoff:
        raise InputError(f"max_cutoff ({max_c:g}) must not be below cutoff ({cutoff:g})")
    if not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    return max_c


def _check_dedupe(dedupe: str, shard: tuple[int, int] | None, files: int) -> None:
    if dedupe not in DEDUPE_MODES:
        raise InputError(f"dedupe must be one of {', '.join(DEDUPE_MODES)}, got {dedupe!r}")
    if shard is not None and files > 1:
        raise InputError(
            f"sharding takes one record file, not {files}; featurize several files in one run "
            "(more workers make it faster)"
        )
    if shard is not None and dedupe == "structure":
        raise InputError(
            "sharding cannot be combined with structure dedupe (a duplicate in another shard "
            "would be missed); featurize the records in one run"
        )


def _write_rejects(path: Path, rejected: list[Rejection]) -> Path | None:
    if rejected:
        return write_rejects(path, rejected)
    # a stale list of this stage's earlier run would be misleading; the name is featurize's own,
    # so fetch's list of the same stem is never touched
    if path.is_file():
        path.unlink()
    return None


def _split_counts(store: GraphStore) -> dict[str, int]:
    codes = store.read("split")
    return {name: int((codes == k).sum()) for k, name in enumerate(SPLIT_NAMES)}


def featurize(
    records_path: str | os.PathLike | Sequence[str | os.PathLike],
    target: str,
    output: str | os.PathLike,
    *,
    cutoff: float = 5.0,
    auto_cutoff: bool = False,
    max_cutoff: float | None = None,
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    dedupe: str = "id",
    progress: Progress | None = None,
    split_seed: int = 0,
    split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    split_method: str = "random",
    store_node_features: bool = False,
    overwrite: bool = True,
) -> FeaturizeReport:
    """Build the HDF5 graph store of one record file, or of several combined.

    Parameters
    ----------
    records_path : path or sequence of path
        JSON Lines record file(s) (``.gz`` allowed), every record of property ``target``. Files
        are read in the order given and earlier records win over later duplicates.
    target : str
        Property name from :data:`crystensor.tensors.kinds.PROPERTIES` (``elastic``,
        ``dielectric``, ``band-gap``, ...; ``bandgap`` is accepted); must be the records' target.
    output : path
        The store to write (atomically: temp name, then rename). Rejections go to
        :func:`rejects_path_for` ``(output)``.
    cutoff : float
        Neighbour radius, Angstrom.
    auto_cutoff : bool
        Grow the radius in 1 Angstrom steps (up to ``max_cutoff``) for a structure with an
        isolated atom instead of rejecting it; the radius used is stored per graph.
    max_cutoff : float, optional
        Largest radius ``auto_cutoff`` may use (default ``max(10, cutoff)``).
    workers : int
        Processes building graphs; results are written in record order whatever the number.
    shard : (i, n), optional
        Build only the ``i``-th (0-based) of ``n`` contiguous slices of the records of a single
        file (see :func:`shard_bounds`); combine the shards with :func:`merge_stores`.
    dedupe : {"id", "structure"}
        ``"id"``: a record whose id was kept already is rejected (``duplicate-id``).
        ``"structure"``: also a record whose structure matches a kept one
        (``duplicate-structure``; :mod:`crystensor.data.dedupe` gives the matcher settings).
    progress : callable, optional
        ``progress(done, total)`` after each record.
    split_seed, split_fractions, split_method
        The train/val/test split stored with the graphs (:func:`~crystensor.data.store.make_split`):
        ``"random"`` by material id, or ``"family"`` by chemical system (every set of elements
        wholly in one split).
    store_node_features : bool
        Also store the ``(N, 131)`` atom features (else rebuilt from Z when read).
    overwrite : bool
        False: refuse an existing store (``crystensor featurize`` without ``--force``).

    Returns
    -------
    FeaturizeReport

    Raises
    ------
    InputError
        Unknown target, a record file of another target or not a record file, a file given
        twice, bad options (a shard of several files or with structure dedupe), an output that
        cannot be written (:func:`check_output`), or every record rejected (the rejections are
        still written).
    """
    from crystensor.tensors.kinds import PROPERTIES, property_name

    start_time = time.perf_counter()
    out = Path(output)
    target = property_name(target)  # bandgap -> band-gap
    if target not in PROPERTIES:
        raise InputError(f"unknown target {target!r}; choose one of {', '.join(PROPERTIES)}")
    prop = PROPERTIES[target]
    max_c = _check_common(cutoff, max_cutoff, workers)
    if shard is not None:
        shard = _check_shard(shard)
    paths, label = _record_paths(records_path, out, target)
    check_output(out, overwrite=overwrite)
    _check_dedupe(dedupe, shard, len(paths))
    names = " + ".join(p.name for p in paths)

    counts = [_count_records(p) for p in paths]
    total = sum(counts)
    items: Iterable[tuple[int, int, int, str]] = _items(paths)
    if shard is not None:
        lo, hi = shard_bounds(shard, total)
        if hi == lo:
            raise InputError(
                f"shard {shard[0]}/{shard[1]} of {names} holds no records ({total} in all); "
                "use fewer shards"
            )
        items = islice(items, lo, hi)
        total = hi - lo
    config = _Config(
        target=target,
        kind=prop.kind,
        units=prop.units,
        cutoff=float(cutoff),
        auto_cutoff=bool(auto_cutoff),
        max_cutoff=max_c,
        files=tuple(p.name for p in paths),
        offsets=tuple(int(k) for k in np.cumsum([0, *counts[:-1]])),
        label=label,
    )
    sources = [
        {"file": p.name, "path": str(p.resolve()), "sha256": file_sha256(p), "records": n}
        for p, n in zip(paths, counts, strict=True)
    ]
    duplicates = _Duplicates(dedupe, config)
    rejected: list[Rejection] = []
    extended = done = 0
    log.info("featurizing %d %s records from %s with %d worker(s)", total, target, names, workers)
    try:
        # the pool forks before the store is opened, so no worker inherits its HDF5 handle
        with (
            ForkPool(_featurize_one, config, workers) as pool,
            StoreWriter(
                out,
                target=target,
                cutoff=cutoff,
                label=label,
                auto_cutoff=auto_cutoff,
                max_cutoff=max_c,
                sources=sources,
                shard=shard,
                store_node_features=store_node_features,
                split_seed=split_seed,
                split_fractions=split_fractions,
                split_method=split_method,
            ) as writer,
        ):
            for _, result in pool.map(items, window=_WINDOW, chunksize=_CHUNK):
                done += 1
                if isinstance(result, _Fatal):
                    raise InputError(result.message)
                if isinstance(result, StoredGraph):
                    result = duplicates.check(result) or result
                if isinstance(result, Rejection):
                    rejected.append(result)
                    log.debug("rejected %s: %s", result.id, result.reason)
                else:
                    extended += result.cutoff > cutoff
                    writer.append(result)
                if progress is not None:
                    progress(done, total)
            if writer.num_graphs == 0:
                raise _AllRejected()
    except _AllRejected:
        path = _write_rejects(rejects_path_for(out), rejected)
        reasons = "; ".join(f"{r.id}: {r.reason}" for r in rejected[:3])
        raise InputError(
            f"all {len(rejected)} records of {names} were rejected, no store written "
            f"(see {path.name if path else 'the log'}): {reasons}"
        ) from None
    if duplicates.structures is not None:
        log.info(
            "structure dedupe: %d comparisons in %.1f s",
            duplicates.structures.comparisons,
            duplicates.structures.seconds,
        )
    rejects = _write_rejects(rejects_path_for(out), rejected)
    store = GraphStore(out)
    report = FeaturizeReport(
        output=out,
        target=target,
        kind=prop.kind,
        units=prop.units,
        records=done,
        graphs=len(store),
        nodes=store.num_nodes,
        edges=store.num_edges,
        rejected=rejected,
        rejects_path=rejects,
        cutoff=float(cutoff),
        auto_cutoff=bool(auto_cutoff),
        extended=int(extended),
        split_counts=_split_counts(store),
        seconds=time.perf_counter() - start_time,
        workers=workers,
        shard=shard,
        inputs=paths,
        dedupe=dedupe,
        split_method=store.split_info["method"],
    )
    if rejected:
        log.warning(
            "%d of %d records rejected (%s); see %s",
            len(rejected),
            done,
            ", ".join(f"{k}: {v}" for k, v in report.rejection_counts().items()),
            rejects,
        )
    return report


class _AllRejected(Exception):
    pass


_MERGE_KEYS = (
    "target",
    "kind",
    "units",
    "cutoff",
    "auto_cutoff",
    "max_cutoff",
    "feature_set",
    "feature_dim",
    "feature_table_sha256",
    "split_seed",
    "split_fractions",
    "split_method",
)
_MERGE_BLOCK = 4096  # graphs copied at a time


def _merge_order(stores: list[GraphStore]) -> list[GraphStore]:
    """Shards of one source in shard order; anything else in the order given."""
    shards = [s.attrs["shard"] for s in stores]
    if any(sh is None for sh in shards):
        if any(sh is not None for sh in shards):
            log.warning("merging shards with whole stores: kept in the order given")
        return stores
    by_index: dict[int, GraphStore] = {}
    counts = {n for _, n in shards}
    # the same record file, wherever each shard was built
    sources = {
        tuple(sorted((src.get("file"), src.get("sha256")) for src in s.attrs["sources"]))
        for s in stores
    }
    if len(counts) != 1 or len(sources) != 1:
        log.warning("the inputs are shards of different runs: kept in the order given")
        return stores
    for store, (i, n) in zip(stores, shards, strict=True):
        if i in by_index:
            raise InputError(
                f"shard {i}/{n} given twice ({by_index[i].path.name} and {store.path.name})"
            )
        by_index[i] = store
    n = counts.pop()
    if len(by_index) != n:
        missing = sorted(set(range(n)) - set(by_index))
        log.warning("merging %d of %d shards; missing %s", len(by_index), n, missing)
    return [by_index[i] for i in sorted(by_index)]


def merge_stores(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    *,
    progress: Progress | None = None,
    overwrite: bool = True,
) -> FeaturizeReport:
    """Combine graph stores (typically the shards of one :func:`featurize` run) into one.

    The inputs must agree on target, cutoff, feature set and split settings (seed, fractions
    and method). Shards of one record file are put in shard order, whatever order they are
    given in; other stores keep the order given. The split is recomputed over all ids with the
    inputs' method (the same split a single run gives)
    and the inputs' ``.featurize-rejects.jsonl`` files are concatenated next to the output.

    Parameters
    ----------
    inputs : sequence of path
        Stores to merge.
    output : path
        The merged store (written atomically).
    progress : callable, optional
        ``progress(graphs_done, graphs_total)``.
    overwrite : bool
        False: refuse an existing output store (``featurize --merge`` without ``--force``).

    Raises
    ------
    InputError
        No inputs, an unreadable or foreign store, attributes that disagree (named), the
        output among the inputs or not writable (:func:`check_output`), the same shard twice
        or a material id in two inputs.
    """
    start_time = time.perf_counter()
    if not inputs:
        raise InputError("nothing to merge: give the graph stores to combine")
    out = Path(output)
    paths = [Path(p) for p in inputs]
    for p in paths:
        if out.exists() and p.exists() and out.resolve() == p.resolve():
            raise InputError(f"the output {out.name} is also an input; choose another name")
    check_output(out, overwrite=overwrite)
    stores = [GraphStore(p) for p in paths]
    first = stores[0]
    for store in stores[1:]:
        for key in _MERGE_KEYS:
            if store.attrs[key] != first.attrs[key]:
                raise InputError(
                    f"cannot merge {first.path.name} and {store.path.name}: {key} is "
                    f"{first.attrs[key]!r} in one and {store.attrs[key]!r} in the other"
                )
        if store.has_node_features != first.has_node_features:
            raise InputError(
                f"cannot merge {first.path.name} and {store.path.name}: only one stores "
                "node_features"
            )
        if store.label != first.label:
            raise InputError(
                f"cannot merge {first.path.name} and {store.path.name}: one holds "
                f"{first.label} labels, the other {store.label}"
            )
    stores = _merge_order(stores)
    sources, seen_sources = [], set()
    for store in stores:
        for source in store.attrs["sources"]:
            key = (source.get("file"), source.get("sha256"))
            if key not in seen_sources:
                seen_sources.add(key)
                sources.append(source)
    total = sum(len(s) for s in stores)
    attrs = first.attrs
    done = 0
    graph_level = (
        "cell",
        "graph_cutoff",
        "target_cartesian",
        "target_irreps",
        "space_group_number",
        "record_index",
        "ids",
        "formula",
        "crystal_system",
    )
    with StoreWriter(
        out,
        target=attrs["target"],
        cutoff=attrs["cutoff"],
        label=first.label,
        auto_cutoff=attrs["auto_cutoff"],
        max_cutoff=attrs["max_cutoff"],
        sources=sources,
        shard=None,
        store_node_features=first.has_node_features,
        split_seed=attrs["split_seed"],
        split_fractions=attrs["split_fractions"],
        split_method=attrs["split_method"],
    ) as writer:
        for store in stores:
            for a in range(0, len(store), _MERGE_BLOCK):
                b = min(a + _MERGE_BLOCK, len(store))
                na, nb = int(store.node_offsets[a]), int(store.node_offsets[b])
                ea, eb = int(store.edge_offsets[a]), int(store.edge_offsets[b])
                arrays: dict[str, Any] = {k: store.read(k, a, b) for k in graph_level}
                for k in ("atomic_numbers", "positions"):
                    arrays[k] = store.read(k, na, nb)
                if first.has_node_features:
                    arrays["node_features"] = store.read("node_features", na, nb)
                for k in ("edge_index", "edge_shift"):
                    arrays[k] = store.read(k, ea, eb)
                writer.append_block(
                    arrays,
                    np.diff(store.node_offsets[a : b + 1]),
                    np.diff(store.edge_offsets[a : b + 1]),
                )
                done += b - a
                if progress is not None:
                    progress(done, total)
            store.close()
    rejected: list[Rejection] = []
    for store in stores:
        path = rejects_path_for(store.path)
        if path.is_file():
            rejected.extend(read_rejects(path, "featurize"))
    rejects = _write_rejects(rejects_path_for(out), rejected)
    merged = GraphStore(out)
    graph_cutoffs = merged.read("graph_cutoff")
    return FeaturizeReport(
        output=out,
        target=merged.target,
        kind=merged.kind.name,
        units=merged.units,
        records=len(merged) + len(rejected),
        graphs=len(merged),
        nodes=merged.num_nodes,
        edges=merged.num_edges,
        rejected=rejected,
        rejects_path=rejects,
        cutoff=merged.cutoff,
        auto_cutoff=bool(merged.attrs["auto_cutoff"]),
        extended=int((graph_cutoffs > merged.cutoff).sum()),
        split_counts=_split_counts(merged),
        seconds=time.perf_counter() - start_time,
        workers=1,
        shard=None,
        inputs=[s.path for s in stores],
        split_method=merged.split_info["method"],
    )
