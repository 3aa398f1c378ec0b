"""Crystal point-group symmetry of Cartesian tensors.

A point group ``G`` is a finite set of orthogonal 3x3 matrices ``g`` (proper rotations and
improper ones, ``det g = -1``) acting on a rank-``n`` Cartesian tensor on every index,

.. math::

    (g \\cdot T)_{a_1 \\dots a_n} = g_{a_1 i_1} \\cdots g_{a_n i_n} T_{i_1 \\dots i_n}.

A tensor property of a crystal is invariant under the crystal's point group (Neumann's
principle): ``g . T = T`` for every ``g`` in ``G``, with ``G`` written in the Cartesian frame of
the structure. This module finds ``G`` for a structure (:func:`point_group_of`), builds the 32
crystallographic classes in a standard setting (:func:`point_group_from_symbol`), projects a
tensor onto the invariant subspace (:func:`project_to_point_group`), measures how far a tensor is
from it (:func:`symmetry_violation`, :func:`projection_residual`) and counts the independent
components of each tensor kind (:func:`independent_components`).

Only numpy is imported here; moyopy and spglib are imported inside :func:`point_group_of`.
"""

from __future__ import annotations

import logging
import types
from dataclasses import InitVar, dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from crystensor.tensors.harmonic import kron_power, rotate_tensor
from crystensor.tensors.kinds import TensorKind, get_kind

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "POINT_GROUPS",
    "PointGroup",
    "crystal_system_of",
    "independent_component_table",
    "independent_components",
    "normalize_point_group_symbol",
    "point_group_from_symbol",
    "point_group_of",
    "project_to_point_group",
    "projection_residual",
    "symmetry_violation",
]

logger = logging.getLogger(__name__)

#: The 32 crystallographic point groups (Hermann-Mauguin short symbols, spglib's spelling), in
#: the order of the International Tables.
POINT_GROUPS: tuple[str, ...] = (
    "1", "-1",
    "2", "m", "2/m",
    "222", "mm2", "mmm",
    "4", "-4", "4/m", "422", "4mm", "-42m", "4/mmm",
    "3", "-3", "32", "3m", "-3m",
    "6", "-6", "6/m", "622", "6mm", "-6m2", "6/mmm",
    "23", "m-3", "432", "-43m", "m-3m",
)  # fmt: skip

_CRYSTAL_SYSTEMS: dict[str, tuple[str, ...]] = {
    "triclinic": ("1", "-1"),
    "monoclinic": ("2", "m", "2/m"),
    "orthorhombic": ("222", "mm2", "mmm"),
    "tetragonal": ("4", "-4", "4/m", "422", "4mm", "-42m", "4/mmm"),
    "trigonal": ("3", "-3", "32", "3m", "-3m"),
    "hexagonal": ("6", "-6", "6/m", "622", "6mm", "-6m2", "6/mmm"),
    "cubic": ("23", "m-3", "432", "-43m", "m-3m"),
}
_SYSTEM_OF: dict[str, str] = {
    s: system for system, group in _CRYSTAL_SYSTEMS.items() for s in group
}

_ORDERS: dict[str, int] = {
    "1": 1, "-1": 2,
    "2": 2, "m": 2, "2/m": 4,
    "222": 4, "mm2": 4, "mmm": 8,
    "4": 4, "-4": 4, "4/m": 8, "422": 8, "4mm": 8, "-42m": 8, "4/mmm": 16,
    "3": 3, "-3": 6, "32": 6, "3m": 6, "-3m": 12,
    "6": 6, "-6": 6, "6/m": 12, "622": 12, "6mm": 12, "-6m2": 12, "6/mmm": 24,
    "23": 12, "m-3": 24, "432": 24, "-43m": 24, "m-3m": 48,
}  # fmt: skip

# Other spellings of the same classes: other settings of the Hermann-Mauguin symbol (they are
# all built in the one standard setting of point_group_from_symbol), full symbols and the
# Schoenflies symbols (looked up case-insensitively).
_HM_ALIASES: dict[str, str] = {
    "m2m": "mm2", "2mm": "mm2", "2/m2/m2/m": "mmm",
    "-4m2": "-42m", "4/m2/m2/m": "4/mmm",
    "321": "32", "312": "32", "3m1": "3m", "31m": "3m",
    "-3m1": "-3m", "-31m": "-3m", "-32/m": "-3m", "-32/m1": "-3m", "-312/m": "-3m",
    "-62m": "-6m2", "6/m2/m2/m": "6/mmm",
    "m3": "m-3", "2/m-3": "m-3", "m3m": "m-3m", "4/m-32/m": "m-3m",
}  # fmt: skip
_SCHOENFLIES: dict[str, str] = {
    "c1": "1", "ci": "-1", "s2": "-1",
    "c2": "2", "cs": "m", "c1h": "m", "c2h": "2/m",
    "d2": "222", "v": "222", "c2v": "mm2", "d2h": "mmm", "vh": "mmm",
    "c4": "4", "s4": "-4", "c4h": "4/m", "d4": "422", "c4v": "4mm", "d2d": "-42m", "vd": "-42m",
    "d4h": "4/mmm",
    "c3": "3", "c3i": "-3", "s6": "-3", "d3": "32", "c3v": "3m", "d3d": "-3m",
    "c6": "6", "c3h": "-6", "c6h": "6/m", "d6": "622", "c6v": "6mm", "d3h": "-6m2", "d6h": "6/mmm",
    "t": "23", "th": "m-3", "o": "432", "td": "-43m", "oh": "m-3m",
}  # fmt: skip

