"""Training stages, checkpoints, resuming, pretraining and fine-tuning on tiny stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crystensor.checkpoint import load_checkpoint
from crystensor.data.dataset import GraphDataset
from crystensor.data.store import GraphStore, make_split
from crystensor.errors import InputError
from crystensor.tensors.kinds import get_kind
from crystensor.train import distributed, run
from crystensor.train.config import TrainConfig
from crystensor.train.loop import evaluate
from crystensor.train.losses import loss_function, target_normalization
from tests.train.conftest import FAST, MANY_SPECIES, Interrupt, build_store, train_tiny

pytestmark = pytest.mark.slow

CPU = distributed.DistInfo(0, 1, 0, torch.device("cpu"))


def test_a_run_writes_its_files_and_best_pt_reproduces_its_metrics(tiny_stores, tmp_path):
    result = train_tiny(tiny_stores["elastic"], tmp_path / "run", epochs=3)
    out = tmp_path / "run"
    for name in ("run.json", "best.pt", "last.pt", "metrics.json", "history.json", "train.log"):
        assert (out / name).is_file(), name
    for name in ("heatmap.png", "learning_curves.png", "parity.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result.final.metrics))
    assert metrics["counts"] == {"train": 28, "val": 6, "test": 6}
    assert np.shape(metrics["test"]["component_mae"]) == (6, 6)
    assert set(metrics["test"]["ewt"]) == {"25", "10", "5"}
    assert set(metrics["test"]["per_crystal_system"]) <= {
        "cubic",
        "tetragonal",
        "orthorhombic",
        "triclinic",
    }
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert metrics["best_epoch"] == 1 + int(np.argmin([h["val_mae"] for h in history]))
    assert "epoch 3/3" in (out / "train.log").read_text()

    best = load_checkpoint(out / "best.pt")
    assert best.target == "elastic" and best.featurization["cutoff"] == 4.0
    assert sorted(best.split) == ["test", "train", "val"] and len(best.split["train"]) == 28
    assert best.versions["crystensor"] and best.metrics["test"]["mae"] == metrics["test"]["mae"]
    assert (
        "optimizer" not in best.training
        and "optimizer" in load_checkpoint(out / "last.pt").training
    )
    model = best.build_model()
    store = GraphStore(tiny_stores["elastic"])
    again = evaluate(model, GraphDataset(store).subset("test"), info=CPU)
    diff = np.abs(again["pred"] - again["true"])
    voigt = get_kind("elastic").to_voigt
    mae = np.mean(
        [np.abs(voigt(p) - voigt(t)) for p, t in zip(again["pred"], again["true"], strict=True)]
    )
    assert diff.max() > 0
    assert mae == pytest.approx(metrics["test"]["mae"], rel=1e-6)


def test_learning_reduces_the_loss(tiny_stores, tmp_path):
    result = train_tiny(
        tiny_stores["dielectric"], tmp_path / "run", epochs=25, lr=1e-2, batch_size=4
    )
    history = result.final.history
    assert history[-1]["train_loss"] < 0.3 * history[0]["train_loss"]
    assert min(h["val_mae"] for h in history) < 0.5 * history[0]["val_mae"]


def test_an_interrupted_run_resumes_exactly(tiny_stores, tmp_path):
    straight = train_tiny(tiny_stores["piezoelectric"], tmp_path / "a", epochs=4, arch="seconv")
    with pytest.raises(KeyboardInterrupt):
        run.train(
            tiny_stores["piezoelectric"],
            tmp_path / "b",
            arch="seconv",
            preset_name="small",
            config=TrainConfig(epochs=4, **FAST),
            reporter=Interrupt(after=2),
        )
    assert not (tmp_path / "b" / "metrics.json").exists()
    resumed = run.resume(tmp_path / "b")
    assert [h["epoch"] for h in resumed.final.history] == [1, 2, 3, 4]
    for a, b in zip(straight.final.history, resumed.final.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_mae"] == pytest.approx(b["val_mae"], rel=1e-6)
    wa = load_checkpoint(tmp_path / "a" / "last.pt").state_dict
    wb = load_checkpoint(tmp_path / "b" / "last.pt").state_dict
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-6, atol=1e-7)
    # a finished run resumes to the same result without training again
    again = run.resume(tmp_path / "b")
    assert again.final.metrics == resumed.final.metrics


def test_scalar_pretraining_then_tensor_training(tiny_stores, tmp_path):
    config = TrainConfig(epochs=2, **FAST)
    result = run.train(
        tiny_stores["elastic"],
        tmp_path / "run",
        arch="setransformer",
        preset_name="small",
        config=config,
        pretrain="bandgap",
        pretrain_data=tiny_stores["band-gap"],
        pretrain_config=config.replace(epochs=1),
    )
    assert [s.metrics["target"] for s in result.stages] == ["band-gap", "elastic"]
    assert len(result.stages[0].history) == 1
    pre = load_checkpoint(tmp_path / "run" / "pretrain" / "best.pt")
    final = load_checkpoint(tmp_path / "run" / "best.pt")
    assert pre.target == "band-gap" and final.target == "elastic"
    assert final.meta["parent"].endswith("pretrain/best.pt")
    assert "rmse" in pre.metrics["test"] and "ewt" in final.metrics["test"]


def test_pretraining_from_a_checkpoint_and_finetuning(tiny_stores, tmp_path):
    train_tiny(tiny_stores["band-gap"], tmp_path / "scalar", epochs=1)
    ckpt = tmp_path / "scalar" / "best.pt"
    result = run.train(
        tiny_stores["dielectric"],
        tmp_path / "tensor",
        config=TrainConfig(epochs=1, **FAST),
        pretrain=str(ckpt),
    )
    assert result.final.metrics["target"] == "dielectric"
    source = load_checkpoint(ckpt).state_dict

    # fine-tune the dielectric model on elastic with the interactions frozen
    tuned = run.finetune(
        tmp_path / "tensor" / "best.pt",
        tiny_stores["elastic"],
        tmp_path / "tuned",
        config=TrainConfig(epochs=2, freeze="interactions", backbone_lr=1e-3, **FAST),
    )
    assert tuned.final.metrics["target"] == "elastic"
    before = load_checkpoint(tmp_path / "tensor" / "best.pt").state_dict
    after = load_checkpoint(tmp_path / "tuned" / "last.pt")
    frozen = [k for k in before if k.startswith(("backbone.embedding.", "backbone.interactions."))]
    moved = [k for k in before if k.startswith("backbone.self_interactions.")]
    assert frozen and moved
    for key in frozen:
        torch.testing.assert_close(after.state_dict[key], before[key], rtol=0, atol=0)
    assert any(not torch.equal(after.state_dict[k], before[k]) for k in moved)
    groups = after.training["optimizer"]["param_groups"]
    assert groups[0]["initial_lr"] == 1e-3 and len(groups) == 2
    assert set(source) >= {k for k in before if k.startswith("backbone.")}


def test_finetuning_on_the_same_target_keeps_the_head(tiny_stores, tmp_path):
    train_tiny(tiny_stores["dielectric"], tmp_path / "a", epochs=1)
    ckpt = load_checkpoint(tmp_path / "a" / "best.pt")
    model = run._transfer(tmp_path / "a" / "best.pt", GraphStore(tiny_stores["dielectric"]), "t")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, ckpt.state_dict[key], rtol=0, atol=0)


def test_cartesian_loss_and_early_stopping(tiny_stores, tmp_path):
    result = train_tiny(
        tiny_stores["dielectric"],
        tmp_path / "run",
        epochs=5,
        loss="cartesian",
        lr=1e-30,
        min_lr=0.0,
        patience=1,
        schedule="constant",
    )
    assert result.final.stopped_early and len(result.final.history) == 2


def test_the_normalised_loss_is_zero_at_the_target_and_one_at_the_mean():
    kind = get_kind("elastic")
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, kind.dim)) * np.repeat(
        [3.0, 1.0, 2.0, 0.5, 4.0], [p.dim for p in kind.parts]
    )
    y[:, 0] += 100.0
    from crystensor.tensors.harmonic import from_irreps

    cart = from_irreps(y, kind)
    norm = target_normalization(y, cart, kind)
    assert norm.shift[0] == pytest.approx(y[:, 0].mean()) and norm.shift[2] == 0.0
    assert norm.scale[4] == pytest.approx(np.sqrt(np.mean(y[:, -9:] ** 2)))

    class Batch:
        pass

    batch = Batch()
    batch.y, batch.y_cartesian = torch.tensor(y), torch.tensor(cart)
    for space in ("irreps", "cartesian"):
        for function in ("mse", "huber", "l1"):
            loss = loss_function(space, norm, kind, function)
            exact = {"irreps": batch.y, "cartesian": batch.y_cartesian}
            assert float(loss(exact, batch)) == 0.0
    # an error of 3 normalised units in every component: 9 (mse), 2.5 (huber), 3 (l1)
    off = {"irreps": batch.y + 3.0 * torch.tensor(norm.component_scale(kind))}
    for function, value in (("mse", 9.0), ("huber", 2.5), ("l1", 3.0)):
        loss = loss_function("irreps", norm, kind, function)
        assert float(loss(off, batch)) == pytest.approx(value, rel=1e-9)
    mean = torch.zeros_like(batch.y)
    mean[:, 0], mean[:, 1] = norm.shift[0], norm.shift[1]
    loss = loss_function("irreps", norm, kind)
    assert float(loss({"irreps": mean}, batch)) == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("space", ["irreps", "cartesian"])
@pytest.mark.parametrize("function", ["mse", "huber", "l1"])
def test_the_sign_agnostic_loss_ignores_each_structures_sign(space, function):
    from crystensor.tensors.harmonic import from_irreps

    kind = get_kind("piezoelectric")
    rng = np.random.default_rng(1)
    y = rng.normal(size=(8, kind.dim))
    norm = target_normalization(y, from_irreps(y, kind), kind)

    class Batch:
        def __init__(self, irreps):
            self.y = torch.tensor(irreps)
            self.y_cartesian = torch.tensor(from_irreps(irreps, kind))

    pred = y + 0.3 * rng.normal(size=y.shape)
    out = {"irreps": torch.tensor(pred), "cartesian": torch.tensor(from_irreps(pred, kind))}
    flip = np.array([1, -1, -1, 1, 1, -1, 1, -1.0])[:, None]
    signed = loss_function(space, norm, kind, function)
    free = loss_function(space, norm, kind, function, sign_agnostic=True)
    assert float(free(out, Batch(y))) == pytest.approx(float(signed(out, Batch(y))), rel=1e-12)
    assert float(free(out, Batch(y * flip))) == pytest.approx(float(free(out, Batch(y))))
    assert float(signed(out, Batch(y * flip))) > 2 * float(signed(out, Batch(y)))
    with pytest.raises(InputError, match="odd-rank"):
        loss_function(space, norm, get_kind("elastic"), function, sign_agnostic=True)


def test_a_sign_agnostic_run_stops_on_the_sign_agnostic_validation_mae(tiny_stores, tmp_path):
    result = train_tiny(
        tiny_stores["piezoelectric"], tmp_path / "run", epochs=2, sign_agnostic=True
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    free, signed = metrics["val"]["sign_agnostic"], metrics["val"]
    assert free["frobenius_mae"] <= signed["frobenius_mae"]  # each sign chosen by Frobenius
    best = min(h["val_mae"] for h in result.final.history)
    assert best == pytest.approx(metrics["val"]["sign_agnostic"]["mae"], rel=1e-5)
    with pytest.raises(InputError, match="odd-rank"):
        train_tiny(tiny_stores["elastic"], tmp_path / "el", epochs=1, sign_agnostic=True)


def test_bad_runs_are_refused_with_a_clear_message(tiny_stores, tmp_path):
    train_tiny(tiny_stores["dielectric"], tmp_path / "run", epochs=1)
    with pytest.raises(InputError, match=r"already holds a run.*--resume"):
        train_tiny(tiny_stores["dielectric"], tmp_path / "run", epochs=1)
    with pytest.raises(InputError, match="holds no run"):
        run.resume(tmp_path / "nothing")
    with pytest.raises(InputError, match="needs --pretrain-data"):
        run.train(tiny_stores["elastic"], tmp_path / "x", pretrain="bandgap")
    with pytest.raises(InputError, match="needs a band-gap store"):
        run.train(
            tiny_stores["elastic"],
            tmp_path / "x",
            pretrain="bandgap",
            pretrain_data=tiny_stores["dielectric"],
        )
    with pytest.raises(InputError, match=r"neither .* nor an existing checkpoint"):
        run.train(tiny_stores["elastic"], tmp_path / "x", pretrain="nonsense")
    with pytest.raises(InputError, match="does not exist"):
        run.train(tmp_path / "missing.h5", tmp_path / "x")
    other = build_store(tmp_path / "wide.h5", "elastic", 12)
    assert GraphStore(other).cutoff == 4.0  # same cutoff: accepted by check_featurization
    with pytest.raises(InputError, match="not a readable checkpoint"):
        (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
        run.finetune(tmp_path / "junk.pt", tiny_stores["elastic"], tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    with pytest.raises(InputError, match="--epochs must be >= 1"):
        TrainConfig(epochs=0)


def _one_epoch(stores: dict, tmp_path, target: str, **overrides):
    """The best checkpoint of one epoch of the small preset on ``stores[target]``."""
    result = run.train(
        stores[target],
        tmp_path / f"{target}-{overrides}",
        preset_name="small",
        model_overrides=overrides,
        config=TrainConfig(epochs=1, **FAST),
    )
    return load_checkpoint(result.final.best_checkpoint)


def test_pool_norm_is_calibrated_and_on_by_default_for_piezoelectric_targets_only(
    tiny_stores, tmp_path
):
    def weights(target: str, **overrides) -> dict:
        return _one_epoch(tiny_stores, tmp_path, target, **overrides).state_dict

    gain = weights("piezoelectric")["backbone.pool_gain"]
    assert gain.min() > 1.0  # the small preset's pooled channels are all well below unit size
    assert "backbone.pool_gain" not in weights("piezoelectric", pool_norm=False)
    assert "backbone.pool_gain" not in weights("dielectric")
    assert "backbone.pool_gain" in weights("dielectric", pool_norm=True)


def test_density_pooling_is_the_default_for_native_elastic_and_piezo_networks_only(
    tiny_stores, tmp_path
):
    def pooling(target: str, **overrides) -> str:
        return _one_epoch(tiny_stores, tmp_path, target, **overrides).config["pooling"]

    assert pooling("elastic") == "density"
    assert pooling("elastic", pooling="mean") == "mean"  # given settings win
    assert pooling("dielectric") == "mean"
    assert pooling("piezoelectric") == "density"
    assert run.default_model_overrides(get_kind("scalar"))["pooling"] == "mean"
    # a pretrained backbone's head: density pooling did not help it (RESULTS.md, issue 12)
    for name in ("elastic", "piezoelectric"):
        assert run.default_model_overrides(get_kind(name), "sevennet-0")["pooling"] == "mean"


def test_a_transferred_backbone_gets_calibrated_gains_for_a_new_piezoelectric_head(
    tiny_stores, tmp_path
):
    train_tiny(tiny_stores["dielectric"], tmp_path / "di", epochs=1)  # no gains (even target)
    source = load_checkpoint(tmp_path / "di" / "best.pt")
    assert "backbone.pool_gain" not in source.state_dict and not source.config["pool_norm"]
    model = run._transfer(
        tmp_path / "di" / "best.pt", GraphStore(tiny_stores["piezoelectric"]), "t"
    )
    assert model.config.pool_norm and torch.equal(
        model.backbone.pool_gain, torch.ones_like(model.backbone.pool_gain)
    )
    for key, value in source.state_dict.items():  # the backbone itself is unchanged
        if key.startswith("backbone."):
            torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)

    tuned = run.finetune(
        tmp_path / "di" / "best.pt",
        tiny_stores["piezoelectric"],
        tmp_path / "pz",
        config=TrainConfig(epochs=1, **FAST),
    )
    ckpt = load_checkpoint(tuned.final.best_checkpoint)
    assert ckpt.config["pool_norm"] and ckpt.state_dict["backbone.pool_gain"].min() > 1.0
    rebuilt = ckpt.build_model()  # the checkpoint rebuilds with its gains
    torch.testing.assert_close(rebuilt.backbone.pool_gain, ckpt.state_dict["backbone.pool_gain"])

    # calibrated gains travel on unchanged; an even head gets none
    again = run._transfer(tuned.final.best_checkpoint, GraphStore(tiny_stores["elastic"]), "t")
    torch.testing.assert_close(again.backbone.pool_gain, ckpt.state_dict["backbone.pool_gain"])
    even = run._transfer(tmp_path / "di" / "best.pt", GraphStore(tiny_stores["elastic"]), "t")
    assert not even.backbone.pool_norm and not even.config.pool_norm


# -- the family split --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def family_store(tmp_path_factory):
    """48 dielectric cells of 16 chemical systems, saved with a random split (which mixes them)."""
    return build_store(
        tmp_path_factory.mktemp("family") / "d.h5", "dielectric", 48, species=MANY_SPECIES
    )


def _systems(store: GraphStore, ids: list[str]) -> set[str]:
    system_of = dict(zip(store.ids, store.chemical_systems, strict=True))
    return {system_of[i] for i in ids}


def test_a_family_split_run_keeps_chemical_systems_apart_and_resumes_with_it(
    family_store, tmp_path
):
    store = GraphStore(family_store)
    train_ids = [store.ids[i] for i in store.split_indices("train")]
    test_ids = [store.ids[i] for i in store.split_indices("test")]
    assert _systems(store, train_ids) & _systems(store, test_ids)  # the store's split mixes them

    with pytest.raises(KeyboardInterrupt):
        run.train(
            family_store,
            tmp_path / "run",
            preset_name="small",
            config=TrainConfig(epochs=2, **FAST),
            split="family",
            split_seed=1,
            reporter=Interrupt(after=1),
        )
    plan = json.loads((tmp_path / "run" / "run.json").read_text())
    assert plan["stages"][-1]["split"] == {"method": "family", "seed": 1}
    resumed = run.resume(tmp_path / "run")  # a new process would open the store afresh

    codes = make_split(store.ids, 1, method="family", systems=store.chemical_systems)
    expected = {
        name: [i for i, c in zip(store.ids, codes, strict=True) if c == k]
        for k, name in enumerate(("train", "val", "test"))
    }
    for name in ("last.pt", "best.pt"):
        checkpoint = load_checkpoint(tmp_path / "run" / name)
        assert checkpoint.split == expected, name
        assert checkpoint.meta["split"] == {
            "method": "family",
            "seed": 1,
            "fractions": [0.7, 0.15, 0.15],
            "source": "recomputed",
        }
    systems = {name: _systems(store, ids) for name, ids in expected.items()}
    assert systems["test"] and systems["val"]
    assert not systems["train"] & systems["test"]
    assert not systems["train"] & systems["val"] and not systems["val"] & systems["test"]
    assert resumed.final.metrics["counts"] == {k: len(v) for k, v in expected.items()}
    np.testing.assert_array_equal(GraphStore(family_store).read("split"), make_split(store.ids))


def test_the_split_options_are_checked_before_the_run_starts(family_store, tmp_path):
    config = TrainConfig(epochs=1, **FAST)
    with pytest.raises(InputError, match="--split must be one of store, random, family"):
        run.train(family_store, tmp_path / "a", config=config, split="element")
    with pytest.raises(InputError, match="--split-seed needs --split random or family"):
        run.train(family_store, tmp_path / "a", config=config, split_seed=3)
    assert not (tmp_path / "a").exists()
