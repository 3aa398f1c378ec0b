r"""SE(3)-Transformer attention layer (Fuchs et al. 2020), as in e3nn's transformer guide.

For centre ``i`` and neighbours ``j``, with ``c`` heads:

.. math::

    q_i &= W_q h_i, \qquad
    (k_{ij}, v_{ij}) = W_{kv}\,\big(h_j \otimes_{\mathrm{uvu}}^{w(r_{ij})} Y(\hat r_{ij})\big), \\
    \ell_{ij}^c &= \frac{1}{\sqrt{d_c}} \sum_{\text{irreps } \lambda \in c}
        \langle q_i^\lambda, k_{ij}^\lambda \rangle, \qquad
    \alpha_{ij}^c = \frac{u(r_{ij})\, e^{\ell_{ij}^c}}
        {1 + \sum_{j'} u(r_{ij'})\, e^{\ell_{ij'}^c}}, \\
    h_i' &= h_i + \mathrm{Gate}\Big(W_o \sum_j \alpha_{ij}^c v_{ij}^c + W_s h_i + b\Big).

The logits are inner products of equal irreps, hence invariant (also under reflections: both
factors have the same parity). The envelope ``u`` and the ``1`` in the denominator (a null key
with logit 0 and zero value) make the weights continuous when an edge crosses the cutoff, even
for a centre whose only neighbour leaves. Keys and values share one channel-wise tensor product
(then two linear maps): the e3nn guide uses two fully connected ones with per-edge weights,
about 10x slower on a CPU.
"""

from __future__ import annotations

import math

import torch
from e3nn import o3

from crystensor.nn.edges import EdgeData
from crystensor.nn.interaction import ConvolutionLayer
from crystensor.nn.scatter import scatter_max, scatter_sum
from crystensor.nn.tensor_product import PathMixing

__all__ = ["SE3AttentionLayer", "null_key_softmax"]


def null_key_softmax(
    logits: torch.Tensor, envelope: torch.Tensor, index: torch.Tensor, num_nodes: int
) -> torch.Tensor:
    r"""Attention weights of the edges into each node, with a null key and a smooth cutoff.

    .. math::

        \alpha_{e} = \frac{u_e\, e^{\ell_e}}{1 + \sum_{e' \to i} u_{e'}\, e^{\ell_{e'}}}
        \qquad (e \to i)

    (the ``1`` is a null key with logit 0 and zero value), evaluated with every logit of node
    ``i`` shifted by ``max(0, max l_e)`` over its edges with ``u_e > 0``. An edge at or beyond
    the cutoff has weight 0 and must not set the shift: its logit could exceed the others by
    enough to underflow them all and give 0/0.

    Parameters
    ----------
    logits : Tensor, shape (n_edges, heads)
    envelope : Tensor, shape (n_edges,)
        ``u_e`` in [0, 1].
    index : LongTensor, shape (n_edges,)
        The node each edge points to.
    num_nodes : int

    Returns
    -------
    Tensor, shape (n_edges, heads)
    """
    u = envelope.unsqueeze(-1)  # [n_edges, 1]
    # -inf beyond the cutoff: exp gives exactly 0 there, however large the logit
    masked = logits.masked_fill(u == 0, float("-inf"))  # [n_edges, heads]
    shift = scatter_max(masked.detach(), index, num_nodes).clamp_min(0.0)  # [n_nodes, heads]
    weight = u * torch.exp(masked - shift[index])  # [n_edges, heads]
    norm = torch.exp(-shift) + scatter_sum(weight, index, num_nodes)  # [n_nodes, heads]
    return weight / norm[index]


class SE3AttentionLayer(ConvolutionLayer):
    """Multi-head equivariant graph attention over the incoming edges of each node.

    Parameters
    ----------
    irreps_in, irreps_out : Irreps or str
        Node features before and after (``irreps_out`` sorted, scalars first). Queries, keys
        and values use ``irreps_out``; each head owns ``mul / num_heads`` channels of every
        irrep.
    irreps_sh, irreps_node_attr, num_radial, radial_hidden
        As for :class:`~crystensor.nn.interaction.ConvolutionLayer` (the key/value
        convolution, the update and the residual).
    num_heads : int
        Must divide the multiplicity of every irrep of ``irreps_out``.
    """

    def __init__(
        self,
        irreps_in: o3.Irreps | str,
        irreps_out: o3.Irreps | str,
        irreps_sh: o3.Irreps | str,
        irreps_node_attr: o3.Irreps | str | None = None,
        *,
        num_radial: int,
        radial_hidden: int,
        num_heads: int = 1,
    ) -> None:
        super().__init__(
            irreps_in, irreps_out, irreps_sh, num_radial=num_radial, radial_hidden=radial_hidden
        )
        self.irreps_key = self.irreps_out
        if num_heads < 1 or any(mul % num_heads for mul, _ in self.irreps_key):
            raise ValueError(
                f"num_heads={num_heads} must divide every multiplicity of {self.irreps_key}; "
                "choose channels divisible by num_heads"
            )
        self.num_heads = num_heads
        self.query = o3.Linear(self.irreps_in, self.irreps_key)
        self.key_value = PathMixing(self.conv.layout, self.irreps_key + self.irreps_key)
        self.linear_out = o3.Linear(self.irreps_key, self.gate.irreps_in)
        self.scale = 1.0 / math.sqrt(self.irreps_key.dim / num_heads)
        # plain ints for forward (no Irreps objects touched there: torch.compile friendly)
        self._key_dim = self.irreps_key.dim
        self._key_blocks = [(mul, ir.dim) for mul, ir in self.irreps_key]

    def _per_head(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Split ``(n, irreps_key.dim)`` into blocks ``(n, heads, mul / heads, 2l + 1)``."""
        blocks = x.split([mul * d for mul, d in self._key_blocks], dim=1)
        return [
            block.reshape(x.shape[0], self.num_heads, mul // self.num_heads, d)
            for block, (mul, d) in zip(blocks, self._key_blocks, strict=True)
        ]

    def forward(self, h: torch.Tensor, edges: EdgeData, node_attr: torch.Tensor) -> torch.Tensor:
        """``h (n_nodes, irreps_in.dim)`` -> ``(n_nodes, irreps_out.dim)``; ``node_attr`` unused."""
        num_nodes = h.shape[0]
        query = self.query(h)[edges.dst]  # [n_edges, key.dim]
        key, value = self.key_value(self.conv(h, edges)).split(self._key_dim, dim=-1)
        q_blocks, k_blocks = self._per_head(query), self._per_head(key)
        logits = (
            sum((q * k).sum(dim=(-2, -1)) for q, k in zip(q_blocks, k_blocks, strict=True))
            * self.scale
        )
        alpha = null_key_softmax(logits, edges.envelope, edges.dst, num_nodes)  # [n_edges, heads]
        weighted = [
            (v * alpha[:, :, None, None]).reshape(v.shape[0], -1) for v in self._per_head(value)
        ]
        aggregated = scatter_sum(torch.cat(weighted, dim=-1), edges.dst, num_nodes)
        return self.update(h, self.linear_out(aggregated))
