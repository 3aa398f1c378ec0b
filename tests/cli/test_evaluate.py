"""``crystensor evaluate`` through typer's CliRunner: records and stores, splits, failures.

The models are untrained ``small`` presets (:func:`tests.test_predict.make_checkpoint`): the
numbers are meaningless, so each test computes what they must be with the prediction API and
:func:`crystensor.train.metrics.tensor_metrics` directly.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from typer.testing import CliRunner

from crystensor.cli.app import app
from crystensor.data.featurize import featurize
from crystensor.data.records import Record, write_records
from crystensor.data.store import GraphStore
from crystensor.evaluation import evaluate
from crystensor.prediction import load_predictor
from crystensor.tensors.kinds import get_property
from crystensor.train.metrics import tensor_metrics
from tests.helpers import isolated_cs, nacl, silicon, triclinic, zno_wurtzite
from tests.test_predict import make_checkpoint

runner = CliRunner()
BUILDERS = (nacl, silicon, zno_wurtzite, triclinic)


def run(*args: str):
    return runner.invoke(app, ["evaluate", *map(str, args)])


def strained(structure: Structure, k: int) -> Structure:
    """``structure`` with a small strain of its own (k = 0: unchanged)."""
    if k == 0:
        return structure
    strain = np.eye(3) + 0.01 * k * np.diag([1.0, -0.5, 0.3])
    return Structure(
        Lattice(structure.lattice.matrix @ strain), structure.species, structure.frac_coords
    )


def label(target: str, k: int) -> list:
    """A deterministic tensor of ``target`` with the kind's index symmetry."""
    kind = get_property(target).tensor_kind
    rng = np.random.default_rng(k)
    voigt = rng.normal(size=kind.voigt_shape)
    if voigt.shape[0] == voigt.shape[1]:
        voigt = voigt + voigt.T + 8.0 * np.eye(len(voigt))
    return kind.from_voigt(10.0 * voigt if target == "elastic" else voigt).tolist()


def record(rid: str, structure: Structure, target: str, value, system: str | None = None):
    return Record(
        id=rid,
        formula=structure.composition.reduced_formula,
        structure=structure.as_dict(),
        target=target,
        value=value,
        units=get_property(target).units,
        source={"dataset": "tests", "citation": "", "file": ""},
        symmetry={"crystal_system": system} if system else None,
    )


