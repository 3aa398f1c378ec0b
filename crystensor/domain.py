"""Is a structure like the ones a model was trained on? Checks behind predict's warnings.

A network returns a number for any input; these checks say when that number deserves little
trust. Each problem becomes a :class:`DomainWarning` (a code and a sentence):

=====================  =====================================================================
``unseen-element``     an element that no training structure of the model contains
``short-distance``     two atoms much closer than their covalent radii allow
                       (``d < SHORT_FRACTION * (r_i + r_j)``, Cordero radii from ASE); below
                       :data:`MIN_DISTANCE` the structure is refused (:func:`check_distances`)
``vacuum-gap``         an empty slab of at least :data:`VACUUM_GAP` Angstrom between the atomic
                       planes normal to a lattice direction: the cell holds a slab (gap along
                       one direction), a wire (two) or an isolated molecule or cluster (three),
                       not a bulk crystal
``far-from-training``  the model's pooled features of the structure (the mean of its node
                       features for a model that pools by density) are farther from every
                       training structure than those of most test materials were
                       (:class:`FeatureDomain`)
=====================  =====================================================================

All checks are invariant to rotations, reflections, translations, the choice of cell and the
order of the sites (the vacuum gap to the choice of cell for gaps along lattice planes, which is
how slabs and boxed molecules are built).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from crystensor.errors import InputError

if TYPE_CHECKING:
    from pymatgen.core import Structure

__all__ = [
    "MIN_DISTANCE",
    "SHORT_FRACTION",
    "VACUUM_GAP",
    "DomainWarning",
    "FeatureDomain",
    "check_distances",
    "descriptor_kind",
    "element_warnings",
    "invariant_descriptor",
    "pooled_irreps",
    "structure_warnings",
    "vacuum_gaps",
]

#: Interatomic distance (Angstrom) below which a structure is refused: no bond is this short.
MIN_DISTANCE = 0.5
#: Warn when two atoms are closer than this fraction of the sum of their covalent radii.
SHORT_FRACTION = 0.6
#: Empty slab thickness (Angstrom, between atomic planes) reported as vacuum.
VACUUM_GAP = 6.0

_AXES = "abc"


@dataclass(frozen=True)
class DomainWarning:
    """One reason to distrust a prediction: a stable ``code`` and a sentence for people."""

    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _covalent_radii(numbers: np.ndarray) -> np.ndarray:
    from ase.data import covalent_radii

    return covalent_radii[numbers]


def _close_pairs(structure: Structure, radius: float) -> tuple[np.ndarray, ...]:
    """Pairs ``(i, j, d)`` of distinct atoms (or periodic images) closer than ``radius``."""
    centers, points, images, distances = structure.get_neighbor_list(radius, exclude_self=False)
    self_pair = (centers == points) & np.all(images == 0, axis=1)
    return centers[~self_pair], points[~self_pair], distances[~self_pair]


def check_distances(structure: Structure) -> list[DomainWarning]:
    """Refuse overlapping atoms; warn about atoms far closer than their covalent radii.

    Raises
    ------
    InputError
        Two atoms (or an atom and a periodic image of itself) closer than
        :data:`MIN_DISTANCE`.
    """
    numbers = np.array([site.specie.Z for site in structure])
    radii = _covalent_radii(numbers)
    reach = max(MIN_DISTANCE, SHORT_FRACTION * 2.0 * float(radii.max()))
    i, j, d = _close_pairs(structure, reach)
    if len(d) == 0:
        return []
    k = int(np.argmin(d))
    species = [site.specie.symbol for site in structure]
    if d[k] < MIN_DISTANCE:
        raise InputError(
            f"atoms {i[k]} ({species[i[k]]}) and {j[k]} ({species[j[k]]}) are {d[k]:.3g} "
            f"Angstrom apart, below {MIN_DISTANCE} Angstrom: overlapping atoms (a duplicated "
            "site or wrong coordinates?); fix the structure"
        )
    ratio = d / (radii[i] + radii[j])
    k = int(np.argmin(ratio))
    if ratio[k] >= SHORT_FRACTION:
        return []
    return [
        DomainWarning(
            "short-distance",
            f"atoms {i[k]} ({species[i[k]]}) and {j[k]} ({species[j[k]]}) are {d[k]:.3g} "
            f"Angstrom apart, {ratio[k]:.2f} of the sum of their covalent radii; no training "
            "structure is this compressed",
        )
    ]


def vacuum_gaps(structure: Structure) -> list[float]:
    """Widest empty slab along each lattice direction, in Angstrom.

    For lattice direction ``a`` it is the largest gap between consecutive atomic planes
    parallel to the b-c plane (fractional coordinate along ``a``, periodic), times the spacing
    of those planes ``V / |b x c|``.
    """
    frac = np.mod(structure.frac_coords, 1.0)
    matrix = structure.lattice.matrix
    volume = abs(float(np.linalg.det(matrix)))
    gaps = []
    for axis in range(3):
        others = [k for k in range(3) if k != axis]
        spacing = volume / float(np.linalg.norm(np.cross(matrix[others[0]], matrix[others[1]])))
        f = np.sort(frac[:, axis])
        widest = float(np.max(np.diff(np.append(f, f[0] + 1.0))))
        gaps.append(widest * spacing)
    return gaps


def _vacuum_warning(structure: Structure) -> list[DomainWarning]:
    gaps = vacuum_gaps(structure)
    open_axes = [axis for axis, gap in enumerate(gaps) if gap >= VACUUM_GAP]
    if not open_axes:
        return []
    where = ", ".join(f"{gaps[a]:.1f} Angstrom along {_AXES[a]}" for a in open_axes)
    what = {
        1: "a slab or an isolated layer",
        2: "an isolated wire or chain",
        3: "an isolated molecule or cluster",
    }[len(open_axes)]
    return [
        DomainWarning(
            "vacuum-gap",
            f"vacuum gap of {where}: the cell holds {what}, not a bulk crystal; the model was "
            "trained on bulk crystals and its tensor refers to the whole cell, vacuum included",
        )
    ]


def element_warnings(structure: Structure, elements: list[str] | None) -> list[DomainWarning]:
    """An ``unseen-element`` warning for the elements not in ``elements`` (None: no check)."""
    if not elements:
        return []
    known = set(elements)
    unseen = sorted({site.specie.symbol for site in structure} - known)
    if not unseen:
        return []
    return [
        DomainWarning(
            "unseen-element",
            f"{', '.join(unseen)} {'is' if len(unseen) == 1 else 'are'} in no training "
            "structure of this model; its numbers for this element are extrapolated",
        )
    ]


def structure_warnings(
    structure: Structure, elements: list[str] | None = None
) -> list[DomainWarning]:
    """All structure-only warnings (elements, distances, vacuum), in that order.

    Raises
    ------
    InputError
        Overlapping atoms (see :func:`check_distances`).
    """
    return [
        *element_warnings(structure, elements),
        *check_distances(structure),
        *_vacuum_warning(structure),
    ]


# -- distance of the model's features from the training set ------------------------------------


def descriptor_kind(config: Any) -> str:
    """What the far-from-training descriptors of a model with ``config`` (its model config)
    are made of: ``"node-mean"`` under density pooling (the mean of the node features,
    ``Backbone.pooled_and_descriptor``), ``"pooled"`` otherwise (the pooled features)."""
    return "node-mean" if config.pooling == "density" else "pooled"


def pooled_irreps(model: Any) -> list[tuple[int, int, int]]:
    """``(multiplicity, l, parity)`` of the backbone's pooled output (``model.backbone``'s
    e3nn ``irreps_out``): the layout :func:`invariant_descriptor` reads."""
    return [(mul, ir.l, ir.p) for mul, ir in model.backbone.irreps_out]


def invariant_descriptor(pooled: np.ndarray, irreps: list[tuple[int, int, int]]) -> np.ndarray:
    """Rotation- and reflection-invariant summary of pooled equivariant features.

    Parameters
    ----------
    pooled : array ``(n, dim)``
        Pooled graph features laid out as ``irreps``.
    irreps : list of ``(multiplicity, l, parity)``
        e3nn layout of ``pooled``.

    Returns
    -------
    array ``(n, sum of multiplicities)``
        Each ``0e`` channel as it is, every other channel by its Euclidean norm (a norm is
        invariant under rotations; parity flips only signs).
    """
    pooled = np.asarray(pooled, dtype=float)
    out, start = [], 0
    for mul, l, parity in irreps:
        width = mul * (2 * l + 1)
        block = pooled[:, start : start + width].reshape(len(pooled), mul, 2 * l + 1)
        out.append(block[:, :, 0] if l == 0 and parity == 1 else np.linalg.norm(block, axis=2))
        start += width
    return np.concatenate(out, axis=1)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` on torch's threads when torch is loaded (as in predict): numpy's BLAS would
    start threads of its own, which on a small product cost more CPU than the product."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return a @ b
    return (torch.from_numpy(a) @ torch.from_numpy(b)).numpy()


@dataclass
class FeatureDomain:
    """Nearest-neighbour distance of a structure's descriptor from the training set's.

    Descriptors (:func:`invariant_descriptor`) are standardised with the training set's mean and
    ``scale``; the distance is the root-mean-square difference per channel to the nearest
    training structure. ``threshold`` is the ``quantile`` of these distances over the test split
    of the model: a structure above it is farther from the training set than that share of the
    test materials.
    """

    mean: np.ndarray
    scale: np.ndarray
    reference: np.ndarray
    threshold: float
    quantile: float

    @classmethod
    def fit(cls, train: np.ndarray, test: np.ndarray, quantile: float = 0.95) -> FeatureDomain:
        mean = train.mean(axis=0)
        scale = np.where(train.std(axis=0) > 1e-12, train.std(axis=0), 1.0)
        domain = cls(mean, scale, (train - mean) / scale, float("inf"), quantile)
        domain.threshold = float(np.quantile(domain.distances(test), quantile))
        return domain

    def distances(self, descriptors: np.ndarray) -> np.ndarray:
        """RMS distance ``(n,)`` of each descriptor to its nearest training descriptor."""
        x = (np.asarray(descriptors, dtype=float) - self.mean) / self.scale
        ref_t, ref_norms = self._prepared()
        d2 = (x * x).sum(1)[:, None] - 2.0 * _matmul(x, ref_t) + ref_norms
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0) / x.shape[1])

    def _prepared(self) -> tuple[np.ndarray, np.ndarray]:
        """The reference transposed (contiguous, float64) and its squared norms, made once."""
        cached = getattr(self, "_cache", None)
        if cached is None or cached[0] is not self.reference:
            ref = np.asarray(self.reference, dtype=float)
            cached = (self.reference, np.ascontiguousarray(ref.T), (ref * ref).sum(1)[None, :])
            self._cache = cached
        return cached[1], cached[2]

    def warning(self, distance: float) -> list[DomainWarning]:
        if not distance > self.threshold:
            return []
        share = round(100 * self.quantile)
        return [
            DomainWarning(
                "far-from-training",
                f"the model's features of this structure are {distance:.2f} from the nearest "
                f"training structure (RMS per standardised channel), farther than {share} % "
                f"of its test materials ({self.threshold:.2f}): unlike what it learned from "
                "(the model card says how this relates to its error)",
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain values and float32 tensors (loads with ``torch.load(weights_only=True)``)."""
        import torch

        return {
            "mean": torch.as_tensor(self.mean, dtype=torch.float64),
            "scale": torch.as_tensor(self.scale, dtype=torch.float64),
            "reference": torch.as_tensor(self.reference, dtype=torch.float32),
            "threshold": self.threshold,
            "quantile": self.quantile,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureDomain:
        def array(value: Any) -> np.ndarray:
            return value.numpy() if hasattr(value, "numpy") else np.asarray(value)

        return cls(
            array(data["mean"]),
            array(data["scale"]),
            array(data["reference"]),
            float(data["threshold"]),
            float(data["quantile"]),
        )
