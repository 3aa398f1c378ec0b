"""``crystensor fetch``: import a dataset into crystensor's record format (JSON Lines)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crystensor.cli.common import console, dumps, err_console, guarded
from crystensor.cli.options import (
    TABLE_JSON,
    AngleTolerance,
    Format,
    JsonFlag,
    PrintFormat,
    SymPrec,
    resolve_format,
)
from crystensor.data.fetch import PATHLESS_SOURCES, SOURCES

if TYPE_CHECKING:
    from crystensor.data.fetch import FetchReport

# The property names are not imported from crystensor.tensors.kinds here: that module needs
# numpy, and `crystensor --help` must stay light. tests/cli/test_fetch.py checks this list
# against the registry, and the library rejects unknown names with the registry's own list.
TARGET_HELP = (
    "Property to import: elastic, dielectric, dielectric-electronic, piezoelectric, band-gap, "
    "formation-energy, bulk-modulus, shear-modulus."
)
TARGET_ALIASES_HELP = " (bandgap is accepted for band-gap)"
# rejected entries listed under the summary table (all of them are in the rejects file)
SHOWN_REJECTIONS = 20
SOURCE_HELP = (
    f"Where the data comes from: {', '.join(SOURCES)}. 'mp' downloads from the Materials "
    "Project; the others read --input."
)
INPUT_HELP = (
    "The source's file or folder: a matminer CSV (matminer-csv), StrainTensorNet's JSON "
    "(straintensornet), an extended XYZ file (extxyz), a folder of VASP runs (vasp), a JSON file "
    f"of structures and values (json). Not used by {', '.join(sorted(PATHLESS_SOURCES))}."
)

log = logging.getLogger("crystensor")


@guarded
def fetch(
    target: Annotated[
        str,
        typer.Option("--target", "-t", help=TARGET_HELP + TARGET_ALIASES_HELP, show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help=(
                "Records file to write (JSON Lines, gzip-compressed if it ends in .gz); an "
                "existing one is replaced only with --force. The dropped entries go to "
                "<stem>.fetch-rejects.jsonl beside it. Both are written atomically (a symbolic "
                "link is written through to its target, a FIFO directly)."
            ),
            dir_okay=False,
            show_default=False,
        ),
    ],
    source: Annotated[str, typer.Option("--source", "-s", help=SOURCE_HELP)] = "mp",
    input_path: Annotated[
        Path | None, typer.Option("--input", "-i", help=INPUT_HELP, show_default=False)
    ] = None,
    tolerance: Annotated[
        float,
        typer.Option(
            "--tolerance",
            help=(
                "Largest accepted symmetry violation of a tensor, max_g max|g.T - T| / max|T| "
                "under its structure's point group (0.05 = 5 %)."
            ),
        ),
    ] = 0.05,
    symprec: SymPrec = 0.01,
    angle_tolerance: AngleTolerance = 5.0,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help=(
                "Name of the value: the info key of each extended XYZ frame (e.g. eps), or the "
                "field of each JSON entry (a dotted path reaches nested fields)."
            ),
            show_default=False,
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="MP_API_KEY",
            help="Materials Project API key (default: $MP_API_KEY). Never printed or logged.",
            show_default=False,
        ),
    ] = None,
    endpoint: Annotated[
        str | None,
        typer.Option("--endpoint", help="Materials Project API URL (default: mp-api's own)."),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Keep downloaded pages here so an interrupted download resumes (mp).",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="Read only the first N entries (a quick look)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing records file.")
    ] = False,
    fmt: PrintFormat = None,
    as_json: JsonFlag = False,
) -> None:
    """Import a dataset: tensors in their structure's frame, checked and symmetrised.

    Reads the source, checks every entry (duplicate ids, NaN, shapes, disordered or
    non-periodic structures), measures each tensor's symmetry violation under its structure's
    point group, drops entries above --tolerance, and writes the point-group-symmetrised
    tensors as dataset records. Prints a summary (read / kept / rejected by reason, and the
    first rejected entries with their reasons). The dropped entries are listed in
    <stem>.fetch-rejects.jsonl beside the records file, also when none passed (then no records
    file is written). Exit code 2 on bad input or an output that cannot be written (checked
    first), with nothing written.
    """
    from crystensor.data.fetch import check_outputs
    from crystensor.data.fetch import fetch as run_fetch
    from crystensor.data.sources import FetchOptions

    fmt = resolve_format(fmt, as_json, TABLE_JSON, "fetch")
    check_outputs(output, overwrite=force)

    show = err_console.is_terminal and log.isEnabledFor(logging.WARNING)
    with _progress(enabled=show) as bar:
        task = bar.add_task(f"{source}: {target}", total=None)

        def on_progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        options = FetchOptions(
            api_key=api_key,
            endpoint=endpoint,
            key=key,
            cache_dir=cache_dir,
            progress=on_progress,
        )
        report = run_fetch(
            target,
            source,
            input_path,
            output,
            tolerance=tolerance,
            symprec=symprec,
            angle_tolerance=angle_tolerance,
            limit=limit,
            options=options,
            overwrite=force,
        )
    if fmt == Format.json:
        sys.stdout.write(dumps(report.as_dict()))
    else:
        console.print(_summary(report))


def _progress(enabled: bool) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not enabled,
        transient=True,
    )


def _summary(report: FetchReport) -> Any:
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{report.target} from {report.source}", title_justify="left")
    table.add_column("entries")
    table.add_column("count", justify="right")
    table.add_row("read", str(report.read))
    table.add_row("[green]kept[/]", str(report.kept))
    table.add_row("[red]rejected[/]", str(report.rejected))
    for reason, count in report.rejected_by_reason.items():
        table.add_row(f"  {escape(reason)}", str(count))
    read_from = f"read {Path(report.input).name}, " if report.input else ""
    footer = (
        f"{read_from}wrote {report.output} and {report.rejects.name} "
        f"(tolerance {100 * report.tolerance:g} %, symprec {report.symprec:g}, "
        f"{report.seconds:.1f} s)"
    )
    parts: list[Any] = [table, _rejections(report)] if report.rejections else [table]
    return Group(*parts, f"[dim]{escape(footer)}[/]")


def _rejections(report: FetchReport) -> Any:
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Rejected entries", title_justify="left")
    table.add_column("id", overflow="fold")
    table.add_column("reason", overflow="fold")
    for rejected in report.rejections[:SHOWN_REJECTIONS]:
        table.add_row(escape(rejected.id), escape(rejected.reason))
    more = len(report.rejections) - SHOWN_REJECTIONS
    if more <= 0:
        return table
    return Group(table, f"... and {more} more in {report.rejects.name}")
