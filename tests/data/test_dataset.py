"""``GraphDataset``: fields, edges checked against pymatgen, supercell invariance, batching."""

from __future__ import annotations

from collections import Counter

import h5py
import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from crystensor.data import elements
from crystensor.data.dataset import GraphDataset
from crystensor.data.featurize import featurize
from crystensor.data.records import write_records
from crystensor.data.store import SPLIT_NAMES, GraphStore
from crystensor.errors import InputError
from crystensor.tensors.harmonic import to_irreps
from tests.data.test_featurize import (
    CUTOFF,
    STRUCTURES,
    make_record,
    value_for,
    write_test_records,
)


@pytest.fixture(scope="module")
def elastic_store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("elastic")
    records = write_test_records(folder / "r.jsonl", "elastic", copies=3)
    featurize(folder / "r.jsonl", "elastic", folder / "g.h5")
    return folder / "g.h5", records


def edge_vectors(data) -> torch.Tensor:
    """``pos[j] + shift @ cell[batch[i]] - pos[i]`` for every edge (j = source, i = target)."""
    src, dst = data.edge_index
    batch = data.batch if getattr(data, "batch", None) is not None else torch.zeros_like(data.z)
    cell = data.cell[batch[dst]]  # (e, 3, 3)
    return data.pos[src] + torch.einsum("ek,ekl->el", data.edge_shift, cell) - data.pos[dst]


def test_item_fields_shapes_and_dtypes(elastic_store):
    path, records = elastic_store
    data = GraphDataset(path)[2]  # wurtzite ZnO: 4 atoms
    n, e = 4, data.edge_index.shape[1]
    assert data.z.tolist() == [30, 30, 8, 8] and data.z.dtype == torch.int64
    assert data.x.shape == (n, elements.FEATURE_DIM) and data.x.dtype == torch.float32
    np.testing.assert_array_equal(data.x.numpy(), elements.node_features([30, 30, 8, 8]))
    assert data.pos.shape == (n, 3) and data.cell.shape == (1, 3, 3)
    assert data.edge_index.shape == (2, e) and data.edge_index.dtype == torch.int64
    assert data.edge_shift.shape == (e, 3) and data.edge_shift.dtype == torch.float32
    assert data.y.shape == (1, 21) and data.y_cartesian.shape == (1, 3, 3, 3, 3)
    np.testing.assert_allclose(
        data.y.numpy()[0], to_irreps(np.array(records[2].value), "elastic"), rtol=1e-6
    )
    assert data.id == records[2].id and data.num_nodes == n


def test_edges_match_pymatgen_neighbours_exactly(elastic_store):
    """Every (centre, neighbour, image) pymatgen finds, with the same distances, and no other."""
    path, records = elastic_store
    dataset = GraphDataset(path, dtype=torch.float64)
    for k, record in enumerate(records[:4]):
        structure = record.pymatgen_structure()
        data = dataset[k]
        vectors = edge_vectors(data).numpy()
        distances = np.linalg.norm(vectors, axis=1)
        assert distances.max() <= CUTOFF and distances.min() > 0.5
        shifts = data.edge_shift.numpy().astype(int)
        src, dst = data.edge_index.numpy()
        ours = {
            (int(i), int(j), *map(int, s)): d
            for i, j, s, d in zip(dst, src, shifts, distances, strict=True)
        }
        theirs = {}
        for i, neighbours in enumerate(structure.get_all_neighbors(CUTOFF)):
            for nb in neighbours:
                theirs[(i, nb.index, *np.round(nb.image).astype(int))] = nb.nn_distance
        assert ours.keys() == theirs.keys(), record.id
        for key, d in theirs.items():
            assert ours[key] == pytest.approx(d, rel=1e-12, abs=1e-12)
        counts = Counter(dst.tolist())
        assert [counts[i] for i in range(len(structure))] == [
            len(nb) for nb in structure.get_all_neighbors(CUTOFF)
        ]


def _per_atom_distances(path, index: int) -> Counter:
    data = GraphDataset(path, dtype=torch.float64)[index]
    dist = edge_vectors(data).norm(dim=1).numpy()
    dst = data.edge_index[1].numpy()
    return Counter(
        (int(data.z[i]), tuple(np.round(np.sort(dist[dst == i]), 9))) for i in range(data.num_nodes)
    )


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_supercell_gives_the_same_neighbourhoods(tmp_path, name):
    structure = STRUCTURES[name]()
    supercell = structure * (2, 1, 1)
    records = [
        make_record("prim", structure, "band-gap", 1.0),
        make_record("super", supercell, "band-gap", 1.0),
    ]
    write_records(tmp_path / "r.jsonl", records)
    featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "g.h5")
    prim = _per_atom_distances(tmp_path / "g.h5", 0)
    sup = _per_atom_distances(tmp_path / "g.h5", 1)
    assert sup == Counter({k: 2 * v for k, v in prim.items()})


def test_batches_offset_edges_and_keep_vectors(elastic_store):
    path, _ = elastic_store
    dataset = GraphDataset(path, dtype=torch.float64)
    batch = next(iter(DataLoader(dataset, batch_size=5, shuffle=False)))
    assert batch.num_graphs == 5 and batch.cell.shape == (5, 3, 3)
    assert batch.y.shape == (5, 21) and batch.y_cartesian.shape == (5, 3, 3, 3, 3)
    assert batch.id == [dataset[k].id for k in range(5)]
    singles = torch.cat([edge_vectors(dataset[k]) for k in range(5)])
    torch.testing.assert_close(edge_vectors(batch), singles, rtol=0, atol=1e-12)


def test_loader_with_worker_processes(elastic_store):
    path, _ = elastic_store
    dataset = GraphDataset(path)
    dataset[0]  # opens the file in the parent before the workers fork
    serial = [b.id for b in DataLoader(dataset, batch_size=4)]
    parallel = [b.id for b in DataLoader(dataset, batch_size=4, num_workers=2)]
    assert parallel == serial and sum(len(ids) for ids in serial) == len(dataset) == 12


def test_subsets_follow_the_stored_split(elastic_store):
    path, _ = elastic_store
    dataset = GraphDataset(path, in_memory=True)
    store = GraphStore(path)
    parts = {name: dataset.subset(name) for name in SPLIT_NAMES}
    assert sum(len(p) for p in parts.values()) == len(dataset) == 12
    for code, name in enumerate(SPLIT_NAMES):
        expected = [i for i, c in zip(store.ids, store.read("split"), strict=True) if c == code]
        assert parts[name].ids == expected
        assert GraphDataset(path, split=name).ids == expected
        assert all(parts[name][k].id == expected[k] for k in range(len(expected)))
    with pytest.raises(InputError, match="unknown split"):
        dataset.subset("everything")


def test_feature_set_and_expectations_are_checked(elastic_store, tmp_path):
    path, _ = elastic_store
    with pytest.raises(InputError, match="target is 'elastic', not 'band-gap'"):
        GraphDataset(path, expect={"target": "band-gap"})
    copy = tmp_path / "old.h5"
    copy.write_bytes(path.read_bytes())
    with h5py.File(copy, "a") as f:
        f.attrs["feature_set"] = "paper-v0"
    with pytest.raises(InputError, match="built for atom features 'paper-v0'"):
        GraphDataset(copy)


def test_scalar_targets(tmp_path):
    write_test_records(tmp_path / "r.jsonl", "band-gap")
    featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "g.h5")
    data = GraphDataset(tmp_path / "g.h5")[1]
    assert data.y.shape == (1, 1) and data.y_cartesian.shape == (1,)
    assert float(data.y) == float(data.y_cartesian) == value_for("band-gap", 1)
