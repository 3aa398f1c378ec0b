"""Figures of a trained model: component-MAE heatmap, learning curves, parity plot.

Each function renders one figure to memory and then writes it atomically
(:func:`crystensor.io.atomic.atomic_open`), so a failure never leaves a half-written or empty
file under the final name. The format follows the file suffix (``.png`` by default; ``.pdf``,
``.svg`` and the other formats matplotlib's Agg canvas writes also work).

matplotlib is imported inside the functions, so importing this module is cheap. Figures are
built as :class:`matplotlib.figure.Figure` objects drawn by the Agg canvas, without pyplot: no
window opens, and the backend of an interactive session is left alone.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crystensor.errors import InputError
from crystensor.io.atomic import atomic_open
from crystensor.tensors.kinds import TensorKind
from crystensor.train.metrics import check_predictions, resolve_kind

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_component_heatmap", "plot_learning_curves", "plot_parity"]

logger = logging.getLogger(__name__)

_DPI = 150
_HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "val_mae", "lr")


def _new_figure(**kwargs: Any) -> Figure:
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def _write(fig: Figure, path: str | os.PathLike) -> Path:
    """Render ``fig`` to memory in the format of ``path``'s suffix, then write it atomically."""
    target = Path(path)
    fmt = target.suffix.lstrip(".").lower() or "png"
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise InputError(
            f"cannot write a figure to {str(target)!r}: unknown format {fmt!r}; use one of the "
            f"suffixes {', '.join('.' + s for s in sorted(supported))}"
        )
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=_DPI)
    data = buffer.getvalue()
    with atomic_open(target, "wb") as fh:
        fh.write(data)
    logger.info("wrote %s (%d bytes)", target, len(data))
    return target


def _with_units(label: str, units: str) -> str:
    return f"{label} ({units})" if units else label


