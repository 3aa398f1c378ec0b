"""The paper-experiments and symmetry-effect scripts of ``benchmarks/``, on tiny stores.

One module-wide run trains every experiment for one epoch with the small SEConv on stores of 40
two-atom cells (plus ten unstrained cubic cells in the elastic store); the tests then check the
run directories, skipping and resuming, the plan, the report and the point-group projection.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from crystensor.data.featurize import featurize
from crystensor.data.records import Record, read_records, write_records
from crystensor.data.store import GraphStore
from crystensor.tensors.kinds import get_kind
from crystensor.tensors.symmetry import project_to_point_group
from crystensor.train import plots
from tests.train.conftest import build_store

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = ["--preset", "small", "--epochs", "1", "--scalar-epochs", "1"]
TINY += ["--archs", "seconv", "--scalars", "band-gap"]
# Every run directory of all experiments for one arch and one scalar, in the planned order.
EXPECTED = [
    "direct/elastic-seconv",
    "direct/dielectric-seconv",
    "direct/piezoelectric-seconv",
    "scalar/band-gap-seconv",
    "scalar-tensor/band-gap-elastic-seconv",
    "scalar-tensor/band-gap-dielectric-seconv",
    "scalar-tensor/band-gap-piezoelectric-seconv",
    "chained/band-gap-seconv/el-di",
    "chained/band-gap-seconv/el-di-pz",
    "chained/band-gap-seconv/el-pz",
    "chained/band-gap-seconv/di-pz",
]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


experiments = _load("paper_experiments")
symmetry = _load("symmetry_effect")


def _cubic_voigt(c11: float, c12: float, c44: float) -> np.ndarray:
    voigt = np.zeros((6, 6))
    voigt[:3, :3] = c12
    voigt[np.arange(3), np.arange(3)] = c11
    voigt[np.arange(3, 6), np.arange(3, 6)] = c44
    return voigt


def _elastic_store_with_cubic_cells(path: Path, n: int, n_cubic: int) -> Path:
    """``build_store``'s elastic store plus ``n_cubic`` unstrained CsCl-type cubic cells."""
    build_store(path, "elastic", n)
    records_path = path.with_suffix(".jsonl")
    records = list(read_records(records_path))
    for k in range(n_cubic):
        a = 2.9 + 0.05 * k
        s = Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        records.append(
            Record(
                id=f"cubic-{k}",
                formula=s.composition.reduced_formula,
                structure=s.as_dict(),
                target="elastic",
                value=_cubic_voigt(250.0 - 5 * k, 120.0, 80.0 + k).tolist(),
                units="GPa",
                source={"dataset": "tests", "citation": "", "file": ""},
                symmetry={"space_group_number": 221, "crystal_system": "cubic"},
            )
        )
    write_records(records_path, records)
    featurize(records_path, "elastic", path, cutoff=4.0)
    return path


