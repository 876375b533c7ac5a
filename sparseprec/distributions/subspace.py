r"""The support of an intrinsic GMRF, :math:`\{x \in \mathbb{R}^n : C x = e\}`, and its bijection from
:math:`\mathbb{R}^{n-k}`.

``biject_to`` / ``transform_to`` of an :class:`AffineSubspace` give an :class:`AffineSubspaceTransform`, so every
consumer of ``torch.distributions.biject_to`` — Pyro's autoguides (``AutoNormal``, ``AutoMultivariateNormal``,
:class:`sparseprec.pyro.AutoSparseMultivariateNormal`), ``NUTS``/``HMC``, ``initialize_model`` — works on the
``n − k`` free coordinates of an intrinsic model instead of proposing values off its support.

The map pins the ``k`` coordinates ``S`` (with :math:`C_{:,S}` invertible) to zero, places :math:`z` on the others
(:math:`\bar S`) and projects orthogonally onto the subspace:

.. math::

    w_{\bar S} = z,\; w_S = 0, \qquad x = w - C^\top (C C^\top)^{-1} (C w - e).

Inverse: :math:`z = x_{\bar S} - C_{:,\bar S}^\top C_{:,S}^{-\top} x_S` (the unique point with :math:`w_S = 0` whose
projection is ``x``). The Jacobian w.r.t. the ``(n − k)``-dimensional volume on the subspace is constant:
:math:`\log|J| = \log|\det C_{:,S}| - \tfrac12 \log\det(C C^\top)` (from
:math:`A^\top A = I - C_{:,\bar S}^\top (CC^\top)^{-1} C_{:,\bar S}`). For an intrinsic GMRF with null space
:math:`\mathrm{span}(C^\top)`, :math:`Q x = Q w`, so the density pushed back to ``z`` is the proper GMRF with the
pinned precision :math:`Q_{\bar S \bar S}` — sparse, and what the sparse autoguide uses as its pattern.
"""

from __future__ import annotations

import torch
from torch.distributions import biject_to, constraints, transform_to
from torch.distributions.transforms import Transform

__all__ = ["AffineSubspace", "AffineSubspaceTransform", "project", "log_volume", "constraint_gap"]


