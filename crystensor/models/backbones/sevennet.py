r"""SevenNet-0 and SevenNet-l3i5, pretrained universal potentials, as node-feature backbones.

The potential ships inside the ``sevenn`` wheel (MIT), so nothing is downloaded: the checkpoint
is the file sevenn's own calculator loads for ``"7net-0"``
(``sevenn/pretrained_potentials/SevenNet_0__11Jul2024/checkpoint_sevennet_0.pth``), built into a
network by sevenn's ``SevenNetCheckpoint.build_model``. :class:`PretrainedBackbone` keeps that
network up to its last equivariant layer and drops the rest (the last interaction block, which
only produces scalars, and the energy readout).

SevenNet-0 (lmax 2, 5 interaction blocks, cutoff 5 Angstrom, 89 elements) after its fourth
equivariant gate::

    atomic numbers --type map--> one-hot (89) --> 128x0e
        --4 x (self-connection, convolution over edges r < 5 A, gate)--> 128x0e+64x1e+32x2e

``sevennet-l3i5`` (``SevenNet_l3i5/checkpoint_l3i5.pth``, trained on the same data) is the same
design with ``lmax`` 3: its features are ``128x0e+64x1e+32x2e+32x3e``, and the same code cuts it
after its fourth equivariant gate.

Conventions, and how they map onto crystensor's (:mod:`crystensor.data.graph`):

* **Edges.** sevenn's ``edge_index[0]`` is the centre ``i`` (its convolution gathers messages
  there) and ``edge_index[1]`` the neighbour ``j`` (the message comes from its features); its
  edge vector is ``r_j + shift . cell - r_i``, the vector crystensor uses too. crystensor's rows
  are the other way round (row 0 neighbour, row 1 centre), so :meth:`PretrainedBackbone.forward`
  flips the two rows and passes the vector unchanged.
* **Elements.** sevenn's type map turns ``Z`` into a one-hot index; it is applied by sevenn's
  ``AtomGraphSequential`` itself. Elements outside it are refused with an
  :class:`~crystensor.errors.InputError` naming them.
* **Spherical harmonics.** sevenn uses e3nn's ``SphericalHarmonics`` (component normalisation,
  normalised vectors) and e3nn's tensor products, so the features are in e3nn's basis: for a
  rotation ``R`` they transform by ``irreps_out.D_from_matrix(R)``; nothing is permuted.
* **Parity.** SevenNet-0 was trained without parity (SO(3) only): its spherical harmonics are
  labelled ``1x1e`` and every block carries ``e``. Relabelled by the natural parity of ``l``
  (``128x0e+64x1o+32x2e``, :attr:`PretrainedBackbone.irreps_out`) the labels are right for
  rotations; under a reflection the features have no definite parity (they are not the image of
  the reflected structure's features under any O(3) representation). Exact O(3) equivariance is
  recovered downstream by also computing the features of the inverted structure
  (``with_inverted=True``).
* **Precision.** sevenn computes in float32 (its one-hot embedding is hard-wired to float32), so
  the backbone keeps its weights in float32 whatever dtype the enclosing model is moved to; inputs
  are cast and the features come out in float32.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import logging
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from e3nn import o3

from crystensor.errors import InputError

__all__ = [
    "POTENTIALS",
    "PretrainedBackbone",
    "checkpoint_path",
    "identity",
]

log = logging.getLogger(__name__)

# crystensor name -> the sevenn._const attribute holding the checkpoint path (what sevenn's
# calculator resolves its own names to).
POTENTIALS = {"sevennet-0": "SEVENNET_0_11Jul2024", "sevennet-l3i5": "SEVENNET_l3i5"}

PACKAGE = "sevenn"
_MAX_Z = 120  # size of sevenn's Z -> type-index table
# Edges per forward pass of features_of_many on a CPU (see its docstring)
DEFAULT_MAX_EDGES = 1024

# (atomic numbers (n,), positions (n, 3), cell (3, 3)) of one structure
StructureArrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def _check_name(name: str) -> None:
    if name not in POTENTIALS:
        raise InputError(
            f"unknown pretrained backbone {name!r}; choose one of {', '.join(POTENTIALS)}"
        )


def package_version() -> str:
    """Installed ``sevenn`` version (``InputError`` if it is not installed)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise InputError(
            f"the pretrained backbones need the {PACKAGE} package; install it with "
            f"pip install '{PACKAGE}>=0.13,<0.14'"
        ) from None


