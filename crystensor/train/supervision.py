r"""Mixed supervision: full tensors and rotation-invariant labels in one training run.

Full tensors are scarce, but invariant facts about them are not: the principal values of
eps_inf (``crystensor fetch -s naccarato``) or the Voigt-Reuss-Hill bulk and shear moduli of
an elastic tensor (``-t bulk-modulus`` / ``-t shear-modulus`` records). A network that predicts
the tensor learns from them through differentiable invariants of its prediction:

=====================  ===============================  ============================================
primary store          label store                      invariant of the predicted tensor
=====================  ===============================  ============================================
``dielectric*``        same target, principal values    its eigenvalues, ascending
                                                        (:func:`principal_values`)
``elastic``            ``bulk-modulus``                 Hill bulk modulus :math:`K_{VRH}`
``elastic``            ``shear-modulus``                Hill shear modulus :math:`G_{VRH}`
any tensor target      same target, full tensors        the tensor itself (the ordinary loss)
=====================  ===============================  ============================================

The Hill averages follow pymatgen's ``ElasticTensor.k_vrh`` / ``g_vrh``; the Reuss bounds need
the compliance :math:`S = C^{-1}` (Voigt matrices). Where the predicted stiffness is not
positive definite (its Cholesky factorisation fails; early in training or for a poor
prediction) the Reuss bound has no meaning and its inverse no safe gradient, so that
structure's modulus is the Voigt bound alone (:func:`hill_moduli`, ``reuss_guard``).

Losses. A batch may mix structures of every store. Each structure ``i`` costs

.. math::  w_{s(i)}\, \ell_i, \qquad \text{loss} = \tfrac{1}{B} \textstyle\sum_i w_{s(i)}\,\ell_i

with ``w`` the store's weight (``-d store.h5:0.3``; 1 for the first store) and :math:`\ell_i`
the ordinary tensor loss (:func:`crystensor.train.losses.loss_function`) or, for an invariant
label, the same elementwise function (squared error, Huber, absolute) of the invariant's error
divided by the spread of that store's training labels (:attr:`LabelSet.scale`).

Leakage. A structure of a label store is not trained on when it duplicates a validation or
test material of the primary store: the same id, the same reduced formula (another polymorph
or another calculation of one compound), or, under the family split, the same chemical
system. Its test metrics (:func:`invariant_metrics`) likewise count only label-store test
structures whose id, formula and (family split) chemical system are not in the primary
training split, so they measure materials the network has seen in no form.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crystensor.errors import InputError

__all__ = [
    "INVARIANTS",
    "LabelSet",
    "LabelShareSampler",
    "MixedDataset",
    "check_label_store",
    "hill_moduli",
    "invariant_metrics",
    "label_sets",
    "mixed_loss",
    "parse_store_weight",
    "principal_values",
]

log = logging.getLogger(__name__)

# Voigt index pairs in crystensor's order (xx, yy, zz, yz, xz, xy)
_VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def principal_values(eps: torch.Tensor) -> torch.Tensor:
    """``(B, 3)``: eigenvalues of the symmetric part of ``eps (B, 3, 3)``, ascending.

    Differentiable; the gradient of an eigenvalue needs only its eigenvector, so degenerate
    eigenvalues (a cubic crystal's) are safe.
    """
    return torch.linalg.eigvalsh(0.5 * (eps + eps.transpose(-1, -2)))


def voigt_matrix(stiffness: torch.Tensor) -> torch.Tensor:
    """``(B, 6, 6)`` Voigt matrices of ``(B, 3, 3, 3, 3)`` stiffness tensors."""
    first, second = [k for k, _ in _VOIGT], [m for _, m in _VOIGT]
    rows = [stiffness[:, i, j][:, first, second] for i, j in _VOIGT]
    return torch.stack(rows, dim=1)


def hill_moduli(stiffness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Voigt-Reuss-Hill bulk and shear moduli of ``(B, 3, 3, 3, 3)`` stiffness tensors.

    Returns
    -------
    k_vrh, g_vrh : tensor ``(B,)``
        In the tensor's units. Where ``reuss_guard`` is False, the Voigt bounds.
    reuss_guard : bool tensor ``(B,)``
        The stiffness is positive definite, so the Reuss bounds (and the Hill averages) exist.
    """
    c = voigt_matrix(stiffness)
    c = 0.5 * (c + c.transpose(-1, -2))
    diag_c = torch.diagonal(c, dim1=-2, dim2=-1)
    upper = c[:, 0, 1] + c[:, 0, 2] + c[:, 1, 2]
    k_v = (diag_c[:, :3].sum(-1) + 2.0 * upper) / 9.0
    g_v = (diag_c[:, :3].sum(-1) - upper + 3.0 * diag_c[:, 3:].sum(-1)) / 15.0
    _, info = torch.linalg.cholesky_ex(c.detach())
    ok = info == 0
    # the compliance of a stand-in (the identity) where C is not positive definite, so that no
    # NaN or infinity enters the graph even where torch.where discards the value
    eye = torch.eye(6, dtype=c.dtype, device=c.device).expand_as(c)
    s = torch.linalg.inv(torch.where(ok[:, None, None], c, eye))
    diag_s = torch.diagonal(s, dim1=-2, dim2=-1)
    upper_s = s[:, 0, 1] + s[:, 0, 2] + s[:, 1, 2]
    k_r = 1.0 / (diag_s[:, :3].sum(-1) + 2.0 * upper_s)
    g_r = 15.0 / (4.0 * diag_s[:, :3].sum(-1) - 4.0 * upper_s + 3.0 * diag_s[:, 3:].sum(-1))
    k = torch.where(ok, 0.5 * (k_v + k_r), k_v)
    g = torch.where(ok, 0.5 * (g_v + g_r), g_v)
    return k, g, ok


def _bulk(cartesian: torch.Tensor) -> torch.Tensor:
    return hill_moduli(cartesian)[0].unsqueeze(-1)


def _shear(cartesian: torch.Tensor) -> torch.Tensor:
    return hill_moduli(cartesian)[1].unsqueeze(-1)


@dataclass(frozen=True)
class Invariant:
    """One kind of invariant label: its name, width and function of the predicted tensor."""

    name: str
    width: int
    function: Any  # (B, 3, ..., 3) -> (B, width)
    description: str


#: (primary target family, label store target, label store label) -> the invariant
INVARIANTS: dict[tuple[str, str, str], Invariant] = {
    ("dielectric", "dielectric", "principal_values"): Invariant(
        "principal_values", 3, principal_values, "eigenvalues of the predicted tensor"
    ),
    ("dielectric-electronic", "dielectric-electronic", "principal_values"): Invariant(
        "principal_values", 3, principal_values, "eigenvalues of the predicted tensor"
    ),
    ("elastic", "bulk-modulus", "tensor"): Invariant(
        "bulk_modulus", 1, _bulk, "Hill bulk modulus K_VRH of the predicted tensor"
    ),
    ("elastic", "shear-modulus", "tensor"): Invariant(
        "shear_modulus", 1, _shear, "Hill shear modulus G_VRH of the predicted tensor"
    ),
}
# every label store's width is padded to this in a mixed batch
_WIDTH = max(inv.width for inv in INVARIANTS.values())


def parse_store_weight(text: str) -> tuple[str, float]:
    """``"store.h5"`` -> ``("store.h5", 1.0)``; ``"store.h5:0.3"`` -> ``("store.h5", 0.3)``.

    A path that itself ends in ``:<number>`` is read whole when it exists.
    """
    from pathlib import Path

    path, sep, tail = str(text).rpartition(":")
    if not sep or Path(text).exists():
        return str(text), 1.0
    try:
        weight = float(tail)
    except ValueError:
        return str(text), 1.0
    if not math.isfinite(weight) or weight <= 0:
        raise InputError(f"the loss weight of {path} must be a positive number, got {tail!r}")
    return path, weight


@dataclass
class LabelSet:
    """A label store beside the primary one: what it supervises, its weight and its graphs.

    ``invariant`` is None for a second store of full tensors of the primary target.
    ``train`` and ``test`` index the store's graphs that may be trained on and scored
    (leakage rules in the module docstring); ``scale`` is the RMS spread of the training labels
    about their mean, which divides the invariant's error in the loss.
    """

    store: Any
    weight: float
    invariant: Invariant | None
    train: np.ndarray
    test: np.ndarray
    scale: float
    excluded: int

    @property
    def name(self) -> str:
        return self.store.path.name


def _labels(store, invariant: Invariant | None) -> np.ndarray:
    """``(G, width)`` labels of a store: principal values (the stored diagonal) or the scalar."""
    if invariant is None:
        return np.zeros((len(store), 0))
    cart = np.asarray(store.read("target_cartesian"), dtype=np.float64)
    if invariant.name == "principal_values":
        return np.diagonal(cart, axis1=1, axis2=2).copy()
    return cart.reshape(len(store), 1)


def _formulas(store) -> list[str]:
    from pymatgen.core import Composition

    cached = store.read("formula")
    return [Composition(str(f)).reduced_formula for f in cached]


def _keys(store, family: bool) -> list[set[str]]:
    """Per graph: the id, reduced formula and (family split) chemical system, namespaced."""
    ids, formulas = store.ids, _formulas(store)
    systems = store.chemical_systems if family else [None] * len(store)
    out = []
    for i, f, s in zip(ids, formulas, systems, strict=True):
        keys = {f"id:{i}", f"formula:{f}"}
        if s is not None:
            keys.add(f"system:{s}")
        out.append(keys)
    return out


def check_label_store(primary, store) -> Invariant | None:
    """What ``store`` supervises of a model of ``primary``'s target (None: full tensors).

    Raises
    ------
    InputError
        A primary store of principal values, a store whose target and label supervise
        nothing of the primary's target, or one featurized differently (cutoff, atom features).
    """
    if primary.label != "tensor":
        raise InputError(
            f"{primary.path.name} holds {primary.label} labels, not tensors; give a store of full "
            "tensors first and the label store after it (-d tensors.h5 -d labels.h5:0.3)"
        )
    invariant = _invariant(primary, store)
    for attr in ("cutoff", "feature_set", "feature_table_sha256"):
        if store.attrs[attr] != primary.attrs[attr]:
            raise InputError(
                f"{store.path.name} and {primary.path.name} were featurized differently "
                f"({attr} {store.attrs[attr]!r} against {primary.attrs[attr]!r}); featurize "
                "both with the same settings"
            )
    return invariant


def label_sets(primary, stores: Sequence[tuple[Any, float]]) -> list[LabelSet]:
    """The :class:`LabelSet` of each ``(store, weight)`` beside the ``primary`` store, with
    the leakage rules of the module docstring applied to the splits in use.

    Raises
    ------
    InputError
        As :func:`check_label_store`.
    """
    invariants = [check_label_store(primary, store) for store, _ in stores]
    family = primary.split_info["method"] == "family"
    held_out: set[str] = set()
    trained: set[str] = set()
    split = primary.read("split")
    for keys, part in zip(_keys(primary, family), split, strict=True):
        (trained if part == 0 else held_out).update(keys)
    out = []
    for (store, weight), invariant in zip(stores, invariants, strict=True):
        keys = _keys(store, family)
        part = np.asarray(store.read("split"))
        leaks = np.array([bool(k & held_out) for k in keys], dtype=bool)
        seen = np.array([bool(k & trained) for k in keys], dtype=bool)
        train = np.flatnonzero((part == 0) & ~leaks)
        test = np.flatnonzero((part == 2) & ~seen & ~leaks)
        labels = _labels(store, invariant)[train]
        scale = float(np.sqrt(np.mean((labels - labels.mean()) ** 2))) if labels.size else 1.0
        out.append(
            LabelSet(
                store=store,
                weight=float(weight),
                invariant=invariant,
                train=train,
                test=test,
                scale=scale if scale > 1e-12 else 1.0,
                excluded=int(((part == 0) & leaks).sum()),
            )
        )
        log.info(
            "%s: %d training structures (%d left out as duplicates of validation or test "
            "materials of %s), %d test structures, weight %g",
            store.path.name,
            len(train),
            out[-1].excluded,
            primary.path.name,
            len(test),
            weight,
        )
    return out


def _invariant(primary, store) -> Invariant | None:
    if store.target == primary.target and store.label == "tensor":
        return None
    key = (primary.target, store.target, store.label)
    if key not in INVARIANTS:
        pairs = "; ".join(
            f"{p} with {t}{' principal values' if lab != 'tensor' else ''}"
            for p, t, lab in INVARIANTS
        )
        raise InputError(
            f"{store.path.name} ({store.target}, {store.label}) supervises nothing of a "
            f"{primary.target} model; label stores that do: {pairs}, or another {primary.target} "
            "tensor store"
        )
    return INVARIANTS[key]


class MixedDataset(torch.utils.data.Dataset):
    """The primary training graphs and the label sets' training graphs, in one dataset.

    Every item carries the fields a mixed batch needs, whatever store it comes from: ``y`` and
    ``y_cartesian`` (zeros for an invariant label), ``inv (1, 3)`` (the invariant label, zero
    padded), ``sup (1,)`` (0 for a full tensor, ``k >= 1`` for the k-th label set with an
    invariant) and ``w (1,)`` (the store's weight).
    """

    def __init__(self, primary, label_sets_: Sequence[LabelSet], datasets: Sequence[Any]):
        self.parts = [(primary, 0, 1.0, None, None)]
        for k, (ls, ds) in enumerate(zip(label_sets_, datasets, strict=True), start=1):
            labels = _labels(ls.store, ls.invariant)
            code = 0 if ls.invariant is None else k
            self.parts.append((ds, code, ls.weight, ls.invariant, labels))
        self.offsets = np.cumsum([0, *(len(p[0]) for p in self.parts)])
        kind = primary.kind
        self._y_shape = ((1, kind.dim), (1, *kind.cartesian_shape))

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, item: int) -> Any:
        part = int(np.searchsorted(self.offsets, item, side="right") - 1)
        dataset, code, weight, invariant, labels = self.parts[part]
        local = int(item - self.offsets[part])
        data = dataset[local]
        dtype = data.pos.dtype
        inv = torch.zeros(1, _WIDTH, dtype=dtype)
        if invariant is not None:
            index = int(dataset.indices[local])
            inv[0, : invariant.width] = torch.as_tensor(labels[index], dtype=dtype)
            data.y = torch.zeros(self._y_shape[0], dtype=dtype)
            data.y_cartesian = torch.zeros(self._y_shape[1], dtype=dtype)
        data.inv = inv
        data.sup = torch.tensor([code], dtype=torch.long)
        data.w = torch.tensor([weight], dtype=dtype)
        return data


