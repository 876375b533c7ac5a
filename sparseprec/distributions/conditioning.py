r"""Conjugate Gaussian observations of a GMRF: posterior precision, posterior mean and the marginal likelihood.

Model: :math:`x \sim N(\mu, Q^{-1})`, :math:`y = A x + e`, :math:`e \sim N(0, R^{-1})` with sparse ``A`` ``(m, n)``
and diagonal :math:`R = \mathrm{diag}(w)`. Then

.. math::

    x \mid y \sim N(\mu_{post}, Q_{post}^{-1}), \quad Q_{post} = Q + A^\top R A, \quad
    \mu_{post} = \mu + Q_{post}^{-1} A^\top R (y - A\mu),

and, for any :math:`x` (we use :math:`\mu_{post}`),
:math:`\log p(y) = \log p(y \mid x) + \log p(x) - \log p(x \mid y)`, which expands to
:math:`-\tfrac12 r^\top R r - \tfrac12 (x-\mu)^\top Q (x-\mu) + \tfrac12 \log\det R + \tfrac12\log\det Q
- \tfrac12 \log\det Q_{post} - \tfrac m2 \log 2\pi` with :math:`r = y - A\mu_{post}`.

:math:`A^\top R A` is assembled from the pairs of ``A``'s entries that share a row (pattern work once per pattern of
``A``; the values are differentiable w.r.t. ``A``'s stored values and ``w``), and added to ``Q`` on the union of the
two patterns.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .._validation import check_sparse_matrix
from ..ops import sparse_mm
from ..ops._values import stored_values
from ..pattern import Assembly, SparsePattern, pattern_of
from ._pairs import product_pattern
from ._precision import LOG_2PI, batched_csr, precision_values, shared_pattern

__all__ = ["posterior_precision", "noise_weights", "gaussian_log_likelihood"]


def noise_weights(noise_precision: float | torch.Tensor, m: int, like: torch.Tensor) -> torch.Tensor:
    """The diagonal ``w`` of ``R`` as an ``(m,)`` tensor from a positive scalar or an ``(m,)`` tensor.

    Raises ``NotImplementedError`` for a sparse ``R``, ``ValueError`` for other shapes or values that are not positive
    and finite (an infinite precision, an exact observation, is not a Gaussian likelihood), ``TypeError`` for anything
    but a tensor or a real number (a bool included).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions.conditioning import noise_weights
    >>> noise_weights(4.0, 3, torch.zeros(1, dtype=torch.float64))
    tensor([4., 4., 4.], dtype=torch.float64)
    """
    if isinstance(noise_precision, torch.Tensor):
        if noise_precision.layout != torch.strided:
            raise NotImplementedError(
                "noise_precision must be diagonal (a scalar or an (m,) tensor of the diagonal); a sparse R is not "
                "supported yet"
            )
        if noise_precision.dim() > 1 or noise_precision.numel() not in (1, m):
            raise ValueError(
                f"noise_precision must be a scalar or have shape ({m},), got {tuple(noise_precision.shape)}"
            )
        given = noise_precision.to(dtype=like.dtype, device=like.device).reshape(-1)
    else:
        if isinstance(noise_precision, (bool, np.bool_)) or not isinstance(noise_precision, numbers.Real):
            raise TypeError(
                f"noise_precision must be a float or a tensor, got {type(noise_precision).__name__} {noise_precision!r}"
            )
        given = torch.full((1,), float(noise_precision), dtype=like.dtype, device=like.device)
    bad = ~(given.detach() > 0) | ~given.detach().isfinite()
    if bool(bad.any()):
        raise ValueError(f"noise_precision must be positive and finite, got {float(given.detach()[bad][0])}")
    return given.expand(m)


def gaussian_log_likelihood(
    obs_matrix: torch.Tensor, y: torch.Tensor, noise_precision: float | torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    r""":math:`\log N(y; A x, R^{-1})` with :math:`R = \mathrm{diag}(w)` for ``x`` of shape ``(..., n)`` and ``y``
    ``(..., m)`` (batch dimensions broadcast): :math:`-\tfrac12 r^\top R r + \tfrac12 \log\det R - \tfrac m2 \log
    2\pi`, :math:`r = y - A x`; differentiable. ``noise_precision`` as :func:`noise_weights`.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions.conditioning import gaussian_log_likelihood
    >>> A = torch.eye(2, dtype=torch.float64).to_sparse_csr()
    >>> gaussian_log_likelihood(A, torch.zeros(2, dtype=torch.float64), 1.0, torch.zeros(2, dtype=torch.float64))
    tensor(-1.8379, dtype=torch.float64)
    """
    m, n = obs_matrix.shape
    w = noise_weights(noise_precision, m, x)
    columns = math.prod(x.shape[:-1])
    fitted = sparse_mm(obs_matrix, x.reshape(columns, n).transpose(0, 1)).transpose(0, 1).reshape(x.shape[:-1] + (m,))
    r = y - fitted
    return -0.5 * (w * r.square()).sum(-1) + 0.5 * w.log().sum() - 0.5 * m * LOG_2PI


def gram_pattern(pattern: SparsePattern, n: int) -> tuple[torch.Tensor, ...]:
    """``(first, second, inverse, keys)`` of ``AᵀA``'s pairs of ``A``'s entries sharing a row (``product_pattern``),
    cached with ``A``'s pattern."""
    return pattern.derived(
        ("gram_pattern", n), lambda: product_pattern(pattern.row.long(), pattern.col.long(), pattern.n_rows, n)
    )