# Tolerances of the exact-zero / exact-equality clean-up in project_to_point_group. The
# projector P is an orthogonal projector, so every entry satisfies |P_ij| <= 1 and the
# tolerances are absolute. For a group of exactly orthogonal, exactly closed matrices (which
# this module builds) P is exact to ~1e-15, so 1e-9 separates round-off from structure by
# many orders of magnitude.
ZERO_ROW_TOL = 1e-9
"""A component whose projector row has ``max |P_i.| < ZERO_ROW_TOL`` is set to exactly 0."""
EQUAL_ROW_TOL = 1e-9
"""Components whose projector rows satisfy ``max |P_i. - s P_j.| < EQUAL_ROW_TOL`` (``s = +-1``)
are set to exactly ``+-`` their common mean."""

# Groups handed to PointGroup must be orthogonal and closed to this tolerance.
_GROUP_TOL = 1e-6


@dataclass(frozen=True, eq=False)
class PointGroup:
    """A crystallographic point group as Cartesian orthogonal matrices in a given frame.

    Attributes
    ----------
    symbol : str
        Hermann-Mauguin symbol of the class, e.g. ``"4/mmm"`` (spglib's spelling).
    crystal_system : str
        Lowercase crystal system, e.g. ``"tetragonal"``.
    rotations : array ``(order, 3, 3)``
        The distinct operations ``g`` (proper and improper), orthogonal matrices in the
        Cartesian frame of the structure they came from; ``x' = g @ x`` for a column vector
        ``x``. Stored read-only. The identity is always present.
    space_group_number : int, optional
        International number of the space group when the group came from a structure.
    space_group_symbol : str, optional
        International (Hermann-Mauguin) symbol of that space group, e.g. ``"P6_3mc"``.

    Notes
    -----
    Equality is identity (``eq=False``): two groups with the same symbol in different frames are
    different groups, and comparing the matrices up to order and round-off is left to the caller.

    The operations are checked to be orthogonal and closed under multiplication (to 1e-6). The
    closure check costs ``O(|G|^3)`` (10 ms for ``m-3m``), so the constructors of this module
    whose operations are closed by construction (:func:`point_group_of`,
    :func:`point_group_from_symbol`) skip it with the private ``_closed=True``.

    Examples
    --------
    >>> g = point_group_from_symbol("4/mmm")
    >>> g.order, g.crystal_system, g.is_centrosymmetric
    (16, 'tetragonal', True)
    """

    symbol: str
    crystal_system: str
    rotations: np.ndarray
    space_group_number: int | None = None
    space_group_symbol: str | None = None
    _closed: InitVar[bool] = False

    def __post_init__(self, _closed: bool) -> None:
        rot = np.array(self.rotations, dtype=float)
        if rot.ndim != 3 or rot.shape[1:] != (3, 3) or rot.shape[0] == 0:
            raise ValueError(
                f"rotations must have shape (n, 3, 3) with n >= 1, got {rot.shape}; stack the "
                "Cartesian 3x3 operation matrices along the first axis"
            )
        orth = float(np.abs(np.einsum("gji,gjk->gik", rot, rot) - np.eye(3)).max())
        if orth > _GROUP_TOL:
            raise ValueError(
                f"rotations are not orthogonal (max |g^T g - 1| = {orth:.2e} > {_GROUP_TOL}); "
                "give Cartesian operations (not fractional ones), e.g. from point_group_of"
            )
        closure = 0.0 if _closed else _closure_error(rot)
        if closure > _GROUP_TOL:
            raise ValueError(
                f"rotations do not form a group (a product is {closure:.2e} away from every "
                "member); give all distinct operations of the point group, without duplicates"
            )
        known = _ORDERS.get(self.symbol)
        if known is not None and known != len(rot):
            raise ValueError(
                f"point group {self.symbol!r} has order {known}, but {len(rot)} rotations were "
                "given; fix the symbol or the operations"
            )
        rot.setflags(write=False)
        object.__setattr__(self, "rotations", rot)

    @property
    def order(self) -> int:
        """Number of operations ``|G|``."""
        return int(self.rotations.shape[0])

    @property
    def is_centrosymmetric(self) -> bool:
        """Whether the inversion ``-1`` is an operation (then odd-rank tensors vanish)."""
        return bool(np.any(np.abs(self.rotations + np.eye(3)).max(axis=(1, 2)) < 1e-8))

    def rotated(self, rotation: np.ndarray) -> PointGroup:
        """The same group in a frame rotated by the orthogonal matrix ``Q``: ``{Q g Q^T}``.

        If a structure is rotated by ``Q`` (``x -> Q x``), its point group is ``G.rotated(Q)``.

        >>> import numpy as np
        >>> q = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
        >>> point_group_from_symbol("mm2").rotated(q).order
        4
        """
        q = np.asarray(rotation, dtype=float)
        if q.shape != (3, 3) or np.abs(q.T @ q - np.eye(3)).max() > _GROUP_TOL:
            raise ValueError(
                f"rotation must be an orthogonal 3x3 matrix, got shape {q.shape}; orthogonalise "
                "it first (e.g. the polar factor of its SVD)"
            )
        return PointGroup(
            symbol=self.symbol,
            crystal_system=self.crystal_system,
            rotations=q @ self.rotations @ q.T,
            space_group_number=self.space_group_number,
            space_group_symbol=self.space_group_symbol,
        )

    def __repr__(self) -> str:
        extra = f", space_group={self.space_group_symbol!r}" if self.space_group_symbol else ""
        return (
            f"PointGroup(symbol={self.symbol!r}, crystal_system={self.crystal_system!r}, "
            f"order={self.order}{extra})"
        )