def _main(module, argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = module.main(argv)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Tiny stores, the dry-run plan before training, and one run of every experiment."""
    root = tmp_path_factory.mktemp("paper")
    stores, runs = root / "stores", root / "runs"
    stores.mkdir()
    _elastic_store_with_cubic_cells(stores / "elastic.h5", 40, 10)
    for target in ("dielectric", "piezoelectric", "band-gap", "formation-energy"):
        build_store(stores / f"{target}.h5", target, 40)
    argv = ["run", "--stores", str(stores), "--runs", str(runs), *TINY]
    plan_code, plan_text = _main(experiments, [*argv, "--dry-run"])
    created_by_plan = runs.exists()
    threads = torch.get_num_threads()
    # The plots of every run (over half of the time here) are not what these tests check; one
    # thread keeps tiny graphs fast on a machine whose cores are busy.
    with pytest.MonkeyPatch.context() as patch:
        for name in ("plot_learning_curves", "plot_component_heatmap", "plot_parity"):
            patch.setattr(plots, name, lambda *args, **kwargs: None)
        torch.set_num_threads(1)
        try:
            code, text = _main(experiments, argv)
        finally:
            torch.set_num_threads(threads)
    return dict(
        stores=stores,
        runs=runs,
        argv=argv,
        plan=(plan_code, plan_text, created_by_plan),
        run=(code, text),
    )


def test_plan_puts_every_run_after_the_one_it_starts_from(tmp_path):
    settings = experiments.Settings(
        stores=tmp_path / "s", runs=tmp_path / "r", experiments=("chained",), archs=("segnn",)
    )
    stages = experiments.plan(settings)
    keys = [s.key for s in stages]
    # the chains alone still need the scalar runs and their first links, the scalar -> elastic
    # and scalar -> dielectric runs, each planned once
    assert keys[:2] == ["scalar/formation-energy-segnn", "scalar/band-gap-segnn"]
    assert "scalar-tensor/band-gap-elastic-segnn" in keys
    assert "scalar-tensor/band-gap-dielectric-segnn" in keys
    assert not any(k.endswith("/el") for k in keys)
    assert not any(k.startswith("direct/") for k in keys) and len(keys) == len(set(keys)) == 14
    for i, stage in enumerate(stages):
        if stage.parent is not None:
            assert keys.index(stage.parent.key) < i
    di_pz = stages[keys.index("chained/band-gap-segnn/di-pz")]
    assert di_pz.parent.key == "scalar-tensor/band-gap-dielectric-segnn"
    assert di_pz.config.lr == di_pz.config.backbone_lr == 0.002


def test_commands_are_those_of_the_crystensor_cli():
    settings = experiments.Settings(stores=Path("data"), runs=Path("runs/paper"))
    stages = {s.key: s for s in experiments.plan(settings)}
    assert " ".join(stages["direct/elastic-segnn"].command()) == (
        "crystensor train -d data/elastic.h5 -o runs/paper/direct/elastic-segnn --arch segnn "
        "--preset default --pooling mean --epochs 100 --patience 30 --batch-size 32 --seed 0"
    )
    assert " ".join(stages["scalar/band-gap-seconv"].command()) == (
        "crystensor train -d data/band-gap.h5 -o runs/paper/scalar/band-gap-seconv --arch seconv "
        "--preset default --pooling mean --epochs 10 --patience 30 --batch-size 32 --seed 0"
    )
    assert " ".join(stages["chained/formation-energy-setransformer/el-di"].command()) == (
        "crystensor finetune "
        "runs/paper/scalar-tensor/formation-energy-elastic-setransformer/best.pt "
        "-d data/dielectric.h5 -o runs/paper/chained/formation-energy-setransformer/el-di "
        "--epochs 100 --patience 30 --batch-size 32 --seed 0 --lr 0.002 --backbone-lr 0.002"
    )
    config = stages["direct/elastic-segnn"].config
    assert config.backbone_lr is None and config.freeze == "none" and config.device == "auto"


@pytest.mark.slow
def test_dry_run_plans_without_training(trained):
    code, text, created = trained["plan"]
    assert code == 0 and not created
    lines = [line for line in text.splitlines() if not line.startswith(" ")]
    assert [line.split()[0] for line in lines[:-1]] == ["start"] * len(EXPECTED)
    assert [line.split()[1] for line in lines[:-1]] == EXPECTED
    assert "(after scalar/band-gap-seconv)" in text
    assert lines[-1] == f"0 done, 0 running, 0 resume, {len(EXPECTED)} start ({len(EXPECTED)} runs)"


@pytest.mark.slow
def test_run_trains_every_experiment_in_its_directory(trained):
    code, text = trained["run"]
    assert code == 0, text
    runs = trained["runs"]
    for key in EXPECTED:
        metrics = json.loads((runs / key / "metrics.json").read_text())
        assert metrics["arch"] == "seconv" and metrics["epochs_run"] == 1
        assert f"{key}: finished in" in text
    plan = json.loads((runs / "chained/band-gap-seconv/di-pz/run.json").read_text())
    assert plan["mode"] == "finetune"
    assert plan["start_from"] == str(
        (runs / "scalar-tensor/band-gap-dielectric-seconv/best.pt").resolve()
    )
    assert plan["stages"][0]["train"]["backbone_lr"] == 0.002
    assert plan["command"][:2] == ["crystensor", "finetune"]
    pz = json.loads((runs / "direct/piezoelectric-seconv/metrics.json").read_text())
    assert f"test MAE {pz['test']['mae']:.4g} C/m^2" in text
    assert not (runs / "direct/elastic-segnn").exists()  # only the chosen arch


@pytest.mark.slow
def test_a_second_run_skips_and_an_interrupted_one_resumes(trained):
    runs, argv = trained["runs"], trained["argv"]
    before = {k: (runs / k / "best.pt").stat().st_mtime_ns for k in EXPECTED}
    code, text = _main(experiments, argv)
    assert code == 0
    assert text.count("done earlier") == len(EXPECTED) and "starting" not in text
    assert {k: (runs / k / "best.pt").stat().st_mtime_ns for k in EXPECTED} == before

    interrupted = runs / "chained/band-gap-seconv/el-pz"
    (interrupted / "metrics.json").unlink()
    _, plan_text = _main(experiments, [*argv, "--dry-run"])
    assert "resume   chained/band-gap-seconv/el-pz" in plan_text
    assert f"{len(EXPECTED) - 1} done, 0 running, 1 resume, 0 start" in plan_text
    code, text = _main(experiments, argv)
    assert code == 0 and "chained/band-gap-seconv/el-pz: resuming" in text
    assert (interrupted / "metrics.json").is_file()

    fresh = runs / "scalar/band-gap-seconv"  # a train run (recorded model overrides) resumes
    (fresh / "metrics.json").unlink()
    code, text = _main(experiments, argv)
    assert code == 0 and "scalar/band-gap-seconv: resuming" in text
    assert (fresh / "metrics.json").is_file()

    _, other = _main(experiments, [*argv, "--epochs", "2", "--dry-run"])
    assert "[settings differ: epochs 1 (want 2)]" in other


def test_a_stage_another_instance_trains_is_left_alone(trained):
    """Another instance of the script trains in-process (its command line names no run): the
    lock it holds on RUN_DIR.lock is what tells."""
    import fcntl

    runs, argv = trained["runs"], trained["argv"]
    busy = runs / "chained/band-gap-seconv/el-pz"
    (busy / "metrics.json").unlink()
    with open(busy.with_name("el-pz.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as the other instance would
        _, plan = _main(experiments, [*argv, "--dry-run"])
        code, text = _main(experiments, argv)
    assert "running  chained/band-gap-seconv/el-pz" in plan
    assert code == 1 and "el-pz: another process is training it; left alone" in text
    assert not (busy / "metrics.json").is_file()
    code, text = _main(experiments, argv)  # released: resumed and finished
    assert code == 0 and "chained/band-gap-seconv/el-pz: resuming" in text


def _table(text: str, title: str) -> list[list[str]]:
    """The rows (as stripped cells) of the Markdown table under the heading ``## title...``."""
    section = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in row.split("|")[1:-1]] for row in rows[2:]]


