"""What ``fetch`` and ``featurize`` do with their outputs: links, FIFOs, unwritable folders,
``.gz``, ``--force``, and the two stages' rejects files side by side."""

from __future__ import annotations

import gzip
import json
import os
import stat

import numpy as np
import pytest
from typer.testing import CliRunner

from crystensor.cli.app import app
from crystensor.data.store import GraphStore
from tests.data.test_featurize import write_test_records
from tests.data.test_sources import elastic_table, write_csv
from tests.io.test_atomic import FifoReader, deny_writing_in, make_fifo, only_files

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(result, *messages: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for message in messages:
        assert message in lines[0], lines[0]


@pytest.fixture
def csv(tmp_path):
    return write_csv(tmp_path / "elastic_tensor.csv", elastic_table())


def fetch(csv, out, *extra):
    return run("fetch", "-t", "elastic", "-s", "matminer-csv", "-i", csv, "-o", out, *extra)


@pytest.fixture
def records(tmp_path):
    write_test_records(tmp_path / "r.jsonl", "band-gap")
    return tmp_path / "r.jsonl"


def featurize(records, out, *extra):
    return run("featurize", records, "-t", "band-gap", "-o", out, *extra)


def test_fetch_writes_through_a_symbolic_link(tmp_path, csv):
    (tmp_path / "store").mkdir()
    target = tmp_path / "store" / "elastic.jsonl.gz"
    link = tmp_path / "elastic.jsonl.gz"
    link.symlink_to(target)
    result = fetch(csv, link)
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes()[:2] == b"\x1f\x8b"  # gzip, as the name says
    lines = gzip.decompress(target.read_bytes()).decode().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["mp-2133", "mp-nan"]


def test_featurize_writes_through_a_symbolic_link(tmp_path, records):
    target = tmp_path / "real.h5"
    link = tmp_path / "g.h5"
    link.symlink_to(target)
    assert featurize(records, link).exit_code == 0
    assert link.is_symlink() and len(GraphStore(target)) == 4


def test_fetch_streams_into_a_fifo(tmp_path, csv):
    fifo = make_fifo(tmp_path / "records.jsonl")
    reader = FifoReader(fifo)
    result = fetch(csv, fifo)
    assert result.exit_code == 0, result.output
    ids = [json.loads(line)["id"] for line in reader.result().decode().splitlines()]
    assert ids == ["mp-2133", "mp-nan"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # written into, not replaced
    assert (tmp_path / "records.fetch-rejects.jsonl").is_file()


def test_featurize_refuses_a_fifo_and_a_gz_store(tmp_path, records):
    fifo = make_fifo(tmp_path / "g.h5")
    one_line_error(featurize(records, fifo), "is a FIFO (named pipe)", "needs a regular file")
    one_line_error(featurize(records, tmp_path / "g.h5.gz"), "cannot be gzip-compressed")


@pytest.mark.parametrize("command", ["fetch", "featurize"])
def test_an_unwritable_folder_is_refused_before_any_work(
    tmp_path, csv, records, monkeypatch, command
):
    import crystensor.data.featurize
    import crystensor.data.fetch

    started = []
    module = {"fetch": crystensor.data.fetch, "featurize": crystensor.data.featurize}[command]
    monkeypatch.setattr(module, command, lambda *a, **k: started.append(1))
    folder = tmp_path / "ro"
    folder.mkdir()
    deny_writing_in(folder, monkeypatch)
    try:
        if command == "fetch":
            result = fetch(csv, folder / "elastic.jsonl.gz")
        else:
            result = featurize(records, folder / "g.h5")
    finally:
        folder.chmod(0o755)
    one_line_error(result, "no permission to write in folder", "choose a folder you can write to")
    assert not started and only_files(folder) == []


def test_fetch_and_featurize_refuse_to_replace_without_force(tmp_path, csv, records):
    out = tmp_path / "e.jsonl"
    assert fetch(csv, out).exit_code == 0
    before = out.read_bytes()
    out.write_bytes(before + b"\n")
    one_line_error(fetch(csv, out), f"records file '{out}' already exists", "--force")
    assert out.read_bytes() == before + b"\n"
    assert fetch(csv, out, "--force").exit_code == 0
    assert out.read_bytes() == before

    store = tmp_path / "g.h5"
    assert featurize(records, store).exit_code == 0
    created = GraphStore(store).attrs["created"]
    one_line_error(featurize(records, store), f"graph store '{store}' already exists", "--force")
    assert GraphStore(store).attrs["created"] == created
    assert featurize(records, store, "--force").exit_code == 0
    merged = tmp_path / "m.h5"
    merged.write_bytes(b"")
    one_line_error(run("featurize", "--merge", store, "-o", merged), "already exists", "--force")
    assert run("featurize", "--merge", store, "-o", merged, "--force").exit_code == 0


def test_fetch_and_featurize_rejects_files_live_side_by_side(tmp_path, csv):
    data = tmp_path / "data"
    data.mkdir()
    # the names examples/build_stores.sh uses: data/elastic.jsonl.gz, then data/elastic.h5
    assert fetch(csv, data / "elastic.jsonl.gz").exit_code == 0
    fetch_rejects = data / "elastic.fetch-rejects.jsonl"
    fetched = fetch_rejects.read_text()
    assert [json.loads(x)["stage"] for x in fetched.splitlines()] == ["fetch"]

    # featurize rejecting nothing leaves fetch's list alone (and writes none of its own)
    args = ("featurize", data / "elastic.jsonl.gz", "-t", "elastic", "-o", data / "elastic.h5")
    assert run(*args).exit_code == 0
    assert fetch_rejects.read_text() == fetched
    assert not (data / "elastic.featurize-rejects.jsonl").exists()

    # featurize rejecting something writes its own list beside fetch's
    result = run(*args, "--force", "--cutoff", "0.5")
    assert result.exit_code == 2 and "were rejected" in result.output
    featurized = [json.loads(x) for x in (data / "elastic.featurize-rejects.jsonl").open()]
    assert {(r["stage"], r["code"]) for r in featurized} == {("featurize", "isolated-atom")}
    assert fetch_rejects.read_text() == fetched
    assert only_files(data) == [
        "elastic.featurize-rejects.jsonl",
        "elastic.fetch-rejects.jsonl",
        "elastic.h5",
        "elastic.jsonl.gz",
    ]


@pytest.fixture(scope="module")
def elastic_model(tmp_path_factory):
    from tests.test_predict import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("m") / "elastic.pt", "elastic")


@pytest.fixture
def poscar(tmp_path):
    from tests.helpers import nacl

    path = tmp_path / "NaCl.vasp"
    nacl().to(filename=str(path), fmt="poscar")
    return path


def test_predict_decompose_evaluate_check_their_output_first(
    tmp_path, poscar, elastic_model, monkeypatch
):
    folder = tmp_path / "ro"
    folder.mkdir()
    deny_writing_in(folder, monkeypatch)
    tensor = tmp_path / "t.json"
    tensor.write_text(json.dumps(np.diag([4.0, 4.0, 5.0]).tolist()))
    try:
        for args in (
            ["predict", str(poscar), "-m", str(elastic_model), "-o", str(folder / "p.json")],
            ["decompose", str(tensor), "-o", str(folder / "d.json")],
            ["evaluate", str(elastic_model), str(poscar), "-o", str(folder / "e.json")],
        ):
            one_line_error(run(*args), "no permission to write in folder")
    finally:
        folder.chmod(0o755)
    assert only_files(folder) == []


def test_predict_writes_through_a_link_and_into_a_fifo(tmp_path, poscar, elastic_model):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert run("predict", str(poscar), "-m", str(elastic_model), "-o", str(link)).exit_code == 0
    assert link.is_symlink() and json.loads(target.read_text())["results"][0]["formula"] == "NaCl"
    fifo = make_fifo(tmp_path / "pred.csv")
    reader = FifoReader(fifo)
    assert run("predict", str(poscar), "-m", str(elastic_model), "-o", str(fifo)).exit_code == 0
    assert reader.result().decode().startswith("source,formula")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_ensemble_writes_through_a_link_and_refuses_streams_and_gz(tmp_path, elastic_model):
    target = tmp_path / "real.pt"
    link = tmp_path / "link.pt"
    link.symlink_to(target)
    members = [elastic_model, elastic_model]
    assert run("ensemble", *members, "-o", link).exit_code == 0
    assert link.is_symlink() and target.stat().st_size > 0
    fifo = make_fifo(tmp_path / "ens.pt")  # a checkpoint is read back by seeking: no stream
    one_line_error(run("ensemble", *members, "-o", fifo), "ensemble checkpoint", "FIFO")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    one_line_error(run("ensemble", *members, "-o", tmp_path / "ens.pt.gz"), "drop the .gz")
    assert only_files(tmp_path) == ["ens.pt", "link.pt", "real.pt"]  # no temporary left