def _closure_error(rot: np.ndarray) -> float:
    """Largest distance from a product ``g h`` to the nearest member of ``rot`` (max-abs norm)."""
    products = np.einsum("gij,hjk->ghik", rot, rot).reshape(-1, 1, 9)
    dist = np.abs(products - rot.reshape(1, -1, 9)).max(axis=2)  # (n*n, n)
    return float(dist.min(axis=1).max())


# ---------------------------------------------------------------------------------------------
# Symbols and the 32 classes in their standard setting
# ---------------------------------------------------------------------------------------------


def normalize_point_group_symbol(symbol: str) -> str:
    """The canonical (spglib) Hermann-Mauguin symbol for a spelling of a crystal class.

    Accepts the short symbols of :data:`POINT_GROUPS`, other settings (``"-4m2"``, ``"31m"``,
    ``"m2m"``), full symbols (``"4/m-32/m"``, ``"6/m2/m2/m"``), ``"m3m"``-style spellings without
    the bar, and Schoenflies symbols (``"D4h"``, ``"C6v"``, ``"Td"``, case-insensitive).

    >>> normalize_point_group_symbol("-4m2"), normalize_point_group_symbol("D6h")
    ('-42m', '6/mmm')
    """
    if not isinstance(symbol, str):
        raise ValueError(f"point-group symbol must be a string, got {symbol!r}")
    s = "".join(symbol.split())
    if s in _SYSTEM_OF:
        return s
    if s in _HM_ALIASES:
        return _HM_ALIASES[s]
    if s.lower() in _SCHOENFLIES:
        return _SCHOENFLIES[s.lower()]
    raise ValueError(
        f"unknown point-group symbol {symbol!r}; use a Hermann-Mauguin symbol such as "
        f"{', '.join(POINT_GROUPS)} (or a Schoenflies symbol such as 'D4h')"
    )


def crystal_system_of(symbol: str) -> str:
    """Crystal system (lowercase) of a crystal class.

    >>> crystal_system_of("-3m"), crystal_system_of("6mm")
    ('trigonal', 'hexagonal')
    """
    return _SYSTEM_OF[normalize_point_group_symbol(symbol)]


def _rot_z(n: int) -> np.ndarray:
    """Proper ``n``-fold rotation about z; cos/sin from exact values so 4-folds stay integer."""
    half_sqrt3 = np.sqrt(3.0) / 2
    c, s = {2: (-1.0, 0.0), 3: (-0.5, half_sqrt3), 4: (0.0, 1.0), 6: (0.5, half_sqrt3)}[n]
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


_E = np.eye(3)
_INV = -np.eye(3)
_C2X = np.diag([1.0, -1.0, -1.0])  # 2-fold along x
_MX = np.diag([-1.0, 1.0, 1.0])  # mirror normal to x
_MZ = np.diag([1.0, 1.0, -1.0])  # mirror normal to z
_C3XYZ = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # 3-fold along [111]
_C2Z, _C3Z, _C4Z, _C6Z = (_rot_z(n) for n in (2, 3, 4, 6))

# Generators in the standard Cartesian setting: the principal axis (2-fold of the monoclinic
# classes, n-fold otherwise) along z; the secondary 2-fold axes / mirror normals along x (for
# trigonal and hexagonal classes x is the hexagonal a axis: 321, 3m1, -3m1, -6m2 with the mirror
# normal to a); -42m has its 2-fold axes along x and y; cubic axes along x, y, z.
_GENERATORS: dict[str, tuple[np.ndarray, ...]] = {
    "1": (),
    "-1": (_INV,),
    "2": (_C2Z,),
    "m": (_MZ,),
    "2/m": (_C2Z, _INV),
    "222": (_C2Z, _C2X),
    "mm2": (_C2Z, _MX),
    "mmm": (_C2Z, _C2X, _INV),
    "4": (_C4Z,),
    "-4": (-_C4Z,),
    "4/m": (_C4Z, _INV),
    "422": (_C4Z, _C2X),
    "4mm": (_C4Z, _MX),
    "-42m": (-_C4Z, _C2X),
    "4/mmm": (_C4Z, _C2X, _INV),
    "3": (_C3Z,),
    "-3": (_C3Z, _INV),
    "32": (_C3Z, _C2X),
    "3m": (_C3Z, _MX),
    "-3m": (_C3Z, _C2X, _INV),
    "6": (_C6Z,),
    "-6": (-_C6Z,),
    "6/m": (_C6Z, _INV),
    "622": (_C6Z, _C2X),
    "6mm": (_C6Z, _MX),
    "-6m2": (-_C6Z, _MX),
    "6/mmm": (_C6Z, _C2X, _INV),
    "23": (_C2Z, _C2X, _C3XYZ),
    "m-3": (_C2Z, _C2X, _C3XYZ, _INV),
    "432": (_C4Z, _C3XYZ),
    "-43m": (-_C4Z, _C3XYZ),
    "m-3m": (_C4Z, _C3XYZ, _INV),
}


