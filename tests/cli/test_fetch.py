"""``crystensor fetch`` through typer's CliRunner: outputs, numbers and every bad input."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from ase.io import write as ase_write
from typer.testing import CliRunner

from crystensor.cli import fetch as fetch_cli
from crystensor.cli.app import app as root_app
from crystensor.data.fetch import SOURCES
from crystensor.data.records import read_records
from crystensor.tensors.kinds import PROPERTIES
from tests.data.test_sources import elastic_table, outcar_text, vasp_run, write_csv, xyz_frames

runner = CliRunner()
SECRET = "s3cr3t-api-key-0123456789"


def cli_app() -> typer.Typer:
    """The root app once it registers ``fetch``; until then a root with only ``fetch``."""
    if any(c.name == "fetch" for c in root_app.registered_commands):
        return root_app
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """Test root."""

    app.command("fetch")(fetch_cli.fetch)
    return app


APP = cli_app()


def run(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(APP, ["fetch", *args], env=env)


@pytest.fixture
def elastic_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "elastic_tensor.csv.gz", elastic_table())


def test_help_lists_every_target_and_source():
    result = run("--help")
    assert result.exit_code == 0, result.output
    for option in (
        "--target",
        "--source",
        "--input",
        "--output",
        "--tolerance",
        "--key",
        "--api-key",
    ):
        assert option in result.output
    listed = fetch_cli.TARGET_HELP.split(":", 1)[1].strip().rstrip(".").split(", ")
    assert listed == list(PROPERTIES)  # the help text is kept in step with the registry
    assert all(name in fetch_cli.SOURCE_HELP for name in SOURCES)


def test_importing_the_command_is_light():
    code = (
        "import sys, crystensor.cli.fetch; "
        "print(sorted(m for m in ('numpy', 'pymatgen', 'pandas', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fetch_writes_records_and_prints_the_summary(tmp_path, elastic_csv):
    out = tmp_path / "out" / "elastic.jsonl.gz"
    result = run("-t", "elastic", "-s", "matminer-csv", "-i", str(elastic_csv), "-o", str(out))
    assert result.exit_code == 0, result.output
    for text in ("elastic from matminer-csv", "read", "kept", "rejected", "unreadable structure"):
        assert text in result.stdout
    records = list(read_records(out))
    assert [r.id for r in records] == ["mp-2133", "mp-nan"]
    assert records[0].symmetry["point_group"] == "6mm" and records[0].units == "GPa"
    rejects = [
        json.loads(line)
        for line in (tmp_path / "out" / "elastic.fetch-rejects.jsonl").read_text().splitlines()
    ]
    assert [r["id"] for r in rejects] == ["mp-bad"]


def test_fetch_json_report(tmp_path, elastic_csv):
    out = tmp_path / "k.jsonl"
    result = run(
        "-t", "bulk-modulus", "-s", "matminer-csv", "-i", str(elastic_csv), "-o", str(out), "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["read"], report["kept"], report["rejected"]) == (3, 1, 2)
    assert report["rejected_by_reason"] == {"missing value": 1, "unreadable structure": 1}
    assert report["output"] == str(out)
    assert report["rejects"] == str(tmp_path / "k.fetch-rejects.jsonl")


def test_fetch_extxyz_with_key(tmp_path):
    path = tmp_path / "frames.xyz"
    ase_write(path, xyz_frames(), format="extxyz")
    out = tmp_path / "eps.jsonl"
    result = run(
        "-t",
        "dielectric-electronic",
        "-s",
        "extxyz",
        "-i",
        str(path),
        "--key",
        "eps",
        "-o",
        str(out),
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rejected_by_reason"] == {"not periodic": 1}
    (first, _) = read_records(out)
    assert first.id == "mp-2133" and len(first.meta["becs"]) == 4


@pytest.mark.shared_data
def test_fetch_real_piezoelectric_subset(shared_data, tmp_path):
    out = tmp_path / "piezo.jsonl.gz"
    path = shared_data / "matminer-2018" / "piezoelectric_tensor.csv.gz"
    args = ("-t", "piezoelectric", "-s", "matminer-csv", "-i", str(path), "-o", str(out))
    result = run(*args, "--limit", "60", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["read"] == 60 and report["kept"] >= 45
    assert all(r.units == "C/m^2" and r.consistency <= 0.05 for r in read_records(out))


# case -> (arguments, expected message); {csv}, {xyz}, {json}, {missing}, {empty} are paths
# filled in per test (tmp_path has no spaces, so the arguments split on whitespace).
BAD_INPUTS: dict[str, tuple[str, str]] = {
    "missing file": ("-t elastic -s matminer-csv -i {missing}", "does not exist"),
    "wrong file for the source": (
        "-t elastic -s matminer-csv -i {json}",
        "cannot provide target 'elastic'",
    ),
    "missing key": (
        "-t dielectric -s extxyz -i {xyz} --key epsilon",
        "available keys: band_gap, eps, material_id",
    ),
    "unknown target for the source": (
        "-t band-gap -s matminer-csv -i {csv}",
        "it provides: elastic, bulk-modulus, shear-modulus",
    ),
    "unknown target": (
        "-t elasticity -s matminer-csv -i {csv}",
        "unknown property 'elasticity'; choose one of elastic",
    ),
    "unknown source": (
        "-t elastic -s matminer -i {csv}",
        "unknown source 'matminer'; choose one of mp, matminer-csv",
    ),
    "no input": ("-t elastic -s json", "give its path with --input"),
    "bad tolerance": (
        "-t elastic -s matminer-csv -i {csv} --tolerance 0",
        "tolerance must be a positive number",
    ),
    "nothing passes": (
        "-t elastic -s matminer-csv -i {csv} --tolerance 1e-12",
        "none of the 3 entries passed the checks",
    ),
    "no vasp output": ("-t elastic -s vasp -i {empty}", "no OUTCAR or vasprun.xml"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_line_exit_2_and_no_output(tmp_path, elastic_csv, case):
    xyz = tmp_path / "frames.xyz"
    ase_write(xyz, xyz_frames(), format="extxyz")
    foreign = tmp_path / "data.json.gz"
    foreign.write_bytes(gzip.compress(b'{"a": [1, 2]}'))
    (tmp_path / "empty").mkdir()
    paths = {"csv": elastic_csv, "xyz": xyz, "json": foreign, "empty": tmp_path / "empty"}
    template, message = BAD_INPUTS[case]
    args = template.format(missing=tmp_path / "nope.csv", **paths).split()
    out = tmp_path / "out" / "records.jsonl"
    result = run(*args, "-o", str(out), "--api-key", SECRET)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert "Traceback" not in result.output and SECRET not in result.output
    if case == "nothing passes":  # no records, but every rejection with its reason
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["records.fetch-rejects.jsonl"]
        assert "(all listed in records.fetch-rejects.jsonl)" in result.output
    else:
        assert not (tmp_path / "out").exists()


def test_api_key_from_the_environment_is_never_shown(tmp_path, elastic_csv):
    out = tmp_path / "e.jsonl"
    args = ("-t", "elastic", "-s", "matminer-csv", "-i", str(elastic_csv), "-o", str(out))
    result = run(*args, env={"MP_API_KEY": SECRET})
    assert result.exit_code == 0 and SECRET not in result.output
    result = run("--help", env={"MP_API_KEY": SECRET})
    assert SECRET not in result.output


def vasp_folder(root: Path) -> Path:
    """Two good VASP runs and three a user may well have: truncated, cut short, empty."""
    vasp_run(root / "good")
    vasp_run(root / "nested" / "good")
    (root / "stopped").mkdir()
    (root / "stopped" / "OUTCAR").write_text(" vasp.6.3.2\n running on 4 total cores\n")
    text = outcar_text()
    cut = vasp_run(root / "cut")
    (cut / "OUTCAR").write_text(text[: text.index("TOTAL ELASTIC MODULI") + 400])
    (root / "empty").mkdir()
    (root / "empty" / "OUTCAR").write_text("")
    return root


def test_vasp_rejections_have_reasons_in_words_and_a_rejects_file(tmp_path, monkeypatch):
    from crystensor.cli import common

    monkeypatch.setattr(common.console, "_width", 250)  # no wrapped reasons
    runs = vasp_folder(tmp_path / "runs")
    out = tmp_path / "elastic.jsonl"
    result = run("-t", "elastic", "-s", "vasp", "-i", str(runs), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert [r.id for r in read_records(out)] == ["good", "nested/good"]
    lines = (tmp_path / "elastic.fetch-rejects.jsonl").read_text().splitlines()
    rejects = {r["id"]: r for r in map(json.loads, lines)}
    assert sorted(rejects) == ["cut", "empty", "stopped"]
    assert all(r["stage"] == "fetch" and r["code"] == "unreadable-output" for r in rejects.values())
    reasons = {k: r["reason"] for k, r in rejects.items()}
    assert "TOTAL ELASTIC MODULI (kBar) block of OUTCAR has 2 of its 6 rows" in reasons["cut"]
    assert "the run was interrupted or the file was cut short" in reasons["cut"]
    assert reasons["empty"].startswith("unreadable output: OUTCAR is empty")
    assert "OUTCAR ends before the header pymatgen reads (NBANDS)" in reasons["stopped"]
    for reason in reasons.values():  # the table shows each one, not only the count
        assert reason in result.stdout
    assert "Rejected entries" in result.stdout and result.stderr == ""


def test_vasp_with_every_calculation_rejected_says_why_and_lists_them(tmp_path):
    runs = tmp_path / "runs"
    (runs / "stopped").mkdir(parents=True)
    (runs / "stopped" / "OUTCAR").write_text(" vasp.6.3.2\n running on 4 total cores\n")
    out = tmp_path / "elastic.jsonl"
    result = run("-t", "elastic", "-s", "vasp", "-i", str(runs), "-o", str(out))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: none of the 1 entries passed the checks")
    assert "stopped: unreadable output: OUTCAR ends before the header" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
    (line,) = (tmp_path / "elastic.fetch-rejects.jsonl").read_text().splitlines()
    assert json.loads(line)["reason"].startswith("unreadable output: OUTCAR ends before")
