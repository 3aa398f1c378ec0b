"""The frozen-feature cache: round trip, staleness, atomic writes, read-only folders, workers."""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle

import h5py
import numpy as np
import pytest

from crystensor.data import feature_cache
from crystensor.data.feature_cache import FeatureCache, cache_path, load_or_build
from crystensor.data.graph import build_graph
from crystensor.data.store import GraphStore
from crystensor.errors import InputError
from tests.data.test_store import graphs_of_structures, write
from tests.helpers import americium

pytest.importorskip("sevenn")

NAME = "sevennet-0"


@pytest.fixture(scope="module")
def backbone():
    import torch

    from crystensor.models.backbones import load_backbone

    # one thread: on tiny graphs more cost more than they save, and far more on a busy machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_backbone(NAME)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def store_path(tmp_path):
    return write(tmp_path / "g.h5", graphs_of_structures())


def build(store, backbone, **kwargs):
    return load_or_build(store, NAME, backbone=backbone, batch_size=3, **kwargs)


def direct(store, backbone):
    """Features computed straight from the store's structures, one at a time."""
    store = GraphStore(store)
    out = []
    for i in range(len(store)):
        g = store.graph(i)
        out.append(backbone.features_of(g.atomic_numbers, g.positions, g.cell, with_inverted=True))
    return out


def test_round_trip_equals_direct_features(store_path, backbone):
    cache = build(store_path, backbone)
    assert cache.path == cache_path(store_path, NAME)
    assert cache.path.name == "g.h5.sevennet-0.features.h5" and cache.path.is_file()
    assert not cache.in_memory and len(cache) == 4 and cache.dim == 480
    assert cache.irreps == "128x0e+64x1o+32x2e"
    with h5py.File(cache.path) as f:
        assert f["features"].shape == (GraphStore(store_path).num_nodes, 2, 480)
        assert f["features"].dtype == np.float32
        np.testing.assert_array_equal(f["node_offsets"][()], GraphStore(store_path).node_offsets)
        assert f.attrs["backbone_name"] == NAME and f.attrs["store_name"] == "g.h5"
        assert f.attrs["backbone_sha256"] == backbone.file_sha256
    for i, want in enumerate(direct(store_path, backbone)):
        np.testing.assert_allclose(cache.features(i), want, rtol=1e-5, atol=1e-5)
    preloaded = FeatureCache(cache.path).preload()
    assert preloaded.in_memory
    np.testing.assert_array_equal(preloaded.features(-1), cache.features(3))


def test_an_unchanged_store_reuses_its_cache(store_path, backbone, caplog):
    build(store_path, backbone)
    inode = os.stat(cache_path(store_path, NAME)).st_ino
    with caplog.at_level(logging.INFO, logger="crystensor.data.feature_cache"):
        cache = load_or_build(store_path, NAME)  # no backbone needed to reuse it
    assert "building" not in caplog.text
    assert os.stat(cache.path).st_ino == inode


def test_a_rewritten_store_rebuilds_the_cache(store_path, backbone, caplog):
    before = build(store_path, backbone).features(0).copy()
    graphs = graphs_of_structures()
    squeezed = build_graph(_scaled(graphs[0]), 5.0)
    graphs[0].positions, graphs[0].cell = squeezed.positions, squeezed.cell
    graphs[0].edge_index, graphs[0].edge_shift = squeezed.edge_index, squeezed.edge_shift
    write(store_path, graphs)
    with caplog.at_level(logging.INFO, logger="crystensor.data.feature_cache"):
        after = build(store_path, backbone)
    assert "store_sha256" in caplog.text
    assert not np.allclose(after.features(0), before, atol=1e-3)
    np.testing.assert_allclose(after.features(0), direct(store_path, backbone)[0], atol=1e-5)


def _scaled(graph):
    from pymatgen.core import Lattice, Structure

    return Structure(
        Lattice(graph.cell * 0.97), graph.atomic_numbers, graph.positions * 0.97,
        coords_are_cartesian=True,
    )  # fmt: skip


@pytest.mark.parametrize("key", ["backbone_sha256", "backbone_version", "store_created"])
def test_a_changed_identity_rebuilds_the_cache(store_path, backbone, caplog, key):
    path = build(store_path, backbone).path
    with h5py.File(path, "r+") as f:
        f.attrs[key] = "something else"
    with caplog.at_level(logging.INFO, logger="crystensor.data.feature_cache"):
        cache = build(store_path, backbone)
    assert f"building feature cache g.h5.sevennet-0.features.h5 ({key} 'something else'" in (
        caplog.text
    )
    assert cache.attrs[key] != "something else"


def test_a_damaged_cache_is_rebuilt(store_path, backbone):
    cache_path(store_path, NAME).write_bytes(b"not hdf5")
    assert len(build(store_path, backbone)) == 4


def test_an_interrupted_build_leaves_no_file(store_path, backbone):
    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build(store_path, backbone, progress=interrupt)
    assert sorted(p.name for p in store_path.parent.iterdir()) == ["g.h5"]


def test_progress_is_reported(store_path, backbone):
    calls = []
    build(store_path, backbone, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(3, 4), (4, 4)]


def test_a_read_only_folder_falls_back_to_memory(store_path, backbone, caplog, monkeypatch):
    folder = store_path.parent
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root ignores the mode: refuse the temporary file instead

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(feature_cache.tempfile, "mkstemp", refuse)
    try:
        with caplog.at_level(logging.WARNING, logger="crystensor.data.feature_cache"):
            cache = build(store_path, backbone)
    finally:
        folder.chmod(0o755)
    assert cache.in_memory and cache.path is None
    assert "in memory only" in caplog.text
    assert sorted(p.name for p in folder.iterdir()) == ["g.h5"]
    np.testing.assert_allclose(cache.features(2), direct(store_path, backbone)[2], atol=1e-5)


def test_unknown_elements_are_refused_up_front(tmp_path, backbone):
    graphs = graphs_of_structures()
    am = build_graph(americium(), 3.5)
    graphs[2].atomic_numbers, graphs[2].positions, graphs[2].cell = (
        am.atomic_numbers, am.positions, am.cell
    )  # fmt: skip
    graphs[2].edge_index, graphs[2].edge_shift = am.edge_index, am.edge_shift
    path = write(tmp_path / "am.h5", graphs)
    with pytest.raises(InputError, match=r"holds Am, on which backbone sevennet-0 .*\(mp-2\)"):
        build(path, backbone)
    with pytest.raises(InputError, match="not 'native'"):
        load_or_build(path, "native")


def _read_all(cache):
    return [cache.features(i).sum() for i in range(len(cache))]


def test_the_cache_pickles_and_forked_workers_read_it(store_path, backbone):
    cache = build(store_path, backbone)
    cache.features(0)  # the parent has the file open before forking
    clone = pickle.loads(pickle.dumps(cache))  # what a spawned DataLoader worker gets
    assert clone._h5 is None
    np.testing.assert_array_equal(clone.features(1), cache.features(1))
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_read_all, [cache, cache])
    assert results == [_read_all(cache)] * 2
