"""The prior cache beside a store: round trip, staleness, resuming, failed structures.

A stand-in for the potential (``fake_prior``) keeps these tests fast; one test (slow) checks
the real SevenNet-0 computation against :func:`compute_elastic_prior`.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from crystensor.data import prior_cache
from crystensor.data.prior_cache import load_or_build, load_prior, prior_cache_path
from crystensor.data.store import GraphStore
from crystensor.errors import InputError
from tests.data.test_store import graphs_of_structures, write

pytest.importorskip("sevenn")


def fake_voigt(index: int) -> np.ndarray:
    c = np.zeros((6, 6))
    c[:3, :3] = 50.0 + index
    c[np.diag_indices(6)] = [150.0 + index] * 3 + [40.0] * 3
    return c


def fake_prior(state, index):
    """Graph 2 fails as a structure with an unknown element would."""
    if index == 2:
        return np.full((6, 6), np.nan), "SevenNet-0 was not trained on Am", np.nan, 0.0
    return fake_voigt(index), "", 0.01 * index, 0.001


@pytest.fixture
def fake(monkeypatch):
    calls = []

    def recording(state, index):
        calls.append(index)
        return fake_prior(state, index)

    monkeypatch.setattr(prior_cache, "_prior_of", recording)
    return calls


@pytest.fixture
def store_path(tmp_path):
    return write(tmp_path / "g.h5", graphs_of_structures())


def test_round_trip(store_path, fake):
    cache = load_or_build(store_path)
    assert (
        cache.path
        == prior_cache_path(store_path)
        == store_path.with_name("g.h5.sevennet-0.prior.h5")
    )
    assert fake == [0, 1, 2, 3] and len(cache) == 4
    for i in (0, 1, 3):
        np.testing.assert_array_equal(cache.voigt[i], fake_voigt(i))
    assert np.isnan(cache.voigt[2]).all() and cache.failed[2].endswith("Am")
    assert cache.ok.tolist() == [True, True, False, True] and cache.num_failed == 1
    assert cache.cartesian(0).shape == (3, 3, 3, 3)
    ident = cache.identity()
    assert ident["potential_name"] == "sevennet-0" and ident["prior_kind"] == "clamped"
    assert len(ident["potential_sha256"]) == 64
    assert not list(store_path.parent.glob("*.part"))


def test_a_current_cache_is_reused_and_load_prior_reads_it(store_path, fake):
    load_or_build(store_path)
    fake.clear()
    load_or_build(store_path)
    assert fake == []
    assert load_prior(store_path).num_failed == 1


def test_a_rewritten_store_makes_the_cache_stale(store_path, fake, caplog):
    load_or_build(store_path)
    write(store_path, graphs_of_structures()[:3])
    with pytest.raises(InputError, match="no current sevennet-0 clamped-ion prior"):
        load_prior(store_path)
    fake.clear()
    # the module's logger: an earlier test (a CLI run with -q) may have raised crystensor's level
    with caplog.at_level("INFO", logger="crystensor.data.prior_cache"):
        assert len(load_or_build(store_path)) == 3
    assert fake == [0, 1, 2] and "store_" in caplog.text


def test_another_kind_is_another_file(store_path, fake):
    load_or_build(store_path)
    with pytest.raises(InputError, match="relaxed-ion prior"):
        load_prior(store_path, kind="relaxed")
    path = load_or_build(store_path, kind="relaxed").path
    assert path.name == "g.h5.sevennet-0-relaxed.prior.h5"


def test_a_changed_potential_identity_makes_the_cache_stale(store_path, fake):
    load_or_build(store_path)
    with h5py.File(prior_cache_path(store_path), "r+") as f:
        f.attrs["potential_sha256"] = "0" * 64
    with pytest.raises(InputError, match="potential_sha256 '000000000000' -> "):
        load_prior(store_path)


def test_an_interrupted_build_resumes(store_path, monkeypatch):
    done = []

    def once(state, index):
        if index == 2 and "resumed" not in done:
            raise KeyboardInterrupt
        done.append(index)
        return fake_prior(state, index)

    monkeypatch.setattr(prior_cache, "_prior_of", once)
    with pytest.raises(KeyboardInterrupt):
        load_or_build(store_path, flush_every=1)
    assert not prior_cache_path(store_path).exists()
    assert (store_path.parent / ".g.h5.sevennet-0.prior.h5.part").exists()
    done.append("resumed")
    cache = load_or_build(store_path, flush_every=1)
    assert done == [0, 1, "resumed", 2, 3]
    np.testing.assert_array_equal(cache.voigt[1], fake_voigt(1))
    assert not (store_path.parent / ".g.h5.sevennet-0.prior.h5.part").exists()


def test_a_partial_file_of_another_store_is_discarded(store_path, fake):
    part = store_path.parent / ".g.h5.sevennet-0.prior.h5.part"
    part.write_bytes(b"not hdf5")
    assert len(load_or_build(store_path)) == 4 and fake == [0, 1, 2, 3]


def test_unknown_potential_and_kind_are_refused(store_path):
    with pytest.raises(InputError, match="unknown potential 'mace'"):
        load_or_build(store_path, "mace")
    with pytest.raises(InputError, match="prior kind must be one of clamped, relaxed"):
        load_or_build(store_path, kind="frozen")


@pytest.mark.slow
def test_the_real_prior_is_the_potentials_tensor(tmp_path):
    """SevenNet-0 on the smallest structure, against the direct computation."""
    from crystensor.physics.elastic_prior import compute_elastic_prior
    from crystensor.tensors.voigt import to_voigt

    graphs = graphs_of_structures()
    smallest = min(range(len(graphs)), key=lambda i: graphs[i].num_nodes)
    path = write(tmp_path / "one.h5", [graphs[smallest]])
    cache = load_or_build(path)
    g = GraphStore(path).graph(0)
    import ase

    atoms = ase.Atoms(numbers=g.atomic_numbers, positions=g.positions, cell=g.cell, pbc=True)
    want = to_voigt(compute_elastic_prior(atoms, relaxed_ions=False).clamped)
    np.testing.assert_allclose(cache.voigt[0], want, atol=1e-6)
    assert cache.failed == [""] and cache.seconds[0] > 0
