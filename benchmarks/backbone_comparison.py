"""Native networks against pretrained backbones, on the random and the family-held-out split.

Trains (with ``crystensor train``, one run directory per cell, skipped when its
``metrics.json`` exists, so an interrupted sweep resumes) and then prints one table per target:
validation and test MAE, MAE over the independent components, median relative Frobenius error,
EwT25/EwT10 and seconds per epoch. Piezoelectric runs are trained and scored sign-agnostically
(README, "The sign of the piezoelectric data").

    .venv/bin/python benchmarks/backbone_comparison.py --data data --runs runs/bench \
        [--targets elastic dielectric-electronic] [--splits family random] \
        [--models native sevennet-0] [--epochs 40] [--only-table] [--json OUT.json]

Models: ``native`` (SEGNN, the shipped recipe), ``sevennet-0`` (frozen backbone, SEGNN head),
``sevennet-0-full`` (the backbone fine-tuned), ``sevennet-0-partial`` (its last block
fine-tuned), ``sevennet-l3i5`` (frozen SevenNet-l3i5, lmax 3), ``native-density`` and
``sevennet-0-density`` (density pooling), ``sevennet-0-atoms`` (the native atom embedding
added). Stores:
``elastic-shipped.h5``, ``dielectric-electronic-shipped.h5`` (``examples/build_shipped_stores.sh``),
``dielectric.h5`` and ``piezoelectric.h5`` (``examples/build_stores.sh``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tables import HEAD, figures, row

STORES = {
    "elastic": "elastic-shipped.h5",
    "dielectric-electronic": "dielectric-electronic-shipped.h5",
    "dielectric": "dielectric.h5",
    "piezoelectric": "piezoelectric.h5",
}
TARGET_OPTIONS = {
    "elastic": ["--loss-function", "huber"],
    "dielectric-electronic": ["--loss-function", "huber"],
    "dielectric": ["--loss-function", "huber"],
    "piezoelectric": ["--sign-agnostic"],
}
MODELS = {
    "native": ["--pooling", "mean"],  # explicit: train's default is density for some targets
    "native-density": ["--pooling", "density"],
    "sevennet-0": ["--backbone", "sevennet-0"],
    "sevennet-0-density": ["--backbone", "sevennet-0", "--pooling", "density"],
    "sevennet-0-full": ["--backbone", "sevennet-0", "--backbone-mode", "full"],
    "sevennet-0-atoms": ["--backbone", "sevennet-0", "--atom-embedding"],
    "sevennet-0-partial": ["--backbone", "sevennet-0", "--backbone-mode", "partial"],
    "sevennet-l3i5": ["--backbone", "sevennet-l3i5"],
}


def run_cell(
    crystensor: str, data: Path, runs: Path, target: str, split: str, model: str, epochs: int
) -> Path:
    """Train one cell unless its metrics exist; returns the run directory."""
    run_dir = runs / f"{target}-{split}-{model}"
    if (run_dir / "metrics.json").exists():
        return run_dir
    command = [
        crystensor,
        "-q",
        "train",
        *(["--resume", str(run_dir)] if (run_dir / "run.json").exists() else []),
    ]
    if len(command) == 3:
        command += [
            "-d",
            str(data / STORES[target]),
            "-o",
            str(run_dir),
            "--arch",
            "segnn",
            "--split",
            split,
            "--epochs",
            str(epochs),
            "--patience",
            str(max(5, epochs // 3)),
            "--seed",
            "0",
            *TARGET_OPTIONS[target],
            *MODELS[model],
        ]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return run_dir


def summary(run_dir: Path) -> dict[str, Any] | None:
    """The figures of one finished run, or None."""
    path = run_dir / "metrics.json"
    if not path.exists():
        return None
    metrics = json.loads(path.read_text())
    history = json.loads((run_dir / "history.json").read_text())
    seconds = sorted(r["seconds"] for r in history)
    out: dict[str, Any] = {"epochs": len(history), "best_epoch": metrics["best_epoch"]}
    out["seconds_per_epoch"] = seconds[len(seconds) // 2]
    for split in ("val", "test"):
        if metrics.get(split) is not None:
            out[split] = figures(metrics[split])
    return out


def print_table(results: dict[str, dict[str, Any]], target: str) -> None:
    print(f"\n### {target}\n")
    print(HEAD.format(last="s/epoch"))
    for key, r in results.items():
        t, split, model = key.split("|")
        if t == target and r is not None:
            print(row(split, model, r, r["seconds_per_epoch"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--runs", type=Path, default=Path("runs/bench"))
    parser.add_argument("--targets", nargs="+", default=list(STORES), choices=list(STORES))
    parser.add_argument("--splits", nargs="+", default=["family", "random"])
    parser.add_argument("--models", nargs="+", default=["native", "sevennet-0"], choices=MODELS)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--only-table", action="store_true", help="train nothing")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--crystensor", default=str(Path(sys.executable).parent / "crystensor"))
    args = parser.parse_args(argv)

    results: dict[str, Any] = {}
    for target in args.targets:
        for split in args.splits:
            for model in args.models:
                run_dir = args.runs / f"{target}-{split}-{model}"
                if not args.only_table:
                    run_dir = run_cell(
                        args.crystensor, args.data, args.runs, target, split, model, args.epochs
                    )
                results[f"{target}|{split}|{model}"] = summary(run_dir)
    for target in args.targets:
        print_table(results, target)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
