"""The pretrained SevenNet backbones: identity, sevenn's conventions, symmetry, gradients."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from e3nn import o3

from crystensor.data.graph import build_graph
from crystensor.errors import InputError
from crystensor.models.backbones import (
    BACKBONES,
    PRETRAINED_BACKBONES,
    backbone_identity,
    load_backbone,
)
from crystensor.models.backbones.sevennet import checkpoint_path
from tests.helpers import americium, nacl, random_orthogonal, triclinic, zno_wurtzite

pytest.importorskip("sevenn")

RTOL = 1e-4  # float32 features


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("sevennet-0")


@pytest.fixture(scope="module")
def l3i5():
    return load_backbone("sevennet-l3i5")


def arrays(structure):
    return (
        np.array(structure.atomic_numbers),
        np.asarray(structure.cart_coords),
        np.asarray(structure.lattice.matrix),
    )


def assert_close(got, want, rtol=RTOL):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    scale = np.abs(want).max()
    assert np.abs(got - want).max() <= rtol * scale, np.abs(got - want).max() / scale


def forward_on_graph(backbone, graph, vec_sign=1.0, requires_grad=False):
    """The backbone on a crystensor graph (store convention), one graph."""
    vec = graph.positions[graph.edge_index[0]] + graph.edge_shift @ graph.cell
    vec = torch.tensor(vec_sign * (vec - graph.positions[graph.edge_index[1]]))
    vec.requires_grad_(requires_grad)
    z = torch.as_tensor(graph.atomic_numbers)
    out = backbone(z, torch.as_tensor(graph.edge_index), vec, torch.zeros_like(z), 1)
    return out, vec


# -- registry and identity -------------------------------------------------------------------
def test_registry_and_identity(backbone):
    assert BACKBONES[0] == "native" and "sevennet-0" in BACKBONES
    assert PRETRAINED_BACKBONES == ("sevennet-0", "sevennet-l3i5")
    ident = backbone_identity("sevennet-0")
    path = checkpoint_path("sevennet-0")
    assert ident["name"] == "sevennet-0" and ident["package"] == "sevenn"
    assert ident["checkpoint"] == "SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth"
    assert ident["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert backbone.identity() == ident
    assert backbone_identity("native") == {"name": "native"}
    with pytest.raises(InputError, match="build_model"):
        load_backbone("native")
    with pytest.raises(InputError, match="choose one of native, sevennet-0, sevennet-l3i5"):
        backbone_identity("mace")


def test_irreps_cutoff_and_layer(backbone):
    assert backbone.irreps_out == o3.Irreps("128x0e+64x1o+32x2e")
    assert backbone.irreps_sevenn == o3.Irreps("128x0e+64x1e+32x2e")
    assert backbone.cutoff == 5.0 and backbone.layer == "3_equivariant_gate"
    assert backbone.features_of(*arrays(triclinic())).shape == (3, 480)


@pytest.mark.parametrize("name", PRETRAINED_BACKBONES)
def test_features_are_sevenns_own(name, request):
    """The cut network on crystensor's graph gives what sevenn's whole model computes at its
    last equivariant gate on sevenn's own graph: edge direction and type map are right."""
    backbone = request.getfixturevalue("backbone" if name == "sevennet-0" else "l3i5")
    import sevenn._keys as KEY
    import sevenn.util
    from pymatgen.io.ase import AseAtomsAdaptor
    from sevenn.atom_graph_data import AtomGraphData
    from sevenn.train.dataload import unlabeled_atoms_to_graph

    structure = zno_wurtzite()
    atoms = AseAtomsAdaptor.get_atoms(structure)
    seen = {}
    torch.set_default_dtype(torch.float32)  # sevenn's own precision (these tests run in 64)
    try:
        full = sevenn.util.load_checkpoint(str(checkpoint_path(name))).build_model()
        full.set_is_batch_data(False)

        def keep(module, args, out):
            seen["x"] = out[KEY.NODE_FEATURE].detach().clone()  # returns None: output unchanged

        full._modules["3_equivariant_gate"].register_forward_hook(keep)
        full(AtomGraphData.from_numpy_dict(unlabeled_atoms_to_graph(atoms, 5.0)))
    finally:
        torch.set_default_dtype(torch.float64)
    with torch.no_grad():
        ours, _ = forward_on_graph(backbone, build_graph(structure, 5.0))
    assert_close(ours.numpy(), seen["x"].numpy(), rtol=1e-5)


# -- symmetry ----------------------------------------------------------------------------------
def test_features_rotate_with_e3nns_wigner_matrices(backbone, rng):
    z, pos, cell = arrays(triclinic())
    base = backbone.features_of(z, pos, cell)
    for _ in range(3):
        rot = random_orthogonal(rng, proper=True)
        shift = rng.normal(size=3)
        rotated = backbone.features_of(z, pos @ rot.T + shift, cell @ rot.T)
        wigner = backbone.irreps_out.D_from_matrix(torch.as_tensor(rot)).numpy()
        assert_close(rotated, base @ wigner.T)


def test_permuting_atoms_permutes_rows(backbone):
    z, pos, cell = arrays(zno_wurtzite())
    order = np.array([2, 0, 3, 1])
    assert_close(
        backbone.features_of(z[order], pos[order], cell), backbone.features_of(z, pos, cell)[order]
    )


