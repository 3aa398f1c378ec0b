"""Training with a pretrained backbone: frozen features cached beside the store, the
backbone's identity in the checkpoint, and the CLI options."""

from __future__ import annotations

import pytest
import torch

from crystensor.data.feature_cache import cache_path
from crystensor.errors import InputError
from crystensor.train import run
from crystensor.train.checkpoint import load_checkpoint, save_checkpoint
from crystensor.train.config import TrainConfig
from tests.models.toy_potential import ToyPotential


def _train(store, out, mode="frozen", **overrides):
    config = TrainConfig(epochs=2, batch_size=8, lr=1e-3, seed=0)
    return run.train(
        store,
        out,
        arch="seconv",
        preset_name="small",
        config=config,
        model_overrides={"backbone": "toy", "backbone_mode": mode, **overrides},
    )


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
