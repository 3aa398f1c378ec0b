"""Training with a pretrained backbone: frozen features cached beside the store, the
backbone's identity in the checkpoint, the potential's cutoff, and fine-tuning in another
backbone mode."""

from __future__ import annotations

import json

import pytest
import torch

from crystensor.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from crystensor.data.feature_cache import cache_path
from crystensor.data.store import GraphStore
from crystensor.errors import InputError
from crystensor.train import run
from crystensor.train.config import TrainConfig
from tests.models.toy_potential import ToyPotential
from tests.train.conftest import Interrupt, train_tiny


def _train(store, out, mode="frozen"):
    """Two epochs of the small SEConv on the toy potential in backbone ``mode``."""
    model = {"backbone": "toy", "backbone_mode": mode}
    return train_tiny(store, out, arch="seconv", model=model, lr=1e-3)


@pytest.mark.slow
def test_frozen_backbone_trains_from_a_cache_beside_the_store(tiny_stores, toy_backbone, tmp_path):
    store = tiny_stores["dielectric"]
    result = _train(store, tmp_path / "run")
    assert cache_path(store, "toy").is_file()
    ckpt = load_checkpoint(result.final.best_checkpoint)
    assert ckpt.featurization["backbone"]["name"] == "toy"
    assert ckpt.model_config.backbone == "toy"
    assert not any("embedding.pretrained" in k for k in ckpt.state_dict)
    model = ckpt.build_model()
    for metric in result.final.metrics["test"], result.final.metrics["val"]:
        assert torch.isfinite(torch.tensor(metric["mae"]))
    # the model rebuilt from the checkpoint computes the features itself: same predictions
    from crystensor.data.dataset import GraphDataset
    from crystensor.data.feature_cache import load_or_build
    from crystensor.train.distributed import DistInfo
    from crystensor.train.loop import evaluate

    info = DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    live = GraphDataset(store, split="test")
    cached = GraphDataset(
        store, split="test", node_fields={"backbone_x": load_or_build(store, "toy").features}
    )
    a = evaluate(model, live, info=info)["pred"]
    b = evaluate(model, cached, info=info)["pred"]
    torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-5, atol=1e-6)


def test_checkpoint_with_another_backbone_file_is_refused(tiny_stores, toy_backbone, tmp_path):
    result = _train(tiny_stores["dielectric"], tmp_path / "run")
    ckpt = load_checkpoint(result.final.best_checkpoint)
    ckpt.featurization["backbone"]["sha256"] = "f" * 64
    save_checkpoint(ckpt, tmp_path / "other.pt")
    with pytest.raises(InputError, match="installed one"):
        load_checkpoint(tmp_path / "other.pt").build_model()


@pytest.mark.slow
def test_fully_trained_backbone_is_saved_with_its_weights(tiny_stores, toy_backbone, tmp_path):
    result = _train(tiny_stores["elastic"], tmp_path / "run", mode="full")
    ckpt = load_checkpoint(result.final.best_checkpoint)
    potential = {k: v for k, v in ckpt.state_dict.items() if "embedding.pretrained" in k}
    assert potential
    untouched = ToyPotential().state_dict()
    moved = [
        k for k, v in potential.items() if not torch.equal(v, untouched[k.split("pretrained.")[1]])
    ]
    assert moved  # the potential's weights were trained


def test_store_with_a_shorter_cutoff_than_the_backbone_is_refused(tiny_stores, tmp_path):
    from crystensor.models.backbones import register_backbone

    class LongRanged(ToyPotential):
        cutoff = 6.0

    register_backbone("toy-6A", LongRanged, lambda: {"name": "toy-6A", "sha256": "1" * 64})
    config = TrainConfig(epochs=1, batch_size=8, seed=0)
    with pytest.raises(InputError, match="--cutoff 6"):
        run.train(
            tiny_stores["dielectric"],
            tmp_path / "run",
            arch="seconv",
            preset_name="small",
            config=config,
            model_overrides={"backbone": "toy-6A"},
        )


# --- finetune --backbone-mode: changing how the potential of a checkpoint is trained -------

POTENTIAL = run.POTENTIAL_PREFIX


def _finetune(ckpt, store, out, mode, reporter=None, **settings):
    config = TrainConfig(**{"epochs": 2, "batch_size": 8, "lr": 1e-3, "seed": 0, **settings})
    return run.finetune(ckpt, store, out, config=config, backbone_mode=mode, reporter=reporter)


def _potential(state):
    return {k.removeprefix(POTENTIAL): v for k, v in state.items() if k.startswith(POTENTIAL)}


@pytest.fixture(scope="module")
def trained(tiny_stores, toy_backbone, tmp_path_factory):
    """best.pt of a frozen and of a fully trained toy-backbone model (dielectric)."""
    root = tmp_path_factory.mktemp("backbone-runs")
    return {
        mode: _train(tiny_stores["dielectric"], root / mode, mode=mode).final.best_checkpoint
        for mode in ("frozen", "full")
    }


