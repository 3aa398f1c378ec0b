r"""Evaluation metrics of predicted tensors (and scalars) against their targets.

For a batch of ``n`` structures with predicted and true Cartesian tensors :math:`P_s, T_s` of a
kind (:mod:`crystensor.tensors.kinds`) and their Voigt forms :math:`\tilde P_s, \tilde T_s`
(``kind.to_voigt``: 3x3 dielectric, 3x6 piezoelectric, 6x6 elastic, pymatgen's convention):

* **component MAE** (the paper's Figure 3 heatmaps), one per Voigt matrix entry ``(I, J)``:
  :math:`\mathrm{MAE}_{IJ} = \frac{1}{n}\sum_s |\tilde P_{s,IJ} - \tilde T_{s,IJ}|`;
* **MAE** (the paper's Figure 4, "MAE averaged over components"): the mean of
  :math:`\mathrm{MAE}_{IJ}` over *all* entries of the Voigt matrix (36 elastic, 18
  piezoelectric, 9 dielectric). Entries that are equal by index symmetry (``C12`` and ``C21``)
  are both counted, as both appear in the paper's heatmaps; this is the mean absolute error over
  all ``n x entries`` Voigt numbers;
* **Frobenius error** :math:`e_s = \lVert P_s - T_s \rVert_F` over the full Cartesian tensor
  (``3**rank`` components), which, unlike any Voigt-based number, is unchanged when both tensors
  are rotated; ``frobenius_mae`` is its mean over structures;
* **relative Frobenius error** :math:`r_s = e_s / \lVert T_s \rVert_F`; for a zero target
  (common for piezoelectric tensors of centrosymmetric crystals) :math:`r_s = 0` if the
  prediction is exactly zero too, else :math:`+\infty`;
* **EwT** ("energy within threshold", as in MatTen, Wen et al. 2023): the fraction of
  structures with :math:`r_s` *strictly* below 25 %, 10 % and 5 %. A zero target therefore
  counts as a miss unless predicted exactly.

Scalar kinds get MAE, RMSE and the coefficient of determination :math:`R^2`.

Every result is a plain dictionary of Python floats, ints, strings and lists, ready for
``json.dump`` and for a checkpoint's ``metrics``. A number that is not finite (the median of
relative errors when most targets are zero, :math:`R^2` of constant targets) is stored as
``None`` (JSON ``null``) so that the output stays strict JSON.

Examples
--------
>>> import numpy as np
>>> true = np.stack([np.diag([4.0, 2.0, 2.0]), 10.0 * np.eye(3)])  # two dielectric tensors
>>> pred = true.copy()
>>> pred[0, 0, 0] += 1.0                       # eps_xx of the first one is off by 1
>>> m = tensor_metrics(pred, true, "dielectric", crystal_systems=["tetragonal", "cubic"])
>>> m["component_mae"][0][0], round(m["mae"], 4)  # 1/2 in xx; mean over the 9 entries
(0.5, 0.0556)
>>> m["ewt"]                                   # relative errors 1/sqrt(24) = 0.204 and 0
{'25': 1.0, '10': 0.5, '5': 0.5}
>>> list(m["per_crystal_system"])
['tetragonal', 'cubic']
>>> format_metrics(m)[0]
'dielectric (n = 2): MAE 0.0556 (mean of 9 Voigt components), largest 0.5 (xx)'
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from crystensor.errors import InputError
from crystensor.tensors.kinds import KINDS, PROPERTIES, TensorKind

__all__ = [
    "CRYSTAL_SYSTEMS",
    "EWT_THRESHOLDS",
    "UNKNOWN_SYSTEM",
    "check_predictions",
    "format_metrics",
    "resolve_kind",
    "tensor_metrics",
]

logger = logging.getLogger(__name__)

#: The seven crystal systems (lowercase, as spglib and pymatgen name them), from the lowest to
#: the highest symmetry as in the International Tables; ``per_crystal_system`` uses this order.
CRYSTAL_SYSTEMS: tuple[str, ...] = (
    "triclinic",
    "monoclinic",
    "orthorhombic",
    "tetragonal",
    "trigonal",
    "hexagonal",
    "cubic",
)
#: Group of structures whose crystal system is ``""`` or ``None`` (a store's "unknown"); last.
UNKNOWN_SYSTEM = "unknown"
#: EwT keys and their thresholds on the relative Frobenius error (a hit is strictly below).
EWT_THRESHOLDS: dict[str, float] = {"25": 0.25, "10": 0.10, "5": 0.05}


def resolve_kind(kind: str | TensorKind, units: str | None = None) -> tuple[TensorKind, str]:
    """The :class:`TensorKind` and units meant by a kind or a property name.

    Parameters
    ----------
    kind : str or TensorKind
        A kind (``"elastic"``, ``"scalar"``, ...) or a property (``"band-gap"``, ...) of
        :mod:`crystensor.tensors.kinds`; a property also supplies the units of a scalar.
    units : str, optional
        Overrides the registry's units.

    Returns
    -------
    (TensorKind, str)

    >>> k, u = resolve_kind("band-gap")
    >>> k.name, u
    ('scalar', 'eV')
    """
    if isinstance(kind, TensorKind):
        found, registry_units = kind, kind.units
    elif isinstance(kind, str) and kind in KINDS:
        found, registry_units = KINDS[kind], KINDS[kind].units
    elif isinstance(kind, str) and kind in PROPERTIES:
        prop = PROPERTIES[kind]
        found, registry_units = prop.tensor_kind, prop.units
    else:
        raise InputError(
            f"unknown tensor kind or property {kind!r}; choose a kind ({', '.join(KINDS)}) "
            f"or a property ({', '.join(PROPERTIES)})"
        )
    return found, registry_units if units is None else units


def _check_one(name: str, value: Any, kind: TensorKind) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise InputError(
            f"{name} has dtype {array.dtype}; expected real numbers (convert with "
            f"np.asarray({name}, dtype=float))"
        )
    expected = ("n", *kind.cartesian_shape)
    if array.ndim != len(expected) or array.shape[1:] != kind.cartesian_shape:
        hint = ""
        if kind.rank == 0 and array.ndim == 2 and array.shape[1] == 1:
            hint = f"; flatten it with {name}.reshape(-1)"
        elif kind.rank > 2 and array.shape[1:] == kind.voigt_shape:
            hint = (
                f"; it looks like Voigt form, convert it with "
                f"get_kind({kind.name!r}).from_voigt({name})"
            )
        raise InputError(
            f"{name} has shape {array.shape}; a batch of {kind.name} values must have shape "
            f"({', '.join(map(str, expected))}) in Cartesian form{hint}"
        )
    if len(array) == 0:
        raise InputError(f"{name} is empty; metrics need at least one structure")
    array = array.astype(np.float64)
    bad = ~np.isfinite(array.reshape(len(array), -1)).all(axis=1)
    if bad.any():
        raise InputError(
            f"{name} has non-finite values (NaN or inf) in {int(bad.sum())} of {len(array)} "
            f"structures, the first at index {int(np.argmax(bad))}; drop or fix those "
            "structures before computing metrics"
        )
    return array


def check_predictions(
    pred: Any, true: Any, kind: str | TensorKind
) -> tuple[np.ndarray, np.ndarray]:
    """Check a batch of predictions and targets and return them as float64 arrays.

    Parameters
    ----------
    pred, true : array-like ``(n, 3, ..., 3)``, or ``(n,)`` for a scalar kind
        Cartesian tensors (``3**rank`` components each) in the kind's units.
    kind : str or TensorKind
        See :func:`resolve_kind`.

    Returns
    -------
    (pred, true) : float64 arrays of the same shapes

    Raises
    ------
    crystensor.errors.InputError
        (a ``ValueError``) if a shape does not fit the kind, the two disagree, the batch is
        empty, or a value is NaN or infinite.
    """
    tensor_kind, _ = resolve_kind(kind)
    p = _check_one("pred", pred, tensor_kind)
    t = _check_one("true", true, tensor_kind)
    if p.shape != t.shape:
        raise InputError(
            f"pred has {len(p)} structures but true has {len(t)}; pass one prediction per target"
        )
    return p, t


def _system_groups(crystal_systems: Sequence[Any], n: int) -> dict[str, np.ndarray]:
    """Indices of the structures of each crystal system present, in :data:`CRYSTAL_SYSTEMS`
    order with :data:`UNKNOWN_SYSTEM` last."""
    if isinstance(crystal_systems, str | bytes) or len(crystal_systems) != n:
        got = "a string" if isinstance(crystal_systems, str | bytes) else len(crystal_systems)
        raise InputError(
            f"crystal_systems must be a sequence with one name per structure ({n}), got {got}"
        )
    names = []
    for i, value in enumerate(crystal_systems):
        if isinstance(value, bytes):  # string datasets read back from HDF5
            value = value.decode()
        if value is None or (isinstance(value, str) and value.strip() == ""):
            names.append(UNKNOWN_SYSTEM)
            continue
        name = value.strip().lower() if isinstance(value, str) else None
        if name not in (*CRYSTAL_SYSTEMS, UNKNOWN_SYSTEM):
            raise InputError(
                f"crystal_systems[{i}] is {value!r}; use one of {', '.join(CRYSTAL_SYSTEMS)} "
                "(or '' for unknown)"
            )
        names.append(name)
    labels = np.array(names)
    return {
        system: np.flatnonzero(labels == system)
        for system in (*CRYSTAL_SYSTEMS, UNKNOWN_SYSTEM)
        if (labels == system).any()
    }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _relative_errors(errors: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """``errors / norms`` with ``0/0 = 0`` and ``x/0 = inf`` (a zero target)."""
    out = np.full_like(errors, np.inf)
    nonzero = norms > 0
    out[nonzero] = errors[nonzero] / norms[nonzero]
    out[~nonzero & (errors == 0)] = 0.0
    return out


def _ewt(relative: np.ndarray) -> dict[str, float]:
    return {key: float(np.mean(relative < level)) for key, level in EWT_THRESHOLDS.items()}


def _tensor_summary(abs_voigt: np.ndarray, frob: np.ndarray, relative: np.ndarray) -> dict:
    return {
        "n": len(frob),
        "mae": float(abs_voigt.mean()),
        "frobenius_mae": float(frob.mean()),
        "ewt": _ewt(relative),
    }


def _independent(component: np.ndarray) -> np.ndarray:
    """The entries of a Voigt-shaped array that are independent for the index symmetry: the
    upper triangle of a square (symmetric) Voigt matrix (21 of 36 elastic, 6 of 9 dielectric),
    every entry otherwise (18 piezoelectric)."""
    if component.ndim == 2 and component.shape[0] == component.shape[1]:
        return component[np.triu_indices(component.shape[0])]
    return component.reshape(-1)


def _axis_labels(kind: TensorKind) -> dict[str, list[str]]:
    # The registry labels each Voigt entry row character + column character ("12", "xy").
    grid = np.array(kind.voigt_labels()).reshape(kind.voigt_shape)
    return {
        "rows": [str(label)[0] for label in grid[:, 0]],
        "columns": [str(label)[1] for label in grid[0, :]],
    }


def tensor_metrics(
    pred: Any,
    true: Any,
    kind: str | TensorKind,
    crystal_systems: Sequence[str] | None = None,
    *,
    units: str | None = None,
) -> dict[str, Any]:
    """Per-component Voigt MAE, Frobenius errors and EwT of predictions (see module docstring).

    Parameters
    ----------
    pred, true : array-like ``(n, 3, ..., 3)``, or ``(n,)`` for a scalar kind
        Predicted and reference Cartesian tensors, in the kind's units (GPa elastic, C/m^2
        piezoelectric, unitless dielectric).
    kind : str or TensorKind
        A tensor kind or a property name (:func:`resolve_kind`).
    crystal_systems : sequence of str, optional
        ``(n,)`` crystal system of each structure (lowercase names of
        :data:`CRYSTAL_SYSTEMS`, ``""`` for unknown); adds ``per_crystal_system``.
    units : str, optional
        Units to report instead of the registry's (for a scalar given by kind name).

    Returns
    -------
    dict
        For a tensor kind: ``kind``, ``units``, ``n``, ``voigt_labels`` (``{"rows": [...],
        "columns": [...]}``), ``component_mae`` (Voigt-shaped list of lists, units),
        ``mae`` (mean of ``component_mae`` over all its entries), ``mae_independent`` (over the
        independent ones: the upper triangle of a square Voigt matrix), ``max_component_mae``
        and its label ``max_component``, ``frobenius_mae`` (units), ``relative_frobenius_median``
        (fraction, ``None`` if infinite), ``ewt`` (``{"25", "10", "5"}`` -> fraction),
        ``n_zero_target`` (targets with zero norm) and, with ``crystal_systems``,
        ``per_crystal_system`` ``{system: {n, mae, frobenius_mae, ewt}}``.

        For a scalar kind: ``kind``, ``units``, ``n``, ``mae``, ``rmse``, ``r2`` (``None`` for
        constant targets) and ``per_crystal_system`` ``{system: {n, mae}}``.

    Raises
    ------
    crystensor.errors.InputError
        (a ``ValueError``) for shapes that do not fit the kind or each other, non-finite
        values, or a bad ``crystal_systems``.
    """
    tensor_kind, units = resolve_kind(kind, units)
    p, t = check_predictions(pred, true, tensor_kind)
    n = len(p)
    groups = None if crystal_systems is None else _system_groups(crystal_systems, n)
    out: dict[str, Any] = {"kind": tensor_kind.name, "units": units, "n": n}

    if tensor_kind.rank == 0:
        error = p - t
        ss_tot = float(np.sum((t - t.mean()) ** 2))
        out["mae"] = float(np.mean(np.abs(error)))
        out["rmse"] = float(np.sqrt(np.mean(error**2)))
        out["r2"] = 1.0 - float(np.sum(error**2)) / ss_tot if ss_tot > 0 else None
        if groups is not None:
            out["per_crystal_system"] = {
                system: {"n": len(idx), "mae": float(np.mean(np.abs(error[idx])))}
                for system, idx in groups.items()
            }
        return out

    abs_voigt = np.abs(tensor_kind.to_voigt(p) - tensor_kind.to_voigt(t))  # (n, *voigt_shape)
    frob = np.linalg.norm((p - t).reshape(n, -1), axis=1)  # (n,)
    target_norm = np.linalg.norm(t.reshape(n, -1), axis=1)  # (n,)
    relative = _relative_errors(frob, target_norm)  # (n,)
    component = abs_voigt.mean(axis=0)  # voigt_shape
    worst = int(np.argmax(component))
    out.update(
        voigt_labels=_axis_labels(tensor_kind),
        component_mae=component.tolist(),
        mae=float(component.mean()),
        mae_independent=float(_independent(component).mean()),
        max_component_mae=float(component.flat[worst]),
        max_component=tensor_kind.voigt_labels()[worst],
        frobenius_mae=float(frob.mean()),
        relative_frobenius_median=_finite_or_none(np.median(relative)),
        ewt=_ewt(relative),
        n_zero_target=int(np.sum(target_norm == 0)),
    )
    if tensor_kind.rank % 2:
        out["sign_agnostic"] = _sign_agnostic(p, t, tensor_kind, frob, target_norm)
    if groups is not None:
        out["per_crystal_system"] = {
            system: _tensor_summary(abs_voigt[idx], frob[idx], relative[idx])
            for system, idx in groups.items()
        }
    logger.debug("%s metrics on %d structures: MAE %.4g %s", tensor_kind.name, n, out["mae"], units)
    return out


def _sign_agnostic(
    p: np.ndarray, t: np.ndarray, kind: TensorKind, plus: np.ndarray, target_norm: np.ndarray
) -> dict[str, Any]:
    """Metrics of an odd-rank prediction with each structure's sign chosen to fit best.

    ``plus`` holds the Frobenius errors ``|p - t|`` per structure (already computed by
    :func:`tensor_metrics`). ``sign_agreement`` is the share of structures whose prediction is
    closer to ``T`` than to ``-T``: about 1/2 when the model (or the data) has no grip on the
    sign.
    """
    n = len(p)
    minus = np.linalg.norm((p + t).reshape(n, -1), axis=1)
    sign = np.where(minus < plus, -1.0, 1.0)
    fitted = p * sign.reshape((n,) + (1,) * (p.ndim - 1))
    component = np.abs(kind.to_voigt(fitted) - kind.to_voigt(t)).mean(axis=0)
    frob = np.minimum(plus, minus)
    return {
        "mae": float(component.mean()),
        "frobenius_mae": float(frob.mean()),
        "ewt": _ewt(_relative_errors(frob, target_norm)),
        "sign_agreement": float(np.mean(sign > 0)),
    }


def _num(value: float | None, units: str = "") -> str:
    if value is None:
        return "n/a"
    text = f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return f"{text} {units}" if units else text


def _pct(value: float) -> str:
    return f"{100 * value:.1f} %"


def format_metrics(metrics: dict[str, Any]) -> list[str]:
    """Short human-readable lines summarising a :func:`tensor_metrics` result.

    The first lines are the overall numbers, then one line per crystal system if present.

    Parameters
    ----------
    metrics : dict
        The result of :func:`tensor_metrics` (or the same read back from JSON).

    Returns
    -------
    list of str
    """
    try:
        kind, units, n, mae = metrics["kind"], metrics["units"], metrics["n"], metrics["mae"]
    except (KeyError, TypeError):
        raise InputError(
            "format_metrics needs the dictionary returned by tensor_metrics (with 'kind', "
            f"'units', 'n' and 'mae'), got {type(metrics).__name__}"
        ) from None
    per_system = metrics.get("per_crystal_system") or {}
    if "component_mae" not in metrics:
        lines = [
            f"{kind} (n = {n}): MAE {_num(mae, units)}, RMSE {_num(metrics.get('rmse'), units)}, "
            f"R² {_num(metrics.get('r2'))}"
        ]
        lines += [
            f"  {s} (n = {m['n']}): MAE {_num(m['mae'], units)}" for s, m in per_system.items()
        ]
        return lines

    n_components = sum(len(row) for row in metrics["component_mae"])
    ewt = metrics["ewt"]
    zero = metrics.get("n_zero_target", 0)
    lines = [
        f"{kind} (n = {n}): MAE {_num(mae, units)} (mean of {n_components} Voigt components), "
        f"largest {_num(metrics['max_component_mae'], units)} ({metrics['max_component']})",
        f"Frobenius MAE {_num(metrics['frobenius_mae'], units)}, median relative Frobenius "
        f"error {_num(metrics['relative_frobenius_median'])}",
        ", ".join(f"EwT{key} {_pct(value)}" for key, value in ewt.items())
        + (f" ({zero} targets are zero)" if zero else ""),
    ]
    lines += [
        f"  {s} (n = {m['n']}): MAE {_num(m['mae'], units)}, Frobenius "
        f"{_num(m['frobenius_mae'], units)}, EwT25 {_pct(m['ewt']['25'])}"
        for s, m in per_system.items()
    ]
    return lines
