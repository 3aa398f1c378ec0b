"""The contract every architecture satisfies, run for every target kind and both poolings.

:class:`ModelContract` is the one reusable mixin: a test class per architecture sets ``arch``
and inherits every check. The ``model`` fixture parametrises each check over the targets
(dielectric, piezoelectric, elastic and a scalar head) and over mean and max pooling.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3

from crystensor.models import ARCHITECTURES, build_model
from crystensor.nn.readout import resolve_target
from tests.helpers import random_orthogonal, rotate
from tests.models.graphs import CUTOFF, batch_of, permuted, to_data, transformed

TARGETS = ["dielectric", "piezoelectric", "elastic", "band-gap"]
POOLINGS = ["mean", "max", "density"]
TOL = 1e-10


def predict(model, data) -> np.ndarray:
    """``(n_graphs, 3, ..., 3)`` Cartesian tensors, or ``(n_graphs,)`` scalars."""
    with torch.no_grad():
        out = model(data)
    return (out["cartesian"] if "cartesian" in out else out["scalar"]).numpy()


def assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=0, atol=TOL * scale)


class ModelContract:
    """Equivariance, invariances, batching and serialisation of one architecture."""

    arch: str

    @pytest.fixture(params=[(t, p) for p in POOLINGS for t in TARGETS], ids=lambda tp: "-".join(tp))
    def model(self, request, small_model):
        target, pooling = request.param
        return small_model(self.arch, target, pooling)

    def test_outputs(self, model, graphs):
        batch = batch_of(*graphs.values())
        with torch.no_grad():
            out = model(batch)
        kind = resolve_target(model.config.target)
        assert out["irreps"].shape == (len(graphs), kind.dim)
        if kind.rank:
            assert out["cartesian"].shape == (len(graphs), *kind.cartesian_shape)
            # the prediction is not trivially zero (which would make the checks below vacuous)
            assert np.abs(predict(model, graphs["triclinic"])).max() > 1e-6
        else:
            assert out["scalar"].shape == (len(graphs),)

    @pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
    def test_equivariance(self, model, graphs, rng, proper):
        kind = resolve_target(model.config.target)
        for name, data in graphs.items():
            rot = random_orthogonal(rng, proper=proper)
            before, after = predict(model, data)[0], predict(model, transformed(data, rot))[0]
            expected = rotate(before, rot) if kind.rank else before
            assert_close(after, expected)
            # the irreps transform with e3nn's D(R), parity included
            with torch.no_grad():
                y, y_rot = model(data)["irreps"], model(transformed(data, rot))["irreps"]
            d = o3.Irreps(kind.irreps).D_from_matrix(torch.tensor(rot))
            assert_close(y_rot.numpy(), (y @ d.T).numpy()), name

    def test_inversion(self, model, graphs):
        """Odd tensors (piezoelectric) flip sign under inversion, even ones do not."""
        kind = resolve_target(model.config.target)
        data = graphs["triclinic"]
        before, after = predict(model, data), predict(model, transformed(data, -np.eye(3)))
        assert_close(after, (-1) ** kind.rank * before)

    def test_translation_invariance(self, model, graphs):
        for data in graphs.values():
            assert_close(
                predict(model, transformed(data, shift=[0.7, -2.3, 11.0])), predict(model, data)
            )

    def test_permutation_invariance(self, model, graphs, rng):
        for data in graphs.values():
            perm = rng.permutation(data.num_nodes)
            assert_close(predict(model, permuted(data, perm)), predict(model, data))

    def test_supercell_invariance(self, model, structures):
        for structure in structures.values():
            supercell = structure.copy()
            supercell.make_supercell([2, 1, 1])
            assert_close(predict(model, to_data(supercell)), predict(model, to_data(structure)))

    def test_edges_beyond_cutoff_change_nothing(self, model, structures):
        """A graph built with a larger radius gives the same prediction: the envelope is 0."""
        for structure in structures.values():
            wide = to_data(structure, cutoff=CUTOFF + 0.7)
            assert_close(predict(model, wide), predict(model, to_data(structure)))

    def test_batch_equals_single(self, model, graphs):
        batched = predict(model, batch_of(*graphs.values()))
        for k, data in enumerate(graphs.values()):
            assert_close(batched[k], predict(model, data)[0])

    def test_state_dict_round_trip(self, model, graphs, tmp_path):
        path = tmp_path / "weights.pt"
        torch.save({"config": model.config.to_dict(), "state": model.state_dict()}, path)
        saved = torch.load(path, weights_only=True)
        from crystensor.models import config_from_dict

        clone = build_model(config_from_dict(saved["config"])).eval()
        clone.load_state_dict(saved["state"])
        batch = batch_of(*graphs.values())
        np.testing.assert_array_equal(predict(clone, batch), predict(model, batch))

    def test_training_step_gives_finite_gradients(self, model, graphs):
        clone = build_model(model.config)
        clone.load_state_dict(model.state_dict())
        out = clone(batch_of(*graphs.values()))
        out["irreps"].pow(2).sum().backward()
        for name, param in clone.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), name

    def test_replace_head_keeps_backbone(self, small_model, graphs):
        model = small_model(self.arch, "band-gap")
        clone = build_model(model.config)
        clone.load_state_dict(model.state_dict())
        backbone = {k: v.clone() for k, v in clone.backbone.state_dict().items()}
        clone.replace_head("piezoelectric")
        assert clone.config.target == "piezoelectric"
        assert str(clone.head.irreps_out) == "1x1o+1x1o+1x2o+1x3o"
        for key, value in clone.backbone.state_dict().items():
            torch.testing.assert_close(value, backbone[key], rtol=0, atol=0)
        with torch.no_grad():
            assert clone(graphs["ZnO"])["cartesian"].shape == (1, 3, 3, 3)
            features = clone.backbone(graphs["ZnO"])
            reference = model.backbone(graphs["ZnO"])
        torch.testing.assert_close(features, reference, rtol=0, atol=0)


class TestSEGNN(ModelContract):
    arch = "segnn"


class TestSEConv(ModelContract):
    arch = "seconv"


class TestSETransformer(ModelContract):
    arch = "setransformer"


def test_every_architecture_is_tested():
    tested = {cls.arch for cls in ModelContract.__subclasses__()}
    assert tested == set(ARCHITECTURES)


def test_centrosymmetric_crystal_has_no_piezoelectric_response(small_model, graphs):
    """NaCl and Si have inversion symmetry: an equivariant model predicts e_ijk = 0 exactly."""
    for arch in ARCHITECTURES:
        for pooling in POOLINGS:
            model = small_model(arch, "piezoelectric", pooling)
            for name in ("NaCl", "Si"):
                assert np.abs(predict(model, graphs[name])).max() < TOL, (arch, pooling, name)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_pool_norm_gives_unit_pooled_channels(arch, small_model, graphs):
    """Calibrated gains: every pooled channel has unit mean square over the calibration graphs
    (or the capped gain 1/floor where it is nearly zero on all of them)."""
    model = small_model(arch, "piezoelectric")
    gain = model.backbone.pool_gain
    assert model.config.pool_norm and not torch.all(gain == 1.0)
    with torch.no_grad():
        pooled = model.backbone(batch_of(*graphs.values()))
    irreps = model.backbone.irreps_out
    blocks = pooled.split([m * i.dim for m, i in irreps], dim=1)
    for (mul, ir), block in zip(irreps, blocks, strict=True):
        rms = block.reshape(len(graphs), mul, ir.dim).pow(2).mean((0, 2)).sqrt()
        capped = rms < 1.0 - 1e-9
        np.testing.assert_allclose(rms[~capped].numpy(), 1.0, rtol=1e-9)
        # a capped channel was below the floor (1e-3) before the gain of 1000
        assert torch.all(rms[capped] < 1.0)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_the_domain_check_reads_the_node_mean_under_density_pooling(pooling, small_model, graphs):
    """``pooled_and_descriptor``: the pooled features and the domain check's, which are the
    pooled ones except under density pooling, where they are what mean pooling would give."""
    model = small_model("segnn", "elastic", pooling)
    batch = batch_of(*graphs.values())
    mean = build_model(model.config.replace(pooling="mean")).eval()
    mean.load_state_dict(model.state_dict(), strict=False)  # all but density's learned volume
    with torch.no_grad():
        pooled, features = model.backbone.pooled_and_descriptor(batch)
        torch.testing.assert_close(pooled, model.backbone(batch), rtol=0, atol=0)
        expected = mean.backbone(batch) if pooling == "density" else pooled
        torch.testing.assert_close(features, expected, rtol=0, atol=TOL)
        if pooling == "density":  # and they differ from the pooled ones
            assert not torch.allclose(features, pooled)


def test_configs_saved_before_pool_norm_load_without_it():
    from crystensor.models import config_from_dict, preset

    data = preset("segnn", "small", num_node_features=8).to_dict()
    del data["pool_norm"]
    model = build_model(config_from_dict(data))
    assert not model.config.pool_norm
    assert not any("pool_gain" in key for key in model.state_dict())
