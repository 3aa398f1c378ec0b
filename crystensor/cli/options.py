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
            "With a pretrained backbone (sevennet-0): frozen (features cached beside the "
            "store), partial (its last block trained) or full (all of it trained, at --lr/10; "
            "in finetune at --backbone-lr). Default: frozen for a new model, the checkpoint's "
            "for a network started from one (finetune, train --pretrain CKPT). From frozen the "
            "potential starts from the installed file's weights; a trained potential cannot be "
            "frozen again."
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
Device = Annotated[
    str | None,
    typer.Option("--device", help="auto, cpu or cuda.", show_default="auto", rich_help_panel=_T),
]
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
