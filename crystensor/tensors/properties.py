"""Derived physical properties of elastic, dielectric and piezoelectric tensors.

Each function takes one tensor, either as a full Cartesian array or in Voigt form (the
convention of :mod:`crystensor.tensors.voigt`: order xx, yy, zz, yz, xz, xy, no factors of 2),
and returns a frozen dataclass with an ``as_dict()`` for JSON:

- :func:`elastic_properties`: Voigt, Reuss and Hill bulk and shear moduli, Young's modulus
  (Hill, along axes, and its extremes over all directions), Poisson's and Pugh's ratios,
  universal anisotropy, compliance, eigenvalues, Born stability with the per-crystal-system
  conditions, and with a structure the sound velocities and Debye temperature;
- :func:`dielectric_properties`: principal values and axes, polycrystalline average,
  refractive index (of the electronic tensor);
- :func:`piezoelectric_properties`: the maximum longitudinal piezoelectric coefficient and
  its direction (C/m^2), and with an elastic tensor the strain constants d = e S (pC/N)
  (:func:`piezoelectric_strain_constants`) and their maximum longitudinal coefficient;
- :func:`born_stability_criteria`: the Mouhat & Coudert conditions of one crystal system.

Only numpy is used: the elastic quantities that pymatgen's ``ElasticTensor`` also
computes (moduli, compliance, sound velocities, Debye temperature) follow its formulas and
constants exactly, and the tests check them against pymatgen, without its per-call overhead
(unit conversions, object construction) on the ``crystensor predict`` path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from functools import lru_cache
from itertools import combinations_with_replacement, permutations
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from crystensor.tensors.physical import _MANDEL
from crystensor.tensors.voigt import from_voigt, to_voigt

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "CRYSTAL_SYSTEMS",
    "DielectricProperties",
    "ElasticProperties",
    "PiezoelectricProperties",
    "born_stability_criteria",
    "dielectric_properties",
    "directional_youngs_modulus",
    "elastic_properties",
    "piezoelectric_properties",
    "piezoelectric_strain_constants",
]

logger = logging.getLogger(__name__)

# Relative asymmetry (max |M - M^T| / max |M|) above which a warning is logged. DFT tensors
# are symmetric to ~1e-3 (4 % of the matminer dielectric tensors exceed 1e-3, 0.1 % exceed 1e-2).
_ASYMMETRY_WARN = 1e-2
# Points of the Fibonacci grid used to bracket the maximum of a form on the sphere (longitudinal
# piezoelectric coefficient, directional compliance) before the local refinement; mean
# spacing ~3.2 degrees.
_N_SPHERE = 4000
# Upper bound of the grid's covering radius (largest angle from any direction to its nearest
# grid point, measured ~2.69 / sqrt(N)), radians.
_COVERING = 3.0 / np.sqrt(_N_SPHERE)
# At most this many grid candidates are refined.
_MAX_STARTS = 8
# Newton iterations of the refinement (it converges in ~5 from a grid point).
_MAX_NEWTON = 30
# Engineering factor of each Voigt index: the Voigt compliance (and strain) carry a 2 per shear
# index, S_IJ = f_I f_J S_ijkl.
_ENGINEERING = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
# The CODATA constants of scipy.constants, which pymatgen uses (hbar = h / 2 pi with the exact
# SI h; the atomic mass constant of CODATA 2022), written out because importing scipy.constants
# adds 0.06 s to `crystensor predict`'s start-up; a test checks them against scipy.
_HBAR = 6.62607015e-34 / (2 * np.pi)  # J s
_BOLTZMANN = 1.380649e-23  # J / K
_ATOMIC_MASS = 1.66053906892e-27  # kg
#: Crystal systems understood by :func:`born_stability_criteria` ("rhombohedral" is read as
#: "trigonal").
CRYSTAL_SYSTEMS: tuple[str, ...] = (
    "cubic",
    "hexagonal",
    "tetragonal",
    "trigonal",
    "orthorhombic",
    "monoclinic",
    "triclinic",
)
# The Laue class whose elastic tensors have the general form of each system in its standard
# setting (principal axis along z; orthorhombic and cubic axes along x, y, z): 4/m, -3 and 6/m
# rather than 4/mmm, -3m, 6/mmm, so that any rotation about z keeps the form.
_LAUE_CLASS = {
    "cubic": "m-3",
    "hexagonal": "6/m",
    "tetragonal": "4/m",
    "trigonal": "-3",
    "orthorhombic": "mmm",
}
# A stiffness has a system's form when projecting it onto _LAUE_CLASS changes no Voigt entry by
# more than this fraction of the largest one (fetch's default consistency tolerance).
_FORM_TOLERANCE = 0.05
# Below this relative change the given frame is taken as the standard setting at once.
_EXACT_FORM = 1e-9
# |C16| (tetragonal) or |C15| (trigonal) at most this fraction of max |C|: class I conditions.
_CLASS_I_TOLERANCE = 1e-9


def _json_value(value: Any) -> Any:
    """Convert a field value to plain JSON types (non-finite floats become None)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and np.isfinite(value).all():
            return value.tolist()
        return [_json_value(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


class _AsDict:
    """Mixin: ``as_dict()`` of the dataclass fields plus their units."""

    UNITS: ClassVar[dict[str, str]] = {}

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary of the fields, with a ``"units"`` entry.

        Arrays become nested lists, dictionaries stay dictionaries, and non-finite floats
        (nan, inf) become ``None`` so that ``json.dumps`` writes strict JSON. A field whose
        value is ``None`` does not apply to this input (e.g. sound velocities without a
        structure) and is left out. ``"units"`` maps each field name present to its unit
        (``"1"`` for dimensionless quantities).
        """
        present = (f.name for f in fields(self))  # type: ignore[arg-type]
        names = [name for name in present if getattr(self, name) is not None]
        out: dict[str, Any] = {name: _json_value(getattr(self, name)) for name in names}
        out["units"] = {name: self.UNITS[name] for name in names}
        return out


def _readonly(array: np.ndarray) -> np.ndarray:
    out = np.array(array, dtype=np.float64)
    out.flags.writeable = False
    return out


def _as_float_array(value: Any, what: str) -> np.ndarray:
    """``value`` as a float64 array, with a ValueError naming ``what`` when it is not numeric."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise ValueError(f"{what} must be a numeric array: {exc}") from None
    if np.iscomplexobj(array):
        raise ValueError(f"{what} must be real, got a complex array")
    try:
        return array.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:  # strings, objects
        raise ValueError(f"{what} must be a numeric array: {exc}") from None


def _check_finite(array: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{what} contains {int(bad.sum())} non-finite value(s) (first: {array[index]} at "
            f"index {index}); expected finite numbers"
        )


def _relative_asymmetry(matrix: np.ndarray) -> float:
    scale = np.abs(matrix).max()
    return float(np.abs(matrix - matrix.T).max() / scale) if scale > 0 else 0.0


def _warn_if_asymmetric(matrix: np.ndarray, what: str, consequence: str) -> None:
    asym = _relative_asymmetry(matrix)
    if asym > _ASYMMETRY_WARN:
        logger.warning("%s is not symmetric (relative asymmetry %.2g); %s", what, asym, consequence)


# --------------------------------------------------------------------------------------------
# Extremes of a form on the unit sphere
# --------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _sphere_grid() -> tuple[np.ndarray, np.ndarray]:
    """Fibonacci grid on the unit sphere ``(N, 3)`` and its cubic monomials ``(N, 27)``."""
    i = np.arange(_N_SPHERE) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / _N_SPHERE)
    azimuth = np.pi * (1.0 + np.sqrt(5.0)) * i
    u = np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1
    )
    cubes = np.einsum("ni,nj,nk->nijk", u, u, u).reshape(_N_SPHERE, 27)
    u.flags.writeable = False
    cubes.flags.writeable = False
    return u, cubes


@lru_cache(maxsize=2)
def _search_grid(rank: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...], np.ndarray]:
    """The grid points searched for a form of degree ``rank`` and their distinct monomials.

    Returns ``(points (N, 3), monomials (N, m), index, counts (m,))``: for a fully symmetric
    tensor t, ``t(u, ..., u) = monomials @ (t[index] * counts)`` (m = 10 for rank 3, 15 for
    rank 4). For an even rank, u and -u give the same value, so only the points with
    z > -``_COVERING`` are kept: every direction or its opposite has z >= 0, and its nearest
    grid point is then among them.
    """
    u, _ = _sphere_grid()
    if rank % 2 == 0:
        u = u[u[:, 2] > -_COVERING]
    combos = np.array(list(combinations_with_replacement(range(3), rank)))  # (m, rank)
    monomials = np.prod(u[:, combos], axis=2)  # (N, m)
    counts = np.array([len(set(permutations(c))) for c in combos.tolist()], dtype=np.float64)
    monomials.flags.writeable = False
    return u, monomials, tuple(combos.T), counts