def _generate(generators: tuple[np.ndarray, ...]) -> np.ndarray:
    """All products of the generators (the group they generate), identity first."""
    group = [_E]
    frontier = [_E]
    while frontier:
        new = []
        for h in frontier:
            for g in generators:
                p = g @ h
                if all(np.abs(p - q).max() > 1e-8 for q in group):
                    group.append(p)
                    new.append(p)
        frontier = new
    return np.array(group)


@cache
def _standard_rotations(symbol: str) -> np.ndarray:
    rot = _generate(_GENERATORS[symbol])
    # Snap round-off (e.g. 0.5000000000000001) to the exact values of the standard setting.
    exact = np.array([0.0, 0.5, 1.0, np.sqrt(3.0) / 2])
    mag = np.abs(rot)
    nearest = exact[np.abs(mag[..., None] - exact).argmin(axis=-1)]
    rot = np.sign(rot) * nearest
    rot.setflags(write=False)
    return rot


def point_group_from_symbol(symbol: str) -> PointGroup:
    """One of the 32 crystallographic point groups in the standard Cartesian setting.

    The setting: the principal axis along z (the 2-fold axis or mirror normal of the monoclinic
    classes too); secondary 2-fold axes and mirror normals along x (``32`` = 321, ``3m`` = 3m1,
    ``-3m`` = -3m1, ``-6m2`` with the mirror normal to x, ``-42m`` with 2-fold axes along x and
    y); the hexagonal axes ``a = (1, 0, 0)``, ``b = (-1/2, sqrt(3)/2, 0)``, ``c || z``; the
    cubic axes along x, y, z. Other settings of a class (``-4m2``, ``31m``, ...) give the same
    standard setting.

    Parameters
    ----------
    symbol : str
        Hermann-Mauguin (any spelling accepted by :func:`normalize_point_group_symbol`) or
        Schoenflies symbol.

    Returns
    -------
    PointGroup
        With exact entries in ``{0, +-1/2, +-1, +-sqrt(3)/2}``.

    Examples
    --------
    >>> g = point_group_from_symbol("6mm")
    >>> g.symbol, g.order, g.crystal_system
    ('6mm', 12, 'hexagonal')
    >>> point_group_from_symbol("Oh").order
    48
    """
    canonical = normalize_point_group_symbol(symbol)
    return PointGroup(
        symbol=canonical,
        crystal_system=_SYSTEM_OF[canonical],
        rotations=_standard_rotations(canonical),
        _closed=True,  # generated from the generators, then snapped to exact values
    )


def _as_group(group: PointGroup | str) -> PointGroup:
    if isinstance(group, PointGroup):
        return group
    if isinstance(group, str):
        return point_group_from_symbol(group)
    raise ValueError(
        f"expected a PointGroup or a point-group symbol, got {type(group).__name__}; build one "
        "with point_group_of(structure) or point_group_from_symbol('4/mmm')"
    )


# ---------------------------------------------------------------------------------------------
# The point group of a structure
# ---------------------------------------------------------------------------------------------


