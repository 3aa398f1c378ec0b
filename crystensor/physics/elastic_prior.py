r"""A universal potential's elastic stiffness by automatic differentiation (issue 16, part 1).

The stiffness of a crystal under a pretrained interatomic potential (SevenNet-0, shipped inside
the ``sevenn`` wheel) is the second derivative of the potential's total energy with respect to a
homogeneous strain. It is computed here with torch autograd from the potential's own graph, not
by fitting stresses of finitely strained cells, so it is exact (to the arithmetic) at the given
geometry.

**Strain.** Positions and lattice vectors (rows) are mapped ``r -> (r + u) (I + eps)`` with
``eps`` symmetric and ``u`` ``(n, 3)`` atomic displacements, taken in the unstrained frame
(displacements of the fractional coordinates times the reference cell). ``eps`` is
parametrised by the six engineering strains of Voigt notation, in pymatgen's order
(:data:`crystensor.tensors.voigt.VOIGT_PAIRS`)::

    e = (eps_xx, eps_yy, eps_zz, 2 eps_yz, 2 eps_xz, 2 eps_xy)

so that, with ``V`` the cell volume at the reference and ``E`` the potential's energy,

.. math::

    C^{\mathrm{clamped}}_{IJ} = \frac{1}{V}\,\frac{\partial^2 E}{\partial e_I\,\partial e_J}
    \Big|_{e=0,\,u=0},
    \qquad
    \sigma_I = \frac{1}{V}\,\frac{\partial E}{\partial e_I}\Big|_{0}

(``C`` in pymatgen's Voigt convention, no factors of 2: ``C_IJ = C_ijkl``; ``sigma`` positive in
tension, as ASE's and pymatgen's stress). The full tensor ``C_ijkl`` (``(3, 3, 3, 3)``, GPa, in the
Cartesian frame of the structure) has the minor and major symmetries by construction.

**Relaxed ions.** With ``K = d^2E / du du`` the force constants (``(3n, 3n)``, eV/A^2) and
``Lambda = d^2E / du de`` the internal-strain coupling (``(3n, 6)``, eV/A), minimising the
second-order energy over ``u`` at fixed strain gives

.. math::

    C^{\mathrm{relaxed}} = C^{\mathrm{clamped}} - \frac{1}{V}\,\Lambda^{T} K^{+} \Lambda,

``K^+`` the pseudo-inverse on the complement of the three rigid translations (which leave the
energy unchanged: ``K`` annihilates them and ``Lambda``'s columns are orthogonal to them). The
correction is positive semi-definite when ``K`` is (a structure at a minimum of the potential),
so relaxing the ions only softens. ``K^+ Lambda`` is found on the smallest ``K``-invariant
subspace containing ``Lambda``'s columns, by block Krylov iteration (Rayleigh-Ritz, as conjugate
gradients), one Hessian-vector product per direction: symmetry keeps that subspace small (3 of
the 33 directions of the 12-atom cubic cell of mp-2343), and where it does not the correction
settles to 0.01 GPa (``internal_tolerance``) within 12-22 directions, long before all ``3n - 3``
(measured on real cells of up to 20 atoms). The formula assumes the ions are at
equilibrium; the residual forces are reported (:attr:`ElasticPrior.max_force`), and
``relax=True`` moves the ions (and with ``relax_cell=True`` the cell) to the potential's minimum
first.

**Residual stress.** At a geometry that is not the potential's equilibrium (a DFT-relaxed cell,
the usual input) the stress ``sigma`` is not zero. ``C`` above is then the energy Hessian in the
linear strain ``eps``. The Hessian in the Lagrangian (Green) strain ``eta = eps + eps^2 / 2``
differs from it by ``-s``, with ``s_ijkl = sym(delta_ik sigma_jl)`` (symmetrised over both minor
pairs); the slope of ``V sigma / V_0`` over strained cells by ``+s``; the slope of the Cauchy
stress ``sigma`` itself (what a finite-strain fit such as matcalc's measures) by
``+s - delta_ij sigma_kl``. All are of the order of the residual stress
(:attr:`ElasticPrior.stress`) and coincide at the potential's own equilibrium (``relax=True,
relax_cell=True``).

**Graph and smoothness.** The radius graph is sevenn's own
(``sevenn.train.dataload.unlabeled_atoms_to_graph`` with the checkpoint's 5 A cutoff), built once
at the reference geometry; every edge vector ``r_j + S_ij . cell - r_i`` then moves with the
strain and the displacements, so the derivatives are those of the potential at the reference
(an edge outside the cutoff there contributes nothing to the energy or its derivatives).
SevenNet-0's radial cutoff is the XPLOR switch (1 below ``r_on = 4.5`` A, a polynomial falling to 0
at ``r_c = 5`` A): continuous with its first derivative, but its second derivative jumps at ``r_on``
and ``r_c``. The potential's stiffness is therefore discontinuous in the geometry: it jumps whenever
an edge length crosses 4.5 or 5 A (diamond Si at a = 5.43 A, whose third shell is at 4.503 A, loses
18 GPa of C_xxxx under 0.15 % compression along x). The tensor here is the derivative at the given
geometry; a finite-strain fit (strains of 0.5-1 %) averages it over such jumps and can differ from
it by several GPa when neighbours lie near 4.5 or 5 A.

**Symmetry.** The energy is invariant under rotations, so rotating the structure rotates ``C``
(to rounding). SevenNet-0 was trained without parity: its energy is not exactly invariant under
a reflection (a few meV per cell on chiral structures), so the tensor of a mirror image is close
to, not exactly, the mirrored tensor; for a centrosymmetric crystal the image is the crystal
itself.

**Precision.** sevenn computes in float32; the potential can also be evaluated in float64 (its
weights cast, its one-hot embedding cast after the fact), which gives the same energies to ~1e-7
relative and exact derivatives for tests, at 1.5-2.7 times the cost. The default is float32:
autograd has no finite-difference cancellation, so its tensors agree with float64 to ~1e-3 GPa.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from crystensor.errors import InputError
from crystensor.models.backbones.sevennet import (
    _MAX_Z,
    POTENTIALS,
    PretrainedBackbone,
    checkpoint_path,
    identity,
)
from crystensor.tensors.voigt import from_voigt

__all__ = [
    "EV_PER_A3_IN_GPA",
    "AutogradCalculator",
    "ElasticPrior",
    "Potential",
    "StrainGraph",
    "compute_elastic_prior",
    "elastic_tensor",
    "load_potential",
    "strain_matrix",
]

log = logging.getLogger(__name__)

#: 1 eV/A^3 in GPa.
EV_PER_A3_IN_GPA = 160.21766208

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# Krylov directions whose residual is below this share of the force-constant scale are dropped
# (they lie in the subspace already found, up to the rounding of the Hessian-vector products).
_DEFLATION = {torch.float32: 1e-4, torch.float64: 1e-8}
# Eigenvalues of the projected force constants below this share of the largest count as zero.
_RCOND = 1e-8


def strain_matrix(voigt: torch.Tensor) -> torch.Tensor:
    """Symmetric strain ``(3, 3)`` from its six engineering components ``(6,)`` (Voigt order
    xx, yy, zz, yz, xz, xy; the shear components are ``2 eps_ij``).

    >>> strain_matrix(torch.tensor([0.0, 0, 0, 0.02, 0, 0], dtype=torch.float64))[1, 2].item()
    0.01
    """
    xx, yy, zz, yz, xz, xy = voigt.unbind(-1)
    return torch.stack(
        [
            torch.stack([xx, xy / 2, xz / 2]),
            torch.stack([xy / 2, yy, yz / 2]),
            torch.stack([xz / 2, yz / 2, zz]),
        ]
    )


@dataclass(frozen=True)
class StrainGraph:
    """The potential's radius graph of one structure at its reference geometry.

    Attributes
    ----------
    atomic_numbers : tensor ``(n,)`` long
    edge_index : tensor ``(2, E)`` long
        sevenn's order: ``edge_vec[k] = r[edge_index[1, k]] + shift . cell - r[edge_index[0, k]]``.
    edge_vec : tensor ``(E, 3)``, Angstrom
        At zero strain and zero displacement, in the potential's dtype.
    volume : float
        Cell volume, A^3.
    """

    atomic_numbers: torch.Tensor
    edge_index: torch.Tensor
    edge_vec: torch.Tensor
    volume: float

    @property
    def num_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])


class Potential:
    """A pretrained potential's total energy as a function of strain and displacements.

    Built by :func:`load_potential` (cached per name and dtype). The network is sevenn's own,
    from the checkpoint :func:`crystensor.models.backbones.sevennet.checkpoint_path` names,
    with its weights frozen; only the force/stress output module is left out (the derivatives
    are taken here).

    Attributes
    ----------
    name : str
    dtype : torch.dtype
    cutoff : float
        Radius of the graph, A.
    identity : dict
        Package, version, checkpoint file and its sha256
        (:func:`crystensor.models.backbones.sevennet.identity`).
    """

    # The backbone's lookup of unknown atomic numbers, on this class's ``known_elements``
    unknown_elements = PretrainedBackbone.unknown_elements

    def __init__(
        self,
        name: str,
        model: torch.nn.Module,
        *,
        cutoff: float,
        type_map: dict[int, int],
        dtype: torch.dtype,
        ident: dict[str, str],
    ) -> None:
        import sevenn._keys as KEY

        self.name = name
        self.model = model
        self.cutoff = float(cutoff)
        self.dtype = dtype
        self.identity = ident
        known = torch.zeros(_MAX_Z, dtype=torch.bool)
        known[list(type_map)] = True
        self.known_elements = known
        self._z_to_type = torch.full((_MAX_Z,), -1, dtype=torch.long)
        self._z_to_type[list(type_map)] = torch.tensor(list(type_map.values()))
        self._modules: list[tuple[str, torch.nn.Module]] = []
        for key, module in model._modules.items():
            kind = type(module).__name__
            if kind == "EdgePreprocess":
                raise RuntimeError(f"{name}: a model that builds its own edges is not supported")
            if kind.startswith("Force"):  # the force/stress output: derivatives are taken here
                continue
            self._modules.append((key, module))
        self._onehot_keys = {
            key: [k for k in (m.key_output, m.key_additional_output) if k is not None]
            for key, m in self._modules
            if type(m).__name__ == "OnehotEmbedding"
        }
        self._energy_key = KEY.PRED_TOTAL_ENERGY

    def check_species(self, atomic_numbers: np.ndarray) -> None:
        """Refuse elements the potential was not trained on.

        Raises
        ------
        InputError
            Naming the elements and the potential.
        """
        bad = self.unknown_elements(np.asarray(atomic_numbers, dtype=np.int64))
        if bad:
            raise InputError(
                f"potential {self.name} was not trained on {', '.join(bad)} (it knows "
                f"{int(self.known_elements.sum())} elements), so it has no elastic tensor for "
                "this structure"
            )

    def graph(
        self, atomic_numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray
    ) -> StrainGraph:
        """sevenn's radius graph of a periodic structure (Cartesian A, lattice vectors as rows).

        Raises
        ------
        InputError
            Unknown elements, a cell without volume, or no two atoms within the cutoff (the
            potential then gives no elastic response at all).
        """
        import ase
        from sevenn.train.dataload import unlabeled_atoms_to_graph

        z = np.asarray(atomic_numbers, dtype=np.int64)
        self.check_species(z)
        lattice = np.array(cell, dtype=np.float64)
        volume = abs(float(np.linalg.det(lattice)))
        if volume < 1e-6:
            raise InputError(f"the cell {lattice.tolist()} has no volume")
        atoms = ase.Atoms(numbers=z, positions=positions, cell=lattice, pbc=True)
        g = unlabeled_atoms_to_graph(atoms, self.cutoff)
        edge_index = torch.as_tensor(np.asarray(g["edge_index"], dtype=np.int64))
        if edge_index.shape[1] == 0:
            raise InputError(
                f"no two atoms are closer than the {self.name} cutoff ({self.cutoff:g} A): the "
                "potential sees isolated atoms and gives no elastic response"
            )
        return StrainGraph(
            atomic_numbers=torch.as_tensor(z),
            edge_index=edge_index,
            edge_vec=torch.as_tensor(np.asarray(g["edge_vec"]), dtype=self.dtype),
            volume=volume,
        )

    def energy(
        self, graph: StrainGraph, strain: torch.Tensor, displacements: torch.Tensor
    ) -> torch.Tensor:
        """Total energy (eV, a 0-d tensor) of ``graph`` strained by ``strain`` (``(6,)``,
        engineering Voigt components) after displacing the atoms by ``displacements``
        (``(n, 3)``, A, unstrained frame); differentiable in both."""
        import sevenn._keys as KEY

        src, dst = graph.edge_index
        eye = torch.eye(3, dtype=self.dtype)
        vec = (graph.edge_vec + displacements[dst] - displacements[src]) @ (
            eye + strain_matrix(strain)
        )
        z = graph.atomic_numbers
        data: dict[str, Any] = {
            KEY.ATOMIC_NUMBERS: z,
            KEY.NODE_FEATURE: self._z_to_type[z],
            KEY.EDGE_IDX: graph.edge_index,
            KEY.EDGE_VEC: vec,
            KEY.BATCH: torch.zeros_like(z),
            KEY.NUM_ATOMS: torch.tensor(graph.num_atoms),
        }
        for key, module in self._modules:
            data = module(data)
            for out in self._onehot_keys.get(key, ()):
                data[out] = data[out].to(self.dtype)  # sevenn's one-hot is always float32
        return data[self._energy_key]

    def evaluate(
        self, atomic_numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """Energy (eV), forces ``(n, 3)`` (eV/A) and stress ``(6,)`` (eV/A^3, Voigt order,
        positive in tension, as ASE's) of a structure, on a graph built for it."""
        graph = self.graph(atomic_numbers, positions, cell)
        strain = torch.zeros(6, dtype=self.dtype, requires_grad=True)
        disp = torch.zeros((graph.num_atoms, 3), dtype=self.dtype, requires_grad=True)
        energy = self.energy(graph, strain, disp)
        grad_strain, grad_disp = torch.autograd.grad(energy, [strain, disp])
        return (
            float(energy.detach()),
            -grad_disp.double().numpy(),
            grad_strain.double().numpy() / graph.volume,
        )

    def calculator(self) -> Any:
        """An ASE calculator evaluating this potential (for relaxations): sevenn's own in
        float32, :meth:`evaluate` in float64."""
        if self.dtype == torch.float32:
            from sevenn.calculator import SevenNetCalculator

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "no tensor-product accelerator" notices
                return SevenNetCalculator(self.model, file_type="model_instance", device="cpu")
        return AutogradCalculator(self)


class AutogradCalculator(Calculator):
    """An ASE calculator on :meth:`Potential.evaluate` (any dtype; a new graph per call)."""

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, potential: Potential) -> None:
        super().__init__()
        self.potential = potential

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        energy, forces, stress = self.potential.evaluate(
            self.atoms.numbers, self.atoms.positions, np.array(self.atoms.cell)
        )
        self.results = {"energy": energy, "free_energy": energy, "forces": forces, "stress": stress}