@lru_cache(maxsize=4)
def _index_permutations(rank: int) -> np.ndarray:
    """``(rank!, 3**rank)``: row r gives, for each flat index, the flat index of the same
    component with the indices permuted by the r-th permutation."""
    flat = np.arange(3**rank).reshape((3,) * rank)
    return np.stack([np.transpose(flat, p).ravel() for p in permutations(range(rank))])


def _symmetrize(t: np.ndarray) -> np.ndarray:
    """Average of a tensor over all permutations of its indices (its fully symmetric part)."""
    return t.ravel()[_index_permutations(t.ndim)].mean(axis=0).reshape(t.shape)


def _contract_batch(t: np.ndarray, u: np.ndarray, n: int) -> np.ndarray:
    """``t_k(., ..., u_k, ..., u_k)`` for stacked tensors ``t`` (k, 3, ..., 3) and vectors ``u``
    (k, 3): the last ``n`` indices contracted; shape ``(k, 3, ..., 3)`` of rank ``t.ndim-1-n``."""
    for _ in range(n):
        t = (t.reshape(len(u), -1, 3) @ u[:, :, None]).reshape(t.shape[:-1])
    return t


def _tangent_bases(u: np.ndarray) -> np.ndarray:
    """Orthonormal bases ``(k, 3, 2)`` of the tangent planes at the unit vectors ``u`` (k, 3).

    The first two columns of the rotation taking z to w = +-u (the sign that makes w_z >= 0;
    u and -u share the tangent plane), which is regular for w_z >= 0.
    """
    w = np.where(u[:, 2:] < 0.0, -u, u)
    x, y, z = w[:, 0], w[:, 1], w[:, 2]
    d = 1.0 / (1.0 + z)
    basis = np.empty((len(u), 3, 2))
    basis[:, 0, 0] = 1.0 - x * x * d
    basis[:, 1, 0] = basis[:, 0, 1] = -x * y * d
    basis[:, 2, 0] = -x
    basis[:, 1, 1] = 1.0 - y * y * d
    basis[:, 2, 1] = -y
    return basis


