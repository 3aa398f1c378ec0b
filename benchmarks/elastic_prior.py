"""SevenNet-0's elastic tensor by automatic differentiation (issue 16, part 1): cost, checks, MAE.

A seeded sample of ``--limit`` records (at most ``--max-atoms`` atoms, elements SevenNet-0 knows)
of a records file with DFT elastic tensors (``data/elastic.jsonl.gz``: the matminer 2018 set,
Cartesian tensors in the frame of their structure) is given to
:func:`crystensor.physics.compute_elastic_prior` at the DFT geometry, on one torch thread
(float32, the library's default). Printed:

* seconds per structure for the clamped-ion tensor and for the relaxed-ion correction, with
  the number of atoms, Hessian-vector products and internal directions;
* a finite-difference check on the first ``--checks`` structures: the slope of the potential's
  ``V sigma`` between strains ``+-h`` (``h = 1e-5``, float64, the graph rebuilt for every
  strained cell) against the autograd tensor plus the residual-stress term ``sym(delta sigma)``
  (module docstring of :mod:`crystensor.physics.elastic_prior`), max abs difference in GPa;
  and for ``--relaxed-checks`` structures with an internal-strain correction (ions first
  relaxed with the potential, float64, to 1e-8 eV/A) the same with the ions relaxed at every
  strain (BFGS to 1e-8 eV/A: the ions move by ~1e-5 A, so looser relaxations limit the check);
* the finite-strain tensor of every structure at matcalc's strains (+-0.5 %, +-1 %, clamped
  ions, sevenn's own ASE calculator): the linear fit of ``V sigma / V_0`` per strain component
  minus the residual-stress term, i.e. the same quantity as the autograd tensor averaged over
  +-1 % strain, and its largest difference from it. The XPLOR cutoff's jumps in curvature
  (module docstring) make the two differ where edges lie near 4.5 or 5 A (column ``near``:
  edges within 0.05 A of either);
* the MAE over the 21 independent Voigt components against DFT: clamped, relaxed-ion (all,
  and only where the ions are at a stable point of the potential), finite strain.

With ``--relax ions`` or ``--relax cell`` every structure is first relaxed with the potential
(ions, or ions and cell; float32 FIRE to 0.01 eV/A) and the tensors are those of the relaxed
geometry.

Usage::

    .venv/bin/python benchmarks/elastic_prior.py [--records data/elastic.jsonl.gz]
        [--limit 40] [--max-atoms 20] [--seed 0] [--checks 5] [--relaxed-checks 2]
        [--relax {none,ions,cell}]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from crystensor.data.records import read_records  # noqa: E402
from crystensor.physics.elastic_prior import (  # noqa: E402
    EV_PER_A3_IN_GPA,
    compute_elastic_prior,
    load_potential,
)
from crystensor.tensors.voigt import VOIGT_PAIRS, from_voigt, to_voigt  # noqa: E402

UPPER = np.triu_indices(6)  # the 21 independent Voigt components
MATCALC_STRAINS = (-0.01, -0.005, 0.005, 0.01)
KINKS = (4.5, 5.0)  # SevenNet-0's XPLOR cutoff: r_on and r_c, A


def stress_term(stress: np.ndarray) -> np.ndarray:
    """``sym(delta_ik sigma_jl)`` (GPa, (3, 3, 3, 3)): what the slope of ``V sigma`` adds to
    the energy Hessian at a stressed reference."""
    d = np.eye(3)
    return 0.25 * (
        np.einsum("ik,jl->ijkl", d, stress)
        + np.einsum("jk,il->ijkl", d, stress)
        + np.einsum("il,jk->ijkl", d, stress)
        + np.einsum("jl,ik->ijkl", d, stress)
    )


def strain_slope(
    structure, calculator, strains, relax_ions: bool = False, fmax: float = 1e-8
) -> np.ndarray:
    """Voigt ``(6, 6)`` GPa: least-squares slope of ``V(e) sigma(e) / V0`` against each
    engineering strain component ``e_I`` (row ``I``), symmetrised."""
    import ase
    from ase.optimize import BFGS

    z = np.array(structure.atomic_numbers)
    pos, cell = structure.cart_coords, structure.lattice.matrix
    v0 = abs(np.linalg.det(cell))
    c = np.zeros((6, 6))
    for row, (i, j) in enumerate(VOIGT_PAIRS):
        values = []
        for e in strains:
            eps = np.zeros((3, 3))
            eps[i, j] += e / 2
            eps[j, i] += e / 2
            f = np.eye(3) + eps
            atoms = ase.Atoms(numbers=z, positions=pos @ f, cell=cell @ f, pbc=True)
            atoms.calc = calculator
            if relax_ions:
                BFGS(atoms, logfile=None).run(fmax=fmax, steps=1000)
            values.append(atoms.get_volume() * atoms.get_stress(voigt=True) / v0)
        values = np.array(values)  # [strain, 6] eV/A^3
        slope = np.polyfit(np.array(strains), values, 1)[0]
        c[row] = slope * EV_PER_A3_IN_GPA
    return (c + c.T) / 2


def mae21(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(to_voigt(a)[UPPER] - to_voigt(b)[UPPER]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=Path, default=REPO / "data" / "elastic.jsonl.gz")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--max-atoms", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checks", type=int, default=5)
    parser.add_argument("--relaxed-checks", type=int, default=2)
    parser.add_argument(
        "--relax",
        choices=("none", "ions", "cell"),
        default="none",
        help="relax with the potential first (ions, or ions and cell) instead of taking the "
        "DFT geometry",
    )
    args = parser.parse_args()
    relax = {"relax": args.relax != "none", "relax_cell": args.relax == "cell"}
    geometry = {"none": "DFT geometry", "ions": "ions relaxed", "cell": "ions and cell relaxed"}[
        args.relax
    ]

    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.ERROR)
    torch.set_num_threads(1)
    potential = load_potential("sevennet-0")
    records = [
        r
        for r in read_records(args.records)
        if len(r.structure["sites"]) <= args.max_atoms
        and not potential.unknown_elements(r.pymatgen_structure().atomic_numbers)
    ]
    rng = np.random.default_rng(args.seed)
    sample = [records[k] for k in sorted(rng.choice(len(records), args.limit, replace=False))]
    print(
        f"{len(sample)} of {len(records)} records with <= {args.max_atoms} atoms from "
        f"{args.records} (seed {args.seed}); one torch thread; load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    compute_elastic_prior(sample[0].pymatgen_structure())  # warm-up: load and first-call costs

    calc32 = potential.calculator()
    calc64 = load_potential("sevennet-0", "float64").calculator()
    rows = []
    print(
        f"{'id':>12} {'atoms':>5} {'edges':>6} {'near':>4} {'clamped s':>9} {'relax-ion s':>11} "
        f"{'HVPs':>4} {'dirs':>4} {'unstable':>8} {'|F| max':>7} {'MAE cl':>6} {'MAE rel':>7} "
        f"{'MAE fs':>6} {'|ag-fs|':>7}"
    )
    for record in sample:
        structure = record.pymatgen_structure()
        dft = np.array(record.value)
        result = compute_elastic_prior(structure, **relax)
        structure = result.structure  # the relaxed one with --relax
        finite = from_voigt(strain_slope(structure, calc32, MATCALC_STRAINS)) - stress_term(
            result.stress
        )
        graph = potential.graph(
            np.array(structure.atomic_numbers), structure.cart_coords, structure.lattice.matrix
        )
        lengths = graph.edge_vec.norm(dim=1).numpy()
        near = sum(int((np.abs(lengths - kink) < 0.05).sum()) for kink in KINKS)
        row = {
            "id": record.id,
            "atoms": len(structure),
            "edges": len(lengths),
            "near": near,
            "relax_s": result.seconds.get("relax", 0.0),
            "clamped_s": result.seconds["clamped"] + result.seconds["graph"],
            "relaxed_s": result.seconds["relaxed_ions"],
            "hvps": result.hessian_vector_products,
            "dirs": result.internal_directions,
            "unstable": result.unstable_directions,
            "force": result.max_force,
            "correction": float(np.abs(to_voigt(result.clamped - result.relaxed)).max()),
            "mae_clamped": mae21(result.clamped, dft),
            "mae_relaxed": mae21(result.relaxed, dft),
            "mae_finite": mae21(finite, dft),
            "finite_vs_autograd": float(np.abs(to_voigt(finite - result.clamped)).max()),
            "mae_lagrangian": mae21(result.clamped - stress_term(result.stress), dft),
        }
        rows.append(row)
        print(
            f"{row['id']:>12} {row['atoms']:>5} {row['edges']:>6} {row['near']:>4} "
            f"{row['clamped_s']:>9.2f} "
            f"{row['relaxed_s']:>11.2f} {row['hvps']:>4} {row['dirs']:>4} {row['unstable']:>8} "
            f"{row['force']:>7.3f} {row['mae_clamped']:>6.1f} {row['mae_relaxed']:>7.1f} "
            f"{row['mae_finite']:>6.1f} {row['finite_vs_autograd']:>7.1f}",
            flush=True,
        )

    def column(key, subset=None):
        return np.array([r[key] for r in (rows if subset is None else subset)])

    small = [r for r in rows if r["atoms"] <= 10]
    big = [r for r in rows if r["atoms"] > 10]
    stable = [r for r in rows if r["unstable"] == 0]
    print()
    print("seconds per structure (graph + clamped | relaxed-ion correction on top):")
    for label, subset in (("all", rows), ("<= 10 atoms", small), ("11-20 atoms", big)):
        if subset:
            print(
                f"  {label:>12}: n={len(subset):>2}  clamped median "
                f"{np.median(column('clamped_s', subset)):.2f} max "
                f"{column('clamped_s', subset).max():.2f} | relaxed-ion median "
                f"{np.median(column('relaxed_s', subset)):.2f} max "
                f"{column('relaxed_s', subset).max():.2f} (total median "
                f"{np.median(column('clamped_s', subset) + column('relaxed_s', subset)):.2f})"
            )
    print(
        f"internal directions / 3n-3: median "
        f"{np.median([r['dirs'] / max(3 * r['atoms'] - 3, 1) for r in rows]):.2f}; "
        f"structures with unstable directions ({geometry}): {len(rows) - len(stable)}"
    )
    print()
    print("MAE over the 21 independent Voigt components against DFT (GPa):")
    lines = [
        (f"clamped ions (autograd, {geometry})", column("mae_clamped").mean()),
        ("clamped, Lagrangian-strain Hessian", column("mae_lagrangian").mean()),
        ("clamped, finite strains +-0.5/1 %", column("mae_finite").mean()),
        (f"relaxed ions (all {len(rows)})", column("mae_relaxed").mean()),
    ]
    if stable:
        lines.append(
            (
                f"relaxed ions ({len(stable)} without unstable directions; clamped on them "
                f"{column('mae_clamped', stable).mean():.2f})",
                column("mae_relaxed", stable).mean(),
            )
        )
    for label, value in lines:
        print(f"  {label:<72} {value:6.2f}")
    far = [r for r in rows if r["near"] == 0]
    close = [r for r in rows if r["near"] > 0]
    for label, subset in (
        ("all", rows),
        ("no edge within 0.05 A of 4.5/5 A", far),
        ("edges within 0.05 A of 4.5 or 5 A", close),
    ):
        if subset:
            print(
                f"finite strain vs autograd, max abs Voigt difference ({label}, n={len(subset)}): "
                f"median {np.median(column('finite_vs_autograd', subset)):.2f}, max "
                f"{column('finite_vs_autograd', subset).max():.2f} GPa"
            )
    if args.relax != "none":
        print(f"relaxation (--relax {args.relax}): median {np.median(column('relax_s')):.1f} s")

    print(f"load average now {os.getloadavg()[0]:.2f}")
    print()
    print("finite-difference checks (float64, h = 1e-5, graph rebuilt per strain):")
    for record in sample[: args.checks]:
        structure = record.pymatgen_structure()
        start = time.perf_counter()
        result = compute_elastic_prior(structure, relaxed_ions=False, dtype="float64")
        ref = strain_slope(structure, calc64, (-1e-5, 1e-5))
        expected = to_voigt(result.clamped + stress_term(result.stress))
        result32 = compute_elastic_prior(structure, relaxed_ions=False)
        print(
            f"  {record.id:>12} clamped: |FD - autograd64| max "
            f"{np.abs(ref - expected).max():.1e} GPa, |autograd32 - autograd64| max "
            f"{np.abs(to_voigt(result32.clamped - result.clamped)).max():.1e} GPa "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    softened = [
        record
        for record, row in zip(sample, rows, strict=True)
        if row["atoms"] <= 8 and row["correction"] > 1
    ]
    for record in softened[: args.relaxed_checks]:
        start = time.perf_counter()
        relaxed = compute_elastic_prior(
            record.pymatgen_structure(),
            relax=True,
            fmax=1e-8,
            max_steps=5000,
            dtype="float64",
            internal_tolerance=0,
        )
        ref = strain_slope(relaxed.structure, calc64, (-1e-5, 1e-5), relax_ions=True)
        expected = to_voigt(relaxed.relaxed + stress_term(relaxed.stress))
        print(
            f"  {record.id:>12} relaxed ions (ions relaxed with the potential first, "
            f"|F| {relaxed.max_force:.1e}): |FD - autograd| max "
            f"{np.abs(ref - expected).max():.1e} GPa; correction "
            f"{np.abs(to_voigt(relaxed.clamped - relaxed.relaxed)).max():.1f} GPa "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
