"""Models on a pretrained potential's node features (:mod:`crystensor.models.foundation`).

The contract of every architecture (:class:`tests.models.test_models.ModelContract`) runs on a
model built on :class:`tests.models.toy_potential.ToyPotential`, a float64 stand-in that, like
SevenNet-0, is rotation-equivariant but has no parity: the parity pairing must make the whole
model exactly equivariant under reflections too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3

from crystensor.models import build_model, preset
from crystensor.models.base import graph_inputs
from crystensor.models.foundation import parity_pair_irreps
from tests.helpers import random_orthogonal
from tests.models.graphs import NUM_FEATURES, batch_of, transformed
from tests.models.test_models import TARGETS, ModelContract, predict
from tests.models.toy_potential import ToyPotential

MODES = ["frozen", "full"]


@pytest.fixture(scope="module")
def pretrained_model(small_model, toy_backbone):
    """``pretrained_model(arch, target, pooling, mode, interactions, atoms)``: ``small_model``
    on the toy potential in backbone ``mode``."""

    def get(arch, target, pooling, mode="frozen", interactions=1, atoms=False):
        return small_model(
            arch,
            target,
            pooling,
            backbone=toy_backbone,
            backbone_mode=mode,
            num_interactions=interactions,
            atom_embedding=atoms,
        )

    return get


def assert_o3_equivariant(model, data, rng, atol=1e-12, relative=False):
    """A rotation and a reflection (drawn from ``rng``) of ``data`` transform the predicted
    irreps by their Wigner D matrices, to ``atol`` (with ``relative``: times the largest
    predicted component, which must not vanish)."""
    with torch.no_grad():
        y = model(data)["irreps"]
    if relative:
        scale = float(y.abs().max())
        assert scale > 1e-6
        atol *= scale
    for proper in (True, False):
        rot = random_orthogonal(rng, proper=proper)
        with torch.no_grad():
            y_rot = model(transformed(data, rot))["irreps"]
        d = o3.Irreps(model.kind.irreps).D_from_matrix(torch.tensor(rot))
        np.testing.assert_allclose(y_rot.numpy(), (y @ d.T).numpy(), atol=atol)


def graph_and_edges(model, batch):
    """The model's inputs of ``batch`` and its edge embedding of them."""
    g = graph_inputs(batch)
    edges = model.backbone.edge_embedding(
        g["pos"], g["cell"], g["edge_index"], g["edge_shift"], g["batch"]
    )
    return g, edges


class TestPretrainedBackbone(ModelContract):
    arch = "seconv"

    @pytest.fixture(
        params=[
            *[(t, p, m, "") for m in MODES for p in ("mean", "density") for t in TARGETS],
            *[(t, "mean", "frozen", "atoms") for t in TARGETS],
        ],
        ids=lambda c: "-".join(x for x in c if x),
    )
    def model(self, request, pretrained_model):
        target, pooling, mode, atoms = request.param
        return pretrained_model(self.arch, target, pooling, mode, atoms=bool(atoms))


@pytest.mark.parametrize("arch", ["segnn", "seconv", "setransformer"])
@pytest.mark.parametrize("interactions", [0, 1])
def test_every_head_architecture_is_o3_equivariant(arch, interactions, pretrained_model, graphs):
    rng = np.random.default_rng(7)
    for target in ("piezoelectric", "elastic"):
        model = pretrained_model(arch, target, "mean", interactions=interactions)
        for data in graphs.values():
            assert_o3_equivariant(model, data, rng)


def test_toy_potential_breaks_parity(graphs, float64):
    """The check above is not vacuous: the potential's own features violate their labels
    under a reflection (a pseudovector block), while rotations transform them exactly."""
    potential = ToyPotential()
    data = graphs["triclinic"]

    def features(d):
        shift = d.edge_shift.to(d.pos.dtype) @ d.cell[0]
        vec = d.pos[d.edge_index[0]] + shift - d.pos[d.edge_index[1]]
        batch = torch.zeros(d.num_nodes, dtype=torch.long)
        return potential(d.z, d.edge_index, vec, batch, 1).detach()

    irreps = potential.irreps_out
    rng = np.random.default_rng(3)
    for proper, should_match in ((True, True), (False, False)):
        rot = random_orthogonal(rng, proper=proper)
        d = irreps.D_from_matrix(torch.tensor(rot))
        matches = torch.allclose(features(transformed(data, rot)), features(data) @ d.T, atol=1e-10)
        assert matches == should_match


