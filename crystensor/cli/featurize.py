"""``crystensor featurize``: dataset records -> HDF5 graph store (or merge stores with --merge)."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crystensor.cli.common import console, emit_json, err_console, guarded, log
from crystensor.cli.options import TABLE_JSON, Format, JsonFlag, PrintFormat, resolve_format
from crystensor.errors import InputError

if TYPE_CHECKING:
    from crystensor.data.featurize import FeaturizeReport

SHOWN_REJECTIONS = 20
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@guarded
def featurize(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help=(
                "The record file(s) (JSON Lines from 'crystensor fetch', .gz allowed), combined "
                "in the order given (see --dedupe); with --merge, the graph stores to combine."
            ),
            metavar="RECORDS | STORES",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help=(
                "The HDF5 graph store to write, e.g. graphs.h5 (a regular file; an existing "
                "one is replaced only with --force). Rejected records go to "
                "<stem>.featurize-rejects.jsonl beside it."
            ),
            dir_okay=False,
        ),
    ] = None,
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            "-t",
            help=(
                "Property of the records: elastic, dielectric, dielectric-electronic, "
                "piezoelectric, band-gap, formation-energy, bulk-modulus, shear-modulus "
                "(bandgap is accepted for band-gap)."
            ),
        ),
    ] = None,
    cutoff: Annotated[
        float | None,
        typer.Option("--cutoff", help="Neighbour radius in Angstrom.", show_default="5.0"),
    ] = None,
    auto_cutoff: Annotated[
        bool,
        typer.Option(
            "--auto-cutoff",
            help="Grow the radius (1 A steps, up to --max-cutoff) for a structure with an "
            "isolated atom instead of rejecting it.",
        ),
    ] = False,
    max_cutoff: Annotated[
        float | None,
        typer.Option("--max-cutoff", help="Largest radius for --auto-cutoff.", show_default="10.0"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-j", min=1, help="Processes building graphs.", show_default="1"),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            metavar="I/N",
            help=(
                "Build only slice I of N (0 <= I < N) of the records of one file; combine with "
                "--merge."
            ),
        ),
    ] = None,
    dedupe: Annotated[
        str | None,
        typer.Option(
            "--dedupe",
            metavar="id|structure",
            help=(
                "Which later records are duplicates of earlier ones: 'id' (same id) or "
                "'structure' (also the same crystal: reduced formula, space group and a pymatgen "
                "StructureMatcher fit; for sources without shared ids). The first copy is kept."
            ),
            show_default="id",
        ),
    ] = None,
    merge: Annotated[
        bool,
        typer.Option("--merge", help="Combine the graph stores given as arguments into --output."),
    ] = False,
    split: Annotated[
        str | None,
        typer.Option(
            "--split",
            metavar="random|family",
            help=(
                "How the 70/15/15 train/val/test split is drawn: 'random' by material id, or "
                "'family' by chemical system (every set of elements wholly in one split, so no "
                "test material has a training sibling with the same elements; counts then "
                "only near 70/15/15)."
            ),
            show_default="random",
        ),
    ] = None,
    split_seed: Annotated[
        int | None,
        typer.Option("--split-seed", help="Seed of the split (see --split).", show_default="0"),
    ] = None,
    store_features: Annotated[
        bool,
        typer.Option(
            "--store-features", help="Also store the atom features (else rebuilt from Z)."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing graph store.")
    ] = False,
    fmt: PrintFormat = None,
    as_json: JsonFlag = False,
) -> None:
    """Turn dataset records into the HDF5 graph store that training reads.

    Each structure becomes a periodic radius graph with the paper's atom features, and its
    target is stored as the full Cartesian tensor and as irreps, with a 70/15/15 split by
    material id (or by chemical system with --split family). Several record files of one
    property are combined into one store, earlier files first; later duplicates are rejected
    (--dedupe). Records that cannot be used (isolated atom, unsupported element, bad value,
    duplicate, ...) are listed and written to <stem>.featurize-rejects.jsonl beside the store
    (fetch's <stem>.fetch-rejects.jsonl is left alone). An existing store is replaced only with
    --force. The exit code is 0 when at least one graph was written and 2 when every record
    was rejected, an input is bad or the store cannot be written (checked first).
    """
    from crystensor.data.featurize import check_output, merge_stores
    from crystensor.data.featurize import featurize as run_featurize

    fmt = resolve_format(fmt, as_json, TABLE_JSON, "featurize")
    if output is None:
        raise InputError("give the store to write with -o/--output, e.g. -o graphs.h5")
    check_output(output, overwrite=force)
    with _progress("merging" if merge else "featurizing") as update:
        if merge:
            _refuse_with_merge(
                cutoff=cutoff,
                auto_cutoff=auto_cutoff or None,
                max_cutoff=max_cutoff,
                workers=workers,
                shard=shard,
                dedupe=dedupe,
                split=split,
                split_seed=split_seed,
                store_features=store_features or None,
            )
            if target is not None:
                from crystensor.data.store import GraphStore
                from crystensor.tensors.kinds import property_name

                for path in inputs:
                    GraphStore(path).check(target=property_name(target))
            report = merge_stores(inputs, output, progress=update, overwrite=force)
        else:
            if target is None:
                raise InputError("give the records' property with --target, e.g. -t elastic")
            if split not in (None, "random", "family"):
                raise InputError(f"--split must be random or family, got {split!r}")
            report = run_featurize(
                inputs,
                target,
                output,
                cutoff=5.0 if cutoff is None else cutoff,
                auto_cutoff=auto_cutoff,
                max_cutoff=max_cutoff,
                workers=workers or 1,
                shard=_parse_shard(shard),
                dedupe=dedupe or "id",
                progress=update,
                split_seed=split_seed or 0,
                split_method=split or "random",
                store_node_features=store_features,
                overwrite=force,
            )
    if fmt == Format.json:
        emit_json(report.as_dict(), None, print_to_stdout=True)
    else:
        _render(report, merged=merge)


def _parse_shard(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    match = _SHARD.match(text)
    if match is None:
        raise InputError(f"--shard must look like I/N (e.g. 0/4), got {text!r}")
    return int(match[1]), int(match[2])


def _refuse_with_merge(**given: Any) -> None:
    used = [name.replace("_", "-") for name, value in given.items() if value is not None]
    if used:
        raise InputError(
            f"--{', --'.join(used)} cannot be used with --merge: the stores keep their settings"
        )


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int | None], None]]:
    """A rich progress bar on stderr (rate, ETA); yields ``update(done, total)``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=log.getEffectiveLevel() > logging.WARNING,  # -q
    )
    task = bar.add_task(label, total=None, rate="")

    def update(done: int, total: int | None) -> None:
        speed = bar.tasks[0].speed
        bar.update(task, completed=done, total=total, rate=f"{speed:.0f}/s" if speed else "")

    with bar:
        yield update


