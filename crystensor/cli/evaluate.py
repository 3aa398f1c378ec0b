"""``crystensor evaluate``: the metrics of a model on labelled data (records or a graph store)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crystensor.cli.common import console, dumps, err_console, guarded, log
from crystensor.cli.options import (
    TABLE_JSON,
    AngleTolerance,
    Device,
    Format,
    JsonFlag,
    MetricsFormat,
    ReportFile,
    SymPrec,
    device_name,
    resolve_format,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

# failures listed in the table (all of them are in the JSON)
_MAX_LISTED = 20
_LEGEND = (
    "MAE ind: over the independent Voigt components; rel Frob: median relative Frobenius "
    "error; EwT25/10/5: share of structures with a relative error below 25/10/5 %"
)


class Split(str, Enum):
    train = "train"
    val = "val"
    test = "test"
    all = "all"


@guarded
def evaluate(
    model: Annotated[
        str,
        typer.Argument(
            help="A checkpoint (best.pt) or a shipped model's name: elastic, dielectric, "
            "dielectric-electronic, piezoelectric.",
            show_default=False,
        ),
    ],
    data: Annotated[
        Path,
        typer.Argument(
            help="Labelled data of the model's target: a records file of crystensor fetch "
            "(.jsonl.gz, .jsonl) or a graph store of crystensor featurize (.h5).",
            show_default=False,
        ),
    ],
    split: Annotated[
        Split | None,
        typer.Option(
            "--split",
            help="Which graphs or records: train, val, test or all. Default: test when the data "
            "shares materials with the model's training split (the model's own split, by "
            "material id), else all (a store's saved split for train/val/test).",
            show_default=False,
        ),
    ] = None,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Records: score the network's output untouched, not projected onto the point "
            "group or made physically valid (a store is always scored so).",
        ),
    ] = False,
    fmt: MetricsFormat = None,
    as_json: JsonFlag = False,
    output: ReportFile = None,
    device: Device = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            min=1,
            help="Structures per forward pass (default 8 for records, as predict; 16 for a store).",
            show_default=False,
        ),
    ] = None,
    symprec: SymPrec = 0.01,
    angle_tolerance: AngleTolerance = None,
) -> None:
    """Print the metrics of a model on labelled data you bring.

    Records are predicted as crystensor predict reports them (projected onto the point group and
    made physically valid; --raw: the network's output), a graph store with the network's output
    as in training. The metrics: MAE over all and over the independent Voigt components,
    Frobenius MAE, median relative Frobenius error, EwT25/10/5 (share of structures with a
    relative error below 25, 10, 5 %), per crystal system, MAE per Voigt component, the same
    for predicting the zero tensor, for a piezoelectric model the sign-agnostic metrics, for
    records the metrics of structures with and without each warning of predict, and for a store
    of several record files per file.

    Structures that cannot be predicted are counted and listed; the others are evaluated. Data
    of another target than the model's, a missing or empty file, or an unknown model name give
    one line and exit code 2.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in predict: before torch loads
    from crystensor.evaluation import evaluate as evaluate_model
    from crystensor.io.atomic import check_writable, plain_suffix

    if output is not None:  # before any work: an output that cannot be written fails now
        check_writable(output, "output")
    suffix = Format.json if output and plain_suffix(output) == ".json" else Format.table
    fmt = resolve_format(fmt, as_json, TABLE_JSON, "evaluate", suffix)
    device = device_name(device)
    with _progress_bar() as progress:
        result = evaluate_model(
            model,
            data,
            split=None if split is None else split.value,
            raw=raw,
            device=device,
            batch_size=batch_size,
            symprec=symprec,
            angle_tolerance=angle_tolerance,
            progress=progress,
        )
    _emit(dumps(result) if fmt == Format.json else _report(result), output)


@contextlib.contextmanager
def _progress_bar() -> Iterator[Callable[[int, int], None]]:
    """A transient progress bar on stderr when it is a terminal; a no-op otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "evaluating",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    task = bar.add_task("evaluate", total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _emit(content: str | Callable[[Console], None], output: Path | None) -> None:
    """Text, or a rich drawing (to the terminal, or as plain text to a file)."""
    if callable(content):
        if output is None:
            content(console)
            return
        import io

        from rich.console import Console

        plain = Console(file=io.StringIO(), width=120, color_system=None, force_terminal=False)
        content(plain)
        content = plain.file.getvalue()
    if output is None:
        sys.stdout.write(content)
        return
    from crystensor.io.atomic import atomic_write_text

    atomic_write_text(output, content)
    log.info("wrote %s", output)


# -- the table --------------------------------------------------------------------------------


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _report(r: dict[str, Any]) -> Callable[[Console], None]:
    def draw(out: Console) -> None:
        from rich.markup import escape

        for line in _header_lines(r):
            out.print(line, highlight=False)
        m = r["metrics"]
        if "component_mae" not in m:  # a scalar model on its store
            from crystensor.train.metrics import format_metrics

            out.print(escape("\n".join(format_metrics(m))), highlight=False)
            out.print(f"Zero baseline: MAE {_num(r['zero_baseline']['mae'])} {m['units']}")
        else:
            out.print(_metrics_table(r))
            out.print(_components_table(m))
        if r["by_warning"]:
            out.print(_warnings_table(r["by_warning"], m["units"]))
        if r["by_source"]:
            out.print(_sources_table(r["by_source"], m["units"]))
        _print_failures(out, r["failures"])

    return draw


def _header_lines(r: dict[str, Any]) -> list[str]:
    from rich.markup import escape

    from crystensor.evaluation import describe_model

    counts, split = r["counts"], r["split"]
    items = "records" if r["data_format"] == "records" else "graphs"
    how = {
        "pipeline": "tensors as predict reports them (projected onto the point group, made "
        "physically valid)",
        "raw": "the network's output untouched (--raw)",
        "network": "the network's output on the stored graphs",
    }[r["tensors"]]
    whose = {"model": "the model's own split, by material id", "store": "the store's split"}
    lines = [
        escape(
            f"Evaluated {describe_model(r['model'])} ({r['arch']}, target {r['target']}) on "
            f"{r['data']}"
        ),
        escape(f"{items.capitalize()}: {how}"),
        escape(
            f"Split {split['name']}"
            + (f" ({whose[split['source']]})" if split["source"] else "")
            + f": {split['n']} of {split['of']} {items}; {counts['evaluated']} evaluated"
            + (f", {counts['failed']} failed" if counts["failed"] else "")
        ),
    ]
    seen = [
        f"{counts[f'in_model_{name}']} in the model's {word} split"
        for name, word in (("train", "training"), ("val", "validation"))
        if counts[f"in_model_{name}"]
    ]
    if seen:
        lines.append(
            f"[yellow]Of these, {' and '.join(seen)}: their errors are optimistic (the model "
            "learnt from or was selected on them)[/]"
        )
    if r["model_caveat"]:
        lines.append(f"[yellow]Caveat of this model: {escape(r['model_caveat'])}[/]")
    return lines


def _table(title: str, first: str, columns: tuple[str, ...], caption: str | None = None) -> Table:
    """A compact table (no vertical rules) that fits 80 columns."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=title,
        title_justify="left",
        caption=caption,
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column(first, no_wrap=True)
    for name in columns:
        table.add_column(name, justify="right")
    return table


def _metrics_table(r: dict[str, Any]) -> Table:
    m = r["metrics"]
    units = f" [{m['units']}]" if m["units"] else ""
    columns = ("n", "MAE", "MAE ind", "Frob MAE", "rel Frob", "EwT25", "EwT10", "EwT5")
    table = _table(f"{r['target']} metrics{units}", "", columns, _LEGEND)

    def row(label: str, s: dict[str, Any], style: str | None = None) -> None:
        ewt = s.get("ewt", {})
        cells = [
            str(s["n"]),
            _num(s["mae"]),
            _num(s["mae_independent"]) if "mae_independent" in s else "",
            _num(s["frobenius_mae"]),
            _pct(s["relative_frobenius_median"]) if "relative_frobenius_median" in s else "",
            *(_pct(ewt.get(k)) for k in ("25", "10", "5")),
        ]
        table.add_row(label, *cells, style=style)

    row("all", m, "bold")
    if "sign_agnostic" in m:
        row("either sign", {"n": m["n"], **m["sign_agnostic"]})
    row("zero tensor", r["zero_baseline"], "dim")
    table.add_section()
    for system, s in (m.get("per_crystal_system") or {}).items():
        row(system, s)
    return table


def _components_table(m: dict[str, Any]) -> Table:
    """MAE per Voigt component; the exact zeros of the symmetry (to rounding) shown as 0."""
    import numpy as np

    values = np.asarray(m["component_mae"])
    units = f" [{m['units']}]" if m["units"] else ""
    labels = m["voigt_labels"]
    table = _table(f"MAE per Voigt component{units}", "", tuple(labels["columns"]))
    tiny = 1e-9 * float(values.max(initial=0.0))
    for label, row in zip(labels["rows"], values, strict=True):
        table.add_row(label, *("0" if v <= tiny else _num(float(v)) for v in row))
    return table


def _warnings_table(by_warning: dict[str, Any], units: str) -> Table:
    suffix = f" [{units}]" if units else ""
    columns = ("flagged", "MAE", "EwT25", "others", "MAE", "EwT25")
    table = _table(f"By the warnings of predict{suffix}", "warning", columns)
    for code, groups in by_warning.items():
        cells = []
        for group in ("flagged", "not_flagged"):
            s = groups[group]
            summary = [str(s["n"]), _num(s["mae"]), _pct(s["ewt"]["25"])] if s else ["0", "", ""]
            cells += summary
        table.add_row(code, *cells)
    return table


def _sources_table(by_source: dict[str, Any], units: str) -> Table:
    suffix = f" [{units}]" if units else ""
    table = _table(f"By source file{suffix}", "file", ("n", "MAE", "Frob MAE", "EwT25"))
    for name, s in by_source.items():
        ewt = s.get("ewt") or {}
        table.add_row(
            name, str(s["n"]), _num(s["mae"]), _num(s.get("frobenius_mae")), _pct(ewt.get("25"))
        )
    return table


def _print_failures(out: Console, failures: list[dict[str, Any]]) -> None:
    if not failures:
        return
    from rich.markup import escape

    out.print(f"[yellow]{len(failures)} could not be evaluated:[/]")
    for f in failures[:_MAX_LISTED]:
        formula = f" ({f['formula']})" if f.get("formula") else ""
        out.print(escape(f"  {f['id']}{formula}: {f['error']}"), highlight=False)
    if len(failures) > _MAX_LISTED:
        out.print(f"  ... and {len(failures) - _MAX_LISTED} more (all of them with --format json)")
