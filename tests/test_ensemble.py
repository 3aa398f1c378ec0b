"""Ensembles: one checkpoint with several networks; predict averages them and reports the spread."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from crystensor.checkpoint import Checkpoint, load_checkpoint, make_ensemble, save_checkpoint
from crystensor.cli.app import app
from crystensor.errors import InputError
from crystensor.models import build_model
from crystensor.prediction import load_predictor
from tests.helpers import float64_one_thread, nacl, random_orthogonal, triclinic, zno_wurtzite
from tests.test_predict import make_checkpoint, rotated


def other_seed(checkpoint: Checkpoint, seed: int) -> Checkpoint:
    """The same network with other random weights, as another training seed would give."""
    torch.manual_seed(seed)
    model = build_model(checkpoint.model_config)
    return Checkpoint.from_model(
        model,
        checkpoint.featurization,
        split=checkpoint.split,
        normalization=checkpoint.normalization,
        meta=checkpoint.meta,
    )


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Checkpoint]:
    first = load_checkpoint(make_checkpoint(tmp_path_factory.mktemp("e") / "a.pt", "elastic"))
    return [first, other_seed(first, 11), other_seed(first, 12)]


def test_round_trip_and_refusals(members, tmp_path):
    ensemble = make_ensemble(members)
    path = save_checkpoint(ensemble, tmp_path / "ens.pt")
    loaded = load_checkpoint(path)
    assert loaded.n_members == 3 and loaded.meta["ensemble"] == {"members": 3}
    for got, want in zip(loaded.members, members, strict=True):
        assert all(torch.equal(got[k], want.state_dict[k]) for k in want.state_dict)
    assert make_ensemble([loaded, members[0]]).n_members == 4  # ensembles flatten
    with pytest.raises(InputError, match="at least two"):
        make_ensemble(members[:1])
    piezo = load_checkpoint(make_checkpoint(tmp_path / "p.pt", "piezoelectric"))
    with pytest.raises(InputError, match="differs from the first in its config"):
        make_ensemble([members[0], piezo])
    moved = other_seed(members[0], 13)
    moved.split = {"train": ["x"], "val": [], "test": []}
    with pytest.raises(InputError, match="split"):
        make_ensemble([members[0], moved])


def test_mean_and_spread(members, tmp_path):
    path = save_checkpoint(make_ensemble(members), tmp_path / "ens.pt")
    ensemble = load_predictor(model=path)
    singles = [
        load_predictor(model=save_checkpoint(m, tmp_path / f"{i}.pt"))
        for i, m in enumerate(members)
    ]
    structures = [nacl(), zno_wurtzite(), triclinic()]
    got = ensemble.predict_results(structures, physical=False)
    each = [p.predict_results(structures, physical=False) for p in singles]
    for k, result in enumerate(got):
        tensors = np.stack([e[k].tensor for e in each])
        np.testing.assert_allclose(
            result.tensor, tensors.mean(0), atol=1e-5 * np.abs(tensors).max()
        )
        np.testing.assert_allclose(
            result.std, tensors.std(0, ddof=1), atol=1e-5 * np.abs(tensors).max()
        )
        assert result.uncertainty == pytest.approx(
            np.linalg.norm(result.std) / np.linalg.norm(result.tensor)
        )
        # symmetry zeros stay zeros in the spread too
        assert np.all(result.std[result.tensor == 0.0] == 0.0)
        as_dict = result.as_dict()
        assert np.array(as_dict["voigt_std"]).shape == (6, 6) and as_dict["uncertainty"] > 0
    alone = singles[0].predict_results(structures)[0].as_dict()
    assert "voigt_std" not in alone and "uncertainty" not in alone


def test_identical_members_have_no_spread(members, tmp_path):
    path = save_checkpoint(make_ensemble([members[0], members[0]]), tmp_path / "same.pt")
    (result,) = load_predictor(model=path).predict_results([zno_wurtzite()])
    assert np.abs(result.std).max() < 1e-6 * np.abs(result.tensor).max()


@pytest.mark.parametrize("proper", [True, False])
def test_uncertainty_is_invariant_under_rotations_and_reflections(members, tmp_path, rng, proper):
    path = save_checkpoint(make_ensemble(members), tmp_path / "ens.pt")
    with float64_one_thread():
        predictor = load_predictor(model=path, dtype=torch.float64)
        structure = triclinic()
        turned = rotated(structure, random_orthogonal(rng, proper))
        a, b = predictor.predict_results([structure, turned], physical=False)
    assert a.uncertainty == pytest.approx(b.uncertainty, rel=1e-9)
    assert np.linalg.norm(a.std) == pytest.approx(np.linalg.norm(b.std), rel=1e-9)


def test_cli_reports_the_spread_in_every_format(members, tmp_path):
    import csv
    import io
    import json

    from typer.testing import CliRunner

    from crystensor.cli.app import app

    path = save_checkpoint(make_ensemble(members), tmp_path / "ens.pt")
    poscar = tmp_path / "ZnO.vasp"
    zno_wurtzite().to(filename=str(poscar), fmt="poscar")
    runner = CliRunner()
    data = json.loads(
        runner.invoke(app, ["predict", str(poscar), "-m", str(path), "-f", "json"]).stdout
    )
    (result,) = data["results"]
    assert np.array(result["voigt_std"]).shape == (6, 6) and result["uncertainty"] > 0
    text = runner.invoke(app, ["predict", str(poscar), "-m", str(path), "-f", "csv"]).stdout
    header, row = list(csv.reader(io.StringIO(text)))
    record = dict(zip(header, row, strict=True))
    assert float(record["uncertainty"]) == pytest.approx(result["uncertainty"])
    assert float(record["C33_std"]) == pytest.approx(result["voigt_std"][2][2])
    table = runner.invoke(app, ["predict", str(poscar), "-m", str(path)]).stdout
    assert "Spread: the ensemble members' standard deviation" in table
    assert "Relative uncertainty" in table


def test_nothing_is_written_when_nothing_is_predicted(members, tmp_path):
    from typer.testing import CliRunner

    from crystensor.cli.app import app

    path = save_checkpoint(members[0], tmp_path / "one.pt")
    empty = tmp_path / "empty.vasp"
    empty.write_text("")
    out = tmp_path / "pred.json"
    result = CliRunner().invoke(app, ["predict", str(empty), "-m", str(path), "-o", str(out)])
    assert result.exit_code == 2 and not out.exists()
    assert "none of the 1 structures could be predicted; nothing was written" in result.output
    assert "Predicted with" not in result.output


def test_ensemble_command(members, tmp_path):
    from typer.testing import CliRunner

    from crystensor.cli.app import app

    paths = [save_checkpoint(m, tmp_path / f"m{i}.pt") for i, m in enumerate(members)]
    out = tmp_path / "ens.pt"
    runner = CliRunner()
    result = runner.invoke(app, ["ensemble", *map(str, paths), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "an ensemble of 3 segnn networks for elastic" in " ".join(result.stdout.split())
    loaded = load_checkpoint(out)
    assert loaded.n_members == 3 and loaded.meta["ensemble"]["of"] == list(map(str, paths))
    again = runner.invoke(app, ["ensemble", *map(str, paths), "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    one = runner.invoke(app, ["ensemble", str(paths[0]), "-o", str(tmp_path / "x.pt")])
    assert one.exit_code == 2 and "at least two" in one.output


def test_spread_scale_recovers_a_gaussian_width(rng):
    from crystensor.ensembles import spread_scale

    std = rng.uniform(0.5, 2.0, size=(4000, 3, 3))
    errors = rng.normal(size=std.shape) * std * 2.5  # spread reported 2.5x too small
    assert spread_scale(errors, std) == pytest.approx(2.5, rel=0.05)
    std[:, 0, 1] = 0.0  # fixed by symmetry: left out
    assert spread_scale(errors, std) == pytest.approx(2.5, rel=0.05)
    with pytest.raises(InputError, match="no spread"):
        spread_scale(errors, np.zeros_like(std))


def test_coverage_counts_errors_within_the_spread_by_hand():
    from crystensor.ensembles import coverage

    true = np.array([[1.0, 2.0, 0.0], [2.0, 2.0, 0.0], [4.0, 1.0, 0.0]])
    pred = true + np.array([[0.5, -1.5, 0.0], [0.1, 0.0, 0.0], [3.0, -2.0, 0.0]])
    std = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # last fixed: out
    uncertainty = np.array([0.2, 0.1, 0.9])
    c = coverage(pred, true, std, uncertainty)
    assert c["n"] == 3 and c["components"] == 6
    assert c["within_one_sigma"] == pytest.approx(3 / 6)  # 0.5, 0.1, 0.0
    assert c["within_two_sigma"] == pytest.approx(5 / 6)  # and 1.5, 2.0
    # relative errors 0.707, 0.035, 0.874 rank as the uncertainties do
    assert c["rank_correlation"] == pytest.approx(1.0)
    assert c["median_uncertainty"] == pytest.approx(0.2)
    flat = coverage(pred, true, np.zeros_like(std), np.full(3, 0.3))
    assert flat["within_one_sigma"] is None and flat["rank_correlation"] is None


def test_predict_applies_the_calibrated_scale(members, tmp_path):
    ensemble = make_ensemble(members)
    plain = load_predictor(model=save_checkpoint(ensemble, tmp_path / "a.pt"))
    ensemble.meta["ensemble"]["std_scale"] = 2.0
    scaled = load_predictor(model=save_checkpoint(ensemble, tmp_path / "b.pt"))
    (a,) = plain.predict_results([zno_wurtzite()])
    (b,) = scaled.predict_results([zno_wurtzite()])
    np.testing.assert_allclose(b.std, 2.0 * a.std, rtol=1e-12)
    assert b.uncertainty == pytest.approx(2.0 * a.uncertainty)
    np.testing.assert_array_equal(a.tensor, b.tensor)


def test_calibrate_needs_the_validation_materials(members, tmp_path):
    from crystensor.ensembles import calibrate

    records = tmp_path / "none.jsonl"
    records.write_text("")
    with pytest.raises(InputError, match="val materials are in the record files"):
        calibrate(make_ensemble(members), [records])
    with pytest.raises(InputError, match="only an ensemble"):
        calibrate(members[0], [records])


def test_evaluate_scores_an_ensemble_by_its_mean(tmp_path):
    """On a store, evaluate averages the members as predict does (not the first member)."""
    from crystensor.evaluation import evaluate_store
    from tests.train.conftest import build_store

    store = build_store(tmp_path / "d.h5", "dielectric", 12)
    first = load_checkpoint(make_checkpoint(tmp_path / "a.pt", "dielectric"))
    first.featurization["cutoff"] = 4.0  # the tiny store's graphs
    second = other_seed(first, 5)
    paths = [save_checkpoint(c, tmp_path / f"{i}.pt") for i, c in enumerate((first, second))]
    ensemble = save_checkpoint(make_ensemble([first, second]), tmp_path / "ens.pt")
    maes = [evaluate_store(p, store, split="all")["metrics"]["mae"] for p in (*paths, ensemble)]
    assert maes[2] != maes[0] and maes[2] != maes[1]
    # keep_tensors: the members' mean tensors themselves, beside the metrics made from them
    kept = evaluate_store(ensemble, store, split="all", keep_tensors=True)
    arrays = kept["arrays"]
    assert arrays["pred"].shape == arrays["true"].shape == (12, 3, 3)
    assert sorted(arrays["index"].tolist()) == list(range(12))
    mae = np.abs(arrays["pred"] - arrays["true"]).mean()  # over the 9 entries, as the metric
    assert kept["metrics"]["mae"] == pytest.approx(mae, rel=1e-9) and mae > 0
    assert "arrays" not in evaluate_store(ensemble, store, split="all")


def test_align_signs_undoes_flips_and_keeps_the_first_sign(rng):
    from crystensor.ensembles import align_signs

    base = rng.standard_normal((5, 18))
    noise = 0.2 * rng.standard_normal((4, 5, 18))
    members = base[None] + noise
    flips = rng.choice([-1.0, 1.0], size=(4, 5))
    flips[0, 2] = -1.0  # the first member's own flip is kept: everything turns with it
    aligned = align_signs(members * flips[:, :, None])
    np.testing.assert_allclose(aligned, members * flips[:1, :, None])
    # rotating the tensors changes no inner product, so the chosen signs are the same
    rot = random_orthogonal(rng, proper=False)
    from crystensor.tensors.harmonic import from_irreps, to_irreps

    cart = from_irreps((members * flips[:, :, None]).reshape(-1, 18), "piezoelectric")
    turned = np.einsum("ai,bj,ck,nijk->nabc", rot, rot, rot, cart)
    again = align_signs(to_irreps(turned, "piezoelectric").reshape(4, 5, 18))
    np.testing.assert_allclose(
        from_irreps(again.reshape(-1, 18), "piezoelectric"),
        np.einsum(
            "ai,bj,ck,nijk->nabc",
            rot,
            rot,
            rot,
            from_irreps(aligned.reshape(-1, 18), "piezoelectric"),
        ),
        atol=1e-10,
    )


def test_sign_agnostic_members_are_averaged_after_alignment(tmp_path):
    """A member that predicts -T where the other predicts T: the ensemble reports T with no
    spread when the members were trained sign-agnostically, and cancels them when not."""
    first = load_checkpoint(make_checkpoint(tmp_path / "p.pt", "piezoelectric"))
    structures = [zno_wurtzite(), triclinic()]
    alone = load_predictor(model=save_checkpoint(first, tmp_path / "one.pt"))
    want = np.stack([r.tensor for r in alone.predict_results(structures, physical=False)])
    assert np.abs(want).max() > 0

    class Negated:
        def __init__(self, model):
            self.model = model
            self.backbone = model.backbone

        def head_of(self, pooled, batch):
            out = self.model.head_of(pooled, batch)
            return {**out, "irreps": -out["irreps"]}

    for agnostic in (True, False):
        first.training = {"train_config": {"sign_agnostic": agnostic}}
        path = save_checkpoint(make_ensemble([first, first]), tmp_path / f"ens{agnostic}.pt")
        predictor = load_predictor(model=path)
        predictor.models[1] = Negated(predictor.models[1])
        got = predictor.predict_results(structures, physical=False)
        tensors = np.stack([r.tensor for r in got])
        if agnostic:
            np.testing.assert_allclose(tensors, want, atol=1e-6 * np.abs(want).max())
            assert all(np.abs(r.std).max() <= 1e-6 * np.abs(want).max() for r in got)
        else:  # the plain mean cancels them: a zero tensor with a spread has no relative figure
            np.testing.assert_allclose(tensors, 0.0, atol=1e-6 * np.abs(want).max())
            assert all(r.uncertainty is None and np.abs(r.std).max() > 0 for r in got)
            json.dumps([r.as_dict() for r in got], allow_nan=False)


def test_a_tensor_zero_by_symmetry_has_zero_uncertainty(tmp_path):
    """A centrosymmetric crystal has no piezoelectric tensor: the ensemble reports zeros, no
    spread and uncertainty 0 (not an infinite ratio that JSON cannot hold), in every format."""
    first = load_checkpoint(make_checkpoint(tmp_path / "p.pt", "piezoelectric"))
    path = save_checkpoint(make_ensemble([first, other_seed(first, 5)]), tmp_path / "ens.pt")
    (result,) = load_predictor(model=path).predict_results([nacl()])
    assert np.all(result.tensor == 0.0) and np.all(result.std == 0.0)
    assert result.uncertainty == 0.0
    json.dumps(result.as_dict(), allow_nan=False)
    poscar = tmp_path / "NaCl.vasp"
    nacl().to(filename=str(poscar), fmt="poscar")
    for fmt in ("json", "csv", "table"):
        out = CliRunner().invoke(app, ["predict", str(poscar), "-m", str(path), "-f", fmt])
        assert out.exit_code == 0, out.output


def test_coverage_leaves_out_undefined_relative_figures():
    from crystensor.ensembles import coverage

    true = np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 1.0], [1.0, 1.0]])
    pred = true + np.array([[0.1, 0.0], [0.0, 0.0], [0.5, 0.0], [0.2, 0.0]])
    std = np.full_like(true, 0.3)
    c = coverage(pred, true, std, [0.1, None, 0.4, 0.2])  # the second: a zero tensor
    assert c["rank_correlation"] == pytest.approx(1.0)
    assert c["median_uncertainty"] == pytest.approx(0.2)
