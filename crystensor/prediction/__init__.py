"""The Python API behind ``crystensor predict``: crystal structures -> predicted tensors.

Each structure goes the way the model's training data went, with the featurization stored in
its checkpoint (cutoff, auto-cutoff, atom features):

.. code-block:: text

    structure --domain checks--> warnings (or refused: overlapping atoms)
        --build_graph--> periodic radius graph --model--> irreps (dim,) + pooled features
        --from_irreps--> Cartesian tensor (raw, frame of the structure)
        --project_to_point_group--> symmetrized tensor
        --make_physical--> reported tensor --> derived properties

The symmetrized tensor is the orthogonal projection of the raw one onto the tensors invariant
under the structure's point group (Neumann's principle): components that must vanish are
exactly 0 and components that must be equal are bit-for-bit equal. The reported tensor is the
nearest physically valid one (:func:`crystensor.tensors.physical.make_physical`: elastic
tensors positive definite, dielectric eigenvalues >= 1), re-projected onto the point group;
``adjustment`` says whether and how much that changed it. All three are kept.

Each result carries ``warnings`` (:mod:`crystensor.domain`): elements the model never saw,
atoms far closer than their covalent radii, a vacuum gap (slab, wire or molecule), pooled
features far from every training structure, and the model card's caveat if it has one.

>>> import crystensor
>>> crystensor.predict("POSCAR", target="elastic")  # doctest: +SKIP
[ElasticTensor(...)]

:func:`predict` returns pymatgen tensor objects; :func:`predict_results` returns one
:class:`Prediction` per structure (raw and symmetrized tensors, point group, derived
properties, or the reason it failed) and never stops at a structure it cannot predict.
A :class:`Predictor` keeps one loaded model for many calls.

On a machine shared with other jobs, set ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported
(``crystensor predict`` does): idle OpenMP threads then sleep instead of spinning, which made
inference on 2 busy cores 10x faster.
"""

from crystensor.prediction.api import (
    Predictor,
    load_predictor,
    model_info,
    predict,
    predict_results,
)
from crystensor.prediction.inputs import StructureInput, read_inputs
from crystensor.prediction.result import Prediction

__all__ = [
    "Prediction",
    "Predictor",
    "StructureInput",
    "load_predictor",
    "model_info",
    "predict",
    "predict_results",
    "read_inputs",
]