def _refine(t: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of f_k(u) = t_k(u, ..., u) on the sphere from ``starts`` (``(k, 3)``).

    ``t`` stacks one fully symmetric tensor of rank p per start, ``(k, 3, ..., 3)``, each
    scaled to max |t_k| = 1. Riemannian Newton iteration, all starts at once: in the tangent
    plane at u (basis B) the gradient is p B^T t(u^{p-1}) and the Hessian
    B^T [p(p-1) t(u^{p-2})] B - p f I. Where that Hessian is not negative definite it is
    shifted until it is (so that every step ascends, also along the flat directions of a ring
    of maxima, as for a transversely isotropic tensor); the step is limited to 0.2 rad and u
    is renormalised. Near a non-degenerate maximum this is Newton's method and converges
    quadratically; it stops when every step is below 1e-8 rad or predicts a rise below 1e-16
    (on a ring of maxima the steps along the ring are rounding noise).
    """
    p = t.ndim - 1
    floor = 1e-9 * p**2
    u = starts.copy()
    for _ in range(_MAX_NEWTON):
        h = _contract_batch(t, u, p - 2)  # t(u^{p-2}), (k, 3, 3)
        g = (h @ u[:, :, None])[:, :, 0]  # t(u^{p-1}), (k, 3)
        f = np.einsum("ki,ki->k", g, u)
        basis = _tangent_bases(u)
        grad = p * np.einsum("kia,ki->ka", basis, g)
        hess = p * (p - 1) * (basis.transpose(0, 2, 1) @ h @ basis)  # (k, 2, 2)
        a = hess[:, 0, 0] - p * f
        b = hess[:, 0, 1]
        c = hess[:, 1, 1] - p * f
        largest = 0.5 * (a + c) + np.sqrt(0.25 * (a - c) ** 2 + b * b)
        shift = np.maximum(largest + floor, 0.0)
        a, c = a - shift, c - shift
        det = a * c - b * b
        step = np.stack([c * grad[:, 0] - b * grad[:, 1], a * grad[:, 1] - b * grad[:, 0]], 1)
        step /= -det[:, None]
        length = np.sqrt(np.einsum("ka,ka->k", step, step))
        step *= np.minimum(1.0, 0.2 / np.maximum(length, 1e-300))[:, None]
        gain = 0.5 * np.einsum("ka,ka->k", grad, step)  # the rise the quadratic model predicts
        u = u + (basis @ step[:, :, None])[:, :, 0]
        u /= np.sqrt(np.einsum("ki,ki->k", u, u))[:, None]
        if ((length < 1e-8) | (gain < 1e-16)).all():
            break
    values = np.einsum("ki,ki->k", _contract_batch(t, u, p - 1), u)
    return values, u


def _grid_starts(t: np.ndarray) -> np.ndarray:
    """Well-separated grid points ``(k, 3)`` that can lie in the basin of the maximum of the
    form of ``t`` (fully symmetric, rank p, max |t| = 1), best first (see
    :func:`_sphere_maxima`)."""
    p = t.ndim
    grid, monomials, index, counts = _search_grid(p)
    values = monomials @ (t[index] * counts)
    margin = 0.5 * p**2 * float(np.linalg.norm(t)) * _COVERING**2
    near = np.flatnonzero(values >= values.max() - margin)
    candidates = grid[near[np.argsort(-values[near], kind="stable")]]  # best first
    min_separation = np.cos(3.0 * _COVERING)
    starts: list[np.ndarray] = []
    while len(candidates) and len(starts) < _MAX_STARTS:
        starts.append(candidates[0])
        overlap = candidates @ candidates[0]
        candidates = candidates[(np.abs(overlap) if p % 2 == 0 else overlap) < min_separation]
    return np.array(starts)


def _sphere_maxima(tensors: list[np.ndarray]) -> list[tuple[float, np.ndarray]]:
    r"""Maximum of the form :math:`f(u) = t_{i j \dots} u_i u_j \cdots` over unit vectors, and
    its direction, for each tensor (refined together).

    Each ``t`` is a fully symmetric Cartesian tensor of rank 3 or 4 (all of one rank). The
    form is evaluated on the deterministic Fibonacci grid of :func:`_sphere_grid` (half of it
    for an even form, :func:`_search_grid`); every
    well-separated grid candidate whose value is within the grid's discretisation error of
    the best (at most ``_MAX_STARTS``) is refined by Newton's method on the sphere
    (:func:`_refine`), and the best local maximum is kept.

    Along a great circle u(s) with tangent w, f'' = p(p-1) t(u^{p-2}, w, w) - p t(u^p), so
    |f''| <= p^2 |t|_F; the grid point nearest the true maximum (within ``_COVERING``) is at
    most p^2 / 2 |t|_F ``_COVERING``^2 below it, so every basin that can hold the maximum has a
    grid candidate within that margin of the best grid value. For even p, u and -u are the
    same candidate.

    An all-zero tensor gives ``(0.0, nan vector)``.
    """
    scales = [float(np.abs(t).max()) for t in tensors]
    live = [i for i, scale in enumerate(scales) if scale > 0.0]
    out: list[tuple[float, np.ndarray]] = [(0.0, np.full(3, np.nan)) for _ in tensors]
    if not live:
        return out
    starts = [_grid_starts(tensors[i] / scales[i]) for i in live]
    owner = np.repeat(np.arange(len(live)), [len(s) for s in starts])
    scaled = np.stack([tensors[i] / scales[i] for i in live])[owner]  # (k, 3, ..., 3)
    starts_array = np.concatenate(starts)
    refined, directions = _refine(scaled, starts_array)
    # Newton ascends from grid points next to a maximum; never return less than the start.
    p = scaled.ndim - 1
    at_start = np.einsum("ki,ki->k", _contract_batch(scaled, starts_array, p - 1), starts_array)
    worse = refined < at_start
    refined[worse], directions[worse] = at_start[worse], starts_array[worse]
    for n, i in enumerate(live):
        mine = np.flatnonzero(owner == n)
        best = mine[int(refined[mine].argmax())]
        out[i] = (float(refined[best]) * scales[i], _clean_direction(directions[best]))
    return out


def _clean_direction(u: np.ndarray) -> np.ndarray:
    """A unit vector with its rounding-level components (below 1e-14) set to exactly 0."""
    u = np.where(np.abs(u) < 1e-14, 0.0, u)
    return u / np.linalg.norm(u)


def _canonical_axis(u: np.ndarray) -> np.ndarray:
    """``u`` or ``-u``, whichever has its largest-magnitude component positive."""
    return u * np.sign(u[np.abs(u).argmax()])


# --------------------------------------------------------------------------------------------
# Elastic
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ElasticProperties(_AsDict):
    """Properties of an elastic stiffness tensor (see :func:`elastic_properties`).

    Attributes
    ----------
    k_voigt, k_reuss, k_vrh : float
        Voigt, Reuss and Hill bulk moduli, GPa.
    g_voigt, g_reuss, g_vrh : float
        Voigt, Reuss and Hill shear moduli, GPa.
    youngs_modulus : float
        Isotropic Young's modulus from the Hill averages, GPa.
    poisson_ratio : float
        Isotropic Poisson's ratio from the Hill averages, dimensionless.
    universal_anisotropy : float
        Universal anisotropy index A_U, dimensionless (0 for an isotropic tensor).
    eigenvalues : array ``(6,)``
        Ascending eigenvalues of the 6x6 Voigt matrix, GPa (frame-dependent; see notes of
        :func:`elastic_properties`).
    kelvin_moduli : array ``(6,)``
        Ascending eigenvalues of the Mandel (Kelvin) matrix, GPa; rotation-invariant.
    born_stable : bool
        True when the Voigt matrix is positive definite (and not singular).
    compliance : array ``(6, 6)``
        Voigt compliance matrix :math:`S = C^{-1}` (engineering shear strains, pymatgen's
        ``compliance_tensor.voigt``), 1/TPa; ``nan`` when C is singular.
    pugh_ratio : float
        :math:`G_{VRH} / K_{VRH}`, dimensionless.
    youngs_modulus_min, youngs_modulus_max : float
        Smallest and largest directional Young's modulus over all directions, GPa; ``nan``
        when the tensor is not positive definite.
    youngs_min_direction, youngs_max_direction : array ``(3,)``
        Unit Cartesian directions of the extremes (their largest-magnitude component
        positive; ``-u`` is equivalent), ``nan`` with the extremes.
    born_criteria_system : str
        Which conditions were used: the crystal system (and class I/II), "general" (leading
        principal minors), and the frame if it is not the given one.
    born_criteria : dict[str, bool]
        The Mouhat & Coudert conditions used, by readable name, and whether each holds.
    youngs_modulus_xyz : array ``(3,)`` or None
        Directional Young's modulus along the Cartesian x, y, z axes, GPa (without a
        structure).
    youngs_modulus_abc : array ``(3,)`` or None
        Directional Young's modulus along the lattice vectors a, b, c, GPa (with a
        structure).
    density : float or None
        Mass density of the structure, g/cm^3.
    longitudinal_velocity, transverse_velocity : float or None
        Sound velocities from the Hill moduli and the density, m/s; ``nan`` when the tensor
        is not positive definite.
    debye_temperature : float or None
        Debye temperature from the mean sound velocity, K; ``nan`` like the velocities.

    The fields that are None (structure-dependent without a structure, ``youngs_modulus_xyz``
    with one) are left out of :meth:`as_dict`.
    """

    k_voigt: float
    k_reuss: float
    k_vrh: float
    g_voigt: float
    g_reuss: float
    g_vrh: float
    youngs_modulus: float
    poisson_ratio: float
    universal_anisotropy: float
    eigenvalues: np.ndarray
    kelvin_moduli: np.ndarray
    born_stable: bool
    compliance: np.ndarray
    pugh_ratio: float
    youngs_modulus_min: float
    youngs_min_direction: np.ndarray
    youngs_modulus_max: float
    youngs_max_direction: np.ndarray
    born_criteria_system: str
    born_criteria: dict[str, bool]
    youngs_modulus_xyz: np.ndarray | None = None
    youngs_modulus_abc: np.ndarray | None = None
    density: float | None = None
    longitudinal_velocity: float | None = None
    transverse_velocity: float | None = None
    debye_temperature: float | None = None

    UNITS: ClassVar[dict[str, str]] = {
        "k_voigt": "GPa",
        "k_reuss": "GPa",
        "k_vrh": "GPa",
        "g_voigt": "GPa",
        "g_reuss": "GPa",
        "g_vrh": "GPa",
        "youngs_modulus": "GPa",
        "poisson_ratio": "1",
        "universal_anisotropy": "1",
        "eigenvalues": "GPa",
        "kelvin_moduli": "GPa",
        "born_stable": "1",
        "compliance": "1/TPa",
        "pugh_ratio": "1",
        "youngs_modulus_min": "GPa",
        "youngs_min_direction": "1",
        "youngs_modulus_max": "GPa",
        "youngs_max_direction": "1",
        "born_criteria_system": "1",
        "born_criteria": "1",
        "youngs_modulus_xyz": "GPa",
        "youngs_modulus_abc": "GPa",
        "density": "g/cm^3",
        "longitudinal_velocity": "m/s",
        "transverse_velocity": "m/s",
        "debye_temperature": "K",
    }


def _elastic_voigt(stiffness: Any) -> np.ndarray:
    c = _as_float_array(stiffness, "elastic stiffness")
    if c.shape == (3, 3, 3, 3):
        c = to_voigt(c)
    elif c.shape != (6, 6):
        raise ValueError(
            f"elastic stiffness must be a (3, 3, 3, 3) Cartesian tensor or a (6, 6) Voigt "
            f"matrix in GPa, got shape {c.shape}"
        )
    _check_finite(c, "elastic stiffness")
    return c


def _compliance(c: np.ndarray) -> np.ndarray | None:
    """``inv(c)``, or None when ``c`` is singular to machine precision."""
    if np.linalg.cond(c) >= 1.0 / np.finfo(np.float64).eps:
        return None
    try:
        return np.linalg.inv(c)
    except np.linalg.LinAlgError:
        return None


def _compliance_cartesian(s_voigt: np.ndarray) -> np.ndarray:
    """Full compliance :math:`S_{ijkl} = S_{IJ} / (f_I f_J)` (f = 1, 1, 1, 2, 2, 2), as
    pymatgen's ``ComplianceTensor.from_voigt``."""
    return from_voigt(s_voigt / np.outer(_ENGINEERING, _ENGINEERING))


def _unit_rows(directions: Any) -> np.ndarray:
    d = _as_float_array(directions, "directions")
    if d.shape[-1:] != (3,):
        raise ValueError(f"directions must have shape (..., 3), got shape {d.shape}")
    _check_finite(d, "directions")
    norms = np.linalg.norm(d, axis=-1, keepdims=True)
    if (norms == 0.0).any():
        raise ValueError("directions must be non-zero vectors")
    return d / norms


