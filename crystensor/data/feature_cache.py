"""Frozen node features of a pretrained backbone for every node of a graph store, cached beside it.

A frozen backbone gives the same features at every epoch, so they are computed once per store and
backbone and read back during training. The cache of store ``elastic.h5`` and backbone
``sevennet-0`` is ``elastic.h5.sevennet-0.features.h5`` (:func:`cache_path`):

================  ================  =======  ==================================================
dataset           shape             dtype    content
================  ================  =======  ==================================================
``features``      ``(N, 2, dim)``   float32  node features of each structure (``[:, 0]``) and
                                             of its image under inversion (``[:, 1]``:
                                             positions and cell negated, same atom order)
``node_offsets``  ``(G + 1,)``      int64    the store's: graph ``g`` owns rows
                                             ``node_offsets[g]:node_offsets[g+1]``
================  ================  =======  ==================================================

Attributes: ``format`` (:data:`FORMAT`), ``format_version``, ``created``, ``crystensor_version``,
``irreps`` and ``dim`` of the features, and what made it (:func:`cache_identity`): the store
(``store_name``, ``store_created``, ``store_n_graphs``, ``store_n_nodes`` and ``store_sha256``, a
hash of its ids, atomic numbers, positions and cells) and the backbone (``backbone_name``,
``backbone_package``, ``backbone_version``, ``backbone_checkpoint``, ``backbone_sha256``).

The features are computed from each structure's atoms, positions and cell with the backbone's own
radius graph (:meth:`~crystensor.models.backbones.sevennet.PretrainedBackbone.features_of_many`),
not from the store's edges, so they do not depend on the store's cutoff. :func:`load_or_build`
rebuilds the file when it is missing or when any identity attribute differs, writing it to a
temporary name in the same folder and renaming it when complete, so no partial file is ever left
under the final name. :class:`FeatureCache` opens the file lazily once per process, so it is safe
in ``DataLoader`` workers (fork or spawn).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crystensor.data.store import GraphStore, LazyHDF5Reader
from crystensor.errors import InputError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "FeatureCache",
    "cache_identity",
    "cache_path",
    "identity_mismatch",
    "load_or_build",
    "store_fingerprint",
]

log = logging.getLogger(__name__)

FORMAT = "crystensor-feature-cache"
FORMAT_VERSION = 1
LAYOUT = "(N, 2, dim): [:, 0] structure, [:, 1] its image under inversion; rows follow the store"

# progress(graphs_done, graphs_total), called after every batch
Progress = Callable[[int, int], None]


def cache_path(store_path: str | os.PathLike, backbone_name: str) -> Path:
    """``<store_path>.<backbone_name>.features.h5``, beside the store."""
    store_path = Path(store_path)
    return store_path.with_name(f"{store_path.name}.{backbone_name}.features.h5")


def store_fingerprint(store: GraphStore) -> dict[str, Any]:
    """What identifies a store's structures: name, creation time, sizes and a content hash.

    ``store_sha256`` hashes the ids, atomic numbers, positions and cells (the inputs of the
    features; about 10 ms for 20 000 atoms), so a store rewritten with other structures under the
    same name is told apart even when its creation time is not.
    """
    digest = hashlib.sha256()
    digest.update("\0".join(store.ids).encode())
    for name, dtype in (("atomic_numbers", np.int64), ("positions", "<f8"), ("cell", "<f8")):
        values = np.ascontiguousarray(store.read(name), dtype=dtype)
        digest.update(f"\0{name}{values.shape}".encode())
        digest.update(values.tobytes())
    return {
        "store_name": store.path.name,
        "store_created": str(store.attrs["created"]),
        "store_n_graphs": len(store),
        "store_n_nodes": store.num_nodes,
        "store_sha256": digest.hexdigest(),
    }


def cache_identity(store: GraphStore, backbone_name: str) -> dict[str, Any]:
    """The attributes a cache of ``store`` by ``backbone_name`` must carry to be current."""
    from crystensor.models.backbones import backbone_identity

    backbone = {f"backbone_{k}": v for k, v in backbone_identity(backbone_name).items()}
    return {"format_version": FORMAT_VERSION, **store_fingerprint(store), **backbone}


class FeatureCache(LazyHDF5Reader):
    """Read cached backbone features, per graph, from a file (lazily) or from memory.

    Parameters
    ----------
    path : path or None
        The cache file; None for a cache held in memory only (``memory`` given).
    memory : array ``(N, 2, dim)`` float32, optional
    attrs : dict, optional
        Needed with ``memory``: the attributes a file would carry.
    node_offsets : array ``(G + 1,)``, optional
        Needed with ``memory``.
    """

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        *,
        memory: np.ndarray | None = None,
        attrs: dict[str, Any] | None = None,
        node_offsets: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path) if path is not None else None
        self._memory = memory
        if path is None:
            if memory is None or attrs is None or node_offsets is None:
                raise ValueError("a cache without a file needs memory, attrs and node_offsets")
            self.attrs = dict(attrs)
            self.node_offsets = np.asarray(node_offsets, dtype=np.int64)
        else:
            self.attrs, self.node_offsets = _read_header(self.path)

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "memory"
        return (
            f"FeatureCache({where!r}: {len(self)} graphs, {self.num_nodes} nodes, "
            f"{self.attrs.get('backbone_name')} {self.irreps})"
        )

    def __len__(self) -> int:
        return len(self.node_offsets) - 1

    @property
    def num_nodes(self) -> int:
        return int(self.node_offsets[-1])

    @property
    def irreps(self) -> str:
        """Irreps of the last axis (``128x0e+64x1o+32x2e`` for SevenNet-0)."""
        return str(self.attrs["irreps"])

    @property
    def dim(self) -> int:
        return int(self.attrs["dim"])

    @property
    def in_memory(self) -> bool:
        return self._memory is not None

    def _dataset(self):
        return self._file()["features"]

    def features(self, index: int) -> np.ndarray:
        """Features ``(n_nodes, 2, dim)`` float32 of graph ``index`` (structure, inverted image)."""
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"graph index {index} out of range for {n} graphs")
        index %= n
        a, b = int(self.node_offsets[index]), int(self.node_offsets[index + 1])
        if self._memory is not None:
            return self._memory[a:b]
        return self._dataset()[a:b]

    def preload(self) -> FeatureCache:
        """Read every feature into memory (the file is then closed)."""
        if self._memory is None:
            self._memory = self._dataset()[()]
            self.close()
        return self


def _read_header(path: Path) -> tuple[dict[str, Any], np.ndarray]:
    import h5py

    if not path.is_file():
        raise InputError(f"feature cache {str(path)!r} does not exist")
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            if attrs.get("format") != FORMAT or "features" not in f or "node_offsets" not in f:
                raise InputError(f"{path.name} is not a crystensor feature cache")
            offsets = f["node_offsets"][()]
            shape = f["features"].shape
    except OSError as err:
        raise InputError(f"cannot read {path.name}: {err}") from None
    attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}
    if len(shape) != 3 or shape[0] != offsets[-1] or shape[1] != 2:
        raise InputError(f"{path.name} is damaged: features {shape} do not match its offsets")
    return attrs, np.asarray(offsets, dtype=np.int64)


def _stale(path: Path, want: dict[str, Any]) -> str | None:
    """Why the cache at ``path`` cannot be used (None if it is current)."""
    if not path.exists():
        return "no cache yet"
    try:
        have, _ = _read_header(path)
    except InputError as err:
        return str(err)
    return identity_mismatch(have, want)


def identity_mismatch(have: dict[str, Any], want: dict[str, Any]) -> str | None:
    """The attributes of ``want`` that ``have`` lacks or holds otherwise, as
    ``"key 'old' -> 'new'; ..."`` (None if all agree); a cache is stale when this is not None."""
    diffs = [
        f"{key} {_short(have.get(key))} -> {_short(value)}"
        for key, value in want.items()
        if have.get(key) != value
    ]
    return "; ".join(diffs) if diffs else None


def _short(value: Any) -> str:
    """``repr`` of an attribute, a sha256 cut to 12 digits."""
    if isinstance(value, str) and len(value) == 64:
        return repr(value[:12])
    return repr(value)


def load_or_build(
    store: GraphStore | str | os.PathLike,
    backbone_name: str,
    *,
    batch_size: int = 32,
    max_edges: int | None = None,
    progress: Progress | None = None,
    backbone: Any = None,
) -> FeatureCache:
    """The features of ``store`` by ``backbone_name``: the cache file if current, else built.

    Parameters
    ----------
    store : GraphStore or path
    backbone_name : str
        A pretrained backbone (:data:`crystensor.models.backbones.PRETRAINED_BACKBONES`).
    batch_size : int
        Graphs read from the store at a time, and most structures per forward pass.
    max_edges : int or None
        Most edges per forward pass; by default the backbone's CPU setting
        (:meth:`~crystensor.models.backbones.sevennet.PretrainedBackbone.features_of_many`).
    progress : callable, optional
        ``progress(graphs_done, graphs_total)``, called after every batch while building.
    backbone : PretrainedBackbone, optional
        An already loaded, unmodified backbone of that name (saves loading it again); its
        weights are not checked, only its name and checkpoint identity.

    Returns
    -------
    FeatureCache
        Reading the file lazily; held in memory instead (with a logged warning) when the
        store's folder is not writable.

    Raises
    ------
    InputError
        Unknown backbone, or the store holds elements the backbone was not trained on (names
        them and the first structures holding them).
    """
    from crystensor.models.backbones import available_backbones

    if backbone_name == "native" or backbone_name not in available_backbones():
        pretrained = [name for name in available_backbones() if name != "native"]
        raise InputError(
            f"features can be cached for the pretrained backbones "
            f"({', '.join(pretrained)}), not {backbone_name!r}"
        )
    if not isinstance(store, GraphStore):
        store = GraphStore(store)
    path = cache_path(store.path, backbone_name)
    want = cache_identity(store, backbone_name)
    reason = _stale(path, want)
    if reason is None:
        log.debug("using feature cache %s", path)
        return FeatureCache(path)
    log.info("building feature cache %s (%s)", path.name, reason)

    if backbone is None:
        from crystensor.models.backbones import load_backbone

        backbone = load_backbone(backbone_name)
    elif backbone.identity() != {
        k[len("backbone_") :]: v for k, v in want.items() if k.startswith("backbone_")
    }:
        raise InputError(
            f"the backbone given ({backbone.name}, sha256 {backbone.file_sha256[:12]}) is not "
            f"the installed {backbone_name}"
        )
    _check_elements(store, backbone)
    attrs = {
        "format": FORMAT,
        "crystensor_version": _crystensor_version(),
        "irreps": str(backbone.irreps_out),
        "dim": int(backbone.irreps_out.dim),
        "layout": LAYOUT,
        **want,
    }
    shape = (store.num_nodes, 2, attrs["dim"])
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as err:
        log.warning(
            "cannot write the feature cache beside %s (%s); computing the features in memory "
            "only, and again next time",
            store.path.name,
            err.strerror or err,
        )
        memory = np.empty(shape, dtype=np.float32)
        _compute(store, backbone, memory, batch_size, max_edges, progress)
        attrs["created"] = _now()
        return FeatureCache(memory=memory, attrs=attrs, node_offsets=store.node_offsets)
    os.close(fd)
    tmp = Path(name)
    try:
        _write(tmp, store, backbone, attrs, shape, batch_size, max_edges, progress)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return FeatureCache(path)


def _write(
    tmp: Path,
    store: GraphStore,
    backbone: Any,
    attrs: dict[str, Any],
    shape: tuple[int, int, int],
    batch_size: int,
    max_edges: int | None,
    progress: Progress | None,
) -> None:
    import h5py

    started = time.perf_counter()
    with h5py.File(tmp, "w") as f:
        # contiguous, uncompressed: a graph's rows are one direct read
        features = f.create_dataset("features", shape, np.float32)
        f.create_dataset("node_offsets", data=np.asarray(store.node_offsets, dtype=np.int64))
        _compute(store, backbone, features, batch_size, max_edges, progress)
        attrs["created"] = _now()
        for key, value in attrs.items():
            f.attrs[key] = value
    log.info(
        "computed %s features of %d graphs (%d nodes) in %.1f s",
        attrs["backbone_name"],
        len(store),
        store.num_nodes,
        time.perf_counter() - started,
    )


def _compute(
    store: GraphStore,
    backbone: Any,
    out: Any,
    batch_size: int,
    max_edges: int | None,
    progress: Progress | None,
) -> None:
    """Fill ``out[N, 2, dim]`` (array or HDF5 dataset) with the features, ``batch_size`` graphs
    at a time."""
    offsets = store.node_offsets
    total = len(store)
    for start in range(0, total, batch_size):
        stop = min(start + batch_size, total)
        a, b = int(offsets[start]), int(offsets[stop])
        numbers = store.read("atomic_numbers", a, b).astype(np.int64)
        positions = store.read("positions", a, b)
        cells = store.read("cell", start, stop)
        structures = [
            (
                numbers[offsets[g] - a : offsets[g + 1] - a],
                positions[offsets[g] - a : offsets[g + 1] - a],
                cells[g - start],
            )
            for g in range(start, stop)
        ]
        limits = {"batch_size": batch_size}
        if max_edges is not None:
            limits["max_edges"] = max_edges
        features = backbone.features_of_many(structures, with_inverted=True, **limits)
        out[a:b] = np.concatenate(features) if features else np.empty((0, *out.shape[1:]))
        if progress is not None:
            progress(stop, total)


def _check_elements(store: GraphStore, backbone: Any) -> None:
    """Refuse the whole store up front if it holds elements the backbone does not know."""
    numbers = store.read("atomic_numbers").astype(np.int64)
    bad = backbone.unknown_elements(numbers)
    if not bad:
        return
    offsets = store.node_offsets
    ids = [
        store.ids[g]
        for g in range(len(store))
        if backbone.unknown_elements(numbers[offsets[g] : offsets[g + 1]])
    ]
    more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
    raise InputError(
        f"{store.path.name} holds {', '.join(bad)}, on which backbone {backbone.name} was not "
        f"trained ({', '.join(ids[:5])}{more}); remove these structures or use the native "
        "backbone"
    )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _crystensor_version() -> str:
    from crystensor import __version__

    return __version__