def _dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if dtype in _DTYPES:
        return _DTYPES[dtype]
    raise InputError(f"dtype must be one of {', '.join(_DTYPES)}, not {dtype!r}")


@functools.lru_cache(maxsize=4)
def _load(name: str, dtype: torch.dtype) -> Potential:
    import sevenn._keys as KEY
    import sevenn.util

    path = checkpoint_path(name)
    ident = identity(name)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # as the backbone: e3nn builds constants in it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            checkpoint = sevenn.util.load_checkpoint(str(path))
            model = checkpoint.build_model()
    finally:
        torch.set_default_dtype(previous)
    model.set_is_batch_data(False)
    model.eval()
    model.to(dtype)
    for param in model.parameters():
        param.requires_grad_(False)
    config = checkpoint.config
    type_map = {int(z): int(t) for z, t in config[KEY.TYPE_MAP].items()}
    log.info("loaded %s (%s) for elastic tensors in %s", name, ident["checkpoint"], dtype)
    return Potential(
        name, model, cutoff=config[KEY.CUTOFF], type_map=type_map, dtype=dtype, ident=ident
    )


def load_potential(name: str = "sevennet-0", dtype: str | torch.dtype = "float32") -> Potential:
    """The pretrained potential ``name`` (one of :data:`POTENTIALS`) as a :class:`Potential`.

    Loaded once per process and dtype (``"float32"``, sevenn's own, or ``"float64"``); nothing
    is downloaded.

    Raises
    ------
    InputError
        Unknown name or dtype, or ``sevenn`` / its checkpoint not installed.
    """
    if name not in POTENTIALS:
        raise InputError(f"unknown potential {name!r}; choose one of {', '.join(POTENTIALS)}")
    return _load(name, _dtype(dtype))


