"""Every block of crystensor.nn: equivariance (rotations and reflections), smoothness, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3

from crystensor.data.graph import edge_vectors
from crystensor.models import Backbone, build_model, preset
from crystensor.nn import (
    AtomEmbedding,
    CartesianReadout,
    EdgeEmbedding,
    EquivariantGate,
    EquivariantMaxPooling,
    GatedLinear,
    IrrepsMismatchError,
    MeanPooling,
    PolynomialEnvelope,
    RadialEmbedding,
    SelfInteraction,
    SteerableLinear,
    TensorHead,
    check_irreps,
    kinds_irreps,
    spherical_irreps,
)
from crystensor.nn.attention import null_key_softmax
from crystensor.nn.interaction import SEConvLayer
from crystensor.nn.message import GroupedConcat
from crystensor.nn.tensor_product import HarmonicProduct, PathMixing
from tests.helpers import random_orthogonal, rotate, silicon
from tests.models.graphs import to_data

TOL = 1e-10


def rand(irreps, n=7):
    return o3.Irreps(irreps).randn(n, -1)


def d_matrix(irreps, rot):
    return o3.Irreps(irreps).D_from_matrix(torch.as_tensor(rot))


def assert_equivariant(fn, irreps_ins, irreps_out, rng, n=7):
    """``fn(*(x_k D_k^T)) == fn(*x_k) D_out^T`` for a random improper and a proper matrix."""
    for proper in (False, True):
        rot = random_orthogonal(rng, proper=proper)
        xs = [rand(i, n) for i in irreps_ins]
        xs_rot = [x @ d_matrix(i, rot).T for x, i in zip(xs, irreps_ins, strict=True)]
        expected = fn(*xs) @ d_matrix(irreps_out, rot).T
        torch.testing.assert_close(fn(*xs_rot), expected, rtol=0, atol=TOL)


SH2 = o3.Irreps.spherical_harmonics(2)
SH4 = o3.Irreps.spherical_harmonics(4)
HIDDEN = spherical_irreps(3, 2)


def test_harmonic_product_matches_e3nn_uvu(rng):
    product = HarmonicProduct(HIDDEN, SH2, "0e+1o+1e+2e+2o+3o")
    instructions = []
    for block in product.layout.blocks:
        i_in = [ir for _, ir in HIDDEN].index(block.irrep_in)
        for j in block.attrs:
            instructions.append((i_in, j, len(instructions), "uvu", False))
    reference = o3.TensorProduct(
        HIDDEN,
        SH2,
        product.irreps_out,
        instructions,
        irrep_normalization="component",
        path_normalization="none",
    )
    x, a = rand(HIDDEN), rand(SH2)
    ours = torch.cat(
        [
            z.reshape(z.shape[0], z.shape[1], -1)
            .split([ir.dim for ir in blk.paths], dim=2)[p]
            .reshape(z.shape[0], -1)
            for z, blk in zip(product(x, a), product.layout.blocks, strict=True)
            for p in range(len(blk.paths))
        ],
        dim=1,
    )
    torch.testing.assert_close(ours, reference(x, a), rtol=0, atol=1e-12)


def test_steerable_linear_is_equivariant(rng):
    layer = SteerableLinear(HIDDEN, SH2, "5x0e+2x1o+2x1e+2x2e", gate=False)
    assert_equivariant(layer, [HIDDEN, SH2], layer.irreps_out, rng)
    gated = SteerableLinear(HIDDEN, SH4, kinds_irreps(2, 4), gate=True)
    assert_equivariant(gated, [HIDDEN, SH4], gated.irreps_out, rng)


@pytest.mark.parametrize("irreps_in", ["6x0e", "6x0e+3x1o+2x2e", "3x1o+4x0e+2x0o"])
def test_mixing_scalars_first_is_the_same_map(rng, irreps_in):
    """``B_k (x W)`` for scalar blocks (factored) equals ``(B_k x) W`` and the generic layout."""
    product = HarmonicProduct(irreps_in, SH2, "3x0e+2x0o+2x1o+2x1e+2x2e")
    mixing = PathMixing(product.layout, product.irreps_out.sort().irreps.simplify())
    for b in mixing.biases:
        torch.nn.init.normal_(b)
    x, a = rand(irreps_in, 11), rand(SH2, 11)
    factored = product.path_major(x, a, factored=True)
    assert any(isinstance(z, tuple) for z in factored)
    expected = mixing(product(x, a))
    torch.testing.assert_close(mixing.from_path_major(factored), expected, rtol=0, atol=1e-12)
    plain = product.path_major(x, a)
    torch.testing.assert_close(mixing.from_path_major(plain), expected, rtol=0, atol=1e-12)
    layer = SteerableLinear(irreps_in, SH2, "4x0e+2x1o+2x2e", gate=True)
    assert_equivariant(layer, [irreps_in, SH2], layer.irreps_out, rng)


def test_path_mixing_bias_only_on_even_scalars(rng):
    product = HarmonicProduct(HIDDEN, SH2, "2x0e+2x1e+2x2o")
    mixing = PathMixing(product.layout, "2x0e+2x1e+2x2o")
    assert sum(b.numel() for b in mixing.biases) == 2
    assert_equivariant(lambda x, a: mixing(product(x, a)), [HIDDEN, SH2], mixing.irreps_out, rng)


def test_gates_are_equivariant(rng):
    gate = EquivariantGate("3x0e+2x0o+2x1o+1x1e+2x2e")
    assert str(gate.irreps_in) == "3x0e+2x0o+5x0e+2x1o+1x1e+2x2e"  # scalars, gates, gated
    assert_equivariant(gate, [gate.irreps_in], gate.irreps_out, rng)
    layer = GatedLinear(HIDDEN, "4x0e+2x1o+2x2e")
    assert_equivariant(layer, [HIDDEN], layer.irreps_out, rng)


def test_self_interaction_lifts_to_output_irreps(rng):
    lifted = kinds_irreps(2, 4)
    assert str(lifted) == "2x0e+2x1o+2x2o+2x2e+2x3o+2x4e"
    layer = SelfInteraction(HIDDEN, lifted, SH4)
    assert_equivariant(layer, [HIDDEN, SH4], lifted, rng)


@pytest.mark.parametrize("pooling", [MeanPooling, EquivariantMaxPooling])
def test_pooling_is_equivariant_and_permutation_invariant(pooling, rng):
    irreps = kinds_irreps(3, 4)
    pool = pooling(irreps)
    batch = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    assert_equivariant(lambda h: pool(h, batch, 3), [irreps], irreps, rng)
    h = rand(irreps)
    perm = torch.as_tensor(rng.permutation(7))
    torch.testing.assert_close(pool(h[perm], batch[perm], 3), pool(h, batch, 3), rtol=0, atol=TOL)


def test_max_pooling_picks_largest_norm_and_averages_ties():
    pool = EquivariantMaxPooling("1x0e+1x1o")
    h = torch.tensor(
        [
            [0.5, 1.0, 0.0, 0.0],
            [-2.0, 0.0, 0.0, 3.0],  # largest l=1 norm
            [1.5, 0.0, 2.0, 0.0],
            [0.1, 0.0, 1.0, 0.0],  # graph 1: two l=1 vectors with equal norms, opposite
            [0.2, 0.0, -1.0, 0.0],
        ]
    )
    out = pool(h, torch.tensor([0, 0, 0, 1, 1]), 2)
    torch.testing.assert_close(out[0], torch.tensor([1.5, 0.0, 0.0, 3.0]))
    torch.testing.assert_close(out[1], torch.tensor([0.2, 0.0, 0.0, 0.0]))


def test_cartesian_readout_rotates_every_index(rng):
    for kind in ("dielectric", "piezoelectric", "elastic"):
        readout = CartesianReadout(kind)
        y = rand(readout.irreps_in, 2)
        rot = random_orthogonal(rng, proper=False)
        rotated = readout(y @ d_matrix(readout.irreps_in, rot).T)[1].numpy()
        np.testing.assert_allclose(rotated, rotate(readout(y)[1].numpy(), rot), atol=TOL)


def test_tensor_head_output_normalization(rng):
    head = TensorHead(kinds_irreps(2, 4), "elastic", num_layers=1, channels=3)
    x = rand(head.irreps_in, 3)
    head.set_output_normalization(
        torch.tensor([10.0, 2, 3, 4, 5]), torch.tensor([100.0, 1, 0, 0, 0])
    )
    assert_equivariant(lambda v: head(v)["irreps"], [head.irreps_in], head.irreps_out, rng)
    assert head(x)["cartesian"].shape == (3, 3, 3, 3, 3)
    with pytest.raises(ValueError, match="breaks equivariance"):
        head.set_output_normalization(torch.ones(5), torch.tensor([0.0, 0, 1, 0, 0]))
    with pytest.raises(ValueError, match="one value per part"):
        head.set_output_normalization(torch.ones(4), torch.zeros(4))


def test_edge_embedding_periodic_vectors_and_envelope():
    data = to_data(silicon(), cutoff=5.5)
    embed = EdgeEmbedding(lmax=2, num_radial=6, cutoff=5.0)
    batch = torch.zeros(data.num_nodes, dtype=torch.long)
    edges = embed(data.pos, data.cell, data.edge_index, data.edge_shift, batch)
    expected = edge_vectors(
        data.pos.numpy(), data.cell[0].numpy(), data.edge_index.numpy(), data.edge_shift.numpy()
    )
    np.testing.assert_allclose(edges.vec.numpy(), expected, atol=1e-12)
    assert edges.sh.shape == (data.edge_index.shape[1], 9)
    beyond = edges.length >= 5.0
    assert beyond.any() and (~beyond).any()
    assert torch.all(edges.envelope[beyond] == 0) and torch.all(edges.radial[beyond] == 0)
    with pytest.raises(ValueError, match="edge_shift"):
        embed(data.pos, data.cell, data.edge_index, data.edge_shift[:-1], batch)


def test_radial_features_vanish_smoothly_at_the_cutoff():
    envelope = PolynomialEnvelope(cutoff=5.0)
    r = torch.tensor([0.0, 4.999999, 5.0, 6.0], requires_grad=True)
    u = envelope(r)
    (grad,) = torch.autograd.grad(u.sum(), r, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), r)
    assert u[0] == 1.0 and u[2] == 0.0 and u[3] == 0.0 and u[1] < 1e-12
    assert abs(grad[1]) < 1e-9 and abs(second[1]) < 1e-3 and grad[2] == 0
    radial, env = RadialEmbedding(8, 5.0)(torch.linspace(0.5, 5.0, 50))
    assert radial.shape == (50, 8) and torch.all(radial[-1] == 0) and env[-1] == 0
    near, _ = RadialEmbedding(8, 5.0)(torch.tensor([4.999]))
    assert near.abs().max() < 1e-6  # approaches 0 like (r_c - r)^3: no step at the cutoff


def test_null_key_softmax_ignores_edges_beyond_the_cutoff_when_shifting():
    logits = torch.tensor([[2000.0], [1000.0], [0.3], [-0.2]])
    envelope = torch.tensor([0.0, 0.5, 0.8, 0.4])
    alpha = null_key_softmax(logits, envelope, torch.tensor([0, 0, 1, 1]), 3)
    # node 0: the edge beyond the cutoff gets nothing, the other one all (e^-1000 to the null key)
    torch.testing.assert_close(alpha[:2], torch.tensor([[0.0], [1.0]]), rtol=0, atol=0)
    weight = envelope[2:] * torch.exp(logits[2:, 0])  # node 1: the formula as written
    torch.testing.assert_close(alpha[2:, 0], weight / (1 + weight.sum()), rtol=0, atol=TOL)


def test_atom_embedding_checks_the_feature_width():
    embedding = AtomEmbedding(8, 4)
    assert embedding(torch.randn(3, 8)).shape == (3, 4)
    with pytest.raises(ValueError, match="num_node_features=8"):
        embedding(torch.randn(3, 9))


def test_grouped_concat_regroups_by_irrep():
    concat = GroupedConcat("1x0e+1x1o", "2x0e")
    assert str(concat.irreps) == "3x0e+1x1o"
    a, b = torch.arange(4.0)[None], torch.tensor([[10.0, 11.0]])
    torch.testing.assert_close(concat((a, b)), torch.tensor([[0.0, 10, 11, 1, 2, 3]]))


# --- irreps mismatches fail when the model is built, with a message that says what to do ---


def test_check_irreps():
    check_irreps("4x0e+4x0e", "8x0e", "here")
    with pytest.raises(IrrepsMismatchError, match="here: expects irreps 4x0e"):
        check_irreps("4x0e", "4x0e+2x1o", "here")


def test_unreachable_outputs_raise():
    with pytest.raises(IrrepsMismatchError, match="3o"):
        SteerableLinear("4x0e+4x1o", "1x0e+1x1o", "4x0e+4x3o")
    with pytest.raises(ValueError, match="cannot create"):
        GatedLinear("4x0e", "4x0e+2x1o")
    with pytest.raises(ValueError, match="before the l > 0"):
        EquivariantGate("2x1o+2x0e")


def test_head_needs_the_target_irreps():
    with pytest.raises(IrrepsMismatchError, match="raise lmax_out to 4"):
        TensorHead(kinds_irreps(4, 2), "elastic", num_layers=1, channels=4)
    with pytest.raises(IrrepsMismatchError, match="lmax_out"):
        build_model(preset("seconv", "small", num_node_features=8, lmax_out=2, target="elastic"))


def test_backbone_checks_the_chain_of_blocks():
    config = preset("seconv", "small", num_node_features=8)

    def wrong_layer(irreps_in, irreps_out, irreps_sh, irreps_node_attr):
        # declares an input layout the previous block does not produce
        return SEConvLayer(
            "4x0e+4x1o", irreps_out, irreps_sh, num_radial=4, radial_hidden=8, avg_num_neighbors=1
        )

    with pytest.raises(IrrepsMismatchError, match=r"interaction 0 \(SEConvLayer\): expects"):
        Backbone(config, wrong_layer)