def _render(report: FeaturizeReport, merged: bool) -> None:
    from rich.table import Table

    table = Table(title="crystensor featurize", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    units = f", {report.units}" if report.units else ""
    label = "stores merged" if merged else "records"
    table.add_row(label, ", ".join(str(p) for p in report.inputs))
    table.add_row("store", str(report.output))
    table.add_row("target", f"{report.target} ({report.kind}{units})")
    cutoff = f"{report.cutoff:g} A"
    if report.auto_cutoff:
        cutoff += f", auto (extended for {report.extended})"
    table.add_row("cutoff", cutoff)
    if not merged:
        table.add_row("dedupe", f"by {report.dedupe}, first copy kept")
    table.add_row("graphs", f"{report.graphs} of {report.records}")
    counts = report.rejection_counts()
    table.add_row(
        "rejected",
        f"{len(report.rejected)}"
        + (f" ({', '.join(f'{k}: {v}' for k, v in counts.items())})" if counts else ""),
    )
    per_atom = report.edges / report.nodes if report.nodes else 0.0
    table.add_row("nodes / edges", f"{report.nodes} / {report.edges} ({per_atom:.1f} per atom)")
    table.add_row(
        f"split ({report.split_method})",
        "  ".join(f"{k} {v}" for k, v in report.split_counts.items()),
    )
    if not merged:
        table.add_row(
            "time",
            f"{report.seconds:.1f} s, {report.structures_per_second:.0f} structures/s "
            f"({report.workers} worker{'s' if report.workers > 1 else ''})",
        )
    if report.rejects_path:
        table.add_row("rejections", str(report.rejects_path))
    console.print(table)
    if report.rejected:
        _render_rejections(report)


def _render_rejections(report: FeaturizeReport) -> None:
    from rich.table import Table

    several = len(report.inputs) > 1  # record files, or stores merged: name each one's file
    table = Table(title="Rejected records", title_justify="left")
    for column in ("file", "#", "id", "code", "reason")[0 if several else 1 :]:
        table.add_column(column, overflow="fold")
    for r in report.rejected[:SHOWN_REJECTIONS]:
        row = (r.file, str(r.index), r.id, r.code, r.reason)
        table.add_row(*row[0 if several else 1 :])
    console.print(table)
    more = len(report.rejected) - SHOWN_REJECTIONS
    if more > 0:
        console.print(f"... and {more} more in {report.rejects_path}")
