"""tools/ship_model.py: a finished run becomes a shipped checkpoint and a generated model card."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from crystensor.checkpoint import load_checkpoint
from crystensor.prediction import load_predictor, model_info
from crystensor.train import run
from crystensor.train.config import TrainConfig
from tests.helpers import zno_wurtzite
from tests.train.conftest import build_store

pytestmark = pytest.mark.slow

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ship = _load("ship_model")


def _finished_run(folder: Path, target: str, n: int) -> Path:
    """A 2-epoch SEConv run on a store of ``n`` tiny cells of ``target``, in ``folder/run``."""
    store = build_store(folder / f"{target}.h5", target, n)
    config = TrainConfig(epochs=2, batch_size=8, patience=0)
    run.train(store, folder / "run", arch="seconv", preset_name="small", config=config)
    return folder / "run"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    return _finished_run(tmp_path_factory.mktemp("ship"), "piezoelectric", 24)


@pytest.fixture(scope="module")
def dielectric_run(tmp_path_factory) -> Path:
    return _finished_run(tmp_path_factory.mktemp("ship-dielectric"), "dielectric", 40)


def test_a_finished_run_is_shipped_with_its_card(finished_run, tmp_path, capsys):
    assert ship.main([str(finished_run), "--out", str(tmp_path), "--selection", "lowest val"]) == 0
    shipped = load_checkpoint(tmp_path / "piezoelectric.pt")
    best = load_checkpoint(finished_run / "best.pt")
    assert set(shipped.training) == {"train_config", "epoch", "history"}
    assert set(shipped.state_dict) == set(best.state_dict)
    card = (tmp_path / "piezoelectric.md").read_text()
    test = best.metrics["test"]
    # every number is the run's own, not typed in
    assert f"{test['mae']:.4g} C/m^2 (validation {best.metrics['val']['mae']:.4g})" in card
    assert f"train {len(best.split['train'])}, validation {len(best.split['val'])}" in card
    assert "**Why this model:** lowest val" in card and "seconv" in card
    assert "Na" in card.split("Seen in training")[1]  # elements of the tiny cells
    # the shipped file predicts exactly like the run's best.pt
    a = load_predictor(model=tmp_path / "piezoelectric.pt").predict_results([zno_wurtzite()])
    b = load_predictor(model=finished_run / "best.pt").predict_results([zno_wurtzite()])
    assert np.array_equal(a[0].tensor, b[0].tensor) and np.abs(a[0].tensor).max() > 0
    assert model_info(model=tmp_path / "piezoelectric.pt")["arch"] == "seconv"


def test_an_unfinished_run_or_a_wrong_target_is_refused(finished_run, tmp_path, capsys):
    assert ship.main([str(finished_run), "--out", str(tmp_path), "--target", "elastic"]) == 2
    assert "predicts piezoelectric, not elastic" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_caveat_goes_into_the_card_and_is_logged_with_every_prediction(
    finished_run, tmp_path, caplog
):
    caveat = "does not beat the zero tensor on held-out data"
    assert ship.main([str(finished_run), "--out", str(tmp_path), "--caveat", caveat]) == 0
    assert f"- **Caveat:** {caveat}" in (tmp_path / "piezoelectric.md").read_text()
    with caplog.at_level("WARNING", logger="crystensor.prediction"):
        load_predictor(model=tmp_path / "piezoelectric.pt")
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'piezoelectric.pt'}: {caveat}"
    ]
    caplog.clear()
    with caplog.at_level("WARNING", logger="crystensor.prediction"):
        load_predictor(model=finished_run / "best.pt")  # the run itself has no caveat
    assert not caplog.records


def test_an_ensemble_is_shipped_with_its_own_metrics_and_calibration(dielectric_run, tmp_path):
    import torch

    from crystensor.checkpoint import make_ensemble, save_checkpoint
    from crystensor.evaluation import evaluate_records

    best = dielectric_run / "best.pt"
    other = load_checkpoint(best)
    torch.manual_seed(0)
    other.state_dict = {k: v + 0.01 * torch.randn_like(v) for k, v in other.state_dict.items()}
    other_path = save_checkpoint(other, tmp_path / "other.pt")
    paths = [str(best), str(other_path)]
    ensemble = make_ensemble([load_checkpoint(best), other], meta={"ensemble_of": paths})
    ensemble.meta["ensemble"] = {"members": 2, "of": paths}
    raw = save_checkpoint(ensemble, tmp_path / "raw.pt")
    store = dielectric_run.parent / "dielectric.h5"
    out = tmp_path / "out"
    out.mkdir()
    args = [str(raw), "--store", str(store), "--out", str(out), "--no-speed"]
    assert ship.main(args) == 2  # not calibrated
    ensemble.meta["ensemble"] |= {
        "std_scale": 2.0,
        "split": "val",
        "n": 4,
        "within_one_sigma_before": 0.5,
    }
    save_checkpoint(ensemble, raw)
    assert ship.main(args) == 0
    shipped = load_checkpoint(out / "dielectric.pt")
    card = (out / "dielectric.md").read_text()
    assert shipped.n_members == 2
    # the ensemble's own test metrics, as predict (and evaluate) compute them from the records
    records = store.with_suffix(".jsonl")
    again = evaluate_records(out / "dielectric.pt", records, split="test")["metrics"]
    assert shipped.metrics["test"]["mae"] == pytest.approx(again["mae"])
    assert f"**MAE (mean of the Voigt components):** {again['mae']:.4g}" in card
    calibration = shipped.meta["ensemble"]["test_calibration"]
    assert calibration["std_scale"] == 2.0 and 0 < calibration["within_one_sigma"] <= 1
    assert "## Uncertainty" in card and "scaled by 2 so that 68 % are" in card
    assert "an ensemble of 2 seconv networks" in card and "## Speed" not in card
    runs = shipped.meta["ensemble"]["member_runs"]
    assert [r["test_mae"] for r in runs] == [
        load_checkpoint(p).metrics["test"]["mae"] for p in (best, other_path)
    ]


def test_the_cards_command_names_no_path_of_the_training_machine(finished_run):
    best = load_checkpoint(finished_run / "best.pt")
    best.meta["command"] = [
        "/home/u/.venv/bin/crystensor", "-q", "train", "-d", "/home/u/data/el.h5",
        "-d", "/home/u/mix/bulk.h5:0.3", "-o", "/scratch/u/runs/r1", "--seed", "0",
    ]  # fmt: skip
    store = finished_run.parent / "piezoelectric.h5"
    card = ship.model_card(best, ship._store_facts(store, best.split), "lowest val")
    want = "crystensor -q train -d data/el.h5 -d mix/bulk.h5:0.3 -o runs/r1 --seed 0"
    assert f"`{want}`" in card and "/home/u" not in card and "/scratch" not in card


def test_members_line_gives_a_sign_agnostic_members_own_score():
    signed = {"seed": 0, "best_epoch": 3, "epochs_run": 9, "val_mae": 0.25, "test_mae": 0.2}
    line = ship._members_line(None, [signed], " C/m^2")
    assert "seed 0: best epoch 3 of 9, MAE 0.25 C/m^2 validation / 0.2 C/m^2 test" in line
    agnostic = {**signed, "val_sa": 0.22, "test_sa": 0.16}
    line = ship._members_line(None, [agnostic], " C/m^2")
    assert "sign-agnostic MAE 0.22 C/m^2 validation / 0.16 C/m^2 test (signed 0.25" in line


@pytest.mark.parametrize(
    ("rho", "flagged", "others", "words"),
    [
        (0.45, 0.5, 0.2, "a useful sign"),
        (0.2, 0.5, 0.2, "a weak sign"),
        (0.22, 1.01, 1.13, "no clear sign"),  # correlated, but the flagged are not worse
        (0.05, 0.5, 0.2, "no sign"),
    ],
)
def test_flag_quality_words_follow_the_numbers(rho, flagged, others, words):
    features = {
        "error_rank_correlation": rho,
        "median_relative_error": {"flagged": flagged, "others": others},
    }
    assert f"it is {words} of a larger error" in ship._flag_quality(features)
