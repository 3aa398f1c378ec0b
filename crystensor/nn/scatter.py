"""Index reductions over edges and nodes (plain torch, no pyg-lib / torch-scatter needed)."""

from __future__ import annotations

import torch

__all__ = ["scatter_max", "scatter_sum"]


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """``out[k] = sum_{e: index[e] = k} src[e]`` along the first axis.

    Parameters
    ----------
    src : Tensor, shape (n, ...)
    index : LongTensor, shape (n,)
    dim_size : int
        Number of output rows.

    Returns
    -------
    Tensor, shape (dim_size, ...)
    """
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.index_add(0, index, src)


def scatter_max(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """``out[k] = max_{e: index[e] = k} src[e]`` along the first axis (0 for empty groups).

    Gradients flow to the maximal entries (shared evenly between ties).
    """
    idx = index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)
    out = src.new_zeros((dim_size, *src.shape[1:]))
    return out.scatter_reduce(0, idx, src, reduce="amax", include_self=False)
