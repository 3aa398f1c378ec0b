r"""A universal potential's elastic tensor of every structure of a store, cached beside it.

The prior of a graph is the stiffness that a pretrained interatomic potential (SevenNet-0)
gives its structure (:func:`crystensor.physics.elastic_prior.compute_elastic_prior`, at the
stored geometry, float32, one torch thread per process): about 0.6 s for up to 10 atoms and
1.7 s for 11-20, so it is computed once per store and kept in
``<store>.<potential>.prior.h5`` (clamped ions; ``<store>.<potential>-relaxed.prior.h5`` for
relaxed ions):

=================  ======================  ===============================================
``voigt``          ``(N, 6, 6)`` float64   the prior in Voigt notation (pymatgen's order,
                                           no factors of 2), GPa, the frame of the store;
                                           NaN where it could not be computed
``failed``         ``(N,)`` str            why not (empty where it was computed)
``max_force``      ``(N,)`` float64        largest residual force under the potential, eV/A
``seconds``        ``(N,)`` float64        wall time of the computation
``done``           ``(N,)`` bool           rows written (all true in a finished file)
=================  ======================  ===============================================

Rows follow the store. File attributes identify what made the cache: the store
(:func:`crystensor.data.feature_cache.store_fingerprint`), the potential (``potential_name``,
``potential_package``, ``potential_version``, ``potential_checkpoint``,
``potential_sha256``), ``prior_kind`` (``"clamped"`` or ``"relaxed"``) and ``dtype``.

:func:`load_or_build` returns the cache if it is current and otherwise (re)builds it. A build
writes to ``.<cache name>.part`` in the same folder, flushed every few graphs, and renames it to
the final name only when every row is written, so the final name never holds a partial file;
an interrupted build resumes from the rows of a ``.part`` file made for the same store,
potential and kind. A structure the potential cannot take (an element it was not trained on,
no neighbour within its cutoff) gets a NaN row and its reason; the model then sees a zero
prior and a mask (:mod:`crystensor.nn.prior`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from crystensor.data.feature_cache import (
    _crystensor_version,
    _now,
    identity_mismatch,
    store_fingerprint,
)
from crystensor.data.store import GraphStore
from crystensor.errors import InputError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "PRIOR_KINDS",
    "PriorCache",
    "load_or_build",
    "load_prior",
    "prior_cache_path",
    "prior_identity",
]

log = logging.getLogger(__name__)

FORMAT = "crystensor-prior-cache"
FORMAT_VERSION = 1
#: clamped ions (6 Hessian-vector products a structure) or relaxed ions (plus one per
#: internal-strain direction: 3-10 times the cost above 10 atoms)
PRIOR_KINDS = ("clamped", "relaxed")

# progress(graphs_done, graphs_total), called after every flushed chunk
Progress = Callable[[int, int], None]


def _check_kind(kind: str) -> None:
    if kind not in PRIOR_KINDS:
        raise InputError(f"prior kind must be one of {', '.join(PRIOR_KINDS)}, not {kind!r}")


def prior_cache_path(
    store_path: str | os.PathLike, potential: str = "sevennet-0", kind: str = "clamped"
) -> Path:
    """``<store_path>.<potential>.prior.h5`` (``<potential>-relaxed`` for relaxed ions)."""
    _check_kind(kind)
    store_path = Path(store_path)
    tag = potential if kind == "clamped" else f"{potential}-{kind}"
    return store_path.with_name(f"{store_path.name}.{tag}.prior.h5")


def potential_identity(potential: str) -> dict[str, str]:
    """``potential_*`` attributes: name, package, version, checkpoint and its sha256."""
    from crystensor.models.backbones.sevennet import POTENTIALS, identity

    if potential not in POTENTIALS:
        raise InputError(
            f"unknown potential {potential!r} for an elastic prior; choose one of "
            f"{', '.join(POTENTIALS)}"
        )
    return {f"potential_{k}": v for k, v in identity(potential).items()}


def prior_identity(
    store: GraphStore, potential: str = "sevennet-0", kind: str = "clamped"
) -> dict[str, Any]:
    """The attributes a prior cache of ``store`` must carry to be current."""
    _check_kind(kind)
    return {
        "format_version": FORMAT_VERSION,
        **store_fingerprint(store),
        **potential_identity(potential),
        "prior_kind": kind,
        "dtype": "float32",
    }


class PriorCache:
    """The cached priors of a store, held in memory (a few hundred bytes a graph).

    Attributes
    ----------
    path : Path
    attrs : dict
        The file's attributes (:func:`prior_identity` and ``format``, ``created``, ...).
    voigt : array ``(N, 6, 6)`` float64, GPa
        NaN rows where the prior failed.
    failed : list of str
        The reason per graph ('' where the prior exists).
    max_force, seconds : arrays ``(N,)`` float64
    """

    def __init__(self, path: str | os.PathLike) -> None:
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"prior cache {str(self.path)!r} does not exist")
        try:
            with h5py.File(self.path, "r") as f:
                attrs = dict(f.attrs.items())
                if attrs.get("format") != FORMAT or "voigt" not in f:
                    raise InputError(f"{self.path.name} is not a crystensor prior cache")
                self.voigt = np.asarray(f["voigt"][()], dtype=np.float64)
                self.failed = [s.decode() if isinstance(s, bytes) else s for s in f["failed"]]
                self.max_force = np.asarray(f["max_force"][()], dtype=np.float64)
                self.seconds = np.asarray(f["seconds"][()], dtype=np.float64)
                done = np.asarray(f["done"][()], dtype=bool)
        except OSError as err:
            raise InputError(f"cannot read {self.path.name}: {err}") from None
        self.attrs = _plain(attrs)
        if self.voigt.shape != (len(done), 6, 6) or not done.all():
            raise InputError(f"{self.path.name} is damaged or unfinished; delete it to rebuild")

    def __len__(self) -> int:
        return len(self.voigt)

    def __repr__(self) -> str:
        return (
            f"PriorCache({self.path.name!r}: {len(self)} graphs, {self.attrs.get('potential_name')}"
            f" {self.attrs.get('prior_kind')}, {self.num_failed} failed)"
        )

    @property
    def ok(self) -> np.ndarray:
        """``(N,)`` bool: graphs that have a prior."""
        return ~np.isnan(self.voigt).any(axis=(1, 2))

    @property
    def num_failed(self) -> int:
        return int((~self.ok).sum())

    def identity(self) -> dict[str, Any]:
        """The potential and kind, as a checkpoint records them."""
        keys = [k for k in self.attrs if k.startswith("potential_")] + ["prior_kind", "dtype"]
        return {k: self.attrs[k] for k in keys}

    def cartesian(self, index: int) -> np.ndarray:
        """The prior ``C_ijkl`` of graph ``index``, ``(3, 3, 3, 3)`` GPa (NaN if it failed)."""
        from crystensor.tensors.voigt import from_voigt

        return from_voigt(self.voigt[index])


def _plain(attrs: dict[str, Any]) -> dict[str, Any]:
    """HDF5 attributes as plain Python values (str, int, float)."""
    out = {}
    for key, value in attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        out[key] = value.item() if isinstance(value, np.generic) else value
    return out


def load_prior(
    store: GraphStore | str | os.PathLike, potential: str = "sevennet-0", kind: str = "clamped"
) -> PriorCache:
    """The current prior cache of ``store``, without building one.

    Raises
    ------
    InputError
        No cache, or one made for another store, potential or kind (says which attribute
        differs and how to build it).
    """
    if not isinstance(store, GraphStore):
        store = GraphStore(store)
    path = prior_cache_path(store.path, potential, kind)
    reason = _stale(path, prior_identity(store, potential, kind))
    if reason is not None:
        raise InputError(
            f"{store.path.name} has no current {potential} {kind}-ion prior ({reason}); build "
            "it with crystensor.data.prior_cache.load_or_build or crystensor train --prior"
        )
    return PriorCache(path)


def _stale(path: Path, want: dict[str, Any]) -> str | None:
    if not path.exists():
        return f"no {path.name}"
    try:
        have = PriorCache(path).attrs
    except InputError as err:
        return str(err)
    return identity_mismatch(have, want)


def load_or_build(
    store: GraphStore | str | os.PathLike,
    potential: str = "sevennet-0",
    kind: str = "clamped",
    *,
    workers: int = 1,
    flush_every: int = 16,
    progress: Progress | None = None,
) -> PriorCache:
    """The priors of ``store``: the cache file if current, else computed (resuming a partial
    build of the same store, potential and kind) and written.

    Parameters
    ----------
    store : GraphStore or path
    potential : str
        A pretrained potential (``"sevennet-0"``).
    kind : ``"clamped"`` or ``"relaxed"``
        Clamped- or relaxed-ion stiffness.
    workers : int
        Processes (forked, one torch thread each).
    flush_every : int
        Graphs between writes of the partial file (what an interruption can lose).
    progress : callable, optional
        ``progress(graphs_done, graphs_total)`` after every write.

    Returns
    -------
    PriorCache

    Raises
    ------
    InputError
        Unknown potential or kind, or a folder where the cache cannot be written.
    """
    if not isinstance(store, GraphStore):
        store = GraphStore(store)
    path = prior_cache_path(store.path, potential, kind)
    want = prior_identity(store, potential, kind)
    reason = _stale(path, want)
    if reason is None:
        log.debug("using prior cache %s", path)
        return PriorCache(path)
    log.info("building prior cache %s (%s)", path.name, reason)
    part = path.with_name(f".{path.name}.part")
    try:
        done = _open_part(part, store, want)
        _fill(part, store, potential, kind, done, workers, flush_every, progress)
        os.replace(part, path)
    except OSError as err:
        raise InputError(
            f"cannot write the prior cache {path.name} beside {store.path.name}: "
            f"{err.strerror or err}"
        ) from None
    return PriorCache(path)


def _open_part(part: Path, store: GraphStore, want: dict[str, Any]) -> np.ndarray:
    """The ``done`` mask of a resumable partial file (a new one if none fits ``want``)."""
    import h5py

    if part.exists():
        try:
            with h5py.File(part, "r") as f:
                have = _plain(dict(f.attrs.items()))
                done = np.asarray(f["done"][()], dtype=bool)
            if identity_mismatch(have, want) is None and len(done) == len(store):
                log.info("resuming %s: %d of %d graphs done", part.name, done.sum(), len(done))
                return done
        except (OSError, KeyError):
            pass
        log.info("discarding %s (another store, potential or kind, or damaged)", part.name)
        part.unlink()
    n = len(store)
    with h5py.File(part, "w") as f:
        f.create_dataset("voigt", data=np.full((n, 6, 6), np.nan))
        f.create_dataset("failed", data=[""] * n, dtype=h5py.string_dtype())
        f.create_dataset("max_force", data=np.full(n, np.nan))
        f.create_dataset("seconds", data=np.full(n, np.nan))
        f.create_dataset("done", data=np.zeros(n, dtype=bool))
        f.attrs["format"] = FORMAT
        f.attrs["crystensor_version"] = _crystensor_version()
        f.attrs["voigt_order"] = "xx, yy, zz, yz, xz, xy (no factors of 2), GPa"
        for key, value in want.items():
            f.attrs[key] = value
    return np.zeros(n, dtype=bool)


def _prior_of(state: dict[str, Any], index: int) -> tuple[np.ndarray, str, float, float]:
    """``(voigt (6, 6), reason, max_force, seconds)`` of graph ``index`` (in a worker)."""
    import ase

    from crystensor.physics.elastic_prior import compute_elastic_prior
    from crystensor.tensors.voigt import to_voigt

    a, b = state["offsets"][index], state["offsets"][index + 1]
    atoms = ase.Atoms(
        numbers=state["numbers"][a:b],
        positions=state["positions"][a:b],
        cell=state["cells"][index],
        pbc=True,
    )
    start = time.perf_counter()
    try:
        prior = compute_elastic_prior(
            atoms, state["potential"], relaxed_ions=state["kind"] == "relaxed", threads=1
        )
    except InputError as err:
        return np.full((6, 6), np.nan), str(err) or "failed", np.nan, time.perf_counter() - start
    seconds = time.perf_counter() - start
    return to_voigt(prior.tensor), "", prior.max_force, seconds


def _fill(
    part: Path,
    store: GraphStore,
    potential: str,
    kind: str,
    done: np.ndarray,
    workers: int,
    flush_every: int,
    progress: Progress | None,
) -> None:
    import h5py

    from crystensor.parallel import ForkPool
    from crystensor.physics.elastic_prior import load_potential

    if workers > 1:
        load_potential(potential)  # loaded once here, inherited by the forked workers
    state = {
        "numbers": store.read("atomic_numbers").astype(np.int64),
        "positions": np.asarray(store.read("positions"), dtype=np.float64),
        "cells": np.asarray(store.read("cell"), dtype=np.float64),
        "offsets": np.asarray(store.node_offsets, dtype=np.int64),
        "potential": potential,
        "kind": kind,
    }
    ids = store.ids
    store.close()  # no HDF5 handle is inherited by the workers
    todo = np.flatnonzero(~done).tolist()
    total, count = len(done), int(done.sum())
    started = time.perf_counter()
    rows: list[tuple[int, tuple[np.ndarray, str, float, float]]] = []

    def flush() -> None:
        with h5py.File(part, "r+") as f:
            for index, (voigt, reason, force, seconds) in rows:
                f["voigt"][index] = voigt
                f["failed"][index] = reason
                f["max_force"][index] = force
                f["seconds"][index] = seconds
                f["done"][index] = True
        rows.clear()
        elapsed = time.perf_counter() - started
        log.info(
            "prior %d/%d graphs (%.0f s, %.2f s a graph this run)",
            count,
            total,
            elapsed,
            elapsed / max(count - (total - len(todo)), 1),
        )
        if progress is not None:
            progress(count, total)

    with ForkPool(_prior_of, state, workers) as pool:
        for index, result in pool.map(todo, window=4 * flush_every * max(workers, 1)):
            rows.append((index, result))
            count += 1
            if result[1]:
                log.warning("no prior for %s: %s", ids[index], result[1])
            if len(rows) >= flush_every:
                flush()
    if rows:
        flush()
    with h5py.File(part, "r+") as f:
        f.attrs["created"] = _now()