@pytest.mark.slow
def test_report_puts_the_papers_numbers_beside_ours(trained, tmp_path):
    runs = trained["runs"]
    markdown = tmp_path / "report.md"
    code, text = _main(experiments, ["report", "--runs", str(runs), "--markdown", str(markdown)])
    assert code == 0 and markdown.read_text() == text.rstrip("\n") + "\n"

    def mae(key: str) -> str:
        return f"{json.loads((runs / key / 'metrics.json').read_text())['test']['mae']:.4g}"

    # Figure 4: target | SEGNN ours, paper, EwT25, val | SEConv ... | SETransformer ...
    fig4 = {row[0]: row for row in _table(text, "Figure 4")}
    elastic = fig4["elastic [GPa]"]
    assert elastic[1:3] == ["—", "8.139"] and elastic[9:11] == ["—", "7.941"]
    assert elastic[5:7] == [mae("direct/elastic-seconv"), "7.689"] and elastic[7].endswith(" %")
    assert fig4["piezoelectric [C/m^2]"][5:7] == [mae("direct/piezoelectric-seconv"), "0.170"]
    assert "log10(GPa)" in text

    # Figures 5-7: ours (our direct) | paper (paper's direct), per arch
    direct_di, direct_pz = mae("direct/dielectric-seconv"), mae("direct/piezoelectric-seconv")
    fig5 = {tuple(row[:2]): row[2:] for row in _table(text, "Figure 5")}
    ours = mae("scalar-tensor/band-gap-dielectric-seconv")
    assert fig5["Band gap", "dielectric"] == [
        "— (—)", "4.74 (4.82)", f"{ours} ({direct_di})", "4.35 (4.702)", "— (—)", "4.56 (4.718)"
    ]  # fmt: skip
    assert fig5["Formation energy", "elastic [GPa]"][:2] == ["— (—)", "8.19 (8.139)"]
    fig6 = {tuple(row[:2]): row[2:] for row in _table(text, "Figure 6")}
    for number, chain in ((1, "el-di-pz"), (2, "el-pz"), (3, "di-pz")):
        ours = mae(f"chained/band-gap-seconv/{chain}")
        assert fig6["Band gap", f"Exp. {number}"][2:4] == [f"{ours} ({direct_pz})", "0.170 (0.170)"]
    fig7 = {row[0]: row[1:] for row in _table(text, "Figure 7")}
    assert fig7["Band gap"][2:4] == [
        f"{mae('chained/band-gap-seconv/el-di')} ({direct_di})",
        "4.64 (4.702)",
    ]
    assert fig7["Formation energy"][:2] == ["— (—)", "4.67 (4.82)"]  # not run

    sizes = {row[0]: row for row in _table(text, "Datasets")}
    store = GraphStore(trained["stores"] / "elastic.h5")
    split = [str(len(store.split_indices(name))) for name in ("train", "val", "test")]
    assert sizes["elastic.h5"][1:] == ["elastic", *split, "50", "~12k"]
    assert len(_table(text, "Runs")) == len(EXPECTED) and "cores, torch" in text


