"""``crystensor finetune``: continue training a checkpoint's network on another store."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from crystensor.cli import options as opt
from crystensor.cli.common import guarded
from crystensor.errors import InputError


@guarded
def finetune(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            help="Checkpoint to start from (best.pt of any run, scalar or tensor).",
            dir_okay=False,
            show_default=False,
        ),
    ],
    data: Annotated[
        Path | None,
        typer.Option("--data", "-d", help="HDF5 graph store of the new target.", dir_okay=False),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="New directory for the run's files.", file_okay=False),
    ] = None,
    freeze: Annotated[
        str,
        typer.Option(
            "--freeze",
            help="Keep fixed: embedding, interactions (embedding + interaction layers) or none.",
        ),
    ] = "none",
    backbone_lr: Annotated[
        float | None,
        typer.Option(
            "--backbone-lr",
            min=0.0,
            help=(
                "Learning rate of the transferred network, and of the pretrained potential "
                "when it is trained (default: --lr / 10)."
            ),
        ),
    ] = None,
    backbone_mode: opt.BackboneMode = None,
    epochs: opt.Epochs = None,
    batch_size: opt.BatchSize = None,
    lr: opt.LearningRate = None,
    schedule: opt.Schedule = None,
    min_lr: opt.MinLr = None,
    weight_decay: opt.WeightDecay = None,
    loss: opt.LossSpace = None,
    loss_function: opt.LossFunction = None,
    sign_agnostic: opt.SignAgnostic = None,
    clip_grad: opt.ClipGrad = None,
    patience: opt.Patience = None,
    seed: opt.Seed = None,
    device: opt.TrainingDevice = None,
    compile: opt.Compile = None,
    workers: opt.Workers = None,
    split: opt.TrainSplit = None,
    split_seed: opt.SplitSeed = None,
) -> None:
    """Fine-tune a trained network on a new store (any target).

    Example: [bold]crystensor finetune runs/elastic/best.pt -d dielectric.h5 -o runs/diel[/].

    The backbone is transferred; the head is kept when the store's target is the checkpoint's,
    else a new one is built. [bold]--backbone-mode partial|full[/] trains the pretrained
    potential of a checkpoint that kept it frozen. An interrupted fine-tuning run continues with
    [bold]crystensor train --resume RUN_DIR[/].
    """
    from crystensor.cli.training import given, make_reporter, summarise, train_config
    from crystensor.train import run

    if data is None or output is None:
        raise InputError("pass --data STORE.h5 and --output RUN_DIR")
    quiet = logging.getLogger("crystensor").getEffectiveLevel() > logging.WARNING
    if device is not None:
        device = opt.device_name(device)
    settings = given(locals())
    config = train_config(settings)
    config = config.replace(backbone_lr=config.lr / 10 if backbone_lr is None else backbone_lr)
    result = run.finetune(
        checkpoint,
        data,
        output,
        config=config,
        backbone_mode=backbone_mode,
        reporter=make_reporter(quiet),
        command=sys.argv,
        split=split or "store",
        split_seed=split_seed,
    )
    summarise(result, quiet)
