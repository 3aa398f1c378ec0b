"""``featurize`` and ``merge_stores``: records -> graph store, rejections, shards, determinism.

The record files built here (from the tiny structures of :mod:`tests.helpers`) are shared with
the store, dataset and CLI tests (``from tests.data.test_featurize import ...``).
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystensor.data.featurize import (
    FeaturizeReport,
    featurize,
    merge_stores,
    rejects_path_for,
    shard_bounds,
)
from crystensor.data.records import Record, write_records
from crystensor.data.store import GraphStore
from crystensor.errors import InputError
from crystensor.tensors.harmonic import from_irreps, to_irreps
from crystensor.tensors.kinds import get_property
from tests.helpers import STRUCTURES, americium, isolated_cs, nacl, silicon

CUTOFF = 5.0
SYMMETRY = {
    "NaCl": {"space_group_number": 225, "crystal_system": "cubic"},
    "Si": {"space_group_number": 227, "crystal_system": "cubic"},
    "ZnO": {"space_group_number": 186, "crystal_system": "hexagonal"},
    "triclinic": {"space_group_number": 1, "crystal_system": "triclinic"},
}


def isotropic_elastic(lam: float, mu: float) -> np.ndarray:
    """``C_ijkl = lam d_ij d_kl + mu (d_ik d_jl + d_il d_jk)``, GPa."""
    d = np.eye(3)
    return lam * np.einsum("ij,kl->ijkl", d, d) + mu * (
        np.einsum("ik,jl->ijkl", d, d) + np.einsum("il,jk->ijkl", d, d)
    )


def value_for(target: str, k: int):
    """A valid target value for record number ``k`` (different for each ``k``)."""
    kind = get_property(target).kind
    if kind == "scalar":
        return 0.5 + k
    if kind == "elastic":
        return isotropic_elastic(50.0 + k, 30.0 + 0.5 * k).tolist()
    if kind == "dielectric":
        return np.diag([2.0 + k, 3.0, 4.0 + 0.1 * k]).tolist()
    raise ValueError(target)


def make_record(rid: str, structure: Structure, target: str, value, name: str = "") -> Record:
    return Record(
        id=rid,
        formula=structure.composition.reduced_formula,
        structure=structure.as_dict(),
        target=target,
        value=value,
        units=get_property(target).units,
        source={"dataset": "tests", "citation": "", "file": ""},
        symmetry=SYMMETRY.get(name),
    )


def write_test_records(
    path: Path, target: str = "band-gap", copies: int = 1, extra: tuple | list = ()
) -> list[Record]:
    """The four tiny structures ``copies`` times (ids ``t-<k>``), then ``extra``."""
    records = []
    for _ in range(copies):
        for name, build in STRUCTURES.items():
            k = len(records)
            records.append(make_record(f"t-{k}", build(), target, value_for(target, k), name))
    records.extend(extra)
    write_records(path, records)
    return records


def store_arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: (f[k].asstr()[()] if f[k].dtype.kind == "O" else f[k][()]) for k in f}


def assert_same_store(a: Path, b: Path) -> None:
    left, right = store_arrays(a), store_arrays(b)
    assert left.keys() == right.keys()
    for key in left:
        np.testing.assert_array_equal(left[key], right[key], err_msg=key)


# -- tests -----------------------------------------------------------------------------------
def test_elastic_records_become_graphs_with_cartesian_and_irreps(tmp_path):
    records = write_test_records(tmp_path / "r.jsonl.gz", "elastic")
    report = featurize(tmp_path / "r.jsonl.gz", "elastic", tmp_path / "g.h5")
    assert isinstance(report, FeaturizeReport)
    assert (report.graphs, report.records, report.rejected) == (4, 4, [])
    assert report.rejects_path is None and not rejects_path_for(tmp_path / "g.h5").exists()
    store = GraphStore(tmp_path / "g.h5")
    assert (store.target, store.kind.name, store.units) == ("elastic", "elastic", "GPa")
    assert store.ids == [r.id for r in records]
    for i, record in enumerate(records):
        g = store.graph(i)
        np.testing.assert_allclose(g.target_cartesian, record.value, rtol=0, atol=1e-12)
        np.testing.assert_allclose(g.target_irreps, to_irreps(np.array(record.value), "elastic"))
        np.testing.assert_allclose(from_irreps(g.target_irreps, "elastic"), g.target_cartesian)
        assert g.target_irreps.shape == (21,)
        structure = Structure.from_dict(record.structure)
        np.testing.assert_array_equal(g.atomic_numbers, structure.atomic_numbers)
        np.testing.assert_array_equal(g.positions, structure.cart_coords)
    assert store.read("crystal_system").tolist() == ["cubic", "cubic", "hexagonal", "triclinic"]
    assert store.read("space_group_number").tolist() == [225, 227, 186, 1]
    assert report.nodes == 2 + 2 + 4 + 3 and report.edges == store.num_edges > 0
    assert sum(report.split_counts.values()) == 4


def test_scalar_target_is_stored_as_value_and_one_irrep(tmp_path):
    write_test_records(tmp_path / "r.jsonl", "band-gap")
    featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "g.h5")
    arrays = store_arrays(tmp_path / "g.h5")
    assert arrays["target_cartesian"].shape == (4,)
    assert arrays["target_irreps"].shape == (4, 1)
    np.testing.assert_array_equal(arrays["target_cartesian"], [0.5, 1.5, 2.5, 3.5])
    np.testing.assert_array_equal(arrays["target_irreps"][:, 0], arrays["target_cartesian"])


def test_voigt_values_and_tiny_asymmetry_are_accepted_symmetrised(tmp_path):
    from crystensor.tensors.voigt import to_voigt

    c = np.array(isotropic_elastic(60.0, 20.0))
    voigt = to_voigt(c, 4)
    skew = c.copy()
    skew[0, 0, 1, 1] += 1e-6  # breaks ijkl = klij by far less than the tolerance
    extra = [
        make_record("voigt", nacl(), "elastic", voigt.tolist()),
        make_record("skew", silicon(), "elastic", skew.tolist()),
    ]
    write_records(tmp_path / "r.jsonl", extra)
    featurize(tmp_path / "r.jsonl", "elastic", tmp_path / "g.h5")
    store = GraphStore(tmp_path / "g.h5")
    np.testing.assert_allclose(store.graph(0).target_cartesian, c)
    t = store.graph(1).target_cartesian
    np.testing.assert_allclose(t, t.transpose(2, 3, 0, 1), rtol=0, atol=0)


def test_rejections_have_codes_and_reasons_and_a_file(tmp_path):
    extra = [
        make_record("iso", isolated_cs(), "band-gap", 1.0),
        make_record("am", americium(), "band-gap", 1.0),
        make_record("nan", nacl(), "band-gap", "not a number"),
        make_record("t-0", nacl(), "band-gap", 9.0),  # duplicate of the first id
        make_record("shape", nacl(), "band-gap", [1.0, 2.0]),
    ]
    write_test_records(tmp_path / "r.jsonl", "band-gap", extra=extra)
    report = featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "g.h5")
    assert report.graphs == 4 and report.records == 9
    by_id = {r.id: r for r in report.rejected}
    assert by_id["iso"].code == "isolated-atom" and "no neighbour within 5 A" in by_id["iso"].reason
    assert by_id["am"].code == "unsupported-element" and "Am" in by_id["am"].reason
    assert by_id["nan"].code == "bad-value"
    assert by_id["t-0"].code == "duplicate-id" and by_id["t-0"].index == 7
    assert by_id["shape"].code == "bad-value" and "shape (2,)" in by_id["shape"].reason
    assert report.rejection_counts()["bad-value"] == 2
    lines = rejects_path_for(tmp_path / "g.h5").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["iso", "am", "nan", "t-0", "shape"]
    assert GraphStore(tmp_path / "g.h5").ids == ["t-0", "t-1", "t-2", "t-3"]


def test_asymmetric_tensor_is_rejected(tmp_path):
    asym = np.array(isotropic_elastic(60.0, 20.0))
    asym[0, 1, 0, 0] += 5.0
    write_records(tmp_path / "r.jsonl", [make_record("asym", nacl(), "elastic", asym.tolist())])
    with pytest.raises(InputError, match="all 1 records"):
        featurize(tmp_path / "r.jsonl", "elastic", tmp_path / "g.h5")
    line = json.loads(rejects_path_for(tmp_path / "g.h5").read_text())
    assert line["code"] == "bad-value" and "index symmetry" in line["reason"]


def test_auto_cutoff_grows_the_radius_for_isolated_atoms(tmp_path):
    extra = [make_record("iso", isolated_cs(), "band-gap", 1.0)]
    write_test_records(tmp_path / "r.jsonl", extra=extra)
    report = featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "g.h5", auto_cutoff=True)
    assert report.graphs == 5 and report.extended == 1 and not report.rejected
    store = GraphStore(tmp_path / "g.h5")
    assert store.read("graph_cutoff").tolist() == [5.0] * 4 + [7.0]
    assert store.cutoff == 5.0 and store.attrs["auto_cutoff"] is True


def test_everything_rejected_raises_and_writes_no_store(tmp_path):
    records = [make_record("iso", isolated_cs(), "band-gap", 1.0)]
    write_records(tmp_path / "r.jsonl", records)
    with pytest.raises(InputError, match=r"all 1 records of r.jsonl were rejected.*iso"):
        featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "g.h5")
    assert not (tmp_path / "g.h5").exists()
    assert rejects_path_for(tmp_path / "g.h5").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_target_must_match_the_records(tmp_path):
    write_test_records(tmp_path / "r.jsonl", "band-gap")
    with pytest.raises(InputError, match="holds 'band-gap' records, not 'elastic'"):
        featurize(tmp_path / "r.jsonl", "elastic", tmp_path / "g.h5")
    with pytest.raises(InputError, match="unknown target 'elasticity'"):
        featurize(tmp_path / "r.jsonl", "elasticity", tmp_path / "g.h5")
    mixed = [make_record("a", nacl(), "band-gap", 1.0), make_record("b", nacl(), "elastic", 0)]
    write_records(tmp_path / "mixed.jsonl", mixed)
    with pytest.raises(InputError, match=r"line 2 .* holds target 'elastic'"):
        featurize(tmp_path / "mixed.jsonl", "band-gap", tmp_path / "g.h5")
    assert not (tmp_path / "g.h5").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no records"),
        ("{not json\n", "line 1 is not valid JSON"),
        ('{"id": "x"}\n', "missing field"),
        ("[1, 2]\n", "not a JSON object"),
    ],
)
def test_bad_record_files(tmp_path, text, message):
    (tmp_path / "r.jsonl").write_text(text)
    with pytest.raises(InputError, match=message):
        featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "g.h5")
    assert list(tmp_path.iterdir()) == [tmp_path / "r.jsonl"]


def test_bad_options(tmp_path):
    write_test_records(tmp_path / "r.jsonl")
    args = (tmp_path / "r.jsonl", "band-gap", tmp_path / "g.h5")
    with pytest.raises(InputError, match="does not exist"):
        featurize(tmp_path / "nope.jsonl", "band-gap", tmp_path / "g.h5")
    with pytest.raises(InputError, match="cutoff must be a positive"):
        featurize(*args, cutoff=0.0)
    with pytest.raises(InputError, match="workers"):
        featurize(*args, workers=0)
    with pytest.raises(InputError, match="shard 4/4 is out of range"):
        featurize(*args, shard=(4, 4))
    with pytest.raises(InputError, match="holds no records"):
        featurize(*args, shard=(0, 8))  # 4 records, 8 shards: shard 0 is empty
    with pytest.raises(InputError, match="overwrite the record file"):
        featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "r.jsonl")


def test_two_workers_write_the_same_store(tmp_path):
    write_test_records(tmp_path / "r.jsonl", copies=5)
    one = featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "one.h5", workers=1)
    two = featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "two.h5", workers=2)
    assert one.graphs == two.graphs == 20
    assert_same_store(tmp_path / "one.h5", tmp_path / "two.h5")


def test_shards_then_merge_equal_a_single_run(tmp_path):
    extra = [make_record("iso", isolated_cs(), "band-gap", 1.0)]
    write_test_records(tmp_path / "r.jsonl", copies=3, extra=extra)
    single = featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "all.h5")
    shards = [tmp_path / f"part{i}.h5" for i in range(3)]
    for i, path in enumerate(shards):
        featurize(tmp_path / "r.jsonl", "band-gap", path, shard=(i, 3))
        assert GraphStore(path).attrs["shard"] == [i, 3]
    merged = merge_stores([shards[2], shards[0], shards[1]], tmp_path / "merged.h5")
    assert_same_store(tmp_path / "all.h5", tmp_path / "merged.h5")
    assert merged.split_counts == single.split_counts
    assert merged.rejected == single.rejected
    assert GraphStore(tmp_path / "merged.h5").attrs["shard"] is None
    assert (
        GraphStore(tmp_path / "merged.h5").attrs["sources"]
        == GraphStore(tmp_path / "all.h5").attrs["sources"]
    )
    assert shard_bounds((2, 3), 13) == (8, 13)


def test_a_family_split_is_stored_and_kept_by_shards_and_merge(tmp_path):
    write_test_records(tmp_path / "r.jsonl", copies=5)
    single = featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "all.h5", split_method="family")
    assert single.split_method == "family" and sum(single.split_counts.values()) == 20
    store = GraphStore(tmp_path / "all.h5")
    assert store.attrs["split_method"] == "sha256-chemical-system"
    codes_of: dict[str, set[int]] = {}
    for code, system in zip(store.read("split"), store.chemical_systems, strict=True):
        codes_of.setdefault(system, set()).add(int(code))
    assert all(len(codes) == 1 for codes in codes_of.values())
    shards = [tmp_path / f"part{i}.h5" for i in range(2)]
    for i, path in enumerate(shards):
        featurize(tmp_path / "r.jsonl", "band-gap", path, shard=(i, 2), split_method="family")
    merged = merge_stores(shards[::-1], tmp_path / "merged.h5")
    assert merged.split_method == "family" and merged.split_counts == single.split_counts
    assert_same_store(tmp_path / "all.h5", tmp_path / "merged.h5")
    featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "r0.h5", shard=(0, 2))
    with pytest.raises(InputError, match="split_method is 'sha256-rank' in one and 'sha256-chem"):
        merge_stores([tmp_path / "r0.h5", shards[1]], tmp_path / "m.h5")


def test_merge_refuses_what_does_not_fit(tmp_path):
    write_test_records(tmp_path / "r.jsonl")
    write_test_records(tmp_path / "e.jsonl", "elastic")
    featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "a.h5")
    featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "b.h5", cutoff=6.0)
    featurize(tmp_path / "e.jsonl", "elastic", tmp_path / "e.h5")
    featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "s0.h5", shard=(0, 2))
    with pytest.raises(InputError, match=r"cutoff is 5\.0 in one and 6\.0"):
        merge_stores([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "m.h5")
    with pytest.raises(InputError, match="target is 'band-gap' in one and 'elastic'"):
        merge_stores([tmp_path / "a.h5", tmp_path / "e.h5"], tmp_path / "m.h5")
    with pytest.raises(InputError, match="shard 0/2 given twice"):
        merge_stores([tmp_path / "s0.h5", tmp_path / "s0.h5"], tmp_path / "m.h5")
    with pytest.raises(InputError, match="duplicate material id 't-0'"):
        merge_stores([tmp_path / "a.h5", tmp_path / "s0.h5"], tmp_path / "m.h5")
    with pytest.raises(InputError, match="also an input"):
        merge_stores([tmp_path / "a.h5"], tmp_path / "a.h5")
    with pytest.raises(InputError, match="nothing to merge"):
        merge_stores([], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_interrupted_run_leaves_nothing(tmp_path):
    write_test_records(tmp_path / "r.jsonl", copies=3)
    (tmp_path / "g.h5").write_bytes(b"previous")

    def stop(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "g.h5", progress=stop)
    assert (tmp_path / "g.h5").read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.h5", "r.jsonl"]


def test_progress_is_reported_for_every_record(tmp_path):
    write_test_records(tmp_path / "r.jsonl", copies=2)
    seen = []
    featurize(
        tmp_path / "r.jsonl",
        "band-gap",
        tmp_path / "g.h5",
        progress=lambda d, t: seen.append((d, t)),
    )
    assert seen == [(k, 8) for k in range(1, 9)]


def test_structure_variants(tmp_path):
    """Oxidation states are accepted; disorder and dummy species are rejected with reasons."""
    from pymatgen.core import DummySpecies

    charged = nacl()
    charged.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    records = [
        make_record("charged", charged, "band-gap", 1.0),
        make_record("plain", nacl(), "band-gap", 1.0),
        make_record(
            "alloy",
            Structure(Lattice.cubic(3.0), [{"Na": 0.5, "K": 0.5}], [[0] * 3]),
            "band-gap",
            1.0,
        ),
        make_record(
            "dummy", Structure(Lattice.cubic(3.0), [DummySpecies("X")], [[0] * 3]), "band-gap", 1.0
        ),
    ]
    write_records(tmp_path / "r.jsonl", records)
    report = featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "g.h5")
    assert {r.id: r.code for r in report.rejected} == {
        "alloy": "bad-structure",
        "dummy": "unsupported-element",
    }
    assert "partially occupied" in report.rejected[0].reason
    assert "X" in report.rejected[1].reason
    store = GraphStore(tmp_path / "g.h5")
    a, b = store.graph(0), store.graph(1)
    np.testing.assert_array_equal(a.edge_index, b.edge_index)
    np.testing.assert_array_equal(a.edge_shift, b.edge_shift)
    np.testing.assert_array_equal(a.positions, b.positions)


@pytest.mark.shared_data
def test_real_elastic_tensors_from_the_shared_data(shared_data, tmp_path):
    """The first 40 matminer elastic tensors (poscar frame) go through unchanged."""
    import csv
    import gzip

    kind = get_property("elastic").tensor_kind
    records, voigts = [], []
    csv.field_size_limit(1 << 30)
    with gzip.open(shared_data / "matminer-2018" / "elastic_tensor.csv.gz", "rt") as fh:
        rows = csv.DictReader(line for line in fh if not line.startswith("#"))
        for row, _ in zip(rows, range(40), strict=False):
            structure = Structure.from_str(row["poscar"], fmt="poscar")
            voigt = np.array(json.loads(row["elastic_tensor_original"]))
            voigts.append(voigt)
            records.append(
                make_record(
                    row["material_id"], structure, "elastic", kind.from_voigt(voigt).tolist()
                )
            )
    write_records(tmp_path / "r.jsonl.gz", records)
    report = featurize(tmp_path / "r.jsonl.gz", "elastic", tmp_path / "g.h5", workers=2)
    assert report.graphs == 40 and not report.rejected
    store = GraphStore(tmp_path / "g.h5")
    for k, voigt in enumerate(voigts):
        g = store.graph(k)
        scale = np.abs(voigt).max()
        np.testing.assert_allclose(
            kind.to_voigt(g.target_cartesian), (voigt + voigt.T) / 2, atol=1e-3 * scale
        )
        np.testing.assert_allclose(
            from_irreps(g.target_irreps, kind), g.target_cartesian, atol=1e-9 * scale
        )
    assert 20 < report.edges / report.nodes < 80


# -- several record files ----------------------------------------------------------------------
def rotated_supercell(structure: Structure) -> Structure:
    """The same crystal doubled along a, rotated 90 degrees about z and shifted."""
    copy = structure * (2, 1, 1)
    copy.translate_sites(range(len(copy)), [0.1, 0.2, 0.3], frac_coords=True)
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return Structure(Lattice(copy.lattice.matrix @ turn.T), copy.species, copy.frac_coords)


def two_sources(tmp_path: Path, target: str = "band-gap") -> tuple[Path, Path]:
    """``a.jsonl``: t-0..t-3 (NaCl, Si, ZnO, triclinic). ``b.jsonl``: t-1 again (an id
    duplicate), NaCl as a rotated supercell under a new id (a structure duplicate) and two
    new materials."""
    write_test_records(tmp_path / "a.jsonl", target)
    kcl = nacl()
    kcl.replace_species({"Na": "K"})
    b = [
        make_record("t-1", silicon(), target, value_for(target, 11)),
        make_record("born#0", rotated_supercell(nacl()), target, value_for(target, 12)),
        make_record("born#1", kcl, target, value_for(target, 13)),
        make_record("born#2", rotated_supercell(kcl), target, value_for(target, 14)),
    ]
    write_records(tmp_path / "b.jsonl.gz", b)
    return tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"


def test_two_files_with_an_overlapping_id(tmp_path):
    from crystensor.data.store import file_sha256, make_split

    a, b = two_sources(tmp_path)
    report = featurize([a, b], "band-gap", tmp_path / "g.h5")
    assert (report.records, report.graphs) == (8, 7)
    assert report.rejection_counts() == {"duplicate-id": 1}
    (dup,) = report.rejected
    assert (dup.id, dup.file, dup.index, dup.duplicate_of) == ("t-1", "b.jsonl.gz", 0, None)
    assert "occurred in a.jsonl (record 1)" in dup.reason
    line = json.loads(rejects_path_for(tmp_path / "g.h5").read_text())
    assert line == {
        "stage": "featurize",
        "id": "t-1",
        "code": "duplicate-id",
        "reason": dup.reason,
        "file": "b.jsonl.gz",
        "index": 0,
    }
    store = GraphStore(tmp_path / "g.h5")
    ids = ["t-0", "t-1", "t-2", "t-3", "born#0", "born#1", "born#2"]
    assert store.ids == ids
    assert store.graph(1).target_cartesian == 1.5  # the first file's copy
    assert store.read("record_index").tolist() == [0, 1, 2, 3, 5, 6, 7]  # across the files
    assert store.attrs["sources"] == [
        {"file": "a.jsonl", "path": str(a.resolve()), "sha256": file_sha256(a), "records": 4},
        {"file": "b.jsonl.gz", "path": str(b.resolve()), "sha256": file_sha256(b), "records": 4},
    ]
    np.testing.assert_array_equal(store.read("split"), make_split(ids))
    assert report.inputs == [a, b] and report.dedupe == "id"


def test_structure_dedupe_across_files(tmp_path):
    a, b = two_sources(tmp_path, "dielectric")
    report = featurize([a, b], "dielectric", tmp_path / "g.h5", dedupe="structure")
    assert report.rejection_counts() == {"duplicate-id": 1, "duplicate-structure": 2}
    by_id = {r.id: r for r in report.rejected}
    nacl_copy, kcl_copy = by_id["born#0"], by_id["born#2"]
    assert (nacl_copy.code, nacl_copy.duplicate_of, nacl_copy.index) == (
        "duplicate-structure",
        "t-0",
        1,
    )
    assert "same crystal as t-0 in a.jsonl (record 0)" in nacl_copy.reason
    assert kcl_copy.duplicate_of == "born#1"
    assert "earlier in the file (record 2)" in kcl_copy.reason
    lines = [json.loads(x) for x in rejects_path_for(tmp_path / "g.h5").read_text().splitlines()]
    assert [x.get("duplicate_of") for x in lines] == [None, "t-0", "born#1"]
    assert GraphStore(tmp_path / "g.h5").ids == ["t-0", "t-1", "t-2", "t-3", "born#1"]
    # the order of the files decides which copy is kept
    report = featurize([b, a], "dielectric", tmp_path / "ba.h5", dedupe="structure")
    assert {r.id: r.duplicate_of for r in report.rejected} == {
        "born#2": "born#1",
        "t-0": "born#0",
        "t-1": None,
    }


def test_structure_dedupe_keeps_a_copy_whose_first_occurrence_was_rejected(tmp_path):
    records = [
        make_record("bad", nacl(), "band-gap", "not a number"),
        make_record("good", rotated_supercell(nacl()), "band-gap", 1.0),
        make_record("again", nacl(), "band-gap", 2.0),
    ]
    write_records(tmp_path / "r.jsonl", records)
    report = featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "g.h5", dedupe="structure")
    assert {r.id: r.code for r in report.rejected} == {
        "bad": "bad-value",
        "again": "duplicate-structure",
    }
    assert GraphStore(tmp_path / "g.h5").ids == ["good"]


def test_several_files_with_two_workers_write_the_same_store(tmp_path):
    a, b = two_sources(tmp_path)
    write_test_records(tmp_path / "c.jsonl", copies=3)  # ids t-0..t-11, all structures repeat
    files = [a, b, tmp_path / "c.jsonl"]
    one = featurize(files, "band-gap", tmp_path / "one.h5", dedupe="structure")
    two = featurize(files, "band-gap", tmp_path / "two.h5", dedupe="structure", workers=2)
    assert one.rejected == two.rejected and one.graphs == two.graphs == 5
    assert one.rejection_counts() == {"duplicate-id": 5, "duplicate-structure": 10}
    assert_same_store(tmp_path / "one.h5", tmp_path / "two.h5")


def test_single_file_store_lists_one_source(tmp_path):
    write_test_records(tmp_path / "r.jsonl")
    featurize(tmp_path / "r.jsonl", "band-gap", tmp_path / "g.h5")
    (source,) = GraphStore(tmp_path / "g.h5").attrs["sources"]
    assert (source["file"], source["records"]) == ("r.jsonl", 4)


def test_bad_combinations_of_files(tmp_path):
    a, b = two_sources(tmp_path)
    write_test_records(tmp_path / "e.jsonl", "elastic")
    out = tmp_path / "g.h5"
    with pytest.raises(InputError, match="sharding takes one record file, not 2"):
        featurize([a, b], "band-gap", out, shard=(0, 2))
    with pytest.raises(InputError, match="sharding cannot be combined with structure dedupe"):
        featurize(a, "band-gap", out, shard=(0, 2), dedupe="structure")
    with pytest.raises(InputError, match="dedupe must be one of id, structure, got 'formula'"):
        featurize([a, b], "band-gap", out, dedupe="formula")
    with pytest.raises(InputError, match=r"a\.jsonl is given twice"):
        featurize([a, b, a], "band-gap", out)
    with pytest.raises(InputError, match=r"e\.jsonl holds 'elastic' records, not 'band-gap'"):
        featurize([a, tmp_path / "e.jsonl"], "band-gap", out)
    with pytest.raises(InputError, match="overwrite the record file"):
        featurize([a, b], "band-gap", b)
    with pytest.raises(InputError, match="at least one record file"):
        featurize([], "band-gap", out)
    featurize(a, "band-gap", tmp_path / "store.h5")
    with pytest.raises(InputError, match=r"store\.h5 is an HDF5 graph store, not a record file"):
        featurize([a, tmp_path / "store.h5"], "band-gap", out)
    assert not out.exists()
