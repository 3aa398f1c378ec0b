"""Tensor-only against tensor + invariant labels (issue 13, part 2): one table of runs.

Each run directory is a ``crystensor train`` output on the same tensor store. The tensor
metrics (validation and test) come from its ``metrics.json``; the invariant test metrics are
recomputed here for every run on the same label-store structures
(:func:`crystensor.train.supervision.label_sets` of the run's split), so a run trained without
the labels is scored on exactly the structures a run with them was.

    .venv/bin/python benchmarks/mixed_supervision.py --store data/dielectric-electronic-shipped.h5 \
        --labels /work/mix/nac.h5 --runs runs/diel-ft-tensor runs/diel-ft-nac
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="the tensor store")
    parser.add_argument("--labels", type=Path, nargs="+", required=True, help="label stores")
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run directories")
    args = parser.parse_args()

    from crystensor.checkpoint import load_checkpoint
    from crystensor.data.store import GraphStore
    from crystensor.train.distributed import DistInfo
    from crystensor.train.loop import _predictor
    from crystensor.train.supervision import invariant_metrics, label_sets

    torch.set_num_threads(1)
    rows = []
    for run_dir in args.runs:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        checkpoint = load_checkpoint(run_dir / "best.pt")
        split = checkpoint.meta.get("split") or {}
        primary = GraphStore(args.store)
        if split.get("source") == "recomputed":
            primary.use_split(split["method"], split.get("seed") or 0)
        labels = []
        for path in args.labels:
            store = GraphStore(path)
            if split.get("source") == "recomputed":
                store.use_split(split["method"], split.get("seed") or 0)
            labels.append((store, 1.0))
        model = checkpoint.build_members("cpu")[0]
        info = DistInfo(0, 1, 0, torch.device("cpu"))
        invariants = [
            invariant_metrics(_predictor(model, ls.store, info, 32), ls)
            for ls in label_sets(primary, labels)
        ]
        rows.append((run_dir.name, metrics, invariants))

    head = "| run | val MAE | test MAE | test MAE indep. | test median rel. Frob. | test EwT25 |"
    head += "".join(f" {p.name} test MAE (n) | {p.name} EwT25 |" for p in args.labels)
    print(head)
    print("|" + "---|" * (6 + 2 * len(args.labels)))
    for name, m, invariants in rows:
        val, test = m["val"], m["test"]
        cells = [
            name,
            f"{val['mae']:.4g}",
            f"{test['mae']:.4g}",
            f"{test['mae_independent']:.4g}",
            f"{test['relative_frobenius_median']:.3f}",
            f"{100 * test['ewt']['25']:.1f} %",
        ]
        for inv in invariants:
            cells += [f"{inv['mae']:.4g} ({inv['n_test']})", f"{100 * inv['ewt25']:.1f} %"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
