"""How reliable is the sign of the matminer piezoelectric tensors relative to their structures?

The dataset stores e_iJ in the IEEE frame; ``crystensor fetch`` rotates it into the frame of the
``poscar`` structure with pymatgen's IEEE rotation ``R`` (``e = R^T . e_ieee``). ``R`` is fixed
only up to a symmetry operation ``h`` of the lattice: another choice gives ``h . e``. When the
point group ``G`` of the crystal contains an improper operation ``g``, the lattice also holds the
proper operation ``h = -g`` (every lattice is centrosymmetric), and ``h . e = -(g . e) = -e`` for
a G-invariant odd-rank tensor. So for those crystals the stored sign can be flipped relative to
the calculation that produced it, and the point-group consistency check cannot see it: ``-e`` is
exactly as symmetric as ``e``. Only for the purely rotational (chiral) classes is the sign tied
to the structure by symmetry.

This script prints three measurements:

1. **Point groups.** How many records belong to classes with an improper operation (sign not
   checkable) and how many to the chiral classes.
2. **Polymorph pairs.** Compounds present both as zinc blende (F-43m) and as wurtzite (P6_3mc).
   Both are built from the same cation-anion tetrahedra, and the piezoelectric response of one
   follows from the other to leading order (the quasi-cubic relation e33(wz) ~ 2/sqrt(3) e14(zb)
   in the bond frame), so the sign of the tensor relative to the cation->anion bonds must agree.
   For each record: ``c = <B, e> / (|B| |e|)`` with ``B = sum u (x) u (x) u`` over the
   cation->anion nearest-neighbour unit vectors ``u``; ``sign(c)`` is the sign of the response
   relative to the bonds. A mismatch between the two polymorphs of a compound is a sign flip in
   one of them.
3. **A model's grip on the sign** (with ``--model CKPT``): the cosine between the predicted and
   the stored tensor on the train and validation split of ``--store``. A network predicts the
   tensor's shape from the structure; the symmetry fixes it up to sign and size, so a cosine
   near -1 on the *training* set is a label it could not fit.

    .venv/bin/python benchmarks/piezo_signs.py [--records data/piezoelectric.jsonl.gz]
        [--model runs/.../best.pt --store data/piezoelectric.h5]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SYMPREC = 0.01


def read_records(path: Path):
    from pymatgen.core import Structure

    with gzip.open(path, "rt") as fh:
        for line in fh:
            record = json.loads(line)
            yield record, Structure.from_dict(record["structure"]), np.array(record["value"])


def has_improper(structure) -> tuple[str, bool]:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    analyzer = SpacegroupAnalyzer(structure, symprec=SYMPREC)
    ops = analyzer.get_point_group_operations(cartesian=True)
    improper = any(np.linalg.det(op.rotation_matrix) < 0 for op in ops)
    return analyzer.get_point_group_symbol(), improper


def bond_correlation(structure, tensor: np.ndarray) -> float | None:
    """``<B, e> / (|B| |e|)`` for a binary compound (cation: the lower electronegativity)."""
    from pymatgen.core import Element

    symbols = sorted({site.specie.symbol for site in structure}, key=lambda e: Element(e).X)
    if len(symbols) != 2:
        return None
    cation, anion = symbols
    bonds = np.zeros((3, 3, 3))
    for site in structure:
        if site.specie.symbol != cation:
            continue
        neighbours = structure.get_neighbors(site, 3.5)
        if not neighbours:
            return None
        nearest = min(n.nn_distance for n in neighbours)
        for n in neighbours:
            if n.specie.symbol == anion and n.nn_distance < 1.1 * nearest:
                u = (n.coords - site.coords) / n.nn_distance
                bonds += np.einsum("i,j,k->ijk", u, u, u)
    norm = np.linalg.norm(bonds) * np.linalg.norm(tensor)
    return float((bonds * tensor).sum() / norm) if norm > 0 else None


def point_groups_and_pairs(records: Path) -> None:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    classes: Counter[tuple[str, bool]] = Counter()
    polymorphs: dict[str, dict[str, float]] = {}
    for record, structure, tensor in read_records(records):
        group, improper = has_improper(structure)
        classes[(group, improper)] += 1
        if len(structure) in (2, 4):
            symbol = SpacegroupAnalyzer(structure, symprec=SYMPREC).get_space_group_symbol()
            if symbol in ("F-43m", "P6_3mc"):
                c = bond_correlation(structure, tensor)
                if c is not None:
                    polymorphs.setdefault(record["formula"], {})[symbol] = c

    n = sum(classes.values())
    ambiguous = sum(k for (_, improper), k in classes.items() if improper)
    print(f"1. point groups of the {n} records ({records.name}, symprec {SYMPREC})")
    print(f"   with an improper operation (sign not checkable by symmetry): {ambiguous}")
    print(f"   chiral (rotations only; sign fixed by symmetry):            {n - ambiguous}")
    listing = sorted(classes.items(), key=lambda item: -item[1])
    print("   " + ", ".join(f"{g}{'*' if imp else ''} {k}" for (g, imp), k in listing))
    print("   (* = has an improper operation)")

    pairs = {f: v for f, v in polymorphs.items() if len(v) == 2}
    clear = {f: v for f, v in pairs.items() if min(abs(v["F-43m"]), abs(v["P6_3mc"])) >= 0.3}
    agree = sorted(f for f, v in clear.items() if np.sign(v["F-43m"]) == np.sign(v["P6_3mc"]))
    differ = sorted(set(clear) - set(agree))
    print(f"\n2. compounds present as zinc blende and wurtzite: {len(pairs)}; with |c| >= 0.3 in")
    print(f"   both: {len(clear)}. Sign relative to the cation->anion bonds agrees: {len(agree)}")
    print(f"   ({', '.join(agree)}); differs: {len(differ)} ({', '.join(differ)}).")
    for formula in sorted(pairs):
        v = pairs[formula]
        print(f"     {formula:6s} zb c = {v['F-43m']:+.2f}   wz c = {v['P6_3mc']:+.2f}")
    if clear:
        share = len(differ) / len(clear)
        # two independent labels, each flipped with probability p: mismatch = 2 p (1 - p)
        p = (1 - np.sqrt(max(1 - 2 * share, 0.0))) / 2
        print(f"   mismatch share {share:.2f} -> a flip probability of about {p:.2f} per record")


def model_cosines(model: Path, store: Path) -> None:
    import torch

    from crystensor.checkpoint import load_checkpoint
    from crystensor.data.dataset import GraphDataset, _collate

    checkpoint = load_checkpoint(model)
    net = checkpoint.build_model(torch.device("cpu"), torch.float32).eval()
    dataset = GraphDataset(store, in_memory=True)
    print(f"\n3. {model}: cosine between predicted and stored tensors (irreps)")
    for split in ("train", "val"):
        subset = dataset.subset(split)
        preds, trues = [], []
        for start in range(0, len(subset), 64):
            graphs = [subset[i] for i in range(start, min(start + 64, len(subset)))]
            with torch.no_grad():
                preds.append(net(_collate(graphs, torch.device("cpu")))["irreps"].numpy())
            trues.append(np.concatenate([g.y.numpy() for g in graphs]))
        p, t = np.concatenate(preds), np.concatenate(trues)
        cos = (p * t).sum(1) / (np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1) + 1e-30)
        q = np.percentile(cos, [10, 25, 50, 75, 90])
        print(
            f"   {split:5s} n={len(cos):4d}  cos percentiles 10/25/50/75/90: "
            + " ".join(f"{x:+.2f}" for x in q)
            + f"   share below -0.5: {np.mean(cos < -0.5):.2f},"
            + f" above +0.5: {np.mean(cos > 0.5):.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=Path, default=REPO / "data" / "piezoelectric.jsonl.gz")
    parser.add_argument("--model", type=Path)
    parser.add_argument("--store", type=Path, default=REPO / "data" / "piezoelectric.h5")
    args = parser.parse_args(argv)
    if not args.records.is_file():
        print(f"{args.records} not found: build it with examples/build_stores.sh", file=sys.stderr)
        return 2
    warnings.simplefilter("ignore")
    point_groups_and_pairs(args.records)
    if args.model is not None:
        model_cosines(args.model, args.store)
    return 0


if __name__ == "__main__":
    sys.exit(main())