def plot_component_heatmap(
    metrics: Mapping[str, Any], path: str | os.PathLike, title: str | None = None
) -> Path:
    """Heatmap of the per-component MAE in Voigt notation (the paper's Figure 3).

    Rows and columns are the Voigt indices (1..6; 1..3 for the rows of a piezoelectric tensor,
    x, y, z for a dielectric one), each cell is annotated with its MAE, and the colour bar
    carries the units.

    Parameters
    ----------
    metrics : dict
        A :func:`crystensor.train.metrics.tensor_metrics` result for a tensor kind (or the same
        read back from JSON); uses ``component_mae``, ``voigt_labels``, ``units``, ``kind``,
        ``n`` and ``mae``.
    path : path-like
        File to write (``.png``, ``.pdf``, ``.svg``, ...).
    title : str, optional
        Defaults to the kind, the number of structures and the mean MAE.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    try:
        mae = np.asarray(metrics["component_mae"], dtype=float)  # (rows, columns), units
        rows = list(metrics["voigt_labels"]["rows"])
        columns = list(metrics["voigt_labels"]["columns"])
    except (KeyError, TypeError, ValueError):
        kind = metrics.get("kind") if isinstance(metrics, Mapping) else None
        raise InputError(
            "plot_component_heatmap needs a tensor_metrics result of a tensor kind (with "
            f"'component_mae' and 'voigt_labels'), got one for kind {kind!r}"
        ) from None
    if mae.shape != (len(rows), len(columns)):
        raise InputError(
            f"component_mae has shape {mae.shape} but voigt_labels name {len(rows)} rows and "
            f"{len(columns)} columns; pass an unmodified tensor_metrics result"
        )
    units = str(metrics.get("units", ""))

    fig = _new_figure(figsize=(1.6 + 0.75 * len(columns), 1.0 + 0.7 * len(rows)))
    ax = fig.add_subplot()
    image = ax.imshow(mae, cmap="viridis", vmin=0.0, vmax=float(mae.max()) or 1.0)
    ax.set_xticks(range(len(columns)), labels=columns)
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    # Dark text on the bright (yellow) end of viridis, white elsewhere.
    bright = 0.6 * float(mae.max())
    for (i, j), value in np.ndenumerate(mae):
        ax.text(
            j,
            i,
            f"{value:.3g}",
            ha="center",
            va="center",
            fontsize=8,
            color="black" if value > bright else "white",
        )
    fig.colorbar(image, ax=ax, label=_with_units("MAE", units))
    if title is None:
        title = (
            f"{metrics.get('kind', '')}: component MAE, n = {metrics.get('n', '?')}, "
            f"mean {metrics.get('mae', float(mae.mean())):.3g}"
        )
    ax.set_title(title, fontsize=10)
    return _write(fig, path)


def _history_columns(history: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """``{key: (n_entries,) float array}`` for :data:`_HISTORY_KEYS`, NaN where missing."""
    if isinstance(history, str | bytes | Mapping) or not isinstance(history, Sequence):
        raise InputError(f"history must be a list of per-epoch dicts, got {type(history).__name__}")
    if not history:
        raise InputError("history is empty; train for at least one epoch before plotting")
    columns = {key: np.full(len(history), np.nan) for key in _HISTORY_KEYS}
    for i, entry in enumerate(history):
        if not isinstance(entry, Mapping):
            raise InputError(
                f"history[{i}] is {type(entry).__name__}; each entry must be a dict with keys "
                f"among {', '.join(_HISTORY_KEYS)}"
            )
        for key in _HISTORY_KEYS:
            value = entry.get(key)
            if value is None:
                continue
            try:
                if isinstance(value, str | bytes | bool):
                    raise TypeError
                columns[key][i] = float(value)
            except (TypeError, ValueError):
                raise InputError(
                    f"history[{i}][{key!r}] is {value!r}; expected a number or None"
                ) from None
    # Missing epoch numbers continue from the previous entry (the first epoch is 1).
    epoch = columns["epoch"]
    for i in range(len(epoch)):
        if not np.isfinite(epoch[i]):
            epoch[i] = epoch[i - 1] + 1 if i else 1.0
    return columns


def _plot_series(ax: Any, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> bool:
    """Plot the finite points of ``y`` joined by a line (gaps bridged); False if none."""
    keep = np.isfinite(y)
    if not keep.any():
        return False
    ax.plot(x[keep], y[keep], marker="o" if keep.sum() <= 30 else None, markersize=3, **kwargs)
    return True


def _log_if_positive(ax: Any, *series: np.ndarray) -> None:
    values = np.concatenate([s[np.isfinite(s)] for s in series])
    if values.size and (values > 0).all():
        ax.set_yscale("log")


def plot_learning_curves(
    history: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    *,
    units: str = "",
    title: str | None = None,
) -> Path:
    """Training and validation loss (log scale) and validation MAE against epoch.

    The best epoch (lowest ``val_mae``) is marked on both panels; the learning rate, if
    recorded, is drawn on a second axis of the loss panel.

    Parameters
    ----------
    history : list of dict
        One dict per epoch with keys ``epoch``, ``train_loss``, ``val_loss``, ``val_mae``,
        ``lr``; any may be missing or ``None`` (a missing ``epoch`` continues from the
        previous entry), and NaN or inf values are left out of the lines.
    path : path-like
        File to write (``.png``, ``.pdf``, ``.svg``, ...).
    units : str, optional
        Units of ``val_mae`` for the axis label.
    title : str, optional
        Figure title.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    crystensor.errors.InputError
        If ``history`` is not a non-empty list of dicts of numbers, or has nothing to plot.
    """
    columns = _history_columns(history)
    epoch = columns["epoch"]
    if not any(np.isfinite(columns[k]).any() for k in ("train_loss", "val_loss", "val_mae")):
        raise InputError(
            "history has no finite train_loss, val_loss or val_mae values; nothing to plot"
        )

    fig = _new_figure(figsize=(10.0, 4.0))
    ax_loss, ax_mae = fig.subplots(1, 2)
    _plot_series(ax_loss, epoch, columns["train_loss"], label="train loss", color="C0")
    _plot_series(ax_loss, epoch, columns["val_loss"], label="validation loss", color="C1")
    _log_if_positive(ax_loss, columns["train_loss"], columns["val_loss"])
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    if np.isfinite(columns["lr"]).any():
        ax_lr = ax_loss.twinx()
        _plot_series(ax_lr, epoch, columns["lr"], color="0.5", linestyle=":", label="lr")
        _log_if_positive(ax_lr, columns["lr"])
        ax_lr.set_ylabel("learning rate", color="0.4")
        ax_lr.tick_params(axis="y", colors="0.4")

    val_mae = columns["val_mae"]
    if _plot_series(ax_mae, epoch, val_mae, label="validation MAE", color="C1"):
        best = int(np.nanargmin(np.where(np.isfinite(val_mae), val_mae, np.nan)))
        label = f"best epoch {epoch[best]:g}: {val_mae[best]:.4g}" + (f" {units}" if units else "")
        ax_mae.scatter([epoch[best]], [val_mae[best]], color="C3", zorder=3, label=label)
        for ax in (ax_loss, ax_mae):
            ax.axvline(epoch[best], color="C3", linestyle="--", linewidth=0.8)
    else:
        ax_mae.text(0.5, 0.5, "no validation MAE recorded", ha="center", transform=ax_mae.transAxes)
    ax_mae.set_xlabel("epoch")
    ax_mae.set_ylabel(_with_units("validation MAE", units))
    for ax in (ax_loss, ax_mae):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _write(fig, path)


def plot_parity(
    pred: Any,
    true: Any,
    kind: str | TensorKind,
    path: str | os.PathLike,
    title: str | None = None,
    *,
    units: str | None = None,
) -> Path:
    """Predicted against true value of every Voigt component, with the line ``y = x``.

    All entries of each structure's Voigt matrix (or the scalar) go into one scatter.

    Parameters
    ----------
    pred, true : array-like ``(n, 3, ..., 3)``, or ``(n,)`` for a scalar kind
        Cartesian tensors in the kind's units, checked as by
        :func:`crystensor.train.metrics.check_predictions`.
    kind : str or TensorKind
        A tensor kind or a property name (a property gives a scalar its units).
    path : path-like
        File to write (``.png``, ``.pdf``, ``.svg``, ...).
    title : str, optional
        Defaults to the kind and the number of structures.
    units : str, optional
        Overrides the registry's units on the axes.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    tensor_kind, units = resolve_kind(kind, units)
    p, t = check_predictions(pred, true, tensor_kind)
    x = np.ravel(tensor_kind.to_voigt(t))  # (n * voigt entries,)
    y = np.ravel(tensor_kind.to_voigt(p))
    low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    pad = 0.05 * (high - low) or max(abs(high), 1.0) * 0.05
    limits = (low - pad, high + pad)

    fig = _new_figure(figsize=(5.0, 5.0))
    ax = fig.add_subplot()
    ax.plot(limits, limits, color="black", linewidth=0.8, linestyle="--", zorder=1)
    alpha = float(np.clip(30.0 / math.sqrt(x.size), 0.1, 0.8))
    ax.scatter(x, y, s=6, alpha=alpha, color="C0", edgecolors="none", rasterized=True, zorder=2)
    ax.set_xlim(limits)
    ax.set_ylim(limits)
    ax.set_aspect("equal")
    ax.set_xlabel(_with_units("true", units))
    ax.set_ylabel(_with_units("predicted", units))
    mae = float(np.mean(np.abs(x - y)))
    n_components = x.size // len(p)
    ax.text(
        0.04,
        0.96,
        f"MAE {mae:.3g}{' ' + units if units else ''}\n"
        f"{len(p)} structures x {n_components} component{'s' if n_components > 1 else ''}",
        transform=ax.transAxes,
        va="top",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    name = kind if isinstance(kind, str) else tensor_kind.name
    ax.set_title(title if title is not None else f"{name}: predicted vs true (n = {len(p)})")
    return _write(fig, path)
