"""The HDF5 graph store: round trip, refusal of foreign or damaged files, atomic writes, split."""

from __future__ import annotations

import multiprocessing
import pickle

import h5py
import numpy as np
import pytest

from crystensor import __version__
from crystensor.data import elements
from crystensor.data.graph import build_graph
from crystensor.data.store import (
    FORMAT,
    FORMAT_VERSION,
    REQUIRED_ATTRS,
    SPLIT_METHODS,
    SPLIT_NAMES,
    GraphStore,
    StoredGraph,
    StoreWriter,
    chemical_systems,
    make_split,
)
from crystensor.errors import InputError
from crystensor.tensors.harmonic import to_irreps
from tests.data.test_featurize import STRUCTURES, isotropic_elastic


def graphs_of_structures(target_kind: str = "elastic") -> list[StoredGraph]:
    out = []
    for k, (name, build) in enumerate(STRUCTURES.items()):
        g = build_graph(build(), 5.0)
        value = isotropic_elastic(40.0 + k, 20.0)
        out.append(
            StoredGraph(
                id=f"mp-{k}",
                atomic_numbers=g.atomic_numbers,
                positions=g.positions,
                cell=g.cell,
                edge_index=g.edge_index,
                edge_shift=g.edge_shift,
                target_cartesian=value,
                target_irreps=to_irreps(value, target_kind),
                cutoff=g.cutoff,
                formula=name,
                crystal_system="cubic",
                space_group_number=225,
                record_index=k,
            )
        )
    return out


def write(path, graphs, **kwargs):
    options = {"target": "elastic", "cutoff": 5.0, "sources": [{"file": "r", "sha256": "0"}]}
    options.update(kwargs)
    with StoreWriter(path, **options) as writer:
        for g in graphs:
            writer.append(g)
    return path


@pytest.fixture
def store_path(tmp_path):
    return write(tmp_path / "g.h5", graphs_of_structures())


def test_round_trip_keeps_every_field(store_path):
    graphs = graphs_of_structures()
    store = GraphStore(store_path)
    assert len(store) == 4 and store.ids == [g.id for g in graphs]
    assert store.num_nodes == sum(g.num_nodes for g in graphs)
    assert store.num_edges == sum(g.num_edges for g in graphs)
    for i, want in enumerate(graphs):
        got = store.graph(i)
        for field in ("atomic_numbers", "positions", "cell", "edge_index", "edge_shift"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field), field)
        np.testing.assert_array_equal(got.target_cartesian, want.target_cartesian)
        np.testing.assert_array_equal(got.target_irreps, want.target_irreps)
        assert (got.id, got.formula, got.cutoff, got.record_index) == (
            want.id,
            want.formula,
            want.cutoff,
            want.record_index,
        )
        assert got.node_features is None
    assert store.graph(-1).id == "mp-3"
    with pytest.raises(IndexError):
        store.graph(4)


def test_attributes_describe_the_store(store_path):
    store = GraphStore(store_path)
    attrs = store.attrs
    assert set(REQUIRED_ATTRS) <= set(attrs)
    assert (attrs["format"], attrs["format_version"]) == (FORMAT, FORMAT_VERSION)
    assert attrs["crystensor_version"] == __version__
    assert (attrs["target"], attrs["kind"], attrs["units"]) == ("elastic", "elastic", "GPa")
    assert attrs["irreps"] == "0e+0e+2e+2e+4e" and attrs["target_shape"] == [3, 3, 3, 3]
    assert attrs["feature_set"] == elements.FEATURE_SET == "paper-v1"
    assert attrs["feature_table_sha256"] == elements.feature_table_sha256()
    assert attrs["sources"] == [{"file": "r", "sha256": "0"}]
    assert attrs["cutoff"] == 5.0 and attrs["n_graphs"] == 4
    assert "edge_index[0] = source j" in attrs["edge_convention"]
    assert attrs["created"].endswith("+00:00")
    with h5py.File(store_path) as f:
        assert f["edge_index"].dtype == np.int32 and f["edge_shift"].dtype == np.int8
        assert f["cell"].shape == (4, 3, 3) and f["node_offsets"].shape == (5,)


