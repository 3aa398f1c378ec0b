"""A PyTorch dataset of PyG ``Data`` graphs read from an HDF5 graph store.

Each item is a :class:`torch_geometric.data.Data` with these fields (``n`` nodes, ``e`` edges):

================  =====================  ===================================================
``z``             ``(n,)`` int64         atomic numbers
``x``             ``(n, F)`` float       atom features (:mod:`crystensor.data.elements`)
``pos``           ``(n, 3)`` float       Cartesian positions, Angstrom
``cell``          ``(1, 3, 3)`` float    lattice vectors as rows, Angstrom (batches to
                                         ``(B, 3, 3)``)
``edge_index``    ``(2, e)`` int64       row 0 source ``j`` (neighbour), row 1 target ``i``
                                         (centre); offset by PyG when batched
``edge_shift``    ``(e, 3)`` float       integer lattice shifts, as floats so that
                                         ``edge_shift @ cell`` needs no cast
``y``             ``(1, dim)`` float     target irreps (batches to ``(B, dim)``)
``y_cartesian``   ``(1, 3, ...)`` float  full Cartesian target, ``(1,)`` for scalars
``id``            str                    material id (a list of str when batched)
================  =====================  ===================================================

Optional fields: ``node_fields`` (per node, e.g. ``backbone_x``) and ``graph_fields`` (per graph,
``(1, ...)``, batched to ``(B, ...)``), e.g. a physics prior: ``prior (1, dim)`` irreps of a
potential's tensor in the target's units and ``prior_mask (1,)`` (1 where it exists;
:func:`prior_fields`).

The edge vector from centre ``i`` to neighbour ``j`` in a batch is
``pos[j] + edge_shift @ cell[batch[i]] - pos[i]``.

The store is opened lazily in each process, so the dataset works with
``torch_geometric.loader.DataLoader(..., num_workers=k)``.
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from crystensor.data import elements
from crystensor.data.store import GraphStore
from crystensor.errors import InputError

__all__ = ["GraphDataset", "graph_to_data", "prior_fields"]

log = logging.getLogger(__name__)


class GraphDataset(Dataset):
    """Graphs of a :class:`~crystensor.data.store.GraphStore` as PyG ``Data`` objects.

    Parameters
    ----------
    store : path or GraphStore
    split : {"train", "val", "test"}, optional
        Only the graphs of this split (the one saved in the store).
    indices : sequence of int, optional
        Only these graphs (applied before ``split``).
    dtype : torch.dtype
        Floating dtype of ``x``, ``pos``, ``cell``, ``edge_shift``, ``y`` and ``y_cartesian``.
    in_memory : bool
        Read the whole store into memory first (fast random access; forked DataLoader
        workers share it copy-on-write).
    expect : mapping, optional
        Attribute values the store must have, e.g. ``{"target": "elastic", "cutoff": 5.0}``.
    node_fields : mapping of str to callable, optional
        Extra per-node fields: ``name -> f(store_index) -> array (n_nodes, ...)``, added to each
        ``Data`` as tensors (e.g. cached features of a frozen pretrained backbone,
        :mod:`crystensor.data.feature_cache`).
    graph_fields : mapping of str to callable, optional
        Extra per-graph fields: ``name -> f(store_index) -> array (...)``, added to each
        ``Data`` with a leading axis of 1 (so a batch stacks them), e.g. :func:`prior_fields`.

    Raises
    ------
    InputError
        A store that cannot be read or does not fit ``expect``, or whose atom features are
        neither stored nor the feature set this crystensor builds.
    """

    def __init__(
        self,
        store: str | os.PathLike | GraphStore,
        *,
        split: str | None = None,
        indices: Sequence[int] | np.ndarray | None = None,
        dtype: torch.dtype = torch.float32,
        in_memory: bool = False,
        expect: Mapping[str, Any] | None = None,
        node_fields: Mapping[str, Any] | None = None,
        graph_fields: Mapping[str, Any] | None = None,
    ) -> None:
        self.node_fields = dict(node_fields or {})
        self.graph_fields = dict(graph_fields or {})
        self.store = store if isinstance(store, GraphStore) else GraphStore(store)
        if expect:
            self.store.check(**expect)
        if not self.store.has_node_features:
            if self.store.feature_set != elements.FEATURE_SET:
                raise InputError(
                    f"{self.store.path.name} was built for atom features "
                    f"{self.store.feature_set!r}, but this crystensor builds "
                    f"{elements.FEATURE_SET!r}; re-run crystensor featurize"
                )
            if self.store.attrs["feature_table_sha256"] != elements.feature_table_sha256():
                log.warning(
                    "%s: the %s atom-feature table differs from the one it was built with "
                    "(a different pymatgen release?); features are rebuilt from the current one",
                    self.store.path.name,
                    elements.FEATURE_SET,
                )
        if not dtype.is_floating_point:
            raise InputError(f"dtype must be a floating-point torch dtype, got {dtype}")
        self.dtype = dtype
        n = len(self.store)
        idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise InputError(f"indices out of range for a store of {n} graphs")
        self.indices = idx
        if split is not None:
            self.indices = np.intersect1d(idx, self.store.split_indices(split))
        self.split = split
        if in_memory:
            self.store.preload()

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        split = f", split={self.split!r}" if self.split else ""
        return f"GraphDataset({self.store.path.name!r}, {len(self)} graphs{split})"

    @property
    def target(self) -> str:
        return self.store.target

    @property
    def kind(self):
        """The :class:`~crystensor.tensors.kinds.TensorKind` of ``y``."""
        return self.store.kind

    @property
    def ids(self) -> list[str]:
        """Material ids of the graphs in this dataset, in order."""
        all_ids = self.store.ids
        return [all_ids[i] for i in self.indices]

    def subset(self, split: str) -> GraphDataset:
        """The graphs of this dataset that belong to ``split`` (``train``, ``val``, ``test``).

        The subset shares the store (and its in-memory copy, if any).
        """
        out = copy.copy(self)
        out.indices = np.intersect1d(self.indices, self.store.split_indices(split))
        out.split = split
        return out

    def head(self, n: int) -> GraphDataset:
        """The first ``n`` graphs of this dataset (all of them if it has fewer)."""
        out = copy.copy(self)
        out.indices = self.indices[: max(int(n), 0)]
        return out

    def __getitem__(self, item: int) -> Any:
        n = len(self.indices)
        if not -n <= int(item) < n:
            raise IndexError(f"index {item} out of range for {n} graphs")
        index = int(self.indices[int(item)])
        g = self.store.graph(index)
        dtype = self.dtype
        extra = {
            name: torch.from_numpy(np.asarray(f(index))) for name, f in self.node_fields.items()
        }
        for name, f in self.graph_fields.items():
            extra[name] = torch.as_tensor(np.asarray(f(index)), dtype=dtype).unsqueeze(0)
        return graph_to_data(
            g,
            dtype,
            node_features=g.node_features,
            y=torch.from_numpy(g.target_irreps).to(dtype).unsqueeze(0),
            y_cartesian=torch.as_tensor(np.asarray(g.target_cartesian), dtype=dtype).unsqueeze(0),
            id=g.id,
            **extra,
        )


def graph_to_data(
    graph: Any,
    dtype: torch.dtype = torch.float32,
    *,
    node_features: np.ndarray | None = None,
    **fields: Any,
) -> Any:
    """The PyG ``Data`` a model reads, from a stored or freshly built graph.

    One conversion for training (:class:`GraphDataset`) and prediction
    (:mod:`crystensor.prediction`), so that both feed the model the same fields.

    Parameters
    ----------
    graph : StoredGraph or StructureGraph
        Anything with ``atomic_numbers (n,)``, ``positions (n, 3)``, ``cell (3, 3)``,
        ``edge_index (2, e)`` and ``edge_shift (e, 3)`` (see :mod:`crystensor.data.graph`).
    dtype : torch.dtype
        Floating dtype of ``x``, ``pos``, ``cell`` and ``edge_shift``.
    node_features : array ``(n, F)``, optional
        Stored atom features; rebuilt from Z with :func:`crystensor.data.elements.node_features`
        when None.
    **fields
        Further ``Data`` fields (targets, ids).

    Returns
    -------
    torch_geometric.data.Data
        ``z``, ``x``, ``pos``, ``cell (1, 3, 3)``, ``edge_index``, ``edge_shift``, ``num_nodes``
        and ``fields`` (the module docstring gives the shapes).
    """
    from torch_geometric.data import Data

    tensors = _graph_tensors(graph, dtype, node_features)
    return Data(**tensors, num_nodes=len(tensors["z"]), **fields)


def _graph_tensors(
    graph: Any, dtype: torch.dtype, node_features: np.ndarray | None = None
) -> dict[str, torch.Tensor]:
    """The tensors of :func:`graph_to_data`, without importing PyG (for ``crystensor predict``)."""
    z = torch.from_numpy(np.asarray(graph.atomic_numbers).astype(np.int64))
    x = node_features if node_features is not None else elements.node_features(z.numpy())
    # torch.tensor copies: pymatgen's arrays (the lattice matrix) are read-only
    return dict(
        z=z,
        x=torch.tensor(np.asarray(x), dtype=dtype),
        pos=torch.tensor(np.asarray(graph.positions), dtype=dtype),
        cell=torch.tensor(np.asarray(graph.cell), dtype=dtype).unsqueeze(0),
        edge_index=torch.from_numpy(np.asarray(graph.edge_index).astype(np.int64)),
        edge_shift=torch.tensor(np.asarray(graph.edge_shift).astype(np.float64), dtype=dtype),
    )


def _collate(graphs: Sequence[Any], device: torch.device | str = "cpu") -> SimpleNamespace:
    """What ``torch_geometric.data.Batch.from_data_list`` makes of the fields a model reads.

    ``x``, ``pos``, ``cell`` (to ``(B, 3, 3)``) and ``edge_shift`` concatenated, ``edge_index``
    offset by the nodes of the graphs before, the ``batch`` vector and ``num_graphs``: the same
    tensors, bit for bit, without PyG's import (0.5 s) and bookkeeping.
    """
    sizes = [len(g.pos) for g in graphs]
    offsets = itertools.accumulate(sizes[:-1], initial=0)
    edge_index = [g.edge_index + offset for g, offset in zip(graphs, offsets, strict=True)]
    tensors = dict(
        x=torch.cat([g.x for g in graphs]),
        z=torch.cat([g.z for g in graphs]),
        pos=torch.cat([g.pos for g in graphs]),
        cell=torch.cat([g.cell for g in graphs]),
        edge_index=torch.cat(edge_index, dim=1),
        edge_shift=torch.cat([g.edge_shift for g in graphs]),
        batch=torch.repeat_interleave(torch.arange(len(graphs)), torch.tensor(sizes)),
    )
    return SimpleNamespace(
        **{name: t.to(device) for name, t in tensors.items()}, num_graphs=len(graphs)
    )


def prior_fields(cache: Any, kind: Any) -> dict[str, Any]:
    """``graph_fields`` of a physics prior: ``prior`` (``(dim,)`` irreps of the cached tensor,
    target units, zeros where it failed) and ``prior_mask`` (``()``, 1.0 where it exists).

    Parameters
    ----------
    cache : PriorCache
        :mod:`crystensor.data.prior_cache`, rows following the store.
    kind : TensorKind
        The target's kind (its change of basis gives the irreps).
    """
    from crystensor.tensors.harmonic import to_irreps
    from crystensor.tensors.voigt import from_voigt

    ok = cache.ok
    voigt = np.where(ok[:, None, None], cache.voigt, 0.0)
    irreps = to_irreps(np.stack([from_voigt(v) for v in voigt]), kind) if len(voigt) else voigt
    mask = ok.astype(np.float64)
    return {"prior": irreps.__getitem__, "prior_mask": mask.__getitem__}