def checkpoint_path(name: str) -> Path:
    """The checkpoint file of pretrained backbone ``name`` inside the installed ``sevenn``.

    Raises
    ------
    InputError
        Unknown name, ``sevenn`` not installed, or the file missing from its package (never
        downloaded).
    """
    _check_name(name)
    package_version()
    with warnings.catch_warnings():
        # sevenn scripts a function at import time, which torch >= 2.10 flags as deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        import sevenn._const

    path = Path(getattr(sevenn._const, POTENTIALS[name]))
    if not path.is_file():
        raise InputError(
            f"{PACKAGE} {package_version()} has no checkpoint for {name} at {path}; reinstall "
            f"{PACKAGE} (the file ships inside its wheel)"
        )
    return path


@functools.lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def identity(name: str) -> dict[str, str]:
    """What identifies pretrained backbone ``name``: package, version, checkpoint and its hash.

    Returns
    -------
    dict
        ``name``, ``package`` (``"sevenn"``), ``version`` (of the package), ``checkpoint`` (file
        name with its folder inside the package) and ``sha256`` (of the file's bytes; cached
        per process while the file's size and time stamp stay the same).
    """
    path = checkpoint_path(name)
    stat = path.stat()
    return {
        "name": name,
        "package": PACKAGE,
        "version": package_version(),
        "checkpoint": f"{path.parent.name}/{path.name}",
        "sha256": _file_sha256(str(path), stat.st_size, stat.st_mtime_ns),
    }


def _natural_parity(irreps: o3.Irreps) -> o3.Irreps:
    """``irreps`` relabelled with the parity of spherical harmonics, ``(-1)^l``."""
    return o3.Irreps([(mul, (ir.l, (-1) ** ir.l)) for mul, ir in irreps])


def _last_equivariant_gate(model: torch.nn.Module) -> tuple[str, o3.Irreps]:
    """Name and output irreps of the last gate whose output still holds ``l > 0``."""
    found = None
    for name, module in model._modules.items():
        gate = getattr(module, "gate", None)
        if name.endswith("_equivariant_gate") and gate is not None:
            irreps = o3.Irreps(gate.irreps_out)
            if irreps.lmax > 0:
                found = (name, irreps)
    if found is None:
        raise RuntimeError("the sevenn model has no equivariant gate with l > 0 output")
    return found


