"""fetch -s naccarato: sorted principal values of eps_inf, checked against the crystal system."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from crystensor.cli.app import app
from crystensor.data.consistency import PRINCIPAL_VALUES
from crystensor.data.records import read_records
from tests.helpers import nacl, triclinic, zno_wurtzite

runner = CliRunner()
COLUMNS = ["MP_id", "Formula", "Ref_index (1)", "Ref_index (2)", "Ref_index (3)"]


def optimade(entry_id: str, structure) -> dict:
    names = [site.specie.symbol for site in structure]
    return {
        "id": entry_id,
        "type": "structures",
        "attributes": {
            "immutable_id": entry_id,
            "lattice_vectors": structure.lattice.matrix.tolist(),
            "cartesian_site_positions": structure.cart_coords.tolist(),
            "species_at_sites": names,
            "species": [{"name": s, "chemical_symbols": [s]} for s in sorted(set(names))],
        },
    }


def write_folder(folder: Path, rows: list[tuple], structures: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    with gzip.open(folder / "refractive_index.csv.gz", "wt") as fh:
        fh.write(text.getvalue())
    with gzip.open(folder / "structures_optimade.jsonl.gz", "wt") as fh:
        for entry_id, structure in structures.items():
            fh.write(json.dumps(optimade(entry_id, structure)) + "\n")
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rows = [
        ("mp-1", "NaCl", 1.5, 1.5001, 1.4999),  # cubic, equal: kept
        ("mp-2", "NaCl", 1.5, 1.7, 1.9),  # cubic, unequal: rejected
        ("mp-3", "ZnO", 2.0, 1.95, 2.0005),  # hexagonal, two equal: kept
        ("mp-4", "GaNO", 1.8, 2.0, 2.2),  # triclinic, any: kept
        ("mp-5", "NaCl", 0.8, 0.8, 0.8),  # eps < 1: rejected
        ("mp-6", "X", 2.0, 2.0, 2.0),  # no structure: rejected
        ("mp-7", "NaCl", "n/a", 2.0, 2.0),  # not a number: rejected
    ]
    structures = {"mp-1": nacl(), "mp-2": nacl(), "mp-3": zno_wurtzite(), "mp-4": triclinic()}
    structures["mp-5"] = nacl()
    structures["mp-7"] = nacl()
    return write_folder(tmp_path / "naccarato-2019", rows, structures)


def test_the_documented_command(folder, tmp_path):
    out = tmp_path / "nac.jsonl.gz"
    args = ["fetch", "-s", "naccarato", "-i", str(folder), "-t", "dielectric-electronic"]
    result = runner.invoke(app, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    records = {r.id: r for r in read_records(out)}
    assert sorted(records) == ["mp-1", "mp-3", "mp-4"]
    for record in records.values():
        assert record.meta["label"] == PRINCIPAL_VALUES and record.target == "dielectric-electronic"
        assert record.value == sorted(record.value) and len(record.value) == 3
    np.testing.assert_allclose(records["mp-4"].value, [1.8**2, 2.0**2, 2.2**2])
    assert records["mp-1"].symmetry["crystal_system"] == "cubic"
    assert records["mp-3"].meta["refractive_indices"] == [2.0, 1.95, 2.0005]
    rejects = [json.loads(line) for line in (tmp_path / "nac.fetch-rejects.jsonl").open()]
    reasons = {r["id"]: r["reason"] for r in rejects}
    assert "cubic crystal (m-3m) has three equal values" in reasons["mp-2"]
    assert reasons["mp-5"].startswith("unphysical value")
    assert reasons["mp-6"].startswith("no structure")
    assert reasons["mp-7"].startswith("not a number")


def test_wrong_target_and_missing_files(folder, tmp_path):
    out = str(tmp_path / "x.jsonl.gz")
    wrong = runner.invoke(
        app, ["fetch", "-s", "naccarato", "-i", str(folder), "-t", "elastic", "-o", out]
    )
    assert wrong.exit_code == 2 and "use -t dielectric-electronic" in wrong.output
    (folder / "structures_optimade.jsonl.gz").unlink()
    missing = runner.invoke(
        app,
        ["fetch", "-s", "naccarato", "-i", str(folder), "-t", "dielectric-electronic", "-o", out],
    )
    assert missing.exit_code == 2 and "structures_optimade.jsonl.gz is not in" in missing.output


def test_featurize_builds_a_principal_value_store(folder, tmp_path):
    """The records become a store labelled principal_values, holding diag(sorted values);
    a tensor record file cannot be featurized into the same store."""
    from crystensor.data.store import GraphStore

    out = tmp_path / "nac.jsonl.gz"
    fetched = runner.invoke(
        app,
        [
            "fetch",
            "-s",
            "naccarato",
            "-i",
            str(folder),
            "-t",
            "dielectric-electronic",
            "-o",
            str(out),
        ],
    )
    assert fetched.exit_code == 0, fetched.output
    result = runner.invoke(
        app, ["featurize", str(out), "-t", "dielectric-electronic", "-o", str(tmp_path / "nac.h5")]
    )
    assert result.exit_code == 0, result.output
    store = GraphStore(tmp_path / "nac.h5")
    assert store.label == PRINCIPAL_VALUES and len(store) == 3
    cart = store.read("target_cartesian")
    values = {r.id: r.value for r in read_records(out)}
    for i, rid in enumerate(store.ids):
        np.testing.assert_allclose(cart[i], np.diag(values[rid]))

    tensors = tmp_path / "tensors.jsonl"
    record = next(iter(read_records(out)))
    record.value = np.diag(record.value).tolist()
    record.meta = {}
    record.id = "mp-tensor"
    from crystensor.data.records import write_records

    write_records(tensors, [record])
    mixed = runner.invoke(
        app,
        [
            "featurize",
            str(out),
            str(tensors),
            "-t",
            "dielectric-electronic",
            "-o",
            str(tmp_path / "mixed.h5"),
        ],
    )
    assert mixed.exit_code == 2 and "separate stores" in mixed.output
    assert not (tmp_path / "mixed.h5").exists()


def test_shared_data_agrees_with_matminer_where_both_exist(shared_data, tmp_path):
    """The README's check: sorted n^2 against matminer's e_electronic eigenvalues."""
    from crystensor.data.sources import FetchOptions, matminer, naccarato

    nac = {
        e.id: e.value
        for e in naccarato.read(
            "dielectric-electronic", shared_data / "naccarato-2019", FetchOptions()
        )
        if hasattr(e, "value")
    }
    csv_path = shared_data / "matminer-2018" / "dielectric_constant.csv.gz"
    ratios = []
    for entry in matminer.read("dielectric-electronic", csv_path, FetchOptions()):
        if hasattr(entry, "value") and entry.id in nac:
            eig = np.linalg.eigvalsh(0.5 * (entry.value + entry.value.T))
            ratios.append(np.abs(np.sort(eig) / nac[entry.id] - 1).max())
    assert len(ratios) > 250  # the README counts 308 shared ids
    assert np.median(ratios) < 0.01