@dataclass(frozen=True)
class ElasticPrior:
    """A potential's elastic stiffness of one structure, with what it was computed from.

    Attributes
    ----------
    clamped : array ``(3, 3, 3, 3)``, GPa
        Clamped-ion stiffness ``C_ijkl`` in the Cartesian frame of :attr:`structure`.
    relaxed : array ``(3, 3, 3, 3)``, GPa, or None
        Relaxed-ion stiffness (None unless asked for).
    stress : array ``(3, 3)``, GPa
        The potential's stress at the geometry used, positive in tension.
    max_force : float
        Largest residual force on an atom, eV/A (the relaxed-ion formula assumes 0).
    energy : float
        Total energy, eV.
    structure : pymatgen Structure
        The geometry the tensors belong to (the relaxed one with ``relax=True``).
    potential : dict
        Identity of the potential (name, package, version, checkpoint, sha256) and its dtype.
    seconds : dict
        Wall time of each stage: ``relax``, ``graph``, ``clamped``, ``relaxed_ions``.
    hessian_vector_products : int
        Second-derivative passes through the potential (6 for the clamped tensor, plus one per
        Krylov direction for the relaxed-ion correction).
    internal_directions : int
        Dimension of the displacement subspace on which the internal strain was solved
        (at most ``3n - 3``).
    unstable_directions : int
        Negative eigenvalues of the force constants on that subspace: the ions are not at a
        minimum of the potential and the relaxed-ion tensor is not meaningful (try
        ``relax=True``).
    relax_converged : bool or None
        Whether the relaxation reached ``fmax`` (None without ``relax``).
    """

    clamped: np.ndarray
    relaxed: np.ndarray | None
    stress: np.ndarray
    max_force: float
    energy: float
    structure: Any
    potential: dict
    seconds: dict = field(default_factory=dict)
    hessian_vector_products: int = 0
    internal_directions: int = 0
    unstable_directions: int = 0
    relax_converged: bool | None = None

    @property
    def tensor(self) -> np.ndarray:
        """The relaxed-ion tensor when computed, else the clamped-ion one."""
        return self.clamped if self.relaxed is None else self.relaxed


