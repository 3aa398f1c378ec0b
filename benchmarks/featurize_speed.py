"""How fast ``crystensor featurize`` turns records into a graph store, and where the time goes.

Two real data sets from ``../shared/data`` (see its README):

* the 1181 matminer elastic tensors (de Jong et al. 2015): structure from the ``poscar`` column,
  target ``elastic_tensor_original`` (6x6 Voigt, GPa, in the poscar frame);
* the ~36.7k Materials Project 2018 structures of ``mp_2018_scalars.extxyz.gz`` with their PBE
  band gaps.

The records are built here, directly from the files (not through the project's importers), and
written as gzipped JSON Lines; then :func:`crystensor.data.featurize.featurize` is timed with 1
and 2 worker processes (cutoff 5 A). A per-stage breakdown on a sample shows where the time of
one structure goes. The machine's load average is printed with each run: the numbers are only
comparable on an otherwise idle machine.

Usage::

    .venv/bin/python benchmarks/featurize_speed.py [--data ../shared/data] [--workers 1 2]
        [--limit N] [--skip-mp] [--skip-elastic]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crystensor.data.featurize import featurize  # noqa: E402
from crystensor.data.records import Record, write_records  # noqa: E402
from crystensor.tensors.kinds import get_kind  # noqa: E402

CUTOFF = 5.0


def elastic_records(data: Path, limit: int | None) -> list[Record]:
    """Records from matminer's elastic_tensor.csv.gz (poscar frame, full Cartesian GPa)."""
    from pymatgen.core import Structure

    kind = get_kind("elastic")
    csv.field_size_limit(1 << 30)
    records = []
    with gzip.open(data / "matminer-2018" / "elastic_tensor.csv.gz", "rt") as fh:
        rows = csv.DictReader(line for line in fh if not line.startswith("#"))
        for row in rows:
            structure = Structure.from_str(row["poscar"], fmt="poscar")
            voigt = np.array(json.loads(row["elastic_tensor_original"]), dtype=float)
            records.append(
                Record(
                    id=row["material_id"],
                    formula=structure.composition.reduced_formula,
                    structure=structure.as_dict(),
                    target="elastic",
                    value=kind.from_voigt(voigt).tolist(),
                    units="GPa",
                    source={"dataset": "matminer elastic_tensor_2015", "citation": "deJong2015"},
                )
            )
            if limit and len(records) >= limit:
                break
    return records


def mp_band_gap_records(data: Path, limit: int | None) -> list[Record]:
    """Records of the MP 2018 band gaps, structures read with ASE."""
    from ase.io import iread
    from pymatgen.io.ase import AseAtomsAdaptor

    path = data / "mp-2018-scalars" / "mp_2018_scalars.extxyz.gz"
    # ASE seeks backwards in the file for every frame; on a gzip stream each seek re-reads the
    # file from its start (quadratic time), so decompress into memory first.
    with gzip.open(path, "rt") as fh:
        text = io.StringIO(fh.read())
    records = []
    for atoms in iread(text, index=":", format="extxyz"):
        structure = AseAtomsAdaptor.get_structure(atoms)
        records.append(
            Record(
                id=str(atoms.info["material_id"]),
                formula=structure.composition.reduced_formula,
                structure=structure.as_dict(),
                target="band-gap",
                value=float(atoms.info["band_gap"]),
                units="eV",
                source={"dataset": "mp-2018-scalars", "citation": "Jain2013"},
            )
        )
        if limit and len(records) >= limit:
            break
    return records


def stage_breakdown(records_file: Path, target: str, sample: int) -> dict[str, float]:
    """Milliseconds per structure spent in each step of the per-record work (one process)."""
    from crystensor.data.elements import check_species
    from crystensor.data.featurize import _structure  # the reader featurize uses
    from crystensor.data.graph import build_graph
    from crystensor.data.records import open_text
    from crystensor.tensors.harmonic import to_irreps

    kind = get_kind("elastic" if target == "elastic" else "scalar")
    with open_text(records_file) as fh:
        lines = [line for _, line in zip(range(sample), fh, strict=False)]
    times = dict.fromkeys(("json", "structure", "species", "graph", "target"), 0.0)
    for line in lines:
        t0 = time.perf_counter()
        record = Record.from_dict(json.loads(line))
        t1 = time.perf_counter()
        structure = _structure(record.structure)
        t2 = time.perf_counter()
        check_species(structure.species)
        t3 = time.perf_counter()
        try:
            build_graph(structure, CUTOFF)
        except ValueError:
            pass
        t4 = time.perf_counter()
        to_irreps(kind.symmetrize_indices(np.asarray(record.value, dtype=float)), kind)
        t5 = time.perf_counter()
        for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
            times[key] += dt
    return {k: 1000 * v / len(lines) for k, v in times.items()}


def bench(name: str, records: list[Record], target: str, workers: list[int], folder: Path):
    path = folder / f"{name}.jsonl.gz"
    t0 = time.perf_counter()
    write_records(path, records)
    print(
        f"\n== {name}: {len(records)} records ({path.stat().st_size / 1e6:.1f} MB gzipped, "
        f"written in {time.perf_counter() - t0:.1f} s)"
    )
    for n in workers:
        load = os.getloadavg()[0]
        report = featurize(path, target, folder / f"{name}-{n}.h5", cutoff=CUTOFF, workers=n)
        size = (folder / f"{name}-{n}.h5").stat().st_size / 1e6
        print(
            f"workers={n}: {report.records} records in {report.seconds:.1f} s = "
            f"{report.structures_per_second:.0f} structures/s | {report.graphs} graphs, "
            f"{len(report.rejected)} rejected {report.rejection_counts()}, "
            f"{report.edges / max(report.nodes, 1):.1f} edges/atom, store {size:.0f} MB "
            f"(load average before: {load:.2f})"
        )
    stages = stage_breakdown(path, target, sample=min(len(records), 2000))
    total = sum(stages.values())
    print(
        "per structure, one process (ms): "
        + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
        + f"; sum {total:.2f} -> at most {1000 / total:.0f} structures/s per core before "
        "the file reading and HDF5 writing"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--limit", type=int, default=None, help="records per data set")
    parser.add_argument("--skip-mp", action="store_true")
    parser.add_argument("--skip-elastic", action="store_true")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"data folder {args.data} not found (give --data)")
    warnings.filterwarnings("ignore")
    print(f"{os.cpu_count()} CPUs; cutoff {CUTOFF} A")
    with tempfile.TemporaryDirectory(prefix="featurize-bench-") as tmp:
        folder = Path(tmp)
        if not args.skip_elastic:
            t0 = time.perf_counter()
            records = elastic_records(args.data, args.limit)
            print(f"built {len(records)} elastic records in {time.perf_counter() - t0:.1f} s")
            bench("matminer-elastic", records, "elastic", args.workers, folder)
        if not args.skip_mp:
            t0 = time.perf_counter()
            records = mp_band_gap_records(args.data, args.limit)
            print(f"built {len(records)} band-gap records in {time.perf_counter() - t0:.1f} s")
            bench("mp-2018-band-gap", records, "band-gap", args.workers, folder)


if __name__ == "__main__":
    main()
