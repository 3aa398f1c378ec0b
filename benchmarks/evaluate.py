"""Test metrics of a checkpoint on a store's split, in total and per source record file.

A store built from several record files (``crystensor featurize A.jsonl.gz B.jsonl.gz``, e.g.
the shipped elastic store: matminer + StrainTensorNet) has one test split; this prints the
metrics of :func:`crystensor.train.metrics.tensor_metrics` over all of it and over the graphs of
each source file, so that a model trained on the combined data can be compared with one trained
on a single source. ``--ids-of OTHER.h5`` keeps only the graphs whose id is in the same split of
another store (e.g. the matminer-only test split, to compare with the direct runs).

The metrics are those of ``crystensor evaluate`` (:func:`crystensor.evaluation.evaluate_store`):
on a store that shares materials with the model's training split, the split is the model's own
(by material id), otherwise the store's.

    .venv/bin/python benchmarks/evaluate.py CKPT --store STORE.h5 [--split test]
        [--ids-of OTHER.h5] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def _split_ids(path: Path, split: str) -> set[str]:
    import h5py

    with h5py.File(path, "r") as f:
        names = json.loads(f["split"].attrs["names"])
        ids = [i.decode() for i in f["ids"][:]]
        return {i for i, s in zip(ids, f["split"][:], strict=True) if names[s] == split}


def evaluate_checkpoint(
    checkpoint_path: Path, store_path: Path, split: str = "test", ids_of: Path | None = None
) -> dict[str, Any]:
    """``{"all": metrics, "<source file>": metrics, ...}`` of the checkpoint on ``split``."""
    from crystensor.evaluation import evaluate_store

    ids = None if ids_of is None else _split_ids(ids_of, split)
    result = evaluate_store(checkpoint_path, store_path, split=split, ids=ids)
    return {"all": result["metrics"], **result["by_source"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument("--ids-of", type=Path, help="keep the ids in this store's same split")
    parser.add_argument("--json", type=Path, help="also write the metrics here")
    args = parser.parse_args(argv)
    result = evaluate_checkpoint(args.checkpoint, args.store, args.split, args.ids_of)
    print(f"{args.checkpoint} on the {args.split} split of {args.store.name}")
    print(f"{'graphs':<28} {'n':>5} {'MAE':>10} {'Frobenius MAE':>14} {'EwT25':>7}")
    for name, m in result.items():
        print(
            f"{name:<28} {m['n']:>5} {m['mae']:>10.4g} {m['frobenius_mae']:>14.4g} "
            f"{100 * m['ewt']['25']:>6.1f}%"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