def _union(q_pattern: SparsePattern, a_pattern: SparsePattern, n: int) -> tuple[torch.Tensor, ...]:
    """Merged CSR pattern of ``Q`` and ``AᵀA``; cached on ``A``'s pattern, per ``Q`` pattern."""

    def union() -> tuple[torch.Tensor, ...]:
        gram_keys = gram_pattern(a_pattern, n)[3]
        merged = Assembly(
            torch.cat([q_pattern.row.long(), gram_keys // n]), torch.cat([q_pattern.col.long(), gram_keys % n]), n, n
        )
        return merged.crow, merged.col, merged.inverse, merged.nnz

    return a_pattern.derived(("union", q_pattern), union)


def posterior_precision(Q: torch.Tensor, A: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    r""":math:`Q + A^\top \mathrm{diag}(w) A` as a sparse CSR matrix, differentiable w.r.t. the stored values of
    ``Q`` and ``A`` and w.r.t. ``w``.

    ``Q`` may be a batch ``(*pbatch, n, n)`` on one shared pattern (``A`` and ``w`` shared): the result is then the
    batch ``(*pbatch, n, n)`` of posterior precisions, again on one shared pattern (expanded index data).

    ``ValueError`` names ``obs_matrix`` when ``A`` has the wrong shape or a non-finite stored value (checked always:
    it would otherwise surface as a non-finite value of the posterior precision).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions.conditioning import posterior_precision
    >>> Q = torch.eye(3, dtype=torch.float64).to_sparse_csr()
    >>> A = torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64).to_sparse_csr()
    >>> posterior_precision(Q, A, torch.tensor([2.0], dtype=torch.float64)).detach().to_dense()
    tensor([[3., 2., 0.],
            [2., 3., 0.],
            [0., 0., 1.]], dtype=torch.float64)
    """
    n = Q.shape[-1]
    A = check_sparse_matrix(A, "obs_matrix")
    if A.dim() != 2 or A.shape[1] != n:
        raise ValueError(f"obs_matrix must have shape (m, {n}) to match the precision, got {tuple(A.shape)}")
    if A.dtype != Q.dtype or A.device != Q.device:
        raise ValueError(
            f"obs_matrix must have the precision's dtype {Q.dtype} and device {Q.device}, got {A.dtype}, {A.device}"
        )
    shared = shared_pattern(Q)
    q_pattern = pattern_of(Q) if Q.dim() == 2 else shared.element_pattern()
    q_values = precision_values(Q, shared)  # (B, nnz)
    a_pattern = pattern_of(A, "obs_matrix")
    a_values = stored_values(A, a_pattern)
    finite = torch.isfinite(a_values.detach())
    if not bool(finite.all()):
        e = int(torch.nonzero(~finite)[0, 0])
        raise ValueError(
            f"obs_matrix must be finite, got {float(a_values.detach()[e])} at entry "
            f"({int(a_pattern.row[e])}, {int(a_pattern.col[e])})"
        )
    first, second, inverse, gram_keys = gram_pattern(a_pattern, n)
    gram_terms = a_values[first] * a_values[second] * w[a_pattern.row.long()[first]]
    gram_values = gram_terms.new_zeros(gram_keys.numel()).index_add(0, inverse, gram_terms)
    crow, col, merge, size = _union(q_pattern, a_pattern, n)
    terms = torch.cat([q_values, gram_values.expand(q_values.shape[0], -1)], dim=1)
    values = terms.new_zeros(terms.shape[0], size).index_add(1, merge, terms)
    return batched_csr(crow, col, values.reshape(shared.batch_shape + (size,)), n)
