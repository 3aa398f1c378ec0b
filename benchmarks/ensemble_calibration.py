"""Single models against ensembles of the same network (other seeds): accuracy and calibration.

For the first checkpoint alone, each checkpoint alone (``--members-alone``: their mean and
spread) and an ensemble of the first N checkpoints (each N of --sizes), on the given splits of
the first checkpoint (structures and DFT tensors from the record files), through predict's
pipeline (point-group projection, physical floor):

- MAE, MAE over the independent components, median relative Frobenius error, EwT25;
- calibration of the reported spread: the share of tensor components (those not fixed to zero
  by symmetry) whose error lies within 1 and 2 standard deviations (a Gaussian would give
  68 % and 95 %), and the Spearman rank correlation of the relative uncertainty with the
  relative Frobenius error per structure;
- structures per second of predict_results in this process (a log line).

One markdown row per model and split, labelled ``--name``:

    .venv/bin/python benchmarks/ensemble_calibration.py CKPT1 CKPT2 ... --records \\
        data/dielectric-electronic.jsonl.gz data/dielectric-electronic-born.jsonl.gz \\
        [--sizes 1 3 5] [--splits val test] [--calibrate] [--members-alone] [--name NAME]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

HEAD = (
    "| run | members | split | MAE | MAE indep. | median rel. Frob. | EwT25 "
    "| within 1 / 2 sigma | rank corr. uncertainty-error |\n|---|---|---|---|---|---|---|---|---|"
)


def score(model, structures, true: np.ndarray) -> dict[str, Any]:
    """Figures of ``model`` (a checkpoint or an ensemble) on ``structures`` against ``true``."""
    from crystensor.ensembles import coverage
    from crystensor.prediction import Predictor
    from crystensor.train.metrics import tensor_metrics

    predictor = Predictor(model)
    start = time.perf_counter()
    results = predictor.predict_results(structures)
    seconds = time.perf_counter() - start
    ok = [k for k, r in enumerate(results) if r.ok]
    pred = np.stack([results[k].tensor for k in ok])
    m = tensor_metrics(pred, true[ok], predictor.kind)
    out = {
        "n": len(ok),
        "mae": m["mae"],
        "mae_independent": m["mae_independent"],
        "rel_frobenius_median": m["relative_frobenius_median"],
        "ewt25": m["ewt"]["25"],
        "per_second": len(ok) / seconds,
    }
    if results[ok[0]].std is not None:
        std = np.stack([results[k].std for k in ok])
        unc = np.array([results[k].uncertainty for k in ok])
        out.update(coverage(pred, true[ok], std, unc))
    return out


def cells(f: dict[str, Any], spread: dict[str, Any] | None = None) -> str:
    """The figure cells of one row; ``spread``: the members' standard deviations, shown as
    ``mean ± sd``."""

    def cell(key: str, scale: float = 1.0, digits: str = ".4g", unit: str = "") -> str:
        text = f"{scale * f[key]:{digits}}{unit}"
        if spread is not None:
            text += f" ± {scale * spread[key]:.2g}"
        return text

    calibration = "|  |  |"
    if f.get("within_one_sigma") is not None:
        rank = f["rank_correlation"]
        calibration = (
            f"| {100 * f['within_one_sigma']:.1f} / {100 * f['within_two_sigma']:.1f} % | "
            f"{'-' if rank is None else f'{rank:.2f}'} |"
        )
    return (
        f"{cell('mae')} | {cell('mae_independent')} | "
        f"{cell('rel_frobenius_median', 100, '.1f', ' %')} | {cell('ewt25', 100, '.1f', ' %')} "
        + calibration
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--records", nargs="+", type=Path, required=True)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--splits", nargs="+", default=["test"], choices=["train", "val", "test"])
    parser.add_argument(
        "--calibrate", action="store_true", help="scale the spread on the validation split first"
    )
    parser.add_argument(
        "--members-alone", action="store_true", help="also each member alone: mean ± sd"
    )
    parser.add_argument("--name", default="", help="the first column of every row")
    args = parser.parse_args()
    logging.getLogger("crystensor").setLevel(logging.ERROR)

    from crystensor.checkpoint import load_checkpoint, make_ensemble
    from crystensor.data.records import read_records

    checkpoints = [load_checkpoint(p) for p in args.checkpoints]
    records = {}
    for path in args.records:
        for record in read_records(path):
            records.setdefault(record.id, record)
    print(f"members: {', '.join(str(p) for p in args.checkpoints)}")
    models = []
    if args.members_alone:
        models.append(("each alone", checkpoints))
    for size in args.sizes:
        if size > len(checkpoints):
            continue
        chosen = checkpoints[:size]
        model = chosen[0] if size == 1 else make_ensemble(chosen)
        if size > 1 and args.calibrate:
            from crystensor.ensembles import calibrate

            info = calibrate(model, args.records)
            print(f"N={size}: spread scaled by {info['std_scale']:.3g} on the validation split")
        models.append((str(size), model))
    rows = []
    for split in args.splits:
        ids = [i for i in checkpoints[0].split[split] if i in records]
        structures = [records[i].pymatgen_structure() for i in ids]
        true = np.stack([np.asarray(records[i].value) for i in ids])
        print(f"{split}: {len(ids)} structures")
        for label, model in models:
            if isinstance(model, list):
                each = [score(m, structures, true) for m in model]
                keys = [k for k in each[0] if k not in ("n", "per_second")]
                mean = {k: float(np.mean([e[k] for e in each])) for k in keys}
                sd = {k: float(np.std([e[k] for e in each], ddof=1)) for k in keys}
                rows.append(f"| {args.name} | {label} | {split} | {cells(mean, sd)}")
                continue
            f = score(model, structures, true)
            print(f"{label} member(s), {split}: {f['per_second']:.0f} structures/s (one process)")
            rows.append(f"| {args.name} | {label} | {split} | {cells(f)}")
    print("\n" + HEAD)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
