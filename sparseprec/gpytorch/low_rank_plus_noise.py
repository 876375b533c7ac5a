r"""``LowRankPlusPrecisionInverse``: :math:`P = U U^\top + Q^{-1}`, a low-rank matrix plus sparse-precision noise,
with exact solves, log-determinant and samples.

It is the preconditioner of :class:`KernelPlusPrecisionInverse` (:math:`K + Q^{-1}`) in GPyTorch's iterative path:
``U`` (``n × k``) is GPyTorch's rank-``k`` pivoted Cholesky factor of the kernel, :math:`U U^\top \approx K`, and the
noise is kept exactly. With :math:`C = I_k + U^\top Q U` (``k × k``, SPD), Woodbury's identity and the matrix
determinant lemma give

.. math::

    P^{-1} = Q - Q U C^{-1} U^\top Q, \qquad \log\det P = -\log\det Q + \log\det C,

so a solve costs two sparse products with ``Q`` and a ``k × k`` triangular solve pair — no sparse Cholesky solve —
and the log-determinant one sparse log-determinant (the noise operator's, computed once) plus a ``k × k`` Cholesky.
Samples :math:`z = R\,\varepsilon_1 + U \varepsilon_2` (:math:`Q^{-1} = R R^\top` from the sparse Cholesky factor)
have covariance exactly ``P``: they are the probe vectors of GPyTorch's stochastic Lanczos quadrature.

Gradients: ``logdet()``, ``solve``, ``inv_quad`` and ``matmul`` are differentiable in ``U`` and in ``Q``'s stored
values (the sparse log-determinant's gradient is exact, by the selected inverse); the closure
:meth:`preconditioner_closure` used inside CG is not (CG needs none).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from linear_operator.operators import LinearOperator

from .._validation import broadcast_shapes
from ._sparse_symmetric import exact_inv_quad_logdet
from .precision_inverse import PrecisionInverseLinearOperator

__all__ = ["LowRankPlusPrecisionInverse"]


def _woodbury(rhs: torch.Tensor, QU: torch.Tensor, chol: torch.Tensor, Q_apply) -> torch.Tensor:
    """``(Q − Q U C⁻¹ Uᵀ Q) rhs`` for ``rhs`` ``(*batch, n, m)``, given ``Q U``, ``C``'s Cholesky factor and
    ``Q_apply(x) = Q x``."""
    Qr = Q_apply(rhs)
    if QU.shape[-1] == 0:
        return Qr
    return Qr - QU @ torch.cholesky_solve(QU.mT @ rhs, chol)


class LowRankPlusPrecisionInverse(LinearOperator):
    r""":math:`U U^\top + Q^{-1}` for a dense ``U`` (``(*batch, n, k)``, :math:`k \ge 0`) and a
    :class:`PrecisionInverseLinearOperator` :math:`Q^{-1}` (see the module for the maths).

    Parameters
    ----------
    root : torch.Tensor
        ``U``, ``(*batch, n, k)``; ``k = 0`` gives :math:`P = Q^{-1}`.
    noise : PrecisionInverseLinearOperator
        The noise covariance :math:`Q^{-1}` on the same ``n`` points.

    Raises
    ------
    TypeError
        ``noise`` not a :class:`PrecisionInverseLinearOperator`, or ``root`` not a floating tensor.
    ValueError
        ``root`` not ``(*batch, n, k)`` with the noise's ``n``.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.gpytorch import LowRankPlusPrecisionInverse, PrecisionInverseLinearOperator
    >>> from sparseprec.structures import ar1
    >>> U = torch.randn(50, 3, dtype=torch.float64)
    >>> P = LowRankPlusPrecisionInverse(U, PrecisionInverseLinearOperator.from_precision(ar1(50, 0.8)))
    >>> dense = U @ U.T + torch.linalg.inv(ar1(50, 0.8).to_dense())
    >>> b = torch.randn(50, 2, dtype=torch.float64)
    >>> torch.allclose(P.solve(b), torch.linalg.solve(dense, b)), torch.allclose(P.logdet(), torch.logdet(dense))
    (True, True)
    """

    def __init__(self, root: torch.Tensor, noise: PrecisionInverseLinearOperator):
        if not isinstance(noise, PrecisionInverseLinearOperator):
            raise TypeError(f"noise must be a PrecisionInverseLinearOperator, got {type(noise).__name__}")
        if not isinstance(root, torch.Tensor) or not root.dtype.is_floating_point:
            kind = f"a tensor of dtype {root.dtype}" if isinstance(root, torch.Tensor) else type(root).__name__
            raise TypeError(f"root must be a floating-point tensor U of shape (*batch, n, k), got {kind}")
        n = noise.shape[-1]
        if root.dim() < 2 or root.shape[-2] != n:
            raise ValueError(f"root must have shape (*batch, {n}, k) (the noise covers {n} points), got "
                             f"{tuple(root.shape)}")  # fmt: skip
        super().__init__(root, noise)
        self.root, self.noise = root, noise
        self._capacitance_factor: torch.Tensor | None = None
        self._noise_root: torch.Tensor | None = None

    # ---- the k × k capacitance C = I + Uᵀ Q U --------------------------------------------------------------------
    def _capacitance_cholesky(self) -> torch.Tensor:
        """Lower Cholesky factor of ``C = I + Uᵀ Q U`` (differentiable in ``U`` and ``Q``'s values; cached)."""
        if self._capacitance_factor is None:
            U = self.root
            eye = torch.eye(U.shape[-1], dtype=U.dtype, device=U.device)
            C = eye + U.mT @ self._noise_times_root()
            self._capacitance_factor = torch.linalg.cholesky(0.5 * (C + C.mT))
        return self._capacitance_factor

    def _noise_times_root(self) -> torch.Tensor:
        """``Q U`` (differentiable in ``U`` and ``Q``'s values; cached: the capacitance and every solve use it)."""
        if self._noise_root is None:
            self._noise_root = self._noise_times(self.noise, self.root)
        return self._noise_root

    @staticmethod
    def _noise_times(noise: PrecisionInverseLinearOperator, U: torch.Tensor) -> torch.Tensor:
        """``Q U`` (``Σ⁻¹ U``: one sparse product); an empty ``U`` (``k = 0``) gives an empty result."""
        if U.shape[-1] == 0:
            return U.expand(*broadcast_shapes(U.shape[:-2], noise.batch_shape), *U.shape[-2:])
        return noise.solve(U)

    # ---- LinearOperator API ------------------------------------------------------------------------------------------
    def _size(self) -> torch.Size:
        return broadcast_shapes(self.root.shape[:-2], self.noise.batch_shape) + self.noise.matrix_shape

    def _transpose_nonbatch(self) -> LinearOperator:
        return self

    def _expand_batch(self, batch_shape: torch.Size) -> LinearOperator:
        root = self.root.expand(*batch_shape, *self.root.shape[-2:])
        return LowRankPlusPrecisionInverse(root, self.noise._expand_batch(batch_shape))

    def _matmul(self, rhs: torch.Tensor) -> torch.Tensor:
        vector = rhs.dim() == 1
        rhs = rhs.unsqueeze(-1) if vector else rhs
        out = self.root @ (self.root.mT @ rhs) + self.noise._matmul(rhs)
        return out.squeeze(-1) if vector else out

    def _diagonal(self) -> torch.Tensor:
        return self.root.square().sum(-1) + self.noise._diagonal()

    def to_dense(self) -> torch.Tensor:
        return self.root @ self.root.mT + self.noise.to_dense()

    def solve(self, right_tensor: torch.Tensor, left_tensor: torch.Tensor | None = None) -> torch.Tensor:
        vector = right_tensor.dim() == 1
        rhs = right_tensor.unsqueeze(-1) if vector else right_tensor
        out = _woodbury(rhs, self._noise_times_root(), self._capacitance_cholesky(), self.noise.solve)
        out = out.squeeze(-1) if vector else out
        return out if left_tensor is None else left_tensor @ out

    def inv_quad_logdet(
        self, inv_quad_rhs: torch.Tensor | None = None, logdet: bool = False, reduce_inv_quad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return exact_inv_quad_logdet(self, inv_quad_rhs, logdet, reduce_inv_quad, self.solve, self.logdet)

    def inv_quad(self, inv_quad_rhs: torch.Tensor, reduce_inv_quad: bool = True) -> torch.Tensor:
        return self.inv_quad_logdet(inv_quad_rhs, reduce_inv_quad=reduce_inv_quad)[0]

    def logdet(self) -> torch.Tensor:
        """``log det P = −log det Q + log det C`` (exact; differentiable in ``U`` and ``Q``'s values)."""
        chol = self._capacitance_cholesky()
        return self.noise.logdet() + 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)

    def zero_mean_mvn_samples(self, num_samples: int) -> torch.Tensor:
        """``num_samples`` exact draws of ``N(0, P)``: ``R ε₁ + U ε₂`` with ``Q⁻¹ = R Rᵀ``; ``(num, *batch, n)``."""
        noise = self.noise.zero_mean_mvn_samples(num_samples)
        k = self.root.shape[-1]
        if k == 0:
            return noise.expand(num_samples, *self.shape[:-1])
        eps = torch.randn(num_samples, *self.root.shape[:-2], k, 1, dtype=self.dtype, device=self.device)
        return noise + (self.root @ eps).squeeze(-1)

    def preconditioner_closure(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """``x ↦ P⁻¹ x`` for CG, on detached copies of ``U``, ``Q`` and ``C``'s factor (no graph is kept).

        Holds only tensors (not this operator), so the closure does not keep the operator alive."""
        chol = self._capacitance_cholesky().detach()  # outside no_grad: the cached factor keeps its graph for logdet()
        with torch.no_grad():
            root = self.root.detach()
            noise = PrecisionInverseLinearOperator(self.noise.values.detach(), self.noise.pattern)
            QU = self._noise_times(noise, root)

        def closure(rhs: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return _woodbury(rhs, QU, chol, noise.solve)

        return closure
