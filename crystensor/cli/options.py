"""Options shared by several subcommands, declared once as ``Annotated`` aliases."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

OutputFile = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write the JSON result to this file (atomically: temp file, rename).",
        dir_okay=False,
    ),
]
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print machine-readable JSON to stdout instead of tables.")
]
SymPrec = Annotated[
    float,
    typer.Option(
        "--symprec",
        min=1e-6,
        max=1.0,
        help="spglib distance tolerance (Angstrom) for finding the point group.",
    ),
]
AngleTolerance = Annotated[
    float,
    typer.Option("--angle-tolerance", min=0.0, max=30.0, help="spglib angle tolerance (degrees)."),
]
