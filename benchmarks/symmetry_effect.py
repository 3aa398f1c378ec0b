"""What a trained model gains when its predictions are projected onto each crystal's point group.

The networks predict every component of a tensor, including those that the crystal's symmetry
forces to zero or to equal each other (the paper's conclusion: "avoid predicting tensor
components that should be identically zero a priori"). By Neumann's principle the true tensor
``T`` of a crystal with point group ``G`` is invariant, ``g . T = T`` for every ``g`` in ``G``,
so the orthogonal projection

.. math::  P_G(\\hat T) = \\frac{1}{|G|} \\sum_{g \\in G} g \\cdot \\hat T

of a prediction ``\\hat T`` is never farther from ``T`` in the Frobenius norm
(``|P_G \\hat T - T| = |P_G (\\hat T - T)| <= |\\hat T - T|``) and puts exact zeros where the
symmetry demands them. This script predicts every graph of one split of a store with a
checkpoint, rebuilds each structure from the store (atomic numbers, Cartesian positions, cell),
finds its point group with spglib (:func:`crystensor.tensors.symmetry.point_group_of`, in the
structure's own Cartesian frame, the frame of the stored targets), projects the prediction
(:func:`crystensor.tensors.symmetry.project_to_point_group`) and prints the metrics of
:func:`crystensor.train.metrics.tensor_metrics` before and after: mean component MAE, Frobenius
MAE, EwT25/10/5 and the MAE per crystal system.

Also reported: how many structures fell in each point group, the structures spglib found no
symmetry for (left unprojected), how often the crystal system found at ``--symprec`` differs from
the store's, and how much the projection moves the *targets* (zero when the stored targets obey
the symmetry found; the stores hold point-group-symmetrised tensors).

Usage::

    python benchmarks/symmetry_effect.py runs/paper/direct/elastic-segnn/best.pt
    python benchmarks/symmetry_effect.py CKPT --store data/elastic.h5 --split val --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crystensor.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test", "all")


def find_store(checkpoint: Any, store: Path | None) -> Path:
    """``store``, or the checkpoint's training store (``meta["store"]``) looked up in ``data/``."""
    if store is not None:
        if not store.is_file():
            raise InputError(f"store {store} does not exist")
        return store
    name = checkpoint.meta.get("store")
    if not name:
        raise InputError("the checkpoint does not name its store; pass --store STORE.h5")
    for folder in (Path("data"), REPO / "data"):
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"the checkpoint's store {name} is not in data/; pass --store STORE.h5")


def structure_of(graph: Any):
    """The pymatgen structure of a stored graph (cell rows = lattice vectors, Angstrom)."""
    from pymatgen.core import Lattice, Structure

    return Structure(
        Lattice(np.asarray(graph.cell, dtype=float)),
        [int(z) for z in graph.atomic_numbers],
        np.asarray(graph.positions, dtype=float),
        coords_are_cartesian=True,
    )


def project_predictions(
    store: Any, index: np.ndarray, pred: np.ndarray, true: np.ndarray, symprec: float
) -> dict[str, Any]:
    """Project each prediction ``pred[k]`` of graph ``index[k]`` onto its point group.

    Returns
    -------
    dict
        ``projected (n, 3, ..., 3)``, ``true_projected`` (the targets projected alike),
        ``point_groups`` (symbol per graph, ``None`` where spglib failed), ``crystal_systems``
        (found at ``symprec``) and ``failures`` (``[(id, message)]``).
    """
    from crystensor.tensors.symmetry import point_group_of, project_to_point_group

    projected, true_projected = pred.copy(), true.copy()
    symbols: list[str | None] = []
    systems: list[str] = []
    failures: list[tuple[str, str]] = []
    for k, i in enumerate(index):
        graph = store.graph(int(i))
        try:
            group = point_group_of(structure_of(graph), symprec=symprec)
        except (ValueError, RuntimeError) as exc:
            failures.append((graph.id, str(exc)))
            symbols.append(None)
            systems.append("")
            continue
        projected[k] = project_to_point_group(pred[k], group)
        true_projected[k] = project_to_point_group(true[k], group)
        symbols.append(group.symbol)
        systems.append(group.crystal_system)
    return {
        "projected": projected,
        "true_projected": true_projected,
        "point_groups": symbols,
        "crystal_systems": systems,
        "failures": failures,
    }


