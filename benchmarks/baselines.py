"""What a model must beat: the test metrics of predictors that do not look at the structure.

An equivariant network that ignores the structure can only output a tensor invariant under every
rotation: its ``0e`` parts. So the best structure-blind equivariant predictor is a constant
isotropic tensor, and for a piezoelectric tensor (``1o+1o+2o+3o``, no ``0e`` part) it is the zero
tensor. For each store this prints, on its test split (by default the split saved in the store,
which ``crystensor train`` uses; ``--split family`` recomputes the family-held-out split the way
``crystensor train --split family`` does, ``--subset val`` scores the validation split):

* ``zero``: the zero tensor;
* ``isotropic mean``: the ``0e`` parts averaged over the training split, every other part zero
  (the MSE-optimal structure-blind equivariant prediction);
* ``isotropic median``: the same with the median of each ``0e`` component (the L1 flavour).

with the same metrics as ``crystensor train`` (:func:`crystensor.train.metrics.tensor_metrics`:
mean Voigt-component MAE, Frobenius MAE, EwT25).

    .venv/bin/python benchmarks/baselines.py [STORE.h5 ...]   (default: data/{elastic,
        dielectric,piezoelectric}.h5 and the shipped stores that exist)
        [--split {store,random,family}] [--seed N] [--subset {test,val}]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STORES = [
    "elastic",
    "elastic-shipped",
    "dielectric",
    "dielectric-electronic",
    "dielectric-electronic-shipped",
    "piezoelectric",
]


def read_store(path: Path, split: str = "store", seed: int = 0) -> dict[str, Any]:
    """Targets, split names and crystal systems of a graph store.

    ``split``: ``"store"`` (the one saved in the file) or a method for
    :meth:`crystensor.data.store.GraphStore.use_split` (``"random"``, ``"family"``) with ``seed``.
    """
    import h5py

    from crystensor.data.store import SPLIT_NAMES, GraphStore

    codes = None if split == "store" else GraphStore(path).use_split(split, seed).read("split")
    with h5py.File(path, "r") as f:
        if codes is None:
            names, codes = json.loads(f["split"].attrs["names"]), f["split"][:]
        else:
            names = SPLIT_NAMES
        split_names = np.array([names[i] for i in codes])
        return {
            "target": str(f.attrs["target"]),
            "kind": str(f.attrs["kind"]),
            "units": str(f.attrs["units"]),
            "tensors": np.asarray(f["target_cartesian"][:], dtype=float),
            "split": split_names,
            "systems": [s.decode() for s in f["crystal_system"][:]],
        }


def isotropic(tensors: np.ndarray, kind: str, reduce: Any) -> np.ndarray:
    """The ``0e`` parts of ``tensors`` reduced over the first axis, all other parts zero."""
    from crystensor.tensors.harmonic import from_irreps, irrep_blocks, to_irreps

    irreps = to_irreps(tensors, kind)
    constant = np.zeros(irreps.shape[1])
    for block in irrep_blocks(kind):
        if block.part.irrep == "0e":
            constant[block.slice] = reduce(irreps[:, block.slice], axis=0)
    return from_irreps(constant, kind)


def baselines(store: dict[str, Any], subset: str = "test") -> dict[str, dict[str, Any]]:
    """Metrics of the three structure-blind predictors on ``subset`` (``test`` or ``val``)."""
    from crystensor.train.metrics import tensor_metrics

    train = store["tensors"][store["split"] == "train"]
    test_rows = store["split"] == subset
    true = store["tensors"][test_rows]
    systems = [s for s, t in zip(store["systems"], test_rows, strict=True) if t]
    predictors = {
        "zero": np.zeros_like(true[0]),
        "isotropic mean": isotropic(train, store["kind"], np.mean),
        "isotropic median": isotropic(train, store["kind"], np.median),
    }
    return {
        name: tensor_metrics(
            np.broadcast_to(constant, true.shape),
            true,
            store["kind"],
            systems,
            units=store["units"],
        )
        for name, constant in predictors.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stores", nargs="*", type=Path)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--split",
        choices=["store", "random", "family"],
        default="store",
        help="the split saved in the store (default) or one recomputed as crystensor train --split",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of a recomputed split")
    parser.add_argument("--subset", choices=["test", "val"], default="test")
    args = parser.parse_args(argv)
    stores = args.stores or [
        p for p in (REPO / "data" / f"{n}.h5" for n in DEFAULT_STORES) if p.is_file()
    ]
    if not stores:
        print("no stores given and none in data/ (build them with examples/build_stores.sh)")
        return 2
    header = ["store", f"n {args.subset}", "predictor", "MAE", "Frobenius MAE", "EwT25"]
    rows = []
    for path in stores:
        try:
            store = read_store(path, args.split, args.seed)
        except (OSError, KeyError, ValueError) as exc:
            print(f"error: {path}: {exc}")
            return 2
        n_test = int((store["split"] == args.subset).sum())
        for name, m in baselines(store, args.subset).items():
            rows.append(
                [
                    path.name,
                    str(n_test),
                    name,
                    f"{m['mae']:.4g} {store['units']}".strip(),
                    f"{m['frobenius_mae']:.4g}",
                    f"{100 * m['ewt']['25']:.1f} %",
                ]
            )
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
