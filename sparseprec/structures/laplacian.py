"""Graph Laplacians of general graphs and of regular 2-D/3-D lattices."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp
import torch

from .._validation import check_flag
from ._assemble import Pattern, as_grid_shape, as_int, check_dtype
from .adjacency import _to_torch, as_scipy_adjacency

__all__ = ["graph_laplacian", "grid_laplacian", "grid_adjacency"]


def _laplacian_scipy(W: sp.csr_matrix) -> sp.csr_matrix:
    return (sp.diags(np.asarray(W.sum(1)).ravel()) - W).tocsr()


def graph_laplacian(adjacency: object, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The graph Laplacian :math:`D - W` (:math:`D = \mathrm{diag}(W 1)`, the degrees) as a torch CSR matrix.

    Parameters
    ----------
    adjacency : torch.Tensor or scipy.sparse matrix
        Symmetric 0/1 ``(n, n)`` adjacency without self-loops (see :mod:`sparseprec.structures.adjacency`).
    dtype : torch.dtype
        float32 or float64.

    Returns
    -------
    torch.Tensor
        Sparse CSR ``(n, n)``, symmetric positive semi-definite, null space spanned by the indicator vectors of the
        connected components; the diagonal is stored for every node (a zero for an isolated node).

    Examples
    --------
    >>> from sparseprec.structures import adjacency_from_pairs, graph_laplacian
    >>> graph_laplacian(adjacency_from_pairs([(0, 1), (1, 2)])).to_dense()
    tensor([[ 1., -1.,  0.],
            [-1.,  2., -1.],
            [ 0., -1.,  1.]], dtype=torch.float64)
    """
    W = as_scipy_adjacency(adjacency)
    pattern, values = _laplacian_pattern(W)
    return pattern.matrix(torch.from_numpy(values).to(check_dtype(dtype))).detach()


def _laplacian_pattern(W: sp.csr_matrix) -> tuple[Pattern, np.ndarray]:
    """Pattern of ``D - W`` with every diagonal entry, and its values (pairs: diagonal first, then the edges)."""
    n = W.shape[0]
    coo = W.tocoo()
    rows = np.concatenate([np.arange(n), coo.row])
    cols = np.concatenate([np.arange(n), coo.col])
    values = np.concatenate([np.asarray(W.sum(1)).ravel(), -coo.data])
    return Pattern(rows, cols, n), values


def grid_adjacency(shape: tuple[int, ...], neighbours: int | None = None, cyclic: bool = False) -> torch.Tensor:
    """Adjacency of a regular 2-D or 3-D lattice (row-major node numbering, as ``numpy.ravel_multi_index``).

    Parameters
    ----------
    shape : tuple of int
        ``(s1, s2)`` or ``(s1, s2, s3)``.
    neighbours : int, optional
        2-D: 4 (default, edges along the axes) or 8 (also diagonals); 3-D: 6 (default) or 26.
    cyclic : bool
        Wrap around every axis (a torus); each axis then needs at least 3 points.

    Raises
    ------
    TypeError
        ``shape`` not a tuple of ints (a size such as ``2.5`` is refused, not truncated; so is a bool), a non-integer
        ``neighbours``, a ``cyclic`` that is not a bool.
    ValueError
        ``shape`` not 2-D/3-D or with a size below 1, ``neighbours`` not one of the two allowed values, a cyclic
        axis shorter than 3.

    Examples
    --------
    >>> from sparseprec.structures import grid_adjacency
    >>> grid_adjacency((2, 2)).to_dense()
    tensor([[0., 1., 1., 0.],
            [1., 0., 0., 1.],
            [1., 0., 0., 1.],
            [0., 1., 1., 0.]], dtype=torch.float64)
    """
    shape = as_grid_shape(shape, "shape")
    d = len(shape)
    axis, full = (4, 8) if d == 2 else (6, 26)
    neighbours = axis if neighbours is None else as_int(neighbours, "neighbours")
    cyclic = check_flag(cyclic, "cyclic")
    if neighbours not in (axis, full):
        raise ValueError(f"neighbours must be {axis} or {full} for a {d}-D grid, got {neighbours}")
    if cyclic and min(shape) < 3:
        raise ValueError(f"a cyclic grid needs at least 3 points along every axis, got shape {shape}")
    offsets = [o for o in itertools.product((-1, 0, 1), repeat=d) if any(o)]
    if neighbours == axis:
        offsets = [o for o in offsets if sum(map(abs, o)) == 1]
    coords = np.indices(shape).reshape(d, -1)
    n = coords.shape[1]
    rows, cols = [], []
    for o in offsets:
        target = coords + np.array(o)[:, None]
        if cyclic:
            target = target % np.array(shape)[:, None]
            keep = np.ones(n, dtype=bool)
        else:
            keep = np.all((target >= 0) & (target < np.array(shape)[:, None]), axis=0)
        rows.append(np.flatnonzero(keep))
        cols.append(np.ravel_multi_index(tuple(target[:, keep]), shape))
    W = sp.coo_matrix((np.ones(sum(r.size for r in rows)), (np.concatenate(rows), np.concatenate(cols))), (n, n))
    W = W.tocsr()
    W.data[:] = 1.0
    return _to_torch(W)


def grid_laplacian(
    shape: tuple[int, ...], neighbours: int | None = None, cyclic: bool = False, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Graph Laplacian ``D - W`` of a regular lattice (:func:`grid_adjacency`): the 5-point (2-D, 4 neighbours) or
    7-point (3-D) finite-difference Laplacian with natural (Neumann) boundaries, or its torus version.

    Arguments and errors as in :func:`grid_adjacency` (``shape`` is validated, never truncated), plus ``dtype``
    (float32 or float64, else ``TypeError``).

    Examples
    --------
    >>> from sparseprec.structures import grid_laplacian
    >>> grid_laplacian((3, 3)).to_dense()[4]  # the centre node of a 3 x 3 grid
    tensor([ 0., -1.,  0., -1.,  4., -1.,  0., -1.,  0.], dtype=torch.float64)
    """
    check_dtype(dtype)
    return graph_laplacian(grid_adjacency(shape, neighbours, cyclic), dtype=dtype)