def project(C: torch.Tensor, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r""":math:`x - C^\top (C C^\top)^{-1} (C x - t)`: the orthogonal projection of ``x`` ``(..., n)`` onto
    :math:`\{x : C x = t\}` (``target`` ``(..., k)``, broadcast), moving along the row space of ``C``."""
    gap = x @ C.T - target
    return x - torch.linalg.solve(C @ C.T, gap.unsqueeze(-1)).squeeze(-1) @ C


def log_volume(C: torch.Tensor, pinned: torch.Tensor) -> torch.Tensor:
    r""":math:`\log|\det C_{:,S}| - \tfrac12 \log\det(C C^\top)`: the log-Jacobian of the map from the free
    coordinates onto the subspace (module docstring); minus twice it is the term by which the generalised determinant
    of an intrinsic GMRF exceeds the determinant of its pinned precision."""
    return torch.linalg.slogdet(C[:, pinned]).logabsdet - 0.5 * torch.logdet(C @ C.T)


def constraint_gap(C: torch.Tensor, e: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``(|C x − e|, max_i Σ_j |C_ij|)``: the constraint residual ``(..., k)`` and the norm of ``C`` that scales
    the tolerance of a check (``|C x − e| <= rtol (1 + max|x| · max_i Σ_j |C_ij|)``)."""
    return (x @ C.T - e).abs(), C.abs().sum(-1).max()


class AffineSubspace(constraints.Constraint):
    r"""Vectors ``x`` (last dimension ``n``) with ``C x = e`` (``C``: dense ``(k, n)``, full row rank).

    Parameters
    ----------
    constraint_matrix : torch.Tensor
        ``C``, dense ``(k, n)``.
    constraint_value : torch.Tensor
        ``e``, ``(..., k)`` (broadcast against the batch of the values checked).
    pinned : torch.Tensor
        The ``k`` indices ``S`` (ascending) with ``C[:, S]`` invertible, used by the bijection.
    rtol : float
        ``check`` accepts :math:`\lvert C x - e \rvert \le \mathrm{rtol} \cdot (1 + \max\lvert x \rvert \cdot \max_i
        \sum_j \lvert C_{ij} \rvert)`.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions import ICAR, AffineSubspace
    >>> from sparseprec.structures import adjacency_from_pairs
    >>> support = ICAR(adjacency_from_pairs([(0, 1), (1, 2)])).support  # sum-to-zero on 3 nodes
    >>> x = torch.tensor([[1.0, -1.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    >>> isinstance(support, AffineSubspace), support.check(x)
    (True, tensor([ True, False]))
    """

    is_discrete = False
    event_dim = 1

    def __init__(
        self, constraint_matrix: torch.Tensor, constraint_value: torch.Tensor, pinned: torch.Tensor, rtol: float = 1e-6
    ):
        self.constraint_matrix, self.constraint_value, self.pinned, self.rtol = (
            constraint_matrix,
            constraint_value,
            pinned,
            rtol,
        )
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:
        gap, norm = constraint_gap(self.constraint_matrix, self.constraint_value, value)
        scale = 1.0 + value.abs().amax(-1) * norm
        return (gap.amax(-1) <= self.rtol * scale) & value.isfinite().all(-1)

    def __repr__(self) -> str:
        k, n = self.constraint_matrix.shape
        return f"{type(self).__name__}(k={k}, n={n})"


class AffineSubspaceTransform(Transform):
    r"""Bijection :math:`\mathbb{R}^{n-k} \to \{x : C x = e\}` of an :class:`AffineSubspace` (see the module).

    Examples
    --------
    >>> import torch
    >>> from torch.distributions import biject_to
    >>> from sparseprec.distributions import AffineSubspace
    >>> sum_to_zero = AffineSubspace(torch.ones(1, 4), torch.zeros(1), torch.tensor([3]))
    >>> t = biject_to(sum_to_zero)
    >>> x = t(torch.tensor([1.0, 2.0, 3.0]))
    >>> x.sum().abs() < 1e-6, torch.allclose(t.inv(x), torch.tensor([1.0, 2.0, 3.0]))
    (tensor(True), True)
    """

    domain = constraints.real_vector
    bijective = True

    def __init__(self, subspace: AffineSubspace, cache_size: int = 0):
        super().__init__(cache_size=cache_size)
        self.subspace = subspace
        C = subspace.constraint_matrix
        n = C.shape[-1]
        keep = torch.ones(n, dtype=torch.bool, device=C.device)
        keep[subspace.pinned] = False
        self._keep = keep.nonzero().squeeze(-1)

    @property
    def codomain(self) -> AffineSubspace:
        return self.subspace

    def with_cache(self, cache_size: int = 1) -> AffineSubspaceTransform:
        return self if self._cache_size == cache_size else AffineSubspaceTransform(self.subspace, cache_size)

    def _call(self, z: torch.Tensor) -> torch.Tensor:
        C, e = self.subspace.constraint_matrix.to(z.dtype), self.subspace.constraint_value.to(z.dtype)
        w = z.new_zeros(z.shape[:-1] + C.shape[-1:]).index_copy(-1, self._keep, z)
        return project(C, w, e)

    def _inverse(self, x: torch.Tensor) -> torch.Tensor:
        C = self.subspace.constraint_matrix.to(x.dtype)
        C_pinned = C[:, self.subspace.pinned]
        alpha = torch.linalg.solve(C_pinned.T, x[..., self.subspace.pinned].unsqueeze(-1)).squeeze(-1)
        return (x - alpha @ C).index_select(-1, self._keep)

    def log_abs_det_jacobian(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        value = log_volume(self.subspace.constraint_matrix.to(z.dtype), self.subspace.pinned)
        return value.expand(z.shape[:-1])

    def forward_shape(self, shape: torch.Size) -> torch.Size:
        return torch.Size(shape[:-1]) + self.subspace.constraint_matrix.shape[-1:]

    def inverse_shape(self, shape: torch.Size) -> torch.Size:
        return torch.Size(shape[:-1]) + (self._keep.numel(),)


@biject_to.register(AffineSubspace)
@transform_to.register(AffineSubspace)
def _affine_subspace_transform(constraint: AffineSubspace) -> AffineSubspaceTransform:
    return AffineSubspaceTransform(constraint)
