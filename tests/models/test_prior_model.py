"""A model that corrects a physics prior (:mod:`crystensor.nn.prior`), in float64.

The prior given with a rotated or reflected structure is the rotated or reflected tensor, as a
potential with exact O(3) symmetry would give; the output must then transform exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from e3nn import o3

from crystensor.nn.prior import PriorHead
from crystensor.tensors.harmonic import from_irreps, to_irreps
from tests.helpers import random_orthogonal, rotate
from tests.models.graphs import batch_of, transformed
from tests.models.test_models import assert_close, predict

DIM = 21


def with_prior(data, tensor, mask=1.0):
    out = data.clone()
    out.prior = torch.tensor(to_irreps(tensor, "elastic"), dtype=data.pos.dtype).unsqueeze(0)
    out.prior_mask = torch.tensor([mask], dtype=data.pos.dtype)
    return out


@pytest.fixture(scope="module")
def model(small_model):
    model = small_model("segnn", "elastic", "mean", prior="sevennet-0")
    torch.manual_seed(7)
    # a trained-looking head: the per-irrep weights vary with the structure and the prior
    torch.nn.init.normal_(model.head.weight_mlp[-1].weight, std=0.3)
    model.head.set_output_normalization(
        torch.tensor([30.0, 20.0, 10.0, 8.0, 5.0]),
        torch.tensor([90.0, 40.0, 0.0, 0.0, 0.0]),
        prior_scale=torch.tensor([25.0, 15.0, 9.0, 7.0, 4.0]),
    )
    return model


@pytest.fixture(scope="module")
def priors(graphs):
    rng = np.random.default_rng(3)
    return {name: from_irreps(rng.normal(size=DIM) * 40, "elastic") for name in graphs}


@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
def test_the_output_transforms_with_structure_and_prior(model, graphs, priors, rng, proper):
    irreps = o3.Irreps("0e+0e+2e+2e+4e")
    for name, data in graphs.items():
        rot = random_orthogonal(rng, proper=proper)
        before = with_prior(data, priors[name])
        after = with_prior(transformed(data, rot), rotate(priors[name], rot))
        assert_close(predict(model, after)[0], rotate(predict(model, before)[0], rot))
        with torch.no_grad():
            y, y_rot = model(before)["irreps"], model(after)["irreps"]
        d = irreps.D_from_matrix(torch.tensor(rot))
        assert_close(y_rot.numpy(), (y @ d.T).numpy()), name


def test_the_prior_enters_the_prediction(model, graphs, priors):
    data = graphs["triclinic"]
    a = predict(model, with_prior(data, priors["triclinic"]))
    b = predict(model, with_prior(data, 2 * priors["triclinic"]))
    assert np.abs(a - b).max() > 1.0


def test_a_new_head_starts_from_prior_plus_correction(small_model, graphs, priors):
    fresh = PriorHead("8x0e+4x2e+4x4e", "elastic", num_layers=1, channels=4).double()
    x = torch.randn(2, fresh.irreps_in.dim, dtype=torch.float64)
    p = torch.randn(2, DIM, dtype=torch.float64)
    mask = torch.ones(2, dtype=torch.float64)
    zero = fresh(x, torch.zeros_like(p), mask)["irreps"]
    correction = fresh.correction(torch.cat([x, p / fresh.prior_scale, mask[:, None]], 1))
    assert torch.allclose(fresh(x, p, mask)["irreps"], correction["irreps"] + p)
    assert zero.shape == (2, DIM)


def test_a_failed_prior_is_ignored_whatever_it_holds(model, graphs, priors):
    data = graphs["NaCl"]
    nan = with_prior(data, np.full((3, 3, 3, 3), np.nan), mask=0.0)
    zero = with_prior(data, np.zeros((3, 3, 3, 3)), mask=0.0)
    out = predict(model, nan)
    assert np.isfinite(out).all()
    assert_close(out, predict(model, zero))


def test_a_batch_equals_its_graphs(model, graphs, priors):
    items = [with_prior(d, priors[n], mask=float(k % 2)) for k, (n, d) in enumerate(graphs.items())]
    together = predict(model, batch_of(*items))
    for k, item in enumerate(items):
        assert_close(together[k], predict(model, item)[0])


def test_graphs_without_a_prior_are_refused(model, graphs):
    with pytest.raises(ValueError, match="carry none"):
        model(graphs["NaCl"])


def test_only_elastic_targets_take_a_prior(small_model):
    with pytest.raises(ValueError, match="elastic"):
        small_model("segnn", "dielectric", "mean", prior="sevennet-0")
