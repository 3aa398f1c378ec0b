"""``crystensor train``: fit a model to a graph store, optionally after scalar pretraining."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from crystensor.cli import options as opt
from crystensor.cli.common import guarded
from crystensor.errors import InputError

_M = "Model"
_P = "Pretraining"


@guarded
def train(
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data",
            "-d",
            help=(
                "HDF5 graph store of the target's tensors (crystensor featurize). Repeat it to "
                "add label stores with a loss weight, STORE:WEIGHT (default 1): principal "
                "values of a dielectric target (fetch -s naccarato), bulk-modulus or "
                "shear-modulus stores for elastic (matched to the Hill averages of the "
                "predicted tensor), or more tensors of the target. Validation and the tensor "
                "metrics use the first store."
            ),
            metavar="STORE[:WEIGHT]",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="New directory for the run's files.", file_okay=False),
    ] = None,
    arch: Annotated[
        str,
        typer.Option("--arch", "-a", help="segnn, seconv or setransformer.", rich_help_panel=_M),
    ] = "segnn",
    preset: Annotated[
        str,
        typer.Option("--preset", help="Model size: small or default.", rich_help_panel=_M),
    ] = "default",
    lmax: Annotated[
        int | None,
        typer.Option(
            "--lmax",
            min=0,
            help="Highest l of hidden features and edge harmonics.",
            rich_help_panel=_M,
        ),
    ] = None,
    channels: Annotated[
        int | None,
        typer.Option(
            "--channels", min=1, help="Multiplicity of each hidden irrep.", rich_help_panel=_M
        ),
    ] = None,
    interactions: Annotated[
        int | None,
        typer.Option(
            "--interactions",
            "-R",
            min=0,
            help="Interaction layers R (0 allowed with a pretrained backbone).",
            rich_help_panel=_M,
        ),
    ] = None,
    self_interactions: Annotated[
        int | None,
        typer.Option(
            "--self-interactions",
            "-N",
            min=1,
            help="Self-interaction layers N.",
            rich_help_panel=_M,
        ),
    ] = None,
    mlp_layers: Annotated[
        int | None,
        typer.Option(
            "--mlp-layers",
            "-M",
            min=0,
            help="Equivariant MLP layers M of the head.",
            rich_help_panel=_M,
        ),
    ] = None,
    pooling: Annotated[
        str | None,
        typer.Option(
            "--pooling",
            help=(
                "Graph pooling: mean, max, or density (sum over the cell volume). Default: "
                "density for elastic and piezoelectric tensors of a native network, mean "
                "otherwise."
            ),
            rich_help_panel=_M,
        ),
    ] = None,
    pool_norm: Annotated[
        bool | None,
        typer.Option(
            "--pool-norm/--no-pool-norm",
            help=(
                "Scale each pooled feature channel to unit size on the training data before "
                "the head (default: on for piezoelectric targets, which need it; off for the "
                "others)."
            ),
            rich_help_panel=_M,
        ),
    ] = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            "--backbone",
            help=(
                "native (atom features, the architecture's own layers; the default) or a "
                "pretrained potential whose node features feed them: sevennet-0 or "
                "sevennet-l3i5 (lmax 3; slower)."
            ),
            rich_help_panel=_M,
        ),
    ] = None,
    backbone_mode: opt.BackboneMode = None,
    atom_embedding: Annotated[
        bool,
        typer.Option(
            "--atom-embedding/--no-atom-embedding",
            help=(
                "With a pretrained backbone: also embed the atom features, as the native "
                "backbone does, and add them to its scalar features."
            ),
            rich_help_panel=_M,
        ),
    ] = False,
    prior: Annotated[
        str | None,
        typer.Option(
            "--prior",
            help=(
                "Elastic only: a universal potential (sevennet-0) whose elastic tensor of each "
                "structure the head corrects; computed once per store (~1 s a structure) and "
                "cached beside it as STORE.sevennet-0.prior.h5."
            ),
            rich_help_panel=_M,
        ),
    ] = None,
    prior_kind: Annotated[
        str | None,
        typer.Option(
            "--prior-kind",
            help="With --prior: clamped (default) or relaxed ions (3-10x slower to compute).",
            rich_help_panel=_M,
        ),
    ] = None,
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
    label_share: opt.LabelShare = None,
    seed: opt.Seed = None,
    device: opt.TrainingDevice = None,
    compile: opt.Compile = None,
    workers: opt.Workers = None,
    split: opt.TrainSplit = None,
    split_seed: opt.SplitSeed = None,
    pretrain: Annotated[
        str | None,
        typer.Option(
            "--pretrain",
            help=(
                "First train on a scalar (band-gap or formation-energy, with --pretrain-data; "
                "bandgap is accepted for band-gap), or start from a checkpoint file's network."
            ),
            rich_help_panel=_P,
        ),
    ] = None,
    pretrain_data: Annotated[
        Path | None,
        typer.Option(
            "--pretrain-data",
            help="Graph store of the pretraining scalar.",
            dir_okay=False,
            rich_help_panel=_P,
        ),
    ] = None,
    pretrain_epochs: Annotated[
        int | None,
        typer.Option(
            "--pretrain-epochs",
            min=1,
            help="Epochs of the pretraining stage (default: --epochs).",
            rich_help_panel=_P,
        ),
    ] = None,
    ensemble: Annotated[
        int,
        typer.Option(
            "--ensemble",
            min=1,
            help="Train N networks, seeds --seed .. --seed+N-1, into OUTPUT/seed-S, and put "
            "them into OUTPUT/ensemble.pt (see crystensor ensemble; its --calibrate scales the "
            "spread afterwards).",
        ),
    ] = 1,
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume",
            help="Continue the interrupted run in this directory with its own settings.",
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Train a model on a graph store: [bold]crystensor train -d elastic.h5 -o runs/elastic[/].

    Writes best.pt and last.pt (checkpoints), metrics.json (per-component Voigt MAE, Frobenius
    error, EwT; per crystal system), history.json, train.log and PNG plots to the run directory.
    Runs data-parallel under [bold]torchrun --nproc_per_node K[/] (see examples/slurm_train.sh).
    """
    from crystensor.cli.training import given, make_reporter, summarise, train_config
    from crystensor.train import run

    quiet = logging.getLogger("crystensor").getEffectiveLevel() > logging.WARNING
    if device is not None:
        device = opt.device_name(device)
    settings = given(locals())
    model = {
        k: v
        for k, v in dict(
            lmax=lmax,
            channels=channels,
            num_interactions=interactions,
            num_self_interactions=self_interactions,
            num_mlp_layers=mlp_layers,
            pooling=pooling,
            pool_norm=pool_norm,
        ).items()
        if v is not None
    }
    from crystensor.train.run import PRETRAIN_TARGETS

    from_checkpoint = pretrain is not None and pretrain not in PRETRAIN_TARGETS
    if pretrain is not None and not from_checkpoint:
        pretrain = PRETRAIN_TARGETS[pretrain]  # the store's name: bandgap -> band-gap
    if from_checkpoint and (backbone is not None or atom_embedding):
        raise InputError(
            "the network given to --pretrain CKPT brings its backbone; drop --backbone and "
            "--atom-embedding (--backbone-mode changes the checkpoint's mode)"
        )
    if not from_checkpoint and (
        backbone not in (None, "native") or backbone_mode or atom_embedding
    ):
        model.update(
            backbone=backbone or "native",
            backbone_mode=backbone_mode or "frozen",
            atom_embedding=atom_embedding,
        )
        if interactions is None and backbone not in (None, "native"):
            model["num_interactions"] = 1  # the potential's blocks did the message passing
    if prior_kind is not None and prior in (None, "none"):
        raise InputError("--prior-kind needs --prior sevennet-0")
    if prior not in (None, "none"):
        _check_prior(prior, prior_kind or "clamped", pretrain)
        model.update(prior=prior, prior_kind=prior_kind or "clamped")
    reporter = make_reporter(quiet)
    if resume is not None:
        extra = [k for k, v in dict(data=data, output=output, pretrain=pretrain).items() if v]
        extra += [k for k, v in dict(split=split, split_seed=split_seed).items() if v is not None]
        if ensemble > 1:
            extra.append("ensemble")
        if settings or model or extra:
            raise InputError(
                "--resume continues a run with the settings it started with; drop "
                + ", ".join(f"--{k.replace('_', '-')}" for k in [*settings, *model, *extra])
            )
        result = run.resume(resume, reporter=reporter)
    else:
        if not data or output is None:
            raise InputError("pass --data STORE.h5 and --output RUN_DIR (or --resume RUN_DIR)")
        data, labels = _stores(data)
        if label_share is not None and not labels:
            raise InputError(
                "--label-share draws from label stores; add one (-d LABELS.h5:WEIGHT) or drop it"
            )
        _check_choice("--arch", arch, ("segnn", "seconv", "setransformer"))
        _check_choice("--preset", preset, ("small", "default"))
        if not from_checkpoint:
            _check_backbone(backbone or "native", backbone_mode or "frozen")
        config = train_config(settings)
        pre_config = None
        if pretrain_epochs is not None:
            pre_config = config.replace(epochs=pretrain_epochs)
        elif pretrain_data is not None and pretrain is None:
            raise InputError("--pretrain-data needs --pretrain band-gap or formation-energy")
        if ensemble > 1:
            _train_ensemble(
                ensemble,
                output,
                config,
                quiet,
                lambda out, cfg: run.train(
                    data,
                    out,
                    arch=arch,
                    preset_name=preset,
                    model_overrides=model,
                    config=cfg,
                    pretrain=pretrain,
                    pretrain_data=pretrain_data,
                    pretrain_config=None
                    if pre_config is None
                    else pre_config.replace(seed=cfg.seed),
                    reporter=reporter,
                    command=sys.argv,
                    split=split or "store",
                    split_seed=split_seed,
                    backbone_mode=backbone_mode if from_checkpoint else None,
                    labels=labels,
                ),
            )
            return
        result = run.train(
            data,
            output,
            arch=arch,
            preset_name=preset,
            model_overrides=model,
            config=config,
            pretrain=pretrain,
            pretrain_data=pretrain_data,
            pretrain_config=pre_config,
            reporter=reporter,
            command=sys.argv,
            split=split or "store",
            split_seed=split_seed,
            backbone_mode=backbone_mode if from_checkpoint else None,
            labels=labels,
        )
    summarise(result, quiet)


