"""Tiny graph stores for the training tests, built in code, and short runs on them.

Each graph is a strained two-atom cell; its target is an equivariant function of the cell (the
metric tensor ``g = A^T A`` of the lattice vectors as columns, and products of it), so a model
can learn it and rotating a structure rotates its target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystensor.data.featurize import featurize
from crystensor.data.records import Record, write_records
from crystensor.tensors.kinds import get_property
from crystensor.train import run
from crystensor.train.config import TrainConfig
from crystensor.train.loop import Reporter

SYSTEMS = ("cubic", "tetragonal", "orthorhombic", "triclinic")
SPECIES = (("Na", "Cl"), ("Mg", "O"), ("Li", "F"), ("K", "Br"))
# training settings of the short runs
FAST = dict(batch_size=8, lr=5e-3, patience=0)
# sixteen chemical systems, for the family split
MANY_SPECIES = (
    *SPECIES,
    *(("Ca", "S"), ("Sr", "Se"), ("Ba", "Te"), ("Rb", "I")),
    *(("Cs", "Cl"), ("Na", "F"), ("K", "I"), ("Li", "Br")),
    *(("Zn", "S"), ("Cd", "Te"), ("Ga", "N"), ("Al", "P")),
)


def _structure(rng: np.random.Generator, species=SPECIES) -> Structure:
    strain = np.eye(3) + 0.04 * rng.standard_normal((3, 3))
    lattice = Lattice((2.9 + 0.3 * rng.random()) * strain)
    pair = species[rng.integers(len(species))]
    return Structure(lattice, list(pair), [[0, 0, 0], [0.5, 0.5, 0.5]])


def _target(structure: Structure, target: str) -> object:
    cell = structure.lattice.matrix
    g = cell.T @ cell / 9.0  # (3, 3) symmetric, rotates as a rank-2 tensor
    rank = get_property(target).tensor_kind.rank
    if rank == 0:
        return float(structure.volume / len(structure))
    if rank == 2:
        return (np.eye(3) * 2.0 + g).tolist()
    if rank == 3:  # a fully symmetric rank-3 tensor from g and the cell's first row direction
        v = cell[0] / np.linalg.norm(cell[0])
        t = np.einsum("ij,k->ijk", g, v)
        t = (t + t.transpose(1, 2, 0) + t.transpose(2, 0, 1)) / 3.0
        return (0.1 * (t + t.transpose(0, 2, 1)) / 2).tolist()
    t = np.einsum("ij,kl->ijkl", g, g)
    t = t + t.transpose(0, 2, 1, 3) + t.transpose(0, 3, 2, 1)
    t = t + t.transpose(2, 3, 0, 1)
    return (20.0 * t + 50.0 * np.einsum("ij,kl->ijkl", np.eye(3), np.eye(3))).tolist()


def build_store(
    path: Path, target: str, n: int, seed: int = 0, species=SPECIES, cutoff: float = 4.0
) -> Path:
    """A store of ``n`` strained two-atom cells with ``target`` values (``cutoff`` in Angstrom),
    each cell of one of the element pairs ``species``."""
    rng = np.random.default_rng(seed)
    records = []
    for k in range(n):
        s = _structure(rng, species)
        records.append(
            Record(
                id=f"tiny-{k}",
                formula=s.composition.reduced_formula,
                structure=s.as_dict(),
                target=target,
                value=_target(s, target),
                units=get_property(target).units,
                source={"dataset": "tests", "citation": "", "file": ""},
                symmetry={"space_group_number": 1, "crystal_system": SYSTEMS[k % 4]},
            )
        )
    records_path = path.with_suffix(".jsonl")
    write_records(records_path, records)
    featurize(records_path, target, path, cutoff=cutoff)
    return path


def train_tiny(store, out, epochs=2, arch="segnn", model=None, **settings) -> run.RunResult:
    """``run.train`` of the ``small`` preset of ``arch`` on ``store`` for ``epochs`` epochs with
    the :data:`FAST` settings, updated by ``settings``; ``model``: model overrides."""
    config = TrainConfig(epochs=epochs, **{**FAST, **settings})
    return run.train(
        store, out, arch=arch, preset_name="small", config=config, model_overrides=model
    )


class Interrupt(Reporter):
    """Ctrl-C after epoch ``after`` (its last.pt is already written)."""

    def __init__(self, after: int) -> None:
        self.after = after

    def epoch_end(self, record):
        if record["epoch"] == self.after:
            raise KeyboardInterrupt


@pytest.fixture(scope="session")
def tiny_stores(tmp_path_factory) -> dict[str, Path]:
    """Stores of 40 graphs for elastic, dielectric, piezoelectric and band-gap (same cells)."""
    root = tmp_path_factory.mktemp("stores")
    return {
        t: build_store(root / f"{t}.h5", t, 40)
        for t in ("elastic", "dielectric", "piezoelectric", "band-gap")
    }