@pytest.mark.slow
def test_projection_zeroes_what_cubic_symmetry_forbids(trained, tmp_path):
    ckpt = trained["runs"] / "direct/elastic-seconv/best.pt"
    store = trained["stores"] / "elastic.h5"
    result = symmetry.symmetry_effect(ckpt, store, split="test")
    assert set(result["before"]) == set(result["after"])
    assert set(result["before"]["per_crystal_system"]) == set(result["after"]["per_crystal_system"])
    assert set(result["before"]["ewt"]) == {"25", "10", "5"}
    kind = get_kind("elastic")
    cubic = [k for k, i in enumerate(result["ids"]) if i.startswith("cubic-")]
    assert cubic, "no cubic cell in the test split"
    for k in cubic:
        assert result["point_groups"][k] == "m-3m"
        voigt = kind.to_voigt(result["projected"][k])
        forbidden = ~np.isin(
            np.arange(36).reshape(6, 6), [0, 1, 2, 6, 7, 8, 12, 13, 14, 21, 28, 35]
        )
        assert np.all(voigt[forbidden] == 0.0)
        assert voigt[0, 0] == voigt[1, 1] == voigt[2, 2] and voigt[3, 3] == voigt[5, 5]
        assert voigt[0, 1] == voigt[1, 2] == voigt[0, 2]
        raw = kind.to_voigt(result["pred"][k])
        assert np.abs(raw - voigt).max() < 1e-3 * np.abs(raw).max()  # equivariant: ~symmetric
        # the target, in the same frame, already has the symmetry the projection imposes
        true = result["true"][k]
        assert np.abs(project_to_point_group(true, "m-3m") - true).max() < 1e-9
    assert result["target_change"] >= 0.0

    out = tmp_path / "effect.json"
    code, text = _main(symmetry, [str(ckpt), "--store", str(store), "--json", str(out)])
    assert code == 0 and "EwT25" in text and "MAE cubic" in text
    saved = json.loads(out.read_text())
    assert set(saved["before"]) == set(saved["after"]) and saved["point_groups"]["m-3m"] >= 1


