"""Physical properties computed from a universal interatomic potential, not learned by crystensor.

:mod:`crystensor.physics.elastic_prior`: the elastic stiffness of a crystal under a pretrained
potential (SevenNet-0), clamped- and relaxed-ion, by automatic differentiation of its energy with
respect to a homogeneous strain and the atomic displacements.
"""

from __future__ import annotations

from crystensor.physics.elastic_prior import (
    EV_PER_A3_IN_GPA,
    ElasticPrior,
    Potential,
    compute_elastic_prior,
    elastic_tensor,
    load_potential,
)

__all__ = [
    "EV_PER_A3_IN_GPA",
    "ElasticPrior",
    "Potential",
    "compute_elastic_prior",
    "elastic_tensor",
    "load_potential",
]
