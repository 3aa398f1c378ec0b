"""Calibrating an ensemble's spread so that its standard deviation means what it says.

Members trained from other seeds agree with each other more than with the truth: on the
validation split of the electronic dielectric model, only about 45 % of the components' errors
lay within one standard deviation of four members, where a calibrated Gaussian spread would hold
68 %. :func:`spread_scale` finds the factor ``s`` that makes it so on labelled data the members
were not trained on (the validation split), and predict multiplies the reported standard
deviation by it (``Checkpoint.meta["ensemble"]["std_scale"]``).

Members trained sign-agnostically (piezoelectric, ``--sign-agnostic``) may each predict ``T`` or
``-T`` for a structure; :func:`align_signs` turns them to one sign before they are averaged.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from crystensor.errors import InputError

__all__ = ["ONE_SIGMA", "align_signs", "calibrate", "coverage", "spread_scale"]

#: The share of a Gaussian within one standard deviation.
ONE_SIGMA = 0.6826894921370859


def align_signs(members: np.ndarray) -> np.ndarray:
    """The members' outputs with each one's sign chosen so that they agree, per structure.

    For networks trained sign-agnostically, which predict a tensor up to its overall sign:
    averaging ``T`` and ``-T`` would cancel them. Per structure, the signs are those of the
    leading eigenvector of the members' Gram matrix (inner products of their outputs, the same
    in irreps as in Cartesian components, and unchanged by rotations and reflections), so one
    member near zero does not decide for the others; the first member keeps its sign.

    Parameters
    ----------
    members : array ``(n_members, n, dim)``
        Each member's output (irreps or flattened tensors) for ``n`` structures.

    Returns
    -------
    array ``(n_members, n, dim)``
        ``members`` with some ``(member, structure)`` rows negated.
    """
    members = np.asarray(members, dtype=float)
    gram = np.einsum("ind,jnd->nij", members, members)  # (n, m, m)
    _, vectors = np.linalg.eigh(gram)
    lead = vectors[:, :, -1]  # (n, m), the largest eigenvalue's
    signs = np.where(lead >= 0, 1.0, -1.0)
    signs *= signs[:, :1]  # the first member keeps its sign
    return members * signs.T[:, :, None]


def spread_scale(errors: np.ndarray, std: np.ndarray) -> float:
    """The factor ``s`` with ``|error| <= s * std`` for :data:`ONE_SIGMA` of the components.

    Components whose spread is exactly 0 (fixed by symmetry) are left out.
    """
    errors, std = np.abs(np.asarray(errors, float)).ravel(), np.asarray(std, float).ravel()
    free = std > 0
    if not free.any():
        raise InputError("the members agree exactly everywhere: no spread to calibrate")
    return float(np.quantile(errors[free] / std[free], ONE_SIGMA))


def coverage(
    pred: np.ndarray, true: np.ndarray, std: np.ndarray, uncertainty: np.ndarray
) -> dict[str, Any]:
    """How a reported spread covers the errors of ``(N, ...)`` predicted tensors.

    ``components``: the components not fixed by symmetry (``std > 0``);
    ``within_one_sigma`` / ``within_two_sigma``: the share of their errors within one and two
    standard deviations (None without such components); ``rank_correlation``: the Spearman
    correlation of each structure's relative ``uncertainty`` with its relative Frobenius error
    (None where either is constant); ``median_uncertainty``. Structures whose relative
    uncertainty or error is undefined (None, a zero tensor) are left out of the last two.
    """
    from scipy.stats import spearmanr

    pred, true, std = (np.asarray(a, float) for a in (pred, true, std))
    uncertainty = np.array([np.nan if u is None else u for u in uncertainty], float)
    error = np.abs(pred - true)
    free = std > 0  # components the point group does not fix
    n = len(pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.linalg.norm((pred - true).reshape(n, -1), axis=1) / np.linalg.norm(
            true.reshape(n, -1), axis=1
        )
    defined = np.isfinite(uncertainty) & np.isfinite(relative)
    uncertainty, relative = uncertainty[defined], relative[defined]
    return {
        "n": n,
        "components": int(free.sum()),
        "within_one_sigma": float((error[free] <= std[free]).mean()) if free.any() else None,
        "within_two_sigma": float((error[free] <= 2 * std[free]).mean()) if free.any() else None,
        "rank_correlation": float(spearmanr(uncertainty, relative).statistic)
        if defined.sum() > 1 and np.ptp(uncertainty) > 0 and np.ptp(relative) > 0
        else None,
        "median_uncertainty": float(np.median(uncertainty)) if defined.any() else None,
    }


def calibrate(checkpoint: Any, records: Iterable[str | Path], split: str = "val") -> dict[str, Any]:
    """Set ``checkpoint.meta["ensemble"]["std_scale"]`` from the members' errors on ``split``.

    Parameters
    ----------
    checkpoint : Checkpoint
        An ensemble (:func:`crystensor.checkpoint.make_ensemble`).
    records : record files
        Labelled structures that include the checkpoint's ``split`` materials (the record
        files its store was built from); matched by material id.
    split : str
        Whose materials calibrate: the validation split by default (never the test split, on
        which the calibration is then measured).

    Returns
    -------
    dict
        ``std_scale``, ``split``, ``n`` (structures) and ``within_one_sigma_before`` (the share
        before scaling), also stored under ``meta["ensemble"]``.
    """
    from crystensor.data.records import read_records
    from crystensor.prediction import Predictor

    if checkpoint.n_members < 2:
        raise InputError("only an ensemble has a spread to calibrate")
    wanted = set(checkpoint.split.get(split, ()))
    found = {}
    for path in records:
        for record in read_records(path):
            if record.id in wanted and record.id not in found:
                found[record.id] = record
    if len(found) < 10:
        raise InputError(
            f"only {len(found)} of the {len(wanted)} {split} materials are in the record files; "
            "give the record files the model's store was built from"
        )
    ensemble = dict(checkpoint.meta.get("ensemble") or {})
    ensemble.pop("std_scale", None)
    checkpoint.meta["ensemble"] = ensemble  # calibrate the raw spread
    predictor = Predictor(checkpoint, source="ensemble")
    ids = sorted(found)
    results = predictor.predict_results([found[i].pymatgen_structure() for i in ids])
    ok = [(i, r) for i, r in zip(ids, results, strict=True) if r.ok]
    errors = np.stack([r.tensor - np.asarray(found[i].value, float) for i, r in ok])
    std = np.stack([r.std for _, r in ok])
    free = std > 0
    before = float((np.abs(errors)[free] <= std[free]).mean())
    scale = spread_scale(errors, std)
    info = {"std_scale": scale, "split": split, "n": len(ok), "within_one_sigma_before": before}
    checkpoint.meta["ensemble"] = {**ensemble, **info}
    return info