class PretrainedBackbone(torch.nn.Module):
    r"""A pretrained potential cut after its last equivariant layer: atoms + edges -> node features.

    Built by :func:`crystensor.models.backbones.load_backbone`.

    Equivariance: for a rotation ``R`` (det +1) applied to the structure (edge vectors
    ``v -> v R^T``), the features go to ``x -> x D(R)^T`` with
    ``D = irreps_out.D_from_matrix(R)``; translations leave them unchanged, permuting the atoms
    permutes their rows, and an atom of a supercell has the features of the atom it copies. Under
    a reflection they have no definite parity (see the module docstring): pass the inverted
    structure as well (``with_inverted=True`` in :meth:`features_of_many`) to build exactly
    O(3)-equivariant quantities.

    Attributes
    ----------
    name : str
        crystensor's name of the potential (``"sevennet-0"`` or ``"sevennet-l3i5"``).
    version : str
        Version of the ``sevenn`` package the checkpoint came from.
    checkpoint : str
        Checkpoint file name with its folder inside the package.
    file_sha256 : str
        SHA-256 of the checkpoint file.
    cutoff : float
        Radius the potential was trained with, Angstrom; longer edges are ignored.
    irreps_out : e3nn.o3.Irreps
        ``128x0e+64x1o+32x2e`` for SevenNet-0 (``+32x3o`` for l3i5): how the features rotate
        (parity labels are the natural ``(-1)^l`` ones; see the parity note in the module
        docstring).
    irreps_sevenn : e3nn.o3.Irreps
        The same blocks with sevenn's own labels (``128x0e+64x1e+32x2e``).
    layer : str
        Name of the last sevenn module kept (``"3_equivariant_gate"``).
    """

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        *,
        version: str,
        checkpoint: str,
        file_sha256: str,
        cutoff: float,
        irreps_sevenn: o3.Irreps | str,
        layer: str,
        type_map: dict[int, int],
    ) -> None:
        super().__init__()
        self.name = name
        self.version = version
        self.checkpoint = checkpoint
        self.file_sha256 = file_sha256
        self.cutoff = float(cutoff)
        self.irreps_sevenn = o3.Irreps(irreps_sevenn)
        self.irreps_out = _natural_parity(self.irreps_sevenn)
        self.layer = layer
        self.model = model
        # sevenn keeps some constants (the convolution denominators) as parameters that never
        # train; set_trainable leaves them so
        self.constants = frozenset(k for k, p in self.named_parameters() if not p.requires_grad)
        known = torch.zeros(_MAX_Z, dtype=torch.bool)
        known[list(type_map)] = True
        self.register_buffer("known_elements", known, persistent=False)

    @classmethod
    def from_checkpoint(cls, name: str) -> PretrainedBackbone:
        """Load potential ``name`` with sevenn's own loader and cut it (see the class doc)."""
        path = checkpoint_path(name)
        ident = identity(name)
        import sevenn._keys as KEY
        import sevenn.util
        from sevenn.nn.sequential import AtomGraphSequential

        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)  # e3nn builds its constants in the default dtype
        try:
            checkpoint = sevenn.util.load_checkpoint(str(path))
            full = checkpoint.build_model()
            config = checkpoint.config
        finally:
            torch.set_default_dtype(previous)
        layer, irreps = _last_equivariant_gate(full)
        kept: OrderedDict[str, torch.nn.Module] = OrderedDict()
        for key, module in full._modules.items():
            kept[key] = module
            if key == layer:
                break
        type_map = {int(z): int(t) for z, t in config[KEY.TYPE_MAP].items()}
        # sevenn's own container: it applies the type map before running the modules
        model = AtomGraphSequential(kept, cutoff=float(config[KEY.CUTOFF]), type_map=type_map)
        model.eval()
        backbone = cls(
            name,
            model,
            version=ident["version"],
            checkpoint=ident["checkpoint"],
            file_sha256=ident["sha256"],
            cutoff=float(config[KEY.CUTOFF]),
            irreps_sevenn=irreps,
            layer=layer,
            type_map=type_map,
        )
        log.info(
            "loaded %s (%s %s, %s) up to %s: %s, cutoff %g A",
            name,
            PACKAGE,
            ident["version"],
            ident["checkpoint"],
            layer,
            backbone.irreps_out,
            backbone.cutoff,
        )
        return backbone.eval()

    # -- identity and training --------------------------------------------------------------
    def identity(self) -> dict[str, str]:
        """Same keys as :func:`identity`, for this loaded instance."""
        return {
            "name": self.name,
            "package": PACKAGE,
            "version": self.version,
            "checkpoint": self.checkpoint,
            "sha256": self.file_sha256,
        }

    def blocks(self) -> list[str]:
        """Names of the interaction blocks kept, first to last (``["0", "1", "2", "3"]``)."""
        return sorted(
            {key.split("_", 1)[0] for key in self.model._modules if key.split("_", 1)[0].isdigit()},
            key=int,
        )

    def set_trainable(self, which: str) -> list[str]:
        """Choose which weights train: ``"none"``, ``"last"`` (the last interaction block kept)
        or ``"all"``.

        Returns
        -------
        list of str
            Names of the parameters that now require gradients (empty for ``"none"``).
        """
        if which not in ("none", "last", "all"):
            raise InputError(f"set_trainable takes 'none', 'last' or 'all', not {which!r}")
        last = f"{self.blocks()[-1]}_"
        trainable = []
        for key, param in self.named_parameters():
            module = key.split(".")[1] if key.startswith("model.") else ""
            on = which == "all" or (which == "last" and module.startswith(last))
            on = on and key not in self.constants
            param.requires_grad_(on)
            if on:
                trainable.append(key)
        return trainable

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        # Device moves apply; dtype changes do not (sevenn's one-hot embedding is float32).
        return super()._apply(lambda t: t.float() if t.is_floating_point() else t)

    # -- the network ------------------------------------------------------------------------
    def unknown_elements(self, atomic_numbers: torch.Tensor | np.ndarray) -> list[str]:
        """Symbols of the elements in ``atomic_numbers`` the potential was not trained on."""
        if not isinstance(atomic_numbers, torch.Tensor):
            atomic_numbers = torch.as_tensor(np.asarray(atomic_numbers))
        z = atomic_numbers.to(self.known_elements.device).long()
        inside = (z >= 0) & (z < _MAX_Z)
        ok = inside.clone()
        ok[inside] = self.known_elements[z[inside]]
        if bool(ok.all()):
            return []
        from pymatgen.core.periodic_table import Element

        bad = sorted({int(v) for v in z[~ok].tolist()})
        return [Element.from_Z(v).symbol if 1 <= v <= 118 else f"Z={v}" for v in bad]

    def check_species(self, atomic_numbers: torch.Tensor | np.ndarray) -> None:
        """Refuse atomic numbers the potential was not trained on.

        Raises
        ------
        InputError
            Names the elements and the potential.
        """
        bad = self.unknown_elements(atomic_numbers)
        if bad:
            raise InputError(
                f"backbone {self.name} was not trained on {', '.join(bad)} (it knows "
                f"{int(self.known_elements.sum())} elements); remove these structures or use "
                "the native backbone"
            )

    def forward(
        self,
        atomic_numbers: torch.Tensor,
        edge_index: torch.Tensor,
        edge_vec: torch.Tensor,
        batch: torch.Tensor,
        num_graphs: int,
    ) -> torch.Tensor:
        """Node features of a batch of graphs in crystensor's convention.

        Parameters
        ----------
        atomic_numbers : tensor ``(n_nodes,)`` long
        edge_index : tensor ``(2, n_edges)`` long
            Row 0 the neighbour ``j`` (source), row 1 the centre ``i`` (target), indices into
            the batch's nodes.
        edge_vec : tensor ``(n_edges, 3)`` float, Angstrom
            ``r_j + shift . cell - r_i``. Edges not shorter than :attr:`cutoff` (and zero-length
            ones) are dropped, so a graph built with a larger radius gives the same features.
        batch : tensor ``(n_nodes,)`` long
            Graph of each node. Unused by the potential's layers (which act on nodes and edges
            only) but part of the backbone interface.
        num_graphs : int

        Returns
        -------
        tensor ``(n_nodes, irreps_out.dim)`` float32
            Differentiable with respect to ``edge_vec`` and to the weights.
        """
        import sevenn._keys as KEY

        self.check_species(atomic_numbers)
        n_nodes = int(atomic_numbers.shape[0])
        if edge_index.shape[0] != 2 or edge_vec.shape != (edge_index.shape[1], 3):
            raise ValueError(
                f"edge_index must be (2, E) and edge_vec (E, 3); got {tuple(edge_index.shape)} "
                f"and {tuple(edge_vec.shape)}"
            )
        length = edge_vec.detach().norm(dim=-1)
        keep = (length < self.cutoff) & (length > 0)
        if not bool(keep.all()):
            edge_index, edge_vec = edge_index[:, keep], edge_vec[keep]
        z = atomic_numbers.long()
        data: dict[str, Any] = {
            KEY.ATOMIC_NUMBERS: z,
            KEY.NODE_FEATURE: z,
            # sevenn: row 0 the centre (messages gathered there), row 1 the neighbour
            KEY.EDGE_IDX: edge_index.flip(0).long(),
            KEY.EDGE_VEC: edge_vec.to(torch.float32),
            KEY.BATCH: batch,
        }
        out = self.model(data)[KEY.NODE_FEATURE]
        if out.shape != (n_nodes, self.irreps_out.dim):
            raise RuntimeError(f"{self.name} returned {tuple(out.shape)} features")
        return out

    # -- structures -> features -------------------------------------------------------------
    def graph_of(
        self, atomic_numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The potential's radius graph of one periodic structure, by sevenn's own builder.

        Returns
        -------
        edge_index : array ``(2, E)`` int64
            crystensor's convention (row 0 neighbour ``j``, row 1 centre ``i``).
        edge_vec : array ``(E, 3)`` float64, Angstrom
            ``r_j + shift . cell - r_i``, all shorter than :attr:`cutoff`.
        """
        import ase
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        z = np.asarray(atomic_numbers, dtype=np.int64)
        pos = np.asarray(positions, dtype=np.float64)
        lattice = np.array(cell, dtype=np.float64)  # sevenn may edit it in place
        n = len(z)
        if z.ndim != 1 or pos.shape != (n, 3) or lattice.shape != (3, 3):
            raise InputError(
                f"a structure needs atomic numbers (n,), positions (n, 3) and a cell (3, 3); got "
                f"{z.shape}, {pos.shape}, {lattice.shape}"
            )
        if not (np.isfinite(pos).all() and np.isfinite(lattice).all()):
            raise InputError("positions and cell must be finite numbers")
        if abs(np.linalg.det(lattice)) < 1e-6:
            raise InputError(f"the cell {lattice.tolist()} has no volume")
        atoms = ase.Atoms(numbers=z, positions=pos, cell=lattice, pbc=True)
        graph = unlabeled_atoms_to_graph(atoms, self.cutoff)
        edge_index = np.asarray(graph["edge_index"], dtype=np.int64)[::-1].copy()
        return edge_index, np.asarray(graph["edge_vec"], dtype=np.float64)

    def features_of_many(
        self,
        structures: Sequence[StructureArrays],
        *,
        with_inverted: bool = False,
        batch_size: int = 32,
        max_edges: int | None = DEFAULT_MAX_EDGES,
    ) -> list[np.ndarray]:
        """Node features of many structures, several per forward pass, without gradients.

        A pass takes up to ``batch_size`` structures and, beyond the first, only while their
        edges (both images counted) stay within ``max_edges``. On a CPU small passes are
        fastest: sevenn's per-edge tensor products are bound by memory traffic, and larger
        passes fall out of the caches (one ~12-atom structure and its image per pass ran 2-3x
        faster than 16-48 structures; ``benchmarks/backbone_speed.py``). On a GPU raise both.

        Parameters
        ----------
        structures : sequence of ``(atomic_numbers (n,), positions (n, 3), cell (3, 3))``
            Cartesian Angstrom, lattice vectors as rows.
        with_inverted : bool
            Also the features of each structure's image under inversion (positions and cell
            negated, same atom order). Its graph is the structure's with every edge vector
            negated, so both run in the same pass.
        batch_size : int
            Most structures per forward pass (each counted once even ``with_inverted``).
        max_edges : int or None
            Most edges per forward pass (a structure with more runs alone); None: no limit.

        Returns
        -------
        list of arrays float32
            ``(n, dim)`` per structure, or ``(n, 2, dim)`` ``with_inverted`` (``[:, 0]`` the
            structure, ``[:, 1]`` its inverted image).
        """
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        if max_edges is not None and max_edges < 1:
            raise InputError(f"max_edges must be at least 1 or None, got {max_edges}")
        out: list[np.ndarray] = []
        pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        pending_edges = 0
        images = 2 if with_inverted else 1
        with torch.no_grad():
            for z, pos, cell in structures:
                z = np.asarray(z, dtype=np.int64)
                self.check_species(z)
                edge_index, vec = self.graph_of(z, pos, cell)
                edges = images * edge_index.shape[1]
                full = len(pending) >= batch_size or (
                    max_edges is not None and pending_edges + edges > max_edges
                )
                if pending and full:
                    out.extend(self._run(pending, with_inverted))
                    pending, pending_edges = [], 0
                pending.append((z, edge_index, vec))
                pending_edges += edges
            if pending:
                out.extend(self._run(pending, with_inverted))
        return out

    def _run(
        self, graphs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], with_inverted: bool
    ) -> list[np.ndarray]:
        """One forward pass over ``(Z, edge_index, edge_vec)`` graphs (and their images)."""
        device = self.known_elements.device
        zs, edges, vecs = [], [], []
        offset = 0
        for z, edge_index, vec in graphs:
            for v in (vec, -vec) if with_inverted else (vec,):
                zs.append(z)
                edges.append(edge_index + offset)
                vecs.append(v)
                offset += len(z)
        nodes = np.array([len(z) for z in zs])
        features = self(
            torch.from_numpy(np.concatenate(zs)).to(device),
            torch.from_numpy(np.concatenate(edges, axis=1)).to(device),
            torch.from_numpy(np.concatenate(vecs)).to(device),
            torch.from_numpy(np.repeat(np.arange(len(zs)), nodes)).to(device),
            len(zs),
        )
        features = features.cpu().numpy()
        out, position = [], 0
        for z, _, _ in graphs:
            n = len(z)
            if with_inverted:
                pair = features[position : position + 2 * n].reshape(2, n, -1)  # [image, n, dim]
                out.append(np.ascontiguousarray(pair.transpose(1, 0, 2)))
                position += 2 * n
            else:
                out.append(features[position : position + n].copy())
                position += n
        return out

    def features_of(
        self,
        atomic_numbers: np.ndarray,
        positions: np.ndarray,
        cell: np.ndarray,
        *,
        with_inverted: bool = False,
    ) -> np.ndarray:
        """Node features of one structure: ``(n, dim)``, or ``(n, 2, dim)`` ``with_inverted``
        (see :meth:`features_of_many`)."""
        return self.features_of_many(
            [(atomic_numbers, positions, cell)], with_inverted=with_inverted
        )[0]

    def node_features(self, structure: Any, *, with_inverted: bool = False) -> np.ndarray:
        """Node features of an ordered pymatgen ``Structure``; see :meth:`features_of`."""
        if not getattr(structure, "is_ordered", True):
            raise InputError("the structure is disordered; order it before computing features")
        return self.features_of(
            np.array(structure.atomic_numbers),
            np.asarray(structure.cart_coords),
            np.asarray(structure.lattice.matrix),
            with_inverted=with_inverted,
        )
