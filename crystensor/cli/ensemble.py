"""``crystensor ensemble``: several checkpoints of one network (other seeds) as one model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from crystensor.cli.common import console, guarded, log
from crystensor.errors import InputError


@guarded
def ensemble(
    checkpoints: Annotated[
        list[Path],
        typer.Argument(
            help="Checkpoints (best.pt) of the same network trained on the same data with "
            "other seeds (crystensor train --seed N), or ensembles to merge.",
            metavar="CKPT...",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The ensemble checkpoint to write.", dir_okay=False),
    ],
    calibrate: Annotated[
        list[Path] | None,
        typer.Option(
            "--calibrate",
            help="Record files the members' store was built from (repeat for several): the "
            "spread is scaled so that 68 % of the errors on the validation split lie within one "
            "standard deviation.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing checkpoint at --output.")
    ] = False,
) -> None:
    """Put several trained networks into one checkpoint that predict averages.

    The members must share the network configuration, the target, the featurization, the
    target normalisation and the split (the same training data); the first gives the metrics,
    card data and training domain. `crystensor predict -m ENSEMBLE.pt` then reports the mean
    and, per structure, each component's standard deviation over the members and one relative
    uncertainty. With --calibrate, the spread is scaled to hold 68 % of the validation errors
    within one standard deviation (members of other seeds agree with each other more than with
    the truth). Members trained with --sign-agnostic (piezoelectric), which may predict T or
    -T, are turned to one sign per structure before they are averaged. An ensemble costs one
    network evaluation per member.
    """
    from crystensor.io.atomic import check_writable

    check_writable(output, "ensemble checkpoint", overwrite=force, gzip_ok=False, streams_ok=False)
    if len(checkpoints) < 2:
        raise InputError("give at least two checkpoints to make an ensemble")
    write_ensemble(checkpoints, output, calibrate=calibrate)


def write_ensemble(
    paths: list[Path],
    output: Path,
    *,
    calibrate: list[Path] | None = None,
    note: str = "",
    quiet: bool = False,
) -> None:
    """Load the checkpoints at ``paths``, make them one ensemble (its spread calibrated on the
    record files ``calibrate``, if given), save it to ``output`` and say so (``note`` ends the
    sentence; ``quiet``: say nothing)."""
    from crystensor.checkpoint import load_checkpoint, make_ensemble, save_checkpoint

    loaded = [load_checkpoint(path) for path in paths]
    sources = [str(path) for path in paths]
    combined = make_ensemble(loaded, meta={"ensemble_of": sources})
    combined.meta["ensemble"] = {"members": combined.n_members, "of": sources}
    if calibrate:
        from crystensor.ensembles import calibrate as calibrate_spread

        info = calibrate_spread(combined, calibrate)
        console.print(
            f"Spread calibrated on {info['n']} validation structures: "
            f"{100 * info['within_one_sigma_before']:.1f} % of the errors were within one "
            f"standard deviation; scaled by {info['std_scale']:.3g}",
            highlight=False,
        )
    save_checkpoint(combined, output)
    log.info("wrote %s", output)
    if not quiet:
        console.print(
            f"Wrote {output}: an ensemble of {combined.n_members} {combined.arch} networks for "
            f"{combined.target}{note}",
            highlight=False,
        )
