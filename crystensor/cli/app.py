"""The root ``crystensor`` command: version, verbosity, and the subcommands.

Subcommand modules import their heavy dependencies (numpy, pymatgen, torch) inside the command
function, so ``crystensor --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from crystensor import __version__
from crystensor.cli import (
    decompose,
    ensemble,
    evaluate,
    featurize,
    fetch,
    finetune,
    predict,
    train,
)
from crystensor.cli.common import Command, Group, command_help, configure_logging

app = typer.Typer(
    name="crystensor",
    help=(
        "Predict and analyse tensor properties of crystals (dielectric, piezoelectric, elastic) "
        "with E(3)-equivariant graph networks."
    ),
    cls=Group,
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"crystensor {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose", "-v", count=True, help="More log output (-vv: debug).", show_default=False
        ),
    ] = 0,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="Print only errors: no tables, progress bars, notes or warnings (the exit code "
            "is unchanged). Output asked for is still written: -o files, and --format json or "
            "csv on stdout.",
        ),
    ] = False,
) -> None:
    """crystensor: tensor properties of crystals from equivariant graph networks."""
    configure_logging(-1 if quiet else verbose)


for _name, _module in [
    ("fetch", fetch),
    ("featurize", featurize),
    ("train", train),
    ("finetune", finetune),
    ("ensemble", ensemble),
    ("predict", predict),
    ("evaluate", evaluate),
    ("decompose", decompose),
]:
    _command = getattr(_module, _name)
    app.command(_name, cls=Command, help=command_help(_command), no_args_is_help=True)(_command)


def main() -> None:
    """Console-script entry point."""
    app()
