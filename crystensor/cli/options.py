"""Options shared by several subcommands, declared once as ``Annotated`` aliases.

One vocabulary across commands: ``--format/-f`` for what a command prints (``--json`` is its
hidden alias, kept for compatibility), ``--device`` with one default and help text, and short
options that mean the same thing in every command that has them:

=====  ==========================================================================
short  option
=====  ==========================================================================
-h     --help (every command)
-v     --verbose, -q --quiet (the root: ``crystensor -q fetch ...``)
-t     --target (fetch, featurize, predict)
-o     --output (every command that writes; a run directory in train, finetune)
-f     --format (fetch, featurize, predict, evaluate, decompose)
-j     --workers, processes (featurize, predict)
-s     --source, -i --input (fetch)
-k     --kind (decompose)
-m     --model (predict)
-d     --data (train, finetune)
-a     --arch, -R --interactions, -N --self-interactions, -M --mlp-layers (train)
=====  ==========================================================================
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from crystensor.errors import InputError

#: ``-o`` of the commands that print a report: the same report, written to a file instead.
ReportFile = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write to this file (atomically) instead of stdout.",
        dir_okay=False,
    ),
]

OutputFile = Annotated[
    Path | None,
    typer.Option(
        "--output",
        "-o",
        help="Write the JSON result to this file (atomically: temp file, rename).",
        dir_okay=False,
    ),
]


# -- output format -----------------------------------------------------------------------------
class Format(str, Enum):
    """What a command prints: tables for people, or JSON / CSV for scripts."""

    table = "table"
    json = "json"
    csv = "csv"


#: The formats of a command that prints a report (fetch, featurize, decompose, evaluate).
TABLE_JSON: tuple[Format, ...] = (Format.table, Format.json)
#: The formats of predict, which also writes one CSV row per structure.
TABLE_JSON_CSV: tuple[Format, ...] = (Format.table, Format.json, Format.csv)


def _format_option(formats: tuple[Format, ...], help: str) -> Any:
    machine = [f.value.upper() for f in formats if f != Format.table]
    printed = f"{' and '.join(machine)} {'are' if len(machine) > 1 else 'is'}"
    return Annotated[
        Format | None,
        typer.Option(
            "--format",
            "-f",
            metavar="|".join(f.value for f in formats),
            help=f"{help} With -q, {printed} still printed; tables are not.",
            show_default=False,
            case_sensitive=False,
        ),
    ]


#: ``--format`` of fetch, featurize and decompose: what is printed on stdout.
PrintFormat = _format_option(
    TABLE_JSON, "table (default) or json: one JSON object on stdout instead of the tables."
)
#: ``--format`` of evaluate.
MetricsFormat = _format_option(
    TABLE_JSON, "table or json (default: table; with -o, json for a .json file)."
)
#: ``--format`` of predict.
ResultFormat = _format_option(
    TABLE_JSON_CSV, "table, json or csv (default: table; with -o, from the file's suffix)."
)
#: ``--json``: the spelling of ``--format json`` before every command had ``--format``; kept for
#: scripts, hidden from --help.
JsonFlag = Annotated[
    bool, typer.Option("--json", hidden=True, help="The same as --format json (kept for scripts).")
]


def resolve_format(
    fmt: Format | None,
    as_json: bool,
    formats: tuple[Format, ...],
    command: str,
    default: Format = Format.table,
) -> Format:
    """The format asked for with ``--format`` or ``--json`` (else ``default``), if ``command``
    can produce it.

    Raises
    ------
    InputError
        ``--json`` with another ``--format``, or a format the command cannot produce.
    """
    if as_json:
        if fmt not in (None, Format.json):
            raise InputError(
                f"--json is --format json, but --format {fmt.value} was given too; drop one"
            )
        fmt = Format.json
    fmt = default if fmt is None else fmt
    if fmt not in formats:
        names = ", ".join(f.value for f in formats[:-1]) + f" or {formats[-1].value}"
        raise InputError(f"{command} cannot print {fmt.value}; --format must be {names}")
    return fmt


# -- device --------------------------------------------------------------------------------------
DEVICE_HELP = "auto (a CUDA GPU if there is one, else the CPU), cpu, cuda or cuda:N."


def _device_option(panel: str | None) -> Any:
    # None by default, so that train knows whether it was given (--resume refuses it)
    return Annotated[
        str | None,
        typer.Option("--device", help=DEVICE_HELP, show_default="auto", rich_help_panel=panel),
    ]


#: ``--device`` of predict and evaluate.
Device = _device_option(None)


def device_name(device: str | None) -> str:
    """The device asked for (``auto`` when not given), checked.

    Raises
    ------
    InputError
        Anything but auto, cpu, cuda or cuda:N.
    """
    name = "auto" if device is None else device.strip().lower()
    head, _, index = name.partition(":")
    if name in ("auto", "cpu", "cuda") or (head == "cuda" and index.isdigit()):
        return name
    raise InputError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")


SymPrec = Annotated[
    float,
    typer.Option(
        "--symprec",
        min=1e-6,
        max=1.0,
        help="Distance tolerance (Angstrom) for finding the point group.",
    ),
]
AngleTolerance = Annotated[
    float | None,
    typer.Option(
        "--angle-tolerance",
        min=0.0,
        max=30.0,
        help="Angle tolerance (degrees). Given, spglib finds the point group with it and "
        "--symprec; without it, moyo does with --symprec alone (7x faster).",
    ),
]

# -- training (train and finetune) -----------------------------------------------------------
BackboneMode = Annotated[
    str | None,
    typer.Option(
        "--backbone-mode",
        help=(
            "With a pretrained backbone (sevennet-0, sevennet-l3i5): frozen (features cached "
            "beside the store), partial (its last block trained) or full (all of it trained, "
            "at --lr/10; in finetune at --backbone-lr). Default: frozen for a new model, the "
            "checkpoint's for a network started from one (finetune, train --pretrain CKPT). "
            "From frozen the potential starts from the installed file's weights; a trained "
            "potential cannot be frozen again."
        ),
        show_default=False,
        rich_help_panel="Model",
    ),
]

# Defaults are None so that a command knows which settings the user gave; the values used when
# an option is absent are TrainConfig's defaults (shown in --help).
_T = "Training"
Epochs = Annotated[
    int | None,
    typer.Option("--epochs", min=1, help="Maximum epochs.", show_default="200", rich_help_panel=_T),
]
BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=1,
        help="Graphs per step, summed over all processes.",
        show_default="32",
        rich_help_panel=_T,
    ),
]
LearningRate = Annotated[
    float | None,
    typer.Option(
        "--lr", min=0.0, help="AdamW learning rate.", show_default="0.002", rich_help_panel=_T
    ),
]
Schedule = Annotated[
    str | None,
    typer.Option(
        "--schedule",
        help="Learning-rate schedule: cosine (to --min-lr), plateau (halve), constant.",
        show_default="cosine",
        rich_help_panel=_T,
    ),
]
MinLr = Annotated[
    float | None,
    typer.Option(
        "--min-lr", min=0.0, help="Floor of the schedule.", show_default="1e-05", rich_help_panel=_T
    ),
]
WeightDecay = Annotated[
    float | None,
    typer.Option(
        "--weight-decay",
        min=0.0,
        help="AdamW weight decay.",
        show_default="1e-05",
        rich_help_panel=_T,
    ),
]
LossSpace = Annotated[
    str | None,
    typer.Option(
        "--loss",
        help="MSE on per-part normalised irreps, or on Cartesian components.",
        show_default="irreps",
        rich_help_panel=_T,
    ),
]
LossFunction = Annotated[
    str | None,
    typer.Option(
        "--loss-function",
        help="mse, huber (robust to heavy-tailed targets) or l1.",
        show_default="mse",
        rich_help_panel=_T,
    ),
]
SignAgnostic = Annotated[
    bool | None,
    typer.Option(
        "--sign-agnostic/--signed",
        help=(
            "Piezoelectric only: score each structure against T or -T, whichever fits better "
            "(for data whose signs are unreliable; early stopping then follows the "
            "sign-agnostic MAE)."
        ),
        show_default="signed",
        rich_help_panel=_T,
    ),
]
ClipGrad = Annotated[
    float | None,
    typer.Option(
        "--clip-grad",
        min=0.0,
        help="Clip the gradient norm (0: off).",
        show_default="10",
        rich_help_panel=_T,
    ),
]
LabelShare = Annotated[
    float | None,
    typer.Option(
        "--label-share",
        min=0.0,
        max=1.0,
        help=(
            "Share of each label store's training graphs (-d LABELS.h5:W) drawn afresh each "
            "epoch: cheaper epochs when the label stores are much larger than the tensor store."
        ),
        show_default="1",
        rich_help_panel=_T,
    ),
]
Patience = Annotated[
    int | None,
    typer.Option(
        "--patience",
        min=0,
        help="Stop after this many epochs without a better validation MAE (0: off).",
        show_default="40",
        rich_help_panel=_T,
    ),
]
Seed = Annotated[
    int | None,
    typer.Option(
        "--seed",
        help="Seed of the initial weights and the shuffling.",
        show_default="0",
        rich_help_panel=_T,
    ),
]
#: ``--device`` of train and finetune: the same option, in the help's Training panel.
TrainingDevice = _device_option(_T)
Compile = Annotated[
    bool | None,
    typer.Option(
        "--compile/--no-compile",
        help="torch.compile the model (slow to start; see the README's measurements).",
        show_default="no-compile",
        rich_help_panel=_T,
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        "--workers",
        min=0,
        help="DataLoader worker processes per rank.",
        show_default="0",
        rich_help_panel=_T,
    ),
]
TrainSplit = Annotated[
    str | None,
    typer.Option(
        "--split",
        metavar="store|random|family",
        help=(
            "Train/val/test split: 'store' uses the one saved in the store; 'random' (by "
            "material id) and 'family' (by chemical system: every set of elements wholly in one "
            "split) recompute it in memory from the store's materials with --split-seed (the "
            "file is not changed; with --pretrain, both stores are split so)."
        ),
        show_default="store",
        rich_help_panel=_T,
    ),
]
SplitSeed = Annotated[
    int | None,
    typer.Option(
        "--split-seed",
        help="Seed of a recomputed split (--split random or family), apart from --seed.",
        show_default="0",
        rich_help_panel=_T,
    ),
]
