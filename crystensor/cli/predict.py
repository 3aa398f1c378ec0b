"""``crystensor predict``: tensors of crystal structures from a trained (or the shipped) model."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crystensor.cli.common import console, dumps, err_console, error_console, fail, guarded, log
from crystensor.cli.options import (
    TABLE_JSON_CSV,
    AngleTolerance,
    Device,
    Format,
    JsonFlag,
    ReportFile,
    ResultFormat,
    SymPrec,
    device_name,
    resolve_format,
)
from crystensor.errors import InputError

if TYPE_CHECKING:
    from rich.console import Console

    from crystensor.prediction import Prediction, Predictor

# Component symbols of the CSV columns, by kind: C11 .. C66, e11 .. e36, eps_xx .. eps_zz.
_SYMBOL = {"elastic": "C", "piezoelectric": "e", "dielectric": "eps_"}


class Target(str, Enum):
    elastic = "elastic"
    dielectric = "dielectric"
    dielectric_electronic = "dielectric-electronic"
    piezoelectric = "piezoelectric"


@guarded
def predict(
    structures: Annotated[
        list[Path] | None,
        typer.Argument(
            help=(
                "Structure files (POSCAR/CONTCAR, CIF, extended XYZ with any number of frames, "
                "vasprun.xml, anything pymatgen or ASE reads), directories of them, or '-' for "
                "a POSCAR on stdin."
            ),
            metavar="STRUCTURE...",
            show_default=False,
        ),
    ] = None,
    target: Annotated[
        Target | None,
        typer.Option("--target", "-t", help="Property to predict (picks the shipped model)."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="A checkpoint (best.pt) instead of the shipped model; or by name: elastic-prior "
            "(the network correcting SevenNet-0's tensor, about a second a structure), "
            "sevennet-0, sevennet-0-relaxed (the potential's own tensor).",
        ),
    ] = None,
    device: Device = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            help="Structures per forward pass (8 is fastest on a CPU; a batch of up to 16 runs "
            "on one torch thread, which is faster for so few; the size changes the predictions "
            "by float32 rounding only).",
        ),
    ] = 8,
    symmetrize: Annotated[
        bool,
        typer.Option(
            "--symmetrize/--no-symmetrize",
            help="Project onto the structure's point group, or show the raw network output.",
        ),
    ] = True,
    physical: Annotated[
        bool,
        typer.Option(
            "--physical/--no-physical",
            help="Report the nearest physically valid tensor (elastic: positive definite, "
            "Kelvin moduli >= 1 GPa; dielectric: eigenvalues >= 1), or the tensor as it is. "
            "A structure whose tensor needed the change gets a not-physical warning either way.",
        ),
    ] = True,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw",
            help="Report the network's output exactly as it is: --no-symmetrize --no-physical.",
        ),
    ] = False,
    symprec: SymPrec = 0.01,
    angle_tolerance: AngleTolerance = None,
    fmt: ResultFormat = None,
    as_json: JsonFlag = False,
    output: ReportFile = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            "-j",
            min=0,
            help="Processes to predict in: 0 (default) one per core from 64 structures on "
            "(forked from this one, each on one thread; OMP_NUM_THREADS=1 keeps it to one), "
            "1 this process only, N that many. The results are the same.",
        ),
    ] = 0,
    recursive: Annotated[
        bool,
        typer.Option(
            "--recursive/--no-recursive",
            help="Search directories and their subdirectories (one folder per calculation) for "
            "structure files, or only the directory itself.",
        ),
    ] = True,
    with_elastic: Annotated[
        bool,
        typer.Option(
            "--with-elastic",
            help="With a piezoelectric model: also predict the elastic tensor (the shipped "
            "elastic model, or --elastic-model) and report the strain constants d = e S (pC/N).",
        ),
    ] = False,
    elastic_model: Annotated[
        Path | None,
        typer.Option(
            "--elastic-model",
            help="The elastic checkpoint for --with-elastic (implies it).",
            dir_okay=False,
        ),
    ] = None,
    model_info: Annotated[
        bool, typer.Option("--model-info", help="Show the model card of the model and stop.")
    ] = False,
) -> None:
    """Predict the tensor of each structure, in the Cartesian frame of its file.

    By default the prediction is projected onto the structure's point group (components that
    must vanish are exactly zero) and made physically valid (the nearest positive definite
    elastic tensor, the nearest dielectric tensor with eigenvalues >= 1); the tables add derived
    properties (moduli, eigenvalues, eij_max). JSON keeps the raw network output beside it.

    Each structure gets warnings where the number deserves less trust (a yellow line in the
    table, a "warnings" list in JSON, a "warnings" column in CSV): unseen-element (not in the
    model's training set), short-distance (atoms far closer than their covalent radii; below
    0.5 A the structure is refused), vacuum-gap (a slab, wire or isolated molecule, not a bulk
    crystal), far-from-training (the model's features of the structure are farther from every
    training structure than 95 % of its test materials), not-physical (the network's tensor
    needed the correction above) and model-caveat (what the model card says, e.g. the
    piezoelectric model's undetermined sign).

    A model that is an ensemble (several networks in one checkpoint) reports their mean and,
    per structure, the members' standard deviation of every component, scaled by the
    ensemble's spread calibration when it has one (JSON voigt_std, CSV C11_std ...), and one
    relative uncertainty ||std|| / ||tensor|| (JSON and CSV uncertainty).

    A structure that cannot be predicted is reported with the reason while the others are
    predicted; the exit code is then 2. When none can be, nothing is written.

    With --workers 0 (the default), 64 structures or more are shared between processes forked
    from this one on Linux, one per core, each on one thread; the results are the same.
    """
    # Idle OpenMP threads spin by default; on a busy machine that made inference 10x slower
    # (16 instead of 220 structures/s on 2 cores). It must be set before torch is loaded.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from crystensor.io.atomic import check_writable
    from crystensor.prediction import load_predictor
    from crystensor.prediction import model_info as read_model_info

    device = device_name(device)
    fmt = resolve_format(fmt, as_json, TABLE_JSON_CSV, "predict", _format_from_suffix(output))
    if output is not None:  # before any work: an output that cannot be written fails now
        check_writable(output, "output")
    name = target.value if target is not None else None
    if model_info:
        _emit(_model_info_view(read_model_info(name, model), fmt), output)
        return
    if not structures:
        raise InputError("give at least one structure file, a directory, or - for stdin")
    predictor = load_predictor(name, model, device=device)
    elastic = None
    if with_elastic or elastic_model is not None:
        if predictor.kind.name != "piezoelectric":
            raise InputError(
                f"--with-elastic is for piezoelectric models (d = e S); {predictor.source} "
                f"predicts {predictor.target}"
            )
        elastic = load_predictor(
            "elastic" if elastic_model is None else None, elastic_model, device=device
        )
        if elastic.kind.name != "elastic":
            raise InputError(f"--elastic-model {elastic_model} predicts {elastic.target}")
    if raw:
        symmetrize = physical = False
    with _ProgressBar() as progress:
        results = predictor.predict_results(
            structures,
            symmetrize=symmetrize,
            physical=physical,
            batch_size=batch_size,
            symprec=symprec,
            angle_tolerance=angle_tolerance,
            progress=progress,
            elastic=elastic,
            recursive=recursive,
            workers=workers,
        )
    render = {Format.json: _json_text, Format.csv: _csv_text, Format.table: _tables}[fmt]
    failed = [r for r in results if not r.ok]
    if results and len(failed) == len(results):
        # nothing to report: no output file, no "Predicted with" line; the reasons follow
        log.debug("no structure could be predicted: nothing written")
    else:
        _emit(render(results, predictor, symprec), output)
    for result in failed:
        named = result.error.startswith(Path(result.name).name)
        fail(result.error if named else f"{result.name}: {result.error}")
    if failed:
        nothing = len(failed) == len(results)
        error_console.print(
            f"none of the {len(results)} structures could be predicted"
            + ("; nothing was written" if output is not None else "")
            if nothing
            else f"{len(failed)} of {len(results)} structures could not be predicted"
        )
        raise typer.Exit(2)


def _format_from_suffix(output: Path | None) -> Format:
    from crystensor.io.atomic import plain_suffix

    if output is None:
        return Format.table
    return {".json": Format.json, ".csv": Format.csv}.get(plain_suffix(output), Format.table)


def _emit(content: str | Callable[[Console], None], output: Path | None) -> None:
    """Text, or a rich drawing (to the terminal's console, or as plain text to a file)."""
    if output is None:
        if callable(content):
            content(console)
        else:
            sys.stdout.write(content)
        return
    from crystensor.io.atomic import atomic_write_text

    atomic_write_text(output, _plain_text(content) if callable(content) else content)
    log.info("wrote %s", output)


class _ProgressBar:
    """A transient progress bar on stderr for long runs on a terminal; a no-op otherwise."""

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self.bar = Progress(
            "predicting",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,
        )
        self.bar.start()
        self.task = self.bar.add_task("predict", total=None)
        return self.update

    def update(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


# -- renderings -------------------------------------------------------------------------------


def _plain_text(draw: Callable[[Console], None]) -> str:
    """What ``draw(console)`` prints, as plain text."""
    import io

    from rich.console import Console

    out = Console(file=io.StringIO(), width=120, color_system=None, force_terminal=False)
    draw(out)
    return out.file.getvalue()


def _tables(
    results: list[Prediction], predictor: Predictor, symprec: float
) -> Callable[[Console], None]:
    model = f"{predictor.source} ({predictor.checkpoint.arch}, target {predictor.target})"

    def draw(out: Console) -> None:
        from rich.markup import escape

        out.print(f"Predicted with {model}", highlight=False, markup=False)
        if predictor.caveat is not None:
            out.print(f"[yellow]Caveat of this model: {escape(predictor.caveat.message)}[/]")
        for result in results:
            if result.ok:
                _render_prediction(out, result, symprec)

    return draw


def _render_prediction(out: Console, r: Prediction, symprec: float) -> None:
    from rich.markup import escape

    from crystensor.cli.render import properties_table, voigt_table

    kind = r.kind
    units = f" [{kind.units}]" if kind.units else ""
    out.rule(escape(f"{r.name}: {r.formula}, {r.target} tensor{units}"))
    out.print(
        f"Point group {r.point_group} ({r.crystal_system}), space group {r.space_group} "
        f"({r.space_group_number}), symprec {symprec}"
    )
    broken = f"{100 * r.symmetry_violation:.3g} %"
    if r.symmetrize:
        title = "Projected onto the point group"
        out.print(f"The raw network output breaks the point group by {broken}.")
    else:
        title = "Raw network output"
        out.print(f"Not symmetrized: the raw output breaks the point group by {broken}.")
    if r.physical and r.adjustment is not None:
        title += ", made physically valid"
    for warning in r.warnings:
        if warning["code"] != "model-caveat":  # printed once, above the first structure
            out.print(f"[yellow]warning ({warning['code']}): {escape(warning['message'])}[/]")
    out.print(voigt_table(kind, r.voigt.tolist(), f"{title} (Voigt notation)"))
    if r.std is not None:
        members = (
            "ensemble members' standard deviation, times the spread calibration of its card "
            "(Voigt notation)"
        )
        out.print(voigt_table(kind, kind.to_voigt(r.std).tolist(), f"Spread: the {members}"))
        relative = (
            "undefined (the tensor is zero)"
            if r.uncertainty is None
            else f"{100 * r.uncertainty:.3g} %"
        )
        out.print(f"Relative uncertainty ||std|| / ||tensor||: {relative}", highlight=False)
    if r.properties:
        out.print(properties_table(r.properties, "Derived properties"))


def _json_text(results: list[Prediction], predictor: Predictor, symprec: float) -> str:
    from crystensor import __version__

    return dumps(
        {
            "crystensor_version": __version__,
            "target": predictor.target,
            "model": predictor.source,
            "arch": predictor.checkpoint.arch,
            # what the model card says a user must know (e.g. an undetermined sign), or null
            "model_caveat": predictor.checkpoint.meta.get("caveat"),
            "symprec": symprec,
            "results": [r.as_dict() for r in results if r.ok],
            "errors": [r.as_dict() for r in results if not r.ok],
        }
    )


def _csv_text(results: list[Prediction], predictor: Predictor, symprec: float) -> str:
    import csv
    import io

    kind = predictor.kind
    components = [f"{_SYMBOL[kind.name]}{label}" for label in kind.voigt_labels()]
    first = next((r for r in results if r.ok), None)
    scalars = [
        key
        for key, value in (first.properties if first else {}).items()
        if key != "units" and not isinstance(value, list | dict)
    ]
    head = [
        "source",
        "formula",
        "target",
        "point_group",
        "crystal_system",
        "symmetrized",
        "physical",
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    ensemble = predictor.checkpoint.n_members > 1
    spread = [f"{c}_std" for c in components] + ["uncertainty"] if ensemble else []
    tail = ["adjustment", "feature_distance", "warnings", "error"]
    writer.writerow([*head, *components, *spread, *scalars, *tail])
    for r in results:
        if not r.ok:
            blank = [""] * (
                len(head) - 3 + len(components) + len(spread) + len(scalars) + len(tail) - 1
            )
            writer.writerow([r.name, "", r.target, *blank, r.error])
            continue
        values = [repr(float(v)) for v in r.voigt.ravel()]
        props = ["" if r.properties.get(k) is None else r.properties[k] for k in scalars]
        meta = [r.name, r.formula, r.target, r.point_group, r.crystal_system, r.symmetrize]
        changed = r.adjustment is not None and r.adjustment["changed"]
        extra = [
            repr(r.adjustment["relative_change"]) if changed else "",
            "" if r.feature_distance is None else repr(r.feature_distance),
            "; ".join(f"{w['code']}: {w['message']}" for w in r.warnings),
            "",
        ]
        stds = []
        if ensemble:
            stds = [repr(float(v)) for v in kind.to_voigt(r.std).ravel()]
            stds.append("" if r.uncertainty is None else repr(r.uncertainty))
        writer.writerow([*meta, r.physical, *values, *stds, *props, *extra])
    return buffer.getvalue()


def _model_info_view(info: dict[str, Any], fmt: Format) -> str | Callable[[Console], None]:
    if fmt == Format.json:
        return dumps(info)
    if fmt == Format.csv:
        raise InputError("--model-info prints a table or JSON, not CSV")

    def draw(out: Console) -> None:
        from rich.markdown import Markdown
        from rich.markup import escape
        from rich.table import Table

        out.rule(escape(f"Model: {info['source']}"))
        table = Table(show_header=False, title_justify="left")
        table.add_column("field")
        table.add_column("value")
        for key in ("target", "kind", "units", "irreps", "arch", "parameters", "epoch"):
            table.add_row(key, escape(str(info[key])))
        for section in ("split", "featurization", "versions", "meta", "config"):
            for key, value in info[section].items():
                table.add_row(f"{section}.{key}", escape(str(value)))
        out.print(table)
        _render_metrics(out, info["metrics"])
        if info["card"]:
            out.print(Markdown(info["card"]))

    return draw


def _render_metrics(out: Console, metrics: dict[str, Any]) -> None:
    if not metrics:
        out.print("No metrics recorded in the checkpoint.")
        return
    from rich.markup import escape

    from crystensor.train.metrics import format_metrics

    for key, value in metrics.items():
        lines = [json.dumps(value) if isinstance(value, dict | list) else str(value)]
        if isinstance(value, dict) and "mae" in value:
            with contextlib.suppress(InputError, KeyError, TypeError, ValueError):
                lines = format_metrics(value)
        out.print(f"[bold]{escape(str(key))}[/]: " + escape("\n  ".join(lines)))