@pytest.mark.slow
def test_symmetry_effect_refuses_a_store_of_another_target(trained):
    ckpt = trained["runs"] / "direct/elastic-seconv/best.pt"
    code = symmetry.main([str(ckpt), "--store", str(trained["stores"] / "dielectric.h5")])
    assert code == 2


def test_unknown_choices_are_refused(capsys):
    with pytest.raises(SystemExit):
        experiments.main(["run", "--archs", "segnn,mace"])
    assert "mace: choose from segnn,seconv,setransformer" in capsys.readouterr().err


def test_missing_stores_stop_before_training(tmp_path, capsys):
    code = experiments.main(["run", "--stores", str(tmp_path), "--runs", str(tmp_path / "r")])
    assert code == 2 and "missing store" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


baselines = _load("baselines")


def test_structure_blind_baselines(tmp_path):
    path = _elastic_store_with_cubic_cells(tmp_path / "elastic.h5", 30, 8)
    store = baselines.read_store(path)
    result = baselines.baselines(store)
    true = store["tensors"][store["split"] == "test"]
    voigt = get_kind("elastic").to_voigt(true)
    assert result["zero"]["mae"] == pytest.approx(np.abs(voigt).mean())
    assert result["zero"]["ewt"]["25"] == 0.0
    # the isotropic constant keeps only the 0e parts: rotating it changes nothing
    constant = baselines.isotropic(store["tensors"], "elastic", np.mean)
    rot = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))[0]
    turned = np.einsum("ai,bj,ck,dl,ijkl->abcd", rot, rot, rot, rot, constant)
    np.testing.assert_allclose(turned, constant, atol=1e-9 * np.abs(constant).max())
    # and of an isotropic tensor it is the tensor itself
    lam, mu = 60.0, 30.0
    d = np.eye(3)
    iso = lam * np.einsum("ij,kl->ijkl", d, d) + mu * (
        np.einsum("ik,jl->ijkl", d, d) + np.einsum("il,jk->ijkl", d, d)
    )
    np.testing.assert_allclose(baselines.isotropic(iso[None], "elastic", np.median), iso)
    assert result["isotropic mean"]["mae"] < result["zero"]["mae"]


def test_baselines_of_a_piezoelectric_store_are_all_zero(tmp_path, capsys):
    path = build_store(tmp_path / "piezoelectric.h5", "piezoelectric", 30)
    result = baselines.baselines(baselines.read_store(path))
    assert result["zero"]["mae"] == result["isotropic mean"]["mae"] > 0  # no 0e part at all
    assert baselines.main([str(path), "--markdown"]) == 0
    assert "| piezoelectric.h5 |" in capsys.readouterr().out


def test_baselines_on_a_recomputed_family_split(tmp_path, capsys):
    from crystensor.data.store import GraphStore

    path = build_store(tmp_path / "piezoelectric.h5", "piezoelectric", 40)
    store = baselines.read_store(path, "family", seed=3)
    systems = np.array(GraphStore(path).chemical_systems)
    assert len(set(systems)) > 3
    for name in ("train", "val", "test"):
        others = systems[store["split"] != name]
        assert not set(systems[store["split"] == name]) & set(others)  # no family in two splits
    expected = GraphStore(path).use_split("family", 3).read("split")
    assert [("train", "val", "test")[i] for i in expected] == list(store["split"])
    val = baselines.baselines(store, "val")["zero"]
    assert val["n"] == int((store["split"] == "val").sum())
    assert baselines.main([str(path), "--split", "family", "--seed", "3", "--subset", "val"]) == 0
    assert "n val" in capsys.readouterr().out
    assert baselines.main([str(tmp_path / "missing.h5")]) == 2


evaluation = _load("evaluate")


