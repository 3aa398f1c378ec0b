"""The HDF5 graph store: many periodic graphs with their targets in one file of ragged arrays.

Layout (format version :data:`FORMAT_VERSION`). ``G`` graphs, ``N`` nodes and ``E`` edges in
all; graph ``g`` owns nodes ``node_offsets[g]:node_offsets[g+1]`` and edges
``edge_offsets[g]:edge_offsets[g+1]``. Field meanings follow :mod:`crystensor.data.graph`.

========================  ===============  =======  =============================================
dataset                   shape            dtype    content
========================  ===============  =======  =============================================
``atomic_numbers``        ``(N,)``         uint8    Z of each site
``positions``             ``(N, 3)``       float64  Cartesian coordinates, Angstrom
``node_features``         ``(N, F)``       float32  optional; else rebuilt from Z with
                                                    :func:`crystensor.data.elements.node_features`
``node_offsets``          ``(G + 1,)``     int64    graph ``g``'s first node
``cell``                  ``(G, 3, 3)``    float64  lattice vectors as rows, Angstrom
``edge_index``            ``(2, E)``       int32    *local* node indices within the graph:
                                                    row 0 source ``j`` (neighbour), row 1
                                                    target ``i`` (centre)
``edge_shift``            ``(E, 3)``       int8     integer lattice shift of the neighbour image
``edge_offsets``          ``(G + 1,)``     int64    graph ``g``'s first edge
``graph_cutoff``          ``(G,)``         float64  radius used (larger than ``cutoff`` only
                                                    where ``auto_cutoff`` had to extend it)
``target_cartesian``      ``(G, 3, ...)``  float64  full Cartesian tensor, ``(G,)`` for scalars,
                                                    in the frame of ``positions`` / ``cell``
``target_irreps``         ``(G, dim)``     float64  :func:`crystensor.tensors.harmonic.to_irreps`
                                                    of it (``[value]`` for scalars)
``ids``                   ``(G,)``         str      material ids, unique
``formula``               ``(G,)``         str      reduced formula
``crystal_system``        ``(G,)``         str      from the record's symmetry ("" if unknown)
``space_group_number``    ``(G,)``         int16    1..230 (0 if unknown)
``record_index``          ``(G,)``         int64    position of the record in its source file
``split``                 ``(G,)``         uint8    0 train, 1 val, 2 test (:func:`make_split`,
                                                    method named by ``split_method``)
========================  ===============  =======  =============================================

The edge vector from centre ``i`` to neighbour ``j`` is rebuilt exactly as
``positions[j] + edge_shift @ cell - positions[i]``.

File attributes: ``format`` (:data:`FORMAT`), ``format_version``, ``crystensor_version``,
``created`` (ISO 8601, UTC), ``target`` (property), ``kind``, ``units``, ``irreps``, ``cutoff``,
``auto_cutoff``, ``max_cutoff``, ``feature_set``, ``feature_dim``, ``feature_table_sha256``,
``frame`` and ``edge_convention`` (the conventions in words), ``sources`` (JSON list of
``{"file", "sha256"}``), ``shard`` (JSON ``[i, n]`` or ``null``), ``split_seed``,
``split_fractions``, ``split_method``, ``library_versions``, ``n_graphs``, ``n_nodes``,
``n_edges``, and ``label`` (absent in stores written before it existed, meaning ``"tensor"``).
``split_method`` is ``"sha256-rank"`` for the ``random`` split by material id and
``"sha256-chemical-system"`` for the ``family`` split by chemical system
(:data:`SPLIT_METHODS`); :meth:`GraphStore.use_split` replaces the stored split in memory.

``label`` says what the targets are (:data:`LABELS`): ``"tensor"``, the full tensors in the
stored frame, or ``"principal_values"``, rotation-invariant labels without a frame (for
example the eigenvalues of eps_inf in ``crystensor fetch -s naccarato`` records). A
principal-value store keeps ``diag(v1, v2, v3)`` (sorted ascending) in ``target_cartesian``
so that it has the layout of a tensor store, but that diagonal form is in no particular frame:
such a store only serves as an invariant label set beside a tensor store
(:mod:`crystensor.train.supervision`), through functions that do not depend on the frame.

A store is written to a temporary name in the target folder and renamed when complete, so an
interrupted run leaves no file under the final name. :class:`GraphStore` checks the attributes
when it opens a file and refuses a foreign, damaged or mismatched one with one
:class:`~crystensor.errors.InputError`; it opens the HDF5 file lazily in each process, so it is
safe to use from ``DataLoader`` workers (fork or spawn).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import logging
import os
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from crystensor.errors import InputError
from crystensor.io.atomic import StagedOutput

__all__ = [
    "DEFAULT_SPLIT_FRACTIONS",
    "FORMAT",
    "FORMAT_VERSION",
    "LABELS",
    "SPLIT_METHODS",
    "SPLIT_NAMES",
    "GraphStore",
    "StoreWriter",
    "StoredGraph",
    "chemical_systems",
    "file_sha256",
    "make_split",
]

log = logging.getLogger(__name__)

FORMAT = "crystensor-graph-store"
FORMAT_VERSION = 1
SPLIT_NAMES = ("train", "val", "test")
DEFAULT_SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
# user-facing split method -> value of the store's split_method attribute
SPLIT_METHODS = {"random": "sha256-rank", "family": "sha256-chemical-system"}
FRAME_CONVENTION = (
    "Cartesian frame of the stored cell (lattice vectors as rows) and positions, Angstrom; "
    "target tensors are expressed in this frame"
)
EDGE_CONVENTION = (
    "edge_index[0] = source j (neighbour), edge_index[1] = target i (centre), local to the "
    "graph; edge vector = positions[j] + edge_shift @ cell - positions[i]"
)

#: Values of the ``label`` attribute: full tensors in the stored frame, or frame-free
#: principal values (see the module docstring).
LABELS = ("tensor", "principal_values")


def _check_label(label: str) -> str:
    if label not in LABELS:
        raise InputError(f"unknown store label {label!r}; choose one of {', '.join(LABELS)}")
    return label


# Attributes stored as JSON text.
_JSON_ATTRS = ("sources", "shard", "split_fractions", "library_versions", "target_shape")
REQUIRED_ATTRS = (
    "format",
    "format_version",
    "crystensor_version",
    "created",
    "target",
    "kind",
    "units",
    "irreps",
    "target_shape",
    "cutoff",
    "auto_cutoff",
    "max_cutoff",
    "feature_set",
    "feature_dim",
    "feature_table_sha256",
    "frame",
    "edge_convention",
    "sources",
    "shard",
    "split_seed",
    "split_fractions",
    "split_method",
    "library_versions",
    "n_graphs",
    "n_nodes",
    "n_edges",
)

# name -> (axis the data grows along, dtype, chunk length along that axis)
_NODE = {"atomic_numbers": np.uint8, "positions": np.float64}
_EDGE = {"edge_index": np.int32, "edge_shift": np.int8}
_GRAPH_NUMERIC = {
    "cell": np.float64,
    "graph_cutoff": np.float64,
    "target_cartesian": np.float64,
    "target_irreps": np.float64,
    "space_group_number": np.int16,
    "record_index": np.int64,
}
_GRAPH_TEXT = ("ids", "formula", "crystal_system")
REQUIRED_DATASETS = (
    *_NODE,
    *_EDGE,
    *_GRAPH_NUMERIC,
    *_GRAPH_TEXT,
    "node_offsets",
    "edge_offsets",
    "split",
)
_GRAPH_LEVEL = frozenset((*_GRAPH_NUMERIC, *_GRAPH_TEXT, "split"))
_SHIFT_LIMIT = np.iinfo(np.int8).max


@dataclass
class StoredGraph:
    """One graph of a store with its target (what :class:`StoreWriter` takes, reader gives).

    Attributes
    ----------
    id : str
    atomic_numbers : array ``(n,)`` int
    positions : array ``(n, 3)`` float, Angstrom
    cell : array ``(3, 3)`` float, Angstrom, lattice vectors as rows
    edge_index : array ``(2, e)`` int, local indices; row 0 neighbour ``j``, row 1 centre ``i``
    edge_shift : array ``(e, 3)`` int, lattice shift of the neighbour image
    target_cartesian : array ``(3,) * rank`` float (0-d for scalars), in the property's units
    target_irreps : array ``(dim,)`` float
    cutoff : float
        Radius of this graph, Angstrom.
    formula, crystal_system : str
    space_group_number : int
        0 if unknown.
    record_index : int
        Position of the record in its source file (-1 if unknown).
    node_features : array ``(n, F)`` float32 or None
    """

    id: str
    atomic_numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    edge_index: np.ndarray
    edge_shift: np.ndarray
    target_cartesian: np.ndarray
    target_irreps: np.ndarray
    cutoff: float
    formula: str = ""
    crystal_system: str = ""
    space_group_number: int = 0
    record_index: int = -1
    node_features: np.ndarray | None = None

    @property
    def num_nodes(self) -> int:
        return len(self.atomic_numbers)

    @property
    def num_edges(self) -> int:
        return int(np.shape(self.edge_index)[1])


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def split_method_name(attribute: str) -> str:
    """The user-facing name (``random``, ``family``) of a ``split_method`` attribute value.

    Raises
    ------
    InputError
        A value of no method this crystensor knows.
    """
    for name, value in SPLIT_METHODS.items():
        if attribute in (name, value):
            return name
    raise InputError(
        f"unknown split method {attribute!r}; choose one of {', '.join(SPLIT_METHODS)}"
    )


@functools.lru_cache(maxsize=1)
def _element_symbols() -> tuple[str, ...]:
    from pymatgen.core.periodic_table import Element

    symbols = ["X"]
    for z in range(1, 256):  # atomic numbers are stored as uint8
        try:
            symbols.append(Element.from_Z(z).symbol)
        except ValueError:
            symbols.append(f"Z{z}")
    return tuple(symbols)


def chemical_systems(atomic_numbers: Sequence[int], node_offsets: Sequence[int]) -> list[str]:
    """The chemical system of each graph: its element symbols, sorted and joined by ``-``.

    Parameters
    ----------
    atomic_numbers : array ``(N,)`` int
        Z of every node of every graph.
    node_offsets : array ``(G + 1,)`` int
        Graph ``g`` owns nodes ``node_offsets[g]:node_offsets[g+1]``.

    Returns
    -------
    list of str, ``(G,)``
        ``"Fe-O"`` for Fe2O3 and FeO alike (symbols in alphabetical order, as pymatgen's
        ``Composition.chemical_system``).

    Examples
    --------
    >>> chemical_systems([8, 26, 8, 3, 3], [0, 3, 5])
    ['Fe-O', 'Li']
    """
    z = np.asarray(atomic_numbers, dtype=np.int64)
    counts = np.diff(np.asarray(node_offsets, dtype=np.int64))
    graph = np.repeat(np.arange(len(counts)), counts)
    pairs = np.unique(graph * 256 + z)  # each (graph, Z) once
    symbols = _element_symbols()
    elements: list[list[str]] = [[] for _ in counts]
    for g, zz in zip(*(x.tolist() for x in np.divmod(pairs, 256)), strict=True):
        elements[g].append(symbols[zz])
    return ["-".join(sorted(e)) for e in elements]


def _key(seed: int, name: str) -> bytes:
    return hashlib.sha256(f"{seed}:{name}".encode()).digest()


def make_split(
    ids: Sequence[str],
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
    *,
    method: str = "random",
    systems: Sequence[str] | None = None,
) -> np.ndarray:
    """Assign each material id to train / val / test, deterministically and order-independently.

    ``method="random"`` (store attribute ``"sha256-rank"``): every id gets the key
    ``sha256(f"{seed}:{id}")``; the ids sorted by key are cut into ``round(f_train * n)`` train,
    ``round(f_val * n)`` validation and the rest test. Growing the set by a few ids moves only
    ids near the two cut points.

    ``method="family"`` (``"sha256-chemical-system"``): materials are grouped by chemical
    system (``systems``, see :func:`chemical_systems`), so that no material has a sibling of the
    same set of elements in another split. The families, ordered by
    ``sha256(f"{seed}:{system}")``, go whole to train while it holds fewer than
    ``round(f_train * n)`` materials, then to validation while it holds fewer than
    ``round(f_val * n)``, the rest to test. A family never straddles two splits, so the counts
    are near the fractions but not exact: train and validation overshoot by less than one
    family each, and test gets what is left.

    Either way the split of an id depends only on the *set* of ids (and their systems), the
    seed and the fractions, never on their order, so the same split is re-derived from the
    stored ids (shards merged in any order included).

    Parameters
    ----------
    ids : sequence of str, ``(n,)``
        Unique material ids.
    seed : int
    fractions : three floats
        Train, validation and test fractions, each >= 0, summing to 1.
    method : {"random", "family"}
        The attribute values of :data:`SPLIT_METHODS` are accepted too.
    systems : sequence of str, ``(n,)``, optional
        Chemical system of each id; needed by ``method="family"``.

    Returns
    -------
    array ``(n,)`` uint8
        Split code of each id in the order given: 0 train, 1 val, 2 test (:data:`SPLIT_NAMES`).

    Raises
    ------
    InputError
        Duplicate ids, bad fractions, an unknown method, or ``family`` without one system per
        id.

    Examples
    --------
    >>> codes = make_split([f"mp-{i}" for i in range(20)], seed=0)
    >>> [int((codes == k).sum()) for k in range(3)]
    [14, 3, 3]
    >>> bool((make_split([f"mp-{i}" for i in reversed(range(20))])[::-1] == codes).all())
    True

    By chemical system, each family lands in one split:

    >>> systems = ["Al-O", "C", "Cu-Zn", "Fe-O", "Ga-N", "Li-O", "Mg-O", "Na-Cl", "Si", "Ti-O"] * 2
    >>> codes = make_split([f"mp-{i}" for i in range(20)], method="family", systems=systems)
    >>> [int((codes == k).sum()) for k in range(3)]
    [14, 4, 2]
    >>> all(len({int(c) for c, t in zip(codes, systems) if t == s}) == 1 for s in systems)
    True
    """
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or any(not np.isfinite(f) or f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
        raise InputError(
            f"split fractions must be three non-negative numbers summing to 1, got {fractions}"
        )
    method = split_method_name(method)
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dups = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        raise InputError(f"duplicate material id(s) {', '.join(dups[:5])}: ids must be unique")
    n = len(ids)
    n_train = round(fr[0] * n)
    if method == "family":
        if systems is None or len(systems) != n:
            raise InputError(
                "the family split needs the chemical system of every material "
                f"({n} ids, {'no' if systems is None else len(systems)} systems)"
            )
        systems = [str(s) for s in systems]
        sizes: dict[str, int] = {}
        for s in systems:
            sizes[s] = sizes.get(s, 0) + 1
        wanted = (n_train, round(fr[1] * n))
        filled = [0, 0, 0]
        code_of = {}
        for system in sorted(sizes, key=lambda s: (_key(seed, s), s)):
            k = next((k for k in (0, 1) if filled[k] < wanted[k]), 2)
            code_of[system] = k
            filled[k] += sizes[system]
        return np.array([code_of[s] for s in systems], dtype=np.uint8).reshape(n)
    keys = [_key(seed, i) for i in ids]
    order = sorted(range(n), key=lambda k: (keys[k], ids[k]))
    n_val = min(round(fr[1] * n), n - n_train)
    codes = np.full(n, 2, dtype=np.uint8)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    codes[rank < n_train + n_val] = 1
    codes[rank < n_train] = 0
    return codes


def _library_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {}
    for name in ("numpy", "h5py", "pymatgen"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    return versions


class StoreWriter:
    """Write a graph store incrementally; the file appears under its name only when complete.

    Use as a context manager: graphs are appended (and flushed to disk in blocks), and on a
    clean exit the offsets, the split and the attributes are written and the temporary file is
    renamed to ``path`` (:class:`~crystensor.io.atomic.StagedOutput`: through a symbolic link
    to its target, keeping the link). On an exception the temporary file is deleted and
    ``path`` is left untouched. HDF5 seeks, so a FIFO or device as ``path`` is refused.

    Parameters
    ----------
    path : path
        Final file name.
    target : str
        Property name from :data:`crystensor.tensors.kinds.PROPERTIES`.
    cutoff : float
        Neighbour radius, Angstrom.
    auto_cutoff : bool
        Whether the radius was grown for structures with an isolated atom.
    max_cutoff : float
        Largest radius ``auto_cutoff`` could use.
    sources : iterable of dict
        ``{"file": name, "sha256": digest}`` of each input file.
    shard : (i, n) or None
        This store is the ``i``-th (0-based) of ``n`` slices of its source.
    store_node_features : bool
        Also store the ``(N, F)`` node features (else readers rebuild them from Z).
    split_seed, split_fractions, split_method
        Passed to :func:`make_split` over all ids (and, for ``"family"``, their chemical
        systems) when the store is finished.
    compression : str or None
        h5py filter for the node and edge arrays (``"lzf"``: fast, ~2x smaller).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "g.h5"
    >>> g = StoredGraph("x-1", np.array([3]), np.zeros((1, 3)), 2.0 * np.eye(3),
    ...                 np.zeros((2, 6), int), np.vstack([np.eye(3), -np.eye(3)]).astype(int),
    ...                 np.array(1.5), np.array([1.5]), 2.5)
    >>> with StoreWriter(path, target="band-gap", cutoff=2.5) as writer:
    ...     writer.append(g)
    >>> len(GraphStore(path)), GraphStore(path).graph(0).num_edges
    (1, 6)
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        target: str,
        cutoff: float,
        label: str = "tensor",
        auto_cutoff: bool = False,
        max_cutoff: float | None = None,
        sources: Iterable[Mapping[str, str]] = (),
        shard: tuple[int, int] | None = None,
        store_node_features: bool = False,
        split_seed: int = 0,
        split_fractions: Sequence[float] = DEFAULT_SPLIT_FRACTIONS,
        split_method: str = "random",
        compression: str | None = "lzf",
        flush_every: int = 1024,
    ) -> None:
        from crystensor.data import elements
        from crystensor.tensors.kinds import get_property

        self.path = Path(path)
        prop = _property(target)
        kind = get_property(prop.name).tensor_kind
        self.kind = kind
        self.store_node_features = store_node_features
        self.compression = compression
        self.flush_every = flush_every
        make_split([], split_seed, split_fractions)  # validate the fractions now, not at the end
        from crystensor import __version__

        self.attrs: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "crystensor_version": __version__,
            "target": prop.name,
            "kind": kind.name,
            "units": prop.units,
            "irreps": kind.irreps,
            "target_shape": list(kind.cartesian_shape),
            "cutoff": float(cutoff),
            "auto_cutoff": bool(auto_cutoff),
            "max_cutoff": float(max_cutoff if max_cutoff is not None else cutoff),
            "feature_set": elements.FEATURE_SET,
            "feature_dim": elements.FEATURE_DIM,
            "feature_table_sha256": elements.feature_table_sha256(),
            "frame": FRAME_CONVENTION,
            "edge_convention": EDGE_CONVENTION,
            "sources": [dict(s) for s in sources],
            "shard": list(shard) if shard is not None else None,
            "split_seed": int(split_seed),
            "split_fractions": [float(f) for f in split_fractions],
            "split_method": SPLIT_METHODS[split_method_name(split_method)],
            "library_versions": _library_versions(),
            "label": _check_label(label),
        }
        self._h5: Any = None
        self._staged: StagedOutput | None = None
        self._buffer: list[StoredGraph] = []
        self._node_counts: list[int] = []
        self._edge_counts: list[int] = []
        self._ids: list[str] = []
        self._id_set: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> StoreWriter:
        import h5py

        self._staged = StagedOutput(self.path, what="graph store", streams_ok=False)
        try:
            self._h5 = h5py.File(self._staged.write_path, "w")
            self._create_datasets()
        except BaseException:
            self.abort()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.finish()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()

    def abort(self) -> None:
        """Close and delete the temporary file; ``path`` is left as it was."""
        if self._h5 is not None:
            with contextlib.suppress(Exception):
                self._h5.close()
            self._h5 = None
        if self._staged is not None:
            self._staged.discard()
            self._staged = None

    def _create_datasets(self) -> None:
        import h5py

        f = self._h5
        comp = {"compression": self.compression} if self.compression else {}
        for name, dtype in _NODE.items():
            tail = (3,) if name == "positions" else ()
            f.create_dataset(
                name, (0, *tail), dtype, maxshape=(None, *tail), chunks=(8192, *tail), **comp
            )
        if self.store_node_features:
            from crystensor.data.elements import FEATURE_DIM

            f.create_dataset(
                "node_features",
                (0, FEATURE_DIM),
                np.float32,
                maxshape=(None, FEATURE_DIM),
                chunks=(512, FEATURE_DIM),
                **comp,
            )
        f.create_dataset(
            "edge_index", (2, 0), np.int32, maxshape=(2, None), chunks=(2, 16384), **comp
        )
        f.create_dataset(
            "edge_shift", (0, 3), np.int8, maxshape=(None, 3), chunks=(16384, 3), **comp
        )
        shape = self.kind.cartesian_shape
        graph_tails = {
            "cell": (3, 3),
            "graph_cutoff": (),
            "target_cartesian": shape,
            "target_irreps": (self.kind.dim,),
            "space_group_number": (),
            "record_index": (),
        }
        for name, dtype in _GRAPH_NUMERIC.items():
            tail = graph_tails[name]
            f.create_dataset(name, (0, *tail), dtype, maxshape=(None, *tail), chunks=(1024, *tail))
        text = h5py.string_dtype("utf-8")
        for name in _GRAPH_TEXT:
            f.create_dataset(name, (0,), text, maxshape=(None,), chunks=(1024,))

    # -- appending ---------------------------------------------------------------------------
    def append(self, graph: StoredGraph) -> None:
        """Add one graph (buffered; written in blocks of ``flush_every``).

        Raises
        ------
        InputError
            A duplicate id, wrong target shape, out-of-range edge index or lattice shift.
        """
        if self._h5 is None:
            raise RuntimeError("StoreWriter.append outside its 'with' block")
        self._validate(graph)
        self._id_set.add(graph.id)
        self._buffer.append(graph)
        if len(self._buffer) >= self.flush_every:
            self._flush()

    def _validate(self, g: StoredGraph) -> None:
        if g.id in self._id_set:
            raise InputError(f"duplicate material id {g.id!r}: ids in a store must be unique")
        n = g.num_nodes
        if np.shape(g.positions) != (n, 3) or np.shape(g.cell) != (3, 3):
            raise InputError(f"{g.id}: positions must be (n, 3) and cell (3, 3)")
        ei = np.asarray(g.edge_index)
        if ei.ndim != 2 or ei.shape[0] != 2 or np.shape(g.edge_shift) != (ei.shape[1], 3):
            raise InputError(f"{g.id}: edge_index must be (2, e) and edge_shift (e, 3)")
        if ei.size and (ei.min() < 0 or ei.max() >= n):
            raise InputError(f"{g.id}: edge_index out of range for {n} nodes")
        if np.size(g.edge_shift) and np.abs(g.edge_shift).max() > _SHIFT_LIMIT:
            raise InputError(
                f"{g.id}: a neighbour image lies more than {_SHIFT_LIMIT} cells away; the cell is "
                "too thin for the cutoff"
            )
        if np.shape(g.target_cartesian) != self.kind.cartesian_shape:
            raise InputError(
                f"{g.id}: target has shape {np.shape(g.target_cartesian)}, "
                f"{self.kind.name} needs {self.kind.cartesian_shape}"
            )
        if np.shape(g.target_irreps) != (self.kind.dim,):
            raise InputError(f"{g.id}: target irreps must have shape ({self.kind.dim},)")
        if self.store_node_features and g.node_features is None:
            from crystensor.data.elements import node_features

            g.node_features = node_features(g.atomic_numbers)

    def _flush(self) -> None:
        if not self._buffer:
            return
        gs = self._buffer
        arrays: dict[str, Any] = {
            "atomic_numbers": np.concatenate([g.atomic_numbers for g in gs]),
            "positions": np.concatenate([g.positions for g in gs]),
            "edge_index": np.concatenate([g.edge_index for g in gs], axis=1),
            "edge_shift": np.concatenate([g.edge_shift for g in gs]),
            "cell": np.stack([g.cell for g in gs]),
            "graph_cutoff": np.array([g.cutoff for g in gs]),
            "target_cartesian": np.stack([np.asarray(g.target_cartesian) for g in gs]),
            "target_irreps": np.stack([g.target_irreps for g in gs]),
            "space_group_number": np.array([g.space_group_number for g in gs]),
            "record_index": np.array([g.record_index for g in gs]),
            "ids": [g.id for g in gs],
            "formula": [g.formula for g in gs],
            "crystal_system": [g.crystal_system for g in gs],
        }
        if self.store_node_features:
            arrays["node_features"] = np.concatenate([g.node_features for g in gs])
        self._buffer = []
        self._write_block(arrays, [g.num_nodes for g in gs], [g.num_edges for g in gs])

    def append_block(
        self, arrays: Mapping[str, Any], node_counts: Sequence[int], edge_counts: Sequence[int]
    ) -> None:
        """Add many graphs at once from concatenated arrays (what :func:`merge_stores` uses).

        Parameters
        ----------
        arrays : mapping
            Every store dataset except the offsets and ``split`` (``node_features`` only when
            this writer stores them), concatenated along the graph / node / edge axis.
        node_counts, edge_counts : sequence of int, ``(g,)``
            Nodes and edges of each graph in the block.
        """
        if self._h5 is None:
            raise RuntimeError("StoreWriter.append_block outside its 'with' block")
        self._flush()
        new_ids = [str(i) for i in arrays["ids"]]
        dup = next((i for i in new_ids if i in self._id_set), None)
        if dup is None and len(set(new_ids)) != len(new_ids):
            dup = next(i for k, i in enumerate(new_ids) if i in new_ids[:k])
        if dup is not None:
            raise InputError(f"duplicate material id {dup!r}: ids in a store must be unique")
        self._id_set.update(new_ids)
        self._write_block(dict(arrays), list(node_counts), list(edge_counts))

    def _write_block(
        self, arrays: dict[str, Any], node_counts: list[int], edge_counts: list[int]
    ) -> None:
        f = self._h5
        for name, values in arrays.items():
            ds = f[name]
            if name == "edge_index":
                start = ds.shape[1]
                ds.resize(start + values.shape[1], axis=1)
                ds[:, start:] = values
                continue
            start = ds.shape[0]
            ds.resize(start + len(values), axis=0)
            if ds.dtype.kind == "O":
                ds[start:] = np.array(values, dtype=object)
            else:
                ds[start:] = np.asarray(values, dtype=ds.dtype)
        self._node_counts.extend(node_counts)
        self._edge_counts.extend(edge_counts)
        self._ids.extend(str(i) for i in arrays["ids"])

    # -- finishing ---------------------------------------------------------------------------
    def finish(self) -> Path:
        """Write offsets, split and attributes, then rename the file into place."""
        if self._h5 is None or self._staged is None:
            raise RuntimeError("StoreWriter.finish called twice or outside its 'with' block")
        self._flush()
        f = self._h5
        f.create_dataset("node_offsets", data=np.concatenate([[0], np.cumsum(self._node_counts)]))
        f.create_dataset("edge_offsets", data=np.concatenate([[0], np.cumsum(self._edge_counts)]))
        method = split_method_name(self.attrs["split_method"])
        systems = None
        if method == "family":
            systems = chemical_systems(f["atomic_numbers"][()], f["node_offsets"][()])
        codes = make_split(
            self._ids,
            self.attrs["split_seed"],
            tuple(self.attrs["split_fractions"]),
            method=method,
            systems=systems,
        )
        split = f.create_dataset("split", data=codes)
        split.attrs["names"] = json.dumps(SPLIT_NAMES)
        attrs = dict(self.attrs)
        attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        )
        attrs["n_graphs"] = len(self._ids)
        attrs["n_nodes"] = int(sum(self._node_counts))
        attrs["n_edges"] = int(sum(self._edge_counts))
        for key, value in attrs.items():
            f.attrs[key] = json.dumps(value) if key in _JSON_ATTRS else value
        f.close()
        self._h5 = None
        self._staged.commit()
        self._staged = None
        log.info("wrote %s (%d graphs)", self.path, len(self._ids))
        return self.path

    @property
    def num_graphs(self) -> int:
        """Graphs appended so far."""
        return len(self._ids) + len(self._buffer)


