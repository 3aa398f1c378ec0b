"""Test metrics of a checkpoint on a store's split, in total and per source record file.

A store built from several record files (``crystensor featurize A.jsonl.gz B.jsonl.gz``, e.g.
the shipped elastic store: matminer + StrainTensorNet) has one test split; this prints the
metrics of :func:`crystensor.train.metrics.tensor_metrics` over all of it and over the graphs of
each source file, so that a model trained on the combined data can be compared with one trained
on a single source. ``--ids-of OTHER.h5`` keeps only the graphs whose id is in the same split of
another store (e.g. the matminer-only test split, to compare with the direct runs).

    .venv/bin/python benchmarks/evaluate.py CKPT --store STORE.h5 [--split test]
        [--ids-of OTHER.h5] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


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
    import h5py
    import torch

    from crystensor.data.dataset import GraphDataset
    from crystensor.data.store import GraphStore
    from crystensor.errors import InputError
    from crystensor.train.checkpoint import check_featurization, load_checkpoint
    from crystensor.train.distributed import DistInfo
    from crystensor.train.loop import evaluate
    from crystensor.train.metrics import tensor_metrics

    checkpoint = load_checkpoint(checkpoint_path)
    store = GraphStore(store_path)
    if store.target != checkpoint.target:
        raise InputError(f"{store_path.name} holds {store.target}, not {checkpoint.target}")
    check_featurization(checkpoint.featurization, store, f"the checkpoint {checkpoint_path}")
    dataset = GraphDataset(store).subset(split)
    model = checkpoint.build_model()
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    out = evaluate(model, dataset, info=info, batch_size=16)
    index, pred, true = out["index"], out["pred"], out["true"]
    with h5py.File(store_path, "r") as f:
        ids = np.array([i.decode() for i in f["ids"][:]])[index]
        record = f["record_index"][:][index]
        systems = np.array([s.decode() for s in f["crystal_system"][:]])[index]
        sources = json.loads(f.attrs["sources"])
    keep = np.ones(len(index), dtype=bool)
    if ids_of is not None:
        other = _split_ids(ids_of, split)
        keep = np.array([i in other for i in ids])
    # record_index counts the records of all source files in order
    ends = np.cumsum([s.get("records", 0) for s in sources])
    source_of = np.searchsorted(ends, record, side="right")
    groups = {"all": keep}
    if len(sources) > 1 and ends[-1] > 0:
        for k, s in enumerate(sources):
            groups[s["file"]] = keep & (source_of == k)
    kind, units = checkpoint.kind.name, store.units
    return {
        name: tensor_metrics(pred[rows], true[rows], kind, list(systems[rows]), units=units)
        for name, rows in groups.items()
        if rows.any()
    }


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
