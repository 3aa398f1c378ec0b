"""Crystal structure -> periodic radius graph.

Field conventions (declared once; every other module follows them):

================  ===================  =====================================================
``atomic_numbers`` ``(n_nodes,)`` int   Z of each site
``positions``      ``(n_nodes, 3)``     Cartesian coordinates, Angstrom
``cell``           ``(3, 3)``           lattice vectors as rows, Angstrom
``edge_index``     ``(2, n_edges)`` int ``edge_index[0]`` = source ``j`` (the neighbour),
                                        ``edge_index[1]`` = target ``i`` (the centre that
                                        receives the message), PyG's convention
``edge_shift``     ``(n_edges, 3)`` int lattice translation of the neighbour's image
================  ===================  =====================================================

The edge vector from centre ``i`` to neighbour ``j`` is
``positions[j] + edge_shift @ cell - positions[i]``: it is rebuilt from these integers exactly,
so a rotated or translated structure gives the rotated edge vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from crystensor.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = ["StructureGraph", "build_graph", "edge_vectors"]


@dataclass(frozen=True)
class StructureGraph:
    """A periodic radius graph of one structure (see the module docstring for the fields)."""

    atomic_numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    edge_index: np.ndarray
    edge_shift: np.ndarray
    cutoff: float

    @property
    def num_nodes(self) -> int:
        return len(self.atomic_numbers)

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]


def edge_vectors(
    positions: np.ndarray, cell: np.ndarray, edge_index: np.ndarray, edge_shift: np.ndarray
) -> np.ndarray:
    """Vectors from centre to neighbour, ``(n_edges, 3)``: ``x_j + shift . cell - x_i``."""
    src, dst = edge_index
    return positions[src] + edge_shift @ cell - positions[dst]


class IsolatedAtomError(InputError):
    """An atom has no neighbour within the cutoff."""


def build_graph(
    structure: Structure,
    cutoff: float = 5.0,
    *,
    auto_extend: bool = False,
    max_cutoff: float = 10.0,
) -> StructureGraph:
    """All neighbour pairs within ``cutoff`` across periodic images (self-images included).

    Parameters
    ----------
    structure : pymatgen Structure
        Ordered, periodic.
    cutoff : float
        Radius in Angstrom.
    auto_extend : bool
        If an atom has no neighbour, grow the cutoff by 1 Angstrom steps up to ``max_cutoff``
        instead of raising.

    Raises
    ------
    IsolatedAtomError
        An atom has no neighbour within the cutoff (names the site and the distance needed).
    """
    if cutoff <= 0:
        raise InputError(f"cutoff must be positive, got {cutoff}")
    while True:
        centre, neighbour, images, _ = structure.get_neighbor_list(cutoff)
        lonely = np.setdiff1d(np.arange(len(structure)), centre)
        if lonely.size == 0:
            break
        if not auto_extend or cutoff + 1.0 > max_cutoff:
            site = structure[int(lonely[0])]
            nearest = min(
                (d for d in structure.distance_matrix[int(lonely[0])] if d > 0),
                default=float(min(structure.lattice.abc)),
            )
            raise IsolatedAtomError(
                f"{structure.composition.reduced_formula}: atom {int(lonely[0])} ({site.specie}) "
                f"has no neighbour within {cutoff:g} A (nearest at about {nearest:.2f} A); "
                "raise --cutoff or use --auto-cutoff"
            )
        cutoff += 1.0
    order = np.lexsort((images[:, 2], images[:, 1], images[:, 0], neighbour, centre))
    return StructureGraph(
        atomic_numbers=np.array(structure.atomic_numbers, dtype=np.int64),
        positions=np.asarray(structure.cart_coords, dtype=float),
        cell=np.asarray(structure.lattice.matrix, dtype=float),
        edge_index=np.stack([neighbour[order], centre[order]]).astype(np.int64),
        edge_shift=np.asarray(images[order], dtype=np.int64),
        cutoff=float(cutoff),
    )