def test_node_features_can_be_stored(tmp_path):
    path = write(tmp_path / "f.h5", graphs_of_structures(), store_node_features=True)
    store = GraphStore(path)
    assert store.has_node_features
    g = store.graph(2)
    np.testing.assert_array_equal(g.node_features, elements.node_features(g.atomic_numbers))


def test_preload_gives_the_same_graphs(store_path):
    lazy = GraphStore(store_path)
    memory = GraphStore(store_path).preload()
    for i in range(len(lazy)):
        a, b = lazy.graph(i), memory.graph(i)
        np.testing.assert_array_equal(a.edge_index, b.edge_index)
        np.testing.assert_array_equal(a.positions, b.positions)


def test_interrupted_write_leaves_no_file(tmp_path):
    target = tmp_path / "g.h5"
    with pytest.raises(RuntimeError, match="power cut"):
        with StoreWriter(target, target="elastic", cutoff=5.0, flush_every=1) as writer:
            for g in graphs_of_structures()[:2]:
                writer.append(g)
            raise RuntimeError("power cut")
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        write(target, _raising(graphs_of_structures()))
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def _raising(graphs):
    yield from graphs[:3]
    raise RuntimeError("interrupted")


def test_writer_refuses_bad_graphs(tmp_path):
    graphs = graphs_of_structures()
    with pytest.raises(InputError, match="duplicate material id 'mp-0'"):
        write(tmp_path / "g.h5", [graphs[0], graphs[0]])
    bad = graphs[1]
    bad.target_cartesian = np.zeros((3, 3))
    with pytest.raises(InputError, match=r"target has shape \(3, 3\)"):
        write(tmp_path / "g.h5", [bad])
    with pytest.raises(InputError, match="unknown target 'stiffness'"):
        write(tmp_path / "g.h5", [], target="stiffness")
    with pytest.raises(InputError, match="split fractions"):
        write(tmp_path / "g.h5", [], split_fractions=(0.5, 0.5, 0.5))
    assert list(tmp_path.iterdir()) == []


