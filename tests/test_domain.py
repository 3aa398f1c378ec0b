"""Domain warnings: distances, vacuum gaps, unseen elements, feature distance; in predict too."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3
from pymatgen.core import Lattice, Structure

from crystensor import domain
from crystensor.checkpoint import load_checkpoint, save_checkpoint
from crystensor.domain import (
    DomainWarning,
    FeatureDomain,
    check_distances,
    invariant_descriptor,
    structure_warnings,
    vacuum_gaps,
)
from crystensor.errors import InputError
from crystensor.prediction import load_predictor
from tests.helpers import nacl, random_orthogonal, silicon, triclinic, zno_wurtzite
from tests.test_predict import make_checkpoint, rotated


def slab(vacuum: float = 15.0) -> Structure:
    """A MoS2-like single layer with ``vacuum`` Angstrom between its periodic copies."""
    c = 3.12 + vacuum
    return Structure(
        Lattice.hexagonal(3.19, c),
        ["Mo", "S", "S"],
        [[1 / 3, 2 / 3, 0.5], [2 / 3, 1 / 3, 0.5 + 1.56 / c], [2 / 3, 1 / 3, 0.5 - 1.56 / c]],
    )


def molecule(box: float = 20.0) -> Structure:
    return Structure(Lattice.cubic(box), ["H", "H"], [[0, 0, 0], [0.74 / box, 0, 0]])


def codes(warnings: list[DomainWarning]) -> list[str]:
    return [w.code for w in warnings]


@pytest.mark.parametrize("make", [nacl, silicon, zno_wurtzite, triclinic])
def test_bulk_crystals_raise_no_warning(make):
    assert structure_warnings(make(), elements=["Na", "Cl", "Si", "Zn", "O", "Ga", "N"]) == []


def test_vacuum_slab_wire_and_molecule():
    (w,) = structure_warnings(slab())
    assert w.code == "vacuum-gap" and "along c" in w.message and "slab" in w.message
    assert vacuum_gaps(slab())[2] == pytest.approx(15.0)
    (w,) = structure_warnings(molecule())
    assert "isolated molecule" in w.message and "along a" in w.message
    chain = Structure(Lattice.orthorhombic(12, 12, 2.5), ["C"], [[0, 0, 0]])
    (w,) = structure_warnings(chain)
    assert "wire" in w.message and "along a" in w.message and "along b" in w.message
    assert codes(structure_warnings(slab(vacuum=domain.VACUUM_GAP - 0.5))) == []


def test_vacuum_gap_invariant_to_cell_choice_rotation_and_order(rng):
    reference = max(vacuum_gaps(slab()))
    supercell = slab().make_supercell([2, 3, 1], in_place=False)
    assert max(vacuum_gaps(supercell)) == pytest.approx(reference)
    turned = rotated(slab(), random_orthogonal(rng, False))
    assert max(vacuum_gaps(turned)) == pytest.approx(reference)
    shuffled = Structure.from_sites([slab()[i] for i in (2, 0, 1)])
    assert max(vacuum_gaps(shuffled)) == pytest.approx(reference)
    shifted = slab()
    shifted.translate_sites(range(3), [0.1, 0.2, 0.37])
    assert max(vacuum_gaps(shifted)) == pytest.approx(reference)


def test_overlapping_atoms_refused_and_compressed_ones_flagged():
    cu = Structure(Lattice.cubic(3.6), ["Cu", "Cu"], [[0, 0, 0], [0.03 / 3.6, 0, 0]])
    with pytest.raises(InputError, match=r"0\.03 Angstrom apart.*overlapping"):
        check_distances(cu)
    same = Structure(Lattice.cubic(3.6), ["Cu", "Cu"], [[0, 0, 0], [0, 0, 0]])
    with pytest.raises(InputError, match="overlapping"):
        check_distances(same)
    tiny = Structure(Lattice.cubic(0.3), ["Cu"], [[0, 0, 0]])  # an atom next to its own image
    with pytest.raises(InputError, match="overlapping"):
        check_distances(tiny)
    squeezed = nacl()
    squeezed.scale_lattice(squeezed.volume * 0.15)  # Na-Cl 2.82 -> 1.5 A (radii sum 2.68)
    (w,) = check_distances(squeezed)
    assert w.code == "short-distance" and "Na" in w.message and "Cl" in w.message
    assert check_distances(nacl()) == []


def test_unseen_elements():
    (w,) = structure_warnings(nacl(), elements=["Na", "O"])
    assert w.code == "unseen-element" and w.message.startswith("Cl is in no training")
    assert structure_warnings(nacl(), elements=None) == []


@pytest.mark.parametrize("proper", [True, False])
def test_invariant_descriptor_under_rotations_and_reflections(rng, proper):
    irreps = o3.Irreps("3x0e+2x1o+2x2e+1x3o+1x0o")
    x = torch.from_numpy(rng.normal(size=(4, irreps.dim)))
    q = torch.from_numpy(random_orthogonal(rng, proper))
    turned = x @ irreps.D_from_matrix(q).T
    layout = [(mul, ir.l, ir.p) for mul, ir in irreps]
    a = invariant_descriptor(x.numpy(), layout)
    b = invariant_descriptor(turned.numpy(), layout)
    assert a.shape == (4, 9)
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_feature_domain_threshold_and_round_trip(rng):
    train = rng.normal(size=(300, 8))
    test = rng.normal(size=(200, 8))
    fitted = FeatureDomain.fit(train, test, quantile=0.9)
    share = float((fitted.distances(test) > fitted.threshold).mean())
    assert share == pytest.approx(0.1, abs=0.01)
    np.testing.assert_allclose(fitted.distances(train[:5]), 0.0, atol=1e-6)
    again = FeatureDomain.from_dict(fitted.to_dict())
    np.testing.assert_allclose(again.distances(test), fitted.distances(test), rtol=1e-5)
    assert again.warning(fitted.threshold * 0.5) == []
    (w,) = again.warning(fitted.threshold * 3)
    assert w.code == "far-from-training" and "90 %" in w.message


def test_predict_reports_each_warning(tmp_path):
    """A model that records its training elements and features warns per structure."""
    path = make_checkpoint(tmp_path / "elastic.pt")
    checkpoint = load_checkpoint(path)
    predictor = load_predictor(model=path)
    graphs = [predictor.graph(s) for s in (nacl(), silicon())]
    from crystensor.data.dataset import _collate
    from crystensor.domain import invariant_descriptor as describe
    from crystensor.train.domain import pooled_irreps

    with torch.inference_mode():
        pooled = predictor.model.backbone(_collate(graphs, "cpu")).double().numpy()
    reference = describe(pooled, pooled_irreps(predictor.model))
    fitted = FeatureDomain.fit(reference, reference)
    fitted.threshold = 0.5  # the distances of two reference graphs to themselves are all 0
    checkpoint.domain = {"elements": ["Na", "Cl", "Si"], "features": fitted.to_dict()}
    checkpoint.meta["caveat"] = "the sign is not determined"
    save_checkpoint(checkpoint, path)
    predictor = load_predictor(model=path)
    cu = Structure(Lattice.cubic(3.6), ["Cu", "Cu"], [[0, 0, 0], [0.03 / 3.6, 0, 0]])
    results = predictor.predict_results([nacl(), slab(), molecule(), cu])
    by_name = {r.formula or "cu": r for r in results}
    assert by_name["NaCl"].feature_distance == pytest.approx(0.0, abs=0.05)  # float32 graphs
    assert "far-from-training" not in [w["code"] for w in by_name["NaCl"].warnings]
    slab_codes = [w["code"] for w in by_name["MoS2"].warnings]
    assert {"unseen-element", "vacuum-gap", "far-from-training", "model-caveat"} <= set(slab_codes)
    assert "isolated molecule" in str(by_name["H2"].warnings)
    assert not results[3].ok and "overlapping" in results[3].error
