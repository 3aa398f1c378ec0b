"""``crystensor featurize`` through typer's CliRunner: stores, rejections, shards, bad inputs."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from crystensor.cli.featurize import featurize
from crystensor.data.records import write_records
from crystensor.data.store import GraphStore
from tests.data.test_featurize import (
    americium,
    assert_same_store,
    isolated_cs,
    make_record,
    two_sources,
    write_test_records,
)


def _app() -> typer.Typer:
    """The root app if it already registers featurize, else a stand-in with the same command."""
    from crystensor.cli.app import app

    names = {c.name for c in app.registered_commands}
    if "featurize" in names:
        return app
    local = typer.Typer(pretty_exceptions_enable=False)

    @local.callback()
    def root() -> None:
        """Stand-in root so that ``featurize`` is a subcommand, as in ``crystensor``."""

    local.command("featurize", no_args_is_help=True)(featurize)
    return local


runner = CliRunner()
APP = _app()


def run(*args: str):
    return runner.invoke(APP, ["featurize", *map(str, args)])


def one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error:"), result.stderr
    assert message in errors[0], errors[0]


@pytest.fixture
def records(tmp_path):
    extra = [
        make_record("lonely-cs", isolated_cs(), "band-gap", 1.0),
        make_record("am-metal", americium(), "band-gap", 1.0),
    ]
    write_test_records(tmp_path / "r.jsonl.gz", "band-gap", copies=2, extra=extra)
    return tmp_path / "r.jsonl.gz"


def test_featurize_lists_rejections_and_exits_0(records, tmp_path):
    out = tmp_path / "g.h5"
    result = run(records, "--target", "band-gap", "-o", out)
    assert result.exit_code == 0, result.output
    assert len(GraphStore(out)) == 8
    text = result.stdout
    for word in ("graphs", "8 of 10", "rejected", "lonely-cs", "am-metal", "isolated-atom"):
        assert word in text, word
    assert "unsupported-element" in text and "rejections" in text  # the file's row
    assert (tmp_path / "g.featurize-rejects.jsonl").is_file()


def test_json_report(records, tmp_path):
    result = run(records, "-t", "band-gap", "-o", tmp_path / "g.h5", "--json", "-j", "2")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["graphs"] == 8 and report["workers"] == 2
    assert {r["id"] for r in report["rejected"]} == {"lonely-cs", "am-metal"}
    assert sum(report["split_counts"].values()) == 8


def test_auto_cutoff_option(records, tmp_path):
    result = run(records, "-t", "band-gap", "-o", tmp_path / "g.h5", "--auto-cutoff", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["graphs"] == 9 and report["extended"] == 1


def test_shards_and_merge(records, tmp_path):
    assert run(records, "-t", "band-gap", "-o", tmp_path / "all.h5").exit_code == 0
    for i in range(2):
        result = run(records, "-t", "band-gap", "-o", tmp_path / f"s{i}.h5", "--shard", f"{i}/2")
        assert result.exit_code == 0, result.output
    result = run("--merge", tmp_path / "s1.h5", tmp_path / "s0.h5", "-o", tmp_path / "m.h5")
    assert result.exit_code == 0, result.output
    assert "stores merged" in result.stdout and "lonely-cs" in result.stdout
    assert_same_store(tmp_path / "all.h5", tmp_path / "m.h5")


def test_family_split_option(records, tmp_path):
    out = tmp_path / "g.h5"
    result = run(records, "-t", "band-gap", "-o", out, "--split", "family", "--split-seed", "3")
    assert result.exit_code == 0, result.output
    assert "split (family)" in result.stdout
    store = GraphStore(out)
    assert store.split_info["method"] == "family" and store.split_info["seed"] == 3
    result = run("--merge", out, "-o", tmp_path / "m.h5", "--split", "random")
    one_line_error(result, "--split cannot be used with --merge")
    result = run(records, "-t", "band-gap", "-o", tmp_path / "x.h5", "--split", "element")
    one_line_error(result, "--split must be random or family, got 'element'")


def test_everything_rejected_exits_2(tmp_path):
    write_records(tmp_path / "r.jsonl", [make_record("cs", isolated_cs(), "band-gap", 1.0)])
    result = run(tmp_path / "r.jsonl", "-t", "band-gap", "-o", tmp_path / "g.h5")
    one_line_error(result, "all 1 records of r.jsonl were rejected")
    assert not (tmp_path / "g.h5").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{records}", "-t", "elastic", "-o", "{out}"], "holds 'band-gap' records, not 'elastic'"),
        (["{records}", "-t", "gap", "-o", "{out}"], "unknown target 'gap'"),
        (["{records}", "-o", "{out}"], "give the records' property with --target"),
        (["{records}", "-t", "band-gap"], "give the store to write with -o"),
        (["{tmp}/nope.jsonl", "-t", "band-gap", "-o", "{out}"], "does not exist"),
        (["{records}", "-t", "band-gap", "-o", "{out}", "--shard", "1of2"], "I/N"),
        (["{records}", "-t", "band-gap", "-o", "{out}", "--shard", "2/2"], "out of range"),
        (["{records}", "-t", "band-gap", "-o", "{out}", "--cutoff", "-1"], "cutoff must be"),
        (["{records}", "{records}", "-t", "band-gap", "-o", "{out}"], "given twice"),
        (
            ["{records}", "{tmp}/b.jsonl", "-t", "band-gap", "-o", "{out}", "--shard", "0/2"],
            "sharding takes one record file, not 2",
        ),
        (["{records}", "-t", "band-gap", "-o", "{out}", "--dedupe", "formula"], "dedupe must be"),
        (["--merge", "{records}", "-o", "{out}", "--dedupe", "id"], "--dedupe cannot be used"),
        (["--merge", "{records}", "-o", "{out}"], "not an HDF5 file"),
        (["--merge", "{records}", "-o", "{out}", "--cutoff", "6"], "--cutoff cannot be used"),
        (["{tmp}/bad.jsonl", "-t", "band-gap", "-o", "{out}"], "line 1 is not valid JSON"),
    ],
)
def test_bad_inputs_give_one_line_and_exit_2(records, tmp_path, args, message):
    (tmp_path / "bad.jsonl").write_text("this is not json\n")
    write_test_records(tmp_path / "b.jsonl")
    before = sorted(tmp_path.iterdir())
    fill = {"records": records, "out": tmp_path / "g.h5", "tmp": tmp_path}
    result = run(*(a.format(**fill) for a in args))
    one_line_error(result, message)
    assert sorted(tmp_path.iterdir()) == before


def test_merge_checks_the_target(records, tmp_path):
    assert run(records, "-t", "band-gap", "-o", tmp_path / "a.h5").exit_code == 0
    result = run("--merge", tmp_path / "a.h5", "-t", "elastic", "-o", tmp_path / "m.h5")
    one_line_error(result, "target is 'band-gap', not 'elastic'")
    assert not (tmp_path / "m.h5").exists()


def test_two_record_files_are_combined_with_structure_dedupe(tmp_path):
    a, b = two_sources(tmp_path, "dielectric")
    out = tmp_path / "g.h5"
    result = run(a, b, "-t", "dielectric", "-o", out, "--dedupe", "structure", "-j", "2")
    assert result.exit_code == 0, result.output
    text = result.stdout
    for word in ("5 of 8", "duplicate-id: 1", "duplicate-structure: 2", "by structure", "born#0"):
        assert word in text, word
    assert GraphStore(out).ids == ["t-0", "t-1", "t-2", "t-3", "born#1"]
    assert [s["file"] for s in GraphStore(out).attrs["sources"]] == ["a.jsonl", "b.jsonl.gz"]


def test_two_record_files_json_report_dedupe_by_id(tmp_path):
    a, b = two_sources(tmp_path)
    result = run(a, b, "-t", "band-gap", "-o", tmp_path / "g.h5", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dedupe"] == "id" and report["inputs"] == [str(a), str(b)]
    assert (report["records"], report["graphs"]) == (8, 7)
    assert [(r["id"], r["code"], r["file"]) for r in report["rejected"]] == [
        ("t-1", "duplicate-id", "b.jsonl.gz")
    ]


def test_a_store_without_merge_is_refused(records, tmp_path):
    assert run(records, "-t", "band-gap", "-o", tmp_path / "a.h5").exit_code == 0
    result = run(tmp_path / "a.h5", records, "-t", "band-gap", "-o", tmp_path / "g.h5")
    one_line_error(result, "a.h5 is an HDF5 graph store, not a record file")
    assert "--merge" in result.stderr