@pytest.mark.slow
def test_evaluate_splits_the_test_metrics_by_source_file(trained, tmp_path):
    run = trained["runs"] / "direct/elastic-seconv"
    own = evaluation.evaluate_checkpoint(run / "best.pt", trained["stores"] / "elastic.h5")
    recorded = json.loads((run / "metrics.json").read_text())["test"]
    assert list(own) == ["all"] and own["all"]["mae"] == pytest.approx(recorded["mae"], rel=1e-5)
    # the same records as two source files: the test split is the same, now in two groups
    records = list(read_records(trained["stores"] / "elastic.jsonl"))
    write_records(tmp_path / "a.jsonl", records[:25])
    write_records(tmp_path / "b.jsonl", records[25:])
    both = tmp_path / "both.h5"
    featurize([tmp_path / "a.jsonl", tmp_path / "b.jsonl"], "elastic", both, cutoff=4.0)
    split = evaluation.evaluate_checkpoint(run / "best.pt", both)
    assert list(split) == ["all", "a.jsonl", "b.jsonl"]
    n = {k: m["n"] for k, m in split.items()}
    assert n["all"] == n["a.jsonl"] + n["b.jsonl"] == own["all"]["n"]
    weighted = n["a.jsonl"] * split["a.jsonl"]["mae"] + n["b.jsonl"] * split["b.jsonl"]["mae"]
    assert split["all"]["mae"] == pytest.approx(weighted / n["all"], rel=1e-6)
    assert split["all"]["mae"] == pytest.approx(own["all"]["mae"], rel=1e-5)
    # --ids-of keeps the graphs of the other store's same split only
    only = evaluation.evaluate_checkpoint(
        run / "best.pt", both, ids_of=trained["stores"] / "elastic.h5"
    )
    assert only["all"]["n"] == own["all"]["n"]


@pytest.mark.slow
def test_report_can_show_only_the_pretraining_runs_made(trained):
    argv = ["report", "--runs", str(trained["runs"]), "--archs", "seconv", "--scalars", "band-gap"]
    code, text = _main(experiments, argv)
    assert code == 0
    pretraining = text.split("## Figure 5")[1].split("## Datasets")[0]
    assert "SEConv ours" in pretraining and "SEGNN" not in pretraining
    assert "Band gap" in pretraining and "Formation energy" not in pretraining
    assert "— (" not in pretraining.split("## Figure 6")[0]  # every run of Figure 5 is there
    assert "SEGNN ours" in text.split("## Figure 5")[0]  # Figure 4 keeps all three


def test_backbone_probe_invariants_and_ridge():
    """The probe's pooled features are rotation invariants, and its validation-chosen ridge
    recovers a linear law (and refuses to fit noise better than a constant)."""
    from e3nn import o3

    from tests.helpers import random_orthogonal

    probe = _load("backbone_probe")
    rng = np.random.default_rng(0)
    irreps = o3.Irreps("3x0e+2x1o+2x2e+1x3o")
    x = rng.normal(size=(5, irreps.dim))
    rot = random_orthogonal(rng, proper=False)
    rotated = x @ irreps.D_from_matrix(torch.as_tensor(rot)).numpy().T
    inv = probe.backbone_invariants(x, irreps)
    assert inv.shape == (5, 3 + 3 + 2 + 2 + 1)
    np.testing.assert_allclose(probe.backbone_invariants(rotated, irreps), inv, atol=1e-12)
    assert not np.allclose(probe.backbone_invariants(rotated[::-1], irreps), inv)
    np.testing.assert_allclose(
        probe.pooled(np.arange(10.0)[:, None], np.array([0, 4, 10])), [[1.5], [6.5]]
    )
    features = rng.normal(size=(300, 4))
    targets = np.stack([features @ [1.0, -2.0, 0.5, 0.0] + 3.0, features[:, 0] * 2.0], axis=1)
    split = np.repeat([0, 1, 2], 100)
    r = probe.probe(features, targets, split)
    assert r["alpha"] == probe.ALPHAS[0] and r["test"].max() < 0.05
    noise = rng.normal(size=(300, 2))
    r = probe.probe(features, noise, split)
    assert r["test"].min() > 0.6  # nothing to find: about the noise's own MAE (0.8)
