"""What the benchmark scripts that compare training runs share: a run's figures and a row.

Imported by the scripts beside it (``python benchmarks/NAME.py`` puts this directory first on
``sys.path``).
"""

from __future__ import annotations

from typing import Any


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: ``-`` for None, ``digits`` significant digits for a float."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def figures(m: dict[str, Any]) -> dict[str, Any]:
    """The figures of one split's metrics (``metrics.json``'s ``val`` or ``test``); MAE and EwT
    are the sign-agnostic ones where the run has them (piezoelectric)."""
    signed = m.get("sign_agnostic") or m
    return {
        "n": m["n"],
        "mae": signed["mae"],
        "mae_independent": m.get("mae_independent"),
        "rel_frobenius_median": m["relative_frobenius_median"],
        "ewt25": signed["ewt"]["25"],
        "ewt10": signed["ewt"]["10"],
    }


HEAD = (
    "| split | model | val MAE | test MAE | test MAE indep. | test median rel. Frob. "
    "| test EwT25 | test EwT10 | {last} | epochs (best) |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def row(split: str, model: str, r: dict[str, Any], last: Any) -> str:
    """One markdown row of a run's summary ``r`` (``val``/``test`` figures, ``epochs``,
    ``best_epoch``); ``last`` fills the column before the epochs."""
    val, test = r.get("val", {}), r.get("test", {})
    return (
        f"| {split} | {model} | {fmt(val.get('mae'))} | {fmt(test.get('mae'))} | "
        f"{fmt(test.get('mae_independent'))} | {fmt(test.get('rel_frobenius_median'))} | "
        f"{fmt(100 * test['ewt25'], 3)} % | {fmt(100 * test['ewt10'], 3)} % | "
        f"{fmt(last)} | {r['epochs']} ({r['best_epoch']}) |"
    )