def _sqrtm_spd(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``m^(1/2)`` and ``m^(-1/2)`` of a symmetric positive-definite matrix."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    if w.min() <= 0:
        raise ValueError(f"matrix is not positive definite (eigenvalues {w}); bad lattice?")
    return (v * np.sqrt(w)) @ v.T, (v / np.sqrt(w)) @ v.T


def _exact_cartesian_operations(
    basis: np.ndarray, frac_rotations: np.ndarray
) -> tuple[np.ndarray, float]:
    """Exactly orthogonal, exactly closed Cartesian operations from integer ones, and the strain.

    ``basis`` holds lattice vectors as columns (``x = A f``) and ``frac_rotations`` the integer
    matrices ``W`` of a point group in that basis (a closed set). The naive ``A W A^-1`` is
    orthogonal only as far as the relaxed lattice is ideal (errors up to symprec, ~1e-3).

    Why this construction rather than orthogonalising each ``A W A^-1`` separately: polar
    factors of the individual matrices are orthogonal but their products miss the group by
    O(strain^2) (~1e-6), so the group would not close to 1e-12. Instead the metric
    ``M = A^T A`` is averaged over the group, ``M_s = (1/|G|) sum_W W^T M W``, which is exactly
    invariant (``W^T M_s W = M_s``). The ideal lattice ``A_s = K^(1/2) A`` with
    ``K = A^-T M_s A^-1`` has metric ``M_s`` and differs from the real lattice by a pure
    (symmetric) strain ``A = K^(-1/2) A_s``: it is the best-fitting ideal lattice with no rotation
    relative to the structure, so the frame is the structure's own. Then
    ``g = A_s W A_s^-1 = K^(1/2) (A W A^-1) K^(-1/2)`` satisfies ``g^T g = 1`` exactly (in exact
    arithmetic) and ``g_1 g_2 = A_s W_1 W_2 A_s^-1`` closes exactly because the integer ``W``
    do; in floating point both hold to ~1e-15. ``K`` does not depend on the choice of basis, so
    a supercell gives the same operations. The strain returned is ``max |K^(1/2) - 1|``.
    """
    a = np.asarray(basis, dtype=float)
    w = np.asarray(frac_rotations, dtype=float)
    metric = a.T @ a
    metric_sym = np.einsum("gji,jk,gkl->il", w, metric, w) / len(w)
    a_inv = np.linalg.inv(a)
    k_half, k_half_inv = _sqrtm_spd(a_inv.T @ metric_sym @ a_inv)
    strain = float(np.abs(k_half - np.eye(3)).max())
    naive = a @ w @ a_inv
    rot = k_half @ naive @ k_half_inv
    # Remove the last round-off so the matrices are orthogonal to machine precision.
    u, _, vt = np.linalg.svd(rot)
    return u @ vt, strain


def point_group_of(
    structure: Structure, symprec: float = 0.01, angle_tolerance: float | None = None
) -> PointGroup:
    """Point group of a structure, in the Cartesian frame of that structure.

    Symmetry is found on the cell pymatgen's ``SpacegroupAnalyzer`` would give spglib (lattice,
    fractional coordinates, one type per distinct site species): by moyo (``moyopy``) with the
    distance tolerance ``symprec`` alone, or, given an ``angle_tolerance``, by spglib with both
    (pymatgen's choice, 5 degrees; the data importers use it). The two agree on 5187 of the 5199
    structures of the shared tensor datasets; the 12 others sit at the tolerance edge (see
    :func:`_find_symmetry`). The integer rotations
    of the space-group type (spglib's database for the detected Hall number, complete even when
    the input cell is a supercell whose lattice has lower symmetry than the crystal) are written
    in the conventional basis ``A_c = A P^-1`` of the structure (``A`` the structure's lattice
    vectors as columns, ``P^-1`` the search's transformation; not idealised, so in the
    structure's own orientation) and made exactly orthogonal and closed by averaging the metric
    over the group (see ``_exact_cartesian_operations``): an operation ``g`` maps Cartesian
    positions ``x -> g x + t`` of this structure onto equivalent atoms up to the relaxation noise.

    Parameters
    ----------
    structure : pymatgen.core.Structure
        Lattice in Angstrom; any orientation, any (super)cell.
    symprec : float
        Distance tolerance in Angstrom (0.01 as in the data README; 0.1 for loosely relaxed
        structures).
    angle_tolerance : float, optional
        Angle tolerance in degrees; given, spglib searches with it and ``symprec``.

    Returns
    -------
    PointGroup
        ``rotations`` ``(order, 3, 3)``, orthogonal and closed to ~1e-15, plus the space group.

    Raises
    ------
    ValueError
        If ``structure`` is not a pymatgen structure or no symmetry is found.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"] * 4,
    ...     [[0, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0],
    ...      [0.5, 0, 0.5], [0, 0, 0.5], [0, 0.5, 0.5], [0.5, 0.5, 0.5]])
    >>> g = point_group_of(nacl)
    >>> g.symbol, g.order, g.space_group_symbol
    ('m-3m', 48, 'Fm-3m')
    """
    if not hasattr(structure, "lattice") or not hasattr(structure, "frac_coords"):
        raise ValueError(
            f"expected a pymatgen Structure, got {type(structure).__name__}; convert it first "
            "(e.g. pymatgen.io.ase.AseAtomsAdaptor.get_structure(atoms))"
        )
    found = _find_symmetry(_spglib_cell(structure), symprec, angle_tolerance)
    return _point_group_from_found(structure, found, symprec)


class _FoundSymmetry(NamedTuple):
    """What :func:`_find_symmetry` found: the point group's parts, before any logging."""

    symbol: str
    rotations: np.ndarray  # (order, 3, 3), exact (see _exact_cartesian_operations)
    strain: float  # of the lattice relative to its ideal symmetric form
    space_group_number: int
    space_group_symbol: str


def _spglib_cell(structure: Structure) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The cell that pymatgen's ``SpacegroupAnalyzer`` gives spglib.

    Lattice vectors as rows, fractional coordinates, and one type number per distinct site
    species, in order of appearance.
    """
    types: dict = {}
    numbers = [types.setdefault(site.species, len(types) + 1) for site in structure]
    return (
        np.asarray(structure.lattice.matrix, dtype=float),
        np.asarray(structure.frac_coords, dtype=float),
        numbers,
    )


def _find_symmetry(
    cell: tuple[np.ndarray, np.ndarray, list[int]],
    symprec: float,
    angle_tolerance: float | None = None,
) -> _FoundSymmetry | str:
    """The point group of ``cell`` as parts, or why no symmetry was found (``""``: no reason).

    The expensive part of :func:`point_group_of`. Without ``angle_tolerance`` the search is
    moyo's (``moyopy``, by the spglib developers), in spglib's setting (``Setting.spglib()``:
    spglib's Hall numbers), with the distance tolerance alone; if moyo raises, spglib searches
    with the distance tolerance alone (``angle_tolerance=-1``). With one, spglib searches with
    both. Nothing is logged here (:func:`point_group_of` logs what it found).

    Why moyo: on the 1181 matminer elastic structures it takes 0.6 ms per structure against
    spglib's 4.1 ms (1 against 10-14 ms on a one-atom fcc cell), less than a sixth of
    ``crystensor predict``'s time per structure where spglib's was a third. Over the 5199
    distinct structures of the shared tensor datasets it finds the same space group and the
    same Cartesian operations as spglib with ``angle_tolerance=5`` for all but 12, and each of
    those 12 sits at the tolerance edge: moyo's answer changes between symprec/2 and 2 symprec
    for all 12, spglib's for 11 (moyo finds the higher group for 7, the lower for 5;
    ``benchmarks/symmetry_search.py``). moyo is not given an angle tolerance: with one (5
    degrees) it did not return for one structure of the dielectric set (mp-9947).
    """
    try:
        if angle_tolerance is None:
            try:
                hall_number, linear = _moyo_search(cell, symprec)
            except Exception:  # moyo's errors carry only a message; spglib decides then
                hall_number, linear = _spglib_search(cell, symprec, -1.0)
        else:
            hall_number, linear = _spglib_search(cell, symprec, angle_tolerance)
    except _NoSymmetry as exc:
        return str(exc)
    symbol, number, international = _space_group_type(hall_number)
    frac = _database_rotations(hall_number)
    if len(frac) != _ORDERS[symbol]:
        raise RuntimeError(
            f"Hall number {hall_number} gives {len(frac)} rotations for point group {symbol} of "
            f"order {_ORDERS[symbol]}"
        )
    conventional = np.asarray(cell[0], float).T @ linear  # columns = conventional a, b, c
    rotations, strain = _exact_cartesian_operations(conventional, frac)
    return _FoundSymmetry(symbol, rotations, strain, number, international)


class _NoSymmetry(Exception):
    """spglib found no symmetry; the message is its reason (may be empty)."""


def _moyo_search(
    cell: tuple[np.ndarray, np.ndarray, list[int]], symprec: float
) -> tuple[int, np.ndarray]:
    """Hall number (spglib's numbering) and ``L`` with conventional basis = lattice columns @ L."""
    moyopy = _moyopy()
    lattice_rows, frac_coords, numbers = cell
    dataset = moyopy.MoyoDataset(
        moyopy.Cell(
            np.asarray(lattice_rows, float).tolist(),
            np.asarray(frac_coords, float).tolist(),
            [int(n) for n in numbers],
        ),
        symprec=float(symprec),
        setting=moyopy.Setting.spglib(),
    )
    return int(dataset.hall_number), np.asarray(dataset.std_linear, dtype=float)


@cache
def _moyopy() -> types.ModuleType:
    """moyopy, imported once, with its logger quietened once (setting a level clears the
    cache of every logger, not work for each structure)."""
    import moyopy

    # moyo logs through Python's logging: a warning for every supercell (operations it leaves
    # out of dataset.operations, which are not used here) and per-step debug lines
    logging.getLogger("moyo").setLevel(logging.ERROR)
    return moyopy


def _spglib_search(
    cell: tuple[np.ndarray, np.ndarray, list[int]], symprec: float, angle_tolerance: float
) -> tuple[int, np.ndarray]:
    """:func:`_moyo_search` by spglib; :class:`_NoSymmetry` if it finds none."""
    import spglib

    try:
        dataset = spglib.get_symmetry_dataset(
            cell, symprec=symprec, angle_tolerance=angle_tolerance
        )
    except Exception as exc:  # the error type differs between spglib releases
        raise _NoSymmetry(str(exc) or type(exc).__name__) from None
    if dataset is None:
        raise _NoSymmetry("")
    return int(dataset.hall_number), np.linalg.inv(np.asarray(dataset.transformation_matrix, float))


@cache
def _space_group_type(hall_number: int) -> tuple[str, int, str]:
    """(point group symbol, space group number, short international symbol) of a Hall number."""
    import spglib

    found = spglib.get_spacegroup_type(hall_number)
    return (
        normalize_point_group_symbol(found.pointgroup_international),
        int(found.number),
        str(found.international_short),
    )


def _point_group_from_found(
    structure: Structure, found: _FoundSymmetry | str, symprec: float
) -> PointGroup:
    """The rest of :func:`point_group_of`, from what :func:`_find_symmetry` found."""
    if isinstance(found, str):
        raise ValueError(
            f"no symmetry found for {structure.formula} with symprec={symprec}; try a "
            "different symprec (e.g. 0.1)" + (f": {found}" if found else "")
        )
    logger.debug("lattice is %.2e (max strain component) away from its ideal form", found.strain)
    # Relaxed cells are ideal to ~1e-6; a percent-level strain means spglib's tolerance has
    # accepted a genuinely lower-symmetry lattice (e.g. a tetragonal cell found cubic).
    if found.strain > 1e-2:
        logger.warning(
            "the lattice deviates from its symmetric form by a strain of %.3f; the symmetry "
            "tolerance may be too loose (try a smaller symprec)",
            found.strain,
        )
    group = PointGroup(
        symbol=found.symbol,
        crystal_system=_SYSTEM_OF[found.symbol],
        rotations=found.rotations,
        space_group_number=found.space_group_number,
        space_group_symbol=found.space_group_symbol,
        _closed=True,  # g1 g2 = A_s W1 W2 A_s^-1 with the W closed (see point_group_of)
    )
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug(
            "%s: space group %s (%d), point group %s of order %d",
            structure.formula,
            group.space_group_symbol,
            group.space_group_number,
            group.symbol,
            group.order,
        )
    return group


@cache
def _database_rotations(hall_number: int) -> np.ndarray:
    """The distinct integer rotations of spglib's Hall setting ``hall_number``, identity first."""
    import spglib

    database = spglib.get_symmetry_from_database(hall_number)
    frac = np.unique(np.asarray(database["rotations"], dtype=int), axis=0)
    identity = np.all(frac == np.eye(3, dtype=int), axis=(1, 2))
    frac = np.concatenate([frac[identity], frac[~identity]])
    frac.setflags(write=False)
    return frac


# ---------------------------------------------------------------------------------------------
# Projection onto the invariant subspace
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Projector:
    """The group-average projector on ``3**rank`` components and its exact clean-up plan."""

    matrix: np.ndarray  # (N, N), N = 3**rank
    zero: np.ndarray  # (n_zero,) components that vanish for every invariant tensor
    order: np.ndarray  # (n_rest,) the other components, grouped class by class
    signs: np.ndarray  # (n_rest,) +-1 relative to the first member of the class
    starts: np.ndarray  # (n_classes,) start of each class in ``order``
    counts: np.ndarray  # (n_classes,) size of each class
    class_of: np.ndarray  # (n_rest,) class index of each entry of ``order``


@lru_cache(maxsize=128)
def _projector_cached(key: bytes, n_ops: int, rank: int) -> _Projector:
    rotations = np.frombuffer(key, dtype=float).reshape(n_ops, 3, 3)
    # P = mean_g g^(x)rank, as (g^(x)h) (x) (g^(x)(rank-h)) summed over g in one contraction:
    # 3x faster for rank 4 than forming every g^(x)4 (81 x 81) first.
    half = rank // 2
    first, second = kron_power(rotations, rank - half), kron_power(rotations, half)
    p = np.einsum("gab,gij->aibj", first, second).reshape(3**rank, 3**rank) / n_ops
    is_zero = np.abs(p).max(axis=1) < ZERO_ROW_TOL
    # Group the other rows into classes of rows equal up to a sign; comparing with both signs
    # avoids choosing a canonical sign, which round-off could flip between equal rows.
    reps: list[int] = []
    members: list[list[int]] = []
    member_signs: list[list[float]] = []
    for i in np.flatnonzero(~is_zero):
        if reps:
            rep_rows = p[reps]
            plus = np.abs(rep_rows - p[i]).max(axis=1)
            minus = np.abs(rep_rows + p[i]).max(axis=1)
            c = int(np.argmin(np.minimum(plus, minus)))
            if min(plus[c], minus[c]) < EQUAL_ROW_TOL:
                members[c].append(int(i))
                member_signs[c].append(1.0 if plus[c] <= minus[c] else -1.0)
                continue
        reps.append(int(i))
        members.append([int(i)])
        member_signs.append([1.0])
    counts = np.array([len(m) for m in members], dtype=int)
    order = np.array([i for m in members for i in m], dtype=int)
    signs = np.array([s for m in member_signs for s in m], dtype=float)
    starts = np.cumsum(counts) - counts
    p.setflags(write=False)
    return _Projector(
        matrix=p,
        zero=np.flatnonzero(is_zero),
        order=order,
        signs=signs,
        starts=starts,
        counts=counts,
        class_of=np.repeat(np.arange(len(counts)), counts),
    )


def _projector(group: PointGroup, rank: int) -> _Projector:
    rot = np.ascontiguousarray(group.rotations, dtype=float)
    return _projector_cached(rot.tobytes(), len(rot), rank)


def _check_tensor(tensor: np.ndarray, rank: int | None) -> tuple[np.ndarray, int]:
    t = np.asarray(tensor, dtype=float)
    rank = t.ndim if rank is None else int(rank)
    if rank < 0 or rank > t.ndim or t.shape[t.ndim - rank :] != (3,) * rank:
        raise ValueError(
            f"expected a Cartesian tensor of rank {rank} with trailing shape {(3,) * rank}, got "
            f"shape {t.shape}; convert Voigt forms with crystensor.tensors.voigt.from_voigt and "
            "pass rank= when there are batch axes"
        )
    return t, rank


def project_to_point_group(
    tensor: np.ndarray, group: PointGroup | str, rank: int | None = None
) -> np.ndarray:
    """Orthogonal projection of a Cartesian tensor onto the tensors invariant under ``group``.

    .. math::

        P(T) = \\frac{1}{|G|} \\sum_{g \\in G} g \\cdot T,
        \\qquad (g \\cdot T)_{a_1 \\dots a_n} = g_{a_1 i_1} \\cdots g_{a_n i_n} T_{i_1 \\dots i_n}.

    Evaluated as ``P @ T.ravel()`` with the ``3**n x 3**n`` projector matrix
    ``P = (1/|G|) sum_g g^(x)n`` (cached per group and rank). Then components are made exact:
    component ``i`` whose projector row is numerically zero (``max_j |P_ij| < ZERO_ROW_TOL``,
    1e-9; ``|P_ij| <= 1`` for an orthogonal projector) is set to exactly ``0.0``, and components
    whose rows are equal up to a sign (``max_j |P_ij - s P_kj| < EQUAL_ROW_TOL``, 1e-9) are set
    to exactly ``+-`` their common mean, so e.g. ``C11 == C22 == C33`` holds bit for bit for a
    cubic group. The result is idempotent and equivariant,
    ``P_{Q G Q^T}(Q . T) = Q . P_G(T)`` for any orthogonal ``Q``.

    Parameters
    ----------
    tensor : array ``(..., 3, ..., 3)``
        Cartesian tensor of rank ``n`` (any rank, any index symmetry) with optional leading
        batch axes. Units are kept.
    group : PointGroup or str
        The group, in the frame of the tensor; a symbol means the standard setting of
        :func:`point_group_from_symbol`.
    rank : int, optional
        Tensor rank; needed only with batch axes (default ``tensor.ndim``).

    Returns
    -------
    array, same shape as ``tensor``

    Examples
    --------
    >>> t = np.arange(9.0).reshape(3, 3)
    >>> project_to_point_group(t, "4/mmm")
    array([[2., 0., 0.],
           [0., 2., 0.],
           [0., 0., 8.]])
    """
    g = _as_group(group)
    t, rank = _check_tensor(tensor, rank)
    proj = _projector(g, rank)
    lead = t.shape[: t.ndim - rank]
    flat = t.reshape(*lead, 3**rank)
    projected = flat @ proj.matrix.T
    out = np.empty_like(projected)
    out[..., proj.zero] = 0.0
    if len(proj.order):
        values = projected[..., proj.order] * proj.signs
        means = np.add.reduceat(values, proj.starts, axis=-1) / proj.counts
        out[..., proj.order] = means[..., proj.class_of] * proj.signs
    return out.reshape(t.shape)


def symmetry_violation(tensor: np.ndarray, group: PointGroup | str) -> float:
    """Largest change of a tensor under the group, relative to its largest component.

    .. math::

        v(T) = \\frac{\\max_{g \\in G} \\max_{a} |(g \\cdot T)_a - T_a|}{\\max_a |T_a|}

    (0 for a zero tensor). This is the consistency check of the data README: tensors consistent
    with their structure's frame have ``v`` of a few percent at most (DFT noise), a tensor in the
    wrong frame typically ``v ~ 1``.

    Parameters
    ----------
    tensor : array ``(3, ..., 3)``
        One Cartesian tensor (no batch axes), rank = ``tensor.ndim``.
    group : PointGroup or str
        In the frame of the tensor.

    Returns
    -------
    float
        Dimensionless.

    Examples
    --------
    >>> symmetry_violation(np.diag([1.0, 1.0, 2.0]), "4/mmm")
    0.0
    >>> symmetry_violation(np.diag([1.0, 1.5, 2.0]), "4mm")
    0.25
    """
    g = _as_group(group)
    t, _ = _check_tensor(tensor, None)
    scale = float(np.abs(t).max()) if t.size else 0.0
    if scale == 0.0:
        return 0.0
    return float(np.abs(rotate_tensor(t, g.rotations) - t).max() / scale)


def projection_residual(tensor: np.ndarray, group: PointGroup | str) -> float:
    """Relative Frobenius norm of the non-invariant part, ``||T - P(T)||_F / ||T||_F``.

    ``P`` is :func:`project_to_point_group`; 0 for a zero tensor, at most 1.

    Parameters
    ----------
    tensor : array ``(3, ..., 3)``
        One Cartesian tensor, rank = ``tensor.ndim``.
    group : PointGroup or str

    Returns
    -------
    float

    Examples
    --------
    >>> round(projection_residual(np.diag([1.0, 3.0, 0.0]), "4/mmm"), 6)
    0.447214
    """
    t, _ = _check_tensor(tensor, None)
    norm = float(np.linalg.norm(t))
    if norm == 0.0:
        return 0.0
    return float(np.linalg.norm(t - project_to_point_group(t, group)) / norm)


# ---------------------------------------------------------------------------------------------
# Counting independent components
# ---------------------------------------------------------------------------------------------


def _index_projector(kind: TensorKind) -> np.ndarray:
    size = 3**kind.rank
    basis = np.eye(size).reshape(size, *kind.cartesian_shape)
    return kind.symmetrize_indices(basis).reshape(size, size)


def independent_components(kind: str | TensorKind, group: PointGroup | str) -> int:
    """Number of independent components of a tensor kind invariant under a point group.

    The dimension of the space of tensors with both the kind's index symmetry and the group's
    symmetry: ``rank(P_G P_S)`` with ``P_G`` the group-average projector and ``P_S`` the
    average over the kind's index permutations (the two commute, so ``P_G P_S`` is itself a
    projector).

    Parameters
    ----------
    kind : str or TensorKind
        ``"dielectric"``, ``"piezoelectric"``, ``"elastic"`` (or ``"scalar"``), see
        :mod:`crystensor.tensors.kinds`.
    group : PointGroup or str

    Returns
    -------
    int

    Examples
    --------
    >>> independent_components("elastic", "6/mmm"), independent_components("piezoelectric", "-43m")
    (5, 1)
    """
    k = get_kind(kind) if isinstance(kind, str) else kind
    if not isinstance(k, TensorKind):
        raise ValueError(f"expected a kind name or TensorKind, got {type(kind).__name__}")
    g = _as_group(group)
    product = _projector(g, k.rank).matrix @ _index_projector(k)
    return int(np.linalg.matrix_rank(product, tol=1e-6))


@lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, int]]:
    return {
        symbol: {
            kind: independent_components(kind, symbol)
            for kind in ("dielectric", "piezoelectric", "elastic")
        }
        for symbol in POINT_GROUPS
    }


def independent_component_table() -> dict[str, dict[str, int]]:
    """Independent components of the dielectric, piezoelectric and elastic tensors per class.

    Returns
    -------
    dict
        ``{symbol: {"dielectric": n, "piezoelectric": n, "elastic": n}}`` for the 32 symbols of
        :data:`POINT_GROUPS`, in that order.

    Examples
    --------
    >>> independent_component_table()["-42m"]
    {'dielectric': 2, 'piezoelectric': 2, 'elastic': 6}
    """
    return {symbol: dict(counts) for symbol, counts in _table().items()}
