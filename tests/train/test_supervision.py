"""Mixed supervision: invariant losses against numpy/pymatgen in float64, mixed batches, the
leakage rules, and ``crystensor train -d tensors.h5 -d labels.h5:W`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.analysis.elasticity import ElasticTensor
from typer.testing import CliRunner

from crystensor.cli.app import app
from crystensor.data.consistency import PRINCIPAL_VALUES
from crystensor.data.dataset import GraphDataset
from crystensor.data.featurize import featurize
from crystensor.data.records import Record, write_records
from crystensor.data.store import GraphStore
from crystensor.errors import InputError
from crystensor.tensors.kinds import get_kind
from crystensor.train import run, supervision
from crystensor.train.config import TrainConfig
from crystensor.train.losses import Normalization, loss_function
from tests.helpers import random_orthogonal
from tests.train.conftest import (
    FAST,
    MANY_SPECIES,
    SPECIES,
    Interrupt,
    _structure,
    _target,
    build_store,
)

runner = CliRunner()


def _random_stiffness(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 3, 3, 3, 3)`` positive definite stiffness tensors (GPa)."""
    kind = get_kind("elastic")
    out = []
    for _ in range(n):
        a = rng.standard_normal((6, 6))
        voigt = 30.0 * a @ a.T / 6 + 40.0 * np.eye(6)
        out.append(kind.from_voigt(voigt))
    return np.array(out)


def _rotate4(c: np.ndarray, r: np.ndarray) -> np.ndarray:
    return np.einsum("ia,jb,kc,ld,...abcd->...ijkl", r, r, r, r, c)


def test_hill_moduli_match_pymatgen_and_ignore_rotations(rng):
    c = _random_stiffness(rng, 6)
    k, g, ok = supervision.hill_moduli(torch.tensor(c))
    assert ok.all()
    for i in range(len(c)):
        ref = ElasticTensor(c[i])
        assert k[i].item() == pytest.approx(ref.k_vrh, rel=1e-12)
        assert g[i].item() == pytest.approx(ref.g_vrh, rel=1e-12)
    r = random_orthogonal(rng, proper=False)  # a reflection too
    k2, g2, _ = supervision.hill_moduli(torch.tensor(_rotate4(c, r)))
    np.testing.assert_allclose(k2.numpy(), k.numpy(), rtol=1e-12)
    np.testing.assert_allclose(g2.numpy(), g.numpy(), rtol=1e-12)


def test_hill_moduli_fall_back_to_voigt_where_not_positive_definite(rng):
    """A non-positive-definite (or singular) stiffness has no Reuss bound: the Voigt bound
    comes back, with finite gradients for every structure of the batch."""
    c = torch.tensor(_random_stiffness(rng, 3))
    c[0] = -c[0]
    c[1] = 0.0
    c.requires_grad_(True)
    k, g, ok = supervision.hill_moduli(c)
    assert ok.tolist() == [False, False, True]
    ref = ElasticTensor(c[0].detach().numpy())
    assert k[0].item() == pytest.approx(ref.k_voigt, rel=1e-12)
    assert g[0].item() == pytest.approx(ref.g_voigt, rel=1e-12)
    (k.sum() + g.sum()).backward()
    assert torch.isfinite(c.grad).all()


def test_principal_values_are_sorted_eigenvalues_and_invariant(rng):
    a = rng.standard_normal((5, 3, 3))
    eps = a @ a.transpose(0, 2, 1) + np.eye(3)
    values = supervision.principal_values(torch.tensor(eps)).numpy()
    np.testing.assert_allclose(values, np.linalg.eigvalsh(eps), rtol=1e-12)
    r = random_orthogonal(rng, proper=False)
    turned = np.einsum("ia,jb,nab->nij", r, r, eps)
    np.testing.assert_allclose(
        supervision.principal_values(torch.tensor(turned)).numpy(), values, rtol=1e-10
    )
    # degenerate eigenvalues (a cubic tensor) still give a finite gradient
    cubic = torch.tensor(3.0 * np.eye(3)[None], requires_grad=True)
    supervision.principal_values(cubic).sum().backward()
    assert torch.isfinite(cubic.grad).all()