def _train_ensemble(n: int, output: Path, config: Any, quiet: bool, train_one: Any) -> None:
    """Train ``n`` seeds into ``output/seed-S`` and write ``output/ensemble.pt``."""
    from crystensor.cli.ensemble import write_ensemble
    from crystensor.cli.training import summarise

    first = config.seed
    paths = []
    for seed in range(first, first + n):
        result = train_one(output / f"seed-{seed}", config.replace(seed=seed))
        summarise(result, quiet)
        paths.append(output / f"seed-{seed}" / "best.pt")
    last = first + n - 1
    note = f" (seeds {first}-{last}); calibrate its spread with crystensor ensemble --calibrate"
    write_ensemble(paths, output / "ensemble.pt", note=note, quiet=quiet)


def _stores(data: list[str]) -> tuple[Path, list[tuple[str, float]]]:
    """The tensor store (the first --data) and the label stores with their weights."""
    from crystensor.train.supervision import parse_store_weight

    first, weight = parse_store_weight(data[0])
    if weight != 1.0:
        raise InputError(
            f"the first --data store ({first}) is the tensor store, whose loss weight is 1; "
            "give weights to the label stores after it"
        )
    return Path(first), [parse_store_weight(d) for d in data[1:]]


def _check_prior(prior: str, kind: str, pretrain: str | None) -> None:
    from crystensor.data.prior_cache import PRIOR_KINDS
    from crystensor.models.backbones.sevennet import POTENTIALS

    _check_choice("--prior", prior, ("none", *POTENTIALS))
    _check_choice("--prior-kind", kind, PRIOR_KINDS)
    if pretrain is not None:
        raise InputError("--prior cannot be combined with --pretrain; train without it")


def _check_backbone(backbone: str, mode: str) -> None:
    from crystensor.models.backbones import available_backbones
    from crystensor.models.config import BACKBONE_MODES

    _check_choice("--backbone", backbone, available_backbones())
    _check_choice("--backbone-mode", mode, BACKBONE_MODES)
    if backbone == "native" and mode != "frozen":
        raise InputError("--backbone-mode applies to a pretrained --backbone such as sevennet-0")


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