class LabelShareSampler(torch.utils.data.Sampler[int]):
    """The order of a :class:`MixedDataset`'s graphs in one epoch, with a share of the labels.

    Each epoch takes every graph of the primary store and a fresh random ``share`` of each
    label store's training graphs (at least one), shuffles them together, and hands rank ``r``
    of ``num_replicas`` every ``num_replicas``-th index (padded by repetition to equal lengths,
    as :class:`torch.utils.data.DistributedSampler` does). Over ``E`` epochs each label graph
    is thus seen about ``share * E`` times, and an epoch costs what the primary store and that
    share cost: the way to afford label stores much larger than the tensor store. The draw
    depends only on ``seed`` and the epoch, so a resumed run repeats it. ``share`` in (0, 1]
    (checked with the other settings by :class:`crystensor.train.config.TrainConfig`).
    """

    def __init__(
        self, dataset: MixedDataset, share: float, num_replicas: int, rank: int, seed: int
    ):
        self.offsets = [int(o) for o in dataset.offsets]
        self.share, self.num_replicas, self.rank = share, num_replicas, rank
        self.seed, self.epoch = seed, 0
        sizes = np.diff(self.offsets)
        drawn = int(sizes[0]) + sum(self._take(int(n)) for n in sizes[1:])
        self.per_rank = math.ceil(drawn / num_replicas)

    def _take(self, n: int) -> int:
        """Graphs drawn each epoch from a label store of ``n`` training graphs."""
        return max(1, round(self.share * n)) if n else 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        chosen = [torch.arange(self.offsets[0], self.offsets[1])]
        for start, stop in zip(self.offsets[1:-1], self.offsets[2:], strict=True):
            n = stop - start
            if n:
                chosen.append(start + torch.randperm(n, generator=g)[: self._take(n)])
        order = torch.cat(chosen)
        order = order[torch.randperm(len(order), generator=g)]
        total = self.per_rank * self.num_replicas
        if total > len(order):
            order = torch.cat([order, order[: total - len(order)]])
        return iter(order[self.rank : total : self.num_replicas].tolist())