def build_principal_store(path: Path, n: int, seed: int, species=SPECIES) -> Path:
    """A principal-value store (dielectric) of ``n`` tiny cells: the sorted eigenvalues of the
    cells' dielectric targets, without their frame."""
    rng = np.random.default_rng(seed)
    records = []
    for k in range(n):
        s = _structure(rng, species)
        values = np.linalg.eigvalsh(np.asarray(_target(s, "dielectric")))
        records.append(
            Record(
                id=f"pv-{seed}-{k}",
                formula=s.composition.reduced_formula,
                structure=s.as_dict(),
                target="dielectric",
                value=values.tolist(),
                units="",
                source={"dataset": "tests", "citation": "", "file": ""},
                meta={"label": PRINCIPAL_VALUES},
            )
        )
    write_records(path.with_suffix(".jsonl"), records)
    featurize(path.with_suffix(".jsonl"), "dielectric", path, cutoff=4.0)
    return path


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mixed")
    return {
        "dielectric": build_store(root / "dielectric.h5", "dielectric", 40),
        "principal": build_principal_store(root / "pv.h5", 40, 1, MANY_SPECIES),
        "band-gap": build_store(root / "band-gap.h5", "band-gap", 12),
        "elastic": build_store(root / "elastic.h5", "elastic", 24),
        "bulk": build_store(root / "bulk.h5", "bulk-modulus", 80, seed=5, species=MANY_SPECIES),
    }


def test_label_sets_leave_out_duplicates_of_held_out_materials(stores):
    primary = GraphStore(stores["dielectric"])
    (labels,) = supervision.label_sets(primary, [(GraphStore(stores["principal"]), 0.5)])
    assert labels.invariant.name == "principal_values" and labels.weight == 0.5
    split = primary.read("split")
    formulas = np.array([str(f) for f in primary.read("formula")])
    held_out = set(formulas[split > 0])
    trained = set(formulas[split == 0])
    pv_formulas = np.array([str(f) for f in GraphStore(stores["principal"]).read("formula")])
    assert labels.excluded > 0  # the test's element pairs overlap the primary's
    assert not set(pv_formulas[labels.train]) & held_out
    assert not set(pv_formulas[labels.test]) & trained
    assert len(labels.train) > 0 and len(labels.test) > 0


def test_a_mixed_batch_costs_what_the_module_says(stores):
    primary = GraphStore(stores["dielectric"])
    label_store = GraphStore(stores["principal"])
    (labels,) = supervision.label_sets(primary, [(label_store, 0.5)])
    kind = get_kind("dielectric")
    base = GraphDataset(primary, dtype=torch.float64).subset("train")
    mixed = supervision.MixedDataset(
        base,
        [labels],
        [GraphDataset(label_store, indices=labels.train, dtype=torch.float64)],
    )
    from torch_geometric.loader import DataLoader

    batch = next(iter(DataLoader(mixed, batch_size=len(mixed), shuffle=False)))
    assert set(batch.sup.tolist()) == {0, 1}
    norm = Normalization((1.0, 2.0), (0.0, 0.0), 1.5)
    tensor_loss = loss_function("cartesian", norm, kind, "mse", per_structure=True)
    loss = supervision.mixed_loss(tensor_loss, [labels], "mse")
    rng = np.random.default_rng(3)
    a = rng.standard_normal((batch.num_graphs, 3, 3))
    pred = torch.tensor(a @ a.transpose(0, 2, 1) + 2 * np.eye(3), requires_grad=True)
    value = loss({"cartesian": pred}, batch)

    by_hand = []
    for i in range(batch.num_graphs):
        if batch.sup[i] == 0:
            err = (pred[i] - batch.y_cartesian[i]).detach().numpy() / 1.5
            by_hand.append(np.mean(err**2))
        else:
            eig = np.linalg.eigvalsh(pred[i].detach().numpy())
            err = (eig - batch.inv[i].numpy()) / labels.scale
            by_hand.append(0.5 * np.mean(err**2))
    assert value.item() == pytest.approx(np.mean(by_hand), rel=1e-10)
    value.backward()
    assert torch.isfinite(pred.grad).all()
    # a batch of the primary store alone (validation) costs the tensor loss
    plain = next(iter(DataLoader(base, batch_size=4)))
    out = {"cartesian": pred[:4].detach()}
    assert loss(out, plain).item() == pytest.approx(tensor_loss(out, plain).mean().item())