def _arrays(structure: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(atomic_numbers, cart positions, lattice rows)`` of a pymatgen Structure or ase Atoms."""
    if hasattr(structure, "lattice") and hasattr(structure, "cart_coords"):
        if not structure.is_ordered:
            raise InputError("the structure is disordered; order it first")
        return (
            np.array(structure.atomic_numbers, dtype=np.int64),
            np.array(structure.cart_coords, dtype=np.float64),
            np.array(structure.lattice.matrix, dtype=np.float64),
        )
    if hasattr(structure, "get_positions") and hasattr(structure, "get_cell"):
        if not all(structure.get_pbc()):
            raise InputError("an elastic tensor needs a structure periodic in all three directions")
        return (
            np.array(structure.get_atomic_numbers(), dtype=np.int64),
            np.array(structure.get_positions(), dtype=np.float64),
            np.array(structure.get_cell(), dtype=np.float64),
        )
    raise InputError(
        f"expected a pymatgen Structure or an ase Atoms, got {type(structure).__name__}"
    )


def _relax(
    potential: Potential,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    relax_cell: bool,
    fmax: float,
    max_steps: int,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], bool]:
    """Positions (and the cell) at a minimum of the potential, by ASE's FIRE."""
    import ase
    from ase.optimize import FIRE

    try:
        from ase.filters import FrechetCellFilter as CellFilter
    except ImportError:  # ase < 3.23
        from ase.constraints import ExpCellFilter as CellFilter

    z, pos, cell = arrays
    potential.check_species(z)
    atoms = ase.Atoms(numbers=z, positions=pos, cell=cell, pbc=True)
    atoms.calc = potential.calculator()
    target = CellFilter(atoms) if relax_cell else atoms
    converged = bool(FIRE(target, logfile=None).run(fmax=fmax, steps=max_steps))
    if not converged:
        log.warning("relaxation stopped after %d steps above fmax %g eV/A", max_steps, fmax)
    return (z, atoms.get_positions(), np.array(atoms.get_cell())), converged


def _remove_translations(v: np.ndarray) -> np.ndarray:
    """``v`` ``(3n, k)`` with its components along the three rigid translations removed."""
    k = v.shape[1]
    w = v.reshape(-1, 3, k)  # [atom, xyz, k]
    return (w - w.mean(axis=0, keepdims=True)).reshape(-1, k)


def _orthonormal(v: np.ndarray, threshold: float) -> np.ndarray:
    """Orthonormal basis of the columns of ``v`` with singular values above ``threshold``."""
    if v.shape[1] == 0:
        return v
    u, s, _ = np.linalg.svd(v, full_matrices=False)
    return u[:, s > threshold]


def _galerkin(q: np.ndarray, kq: np.ndarray, lam: np.ndarray) -> tuple[np.ndarray, int]:
    """``Lambda^T K^+ Lambda`` with ``K`` restricted to the span of ``q`` (orthonormal columns,
    ``kq = K q``), and the number of negative eigenvalues of ``q^T K q``."""
    projected = q.T @ kq
    values, vectors = np.linalg.eigh((projected + projected.T) / 2)
    scale = np.abs(values).max()
    keep = np.abs(values) > _RCOND * scale
    reduced = vectors[:, keep].T @ (q.T @ lam)  # [mode, 6]
    correction = reduced.T @ (reduced / values[keep, None])
    return (correction + correction.T) / 2, int((values < -_RCOND * scale).sum())


def _internal_strain(
    hvp: Callable[[np.ndarray], np.ndarray],
    coupling: np.ndarray,
    *,
    deflation: float,
    tolerance: float,
    max_directions: int,
) -> tuple[np.ndarray, int, int]:
    """``Lambda^T K^+ Lambda`` by block Krylov iteration (Rayleigh-Ritz).

    The subspace starts as the span of ``Lambda``'s columns and grows by ``K`` times the newest
    block, orthogonalised, until no new direction is left, the correction changes by less than
    ``tolerance`` in a step, or it holds ``max_directions``. For a positive definite ``K`` the
    correction grows monotonically to its limit, as conjugate gradients do (on real cells it
    settles to 0.01 GPa within 12-22 directions even where symmetry leaves all ``3n - 3``).

    Parameters
    ----------
    hvp : callable
        ``(3n, k) -> (3n, k)``: the force constants times ``k`` displacement directions.
    coupling : array ``(3n, 6)``
        ``Lambda``, in units where the correction is compared with ``tolerance``.
    deflation : float
        Relative size below which a new Krylov direction is taken as already spanned.
    tolerance : float
        Largest change of any component of the correction that stops the iteration.
    max_directions : int
        ``3n - 3``: the subspace cannot grow beyond it.

    Returns
    -------
    correction : array ``(6, 6)``
    directions, negative : int
        Dimension of the subspace (= Hessian-vector products used) and negative eigenvalues of
        the force constants on it.
    """
    lam = _remove_translations(coupling)
    correction, negative = np.zeros((6, 6)), 0
    if not np.abs(lam).max() > 0 or max_directions <= 0:
        return correction, 0, 0
    q = np.zeros((lam.shape[0], 0))
    kq = np.zeros_like(q)
    block = _orthonormal(lam, deflation * np.linalg.norm(lam, 2))
    while block.shape[1] > 0:
        block = block[:, : max_directions - q.shape[1]]
        k_block = _remove_translations(hvp(block))
        q, kq = np.hstack([q, block]), np.hstack([kq, k_block])
        previous = correction
        correction, negative = _galerkin(q, kq, lam)
        if q.shape[1] >= max_directions or np.abs(correction - previous).max() < tolerance:
            break
        residual = k_block - q @ (q.T @ k_block)
        residual -= q @ (q.T @ residual)  # twice: Gram-Schmidt loses orthogonality once
        block = _orthonormal(residual, deflation * np.linalg.norm(kq, 2))
    return correction, q.shape[1], negative


def compute_elastic_prior(
    structure: Any,
    potential: str = "sevennet-0",
    *,
    relaxed_ions: bool = True,
    relax: bool = False,
    relax_cell: bool = False,
    fmax: float = 0.01,
    max_steps: int = 500,
    dtype: str = "float32",
    internal_tolerance: float = 0.01,
    threads: int | None = 1,
) -> ElasticPrior:
    """The potential's clamped- and (optionally) relaxed-ion stiffness of ``structure``.

    Parameters
    ----------
    structure : pymatgen Structure or ase Atoms
        Periodic, ordered, with elements the potential knows.
    potential : str
        Name of the pretrained potential (``"sevennet-0"``).
    relaxed_ions : bool
        Also compute the relaxed-ion tensor (its cost grows with the number of internal
        displacement directions that couple to strain; see the module docstring).
    relax : bool
        First move the ions to the potential's minimum (ASE FIRE on sevenn's calculator, to
        ``fmax`` eV/A within ``max_steps``); off by default since inputs are usually
        DFT-relaxed.
    relax_cell : bool
        With ``relax``, relax the cell too (ASE's ``FrechetCellFilter``): the tensor is then
        that of the potential's own equilibrium volume.
    fmax, max_steps : float, int
        Convergence of the relaxation.
    dtype : ``"float32"`` or ``"float64"``
    internal_tolerance : float
        GPa: the relaxed-ion correction is refined until a Krylov step changes none of its
        components by more than this (0: until the subspace is exhausted).
    threads : int or None
        torch threads for the computation, restored afterwards (None: torch's setting). One
        is fastest: the graphs are small, and the double backward passes are thousands of
        small operations that a second thread only synchronises (on a busy two-core machine
        two threads ran 3-60 times slower).

    Returns
    -------
    ElasticPrior

    Raises
    ------
    InputError
        Unknown potential or dtype, elements the potential does not know, a disordered or
        non-periodic structure, a cell without volume, or no neighbours within the cutoff.
    """
    previous = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise InputError(f"threads must be at least 1 or None, got {threads}")
        torch.set_num_threads(threads)
    try:
        return _compute(
            structure,
            potential,
            relaxed_ions=relaxed_ions,
            relax=relax,
            relax_cell=relax_cell,
            fmax=fmax,
            max_steps=max_steps,
            dtype=dtype,
            internal_tolerance=internal_tolerance,
        )
    finally:
        torch.set_num_threads(previous)


def _compute(
    structure: Any,
    potential: str,
    *,
    relaxed_ions: bool,
    relax: bool,
    relax_cell: bool,
    fmax: float,
    max_steps: int,
    dtype: str,
    internal_tolerance: float,
) -> ElasticPrior:
    if relax_cell and not relax:
        raise InputError("relax_cell needs relax=True")
    pot = load_potential(potential, dtype)
    seconds: dict[str, float] = {}
    arrays = _arrays(structure)
    converged = None
    if relax:
        start = time.perf_counter()
        arrays, converged = _relax(
            pot, arrays, relax_cell=relax_cell, fmax=fmax, max_steps=max_steps
        )
        seconds["relax"] = time.perf_counter() - start

    start = time.perf_counter()
    graph = pot.graph(*arrays)
    seconds["graph"] = time.perf_counter() - start

    start = time.perf_counter()
    n = graph.num_atoms
    strain = torch.zeros(6, dtype=pot.dtype, requires_grad=True)
    disp = torch.zeros((n, 3), dtype=pot.dtype, requires_grad=True)
    energy = pot.energy(graph, strain, disp)
    grad_strain, grad_disp = torch.autograd.grad(energy, [strain, disp], create_graph=True)
    rows = [
        torch.autograd.grad(grad_strain[i], [strain, disp], retain_graph=True) for i in range(6)
    ]
    hessian = torch.stack([r[0] for r in rows]).double().numpy()  # [6, 6] eV
    coupling = torch.stack([r[1].reshape(-1) for r in rows], dim=1).double().numpy()  # [3n, 6]
    to_gpa = EV_PER_A3_IN_GPA / graph.volume
    clamped_voigt = (hessian + hessian.T) / 2 * to_gpa
    stress_voigt = grad_strain.detach().double().numpy() * to_gpa
    forces = -grad_disp.detach().double().numpy()
    seconds["clamped"] = time.perf_counter() - start

    relaxed = None
    directions = negative = 0
    if relaxed_ions:
        start = time.perf_counter()

        def hvp(block: np.ndarray) -> np.ndarray:
            out = []
            for column in block.T:
                v = torch.as_tensor(column.reshape(n, 3), dtype=pot.dtype)
                (kv,) = torch.autograd.grad(grad_disp, disp, grad_outputs=v, retain_graph=True)
                out.append(kv.double().numpy().reshape(-1))
            return np.stack(out, axis=1)

        correction, directions, negative = _internal_strain(
            hvp,
            coupling * np.sqrt(to_gpa),  # the correction in GPa
            deflation=_DEFLATION[pot.dtype],
            tolerance=internal_tolerance,
            max_directions=3 * n - 3,
        )
        relaxed = from_voigt(clamped_voigt - correction)
        seconds["relaxed_ions"] = time.perf_counter() - start
        if negative:
            log.warning(
                "the force constants have %d negative eigenvalue(s) in the internal-strain "
                "subspace: the ions are not at a minimum of %s and the relaxed-ion tensor is "
                "not meaningful (use relax=True)",
                negative,
                pot.name,
            )
    max_force = float(np.linalg.norm(forces, axis=1).max())
    if relaxed_ions and max_force > 0.05:
        log.info(
            "residual force up to %.3f eV/A under %s: the relaxed-ion correction assumes "
            "equilibrium (relax=True moves the ions first)",
            max_force,
            pot.name,
        )

    from pymatgen.core import Lattice, Structure

    z, pos, cell = arrays
    return ElasticPrior(
        clamped=from_voigt(clamped_voigt),
        relaxed=relaxed,
        stress=from_voigt(stress_voigt),
        max_force=max_force,
        energy=float(energy.detach()),
        structure=Structure(Lattice(cell), z.tolist(), pos, coords_are_cartesian=True),
        potential={**pot.identity, "dtype": str(pot.dtype).removeprefix("torch.")},
        seconds=seconds,
        hessian_vector_products=6 + directions,
        internal_directions=directions,
        unstable_directions=negative,
        relax_converged=converged,
    )


def elastic_tensor(
    structure: Any,
    potential: str = "sevennet-0",
    *,
    relaxed_ions: bool = False,
    relax: bool = False,
) -> np.ndarray:
    """The potential's elastic stiffness ``C_ijkl`` of ``structure``: ``(3, 3, 3, 3)``, GPa.

    Clamped-ion by default, relaxed-ion with ``relaxed_ions=True``; ``relax=True`` first moves
    the ions to the potential's minimum. See :func:`compute_elastic_prior` (which also returns the
    residual stress, forces and timings) and the module docstring for the conventions.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> si = Structure(Lattice.cubic(5.43), ["Si"] * 8, [[0, 0, 0], [0, .5, .5], [.5, 0, .5],
    ...     [.5, .5, 0], [.25, .25, .25], [.25, .75, .75], [.75, .25, .75], [.75, .75, .25]])
    >>> c = elastic_tensor(si)
    >>> c.shape, bool(np.allclose(c, c.transpose(2, 3, 0, 1)))
    ((3, 3, 3, 3), True)
    """
    result = compute_elastic_prior(structure, potential, relaxed_ions=relaxed_ions, relax=relax)
    return result.tensor