def _property(name: str):
    from crystensor.tensors.kinds import PROPERTIES

    if name not in PROPERTIES:
        raise InputError(f"unknown target {name!r}; choose one of {', '.join(PROPERTIES)}")
    return PROPERTIES[name]


# Open HDF5 readers (LazyHDF5Reader: stores, feature caches), closed before the process forks so
# that no child inherits a live HDF5 handle; each reopens its file lazily in the process that
# uses it.
OPEN_READERS: weakref.WeakSet[LazyHDF5Reader] = weakref.WeakSet()


def _close_before_fork() -> None:
    for reader in list(OPEN_READERS):
        reader.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_close_before_fork)


_Reader = TypeVar("_Reader", bound="LazyHDF5Reader")


class LazyHDF5Reader:
    """Base of the readers of one HDF5 file (``self.path``), opened lazily once per process.

    The open handle is registered in :data:`OPEN_READERS`, so it is closed before the process
    forks, and is left out when the reader is pickled (for spawned ``DataLoader`` workers); either
    way the file is reopened on the next access. A subclass sets ``path`` and overrides
    :meth:`_forget_handles` if it keeps objects of the file (such as dataset handles).
    """

    def __init__(self) -> None:
        self._h5: Any = None
        self._pid: int | None = None

    def _file(self):
        """This process's open ``h5py.File`` (opened, or reopened after a fork, here)."""
        import h5py

        pid = os.getpid()
        if self._h5 is None or self._pid != pid:
            self._h5 = h5py.File(self.path, "r")
            self._pid = pid
            self._forget_handles()
            OPEN_READERS.add(self)
        return self._h5

    def _forget_handles(self) -> None:
        """Drop what was taken from the file; called when it is (re)opened and closed."""

    def close(self) -> None:
        """Close this process's file handle (reopened on the next access)."""
        if self._h5 is not None:
            if self._pid == os.getpid():
                with contextlib.suppress(Exception):
                    self._h5.close()
            self._h5 = None
            self._pid = None
        self._forget_handles()
        OPEN_READERS.discard(self)

    def __enter__(self: _Reader) -> _Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_pid"] = None
        return state