def symmetry_effect(
    checkpoint_path: str | Path,
    store_path: Path | None = None,
    *,
    split: str = "test",
    symprec: float = 0.01,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Metrics of a checkpoint's predictions on ``split`` before and after the projection.

    Returns
    -------
    dict
        ``before`` and ``after`` (:func:`~crystensor.train.metrics.tensor_metrics` with the
        store's crystal systems, or the ones found where the store has none), ``index``,
        ``ids``, ``pred``, ``projected``, ``true``, ``point_groups``, ``failures``,
        ``system_disagreements`` (store's crystal system differs from the one found),
        ``target_change`` and ``prediction_change`` (mean Frobenius norms of ``P(T) - T`` and
        of ``P(T_pred) - T_pred``), and the inputs.
    """
    import torch

    from crystensor.checkpoint import check_featurization, load_checkpoint
    from crystensor.data.dataset import GraphDataset
    from crystensor.data.store import GraphStore
    from crystensor.train.distributed import DistInfo
    from crystensor.train.loop import evaluate
    from crystensor.train.metrics import tensor_metrics

    checkpoint = load_checkpoint(checkpoint_path)
    store = GraphStore(find_store(checkpoint, store_path))
    if store.target != checkpoint.target:
        raise InputError(
            f"{store.path.name} holds {store.target} targets, the checkpoint predicts "
            f"{checkpoint.target}; pass --store with a {checkpoint.target} store"
        )
    if checkpoint.kind.rank == 0:
        raise InputError(f"{checkpoint.target} is a scalar: there is nothing to project")
    check_featurization(checkpoint.featurization, store, f"the checkpoint {checkpoint_path}")
    dataset = GraphDataset(store)
    if split != "all":
        dataset = dataset.subset(split)
    if len(dataset) == 0:
        raise InputError(f"the {split} split of {store.path.name} is empty")
    model = checkpoint.build_model()
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    predictions = evaluate(model, dataset, info=info, batch_size=batch_size)
    index, pred, true = predictions["index"], predictions["pred"], predictions["true"]

    found = project_predictions(store, index, pred, true, symprec)
    stored = [str(s) for s in store.read("crystal_system")[index]]
    systems = [s or f for s, f in zip(stored, found["crystal_systems"], strict=True)]
    disagree = sum(
        1 for s, f in zip(stored, found["crystal_systems"], strict=True) if s and f and s != f
    )
    kind, units = checkpoint.kind, store.units
    before = tensor_metrics(pred, true, kind, systems, units=units)
    after = tensor_metrics(found["projected"], true, kind, systems, units=units)
    n = len(true)
    target_change = np.linalg.norm((found["true_projected"] - true).reshape(n, -1), axis=1)
    pred_change = np.linalg.norm((found["projected"] - pred).reshape(n, -1), axis=1)
    return {
        "checkpoint": str(checkpoint_path),
        "store": str(store.path),
        "split": split,
        "symprec": symprec,
        "target": store.target,
        "before": before,
        "after": after,
        "index": index,
        "ids": predictions["ids"],
        "pred": pred,
        "projected": found["projected"],
        "true": true,
        "point_groups": found["point_groups"],
        "failures": found["failures"],
        "system_disagreements": disagree,
        "target_change": float(target_change.mean()),
        "prediction_change": float(pred_change.mean()),
    }


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def format_effect(result: dict[str, Any]) -> list[str]:
    """The before / after table and the notes, as lines of text."""
    before, after = result["before"], result["after"]
    units = f" [{before['units']}]" if before["units"] else ""
    rows = [
        (f"MAE, mean of Voigt components{units}", before["mae"], after["mae"], _num),
        (f"Frobenius MAE{units}", before["frobenius_mae"], after["frobenius_mae"], _num),
        ("median relative Frobenius error", *_pair(result, "relative_frobenius_median"), _num),
    ]
    rows += [(f"EwT{k}", before["ewt"][k], after["ewt"][k], _pct) for k in before["ewt"]]
    for system, b in (before.get("per_crystal_system") or {}).items():
        a = after["per_crystal_system"][system]
        rows.append((f"MAE {system} (n = {b['n']})", b["mae"], a["mae"], _num))
    width = max(len(r[0]) for r in rows)
    lines = [
        f"{result['target']} predictions of {result['checkpoint']} on the {result['split']} "
        f"split of {result['store']} (n = {before['n']}), point groups at symprec "
        f"{result['symprec']}",
        f"{'metric'.ljust(width)}  {'before':>10}  {'after':>10}  {'change':>8}",
    ]
    for label, b, a, fmt in rows:
        change = "" if b in (None, 0) or a is None else f"{100 * (a - b) / b:+.2f} %"
        lines.append(f"{label.ljust(width)}  {fmt(b):>10}  {fmt(a):>10}  {change:>8}")
    groups = Counter(g for g in result["point_groups"] if g is not None)
    lines.append("point groups: " + ", ".join(f"{g} {n}" for g, n in groups.most_common()))
    lines.append(
        f"no symmetry found (left unprojected): {len(result['failures'])}; crystal system "
        f"differs from the store's: {result['system_disagreements']}"
    )
    lines.append(
        f"mean Frobenius change under the projection: predictions "
        f"{result['prediction_change']:.3g}{units}, targets {result['target_change']:.3g}{units}"
    )
    return lines


def _pair(result: dict[str, Any], key: str) -> tuple[Any, Any]:
    return result["before"].get(key), result["after"].get(key)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="best.pt of a tensor run")
    parser.add_argument(
        "--store", type=Path, default=None, help="graph store (default: the checkpoint's, in data/)"
    )
    parser.add_argument("--split", choices=SPLITS, default="test")
    parser.add_argument("--symprec", type=float, default=0.01, help="spglib tolerance, Angstrom")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", type=Path, default=None, help="write the metrics here")
    args = parser.parse_args(argv)
    try:
        result = symmetry_effect(
            args.checkpoint,
            args.store,
            split=args.split,
            symprec=args.symprec,
            batch_size=args.batch_size,
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(format_effect(result)))
    if args.json is not None:
        keys = ("checkpoint", "store", "split", "symprec", "target", "before", "after")
        out = {k: result[k] for k in keys}
        out["point_groups"] = dict(Counter(g for g in result["point_groups"] if g))
        out["failures"] = [list(f) for f in result["failures"]]
        out["system_disagreements"] = result["system_disagreements"]
        out["target_change"] = result["target_change"]
        out["prediction_change"] = result["prediction_change"]
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