def test_train_with_a_principal_value_store(stores, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "-d",
            str(stores["dielectric"]),
            "-d",
            f"{stores['principal']}:0.5",
            "-o",
            str(out),
            "--epochs",
            "1",
            "--preset",
            "small",
            "--batch-size",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "principal values: MAE" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    (labels,) = metrics["label_sets"]
    assert labels["label"] == "principal_values" and labels["weight"] == 0.5
    assert labels["n_test"] > 0 and np.isfinite(labels["mae"])
    assert metrics["counts"]["train"] < labels["n_train"] + metrics["counts"]["train"]
    plan = json.loads((out / "run.json").read_text())
    assert plan["stages"][-1]["labels"][0]["weight"] == 0.5
    # evaluate scores full tensors and says so for principal values, store or records
    for data in (stores["principal"], stores["principal"].with_suffix(".jsonl")):
        refused = runner.invoke(app, ["evaluate", str(out / "best.pt"), str(data)])
        assert refused.exit_code == 2 and "principal values without a frame" in refused.output


def test_train_elastic_with_moduli_resumes_with_its_labels(stores, tmp_path):
    """An interrupted mixed run continues with its label store, on the family split."""
    config = TrainConfig(epochs=2, **FAST)
    with pytest.raises(KeyboardInterrupt):
        run.train(
            stores["elastic"],
            tmp_path / "run",
            preset_name="small",
            config=config,
            labels=[(stores["bulk"], 0.3)],
            split="family",
            reporter=Interrupt(after=1),
        )
    result = run.resume(tmp_path / "run")
    assert [h["epoch"] for h in result.final.history] == [1, 2]
    (labels,) = result.final.metrics["label_sets"]
    assert labels["label"] == "bulk_modulus" and labels["weight"] == 0.3
    assert np.isfinite(labels["mae"])
    assert labels["excluded_train"] >= 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["principal", "dielectric"], "give a store of full tensors first"),
        (["dielectric", "band-gap"], "supervises nothing"),
        (["elastic", "principal"], "supervises nothing"),
        (["dielectric", "dielectric"], "given twice"),
    ],
)
def test_train_refuses_label_stores_that_do_not_fit(stores, tmp_path, data, message):
    args = [x for name in data for x in ("-d", str(stores[name]))]
    result = runner.invoke(app, ["train", *args, "-o", str(tmp_path / "run"), "--epochs", "1"])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "run").exists()


def test_store_weights_parse_and_are_checked(tmp_path):
    assert supervision.parse_store_weight("a.h5") == ("a.h5", 1.0)
    assert supervision.parse_store_weight("a.h5:0.3") == ("a.h5", 0.3)
    odd = tmp_path / "b.h5:2"
    odd.write_text("")
    assert supervision.parse_store_weight(str(odd)) == (str(odd), 1.0)
    for bad in ("a.h5:0", "a.h5:-1", "a.h5:nan"):
        with pytest.raises(InputError, match="positive number"):
            supervision.parse_store_weight(bad)


def test_label_share_sampler_takes_all_tensors_and_a_fresh_share_of_labels(stores):
    primary = GraphStore(stores["dielectric"])
    label_store = GraphStore(stores["principal"])
    (labels,) = supervision.label_sets(primary, [(label_store, 0.5)])
    base = GraphDataset(primary).subset("train")
    mixed = supervision.MixedDataset(
        base, [labels], [GraphDataset(label_store, indices=labels.train)]
    )
    n_primary, n_labels = len(base), len(labels.train)
    take = max(1, round(0.3 * n_labels))
    sampler = supervision.LabelShareSampler(mixed, 0.3, num_replicas=1, rank=0, seed=7)
    draws = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler) == n_primary + take
        assert sorted(i for i in order if i < n_primary) == list(range(n_primary))
        drawn = sorted(i for i in order if i >= n_primary)
        assert len(set(drawn)) == take and all(i < len(mixed) for i in drawn)
        draws.append(drawn)
    assert draws[0] != draws[1]  # a fresh share each epoch
    sampler.set_epoch(0)
    assert sorted(i for i in sampler if i >= n_primary) == draws[0]  # and repeatable
    # two ranks split one epoch's draw between them, equally long
    ranks = [
        supervision.LabelShareSampler(mixed, 0.3, num_replicas=2, rank=r, seed=7) for r in (0, 1)
    ]
    parts = [list(s) for s in ranks]
    assert len(parts[0]) == len(parts[1]) == len(ranks[0])
    assert set(parts[0]) | set(parts[1]) == set(range(n_primary)) | set(draws[0])


def test_train_with_a_share_of_the_labels_and_refuses_it_without_labels(stores, tmp_path):
    out = tmp_path / "run"
    args = ["train", "-d", str(stores["dielectric"]), "-o", str(out), "--epochs", "1"]
    refused = runner.invoke(app, [*args, "--label-share", "0.5"])
    assert refused.exit_code == 2 and "--label-share draws from label stores" in refused.output
    assert not out.exists()
    result = runner.invoke(
        app,
        [
            *args,
            "-d",
            f"{stores['principal']}:0.5",
            "--label-share",
            "0.25",
            "--preset",
            "small",
            "--batch-size",
            "8",
        ],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads((out / "run.json").read_text())
    assert plan["stages"][-1]["train"]["label_share"] == 0.25  # a resumed run keeps it