def test_a_frozen_checkpoint_gets_the_installed_potential_when_it_is_trained(
    tiny_stores, trained, tmp_path
):
    store = GraphStore(tiny_stores["dielectric"])
    source = load_checkpoint(trained["frozen"]).state_dict
    assert not _potential(source)
    for mode in ("partial", "full"):
        state = run._transfer(trained["frozen"], store, "t", mode).state_dict()
        fresh = ToyPotential().state_dict()
        assert _potential(state).keys() == fresh.keys()
        for key, value in _potential(state).items():
            torch.testing.assert_close(value, fresh[key], rtol=0, atol=0)
        assert state.keys() - source.keys() == {POTENTIAL + k for k in fresh}
        for key, value in source.items():
            torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    # only the potential's weights may be missing
    damaged = load_checkpoint(trained["frozen"])
    del damaged.state_dict[next(k for k in damaged.state_dict if k.startswith("head."))]
    save_checkpoint(damaged, tmp_path / "damaged.pt")
    with pytest.raises(InputError, match="does not fit the network its config builds"):
        run._transfer(tmp_path / "damaged.pt", store, "t", "full")


@pytest.mark.slow
def test_frozen_to_full_trains_the_potential_and_resumes_exactly(tiny_stores, trained, tmp_path):
    store = tiny_stores["dielectric"]
    straight = _finetune(trained["frozen"], store, tmp_path / "a", "full", backbone_lr=2e-4)
    last = load_checkpoint(tmp_path / "a" / "last.pt")
    assert last.model_config.backbone_mode == "full"
    assert last.featurization["backbone"]["name"] == "toy"
    untouched = ToyPotential().state_dict()
    potential = _potential(last.state_dict)
    assert potential.keys() == untouched.keys()
    assert all(not torch.equal(v, untouched[k]) for k, v in potential.items())
    groups = {g["name"]: g["initial_lr"] for g in last.training["optimizer"]["param_groups"]}
    assert groups == {"potential": 2e-4, "backbone": 2e-4, "head": 1e-3}

    with pytest.raises(KeyboardInterrupt):
        _finetune(trained["frozen"], store, tmp_path / "b", "full", Interrupt(1), backbone_lr=2e-4)
    plan = json.loads((tmp_path / "b" / "run.json").read_text())
    assert plan["stages"][0]["backbone_mode"] == "full"
    resumed = run.resume(tmp_path / "b")
    assert [h["epoch"] for h in resumed.final.history] == [1, 2]
    for a, b in zip(straight.final.history, resumed.final.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    wb = load_checkpoint(tmp_path / "b" / "last.pt").state_dict
    assert wb.keys() == last.state_dict.keys()
    for key, value in last.state_dict.items():
        torch.testing.assert_close(wb[key], value, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_full_to_partial_keeps_the_trained_potential(tiny_stores, trained, tmp_path):
    store = tiny_stores["dielectric"]
    source = load_checkpoint(trained["full"]).state_dict
    trained_species = source[POTENTIAL + "species"]
    assert not torch.equal(trained_species, ToyPotential().species.detach())
    model = run._transfer(trained["full"], GraphStore(store), "t", "partial")
    assert model.config.backbone_mode == "partial"
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, source[key], rtol=0, atol=0)

    _finetune(trained["full"], store, tmp_path / "tuned", "partial", epochs=1)
    last = load_checkpoint(tmp_path / "tuned" / "last.pt")
    assert last.model_config.backbone_mode == "partial"
    # partial trains the toy's last block only: its species table stays the trained one
    torch.testing.assert_close(last.state_dict[POTENTIAL + "species"], trained_species)
    assert not torch.equal(
        last.state_dict[POTENTIAL + "block.weight"], source[POTENTIAL + "block.weight"]
    )


def test_backbone_modes_that_do_not_apply_are_refused(tiny_stores, trained, tmp_path):
    from crystensor.models import build_model, preset

    store = tiny_stores["dielectric"]
    with pytest.raises(InputError, match="frozen would use the installed file's weights"):
        _finetune(trained["full"], store, tmp_path / "a", "frozen")
    with pytest.raises(InputError, match="--freeze embedding keeps the toy potential fixed"):
        _finetune(trained["frozen"], store, tmp_path / "a", "full", freeze="embedding")
    with pytest.raises(InputError, match="--backbone-mode must be one of frozen, partial, full"):
        _finetune(trained["frozen"], store, tmp_path / "a", "last")
    native = build_model(preset("seconv", "small", num_node_features=9, target="dielectric"))
    save_checkpoint(Checkpoint.from_model(native, {"cutoff": 4.0}), tmp_path / "native.pt")
    with pytest.raises(InputError, match="applies to a checkpoint trained with a pretrained"):
        _finetune(tmp_path / "native.pt", store, tmp_path / "a", "full")
    with pytest.raises(InputError, match="applies to a checkpoint trained with a pretrained"):
        run.train(store, tmp_path / "a", pretrain=str(tmp_path / "native.pt"), backbone_mode="full")
    with pytest.raises(InputError, match="started from a checkpoint file"):
        run.train(store, tmp_path / "a", backbone_mode="full")
    assert not (tmp_path / "a").exists()


@pytest.mark.slow
def test_pretraining_from_a_frozen_checkpoint_with_a_trained_potential(
    tiny_stores, trained, tmp_path
):
    run.train(
        tiny_stores["elastic"],
        tmp_path / "run",
        config=TrainConfig(epochs=1, batch_size=8, seed=0),
        pretrain=str(trained["frozen"]),
        backbone_mode="partial",
    )
    plan = json.loads((tmp_path / "run" / "run.json").read_text())
    assert plan["stages"][0]["backbone_mode"] == "partial"
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best.target == "elastic" and best.model_config.backbone_mode == "partial"
    assert _potential(best.state_dict)
