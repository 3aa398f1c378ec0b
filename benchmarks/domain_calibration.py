"""How often predict's structure warnings fire on the structures the shipped models learned from.

For every structure of the given record files (those examples/build_stores.sh and
build_shipped_stores.sh write): the shortest interatomic distance, the smallest ratio of a
distance to the sum of the two covalent radii, and the widest vacuum gap along a lattice
direction; then the share of structures that crystensor.domain's thresholds would flag. The
thresholds are meant to leave (nearly) every training structure unflagged.

    .venv/bin/python benchmarks/domain_calibration.py data/elastic.jsonl.gz \
        data/dielectric.jsonl.gz data/piezoelectric.jsonl.gz ...
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from crystensor import domain
from crystensor.data.records import read_records


def measure(structure) -> tuple[float, float, float]:
    numbers = np.array([site.specie.Z for site in structure])
    radii = domain._covalent_radii(numbers)
    i, j, d = domain._close_pairs(structure, 4.0)
    if len(d) == 0:
        return float("inf"), float("inf"), max(domain.vacuum_gaps(structure))
    return (
        float(d.min()),
        float((d / (radii[i] + radii[j])).min()),
        max(domain.vacuum_gaps(structure)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+")
    args = parser.parse_args()
    rows = []
    start = time.perf_counter()
    for path in args.records:
        for record in read_records(path):
            rows.append((record.id, record.formula, *measure(record.pymatgen_structure())))
    seconds = time.perf_counter() - start
    dmin = np.array([r[2] for r in rows])
    ratio = np.array([r[3] for r in rows])
    gap = np.array([r[4] for r in rows])
    n = len(rows)
    print(f"{n} structures from {len(args.records)} files ({1000 * seconds / n:.1f} ms each)")
    for name, values in (("shortest distance [A]", dmin), ("d / (r_i + r_j)", ratio)):
        q = np.quantile(values, [0.0, 0.001, 0.01, 0.05, 0.5])
        print(
            f"{name}: min {q[0]:.3f}, 0.1 % {q[1]:.3f}, 1 % {q[2]:.3f}, 5 % {q[3]:.3f}, "
            f"median {q[4]:.3f}"
        )
    q = np.quantile(gap, [0.5, 0.95, 0.99, 0.999, 1.0])
    print(
        f"widest vacuum gap [A]: median {q[0]:.2f}, 95 % {q[1]:.2f}, 99 % {q[2]:.2f}, "
        f"99.9 % {q[3]:.2f}, max {q[4]:.2f}"
    )
    print(
        f"flagged short-distance (ratio < {domain.SHORT_FRACTION}): "
        f"{(ratio < domain.SHORT_FRACTION).sum()} of {n}; refused (d < {domain.MIN_DISTANCE} A): "
        f"{(dmin < domain.MIN_DISTANCE).sum()}"
    )
    flagged = gap >= domain.VACUUM_GAP
    print(f"flagged vacuum-gap (>= {domain.VACUUM_GAP} A): {flagged.sum()} of {n}")
    for k in np.argsort(-gap)[:8]:
        print(f"  widest gaps: {rows[k][0]} {rows[k][1]} {gap[k]:.2f} A")
    for k in np.argsort(ratio)[:5]:
        print(f"  shortest bonds: {rows[k][0]} {rows[k][1]} d={dmin[k]:.3f} ratio={ratio[k]:.3f}")


if __name__ == "__main__":
    main()
