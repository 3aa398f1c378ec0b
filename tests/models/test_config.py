"""Model configs: presets, validation, dict round trip, registry."""

from __future__ import annotations

import dataclasses

import pytest

from crystensor.models import (
    ARCHITECTURES,
    CONFIG_CLASSES,
    PRESETS,
    SEGNNConfig,
    SETransformerConfig,
    build_model,
    config_from_dict,
    preset,
)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build(arch, name):
    config = preset(arch, name, num_node_features=12, target="piezoelectric")
    assert isinstance(config, CONFIG_CLASSES[arch]) and config.arch == arch
    model = build_model(config)
    assert type(model) is ARCHITECTURES[arch]
    assert model.backbone.irreps_in.dim == 12
    assert str(model.head.irreps_out) == "1x1o+1x1o+1x2o+1x3o"


def test_dict_round_trip_and_frozen():
    config = preset("setransformer", "small", num_node_features=5, num_heads=4, channels=8)
    assert config_from_dict(config.to_dict()) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.channels = 3  # type: ignore[misc]
    assert config.replace(channels=4).channels == 4


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(pooling="sum"), "pooling"),
        (dict(target="hardness"), "unknown target"),
        (dict(lmax=3, lmax_out=2), "lmax <= lmax_out"),
        (dict(num_self_interactions=0), "lifts"),
        (dict(channels=6, num_heads=4), "num_heads"),
        (dict(cutoff=0.0), "cutoff"),
    ],
)
def test_invalid_values_raise(changes, message):
    with pytest.raises(ValueError, match=message):
        preset("setransformer", "small", num_node_features=5, **changes)


def test_preset_errors():
    with pytest.raises(ValueError, match="unknown architecture"):
        preset("mace", num_node_features=4)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("segnn", "huge", num_node_features=4)
    with pytest.raises(ValueError, match="num_node_features"):
        preset("segnn", "small")
    with pytest.raises(ValueError, match="no field"):
        preset("segnn", "small", num_node_features=4, num_heads=2)
    with pytest.raises(ValueError, match="does not match"):
        SEGNNConfig(arch="seconv", num_node_features=4)
    with pytest.raises(ValueError, match="needs a SETransformerConfig"):
        ARCHITECTURES["setransformer"](SEGNNConfig(num_node_features=4))
    assert SETransformerConfig(num_node_features=4).num_heads == 2