def test_parity_pair_irreps_signs():
    pair, sign = parity_pair_irreps("1x0e+1x1o+1x2e")
    assert str(pair) == "1x0e+1x1o+1x2e+1x0o+1x1e+1x2o"
    assert sign.tolist() == [1, -1, -1, -1, 1, 1, 1, 1, 1]


def test_cached_features_give_the_same_prediction(pretrained_model, graphs):
    """Frozen training reads ``backbone_x`` from the cache instead of running the potential."""
    model = pretrained_model("seconv", "elastic", "mean")
    batch = batch_of(*graphs.values())
    g, edges = graph_and_edges(model, batch)
    batch.backbone_x = model.backbone.embedding.potential_features(g, edges)
    cached = predict(model, batch)
    del batch.backbone_x
    np.testing.assert_allclose(cached, predict(model, batch), rtol=0, atol=1e-13)


def test_frozen_potential_is_not_in_the_state_dict(pretrained_model):
    frozen = pretrained_model("seconv", "elastic", "mean", "frozen")
    full = pretrained_model("seconv", "elastic", "mean", "full")
    assert not any("pretrained" in k for k in frozen.state_dict())
    assert any(k.startswith("backbone.embedding.pretrained.") for k in full.state_dict())


def test_partial_mode_trains_only_the_last_block(float64, toy_backbone):
    config = preset(
        "seconv", "small", num_node_features=NUM_FEATURES, backbone="toy", backbone_mode="partial"
    )
    model = build_model(config)
    trained = {
        n for n, p in model.backbone.embedding.pretrained.named_parameters() if p.requires_grad
    }
    assert trained == {"block.weight", "block.bias"}


@pytest.mark.slow
@pytest.mark.parametrize(("name", "atol"), [("sevennet-0", 2e-4), ("sevennet-l3i5", 2e-3)])
def test_sevennet_model_is_o3_equivariant_in_float32(graphs, name, atol):
    """The real SevenNet backbones (float32 inside): rotations and reflections of the structure
    rotate the predicted piezoelectric irreps to float32 round-off. l3i5's features are
    rotation-equivariant to about 1e-5 of their size, ten times SevenNet-0's round-off, and the
    pooled ZnO prediction nearly cancels, which leaves 6e-4 of its largest component; a parity
    or basis error would be of order one (the triclinic cell stays within 1e-5)."""
    rng = np.random.default_rng(11)
    torch.manual_seed(0)
    config = preset(
        "seconv",
        "small",
        num_node_features=NUM_FEATURES,
        target="piezoelectric",
        backbone=name,
    )
    model = build_model(config).eval()
    for structure in ("ZnO", "triclinic"):
        assert_o3_equivariant(model, graphs[structure], rng, atol=atol, relative=True)


def test_atom_embedding_adds_the_atom_features(pretrained_model, graphs):
    model = pretrained_model("seconv", "elastic", "mean", atoms=True)
    data = graphs["triclinic"].clone()
    before = predict(model, data)
    data.x = data.x + 1.0
    assert np.abs(predict(model, data) - before).max() > 1e-8


def test_calibration_standardises_the_paired_features(pretrained_model, graphs):
    """After calibrate, the 0e channels have mean 0 and every channel unit mean square over the
    calibration nodes; the model stays exactly O(3)-equivariant."""
    config = pretrained_model("seconv", "elastic", "mean").config
    model = build_model(config).eval()
    batch = batch_of(*graphs.values())
    assert not model.backbone.embedding.calibrated
    model.backbone.calibrate_pretrained([batch])
    embedding = model.backbone.embedding
    assert embedding.calibrated
    g, edges = graph_and_edges(model, batch)
    pair = (embedding.pair_features(batch, g, edges) - embedding.input_shift) * embedding.input_gain
    offset = 0
    for mul, ir in embedding.irreps_pair:
        block = pair[:, offset : offset + mul * ir.dim].reshape(-1, mul, ir.dim)
        offset += mul * ir.dim
        ms = block.pow(2).mean((0, 2))
        live = ms > 1e-20  # channels that vanish on these symmetric cells stay 0
        np.testing.assert_allclose(ms[live].numpy(), 1.0, rtol=1e-10)
        if ir == o3.Irrep("0e"):
            np.testing.assert_allclose(block.mean(0).numpy(), 0.0, atol=1e-12)
    assert_o3_equivariant(model, graphs["triclinic"], np.random.default_rng(5))
