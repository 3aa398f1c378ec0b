"""``crystensor decompose``: harmonic decomposition of a tensor read from JSON."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from crystensor.cli.common import console, emit_json, err_console, guarded
from crystensor.cli.options import (
    TABLE_JSON,
    AngleTolerance,
    Format,
    JsonFlag,
    OutputFile,
    PrintFormat,
    SymPrec,
    resolve_format,
)
from crystensor.cli.render import fmt_number, properties_table, voigt_table
from crystensor.errors import InputError

if TYPE_CHECKING:
    from crystensor.io.tensors import TensorInput

KIND_HELP = "Tensor kind (dielectric, piezoelectric, elastic); inferred from the shape if omitted."
ASYMMETRY_WARN = 1e-8


@guarded
def decompose(
    tensor_file: Annotated[
        Path,
        typer.Argument(
            help=(
                "JSON file with the tensor ('-' for stdin): a nested list (3x3, 3x6, 6x6, 3x3x3, "
                "3x3x3x3), an object with 'kind' and 'voigt' or 'tensor', pymatgen tensor JSON, "
                "a dataset record, or the JSON written by 'crystensor predict'."
            ),
            show_default=False,
        ),
    ],
    kind: Annotated[str | None, typer.Option("--kind", "-k", help=KIND_HELP)] = None,
    structure: Annotated[
        Path | None,
        typer.Option(
            "--structure",
            help=(
                "Crystal structure (POSCAR, CIF, ...) in whose Cartesian frame the tensor is "
                "given (a predict JSON or a records file carries each tensor's own, used when "
                "this is not given): adds the point group, the symmetry violation and the "
                "projected tensor; "
                "for an elastic tensor also the density, sound velocities, Debye temperature, "
                "Young's modulus along a, b, c and the Born conditions of its crystal system."
            ),
            dir_okay=False,
        ),
    ] = None,
    elastic: Annotated[
        Path | None,
        typer.Option(
            "--elastic",
            help=(
                "Elastic stiffness (GPa, same Cartesian frame) for a piezoelectric tensor, in "
                "any layout TENSOR_FILE accepts (e.g. a 6x6 JSON list or the JSON of 'crystensor "
                "predict -t elastic'): adds the strain constants d = e S (pC/N) and their "
                "maximum longitudinal coefficient dij_max."
            ),
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    symprec: SymPrec = 0.01,
    angle_tolerance: AngleTolerance = None,
    fmt: PrintFormat = None,
    as_json: JsonFlag = False,
    output: OutputFile = None,
) -> None:
    """Split a tensor into its SO(3)-irreducible parts and report what they say.

    Prints the irreducible parts (l, parity, norm, share of the norm), the paper's explicit
    sub-tensors (Young-symmetrised parts, traces, epsilon contractions) with their J_z and real
    spherical-harmonic components, the reconstruction error, derived properties, and with
    --structure the point group, the symmetry violation and the tensor projected onto it.

    Derived properties: elastic — K, G (Voigt, Reuss, Hill), Young's modulus (Hill, along the
    axes, min and max over directions), Poisson and Pugh ratios, anisotropy, compliance
    (1/TPa), Born stability with its conditions; dielectric — eigenvalues, axes, average and
    the refractive index (left out when the file says its target is the static 'dielectric');
    piezoelectric — eij_max and, with --elastic, d = e S. Exit code 2 on bad input.
    """
    from crystensor.io.atomic import check_writable
    from crystensor.io.structures import read_structure
    from crystensor.io.tensors import read_tensor_file
    from crystensor.tensors.analysis import analyse_tensor

    fmt = resolve_format(fmt, as_json, TABLE_JSON, "decompose")
    if output is not None:  # before any work: an output that cannot be written fails now
        check_writable(output, "output")
    inputs = read_tensor_file(tensor_file, kind)
    stiffness = None
    if elastic is not None:
        stiffness = _read_elastic(elastic)
        for item in inputs:
            if item.kind.name != "piezoelectric":
                raise InputError(
                    f"--elastic is for piezoelectric tensors (d = e S), but {item.label} is a "
                    f"{item.kind.name} tensor; drop --elastic or give a piezoelectric tensor"
                )
    if structure is not None and len(inputs) > 1:
        raise InputError(
            f"--structure names one crystal, but {tensor_file.name} holds {len(inputs)} tensors "
            "(a predict JSON carries each result's own structure); drop --structure, or give "
            "one tensor"
        )
    crystal = read_structure(structure) if structure is not None else None
    results = []
    for item in inputs:
        analysis = analyse_tensor(
            item.tensor,
            item.kind,
            structure=crystal or _embedded_structure(item),
            symprec=symprec,
            angle_tolerance=angle_tolerance,
            target=_target_of(item),
            elastic=None if stiffness is None else stiffness.tensor,
        )
        result = {"label": item.label, "source_format": item.source_format, **analysis}
        if stiffness is not None:
            result["elastic_source"] = stiffness.label
        results.append(result)
        _note_units(item)
    data: Any = results[0] if len(results) == 1 else {"results": results}
    emit_json(data, output, print_to_stdout=fmt == Format.json)
    if fmt == Format.table:
        for result in results:
            _render(result)


def _embedded_structure(item: TensorInput) -> Any:
    """The structure a file carries with the tensor (predict JSON, dataset records), or None."""
    if item.structure is None:
        return None
    from pymatgen.core import Structure

    try:
        return Structure.from_dict(item.structure)
    except Exception as err:  # a damaged dict: the tensor is still analysed, without symmetry
        err_console.print(
            f"[yellow]note:[/] {item.label}: its structure could not be read ({err}); no "
            "symmetry section"
        )
        return None


def _note_units(item: TensorInput) -> None:
    if item.units is not None and item.units != item.kind.units:
        err_console.print(
            f"[yellow]note:[/] {item.label} states units {item.units!r}; crystensor reports "
            f"{item.kind.name} tensors in {item.kind.units or 'unitless'} and does not convert."
        )


def _read_elastic(path: Path) -> TensorInput:
    """The one elastic tensor of the ``--elastic`` file, or an InputError naming the problem."""
    from crystensor.io.tensors import read_tensor_file

    try:
        inputs = read_tensor_file(path)
    except InputError as err:
        raise InputError(f"--elastic: {err}") from None
    if len(inputs) != 1:
        raise InputError(
            f"--elastic: {path.name} holds {len(inputs)} tensors; give a file with one elastic "
            "tensor"
        )
    item = inputs[0]
    if item.kind.name != "elastic":
        raise InputError(
            f"--elastic: {item.label} is a {item.kind.name} tensor, not an elastic stiffness "
            "(6x6 Voigt or 3x3x3x3, GPa)"
        )
    _note_units(item)
    return item


def _target_of(item: TensorInput) -> str | None:
    """The target a file names for its tensor (e.g. 'dielectric' vs 'dielectric-electronic')."""
    from crystensor.tensors.kinds import get_property

    target = item.meta.get("target")
    if target is None:
        return None
    try:
        prop = get_property(str(target))
    except ValueError as err:
        raise InputError(f"{item.label}: {err}") from None
    if prop.kind != item.kind.name:
        raise InputError(
            f"{item.label}: the file's target {prop.name!r} holds {prop.kind} tensors, but the "
            f"tensor is read as {item.kind.name}"
        )
    return prop.name


def _render(result: dict[str, Any]) -> None:
    from rich.table import Table

    from crystensor.tensors.kinds import get_kind

    kind = get_kind(result["kind"])
    units = f" [{kind.units}]" if kind.units else ""
    console.rule(f"[bold]{result['label']}[/]: {kind.name} tensor{units}, irreps {kind.irreps}")
    if result["index_asymmetry"] > ASYMMETRY_WARN:
        err_console.print(
            f"[yellow]warning:[/] the input breaks the {kind.name} index symmetry "
            f"({kind.index_symmetry}): the asymmetric part is "
            f"{100 * result['index_asymmetry']:.3g} % of the norm. It is reported, not used: "
            "the analysis below is of the symmetric part."
        )
    console.print(voigt_table(kind, result["voigt"], "Tensor (Voigt notation)"))

    parts = Table(title="Irreducible parts (e3nn real basis)", title_justify="left")
    for col in ("irrep", "from", "norm", "share", "components"):
        parts.add_column(col, justify="right" if col in ("norm", "share") else "left")
    for p in result["parts"]:
        comps = " ".join(fmt_number(c) for c in p["components"])
        parts.add_row(
            p["irrep"], p["source"], fmt_number(p["norm"]), f"{100 * p['share']:.2f} %", comps
        )
    console.print(parts)

    explicit = Table(title="Explicit decomposition (paper's view)", title_justify="left")
    for col in ("sub-tensor", "l", "norm", "what", "real SH components (m=-l..l)"):
        explicit.add_column(col)
    for e in result["explicit"]:
        comps = " ".join(fmt_number(c) for c in e.get("real_sh_components", [e["value"]]))
        explicit.add_row(e["name"], str(e["l"]), fmt_number(e["norm"]), e["description"], comps)
    console.print(explicit)
    err = result["reconstruction_error"]
    console.print(
        f"Reconstruction error (relative): irreps {err['irreps']:.2e}, "
        f"explicit {err['explicit']:.2e}"
    )
    if result["properties"]:
        title = "Derived properties"
        if "elastic_source" in result:
            title += f" (d = e S with the elastic tensor of {result['elastic_source']})"
        console.print(properties_table(result["properties"], title))
    if "symmetry" in result:
        _render_symmetry(kind, result["symmetry"])


def _render_symmetry(kind: Any, sym: dict[str, Any]) -> None:
    console.print(
        f"[bold]Symmetry[/] of {sym['formula']}: space group {sym['space_group']} "
        f"({sym['space_group_number']}), point group {sym['point_group']}, "
        f"{sym['crystal_system']} (symprec {sym['symprec']})"
    )
    console.print(
        f"Symmetry violation (max change under the point group / max component): "
        f"{100 * sym['violation']:.3g} %; {sym['independent_components']} independent "
        f"components in this class"
    )
    console.print(voigt_table(kind, sym["projected_voigt"], "Projected onto the point group"))
