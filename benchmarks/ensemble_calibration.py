"""Single model against ensembles of the same network (other seeds): accuracy and calibration.

For an ensemble of the given checkpoints (the first N, for each N of --sizes) on the test split
of the first checkpoint (structures and DFT tensors from the record files), through predict's
pipeline (point-group projection, physical floor):

- MAE, MAE over the independent components, median relative Frobenius error, EwT25;
- calibration of the reported spread: the share of tensor components (those not fixed to zero
  by symmetry) whose error lies within 1 and 2 standard deviations (a Gaussian would give
  68 % and 95 %), and the Spearman rank correlation of the relative uncertainty with the
  relative Frobenius error per structure;
- structures per second of predict_results in this process.

    .venv/bin/python benchmarks/ensemble_calibration.py CKPT1 CKPT2 ... --records \
        data/dielectric-electronic.jsonl.gz data/dielectric-electronic-born.jsonl.gz \
        [--sizes 1 3 5] [--split test]
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--records", nargs="+", type=Path, required=True)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 3, 5])
    parser.add_argument("--split", default="test", choices=["train", "val", "test"])
    parser.add_argument(
        "--calibrate", action="store_true", help="scale the spread on the validation split first"
    )
    args = parser.parse_args()
    logging.getLogger("crystensor").setLevel(logging.ERROR)

    from scipy.stats import spearmanr

    from crystensor.checkpoint import load_checkpoint, make_ensemble
    from crystensor.data.records import read_records
    from crystensor.prediction import Predictor
    from crystensor.train.metrics import tensor_metrics

    checkpoints = [load_checkpoint(p) for p in args.checkpoints]
    ids = checkpoints[0].split[args.split]
    records = {}
    for path in args.records:
        for record in read_records(path):
            records.setdefault(record.id, record)
    ids = [i for i in ids if i in records]
    structures = [records[i].pymatgen_structure() for i in ids]
    true = np.stack([np.asarray(records[i].value) for i in ids])
    print(
        f"{len(ids)} structures of the {args.split} split; members: "
        f"{', '.join(str(p) for p in args.checkpoints)}"
    )
    for size in args.sizes:
        if size > len(checkpoints):
            continue
        chosen = checkpoints[:size]
        model = chosen[0] if size == 1 else make_ensemble(chosen)
        if size > 1 and args.calibrate:
            from crystensor.ensembles import calibrate

            info = calibrate(model, args.records)
            print(f"N={size}: spread scaled by {info['std_scale']:.3g} on the validation split")
        predictor = Predictor(model)
        start = time.perf_counter()
        results = predictor.predict_results(structures)
        seconds = time.perf_counter() - start
        ok = [k for k, r in enumerate(results) if r.ok]
        pred = np.stack([results[k].tensor for k in ok])
        m = tensor_metrics(pred, true[ok], predictor.kind)
        line = (
            f"N={size}: MAE {m['mae']:.4g}, MAE indep {m['mae_independent']:.4g}, median rel. "
            f"Frobenius {100 * m['relative_frobenius_median']:.1f} %, EwT25 "
            f"{100 * m['ewt']['25']:.1f} %, {len(ok) / seconds:.0f} structures/s (one process)"
        )
        if size > 1:
            std = np.stack([results[k].std for k in ok])
            err = np.abs(pred - true[ok])
            free = std > 0  # components symmetry does not fix
            within1 = float((err[free] <= std[free]).mean())
            within2 = float((err[free] <= 2 * std[free]).mean())
            rel = np.linalg.norm((pred - true[ok]).reshape(len(ok), -1), axis=1) / np.linalg.norm(
                true[ok].reshape(len(ok), -1), axis=1
            )
            unc = np.array([results[k].uncertainty for k in ok])
            rho = spearmanr(unc, rel).statistic
            line += (
                f"; within 1 sigma {100 * within1:.1f} %, within 2 sigma {100 * within2:.1f} %, "
                f"rank correlation uncertainty/error {rho:.3f}, median uncertainty "
                f"{100 * np.median(unc):.1f} %"
            )
        print(line)


if __name__ == "__main__":
    main()
