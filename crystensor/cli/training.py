"""What ``crystensor train`` and ``crystensor finetune`` share: settings, progress, summary."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from crystensor.cli.common import console

if TYPE_CHECKING:
    from crystensor.train.loop import FitResult
    from crystensor.train.run import RunResult

# CLI option name -> TrainConfig field, where they differ
_FIELD = {"workers": "num_workers"}


# The training options train and finetune share (crystensor.cli.options), by parameter name.
TRAINING_OPTIONS = (
    "epochs",
    "batch_size",
    "lr",
    "schedule",
    "min_lr",
    "weight_decay",
    "loss",
    "loss_function",
    "sign_agnostic",
    "clip_grad",
    "patience",
    "seed",
    "device",
    "compile",
    "workers",
    "freeze",
    "label_share",
)


def given(parameters: dict[str, Any]) -> dict[str, Any]:
    """The training options among a command's ``parameters`` that the user set (not None),
    keyed by TrainConfig field."""
    return {
        _FIELD.get(k, k): parameters[k] for k in TRAINING_OPTIONS if parameters.get(k) is not None
    }


def train_config(settings: dict[str, Any]):
    from crystensor.train.config import TrainConfig

    return TrainConfig(**settings)


def _is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def make_reporter(quiet: bool):
    """Progress bars on a terminal, one line per epoch otherwise (batch jobs), nothing if -q."""
    from crystensor.train.loop import Reporter

    if quiet or not _is_main():
        return Reporter()
    if console.is_terminal:
        return _BarReporter()
    return _LineReporter()


class _LineReporter:
    """One line per epoch: readable in a SLURM log."""

    def stage_start(self, name, epochs, start_epoch, batches):
        self.name = name
        self.epochs = epochs
        console.print(f"{name}: epochs {start_epoch + 1}-{epochs}, {batches} batches each")

    def batch_end(self, loss):
        pass

    def epoch_end(self, record):
        console.print(
            f"{self.name} epoch {record['epoch']}/{self.epochs}  train loss "
            f"{record['train_loss']:.4g}  val loss {record['val_loss']:.4g}  val MAE "
            f"{record['val_mae']:.4g}  lr {record['lr']:.3g}  {record['seconds']:.1f} s",
            highlight=False,
            soft_wrap=True,
        )

    def stage_end(self, result):
        pass


class _BarReporter:
    """Rich progress: an epoch bar with ETA and live losses, and a batch bar."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self.epochs_task = self.batch_task = None

    def stage_start(self, name, epochs, start_epoch, batches):
        self.progress.start()
        self.epochs_task = self.progress.add_task(
            f"{name} epochs", total=epochs, completed=start_epoch, status=""
        )
        self.batch_task = self.progress.add_task("  batches", total=batches, status="")

    def batch_end(self, loss):
        self.progress.update(self.batch_task, advance=1, status=f"loss {loss:.4g}")

    def epoch_end(self, record):
        self.progress.update(
            self.epochs_task,
            advance=1,
            status=(
                f"train {record['train_loss']:.4g}  val {record['val_loss']:.4g}  "
                f"val MAE {record['val_mae']:.4g}"
            ),
        )
        self.progress.reset(self.batch_task, status="")

    def stage_end(self, result):
        self.progress.stop()
        self.progress = type(self.progress)(*self.progress.columns, console=console)


def _stage_table(result: FitResult):
    from rich.table import Table

    from crystensor.train.metrics import format_metrics

    m = result.metrics
    counts = m.get("counts", {})
    table = Table(
        title=(
            f"{result.run_dir.name}: {m.get('arch')} on {m.get('store')} ({m.get('target')}), "
            f"best epoch {m.get('best_epoch')} of {m.get('epochs_run')}"
            + (" (stopped early)" if m.get("stopped_early") else "")
        ),
        title_justify="left",
    )
    table.add_column("split")
    table.add_column("graphs", justify="right")
    table.add_column("metrics")
    for split in ("val", "test"):
        if split in m:
            lines = [line for line in format_metrics(m[split]) if not line.startswith(" ")]
            table.add_row(split, str(counts.get(split, "")), "\n".join(lines))
    for labels in m.get("label_sets", ()):
        table.add_row(f"test, {labels['store']}", str(labels["n_test"]), _label_line(labels, m))
    return table


def _label_line(labels: dict, metrics: dict) -> str:
    """One label store's test metrics in words."""
    if labels.get("label") is None:
        return f"more {metrics.get('target')} tensors (weight {labels['weight']:g}); no own metrics"
    what = labels["label"].replace("_", " ")
    if "mae" not in labels:
        return f"{what}: no test structures unseen in training"
    units = metrics.get("units") or ""
    return (
        f"{what}: MAE {labels['mae']:.3g}{' ' + units if units else ''}, median relative "
        f"error {labels['median_relative_error']:.3g}, EwT25 {100 * labels['ewt25']:.1f} % "
        f"(weight {labels['weight']:g}; {labels['n_train']} trained on, "
        f"{labels['excluded_train']} left out as duplicates of held-out materials)"
    )


def summarise(result: RunResult, quiet: bool) -> None:
    """Final metrics of every stage and where the files are."""
    if quiet or not _is_main():
        return
    for stage in result.stages:
        console.print(_stage_table(stage))
    final = result.final.run_dir
    plots = ", ".join(sorted(p.name for p in final.glob("*.png")))
    console.print(
        f"model: {final / 'best.pt'}\nmetrics: {final / 'metrics.json'}\nplots in {final}: {plots}",
        highlight=False,
        soft_wrap=True,  # paths stay whole, for scripts that grep them
    )