def mixed_loss(tensor_loss, label_sets_: Sequence[LabelSet], function: str):
    """``loss(output, batch)`` over a mixed batch (module docstring); a batch without the
    mixed fields (validation, test) costs the tensor loss alone.

    ``tensor_loss`` must return one loss per structure (``loss_function(..., per_structure=True)``).
    """
    from crystensor.train.losses import elementwise_function

    f = elementwise_function(function)
    invariants = [ls.invariant for ls in label_sets_]
    scales = [ls.scale for ls in label_sets_]

    def loss(output, batch):
        per_tensor = tensor_loss(output, batch)
        if not hasattr(batch, "sup"):
            return per_tensor.mean()
        sup = batch.sup
        cost = torch.where(sup == 0, per_tensor, torch.zeros_like(per_tensor))
        for k, (invariant, scale) in enumerate(zip(invariants, scales, strict=True), start=1):
            if invariant is None:
                continue
            rows = torch.nonzero(sup == k).flatten()
            if rows.numel() == 0:
                continue
            value = invariant.function(output["cartesian"][rows])
            error = (value - batch.inv[rows, : invariant.width]) / scale
            cost = cost.index_add(0, rows, f(error).mean(-1))
        return (batch.w * cost).mean()

    return loss


def invariant_metrics(predict, label_set: LabelSet) -> dict[str, Any]:
    """Test metrics of one label set: MAE and median relative error of the invariant.

    ``predict(indices) -> (n, 3, ..., 3)`` float64 Cartesian predictions for those graphs of the
    label set's store.
    """
    invariant = label_set.invariant
    n = len(label_set.test)
    out: dict[str, Any] = {
        "store": label_set.name,
        "label": None if invariant is None else invariant.name,
        "n_test": n,
        "n_train": len(label_set.train),
        "excluded_train": label_set.excluded,
        "weight": label_set.weight,
    }
    if invariant is None or n == 0:
        return out
    cart = torch.as_tensor(np.asarray(predict(label_set.test)), dtype=torch.float64)
    with torch.no_grad():
        pred = invariant.function(cart).numpy()
    true = _labels(label_set.store, invariant)[label_set.test]
    err = np.abs(pred - true)
    rel = err / np.maximum(np.abs(true), 1e-12)
    out.update(
        mae=float(err.mean()),
        median_relative_error=float(np.median(rel)),
        ewt10=float(np.mean(np.all(rel <= 0.10, axis=1))),
        ewt25=float(np.mean(np.all(rel <= 0.25, axis=1))),
        mae_per_value=[float(v) for v in err.mean(0)],
    )
    return out
