"""One option vocabulary across the commands, through typer's CliRunner.

``--format/-f`` everywhere (``--json`` its hidden alias), one ``--device``, short options that mean
one thing, flags shown without a value placeholder, ``-q`` that leaves only errors and the output
asked for, and ``bandgap`` accepted wherever ``band-gap`` is.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ase.io import write as ase_write
from typer.main import get_command
from typer.testing import CliRunner

from crystensor.cli.app import app
from crystensor.cli.options import DEVICE_HELP, device_name
from crystensor.data.records import read_records
from crystensor.data.store import GraphStore
from crystensor.errors import InputError
from tests.data.test_sources import xyz_frames

runner = CliRunner()
COMMANDS = ["fetch", "featurize", "train", "finetune", "predict", "evaluate", "decompose"]
PRINTING = ["fetch", "featurize", "predict", "evaluate", "decompose"]
# the short options of every command, and the one long option each stands for
SHORT_OPTIONS = {
    "-h": "--help",
    "-v": "--verbose",
    "-q": "--quiet",
    "-t": "--target",
    "-o": "--output",
    "-f": "--format",
    "-j": "--workers",
    "-s": "--source",
    "-i": "--input",
    "-k": "--kind",
    "-m": "--model",
    "-d": "--data",
    "-a": "--arch",
    "-R": "--interactions",
    "-N": "--self-interactions",
    "-M": "--mlp-layers",
}


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_error_line(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert message in lines[0], lines[0]


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    """Two periodic ZnO frames with a band gap and one molecule (which fetch rejects)."""
    path = tmp_path / "frames.xyz"
    ase_write(path, xyz_frames(), format="extxyz")
    return path


@pytest.fixture
def eps(tmp_path: Path) -> Path:
    path = tmp_path / "eps.json"
    path.write_text("[[5, 0, 0], [0, 5, 0], [0, 0, 7]]")
    return path


# -- help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", *COMMANDS])
def test_help_shows_no_value_placeholder_for_flags(name):
    result = runner.invoke(app, [*([name] if name else []), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    rows = {  # option name -> its row ("│ --name ..." or "│ *  --name ..." when required)
        next(w for w in line.split() if w.startswith("--")): line
        for line in result.output.splitlines()
        if line.startswith("│") and " --" in line.split("│")[1][:6]
    }
    assert "<" not in rows["--help"]
    if not name:
        assert "<" not in rows["--verbose"] and "<" not in rows["--quiet"]
        assert "default: 0" not in rows["--verbose"]
    if name in PRINTING:
        assert "--format" in rows and "--json" not in result.output  # the alias is hidden


def test_short_options_mean_one_thing_in_every_command():
    root = get_command(app)
    commands = [root, *(root.commands[name] for name in COMMANDS)]
    seen: dict[str, set[str]] = {}
    for command in commands:
        params = [*command.params, command.get_help_option(root.make_context("x", ["x"]))]
        for param in params:
            longs = [o for o in param.opts if o.startswith("--")]
            for short in (o for o in param.opts if len(o) == 2):
                seen.setdefault(short, set()).update(longs)
    assert {short: longs for short, longs in seen.items() if len(longs) != 1} == {}
    assert {short: longs.pop() for short, longs in seen.items()} == SHORT_OPTIONS


def test_device_is_one_option_with_one_default():
    root = get_command(app)
    for name in ("predict", "evaluate", "train", "finetune"):
        (device,) = [p for p in root.commands[name].params if p.name == "device"]
        assert device.help == DEVICE_HELP and device.show_default == "auto", name
    assert [device_name(d) for d in (None, "auto", "CPU", "cuda", "cuda:1")] == [
        "auto",
        "auto",
        "cpu",
        "cuda",
        "cuda:1",
    ]
    with pytest.raises(InputError, match="--device must be auto, cpu, cuda or cuda:N, got 'gpu'"):
        device_name("gpu")


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_bad_device_is_refused_before_any_work(tmp_path, command):
    args = ["x.POSCAR", "-t", "elastic"] if command == "predict" else ["elastic", tmp_path / "r"]
    one_error_line(run(command, *args, "--device", "tpu"), "--device must be auto, cpu, cuda")


# -- --format and --json ---------------------------------------------------------------------


def _without_timing(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("seconds", "structures_per_second")}


def test_format_json_and_the_json_alias_agree(tmp_path, frames, eps):
    def both(*args: object, output: str | None = None) -> list[dict]:
        got = []
        for i, spelling in enumerate((["--format", "json"], ["--json"])):
            out = [] if output is None else ["-o", tmp_path / f"{output}{i}"]
            result = run(*args, *out, *spelling)
            assert result.exit_code == 0, result.output
            got.append(json.loads(result.stdout))
        return got

    a, b = both("decompose", eps)
    assert a == b and a["kind"] == "dielectric"
    a, b = both("fetch", "-t", "band-gap", "-s", "extxyz", "-i", frames, output="r.jsonl")
    assert a["kept"] == b["kept"] == 2 and a["rejected_by_reason"] == {"not periodic": 1}
    records = tmp_path / "r.jsonl0"
    a, b = both("featurize", records, "-t", "band-gap", output="g.h5")
    assert _without_timing(a) | {"output": ""} == _without_timing(b) | {"output": ""}
    assert a["graphs"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["fetch", "-t", "band-gap", "-s", "extxyz", "-f", "csv"], "fetch cannot print csv"),
        (["featurize", "R", "-t", "band-gap", "-f", "csv"], "featurize cannot print csv"),
        (["decompose", "EPS", "-f", "csv"], "decompose cannot print csv; --format must be"),
        (["evaluate", "elastic", "R", "-f", "csv"], "evaluate cannot print csv"),
        (["decompose", "EPS", "--json", "-f", "table"], "--json is --format json, but"),
        (["predict", "EPS", "-t", "elastic", "--json", "-f", "csv"], "--json is --format json"),
    ],
)
def test_a_format_a_command_cannot_print_is_one_line(tmp_path, eps, args, message):
    out = tmp_path / "out" / "o"
    paths = {"R": str(tmp_path / "r.jsonl"), "EPS": str(eps)}
    result = run(*(paths.get(a, a) for a in args), "-o", out)
    one_error_line(result, message)
    assert not out.parent.exists()


def test_format_is_case_insensitive(eps):
    result = run("decompose", eps, "-f", "JSON")
    assert result.exit_code == 0 and json.loads(result.stdout)["kind"] == "dielectric"


# -- -q -------------------------------------------------------------------------------------------


def test_quiet_fetch_and_featurize_print_nothing(tmp_path, frames):
    records, store = tmp_path / "gap.jsonl.gz", tmp_path / "gap.h5"
    done = run("-q", "fetch", "-t", "band-gap", "-s", "extxyz", "-i", frames, "-o", records)
    assert (done.exit_code, done.stdout, done.stderr) == (0, "", "")
    assert (tmp_path / "gap.fetch-rejects.jsonl").is_file()  # the molecule, rejected quietly
    done = run("-q", "featurize", records, "-t", "band-gap", "-o", store)
    assert (done.exit_code, done.stdout, done.stderr) == (0, "", "")
    assert len(GraphStore(store)) == 2
    # errors are still printed, with their exit code
    done = run("-q", "fetch", "-t", "band-gap", "-s", "extxyz", "-i", frames, "-o", records)
    one_error_line(done, "already exists; pass --force")
    one_error_line(run("-q", "featurize", tmp_path / "none.jsonl", "-t", "band-gap", "-o",
                       tmp_path / "x.h5"), "does not exist")  # fmt: skip
    # JSON asked for is the output, not chatter
    done = run("-q", "featurize", records, "-t", "band-gap", "-o", store, "--force", "-f", "json")
    assert done.exit_code == 0 and done.stderr == "" and json.loads(done.stdout)["graphs"] == 2


def test_quiet_decompose_prints_only_what_was_asked(tmp_path, eps):
    done = run("-q", "decompose", eps)
    assert (done.exit_code, done.stdout, done.stderr) == (0, "", "")
    done = run("-q", "decompose", eps, "-o", tmp_path / "a.json")
    assert (done.exit_code, done.stdout, done.stderr) == (0, "", "")
    assert json.loads((tmp_path / "a.json").read_text())["kind"] == "dielectric"
    done = run("-q", "decompose", eps, "-f", "json")
    assert done.stderr == "" and json.loads(done.stdout)["kind"] == "dielectric"
    one_error_line(run("-q", "decompose", tmp_path / "none.json"), "does not exist")
    # and without -q, the next command prints again
    assert "Irreducible parts" in run("decompose", eps).stdout


# -- band-gap and bandgap -------------------------------------------------------------------------


def test_bandgap_is_accepted_for_band_gap(tmp_path, frames):
    records, store = tmp_path / "gap.jsonl", tmp_path / "gap.h5"
    done = run("fetch", "-t", "bandgap", "-s", "extxyz", "-i", frames, "-o", records, "-f", "json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["target"] == "band-gap"
    assert {r.target for r in read_records(records)} == {"band-gap"}
    done = run("featurize", records, "-t", "bandgap", "-o", store, "-f", "json")
    assert done.exit_code == 0, done.output
    assert GraphStore(store).target == "band-gap"
    done = run("featurize", "--merge", store, "-t", "bandgap", "-o", tmp_path / "m.h5")
    assert done.exit_code == 0, done.output
    root = get_command(app)
    for name, option in (("fetch", "target"), ("featurize", "target"), ("train", "pretrain")):
        (param,) = [p for p in root.commands[name].params if p.name == option]
        assert "band-gap" in param.help and "bandgap is accepted for band-gap" in param.help
