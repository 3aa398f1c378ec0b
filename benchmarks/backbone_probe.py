"""How much a pretrained potential's frozen features know about stiffness: a linear probe.

Ridge regressions of the Voigt-Reuss-Hill bulk and shear moduli of an elastic store (family
split by default: every chemical system wholly in train, validation or test) on rotation
invariants pooled over each structure's atoms:

* ``composition``: the atom mean of the native atom features (``paper-v1``: what the atoms
  are, nothing of the geometry);
* ``NAME``: for each pretrained backbone, per channel the atom mean of the ``0e`` features, the
  atom mean of their squares and the atom mean of the norm of every ``l > 0`` feature (the
  frozen cache beside the store, built if missing);
* ``composition + NAME``: both.

The ridge penalty is chosen on the validation set; features are standardised on the training
set. A constant (the training median) is the floor; ``--models`` adds the moduli of trained
networks' predicted tensors (checkpoints trained on the same split) for comparison. What the
probe cannot find linearly, a head on the frozen features may still find; what it does find
beyond composition is knowledge a native network must otherwise learn from the tensors.

    .venv/bin/python benchmarks/backbone_probe.py --store data/elastic-shipped.h5 \\
        [--backbones sevennet-0 sevennet-l3i5] [--split family] [--seed 0] \\
        [--models runs/eT-s0/best.pt ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from e3nn import o3

from crystensor.data.elements import node_features
from crystensor.data.feature_cache import load_or_build
from crystensor.data.store import GraphStore
from crystensor.train.supervision import hill_moduli

ALPHAS = 10.0 ** np.arange(-3, 4.5, 0.5)


def moduli(store: GraphStore) -> np.ndarray:
    """``(G, 2)`` Hill bulk and shear moduli of every graph (Voigt bounds where not stable)."""
    stiffness = torch.as_tensor(np.asarray(store.read("target_cartesian"), dtype=np.float64))
    k, g, _ = hill_moduli(stiffness)
    return torch.stack([k, g], dim=1).numpy()


def pooled(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Mean of ``rows`` over each graph's nodes."""
    sums = np.add.reduceat(rows, offsets[:-1], axis=0)
    return sums / np.diff(offsets)[:, None]


def network_moduli(model: Path, store_path: Path) -> dict[str, np.ndarray]:
    """Validation and test MAE of the Hill moduli of a network's predicted tensors."""
    from crystensor.evaluation import evaluate_store

    out = {}
    for split in ("val", "test"):
        arrays = evaluate_store(model, store_path, split=split, keep_tensors=True)["arrays"]
        pred, true = (
            torch.stack(hill_moduli(torch.as_tensor(arrays[k]))[:2], dim=1).numpy()
            for k in ("pred", "true")
        )
        out[split] = np.abs(pred - true).mean(0)
    return out


def backbone_invariants(features: np.ndarray, irreps: o3.Irreps) -> np.ndarray:
    """Per node: the ``0e`` channels, their squares and the norm of each ``l > 0`` channel."""
    parts = []
    for (mul, ir), block in zip(irreps, irreps.slices(), strict=True):
        x = features[:, block].reshape(len(features), mul, ir.dim)
        if ir.l == 0:
            parts += [x[:, :, 0], x[:, :, 0] ** 2]
        else:
            parts.append(np.linalg.norm(x, axis=-1))
    return np.concatenate(parts, axis=1)


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Weights (with the intercept last) of ridge regression on standardised ``x``."""
    a = np.hstack([x, np.ones((len(x), 1))])
    penalty = alpha * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0
    return np.linalg.solve(a.T @ a + penalty, a.T @ y)


def probe(x: np.ndarray, y: np.ndarray, split: np.ndarray) -> dict[str, object]:
    """Validation-chosen ridge: the penalty and the validation and test MAE per column of y."""
    train, val, test = (split == k for k in range(3))
    mean, std = x[train].mean(0), x[train].std(0)
    z = (x - mean) / np.where(std > 1e-12, std, 1.0)
    z1 = np.hstack([z, np.ones((len(z), 1))])
    best = None
    for alpha in ALPHAS:
        w = ridge_fit(z[train], y[train], alpha)
        val_mae = np.abs(z1[val] @ w - y[val]).mean(0)
        if best is None or val_mae.mean() < best[0].mean():
            best = (val_mae, alpha, w)
    val_mae, alpha, w = best
    return {"alpha": alpha, "val": val_mae, "test": np.abs(z1[test] @ w - y[test]).mean(0)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=Path("data/elastic-shipped.h5"))
    parser.add_argument("--backbones", nargs="+", default=["sevennet-0", "sevennet-l3i5"])
    parser.add_argument("--split", default="family", choices=["family", "random", "store"])
    parser.add_argument("--seed", type=int, default=0, help="split seed")
    parser.add_argument("--models", nargs="*", type=Path, default=[], help="checkpoints")
    args = parser.parse_args(argv)

    store = GraphStore(args.store).use_split(args.split, args.seed)
    if store.target != "elastic":
        parser.error(f"{args.store} holds {store.target} tensors; the probe needs an elastic store")
    split = np.asarray(store.read("split"))
    offsets = np.asarray(store.node_offsets)
    y = moduli(store)
    atoms = pooled(node_features(np.asarray(store.read("atomic_numbers"))), offsets)
    sets = {"composition": atoms}
    for name in args.backbones:
        cache = load_or_build(store, name).preload()
        # [:, 0]: the structure itself (its invariants are its inverted image's too)
        rows = np.concatenate([cache.features(g)[:, 0] for g in range(len(cache))])
        rows = rows.astype(np.float64)
        invariants = pooled(backbone_invariants(rows, o3.Irreps(cache.irreps)), offsets)
        sets[name] = invariants
        sets[f"composition + {name}"] = np.hstack([atoms, invariants])

    counts = [int((split == k).sum()) for k in range(3)]
    print(
        f"{args.store.name}, {args.split} split (seed {args.seed}): {counts[0]} / {counts[1]} /"
        f" {counts[2]} graphs; ridge penalty chosen on validation\n"
    )

    def line(label: str, dims: object, val: np.ndarray, test: np.ndarray) -> None:
        print(
            f"| {label} | {dims} | {val[0]:.1f} / {val[1]:.1f} | {test[0]:.1f} / {test[1]:.1f} |",
            flush=True,
        )

    print("| features | dimensions | val MAE K / G [GPa] | test MAE K / G [GPa] |")
    print("|---|---|---|---|")
    train, val, test = (split == k for k in range(3))
    median = np.median(y[train], axis=0)
    line(
        "constant (training median)",
        0,
        np.abs(y[val] - median).mean(0),
        np.abs(y[test] - median).mean(0),
    )
    for label, x in sets.items():
        r = probe(x, y, split)
        line(label, x.shape[1], r["val"], r["test"])
    for model in args.models:
        r = network_moduli(model, args.store)
        line(f"network `{model}`", "-", r["val"], r["test"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