def make_records(path: Path, target: str, n: int = 8, extra=()) -> list[Record]:
    """``n`` records of the four tiny structures, strained, ids ``r-0`` ..., then ``extra``."""
    records = [
        record(f"r-{k}", strained(BUILDERS[k % 4](), k // 4), target, label(target, k))
        for k in range(n)
    ]
    write_records(path, [*records, *extra])
    return records


def expected(model: Path, records: list[Record], raw: bool = False) -> dict:
    """The metrics computed with the prediction API and tensor_metrics directly."""
    predictor = load_predictor(model=model)
    results = predictor.predict_results(
        [r.pymatgen_structure() for r in records], symmetrize=not raw, physical=not raw
    )
    pred = np.stack([p.tensor for p in results])
    true = np.array([r.value for r in records])
    systems = [p.crystal_system for p in results]
    return tensor_metrics(pred, true, predictor.kind, systems, units=predictor.kind.units)


def assert_same_metrics(got: dict, want: dict, rel: float = 1e-9) -> None:
    assert got["n"] == want["n"]
    for key in ("mae", "mae_independent", "frobenius_mae", "relative_frobenius_median"):
        assert got[key] == pytest.approx(want[key], rel=rel), key
    assert got["ewt"] == want["ewt"]
    np.testing.assert_allclose(got["component_mae"], want["component_mae"], rtol=rel, atol=1e-12)
    assert list(got["per_crystal_system"]) == list(want["per_crystal_system"])


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "elastic": make_checkpoint(folder / "elastic.pt", "elastic"),
        "piezoelectric": make_checkpoint(folder / "piezo.pt", "piezoelectric"),
        # trained, by its domain, on Na and Cl only: the other elements are flagged unseen
        "elastic-nacl": make_checkpoint(
            folder / "elastic-nacl.pt", "elastic", domain={"elements": ["Na", "Cl"]}
        ),
    }


@pytest.fixture(scope="module")
def elastic_records(tmp_path_factory) -> tuple[Path, list[Record]]:
    path = tmp_path_factory.mktemp("records") / "elastic.jsonl.gz"
    return path, make_records(path, "elastic")


# -- records ----------------------------------------------------------------------------------


def test_records_give_the_metrics_of_the_predict_pipeline(models, elastic_records):
    path, records = elastic_records
    result = run(models["elastic"], path, "--format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert_same_metrics(out["metrics"], expected(models["elastic"], records))
    assert out["data_format"] == "records" and out["tensors"] == "pipeline"
    # no record is in the model's split: all of them, and no split of its own
    assert out["split"] == {"name": "all", "source": None, "n": 8, "of": 8}
    assert out["counts"] == {"evaluated": 8, "failed": 0, "in_model_train": 0, "in_model_val": 0}
    true = np.array([r.value for r in records])
    zero = tensor_metrics(np.zeros_like(true), true, "elastic")
    assert out["zero_baseline"]["mae"] == pytest.approx(zero["mae"])
    assert out["zero_baseline"]["mae_independent"] == pytest.approx(zero["mae_independent"])
    assert out["model"] == str(models["elastic"]) and out["failures"] == []
    # the Python API returns the same dictionary
    assert evaluate(models["elastic"], path)["metrics"]["mae"] == out["metrics"]["mae"]


def test_raw_scores_the_network_output_untouched(models, elastic_records):
    path, records = elastic_records
    out = json.loads(run(models["elastic"], path, "--raw", "-f", "json").stdout)
    assert out["tensors"] == "raw"
    assert_same_metrics(out["metrics"], expected(models["elastic"], records, raw=True))
    pipeline = evaluate(models["elastic"], path)["metrics"]
    assert pipeline["mae"] != out["metrics"]["mae"]  # the projection changed the untrained output


def test_the_table_names_model_split_counts_and_baseline(models, elastic_records, tmp_path):
    path, _ = elastic_records
    result = run(models["elastic"], path)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert f"on {path}" in text.replace("\n", " ")
    assert "Split all: 8 of 8 records; 8 evaluated" in text
    for word in ("elastic metrics [GPa]", "zero tensor", "MAE per Voigt component", "EwT25"):
        assert word in text
    # -o: JSON for a .json file, the table as plain text otherwise
    assert run(models["elastic"], path, "-o", tmp_path / "m.json").exit_code == 0
    assert json.loads((tmp_path / "m.json").read_text())["metrics"]["n"] == 8
    assert run(models["elastic"], path, "-o", tmp_path / "m.txt").exit_code == 0
    assert "zero tensor" in (tmp_path / "m.txt").read_text()


def test_records_of_the_models_own_materials_default_to_its_test_split(tmp_path):
    path = tmp_path / "own.jsonl"
    records = make_records(path, "elastic", n=8)
    ids = [r.id for r in records]
    split = {"train": ids[:5], "val": ids[5:6], "test": ids[6:]}
    model = make_checkpoint(tmp_path / "m.pt", "elastic", split=split)
    out = json.loads(run(model, path, "-f", "json").stdout)
    assert out["split"] == {"name": "test", "source": "model", "n": 2, "of": 8}
    assert_same_metrics(out["metrics"], expected(model, records[6:]))
    every = json.loads(run(model, path, "--split", "all", "-f", "json").stdout)
    assert every["counts"]["in_model_train"] == 5 and every["counts"]["in_model_val"] == 1
    text = run(model, path, "--split", "all").stdout.replace("\n", " ")
    assert "5 in the model's training split and 1 in the model's validation split" in text


def test_piezoelectric_metrics_include_the_sign_agnostic_ones(models, tmp_path):
    path = tmp_path / "piezo.jsonl"
    records = make_records(path, "piezoelectric")
    out = json.loads(run(models["piezoelectric"], path, "-f", "json").stdout)
    want = expected(models["piezoelectric"], records)
    assert_same_metrics(out["metrics"], want)
    got = out["metrics"]["sign_agnostic"]
    for key in ("mae", "frobenius_mae", "sign_agreement"):
        assert got[key] == pytest.approx(want["sign_agnostic"][key]), key
    assert got["ewt"] == want["sign_agnostic"]["ewt"]
    assert "either sign" in run(models["piezoelectric"], path).stdout


def test_metrics_are_split_by_the_warnings_of_predict(models, elastic_records):
    path, records = elastic_records
    out = evaluate(models["elastic-nacl"], path)
    unseen = out["by_warning"]["unseen-element"]
    flagged = [r for r in records if set(r.pymatgen_structure().symbol_set) - {"Na", "Cl"}]
    assert unseen["flagged"]["n"] == len(flagged) and unseen["not_flagged"]["n"] == 2
    want = expected(models["elastic-nacl"], flagged)
    assert unseen["flagged"]["mae"] == pytest.approx(want["mae"])
    assert unseen["flagged"]["ewt"] == want["ewt"]
    assert "unseen-element" in run(models["elastic-nacl"], path).stdout


def test_structures_that_fail_are_counted_and_listed(models, tmp_path):
    path = tmp_path / "some-bad.jsonl.gz"
    overlapping = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    bad = [
        record("isolated", isolated_cs(), "elastic", label("elastic", 0)),
        record("overlap", overlapping, "elastic", label("elastic", 1)),
        record("voigt-label", nacl(), "elastic", np.eye(6).tolist()),
    ]
    records = make_records(path, "elastic", n=4, extra=bad)
    result = run(models["elastic"], path, "-f", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["counts"]["evaluated"] == 4 and out["counts"]["failed"] == 3
    assert [f["id"] for f in out["failures"]] == ["isolated", "overlap", "voigt-label"]
    assert "not the full elastic tensor" in out["failures"][2]["error"]
    assert_same_metrics(out["metrics"], expected(models["elastic"], records))
    table = run(models["elastic"], path).stdout
    assert "3 could not be evaluated" in table and "isolated (Cs):" in table


# -- stores -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def elastic_store(tmp_path_factory) -> tuple[Path, Path, list[Record]]:
    folder = tmp_path_factory.mktemp("store")
    records = make_records(folder / "a.jsonl", "elastic", n=12)
    featurize(folder / "a.jsonl", "elastic", folder / "elastic.h5", cutoff=5.0)
    return folder / "elastic.h5", folder / "a.jsonl", records


def test_a_store_gives_the_network_output_metrics(models, elastic_store):
    store, records_path, _ = elastic_store
    result = run(models["elastic"], store, "-f", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["data_format"] == "store" and out["tensors"] == "network"
    assert out["split"] == {"name": "all", "source": None, "n": 12, "of": 12}
    # the same graphs and network as the raw output of the records (float32 rounding apart)
    raw = evaluate(models["elastic"], records_path, raw=True)
    assert out["metrics"]["mae"] == pytest.approx(raw["metrics"]["mae"], rel=1e-5)
    assert out["metrics"]["frobenius_mae"] == pytest.approx(
        raw["metrics"]["frobenius_mae"], rel=1e-5
    )
    # --split test: the store's saved split
    test_ids = GraphStore(store).split_indices("test")
    out = json.loads(run(models["elastic"], store, "--split", "test", "-f", "json").stdout)
    assert out["split"] == {"name": "test", "source": "store", "n": len(test_ids), "of": 12}


def test_a_store_the_model_was_trained_on_defaults_to_its_test_split(elastic_store, tmp_path):
    store, _, _ = elastic_store
    opened = GraphStore(store)
    ids = opened.ids
    split = {
        name: [ids[i] for i in opened.split_indices(name)] for name in ("train", "val", "test")
    }
    model = make_checkpoint(tmp_path / "own.pt", "elastic", split=split)
    out = json.loads(run(model, store, "-f", "json").stdout)
    assert out["split"]["name"] == "test" and out["split"]["source"] == "model"
    assert out["counts"]["evaluated"] == len(split["test"])
    assert out["counts"]["in_model_train"] == 0


def test_a_store_featurized_otherwise_is_refused(models, tmp_path):
    make_records(tmp_path / "r.jsonl", "elastic", n=4)
    featurize(tmp_path / "r.jsonl", "elastic", tmp_path / "cut4.h5", cutoff=4.0)
    result = run(models["elastic"], tmp_path / "cut4.h5")
    assert result.exit_code == 2
    assert "cut4.h5 was featurized with cutoff=4.0" in result.output
    assert "Traceback" not in result.output


# -- refusals ---------------------------------------------------------------------------------


def test_data_of_another_target_is_refused_in_one_line(models, tmp_path):
    path = tmp_path / "eps.jsonl"
    make_records(path, "dielectric", n=2)
    result = run(models["elastic"], path)
    assert result.exit_code == 2
    assert "holds dielectric data" in result.output and "predicts elastic" in result.output
    assert "crystensor evaluate dielectric" in result.output
    assert len(result.output.strip().splitlines()) <= 2  # one line, wrapped at most once
    featurize(path, "dielectric", tmp_path / "eps.h5", cutoff=5.0)
    result = run(models["elastic"], tmp_path / "eps.h5")
    assert result.exit_code == 2 and "holds dielectric data" in result.output


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing data", "does not exist"),
        ("empty file", "is empty"),
        ("no records", "holds no records"),
        ("not records", "not valid JSON"),
        ("unknown model", "neither a checkpoint file nor the name of a shipped model"),
        ("bad split", "none of its materials is in the model's training split"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(models, elastic_records, tmp_path, case, message):
    path, _ = elastic_records
    model = models["elastic"]
    (tmp_path / "empty.jsonl").write_text("")
    with gzip.open(tmp_path / "none.jsonl.gz", "wt") as fh:
        fh.write("\n")
    (tmp_path / "POSCAR").write_text("Si\n1.0\n")
    args = {
        "missing data": (model, tmp_path / "absent.jsonl.gz"),
        "empty file": (model, tmp_path / "empty.jsonl"),
        "no records": (model, tmp_path / "none.jsonl.gz"),
        "not records": (model, tmp_path / "POSCAR"),
        "unknown model": ("elasticity", path),
        "bad split": (model, path, "--split", "test"),
    }[case]
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


# -- the shipped model ------------------------------------------------------------------------


@pytest.mark.shared_data
def test_the_shipped_elastic_model_on_a_few_real_records(shared_data, tmp_path):
    source = shared_data / "matten" / "example_crystal_elasticity_tensor_n100.json"
    out = tmp_path / "matten.jsonl.gz"
    fetched = runner.invoke(
        app,
        ["fetch", "-t", "elastic", "-s", "json", "-i", str(source), "-o", str(out), "--limit", "6"],
    )
    assert fetched.exit_code == 0, fetched.output
    result = run("elastic", out, "-f", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"] == "shipped elastic model"
    assert report["counts"]["evaluated"] + report["counts"]["failed"] == report["split"]["n"]
    # a trained model beats predicting zero by far
    assert report["metrics"]["mae"] < 0.5 * report["zero_baseline"]["mae"]


def test_a_scalar_model_on_its_store_and_refused_on_records(tmp_path):
    path = tmp_path / "gap.jsonl"
    structures = [strained(BUILDERS[k % 4](), k // 4) for k in range(8)]
    write_records(
        path, [record(f"g-{k}", s, "band-gap", 1.0 + k) for k, s in enumerate(structures)]
    )
    featurize(path, "band-gap", tmp_path / "gap.h5", cutoff=5.0)
    model = make_checkpoint(tmp_path / "gap.pt", "band-gap")
    result = run(model, tmp_path / "gap.h5")
    assert result.exit_code == 0, result.output
    assert "scalar (n = 8): MAE" in result.stdout and "Zero baseline: MAE 4.5 eV" in result.stdout
    out = json.loads(run(model, tmp_path / "gap.h5", "-f", "json").stdout)
    assert out["zero_baseline"]["mae"] == pytest.approx(4.5)
    refused = run(model, path)
    assert refused.exit_code == 2 and "evaluate the store" in refused.output
