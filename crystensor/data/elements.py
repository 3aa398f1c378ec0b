"""The paper's atom features: one fixed-length vector per element, looked up by atomic number.

Feature set ``paper-v1`` (:data:`FEATURE_SET`), :data:`FEATURE_DIM` = 131 columns, in this order:

=====================  =====  ==============================================================
block                  width  content
=====================  =====  ==============================================================
``Z=1`` .. ``Z=94``     94    one-hot atomic number, H .. Pu (:data:`Z_MAX`)
``group=1`` .. ``18``   18    one-hot group (pymatgen's convention: lanthanides and
                              actinides La..Yb, Ac..Pu are in group 3, He in group 18)
``period=1`` .. ``7``   7     one-hot period (row of the periodic table)
``block=s,p,d,f``       4     one-hot block as pymatgen assigns it (He is "p", La..Yb and
                              Ac..Pu "f", Lu "d")
continuous              6     standardised ``(v - mean) / std`` (see below)
missing indicators      2     1.0 where electronegativity / atomic radius is undefined
=====================  =====  ==============================================================

Continuous features (raw values from pymatgen's element data; units before standardisation):

=======================  ========  ==========================================================
``electronegativity``    --        Pauling electronegativity
``atomic_radius``        Angstrom  empirical atomic radius (Slater)
``valence_electrons``    count     see :func:`valence_electrons`
``electron_affinity``    eV        first electron affinity (negative: anion unbound)
``ionization_energy``    eV        first ionisation energy
``atomic_mass``          amu       standard atomic weight
=======================  ========  ==========================================================

The mean and the (population) standard deviation of each continuous feature are taken over the
94 supported elements that have a value, one element one vote (not weighted by how often an
element occurs in a data set), so they do not depend on the training data.

Missing values. pymatgen has no Pauling electronegativity for He, Ne and Ar (none exists: they
form no bonds in Pauling's thermochemical scale) and no empirical atomic radius for He, Ne, Kr,
Xe, At, Rn and Fr. A missing value is set to the mean (0 after standardisation) and flagged by
the matching indicator column (``electronegativity_missing``, ``atomic_radius_missing``).
Borrowing a neighbour's value or another radius scale would invent a number with no physical
meaning and put it on the same axis as measured ones; the indicator instead lets the network tell
"unknown" from "average", and the one-hot ``Z`` already identifies these (rare) elements.

The table is built from pymatgen on first use and cached; :func:`feature_table_sha256` hashes it
so a graph store or checkpoint can notice when a different pymatgen release changed the data.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from collections.abc import Iterable
from functools import cache
from typing import Any

import numpy as np

from crystensor.errors import InputError

__all__ = [
    "BLOCKS",
    "CONTINUOUS_FEATURES",
    "FEATURE_DIM",
    "FEATURE_NAMES",
    "FEATURE_SET",
    "Z_MAX",
    "check_species",
    "feature_statistics",
    "feature_table",
    "feature_table_sha256",
    "node_features",
    "raw_properties",
    "valence_electrons",
]

FEATURE_SET = "paper-v1"
Z_MAX = 94
N_GROUPS = 18
N_PERIODS = 7
BLOCKS = ("s", "p", "d", "f")
CONTINUOUS_FEATURES = (
    "electronegativity",
    "atomic_radius",
    "valence_electrons",
    "electron_affinity",
    "ionization_energy",
    "atomic_mass",
)
MISSING_INDICATORS = ("electronegativity", "atomic_radius")

FEATURE_NAMES: tuple[str, ...] = (
    *(f"Z={z}" for z in range(1, Z_MAX + 1)),
    *(f"group={g}" for g in range(1, N_GROUPS + 1)),
    *(f"period={p}" for p in range(1, N_PERIODS + 1)),
    *(f"block={b}" for b in BLOCKS),
    *CONTINUOUS_FEATURES,
    *(f"{name}_missing" for name in MISSING_INDICATORS),
)
FEATURE_DIM = len(FEATURE_NAMES)

_SUBSHELL = re.compile(r"^(\d+)([spdf])(\d+)$")


def _element(z_or_symbol: Any):
    from pymatgen.core.periodic_table import Element

    if isinstance(z_or_symbol, int | np.integer):
        return Element.from_Z(int(z_or_symbol))
    return Element(str(z_or_symbol))


def valence_electrons(element: int | str) -> int:
    """Number of valence electrons of an element, as the ``paper-v1`` features count them.

    Definition: the electrons outside the preceding noble-gas core (the bracket in pymatgen's
    ``electronic_structure``, e.g. ``[Ar].3d10.4s2``), minus every *completely filled* ``d10``
    or ``f14`` subshell that lies below an occupied ``s`` shell of higher principal quantum
    number. Such filled subshells behave as part of the core (Zn ``3d10 4s2`` -> 2, Ga -> 3,
    Yb ``4f14 6s2`` -> 2, Hf -> 4), while open ``d``/``f`` shells count in full (Fe
    ``3d6 4s2`` -> 8, U ``5f3 6d1 7s2`` -> 6). Pd (``[Kr] 4d10``, no ``5s``) keeps its 10;
    the noble gases have 8 (He 2).

    Parameters
    ----------
    element : int or str
        Atomic number or symbol.

    Examples
    --------
    >>> [valence_electrons(s) for s in ("H", "O", "Fe", "Cu", "Zn", "Ga", "Pd", "Yb", "U")]
    [1, 6, 8, 1, 2, 3, 10, 2, 6]
    """
    config = _element(element).electronic_structure
    shells = []
    for part in config.split("."):
        if part.startswith("["):
            continue  # the noble-gas core
        match = _SUBSHELL.match(part)
        if match is None:
            raise ValueError(f"cannot parse the electron configuration {config!r}")
        shells.append((int(match[1]), match[2], int(match[3])))
    outer_s = max((n for n, l, _ in shells if l == "s"), default=0)
    return sum(
        occ for n, l, occ in shells if not ((l, occ) in (("d", 10), ("f", 14)) and n < outer_s)
    )


@cache
def raw_properties() -> dict[str, np.ndarray]:
    """Raw element data for Z = 1 .. :data:`Z_MAX`, before one-hot encoding and scaling.

    Returns
    -------
    dict of str to array ``(Z_MAX,)``
        ``group``, ``period`` (int), ``block`` (str) and the six :data:`CONTINUOUS_FEATURES`
        (float, NaN where pymatgen has no value); row ``k`` is element ``Z = k + 1``.
    """
    rows: dict[str, list] = {
        name: [] for name in ("group", "period", "block", *CONTINUOUS_FEATURES)
    }
    with warnings.catch_warnings():
        # pymatgen warns "No Pauling electronegativity for He" and returns NaN: handled below.
        warnings.simplefilter("ignore")
        for z in range(1, Z_MAX + 1):
            el = _element(z)
            rows["group"].append(int(el.group))
            rows["period"].append(int(el.row))
            rows["block"].append(str(el.block))
            rows["electronegativity"].append(_float(el.X))
            rows["atomic_radius"].append(_float(el.atomic_radius))
            rows["valence_electrons"].append(float(valence_electrons(z)))
            rows["electron_affinity"].append(_float(el.electron_affinity))
            rows["ionization_energy"].append(_float(el.ionization_energy))
            rows["atomic_mass"].append(_float(el.atomic_mass))
    out = {k: np.array(v) for k, v in rows.items()}
    for arr in out.values():
        arr.setflags(write=False)
    return out


def _float(value: Any) -> float:
    return float("nan") if value is None else float(value)


@cache
def feature_statistics() -> dict[str, tuple[float, float]]:
    """Mean and population standard deviation of each continuous feature over Z = 1 .. 94.

    Elements without a value are left out of both.

    Returns
    -------
    dict of str to (mean, std)
        In the raw units of :data:`CONTINUOUS_FEATURES` (see the module docstring).
    """
    raw = raw_properties()
    stats = {}
    for name in CONTINUOUS_FEATURES:
        values = raw[name][np.isfinite(raw[name])]
        stats[name] = (float(values.mean()), float(values.std()))
    return stats


@cache
def feature_table() -> np.ndarray:
    """The ``paper-v1`` feature of every element, ``(Z_MAX + 1, FEATURE_DIM)`` float32.

    Row ``Z`` holds element ``Z``; row 0 is unused (all zeros). Read-only.
    """
    raw = raw_properties()
    stats = feature_statistics()
    table = np.zeros((Z_MAX + 1, FEATURE_DIM), dtype=np.float64)
    rows = np.arange(1, Z_MAX + 1)
    col = 0
    table[rows, col + rows - 1] = 1.0
    col += Z_MAX
    table[rows, col + raw["group"] - 1] = 1.0
    col += N_GROUPS
    table[rows, col + raw["period"] - 1] = 1.0
    col += N_PERIODS
    table[rows, col + np.array([BLOCKS.index(b) for b in raw["block"]])] = 1.0
    col += len(BLOCKS)
    for name in CONTINUOUS_FEATURES:
        mean, std = stats[name]
        values = (raw[name] - mean) / std
        table[1:, col] = np.where(np.isfinite(values), values, 0.0)
        col += 1
    for name in MISSING_INDICATORS:
        table[1:, col] = ~np.isfinite(raw[name])
        col += 1
    out = table.astype(np.float32)
    out.setflags(write=False)
    return out


@cache
def feature_table_sha256() -> str:
    """SHA-256 of :func:`feature_table`'s bytes: changes if pymatgen's element data change."""
    return hashlib.sha256(np.ascontiguousarray(feature_table()).tobytes()).hexdigest()


def _symbol(z: int) -> str:
    try:
        return _element(z).symbol
    except Exception:
        return f"Z={z}"


def check_species(elements: Iterable[Any]) -> np.ndarray:
    """Atomic numbers of ``elements``, or one error naming every unsupported element.

    Parameters
    ----------
    elements : iterable
        Atomic numbers, symbols, or pymatgen ``Element`` / ``Species`` objects (the oxidation
        state is ignored). Dummy species (``X``, vacancies) are unsupported.

    Returns
    -------
    array ``(n,)`` int64
        The atomic numbers, in the order given.

    Raises
    ------
    InputError
        Names the unsupported elements (sorted, each once) and the supported range.

    Examples
    --------
    >>> check_species(["Na", "Cl"]).tolist()
    [11, 17]
    >>> try:
    ...     check_species(["Na", "Am"])
    ... except InputError as err:
    ...     print(err)
    unsupported element(s) Am: the paper-v1 atom features cover Z = 1..94 (H..Pu)
    """
    numbers, bad = [], {}
    for item in elements:
        z = _atomic_number(item)
        if z is None or not 1 <= z <= Z_MAX:
            label = str(getattr(item, "symbol", item)) if z is None else _symbol(z)
            bad[label] = z if z is not None else 10**6
            continue
        numbers.append(z)
    if bad:
        names = ", ".join(sorted(bad, key=lambda k: (bad[k], k)))
        raise InputError(
            f"unsupported element(s) {names}: the {FEATURE_SET} atom features cover "
            f"Z = 1..{Z_MAX} (H..Pu)"
        )
    return np.array(numbers, dtype=np.int64)


def _atomic_number(item: Any) -> int | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int | np.integer):
        return int(item)
    from pymatgen.core.periodic_table import DummySpecies

    if isinstance(item, DummySpecies):  # its Z is a made-up number
        return None
    z = getattr(item, "Z", None)  # pymatgen Element / Species
    if isinstance(z, int | np.integer):
        return int(z)
    if isinstance(item, str):
        from pymatgen.core.periodic_table import Element

        symbol = re.sub(r"[\d+\-.]+$", "", item.strip())  # "Fe2+" -> "Fe"
        if Element.is_valid_symbol(symbol):
            return int(Element(symbol).Z)
    return None


def node_features(atomic_numbers: np.ndarray | Iterable[int]) -> np.ndarray:
    """The ``paper-v1`` feature vector of each atom, by table lookup.

    Parameters
    ----------
    atomic_numbers : array ``(n,)`` int
        Z of each atom, 1 .. :data:`Z_MAX`.

    Returns
    -------
    array ``(n, FEATURE_DIM)`` float32

    Raises
    ------
    InputError
        An atomic number outside 1 .. 94 (named).

    Examples
    --------
    >>> x = node_features([11, 17])
    >>> x.shape, float(x[0, 10]), float(x[1, 16])      # one-hot Z: Na at column 10, Cl at 16
    ((2, 131), 1.0, 1.0)
    """
    z = np.asarray(atomic_numbers)
    if z.size and (z.min() < 1 or z.max() > Z_MAX):
        check_species(np.unique(z).tolist())
    return feature_table()[z.astype(np.intp, copy=False)]
