"""Products of sparse matrices that share an index, by pairing entries (pattern work done once, values differentiable).

``L D Lᵀ`` pairs the entries of ``L`` that share a column; ``Aᵀ W A`` pairs the entries of ``A`` that share a row.
:func:`pairs_within_groups` lists every ordered pair of entries in the same group; the product's values are then a
gather, a product and an ``index_add`` — plain torch ops that autograd differentiates w.r.t. the values.
"""

from __future__ import annotations

import torch

from ..pattern import Assembly

__all__ = ["pairs_within_groups", "product_pattern"]


def pairs_within_groups(group: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry indices ``(first, second)`` of every ordered pair of entries with the same ``group`` (int64 ``(nnz,)``).

    The number of pairs is ``Σ_g c_g²`` for group sizes ``c_g``.
    """
    order = torch.argsort(group, stable=True)
    sorted_group = group[order]
    counts = torch.bincount(sorted_group, minlength=num_groups)
    start = torch.cumsum(counts, 0) - counts
    repeats = counts[sorted_group]
    total = int(repeats.sum())
    device = group.device
    first = torch.repeat_interleave(torch.arange(group.numel(), device=device), repeats, output_size=total)
    offset = torch.arange(total, device=device) - torch.repeat_interleave(
        torch.cumsum(repeats, 0) - repeats, repeats, output_size=total
    )
    second = start[sorted_group][first] + offset
    return order[first], order[second]


def product_pattern(
    group: torch.Tensor, index: torch.Tensor, num_groups: int, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pattern of ``Σ_g`` (outer products within group ``g``) for entries at ``index`` (the product's row/col index).

    Returns ``first``, ``second`` (entry pairs), ``inverse`` (pair → output entry) and ``keys`` (sorted
    ``row * size + col`` of the output entries).
    """
    first, second = pairs_within_groups(group, num_groups)
    merged = Assembly(index[first], index[second], size, size)
    return first, second, merged.inverse, merged.row * size + merged.col