def _youngs_along(s_full: np.ndarray, n: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.einsum("ijkl,...i,...j,...k,...l->...", s_full, n, n, n, n)
        return np.where(q != 0.0, 1.0 / q, np.nan)


def directional_youngs_modulus(stiffness: Any, directions: Any) -> np.ndarray:
    r"""Young's modulus along given directions.

    .. math::

        E(n) = \frac{1}{n_i n_j n_k n_l S_{ijkl}}, \qquad |n| = 1,

    with the full Cartesian compliance :math:`S_{ijkl}` (the inverse of the stiffness on
    symmetric tensors; in Voigt form :math:`S_{IJ} = f_I f_J S_{ijkl}`, f = 1, 1, 1, 2, 2, 2).
    It is the ratio of a uniaxial stress along n to the strain along n it causes.

    Parameters
    ----------
    stiffness : array_like ``(3, 3, 3, 3)`` or ``(6, 6)``
        Elastic stiffness :math:`C_{ijkl}` (Cartesian) or its Voigt matrix, GPa.
    directions : array_like ``(..., 3)``
        Cartesian directions, any non-zero length (they are normalised).

    Returns
    -------
    array ``(...)``
        E along each direction, GPa. Negative where the quartic form is negative (the tensor
        is then not positive definite), ``nan`` where it is zero or the stiffness is singular.

    Examples
    --------
    >>> c = np.zeros((6, 6))
    >>> c[:3, :3] = 100.0
    >>> c[[0, 1, 2], [0, 1, 2]] = 250.0
    >>> c[[3, 4, 5], [3, 4, 5]] = 80.0
    >>> directional_youngs_modulus(c, [[1, 0, 0], [1, 1, 1]]).round(2).tolist()
    [192.86, 203.77]
    """
    c = _elastic_voigt(stiffness)
    n = _unit_rows(directions)
    s = _compliance(c)
    if s is None:
        return np.full(n.shape[:-1], np.nan)
    return _youngs_along(_compliance_cartesian(s), n)


def _acoustic_properties(
    structure: Structure, k_vrh: float, g_vrh: float, stable: bool
) -> dict[str, float]:
    """Density (g/cm^3), sound velocities (m/s) and Debye temperature (K), as pymatgen's
    ``ElasticTensor.long_v`` / ``trans_v`` / ``debye_temperature`` (same formulas, constants
    and order of operations)."""
    n_sites = len(structure)
    composition = structure.composition
    weight = float(composition.weight) * _ATOMIC_MASS  # kg
    volume = structure.volume * 1e-30  # m^3
    mass_density = n_sites * weight / (composition.num_atoms * volume)  # kg/m^3
    out = {"density": mass_density / 1000.0}
    if not (stable and k_vrh > 0.0 and g_vrh > 0.0):
        missing = ("longitudinal_velocity", "transverse_velocity", "debye_temperature")
        return {**out, **dict.fromkeys(missing, float("nan"))}
    vt = (1e9 * g_vrh / mass_density) ** 0.5
    vl = (1e9 * (k_vrh + 4 / 3 * g_vrh) / mass_density) ** 0.5
    vm = 3 ** (1 / 3) * (1 / vl**3 + 2 / vt**3) ** (-1 / 3)
    v0 = volume / n_sites
    debye = _HBAR / _BOLTZMANN * vm * (6 * np.pi**2 / v0) ** (1 / 3)
    return {
        **out,
        "longitudinal_velocity": float(vl),
        "transverse_velocity": float(vt),
        "debye_temperature": float(debye),
    }


def elastic_properties(
    stiffness: Any,
    *,
    structure: Structure | None = None,
    crystal_system: str | None = None,
) -> ElasticProperties:
    r"""Moduli, compliance, directional Young's modulus, stability and sound velocities.

    With the Voigt matrix :math:`C_{IJ}` and the compliance :math:`S = C^{-1}` (Voigt
    matrix inverse, as pymatgen's ``ElasticTensor.compliance_tensor``; indices 1-based):

    .. math::

        K_V &= \tfrac19 \textstyle\sum_{I,J\le 3} C_{IJ}, \qquad
        G_V = \tfrac1{15}\big[(C_{11}+C_{22}+C_{33}) - (C_{12}+C_{13}+C_{23})
              + 3(C_{44}+C_{55}+C_{66})\big], \\
        K_R &= 1 \big/ \textstyle\sum_{I,J\le 3} S_{IJ}, \qquad
        G_R = 15 \big/ \big[4(S_{11}+S_{22}+S_{33}) - 4(S_{12}+S_{13}+S_{23})
              + 3(S_{44}+S_{55}+S_{66})\big], \\
        K &= \tfrac12(K_V+K_R), \quad G = \tfrac12(G_V+G_R), \quad
        E = \frac{9KG}{3K+G}, \quad \nu = \frac{3K-2G}{6K+2G}, \quad
        A^U = 5\frac{G_V}{G_R} + \frac{K_V}{K_R} - 6, \quad \text{Pugh} = G/K, \\
        E(n) &= 1 \big/ (n_i n_j n_k n_l S_{ijkl}) \quad
        \text{(see :func:`directional_youngs_modulus`)}.

    With a structure of mass density :math:`\rho` and :math:`N` sites in volume :math:`V`:

    .. math::

        v_l = \sqrt{(K + \tfrac43 G)/\rho}, \quad v_t = \sqrt{G/\rho}, \quad
        v_m = \Big[\tfrac13\big(v_l^{-3} + 2 v_t^{-3}\big)\Big]^{-1/3}, \quad
        \Theta_D = \frac{\hbar}{k_B} v_m \Big(\frac{6\pi^2 N}{V}\Big)^{1/3}.

    Parameters
    ----------
    stiffness : array_like ``(3, 3, 3, 3)`` or ``(6, 6)``
        Elastic stiffness :math:`C_{ijkl}` as a full Cartesian tensor or its Voigt matrix, GPa.
    structure : pymatgen Structure, optional
        The crystal, with the tensor in its Cartesian frame: adds the density, the sound
        velocities, the Debye temperature and Young's modulus along a, b, c.
    crystal_system : str, optional
        One of :data:`CRYSTAL_SYSTEMS` (as ``PointGroup.crystal_system``); selects the Born
        conditions of :func:`born_stability_criteria`. Without it the general criterion.

    Returns
    -------
    ElasticProperties
        Moduli in GPa, compliance in 1/TPa, velocities in m/s, Debye temperature in K,
        density in g/cm^3, ratios dimensionless, Born stability and its conditions.

    Raises
    ------
    ValueError
        If the shape is neither ``(3, 3, 3, 3)`` nor ``(6, 6)``, a value is not finite, or
        ``crystal_system`` is not a crystal system.

    Notes
    -----
    The moduli use the matrix as given, with the same entries as pymatgen (the upper triangle
    of the 3x3 blocks for :math:`G_V`, :math:`G_R`), so they agree with
    ``pymatgen.analysis.elasticity.ElasticTensor`` to rounding, including for slightly
    non-symmetric input; pymatgen's ``y_mod`` is in Pa, ``youngs_modulus`` here is in GPa.
    The density, sound velocities and Debye temperature are pymatgen's ``long_v``,
    ``trans_v`` and ``debye_temperature`` (same formulas and CODATA constants).

    ``born_stable`` is the Born criterion: all eigenvalues of (the symmetric part of) the
    Voigt matrix are positive. The Voigt matrix differs from the Mandel (Kelvin) matrix
    :math:`M = D C D`, :math:`D = \mathrm{diag}(1,1,1,\sqrt2,\sqrt2,\sqrt2)`, by a congruence,
    and by Sylvester's law of inertia a congruence keeps the signs of the eigenvalues, so the
    positivity test is exact even though the Voigt ``eigenvalues`` differ from the Mandel ones.
    Only the Mandel eigenvalues (``kelvin_moduli``) are invariant under rotations; the Voigt
    ones depend on the frame, and only their signs are invariant. ``born_criteria`` spells the
    criterion out as the conditions of the crystal system (:func:`born_stability_criteria`);
    for a tensor within the tolerance of its system's form they agree with ``born_stable``.

    The extremes of :math:`E(n)` are found by the sphere search of
    :func:`piezoelectric_properties` applied to the quartic form
    :math:`S_{ijkl} n_i n_j n_k n_l` (its maximum gives the smallest E and vice versa). When
    the tensor is not positive definite, :math:`E(n)` is negative or infinite along some
    directions: the extremes, their directions and the sound velocities are then ``nan`` and
    a warning is logged; E along the axes is still reported (it can be negative).

    A matrix that is singular to machine precision (condition number at least
    ``1 / eps``) has no compliance: the Reuss moduli and everything derived from them
    (Hill averages, E, Poisson's ratio, A^U) are ``nan``, ``born_stable`` is False and a
    warning is logged. Nothing raises for unphysical tensors.

    References
    ----------
    R. Hill, Proc. Phys. Soc. A 65, 349 (1952); S. I. Ranganathan and M. Ostoja-Starzewski,
    Phys. Rev. Lett. 101, 055504 (2008) (universal anisotropy); F. Mouhat and F.-X. Coudert,
    Phys. Rev. B 90, 224104 (2014) (Born stability); O. L. Anderson, J. Phys. Chem. Solids
    24, 909 (1963) (Debye temperature from sound velocities).

    Examples
    --------
    A cubic crystal with C11 = 250, C12 = 100, C44 = 80 GPa:

    >>> c = np.zeros((6, 6))
    >>> c[:3, :3] = 100.0
    >>> c[[0, 1, 2], [0, 1, 2]] = 250.0
    >>> c[[3, 4, 5], [3, 4, 5]] = 80.0
    >>> p = elastic_properties(c)
    >>> round(p.k_vrh, 3), round(p.g_voigt, 3), round(p.g_reuss, 3), p.born_stable
    (150.0, 78.0, 77.922, True)
    >>> round(p.youngs_modulus, 2), round(p.poisson_ratio, 4)
    (199.35, 0.2785)
    >>> round(p.youngs_modulus_min, 2), round(p.youngs_modulus_max, 2)  # along <100>, <111>
    (192.86, 203.77)
    >>> q = elastic_properties(c, crystal_system="cubic")
    >>> q.born_criteria_system, q.born_criteria
    ('cubic', {'C11 - C12 > 0': True, 'C11 + 2 C12 > 0': True, 'C44 > 0': True})
    """
    c = _elastic_voigt(stiffness)
    _warn_if_asymmetric(
        c,
        "elastic Voigt matrix",
        "moduli use the matrix as given, eigenvalues its symmetric part",
    )
    born_system, criteria = _born_criteria(c, crystal_system)
    s = _compliance(c)
    singular = s is None
    if s is None:
        logger.warning(
            "elastic Voigt matrix is singular (condition number %.3g); Reuss and Hill moduli "
            "are nan and born_stable is False",
            np.linalg.cond(c),
        )
        s = np.full((6, 6), np.nan)

    with np.errstate(divide="ignore", invalid="ignore"):
        k_voigt = c[:3, :3].sum() / 9.0
        g_voigt = (
            np.trace(c[:3, :3]) - (c[0, 1] + c[0, 2] + c[1, 2]) + 3.0 * np.trace(c[3:, 3:])
        ) / 15.0
        k_reuss = 1.0 / s[:3, :3].sum()
        g_reuss = 15.0 / (
            4.0 * np.trace(s[:3, :3])
            - 4.0 * (s[0, 1] + s[0, 2] + s[1, 2])
            + 3.0 * np.trace(s[3:, 3:])
        )
        k_vrh = 0.5 * (k_voigt + k_reuss)
        g_vrh = 0.5 * (g_voigt + g_reuss)
        youngs = 9.0 * k_vrh * g_vrh / (3.0 * k_vrh + g_vrh)
        poisson = (3.0 * k_vrh - 2.0 * g_vrh) / (6.0 * k_vrh + 2.0 * g_vrh)
        anisotropy = 5.0 * g_voigt / g_reuss + k_voigt / k_reuss - 6.0
        pugh = g_vrh / k_vrh

    sym = 0.5 * (c + c.T)
    eigenvalues = np.linalg.eigvalsh(sym)
    kelvin = np.linalg.eigvalsh(_MANDEL[:, None] * sym * _MANDEL[None, :])
    born_stable = bool(not singular and eigenvalues[0] > 0.0)

    s_full = _compliance_cartesian(s)
    if born_stable:
        quartic = _symmetrize(s_full)
        (q_max, min_direction), (q_min, max_direction) = _sphere_maxima([quartic, -quartic])
        e_min, e_max = 1.0 / q_max, -1.0 / q_min
        min_direction, max_direction = map(_canonical_axis, (min_direction, max_direction))
    else:
        if not singular:
            logger.warning(
                "elastic tensor is not positive definite (smallest Kelvin modulus %.3g GPa): "
                "the Young's modulus extremes%s are nan",
                kelvin[0],
                "" if structure is None else ", sound velocities and Debye temperature",
            )
        e_min = e_max = float("nan")
        min_direction = max_direction = np.full(3, np.nan)

    extra: dict[str, Any] = {}
    if structure is None:
        extra["youngs_modulus_xyz"] = _readonly(_youngs_along(s_full, np.eye(3)))
    else:
        abc = _unit_rows(structure.lattice.matrix)
        extra["youngs_modulus_abc"] = _readonly(_youngs_along(s_full, abc))
        extra.update(_acoustic_properties(structure, float(k_vrh), float(g_vrh), born_stable))

    return ElasticProperties(
        k_voigt=float(k_voigt),
        k_reuss=float(k_reuss),
        k_vrh=float(k_vrh),
        g_voigt=float(g_voigt),
        g_reuss=float(g_reuss),
        g_vrh=float(g_vrh),
        youngs_modulus=float(youngs),
        poisson_ratio=float(poisson),
        universal_anisotropy=float(anisotropy),
        eigenvalues=_readonly(eigenvalues),
        kelvin_moduli=_readonly(kelvin),
        born_stable=born_stable,
        compliance=_readonly(1e3 * s),
        pugh_ratio=float(pugh),
        youngs_modulus_min=float(e_min),
        youngs_min_direction=_readonly(min_direction),
        youngs_modulus_max=float(e_max),
        youngs_max_direction=_readonly(max_direction),
        born_criteria_system=born_system,
        born_criteria=criteria,
        **extra,
    )


# --------------------------------------------------------------------------------------------
# Born stability conditions per crystal system
# --------------------------------------------------------------------------------------------


def _crystal_system(name: str) -> str:
    system = str(name).strip().lower()
    system = "trigonal" if system == "rhombohedral" else system
    if system not in CRYSTAL_SYSTEMS:
        raise ValueError(
            f"unknown crystal system {name!r}; use one of {', '.join(CRYSTAL_SYSTEMS)} "
            "(or 'rhombohedral' for trigonal), or None for the general criterion"
        )
    return system


_MINOR_NAMES = ("C11 > 0", *(f"det C[1..{k}, 1..{k}] > 0" for k in range(2, 7)))
# Row k - 1 masks the leading k x k block of a 6 x 6 matrix (the rest is made the identity).
_LEADING = np.arange(6)[None, :] < np.arange(1, 7)[:, None]


def _leading_minors(c: np.ndarray) -> dict[str, bool]:
    scaled = c / (np.abs(c).max() or 1.0)  # the signs of the minors do not depend on the scale
    block = _LEADING[:, :, None] & _LEADING[:, None, :]  # (6, 6, 6)
    padded = np.where(block, scaled, np.eye(6))  # det(padded[k - 1]) = det(C[:k, :k])
    dets = np.linalg.det(padded)
    return {name: bool(d > 0.0) for name, d in zip(_MINOR_NAMES, dets, strict=True)}


def _cubic_conditions(c: np.ndarray) -> tuple[str, dict[str, bool]]:
    c11, c12, c44 = c[0, 0], c[0, 1], c[3, 3]
    return "cubic", {
        "C11 - C12 > 0": bool(c11 - c12 > 0),
        "C11 + 2 C12 > 0": bool(c11 + 2 * c12 > 0),
        "C44 > 0": bool(c44 > 0),
    }


def _uniaxial_base(c: np.ndarray) -> dict[str, bool]:
    c11, c12, c13, c33, c44 = c[0, 0], c[0, 1], c[0, 2], c[2, 2], c[3, 3]
    return {
        "C11 > |C12|": bool(c11 > abs(c12)),
        "2 C13^2 < C33 (C11 + C12)": bool(2 * c13**2 < c33 * (c11 + c12)),
        "C44 > 0": bool(c44 > 0),
    }


def _hexagonal_conditions(c: np.ndarray) -> tuple[str, dict[str, bool]]:
    return "hexagonal", {**_uniaxial_base(c), "C66 > 0": bool(c[5, 5] > 0)}


def _tetragonal_conditions(c: np.ndarray) -> tuple[str, dict[str, bool]]:
    c11, c12, c16, c66 = c[0, 0], c[0, 1], c[0, 5], c[5, 5]
    if abs(c16) <= _CLASS_I_TOLERANCE * np.abs(c).max():
        return "tetragonal I", {**_uniaxial_base(c), "C66 > 0": bool(c66 > 0)}
    return "tetragonal II", {
        **_uniaxial_base(c),
        "2 C16^2 < C66 (C11 - C12)": bool(2 * c16**2 < c66 * (c11 - c12)),
    }


def _trigonal_conditions(c: np.ndarray) -> tuple[str, dict[str, bool]]:
    c11, c12, c13, c14, c15 = c[0, 0], c[0, 1], c[0, 2], c[0, 3], c[0, 4]
    c33, c44, c66 = c[2, 2], c[3, 3], c[5, 5]
    base = {
        "C11 > |C12|": bool(c11 > abs(c12)),
        "C44 > 0": bool(c44 > 0),
        "C13^2 < C33 (C11 + C12) / 2": bool(c13**2 < 0.5 * c33 * (c11 + c12)),
    }
    if abs(c15) <= _CLASS_I_TOLERANCE * np.abs(c).max():
        return "trigonal I", {**base, "C14^2 < C44 C66": bool(c14**2 < c44 * c66)}
    return "trigonal II", {**base, "C14^2 + C15^2 < C44 C66": bool(c14**2 + c15**2 < c44 * c66)}


def _orthorhombic_conditions(c: np.ndarray) -> tuple[str, dict[str, bool]]:
    block = c[:3, :3] / (np.abs(c[:3, :3]).max() or 1.0)
    return "orthorhombic", {
        "C11 > 0": bool(c[0, 0] > 0),
        "C11 C22 > C12^2": bool(c[0, 0] * c[1, 1] > c[0, 1] ** 2),
        "det C[1..3, 1..3] > 0": bool(np.linalg.det(block) > 0),
        "C44 > 0": bool(c[3, 3] > 0),
        "C55 > 0": bool(c[4, 4] > 0),
        "C66 > 0": bool(c[5, 5] > 0),
    }


_CONDITIONS = {
    "cubic": _cubic_conditions,
    "hexagonal": _hexagonal_conditions,
    "tetragonal": _tetragonal_conditions,
    "trigonal": _trigonal_conditions,
    "orthorhombic": _orthorhombic_conditions,
}


def _principal_frames(full: np.ndarray, system: str) -> list[tuple[str, np.ndarray]]:
    """Candidate standard settings from the eigenvectors of the dilatational (C_ijkk) and
    Voigt (C_ikjk) tensors: for a uniaxial system the non-degenerate eigenvector is the
    principal axis (z); for an orthorhombic one the three eigenvectors are the 2-fold axes.

    Each frame is a proper rotation whose rows are the new x, y, z axes.
    """
    frames = []
    for name, m in (
        ("C_ijkk", np.einsum("ijkk->ij", full)),
        ("C_ikjk", np.einsum("ikjk->ij", full)),
    ):
        w, vectors = np.linalg.eigh(m)
        if system == "orthorhombic":
            rows = vectors.T
        else:  # the eigenvalue farthest from the other two is the principal axis
            unique = 0 if w[1] - w[0] > w[2] - w[1] else 2
            rows = vectors[:, [i for i in range(3) if i != unique] + [unique]].T
        rows = rows * np.array([1.0, 1.0, np.sign(np.linalg.det(rows))])[:, None]
        frames.append((f"principal axes of {name}", rows))
    return frames


def _standard_form(c: np.ndarray, system: str) -> tuple[np.ndarray | None, str, float]:
    """The Voigt matrix in the standard setting of ``system`` (projected onto its Laue class),
    the frame used, and the relative change of the projection; None if no frame fits.

    The given frame is used if the tensor has the exact form there (as a projected tensor
    does); otherwise the frame, given or principal, in which the projection changes it least.
    """
    from crystensor.tensors.harmonic import rotate_tensor
    from crystensor.tensors.symmetry import project_to_point_group

    full = from_voigt(c)
    scale = np.abs(c).max()
    frames: list[tuple[str, np.ndarray | None]] = [("given", None)]
    if system != "cubic":  # the cubic C_ijkk and C_ikjk are isotropic: no axes to read
        frames += _principal_frames(full, system)
    best_change, best_form, best_frame = np.inf, full, ""
    for frame, rotation in frames:
        rotated = full if rotation is None else rotate_tensor(full, rotation)
        projected = project_to_point_group(rotated, _LAUE_CLASS[system])
        change = float(np.abs(to_voigt(projected - rotated)).max() / scale)
        if rotation is None and change <= _EXACT_FORM:
            return to_voigt(projected), frame, change
        if change < best_change:
            best_change, best_form, best_frame = change, projected, frame
    if best_change > _FORM_TOLERANCE:
        return None, "", best_change
    return to_voigt(best_form), best_frame, best_change


def _born_criteria(c: np.ndarray, crystal_system: str | None) -> tuple[str, dict[str, bool]]:
    sym = 0.5 * (c + c.T)
    if crystal_system is None:
        return "general (leading principal minors)", _leading_minors(sym)
    system = _crystal_system(crystal_system)
    if system not in _CONDITIONS:
        return f"{system}: general (leading principal minors)", _leading_minors(sym)
    if not np.abs(sym).max() > 0.0:
        return f"general: a zero tensor has no {system} form", _leading_minors(sym)
    standard, frame, change = _standard_form(sym, system)
    if standard is None:
        return (
            f"general (leading principal minors): not of {system} form in this frame or its "
            f"principal axes ({100 * change:.3g} % off)",
            _leading_minors(sym),
        )
    label, conditions = _CONDITIONS[system](standard)
    return (label if frame == "given" else f"{label}, in the {frame}"), conditions


def born_stability_criteria(
    stiffness: Any, crystal_system: str | None = None
) -> tuple[str, dict[str, bool]]:
    r"""The Born elastic stability conditions of a crystal system, one by one.

    The necessary and sufficient conditions of Mouhat & Coudert (2014) for an unstressed
    crystal, with the Voigt constants :math:`C_{IJ}` (1-based) in the standard setting:

    - cubic: :math:`C_{11} - C_{12} > 0`, :math:`C_{11} + 2C_{12} > 0`, :math:`C_{44} > 0`;
    - hexagonal and tetragonal I (4mm, -42m, 422, 4/mmm): :math:`C_{11} > |C_{12}|`,
      :math:`2C_{13}^2 < C_{33}(C_{11}+C_{12})`, :math:`C_{44} > 0`, :math:`C_{66} > 0`;
    - tetragonal II (4, -4, 4/m): the same with :math:`2C_{16}^2 < C_{66}(C_{11}-C_{12})`
      instead of :math:`C_{66} > 0`;
    - trigonal (rhombohedral) I (32, 3m, -3m): :math:`C_{11} > |C_{12}|`,
      :math:`C_{44} > 0`, :math:`C_{13}^2 < \tfrac12 C_{33}(C_{11}+C_{12})`,
      :math:`C_{14}^2 < C_{44}C_{66}`; II (3, -3): :math:`C_{14}^2 + C_{15}^2 < C_{44}C_{66}`
      in the last one;
    - orthorhombic: :math:`C_{11} > 0`, :math:`C_{11}C_{22} > C_{12}^2`,
      :math:`\det C_{[1..3]} > 0`, :math:`C_{44}, C_{55}, C_{66} > 0`;
    - monoclinic, triclinic and ``None``: the general criterion, all leading principal
      minors :math:`\det C_{[1..k]}` (k = 1..6) of the Voigt matrix positive (Sylvester).

    Parameters
    ----------
    stiffness : array_like ``(3, 3, 3, 3)`` or ``(6, 6)``
        Elastic stiffness, GPa (its symmetric part is used).
    crystal_system : str, optional
        One of :data:`CRYSTAL_SYSTEMS` or ``"rhombohedral"``.

    Returns
    -------
    system : str
        The conditions used: ``"cubic"``, ``"tetragonal II"``, ..., with ``", in the
        principal axes of C_ijkk"`` when the tensor was rotated to the standard setting, or
        ``"general ..."`` with the reason.
    conditions : dict[str, bool]
        Each condition by a readable name (``"C11 > |C12|"``) and whether it holds.

    Raises
    ------
    ValueError
        For a bad shape, non-finite values or an unknown crystal system.

    Notes
    -----
    The system conditions hold only in the system's standard setting (principal axis along z;
    cubic and orthorhombic axes along x, y, z). Candidate frames are the given one and those
    of the eigenvectors of the dilatational tensor :math:`C_{ijkk}` and of :math:`C_{ikjk}`
    (whose non-degenerate eigenvector is the principal axis of a uniaxial crystal, and whose
    eigenvectors are the axes of an orthorhombic one). The given frame is used if the tensor
    has the system's exact form there; otherwise the candidate in which projecting onto the
    system's Laue class (m-3, 6/m, 4/m, -3, mmm) changes the Voigt entries least, if that
    change is at most 5 % of the largest entry; otherwise the general criterion. The conditions are
    evaluated on the projected tensor, so that e.g. :math:`C_{11} = C_{22}` exactly; for a
    tensor that has the system's form they are equivalent to positive definiteness. Class I
    or II is decided by :math:`C_{16}` (tetragonal) or :math:`C_{15}` (trigonal) being zero
    in that frame (the II conditions hold for class I tensors too).

    References
    ----------
    F. Mouhat and F.-X. Coudert, "Necessary and sufficient elastic stability conditions in
    various crystal systems", Phys. Rev. B 90, 224104 (2014).

    Examples
    --------
    >>> c = np.zeros((6, 6))
    >>> c[:3, :3] = [[200.0, 90.0, 80.0], [90.0, 200.0, 80.0], [80.0, 80.0, 220.0]]
    >>> c[3, 3] = c[4, 4] = 50.0
    >>> c[5, 5] = 55.0                                   # (C11 - C12) / 2
    >>> system, conditions = born_stability_criteria(c, "hexagonal")
    >>> system, all(conditions.values())
    ('hexagonal', True)
    >>> list(conditions)
    ['C11 > |C12|', '2 C13^2 < C33 (C11 + C12)', 'C44 > 0', 'C66 > 0']
    """
    return _born_criteria(_elastic_voigt(stiffness), crystal_system)


# --------------------------------------------------------------------------------------------
# Dielectric
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DielectricProperties(_AsDict):
    """Principal values and averages of a dielectric tensor (see :func:`dielectric_properties`).

    Attributes
    ----------
    eigenvalues : array ``(3,)``
        Principal permittivities, ascending, dimensionless.
    principal_axes : array ``(3, 3)``
        ``principal_axes[:, i]`` is the unit axis of ``eigenvalues[i]``.
    polycrystalline_average : float
        Mean of the eigenvalues (trace / 3), dimensionless.
    refractive_index : float or None
        ``sqrt(polycrystalline_average)``; meaningful for the electronic tensor only, and
        None (left out of :meth:`as_dict`) when the tensor is known to be the static one.
    """

    eigenvalues: np.ndarray
    principal_axes: np.ndarray
    polycrystalline_average: float
    refractive_index: float | None

    UNITS: ClassVar[dict[str, str]] = {
        "eigenvalues": "1",
        "principal_axes": "1",
        "polycrystalline_average": "1",
        "refractive_index": "1",
    }


def dielectric_properties(eps: Any, *, electronic: bool = True) -> DielectricProperties:
    r"""Principal permittivities, polycrystalline average and refractive index.

    .. math::

        \varepsilon\, a_i = \lambda_i a_i, \qquad
        \bar\varepsilon = \tfrac13 \textstyle\sum_i \lambda_i = \tfrac13 \operatorname{tr}
        \varepsilon, \qquad n = \sqrt{\bar\varepsilon}.

    Parameters
    ----------
    eps : array_like ``(3, 3)``
        Relative dielectric tensor :math:`\varepsilon_{ij}`, dimensionless.
    electronic : bool
        Whether ``eps`` may be the electronic (high-frequency) tensor. False for the static
        (ionic + electronic) tensor: no refractive index is computed (it is None).

    Returns
    -------
    DielectricProperties
        ``eigenvalues`` ``(3,)`` ascending, ``principal_axes`` ``(3, 3)`` (column ``i`` is the
        axis of eigenvalue ``i``, its largest-magnitude component made positive),
        ``polycrystalline_average`` and ``refractive_index`` (floats), all dimensionless.

    Raises
    ------
    ValueError
        If the shape is not ``(3, 3)`` or a value is not finite.

    Notes
    -----
    The refractive index :math:`n = \sqrt{\bar\varepsilon}` is the optical (high-frequency)
    index only when ``eps`` is the electronic (clamped-ion, :math:`\varepsilon_\infty`)
    tensor; computed from the total (static) tensor it is just a number. This is the
    definition of the Materials Project ``n`` (Petousis et al., Sci. Data 4, 160134 (2017)).
    It is ``nan`` when the average is not positive.

    The eigen-decomposition uses the symmetric part :math:`(\varepsilon+\varepsilon^T)/2`
    (DFT tensors are symmetric only to rounding); the trace, hence the average, is the same.

    Examples
    --------
    >>> p = dielectric_properties(np.diag([4.0, 2.0, 3.0]))
    >>> p.eigenvalues.tolist(), p.polycrystalline_average, round(p.refractive_index, 4)
    ([2.0, 3.0, 4.0], 3.0, 1.7321)
    >>> p.principal_axes[:, 2].tolist()
    [1.0, 0.0, 0.0]
    """
    e = _as_float_array(eps, "dielectric tensor")
    if e.shape != (3, 3):
        raise ValueError(
            f"dielectric tensor must be a (3, 3) Cartesian matrix, got shape {e.shape}"
        )
    _check_finite(e, "dielectric tensor")
    _warn_if_asymmetric(e, "dielectric tensor", "its symmetric part is diagonalised")
    eigenvalues, axes = np.linalg.eigh(0.5 * (e + e.T))
    # Deterministic sign: the largest-magnitude component of each axis is positive.
    pivot = np.abs(axes).argmax(axis=0)
    axes = axes * np.sign(axes[pivot, np.arange(3)])
    average = float(np.trace(e) / 3.0)
    refractive_index: float | None = None
    if electronic:
        refractive_index = float(np.sqrt(average)) if average > 0.0 else float("nan")
    return DielectricProperties(
        eigenvalues=_readonly(eigenvalues),
        principal_axes=_readonly(axes),
        polycrystalline_average=average,
        refractive_index=refractive_index,
    )


# --------------------------------------------------------------------------------------------
# Piezoelectric
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PiezoelectricProperties(_AsDict):
    r"""Maximum longitudinal piezoelectric coefficients (see :func:`piezoelectric_properties`).

    Attributes
    ----------
    eij_max : float
        :math:`\max_{|u|=1} |e_{ijk} u_i u_j u_k|`, C/m^2.
    max_direction : array ``(3,)``
        Unit vector where the maximum is reached, signed so that
        :math:`e_{ijk} u_i u_j u_k = +` ``eij_max``.
    d_voigt : array ``(3, 6)`` or None
        Strain constants :math:`d = e S` in Voigt form (:func:`piezoelectric_strain_constants`:
        :math:`d_{iJ} = d_{ijk}` for J = 1..3, :math:`2 d_{ijk}` for J = 4..6), pC/N; None
        without an elastic tensor.
    dij_max : float or None
        :math:`\max_{|u|=1} |d_{ijk} u_i u_j u_k|` (Cartesian :math:`d_{ijk}`), pC/N.
    d_max_direction : array ``(3,)`` or None
        Unit vector of ``dij_max``, signed so that :math:`d_{ijk} u_i u_j u_k = +` ``dij_max``.

    The fields that are None are left out of :meth:`as_dict`.
    """

    eij_max: float
    max_direction: np.ndarray
    d_voigt: np.ndarray | None = None
    dij_max: float | None = None
    d_max_direction: np.ndarray | None = None

    UNITS: ClassVar[dict[str, str]] = {
        "eij_max": "C/m^2",
        "max_direction": "1",
        "d_voigt": "pC/N",
        "dij_max": "pC/N",
        "d_max_direction": "1",
    }


def _piezo_cartesian(e: Any) -> np.ndarray:
    """A (3, 3, 3) or (3, 6) piezoelectric tensor as a finite (3, 3, 3) Cartesian array."""
    t = _as_float_array(e, "piezoelectric tensor")
    if t.shape not in ((3, 3, 3), (3, 6)):
        raise ValueError(
            f"piezoelectric tensor must be a (3, 3, 3) Cartesian tensor or a (3, 6) Voigt "
            f"matrix in C/m^2, got shape {t.shape}"
        )
    _check_finite(t, "piezoelectric tensor")
    return from_voigt(t) if t.shape == (3, 6) else t


def _strain_constants_voigt(e_full: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``1e3 e S`` in Voigt form (pC/N) from a Cartesian e (C/m^2) and a Voigt C (GPa)."""
    s = _compliance(c)
    if s is None:
        logger.warning(
            "elastic Voigt matrix is singular (condition number %.3g); the piezoelectric strain "
            "constants d = e S are nan",
            np.linalg.cond(c),
        )
        return np.full((3, 6), np.nan)
    e_voigt = to_voigt(0.5 * (e_full + e_full.transpose(0, 2, 1)))
    # d_iJ = e_iK S_KJ with the engineering Voigt compliance; 1 C/m^2 x 1/GPa = 1e3 pC/N.
    return 1e3 * (e_voigt @ s)


def piezoelectric_strain_constants(e: Any, stiffness: Any) -> np.ndarray:
    r"""Piezoelectric strain constants :math:`d = e\,S` from the stress constants and C.

    .. math::

        d_{ijk} = e_{ilm} S_{lmjk}, \qquad S = C^{-1}\ \text{(full compliance)},

    reported in Voigt form with the standard (IEEE) convention

    .. math::

        d_{iJ} = d_{ijk}\ (J = 1, 2, 3), \qquad d_{iJ} = 2\, d_{ijk}\ (J = 4, 5, 6),

    so that the polarisation is :math:`P_i = d_{iJ} \sigma_J` for the stress Voigt vector, and
    :math:`d_{iJ} = e_{iK} S_{KJ}` with the Voigt stress constants (no factors of 2) and the
    Voigt compliance (pymatgen's ``compliance_tensor.voigt``, factors 2 and 4 on shear).

    Parameters
    ----------
    e : array_like ``(3, 3, 3)`` or ``(3, 6)``
        Piezoelectric stress constants :math:`e_{ijk}` (Cartesian, or Voigt without factors
        of 2), C/m^2; only the part symmetric in j, k is used.
    stiffness : array_like ``(3, 3, 3, 3)`` or ``(6, 6)``
        Elastic stiffness in the same Cartesian frame, GPa.

    Returns
    -------
    array ``(3, 6)``
        :math:`d_{iJ}` in pC/N (C/m^2 times 1/GPa is 1e-9 C/N = 1e3 pC/N). All ``nan``, with
        a warning, when the stiffness is singular. The Cartesian tensor is
        ``from_voigt(d / [1, 1, 1, 2, 2, 2])``.

    Raises
    ------
    ValueError
        For a bad shape or non-finite values.

    Examples
    --------
    A 6mm crystal with only e33 = 1 C/m^2 and an isotropic stiffness (lambda = mu = 50 GPa):
    d33 = e33 S33 with S33 = 1 / E = 1 / 125 GPa.

    >>> e = np.zeros((3, 6))
    >>> e[2, 2] = 1.0
    >>> c = 50.0 * np.ones((3, 3)) + 100.0 * np.eye(3)
    >>> c = np.block([[c, np.zeros((3, 3))], [np.zeros((3, 3)), 50.0 * np.eye(3)]])
    >>> d = piezoelectric_strain_constants(e, c)
    >>> round(float(d[2, 2]), 6), round(float(d[2, 0]), 6)  # 1e3 / E, -1e3 nu / E
    (8.0, -2.0)
    """
    return _strain_constants_voigt(_piezo_cartesian(e), _elastic_voigt(stiffness))


def piezoelectric_properties(e: Any, *, elastic: Any = None) -> PiezoelectricProperties:
    r"""Maximum longitudinal piezoelectric coefficient and its direction (and of d = e S).

    .. math::

        e_{\max} = \max_{|u|=1} \big| e_{ijk} u_i u_j u_k \big|

    the largest polarisation along :math:`u` per unit uniaxial strain along :math:`u`
    (de Jong et al. 2015). Since :math:`u \to -u` flips the sign of the cubic form, this is the
    maximum of :math:`e_{ijk} u_i u_j u_k` itself, and the returned direction has a positive
    longitudinal coefficient. With ``elastic``, the same for the strain constants
    :math:`d_{ijk}` (:func:`piezoelectric_strain_constants`): ``dij_max`` is the largest
    polarisation along :math:`u` per unit uniaxial stress along :math:`u`.

    Parameters
    ----------
    e : array_like ``(3, 3, 3)`` or ``(3, 6)``
        Piezoelectric stress constants :math:`e_{ijk}` (symmetric in j, k) as a Cartesian
        tensor or in Voigt form :math:`e_{iJ} = e_{ijk}` (no factors of 2), C/m^2.
    elastic : array_like ``(3, 3, 3, 3)`` or ``(6, 6)``, optional
        Elastic stiffness in the same Cartesian frame, GPa: adds ``d_voigt``, ``dij_max`` and
        ``d_max_direction``.

    Returns
    -------
    PiezoelectricProperties
        ``eij_max`` (float, C/m^2) and ``max_direction`` (unit vector ``(3,)``); with
        ``elastic`` also ``d_voigt`` ``(3, 6)``, ``dij_max`` (pC/N) and ``d_max_direction``.

    Raises
    ------
    ValueError
        If a shape is wrong or a value is not finite.

    Notes
    -----
    The cubic form is evaluated on a deterministic Fibonacci grid of 4000 directions (mean
    spacing ~3 degrees); every well-separated grid candidate whose value is within the grid's
    discretisation error of the best (at most 8) is then refined by Newton's method on the
    sphere, and the best local maximum is kept. The result is deterministic; when symmetry
    makes several directions equivalent, which one is returned depends on the grid. Only the
    fully symmetric part of :math:`e_{ijk}` contributes. For an all-zero tensor ``eij_max`` is 0 and
    ``max_direction`` is ``nan`` (likewise for d); with a singular stiffness d is ``nan``.

    The ``eij_max`` column of matminer's ``piezoelectric_tensor`` dataset (de Jong et al.
    2015) is not this quantity for the stored Voigt tensor: it matches (to the resolution
    of its direction search) this function applied to the Voigt tensor with the shear columns
    yz, xz, xy halved, i.e. the longitudinal response to a strain whose Voigt vector
    carries no engineering factor of 2. The two agree when the maximum comes from the xx,
    yy, zz columns alone (e.g. e33 of a 6mm crystal), for 288 of its 941 entries. Its
    ``v_max`` is the Cartesian direction (IEEE frame) scaled to a largest component of 1, from
    a finite set of directions with components k/7, so its ``eij_max`` can fall slightly
    (up to ~1 %) below the true maximum.

    References
    ----------
    M. de Jong, W. Chen, H. Geerlings, M. Asta and K. A. Persson, "A database to enable
    discovery and design of piezoelectric materials", Sci. Data 2, 150053 (2015).

    Examples
    --------
    >>> e = np.zeros((3, 6))
    >>> e[2, 2] = 1.0                                   # only e_zzz = 1 C/m^2
    >>> p = piezoelectric_properties(e)
    >>> round(p.eij_max, 12), (np.round(p.max_direction, 8) + 0.0).tolist()  # + 0.0: no -0.0
    (1.0, [0.0, 0.0, 1.0])
    >>> p = piezoelectric_properties(e, elastic=np.diag([125.0] * 3 + [50.0] * 3))
    >>> round(p.dij_max, 9), float(p.d_voigt[2, 2])     # 1e3 / 125 pC/N
    (8.0, 8.0)
    """
    t = _piezo_cartesian(e)
    c = None if elastic is None else _elastic_voigt(elastic)
    eij_max, direction = _longitudinal_maximum(t)
    if c is None:
        return PiezoelectricProperties(eij_max=eij_max, max_direction=_readonly(direction))
    d_voigt = _strain_constants_voigt(t, c)
    if np.isfinite(d_voigt).all():
        dij_max, d_direction = _longitudinal_maximum(from_voigt(d_voigt / _ENGINEERING))
    else:
        dij_max, d_direction = float("nan"), np.full(3, np.nan)
    return PiezoelectricProperties(
        eij_max=eij_max,
        max_direction=_readonly(direction),
        d_voigt=_readonly(d_voigt),
        dij_max=dij_max,
        d_max_direction=_readonly(d_direction),
    )


def _longitudinal_maximum(t: np.ndarray) -> tuple[float, np.ndarray]:
    """``max |t(u, u, u)|`` over unit vectors and its direction (t(u, u, u) > 0 there)."""
    ((value, u),) = _sphere_maxima([_symmetrize(t)])
    return value, u
