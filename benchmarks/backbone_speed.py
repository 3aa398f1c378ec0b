"""How fast the pretrained SevenNet-0 backbone computes node features, and what a cache costs.

Structures: the 1181 matminer elastic structures (``../shared/data/matminer-2018``, the
``poscar`` column), or the structures of any graph store (``--store``). A fixed sample of
``--limit`` of them is timed with
:meth:`~crystensor.models.backbones.sevennet.PretrainedBackbone.features_of_many` for each number
of torch threads, batch size and edge budget asked, for the structure alone and for the
structure with its inverted image (what the feature cache and the O(3)-exact model need). The
radius graph (sevenn's own builder) is timed apart. With ``--cache STORE`` a feature cache of a
copy of that store is built in a temporary folder and its build time and file size are printed.

The machine's load average is printed with each run: the numbers are only comparable on an
otherwise idle machine (torch threads competing with other processes for the cores slow it down
several-fold).

Usage::

    .venv/bin/python benchmarks/backbone_speed.py [--data ../shared/data | --store S.h5]
        [--limit 128] [--threads 1 2] [--batch-sizes 1 32] [--max-edges 1024 0]
        [--cache S.h5 [--cache-threads 2]]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crystensor.data.store import GraphStore  # noqa: E402
from crystensor.models.backbones import load_backbone  # noqa: E402

NAME = "sevennet-0"


def matminer_structures(data: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(Z, positions, cell) of the matminer elastic structures (from their POSCAR column)."""
    from pymatgen.core import Structure

    csv.field_size_limit(1 << 30)
    out = []
    with gzip.open(data / "matminer-2018" / "elastic_tensor.csv.gz", "rt") as fh:
        for row in csv.DictReader(line for line in fh if not line.startswith("#")):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = Structure.from_str(row["poscar"], fmt="poscar")
            out.append((np.array(s.atomic_numbers), s.cart_coords, s.lattice.matrix))
    return out


def store_structures(path: Path) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    store = GraphStore(path)
    off = store.node_offsets
    z = store.read("atomic_numbers").astype(np.int64)
    pos, cell = store.read("positions"), store.read("cell")
    return [(z[off[g] : off[g + 1]], pos[off[g] : off[g + 1]], cell[g]) for g in range(len(store))]


def timed(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--store", type=Path, help="time the structures of this store instead")
    parser.add_argument("--limit", type=int, default=128, help="structures timed (sampled)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--max-edges", type=int, nargs="+", default=[1024, 0], help="edges per pass, 0: no limit"
    )
    parser.add_argument("--cache", type=Path, help="also build a feature cache of this store")
    parser.add_argument("--cache-threads", type=int, default=2)
    args = parser.parse_args()

    start = time.perf_counter()
    backbone = load_backbone(NAME)
    print(f"loaded {NAME} ({backbone.checkpoint}) in {time.perf_counter() - start:.1f} s")

    structures = store_structures(args.store) if args.store else matminer_structures(args.data)
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(structures), min(args.limit, len(structures)), replace=False))
    sample = [structures[i] for i in pick]
    atoms = np.array([len(z) for z, _, _ in sample])
    edges = np.array([backbone.graph_of(*s)[0].shape[1] for s in sample])
    print(
        f"{len(sample)} of {len(structures)} structures: {atoms.mean():.1f} atoms (median "
        f"{np.median(atoms):.0f}, max {atoms.max()}), {edges.mean():.0f} edges within "
        f"{backbone.cutoff:g} A on average"
    )
    backbone.features_of_many(sample[:4], with_inverted=True)  # first call builds e3nn's code
    graph_ms = timed(lambda: [backbone.graph_of(*s) for s in sample]) / len(sample) * 1e3
    print(f"radius graph (sevenn's builder): {graph_ms:.2f} ms per structure")
    print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(
        f"{'threads':>7} {'batch':>5} {'max edges':>9} {'structure ms':>13} {'+ inverted ms':>14}"
    )
    settings = [(1, None)] if 1 in args.batch_sizes else []
    settings += [(b, m or None) for b in args.batch_sizes if b > 1 for m in args.max_edges]
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch, max_edges in settings:
            times = []
            for inverted in (False, True):
                seconds = timed(
                    lambda inverted=inverted, batch=batch, max_edges=max_edges: (
                        backbone.features_of_many(
                            sample, with_inverted=inverted, batch_size=batch, max_edges=max_edges
                        )
                    )
                )
                times.append(seconds / len(sample) * 1e3)
            limit = "-" if max_edges is None else str(max_edges)
            print(f"{threads:>7} {batch:>5} {limit:>9} {times[0]:>13.1f} {times[1]:>14.1f}")
    print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")

    if args.cache:
        from crystensor.data.feature_cache import load_or_build

        torch.set_num_threads(args.cache_threads)
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / args.cache.name
            shutil.copy(args.cache, copy)
            store = GraphStore(copy)
            start = time.perf_counter()
            cache = load_or_build(store, NAME, backbone=backbone)
            build = time.perf_counter() - start
            start = time.perf_counter()
            load_or_build(store, NAME)
            check = time.perf_counter() - start
            size = cache.path.stat().st_size
            print(
                f"cache of {args.cache.name} ({len(store)} graphs, {store.num_nodes} nodes, "
                f"{args.cache_threads} threads): built in {build:.1f} s "
                f"({build / len(store) * 1e3:.0f} ms per structure), {size / 1e6:.1f} MB "
                f"({size / store.num_nodes / 1e3:.2f} kB per node); reopening it checked the "
                f"identity in {check * 1e3:.0f} ms"
            )
        print(f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
