"""The two symmetry searches of :func:`crystensor.tensors.symmetry.point_group_of`, side by side.

``point_group_of(structure)`` (what ``crystensor predict`` and ``decompose`` use) searches with
moyo (``moyopy``) and the distance tolerance alone; ``point_group_of(structure,
angle_tolerance=5.0)`` (what the data importers use) with spglib and both tolerances. This script
runs both on every structure of record files written by ``crystensor fetch`` (``.jsonl.gz``) and
prints the CPU time per structure of each, how many structures get a different space group or a
different set of Cartesian operations, and, for each that does, what both searches find at half
and twice the tolerance (a structure whose answer changes there sits at the tolerance edge).

    .venv/bin/python benchmarks/symmetry_search.py data/elastic.jsonl.gz data/dielectric.jsonl.gz
    .venv/bin/python benchmarks/symmetry_search.py data/*.jsonl.gz --symprec 0.01

Structures that appear in several files (the dielectric sets share many) are counted once.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path

import numpy as np


def read_structures(paths: list[Path]) -> list[tuple[str, object]]:
    from pymatgen.core import Structure

    seen, out = set(), []
    for path in paths:
        with gzip.open(path, "rt") as fh:
            for line in fh:
                record = json.loads(line)
                structure = Structure.from_dict(record["structure"])
                key = (record["id"], structure.composition.reduced_formula, len(structure))
                if key in seen:
                    continue
                seen.add(key)
                out.append((f"{path.name}:{record['id']}", structure))
    return out


def same_operations(a: np.ndarray, b: np.ndarray, atol: float = 1e-9) -> bool:
    if len(a) != len(b):
        return False
    distance = np.abs(a[:, None] - b[None]).max(axis=(2, 3))
    return bool(distance.min(axis=1).max() < atol and distance.min(axis=0).max() < atol)


def main() -> None:
    from crystensor.tensors.symmetry import _find_symmetry, _spglib_cell

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records", nargs="+", type=Path, help="record files (.jsonl.gz)")
    parser.add_argument("--symprec", type=float, default=0.01)
    parser.add_argument("--angle-tolerance", type=float, default=5.0, help="spglib's (degrees)")
    args = parser.parse_args()

    structures = read_structures(args.records)
    cells = [_spglib_cell(s) for _, s in structures]
    found, seconds = {}, {}
    for engine, angle in (("moyo", None), ("spglib", args.angle_tolerance)):
        start = time.process_time()
        found[engine] = [_find_symmetry(cell, args.symprec, angle) for cell in cells]
        seconds[engine] = time.process_time() - start
    n = len(cells)
    print(f"{n} structures from {', '.join(p.name for p in args.records)}")
    print(f"symprec {args.symprec} A; spglib with angle_tolerance {args.angle_tolerance} degrees")
    for engine in found:
        failed = sum(isinstance(f, str) for f in found[engine])
        print(
            f"{engine:7s} {1e3 * seconds[engine] / n:6.2f} ms of CPU per structure, "
            f"no symmetry found for {failed}"
        )

    def label(f) -> str:
        return "none" if isinstance(f, str) else f"{f.space_group_symbol} ({f.space_group_number})"

    differ = []
    for i, (moyo, spglib) in enumerate(zip(found["moyo"], found["spglib"], strict=True)):
        if isinstance(moyo, str) or isinstance(spglib, str):
            if isinstance(moyo, str) != isinstance(spglib, str):
                differ.append(i)
        elif moyo.space_group_number != spglib.space_group_number or not same_operations(
            moyo.rotations, spglib.rotations
        ):
            differ.append(i)
    print(
        f"different space group or operations: {len(differ)} of {n} ({100 * len(differ) / n:.2f} %)"
    )
    for i in differ:
        cell = cells[i]
        at = {
            engine: " / ".join(
                label(_find_symmetry(cell, args.symprec * factor, angle)) for factor in (0.5, 2.0)
            )
            for engine, angle in (("moyo", None), ("spglib", args.angle_tolerance))
        }
        print(
            f"  {structures[i][0]} ({structures[i][1].composition.reduced_formula}): "
            f"moyo {label(found['moyo'][i])}, spglib {label(found['spglib'][i])}; at symprec/2 "
            f"and 2 symprec: moyo {at['moyo']}, spglib {at['spglib']}"
        )


if __name__ == "__main__":
    main()
