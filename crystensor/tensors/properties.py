"""Derived physical properties of elastic, dielectric and piezoelectric tensors.

Each function takes one tensor, either as a full Cartesian array or in Voigt form (the
convention of :mod:`crystensor.tensors.voigt`: order xx, yy, zz, yz, xz, xy, no factors of 2),
and returns a frozen dataclass of rotation-invariant quantities with an ``as_dict()`` for JSON:

- :func:`elastic_properties`: Voigt, Reuss and Hill bulk and shear moduli, Young's modulus,
  Poisson's ratio, universal anisotropy, eigenvalues and Born stability (GPa);
- :func:`dielectric_properties`: principal values and axes, polycrystalline average,
  refractive index;
- :func:`piezoelectric_properties`: the maximum longitudinal piezoelectric coefficient and
  its direction (C/m^2).

Only numpy and scipy are used; the elastic formulas reproduce pymatgen's ``ElasticTensor``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from crystensor.tensors.voigt import from_voigt, to_voigt

__all__ = [
    "DielectricProperties",
    "ElasticProperties",
    "PiezoelectricProperties",
    "dielectric_properties",
    "elastic_properties",
    "piezoelectric_properties",
]

logger = logging.getLogger(__name__)

# Relative asymmetry (max |M - M^T| / max |M|) above which a warning is logged. DFT tensors
# are symmetric to ~1e-3 (4 % of the matminer dielectric tensors exceed 1e-3, 0.1 % exceed 1e-2).
_ASYMMETRY_WARN = 1e-2
# Mandel (Kelvin) scaling of the Voigt indices: D C_voigt D is the matrix of C in an
# orthonormal basis of symmetric 3x3 tensors.
_MANDEL = np.array([1.0, 1.0, 1.0, np.sqrt(2.0), np.sqrt(2.0), np.sqrt(2.0)])
# Points of the Fibonacci grid used to bracket the maximum longitudinal piezoelectric
# coefficient before the local refinement; mean spacing ~3.2 degrees.
_N_SPHERE = 4000
# Upper bound of the grid's covering radius (largest angle from any direction to its nearest
# grid point, measured ~2.69 / sqrt(N)), radians.
_COVERING = 3.0 / np.sqrt(_N_SPHERE)
# At most this many grid candidates are refined with scipy.optimize.
_MAX_STARTS = 8


def _json_value(value: Any) -> Any:
    """Convert a field value to plain JSON types (non-finite floats become None)."""
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_json_value(v) for v in value]
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

        Arrays become nested lists and non-finite floats (nan, inf) become ``None`` so that
        ``json.dumps`` writes strict JSON. ``"units"`` maps each field name to its unit
        (``"1"`` for dimensionless quantities).
        """
        names = [f.name for f in fields(self)]  # type: ignore[arg-type]
        out: dict[str, Any] = {name: _json_value(getattr(self, name)) for name in names}
        out["units"] = dict(self.UNITS)
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
# Elastic
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ElasticProperties(_AsDict):
    """Scalar properties of an elastic stiffness tensor (see :func:`elastic_properties`).

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


def elastic_properties(stiffness: Any) -> ElasticProperties:
    r"""Bulk, shear and Young's moduli, Poisson's ratio, anisotropy and stability.

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
        A^U = 5\frac{G_V}{G_R} + \frac{K_V}{K_R} - 6.

    Parameters
    ----------
    stiffness : array_like ``(3, 3, 3, 3)`` or ``(6, 6)``
        Elastic stiffness :math:`C_{ijkl}` as a full Cartesian tensor or its Voigt matrix, GPa.

    Returns
    -------
    ElasticProperties
        Moduli in GPa, ``poisson_ratio`` and ``universal_anisotropy`` dimensionless,
        ``eigenvalues`` and ``kelvin_moduli`` ``(6,)`` in GPa, ``born_stable``.

    Raises
    ------
    ValueError
        If the shape is neither ``(3, 3, 3, 3)`` nor ``(6, 6)`` or a value is not finite.

    Notes
    -----
    The moduli use the matrix as given, with the same entries as pymatgen (the upper triangle
    of the 3x3 blocks for :math:`G_V`, :math:`G_R`), so they agree with
    ``pymatgen.analysis.elasticity.ElasticTensor`` to rounding, including for slightly
    non-symmetric input; pymatgen's ``y_mod`` is in Pa, ``youngs_modulus`` here is in GPa.

    ``born_stable`` is the Born criterion: all eigenvalues of (the symmetric part of) the
    Voigt matrix are positive. The Voigt matrix differs from the Mandel (Kelvin) matrix
    :math:`M = D C D`, :math:`D = \mathrm{diag}(1,1,1,\sqrt2,\sqrt2,\sqrt2)`, by a congruence,
    and by Sylvester's law of inertia a congruence keeps the signs of the eigenvalues, so the
    positivity test is exact even though the Voigt ``eigenvalues`` differ from the Mandel ones.
    Only the Mandel eigenvalues (``kelvin_moduli``) are invariant under rotations; the Voigt
    ones depend on the frame, and only their signs are invariant.

    A matrix that is singular to machine precision (condition number at least
    ``1 / eps``) has no compliance: the Reuss moduli and everything derived from them
    (Hill averages, E, Poisson's ratio, A^U) are ``nan``, ``born_stable`` is False and a
    warning is logged. Nothing raises.

    References
    ----------
    R. Hill, Proc. Phys. Soc. A 65, 349 (1952); S. I. Ranganathan and M. Ostoja-Starzewski,
    Phys. Rev. Lett. 101, 055504 (2008) (universal anisotropy); F. Mouhat and F.-X. Coudert,
    Phys. Rev. B 90, 224104 (2014) (Born stability).

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
    """
    c = _elastic_voigt(stiffness)
    _warn_if_asymmetric(
        c,
        "elastic Voigt matrix",
        "moduli use the matrix as given, eigenvalues its symmetric part",
    )
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

    sym = 0.5 * (c + c.T)
    eigenvalues = np.linalg.eigvalsh(sym)
    kelvin = np.linalg.eigvalsh(_MANDEL[:, None] * sym * _MANDEL[None, :])
    born_stable = bool(not singular and eigenvalues[0] > 0.0)
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
    )


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
    refractive_index : float
        ``sqrt(polycrystalline_average)``; meaningful for the electronic tensor only.
    """

    eigenvalues: np.ndarray
    principal_axes: np.ndarray
    polycrystalline_average: float
    refractive_index: float

    UNITS: ClassVar[dict[str, str]] = {
        "eigenvalues": "1",
        "principal_axes": "1",
        "polycrystalline_average": "1",
        "refractive_index": "1",
    }


def dielectric_properties(eps: Any) -> DielectricProperties:
    r"""Principal permittivities, polycrystalline average and refractive index.

    .. math::

        \varepsilon\, a_i = \lambda_i a_i, \qquad
        \bar\varepsilon = \tfrac13 \textstyle\sum_i \lambda_i = \tfrac13 \operatorname{tr}
        \varepsilon, \qquad n = \sqrt{\bar\varepsilon}.

    Parameters
    ----------
    eps : array_like ``(3, 3)``
        Relative dielectric tensor :math:`\varepsilon_{ij}`, dimensionless.

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
    r"""Maximum longitudinal piezoelectric coefficient (see :func:`piezoelectric_properties`).

    Attributes
    ----------
    eij_max : float
        :math:`\max_{|u|=1} |e_{ijk} u_i u_j u_k|`, C/m^2.
    max_direction : array ``(3,)``
        Unit vector where the maximum is reached, signed so that
        :math:`e_{ijk} u_i u_j u_k = +` ``eij_max``.
    """

    eij_max: float
    max_direction: np.ndarray

    UNITS: ClassVar[dict[str, str]] = {"eij_max": "C/m^2", "max_direction": "1"}


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


def _symmetrize3(t: np.ndarray) -> np.ndarray:
    """Average of a rank-3 tensor over the 6 permutations of its indices."""
    perms = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
    return sum(np.transpose(t, p) for p in perms) / 6.0


def _refine(t: np.ndarray, start: np.ndarray) -> tuple[float, np.ndarray]:
    """Local maximum of f(u) = t(u, u, u) on the sphere, from ``start`` (unit vector).

    Optimises over the tangent plane at ``start``: u(x) = v / |v|, v = start + B x, where f is
    smooth and its Hessian non-singular near the maximum (no radial flat direction).
    """
    # Imported here: scipy.optimize takes 0.3 s to import, a tenth of `crystensor predict`'s
    # start-up, and only the piezoelectric properties need it.
    from scipy.optimize import minimize

    basis = np.linalg.svd(start[None, :])[2][1:].T  # (3, 2) orthonormal, orthogonal to start

    def negative(x: np.ndarray) -> tuple[float, np.ndarray]:
        v = start + basis @ x
        norm2 = v @ v
        tvv = (t @ v) @ v  # t_ijk v_j v_k (t is fully symmetric)
        value = (tvv @ v) / norm2**1.5
        grad_v = 3.0 * tvv / norm2**1.5 - 3.0 * value * v / norm2
        return -float(value), -(basis.T @ grad_v)

    result = minimize(negative, np.zeros(2), jac=True, method="BFGS", options={"gtol": 1e-8})
    v = start + basis @ result.x
    u = v / np.linalg.norm(v)
    return float(np.einsum("ijk,i,j,k->", t, u, u, u)), u


def piezoelectric_properties(e: Any) -> PiezoelectricProperties:
    r"""Maximum longitudinal piezoelectric coefficient and its direction.

    .. math::

        e_{\max} = \max_{|u|=1} \big| e_{ijk} u_i u_j u_k \big|

    the largest polarisation along :math:`u` per unit uniaxial strain along :math:`u`
    (de Jong et al. 2015). Since :math:`u \to -u` flips the sign of the cubic form, this is the
    maximum of :math:`e_{ijk} u_i u_j u_k` itself, and the returned direction has a positive
    longitudinal coefficient.

    Parameters
    ----------
    e : array_like ``(3, 3, 3)`` or ``(3, 6)``
        Piezoelectric stress constants :math:`e_{ijk}` (symmetric in j, k) as a Cartesian
        tensor or in Voigt form :math:`e_{iJ} = e_{ijk}` (no factors of 2), C/m^2.

    Returns
    -------
    PiezoelectricProperties
        ``eij_max`` (float, C/m^2) and ``max_direction`` (unit vector ``(3,)``).

    Raises
    ------
    ValueError
        If the shape is neither ``(3, 3, 3)`` nor ``(3, 6)`` or a value is not finite.

    Notes
    -----
    The cubic form is evaluated on a deterministic Fibonacci grid of 4000 directions (mean
    spacing ~3 degrees); every well-separated grid candidate whose value is within the grid's
    discretisation error of the best (at most 8) is then refined with BFGS on the sphere, and
    the best local maximum is kept. The result is deterministic; when symmetry makes several
    directions equivalent, which one is returned depends on the grid. Only the fully symmetric
    part of :math:`e_{ijk}` contributes. For an all-zero tensor ``eij_max`` is 0 and
    ``max_direction`` is ``nan``.

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
    """
    t = _as_float_array(e, "piezoelectric tensor")
    if t.shape not in ((3, 3, 3), (3, 6)):
        raise ValueError(
            f"piezoelectric tensor must be a (3, 3, 3) Cartesian tensor or a (3, 6) Voigt "
            f"matrix in C/m^2, got shape {t.shape}"
        )
    _check_finite(t, "piezoelectric tensor")
    t = _symmetrize3(from_voigt(t) if t.shape == (3, 6) else t)
    scale = float(np.abs(t).max())
    if scale == 0.0:
        return PiezoelectricProperties(eij_max=0.0, max_direction=_readonly(np.full(3, np.nan)))

    grid, cubes = _sphere_grid()
    values = cubes @ (t.ravel() / scale)
    order = np.argsort(values)[::-1]
    # Along a great circle u(s) with tangent w, f'' = 6 t(u, w, w) - 3 t(u, u, u), so
    # |f''| <= 9 |t|_F; the grid point nearest the true maximum (within _COVERING) is at most
    # 4.5 |t|_F _COVERING^2 below it, so every basin that can hold the maximum has a grid
    # candidate within that margin of the best grid value.
    margin = 4.5 * float(np.linalg.norm(t / scale)) * _COVERING**2
    min_separation = np.cos(3.0 * _COVERING)
    starts: list[np.ndarray] = []
    for index in order:
        if values[index] < values[order[0]] - margin or len(starts) == _MAX_STARTS:
            break
        u = grid[index]
        if all(u @ s < min_separation for s in starts):
            starts.append(u)

    best_value, best_u = -np.inf, starts[0]
    for start in starts:
        value, u = _refine(t / scale, start)
        if value > best_value:
            best_value, best_u = value, u
    return PiezoelectricProperties(
        eij_max=float(best_value * scale), max_direction=_readonly(best_u)
    )
