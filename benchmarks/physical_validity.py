"""What predict's physical floor and domain warnings do on the shipped models (issue 14).

For each shipped model with a floor (elastic, dielectric, dielectric-electronic):

1. On its own test split (the checkpoint's test ids, structures and DFT tensors from the record
   files): test metrics of the point-group-projected tensor before and after the floor, how
   many predictions it changed, and the error of the structures flagged far-from-training
   against the others (mean absolute Voigt error per structure).
2. On structures of the other property's data that the model never saw (elastic: the
   dielectric set's materials not in the elastic records; dielectric: the elastic set's
   materials not in the dielectric records): how many raw predictions are not physical, and
   how many structures get each warning.

    .venv/bin/python benchmarks/physical_validity.py [--data data] [--limit N]

Needs the record files of examples/build_stores.sh and build_shipped_stores.sh in --data.
"""

from __future__ import annotations

import argparse
import collections
import time
from pathlib import Path

import numpy as np

from crystensor.data.records import read_records
from crystensor.prediction import load_predictor
from crystensor.train.metrics import tensor_metrics

# the record files each shipped model's store was built from
RECORDS = {
    "elastic": ("elastic.jsonl.gz", "elastic-stn.jsonl.gz"),
    "dielectric": ("dielectric.jsonl.gz",),
    "dielectric-electronic": (
        "dielectric-electronic.jsonl.gz",
        "dielectric-electronic-born.jsonl.gz",
    ),
}
# structures a model never saw: the other property's records
UNSEEN = {
    "elastic": "dielectric.jsonl.gz",
    "dielectric": "elastic.jsonl.gz",
    "dielectric-electronic": "elastic.jsonl.gz",
}


def load(data: Path, names: tuple[str, ...]) -> dict[str, tuple]:
    out = {}
    for name in names:
        for record in read_records(data / name):
            out.setdefault(record.id, (record.pymatgen_structure(), np.asarray(record.value)))
    return out


def summary(m: dict) -> str:
    return (
        f"MAE {m['mae']:.4g}, MAE indep {m['mae_independent']:.4g}, median rel. Frobenius "
        f"{100 * m['relative_frobenius_median']:.1f} %, EwT25 {100 * m['ewt']['25']:.1f} %"
    )


def on_test_split(target: str, data: Path) -> None:
    predictor = load_predictor(target)
    records = load(data, RECORDS[target])
    ids = [i for i in predictor.checkpoint.split["test"] if i in records]
    start = time.perf_counter()
    results = predictor.predict_results([records[i][0] for i in ids])
    seconds = time.perf_counter() - start
    ok = [(i, r) for i, r in zip(ids, results, strict=True) if r.ok]
    true = np.stack([records[i][1] for i, _ in ok])
    projected = np.stack([r.symmetrized for _, r in ok])
    valid = np.stack([r.valid for _, r in ok])
    kind = predictor.kind
    changed = sum(r.adjustment["changed"] for _, r in ok)
    print(f"\n{target}: test split, {len(ok)} of {len(ids)} structures ({seconds:.1f} s)")
    print(f"  projected onto the point group: {summary(tensor_metrics(projected, true, kind))}")
    print(f"  + physical floor (reported):    {summary(tensor_metrics(valid, true, kind))}")
    print(f"  changed by the floor: {changed}")
    errors = np.abs(valid - true).reshape(len(ok), -1).mean(axis=1)
    flat = (valid - true).reshape(len(ok), -1)
    relative = np.linalg.norm(flat, axis=1) / np.linalg.norm(true.reshape(len(ok), -1), axis=1)
    far = np.array([any(w["code"] == "far-from-training" for w in r.warnings) for _, r in ok])
    if far.any():
        print(
            f"  far-from-training: {far.sum()} of {len(ok)}; flagged vs not flagged: mean abs "
            f"error per component {errors[far].mean():.4g} vs {errors[~far].mean():.4g}, median "
            f"relative Frobenius error {100 * np.median(relative[far]):.1f} % vs "
            f"{100 * np.median(relative[~far]):.1f} %"
        )
    distance = np.array([r.feature_distance for _, r in ok])
    from scipy.stats import spearmanr

    print(
        f"  Spearman rank correlation of feature distance with relative error: "
        f"{spearmanr(distance, relative).statistic:.3f}"
    )
    codes = collections.Counter(w["code"] for _, r in ok for w in r.warnings)
    print(f"  warnings: {dict(sorted(codes.items()))}")


def on_unseen(target: str, data: Path, limit: int | None) -> None:
    predictor = load_predictor(target)
    seen = set(load_ids(data, RECORDS[target]))
    structures = [
        (r.id, r.pymatgen_structure())
        for r in read_records(data / UNSEEN[target])
        if r.id not in seen
    ][:limit]
    results = predictor.predict_results([s for _, s in structures])
    ok = [r for r in results if r.ok]
    not_physical = [r for r in ok if r.adjustment["changed"]]
    codes = collections.Counter(w["code"] for r in ok for w in r.warnings)
    still = sum(r.adjustment is not None and _below_floor(r) for r in ok)
    print(
        f"{target} on {len(ok)} structures of {UNSEEN[target]} it never saw: raw prediction not "
        f"physical for {len(not_physical)}; reported tensors below the floor: {still}; "
        f"warnings {dict(sorted(codes.items()))}"
    )
    worst = sorted(not_physical, key=lambda r: r.adjustment["smallest_before"])[:3]
    for r in worst:
        print(
            f"  e.g. {r.formula}: smallest {r.adjustment['quantity']} "
            f"{r.adjustment['smallest_before']:.3g} -> floor {r.adjustment['floor']}"
        )


def _below_floor(r) -> bool:
    from crystensor.tensors.physical import make_physical

    _, adjustment = make_physical(r.tensor, r.kind)
    return adjustment.smallest_before < adjustment.floor - 1e-9


def load_ids(data: Path, names: tuple[str, ...]) -> list[str]:
    return [r.id for name in names for r in read_records(data / name)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--limit", type=int, default=None, help="unseen structures per model")
    args = parser.parse_args()
    for target in RECORDS:
        on_test_split(target, args.data)
    print()
    for target in RECORDS:
        on_unseen(target, args.data, args.limit)


if __name__ == "__main__":
    main()