def _set_attr(path, key, value=None, delete=False):
    with h5py.File(path, "a") as f:
        if delete:
            del f.attrs[key]
        else:
            f.attrs[key] = value


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: _set_attr(p, "format_version", 2), "format version 2, but crystensor"),
        (lambda p: _set_attr(p, "format", "something-else"), "is not a crystensor graph store"),
        (lambda p: _set_attr(p, "cutoff", delete=True), "missing attribute(s) cutoff"),
        (lambda p: _set_attr(p, "target", "stiffness"), "holds target 'stiffness'"),
        (lambda p: _set_attr(p, "n_graphs", 7), "offsets do not match"),
        (lambda p: p.write_text("hello"), "is not an HDF5 file"),
        (lambda p: p.unlink(), "does not exist"),
    ],
)
def test_foreign_or_damaged_files_are_refused(store_path, change, message):
    change(store_path)
    with pytest.raises(InputError) as err:
        GraphStore(store_path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_plain_hdf5_file_is_not_a_store(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(InputError, match="not a crystensor graph store"):
        GraphStore(tmp_path / "x.h5")


def test_expected_attributes_are_checked(store_path):
    GraphStore(store_path, expect={"target": "elastic", "cutoff": 5.0})
    with pytest.raises(InputError) as err:
        GraphStore(store_path, expect={"target": "dielectric", "cutoff": 6.0})
    text = str(err.value)
    assert "target is 'elastic', not 'dielectric'" in text and "cutoff is 5.0, not 6.0" in text


def test_the_file_is_opened_lazily_and_pickles(store_path):
    store = GraphStore(store_path)
    assert store._h5 is None  # the header was read and the file closed again
    store.graph(0)
    assert store._h5 is not None
    clone = pickle.loads(pickle.dumps(store))
    assert clone._h5 is None and clone.graph(1).id == "mp-1"


def _read_ids(store):
    return [store.graph(i).id for i in range(len(store))]


def test_forked_processes_read_the_store(store_path):
    store = GraphStore(store_path)
    store.graph(0)  # the parent has the file open before forking
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_read_ids, [store, store])
    assert results == [["mp-0", "mp-1", "mp-2", "mp-3"]] * 2
    assert store.graph(3).id == "mp-3"


# -- the split -------------------------------------------------------------------------------
IDS = [f"mp-{i}" for i in range(1000)]


def test_split_fractions_and_names():
    codes = make_split(IDS)
    assert codes.dtype == np.uint8 and SPLIT_NAMES == ("train", "val", "test")
    assert np.bincount(codes).tolist() == [700, 150, 150]
    assert np.bincount(make_split(IDS[:7]), minlength=3).tolist() == [5, 1, 1]
    assert np.bincount(make_split(IDS, fractions=(0.8, 0.1, 0.1))).tolist() == [800, 100, 100]


def test_split_is_deterministic_and_independent_of_order():
    rng = np.random.default_rng(0)
    codes = dict(zip(IDS, make_split(IDS, seed=3), strict=True))
    shuffled = list(rng.permutation(IDS))
    again = dict(zip(shuffled, make_split(shuffled, seed=3), strict=True))
    assert again == codes
    other = dict(zip(IDS, make_split(IDS, seed=4), strict=True))
    assert other != codes


def test_split_is_stored_and_rederivable(store_path):
    store = GraphStore(store_path)
    np.testing.assert_array_equal(store.read("split"), make_split(store.ids, seed=0))
    parts = [store.split_indices(name) for name in SPLIT_NAMES]
    assert sorted(np.concatenate(parts).tolist()) == [0, 1, 2, 3]
    with pytest.raises(InputError, match="unknown split 'training'"):
        store.split_indices("training")


def test_split_refuses_bad_input():
    with pytest.raises(InputError, match="duplicate material id"):
        make_split(["a", "b", "a"])
    with pytest.raises(InputError, match="split fractions"):
        make_split(IDS, fractions=(0.7, 0.3))
    with pytest.raises(InputError, match="split fractions"):
        make_split(IDS, fractions=(1.2, -0.1, -0.1))


# -- the family split --------------------------------------------------------------------------
def realistic_systems(n: int, seed: int = 0) -> list[str]:
    """Chemical systems drawn like a materials database's: mostly binaries and ternaries of
    common elements, so a few systems recur many times and most appear once or twice."""
    rng = np.random.default_rng(seed)
    symbols = [elements._symbol(z) for z in range(1, 84)]
    weights = 1.0 / np.arange(1, len(symbols) + 1) ** 0.8  # some elements far more common
    weights /= weights.sum()
    out = []
    for _ in range(n):
        k = rng.choice([1, 2, 3, 4], p=[0.05, 0.4, 0.45, 0.1])
        out.append("-".join(sorted(rng.choice(symbols, size=k, replace=False, p=weights))))
    return out


SYSTEMS = realistic_systems(len(IDS))


def _codes_of_systems(codes, systems) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for c, s in zip(codes, systems, strict=True):
        out.setdefault(s, set()).add(int(c))
    return out


def test_chemical_systems_are_sorted_element_sets():
    z = [8, 26, 8, 26, 3, 14, 14, 1]
    assert chemical_systems(z, [0, 4, 5, 7, 8, 8]) == ["Fe-O", "Li", "Si", "H", ""]


def test_family_split_keeps_each_chemical_system_in_one_split():
    codes = make_split(IDS, method="family", systems=SYSTEMS)
    assert codes.dtype == np.uint8 and set(codes.tolist()) == {0, 1, 2}
    assert all(len(c) == 1 for c in _codes_of_systems(codes, SYSTEMS).values())
    assert max(np.bincount(np.unique(SYSTEMS, return_counts=True)[1])) > 1  # families recur
    fractions = np.bincount(codes) / len(IDS)
    np.testing.assert_allclose(fractions, [0.7, 0.15, 0.15], atol=0.02)
    # train and val reach their counts, overshooting by less than one family
    assert np.bincount(codes)[0] >= 700 and np.bincount(codes)[1] >= 150


def test_family_split_is_deterministic_and_independent_of_order():
    rng = np.random.default_rng(0)
    codes = dict(zip(IDS, make_split(IDS, seed=3, method="family", systems=SYSTEMS), strict=True))
    order = rng.permutation(len(IDS))
    shuffled = [IDS[i] for i in order]
    again = make_split(shuffled, seed=3, method="family", systems=[SYSTEMS[i] for i in order])
    assert dict(zip(shuffled, again, strict=True)) == codes
    other = make_split(IDS, seed=4, method="family", systems=SYSTEMS)
    assert dict(zip(IDS, other, strict=True)) != codes
    # the attribute value names the method too
    same = make_split(IDS, seed=3, method=SPLIT_METHODS["family"], systems=SYSTEMS)
    assert dict(zip(IDS, same, strict=True)) == codes


def test_family_split_refuses_bad_input(tmp_path):
    with pytest.raises(InputError, match="needs the chemical system of every material"):
        make_split(IDS, method="family")
    with pytest.raises(InputError, match="needs the chemical system"):
        make_split(IDS, method="family", systems=SYSTEMS[:-1])
    with pytest.raises(InputError, match="unknown split method 'grouped'"):
        make_split(IDS, method="grouped")
    with pytest.raises(InputError, match="unknown split method"):
        write(tmp_path / "g.h5", [], split_method="grouped")
    assert not (tmp_path / "g.h5").exists()


def test_a_family_store_records_its_method(tmp_path):
    graphs = graphs_of_structures()
    path = write(tmp_path / "g.h5", graphs, split_method="family", split_seed=5)
    store = GraphStore(path)
    assert store.attrs["split_method"] == SPLIT_METHODS["family"] == "sha256-chemical-system"
    assert store.split_info == {
        "method": "family",
        "seed": 5,
        "fractions": [0.7, 0.15, 0.15],
        "source": "store",
    }
    systems = [chemical_systems(g.atomic_numbers, [0, g.num_nodes])[0] for g in graphs]
    assert store.chemical_systems == systems
    expected = make_split(store.ids, 5, method="family", systems=systems)
    np.testing.assert_array_equal(store.read("split"), expected)
    random = GraphStore(write(tmp_path / "random.h5", graphs))
    assert random.attrs["split_method"] == "sha256-rank"
    assert random.split_info["method"] == "random"


def test_use_split_replaces_the_split_in_memory_only(store_path):
    store = GraphStore(store_path)
    saved = store.read("split").copy()
    systems = store.chemical_systems
    store.use_split("family", seed=2, fractions=(0.5, 0.25, 0.25))
    codes = make_split(store.ids, 2, (0.5, 0.25, 0.25), method="family", systems=systems)
    np.testing.assert_array_equal(store.read("split"), codes)
    np.testing.assert_array_equal(store.read("split", 1, 3), codes[1:3])
    np.testing.assert_array_equal(store.split_indices("train"), np.flatnonzero(codes == 0))
    assert store.split_info["source"] == "recomputed" and store.split_info["seed"] == 2
    clone = pickle.loads(pickle.dumps(store))  # what a DataLoader worker gets
    np.testing.assert_array_equal(clone.read("split"), codes)
    store.preload()  # the file's split, now in memory, does not come back
    np.testing.assert_array_equal(store.read("split"), codes)
    store.use_split("random", seed=7)
    np.testing.assert_array_equal(store.read("split"), make_split(store.ids, 7))
    store.use_split("store")
    np.testing.assert_array_equal(store.read("split"), saved)
    assert store.split_info["source"] == "store"
    np.testing.assert_array_equal(GraphStore(store_path).read("split"), saved)  # file untouched
    with pytest.raises(InputError, match="unknown split method"):
        store.use_split("families")
