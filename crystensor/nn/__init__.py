"""Shared equivariant blocks; every model in :mod:`crystensor.models` is built from these.

=====================  ==============================================================
module                 blocks
=====================  ==============================================================
``irreps``             layouts (:func:`spherical_irreps`, :func:`kinds_irreps`) and the
                       build-time check :func:`check_irreps`
``edges``              periodic edge vectors, spherical harmonics, node attributes
``radial``             Bessel basis x polynomial envelope, radial MLP
``embedding``          atom features -> ``C x 0e``
``gate``               gate nonlinearity, Linear + Gate
``tensor_product``     :class:`HarmonicProduct` (CG products with harmonics),
                       :class:`PathMixing`, :class:`SteerableLinear` (SEGNN's layer)
``message``            :class:`SEGNNLayer`
``interaction``        :class:`ConvolutionLayer` (convolution + gated residual update, shared
                       by SEConv and attention), :class:`SEConvLayer`,
                       :class:`SelfInteraction`, :class:`Residual`
``attention``          :class:`SE3AttentionLayer`
``pooling``            mean and equivariant max pooling
``readout``            :class:`TensorHead`, :class:`ScalarHead`, :class:`CartesianReadout`
=====================  ==============================================================
"""

from crystensor.nn.attention import SE3AttentionLayer
from crystensor.nn.edges import EdgeData, EdgeEmbedding, NodeAttributes, edge_vectors
from crystensor.nn.embedding import AtomEmbedding
from crystensor.nn.gate import EquivariantGate, GatedLinear, gate_irreps
from crystensor.nn.interaction import (
    ChannelwiseConvolution,
    ConvolutionLayer,
    Residual,
    SEConvLayer,
    SelfInteraction,
)
from crystensor.nn.irreps import (
    EquivariantModule,
    IrrepsMismatchError,
    check_irreps,
    kinds_irreps,
    spherical_irreps,
)
from crystensor.nn.message import GroupedConcat, SEGNNLayer
from crystensor.nn.pooling import EquivariantMaxPooling, MeanPooling, build_pooling
from crystensor.nn.radial import BesselBasis, PolynomialEnvelope, RadialEmbedding, RadialMLP
from crystensor.nn.readout import (
    CartesianReadout,
    ScalarHead,
    TensorHead,
    build_head,
    resolve_target,
)
from crystensor.nn.tensor_product import (
    HarmonicProduct,
    PathBlock,
    PathLayout,
    PathMixing,
    SteerableLinear,
)

__all__ = [
    "AtomEmbedding",
    "BesselBasis",
    "CartesianReadout",
    "ChannelwiseConvolution",
    "ConvolutionLayer",
    "EdgeData",
    "EdgeEmbedding",
    "EquivariantGate",
    "EquivariantMaxPooling",
    "EquivariantModule",
    "GatedLinear",
    "GroupedConcat",
    "HarmonicProduct",
    "IrrepsMismatchError",
    "MeanPooling",
    "NodeAttributes",
    "PathBlock",
    "PathLayout",
    "PathMixing",
    "PolynomialEnvelope",
    "RadialEmbedding",
    "RadialMLP",
    "Residual",
    "SE3AttentionLayer",
    "SEConvLayer",
    "SEGNNLayer",
    "ScalarHead",
    "SelfInteraction",
    "SteerableLinear",
    "TensorHead",
    "build_head",
    "build_pooling",
    "check_irreps",
    "edge_vectors",
    "gate_irreps",
    "kinds_irreps",
    "resolve_target",
    "spherical_irreps",
]