class GraphStore(LazyHDF5Reader):
    """Read a graph store; the HDF5 file is opened lazily, once per process.

    Opening checks the file (exists, is HDF5, is a crystensor store of this format version,
    has every attribute and dataset, offsets consistent) and, with ``expect``, that its
    attributes have the required values.

    Parameters
    ----------
    path : path
    expect : mapping, optional
        Attribute values the caller needs, e.g. ``{"target": "elastic", "cutoff": 5.0}``
        (see :meth:`check`).

    Raises
    ------
    InputError
        One clear line naming the file and what is wrong with it.
    """

    def __init__(self, path: str | os.PathLike, *, expect: Mapping[str, Any] | None = None):
        super().__init__()
        self.path = Path(path)
        self._memory: dict[str, np.ndarray] | None = None
        self._cache: dict[str, Any] = {}
        # use_split's codes and settings; None: the split saved in the file
        self._split: tuple[np.ndarray, dict[str, Any]] | None = None
        self._read_header()
        if expect:
            self.check(**expect)

    def _read_header(self) -> None:
        import h5py

        name = self.path.name
        if not self.path.is_file():
            raise InputError(
                f"graph store {str(self.path)!r} does not exist; create it with crystensor "
                "featurize"
            )
        if not h5py.is_hdf5(self.path):
            raise InputError(f"{name} is not an HDF5 file, so not a crystensor graph store")
        try:
            with h5py.File(self.path, "r") as f:
                raw = dict(f.attrs)
                datasets = set(f.keys())
                if raw.get("format") == FORMAT and "node_offsets" in f and "edge_offsets" in f:
                    self.node_offsets = f["node_offsets"][()]
                    self.edge_offsets = f["edge_offsets"][()]
                    lengths = {k: f[k].shape for k in ("atomic_numbers", "edge_shift") if k in f}
        except OSError as err:
            raise InputError(f"cannot read {name}: {err}") from None
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()}
        if attrs.get("format") != FORMAT:
            raise InputError(
                f"{name} is not a crystensor graph store (no format={FORMAT!r} attribute); "
                "create one with crystensor featurize"
            )
        version = attrs.get("format_version")
        if version != FORMAT_VERSION:
            from crystensor import __version__

            raise InputError(
                f"{name} is graph-store format version {version}, but crystensor {__version__} "
                f"reads version {FORMAT_VERSION}; re-run crystensor featurize on the records"
            )
        missing_attrs = [k for k in REQUIRED_ATTRS if k not in attrs]
        missing_sets = [k for k in REQUIRED_DATASETS if k not in datasets]
        if missing_attrs or missing_sets:
            what = []
            if missing_attrs:
                what.append(f"attribute(s) {', '.join(missing_attrs)}")
            if missing_sets:
                what.append(f"dataset(s) {', '.join(missing_sets)}")
            raise InputError(
                f"{name} is incomplete or damaged: missing {' and '.join(what)}; re-run "
                "crystensor featurize"
            )
        for key in _JSON_ATTRS:
            if key not in attrs:
                continue
            try:
                attrs[key] = json.loads(attrs[key])
            except (TypeError, ValueError):
                raise InputError(
                    f"{name} is damaged: attribute {key} is not JSON; re-run crystensor featurize"
                ) from None
        for key, value in list(attrs.items()):
            if isinstance(value, np.generic):
                attrs[key] = value.item()
        self.attrs: dict[str, Any] = attrs
        self._datasets = frozenset(datasets)
        n = int(attrs["n_graphs"])
        if (
            self.node_offsets.shape != (n + 1,)
            or self.edge_offsets.shape != (n + 1,)
            or self.node_offsets[-1] != lengths["atomic_numbers"][0]
            or self.edge_offsets[-1] != lengths["edge_shift"][0]
        ):
            raise InputError(
                f"{name} is damaged: its offsets do not match its arrays; re-run crystensor "
                "featurize"
            )
        from crystensor.tensors.kinds import PROPERTIES

        prop = PROPERTIES.get(attrs["target"])
        if prop is None or prop.kind != attrs["kind"]:
            raise InputError(
                f"{name} holds target {attrs['target']!r} (kind {attrs['kind']!r}), which this "
                f"crystensor does not know; choose a store of one of {', '.join(PROPERTIES)}"
            )

    # -- metadata ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.attrs["n_graphs"])

    def __repr__(self) -> str:
        return (
            f"GraphStore({str(self.path)!r}: {len(self)} graphs, target {self.target!r}, "
            f"cutoff {self.cutoff:g} A, features {self.feature_set})"
        )

    @property
    def target(self) -> str:
        """Property name (``elastic``, ``band-gap``, ...)."""
        return self.attrs["target"]

    @property
    def label(self) -> str:
        """What the targets are: ``"tensor"`` or ``"principal_values"`` (:data:`LABELS`)."""
        return str(self.attrs.get("label", "tensor"))

    @property
    def kind(self):
        """The :class:`~crystensor.tensors.kinds.TensorKind` of the target."""
        from crystensor.tensors.kinds import get_kind

        return get_kind(self.attrs["kind"])

    @property
    def units(self) -> str:
        return self.attrs["units"]

    @property
    def cutoff(self) -> float:
        """Neighbour radius, Angstrom (individual graphs may be larger with ``auto_cutoff``)."""
        return float(self.attrs["cutoff"])

    @property
    def feature_set(self) -> str:
        return self.attrs["feature_set"]

    @property
    def has_node_features(self) -> bool:
        """Whether the store holds ``node_features`` (else they are rebuilt from Z)."""
        return "node_features" in self._datasets

    @property
    def num_nodes(self) -> int:
        return int(self.node_offsets[-1])

    @property
    def num_edges(self) -> int:
        return int(self.edge_offsets[-1])

    @property
    def ids(self) -> list[str]:
        """Material ids, ``(G,)``."""
        if "ids" not in self._cache:
            self._cache["ids"] = [str(i) for i in self.read("ids")]
        return self._cache["ids"]

    def check(self, **expected: Any) -> None:
        """Refuse the store unless its attributes have the ``expected`` values.

        Floats compare to 1e-9 relative; the message lists every mismatch.

        Raises
        ------
        InputError
            Names the file, each attribute, the stored and the needed value.
        """
        bad = []
        for key, want in expected.items():
            have = self.attrs.get(key)
            if isinstance(want, float) and isinstance(have, int | float):
                same = abs(have - want) <= 1e-9 * max(1.0, abs(want))
            else:
                same = have == want
            if not same:
                bad.append(f"{key} is {have!r}, not {want!r}")
        if bad:
            raise InputError(
                f"{self.path.name} does not fit: {'; '.join(bad)}; re-run crystensor featurize "
                "with matching options"
            )

    def split_indices(self, name: str) -> np.ndarray:
        """Indices ``(k,)`` of the graphs in split ``name`` (``train``, ``val`` or ``test``).

        The split saved in the store, or the one :meth:`use_split` chose.
        """
        if name not in SPLIT_NAMES:
            raise InputError(f"unknown split {name!r}; choose one of {', '.join(SPLIT_NAMES)}")
        return np.flatnonzero(self.read("split") == SPLIT_NAMES.index(name))

    @property
    def chemical_systems(self) -> list[str]:
        """Chemical system of each graph, ``(G,)`` (:func:`chemical_systems`)."""
        if "chemical_systems" not in self._cache:
            self._cache["chemical_systems"] = chemical_systems(
                self.read("atomic_numbers"), self.node_offsets
            )
        return self._cache["chemical_systems"]

    @property
    def split_info(self) -> dict[str, Any]:
        """How the split in use was made: ``method`` (``random`` or ``family``), ``seed``,
        ``fractions`` and ``source`` (``"store"``: saved in the file; ``"recomputed"``: by
        :meth:`use_split`)."""
        if self._split is not None:
            return dict(self._split[1])
        attr = self.attrs["split_method"]
        try:
            method = split_method_name(attr)
        except InputError:
            method = attr  # a method this crystensor does not know; its saved split still works
        return {
            "method": method,
            "seed": int(self.attrs["split_seed"]),
            "fractions": [float(f) for f in self.attrs["split_fractions"]],
            "source": "store",
        }

    def use_split(
        self, method: str, seed: int = 0, fractions: Sequence[float] | None = None
    ) -> GraphStore:
        """Replace the saved split, in memory only, by one recomputed with :func:`make_split`.

        ``split_indices``, ``read("split")``, :attr:`split_info` and copies pickled to
        ``DataLoader`` workers see the new split; the file is not changed.

        Parameters
        ----------
        method : {"store", "random", "family"}
            ``"store"`` goes back to the split saved in the file.
        seed : int
        fractions : three floats, optional
            Default: the store's ``split_fractions``.

        Returns
        -------
        GraphStore
            This store.

        Raises
        ------
        InputError
            An unknown method or bad fractions.
        """
        if method == "store":
            self._split = None
            return self
        method = split_method_name(method)
        fr = [float(f) for f in (self.attrs["split_fractions"] if fractions is None else fractions)]
        systems = self.chemical_systems if method == "family" else None
        codes = make_split(self.ids, seed, fr, method=method, systems=systems)
        info = {"method": method, "seed": int(seed), "fractions": fr, "source": "recomputed"}
        self._split = (codes, info)
        log.info(
            "%s: %s split, seed %d: %s",
            self.path.name,
            method,
            seed,
            ", ".join(f"{n} {int((codes == k).sum())}" for k, n in enumerate(SPLIT_NAMES)),
        )
        return self

    # -- data --------------------------------------------------------------------------------
    def _forget_handles(self) -> None:
        self._cache.pop("datasets", None)

    def _dataset(self, name: str):
        f = self._file()  # reopens (and forgets the dataset handles) in a new process
        datasets = self._cache.get("datasets")
        if datasets is None:
            datasets = self._cache["datasets"] = {k: f[k] for k in f}
        if name not in datasets:
            raise KeyError(f"{self.path.name} has no dataset {name!r}")
        return datasets[name]

    def read(self, name: str, start: int | None = None, stop: int | None = None) -> Any:
        """Rows ``start:stop`` of a dataset (along its growing axis; strings decoded)."""
        if name == "split" and self._split is not None:
            return self._split[0][start:stop]
        if self._memory is not None and name in self._memory:
            values = self._memory[name]
            return values[:, start:stop] if name == "edge_index" else values[start:stop]
        if name in _GRAPH_LEVEL:
            # small per-graph arrays: read once per process, then sliced in memory
            key = f"graph:{name}"
            if key not in self._cache:
                ds = self._dataset(name)
                self._cache[key] = ds.asstr()[()] if ds.dtype.kind == "O" else ds[()]
            return self._cache[key][start:stop]
        ds = self._dataset(name)
        if ds.dtype.kind == "O":
            return ds.asstr()[start:stop]
        return ds[:, start:stop] if name == "edge_index" else ds[start:stop]

    def preload(self) -> GraphStore:
        """Read every dataset into memory (fast random access; the file is then closed)."""
        f = self._file()
        memory = {}
        for name in f:
            ds = f[name]
            memory[name] = ds.asstr()[()] if ds.dtype.kind == "O" else ds[()]
        self._memory = memory
        self.close()
        return self

    def graph(self, index: int) -> StoredGraph:
        """Graph ``index`` with its target (local edge indices)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"graph index {index} out of range for {n} graphs")
        index %= n
        a, b = int(self.node_offsets[index]), int(self.node_offsets[index + 1])
        c, d = int(self.edge_offsets[index]), int(self.edge_offsets[index + 1])
        features = self.read("node_features", a, b) if self.has_node_features else None
        return StoredGraph(
            id=str(self.read("ids", index, index + 1)[0]),
            atomic_numbers=self.read("atomic_numbers", a, b),
            positions=self.read("positions", a, b),
            cell=self.read("cell", index, index + 1)[0],
            edge_index=self.read("edge_index", c, d),
            edge_shift=self.read("edge_shift", c, d),
            target_cartesian=self.read("target_cartesian", index, index + 1)[0],
            target_irreps=self.read("target_irreps", index, index + 1)[0],
            cutoff=float(self.read("graph_cutoff", index, index + 1)[0]),
            formula=str(self.read("formula", index, index + 1)[0]),
            crystal_system=str(self.read("crystal_system", index, index + 1)[0]),
            space_group_number=int(self.read("space_group_number", index, index + 1)[0]),
            record_index=int(self.read("record_index", index, index + 1)[0]),
            node_features=features,
        )

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_cache"] = {k: v for k, v in self._cache.items() if k != "datasets"}
        return state