def test_supercell_copies_have_the_features_of_their_atom(backbone):
    z, pos, cell = arrays(triclinic())
    doubled = np.concatenate([pos, pos + cell[1]])
    big = cell * np.array([[1.0], [2.0], [1.0]])
    features = backbone.features_of(np.concatenate([z, z]), doubled, big)
    base = backbone.features_of(z, pos, cell)
    assert_close(features[:3], base)
    assert_close(features[3:], base)


def test_inverted_image(backbone):
    z, pos, cell = arrays(zno_wurtzite())
    pair = backbone.features_of(z, pos, cell, with_inverted=True)
    assert pair.shape == (4, 2, 480) and pair.dtype == np.float32
    assert_close(pair[:, 0], backbone.features_of(z, pos, cell))
    # the image is the structure with positions and cell negated
    assert_close(pair[:, 1], backbone.features_of(z, -pos, -cell))
    vectors = backbone.irreps_out.slices()[1]
    assert backbone.irreps_out[1].ir == o3.Irrep("1o")
    difference = np.abs(pair[:, 0, vectors] - pair[:, 1, vectors]).max()
    assert difference > 0.1 * np.abs(pair[:, 0, vectors]).max()  # polar: the image differs
    # every atom of rock salt sits on an inversion centre: its image is itself
    centro = backbone.features_of(*arrays(nacl()), with_inverted=True)
    assert_close(centro[:, 1], centro[:, 0], rtol=1e-5)


# -- the forward contract ----------------------------------------------------------------------
def test_forward_is_differentiable(backbone):
    out, vec = forward_on_graph(backbone, build_graph(triclinic(), 5.0), requires_grad=True)
    backbone.zero_grad()
    (out**2).sum().backward()
    assert vec.grad is not None and torch.isfinite(vec.grad).all() and vec.grad.abs().max() > 0
    weight = backbone.model._modules["3_convolution"].weight_nn.layer0.weight
    assert weight.grad is not None and torch.isfinite(weight.grad).all()
    backbone.zero_grad()


def test_edges_beyond_the_cutoff_are_ignored(backbone):
    structure = triclinic()
    wide = build_graph(structure, 7.0)
    with torch.no_grad():
        out, vec = forward_on_graph(backbone, wide)
    assert (vec.norm(dim=1) > 5.0).any()
    assert_close(out.numpy(), backbone.features_of(*arrays(structure)), rtol=1e-5)


def test_a_batch_gives_each_structure_its_own_features(backbone):
    structures = [arrays(s) for s in (triclinic(), zno_wurtzite(), nacl())]
    batched = backbone.features_of_many(
        structures, with_inverted=True, batch_size=3, max_edges=None
    )
    for got, structure in zip(batched, structures, strict=True):
        assert_close(got, backbone.features_of(*structure, with_inverted=True), rtol=1e-5)


def test_unknown_elements_are_named(backbone):
    with pytest.raises(InputError, match="not trained on Am"):
        backbone.node_features(americium())


def test_dtype_stays_float32_and_trainable_blocks(backbone):
    backbone.double()
    assert all(p.dtype == torch.float32 for p in backbone.parameters())
    out, _ = forward_on_graph(backbone, build_graph(nacl(), 5.0))
    assert out.dtype == torch.float32
    last = backbone.set_trainable("last")
    assert last and all(name.startswith("model.3_") for name in last)
    assert len(backbone.set_trainable("all")) > len(last)
    assert backbone.set_trainable("none") == []
    assert not any(p.requires_grad for p in backbone.parameters())
    backbone.set_trainable("all")


# -- SevenNet-l3i5 -----------------------------------------------------------------------------
def test_l3i5_identity_irreps_and_rotation(l3i5, rng):
    ident = backbone_identity("sevennet-l3i5")
    assert ident["checkpoint"] == "SevenNet_l3i5/checkpoint_l3i5.pth"
    file_bytes = checkpoint_path("sevennet-l3i5").read_bytes()
    assert ident["sha256"] == hashlib.sha256(file_bytes).hexdigest()
    assert l3i5.identity() == ident
    assert l3i5.irreps_out == o3.Irreps("128x0e+64x1o+32x2e+32x3o")
    assert l3i5.cutoff == 5.0 and l3i5.layer == "3_equivariant_gate"
    z, pos, cell = arrays(triclinic())
    base = l3i5.features_of(z, pos, cell)
    assert base.shape == (3, 704)
    octupoles = l3i5.irreps_out.slices()[3]
    assert np.abs(base[:, octupoles]).max() > 1e-3  # the l = 3 block carries something
    for _ in range(2):
        rot = random_orthogonal(rng, proper=True)
        rotated = l3i5.features_of(z, pos @ rot.T + rng.normal(size=3), cell @ rot.T)
        wigner = l3i5.irreps_out.D_from_matrix(torch.as_tensor(rot)).numpy()
        assert_close(rotated, base @ wigner.T, rtol=3e-4)


def test_l3i5_last_block_is_its_own(l3i5, backbone):
    last = l3i5.set_trainable("last")
    assert last and all(name.startswith("model.3_") for name in last)
    assert l3i5.set_trainable("none") == []
    # not SevenNet-0's weights under another name
    assert l3i5.identity()["sha256"] != backbone.identity()["sha256"]
