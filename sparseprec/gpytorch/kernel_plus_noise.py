r"""``KernelPlusPrecisionInverse``: :math:`A = K + Q^{-1}` (a GP covariance plus sparse-precision noise).

Two paths, chosen as GPyTorch chooses for its own operators:

**Exact, dense** — for ``n ≤ gpytorch.settings.max_cholesky_size`` (800 by default), or with
``gpytorch.settings.fast_computations`` off for the operation at hand:

.. math::

    K + Q^{-1} = (I + K Q)\, Q^{-1}, \qquad
    \log\det(K + Q^{-1}) = \log|\det(I + K Q)| - \log\det Q, \qquad
    (K + Q^{-1})^{-1} B = Q\, (I + K Q)^{-1} B .

``I + K Q`` has real eigenvalues :math:`\geq 1` (``K`` PSD, ``Q`` SPD), so its LU factorisation is safe; ``K Q`` is
formed by sparse products and ``log det Q`` by sparse Cholesky. Cost: one dense ``n × n`` LU, as any exact GP.

**Iterative** — above ``max_cholesky_size``: GPyTorch's own machinery (preconditioned CG for solves, stochastic Lanczos
quadrature for the log-determinant, its settings ``cg_tolerance``, ``max_cg_iterations``, ``num_trace_samples``,
``max_lanczos_quadrature_iterations``, ``max_preconditioner_size``, ``min_preconditioning_size``) runs on this operator
unchanged. A product :math:`A x = K x + Q^{-1} x` costs one kernel product and one sparse Cholesky solve. The
preconditioner is :class:`LowRankPlusPrecisionInverse`,

.. math::

    P = U U^\top + Q^{-1} \approx A, \qquad
    P^{-1} = Q - Q U (I + U^\top Q U)^{-1} U^\top Q, \qquad
    \log\det P = -\log\det Q + \log\det(I + U^\top Q U),

with ``U`` the kernel's rank-``k`` pivoted Cholesky factor (``k = max_preconditioner_size``, 15 by default; as for
GPyTorch's own operators, no preconditioner when ``k`` is 0 or ``n < min_preconditioning_size``, 2000). Applying
:math:`P^{-1}` costs sparse products only. GPyTorch then computes
:math:`\log\det A = \log\det P + \log\det(P^{-1} A)`: the first term exactly (its gradient too: the noise part by the
sparse selected inverse), the second by Lanczos quadrature with probe vectors drawn exactly from :math:`N(0, P)`,
whose gradient is GPyTorch's variance-reduced stochastic trace estimate (Wenger et al. 2022).

Gradients reach the kernel's hyper-parameters and ``Q``'s stored values on both paths.
"""

from __future__ import annotations

import functools
import warnings

import torch
from linear_operator import settings, to_linear_operator
from linear_operator.operators import LinearOperator
from linear_operator.utils.warnings import NumericalWarning

from .._validation import broadcast_shapes
from ._sparse_symmetric import exact_inv_quad_logdet
from .low_rank_plus_noise import LowRankPlusPrecisionInverse
from .precision_inverse import PrecisionInverseLinearOperator

__all__ = ["KernelPlusPrecisionInverse"]


class KernelPlusPrecisionInverse(LinearOperator):
    r""":math:`K + \Sigma` for a covariance ``K`` (LinearOperator or dense tensor) and :math:`\Sigma = Q^{-1}` (see the
    module: exact up to ``max_cholesky_size``, GPyTorch's CG and Lanczos quadrature with a sparse preconditioner above).

    Raises ``TypeError`` for a noise that is not a :class:`PrecisionInverseLinearOperator` and ``ValueError`` when the
    sizes differ.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.gpytorch import KernelPlusPrecisionInverse, PrecisionInverseLinearOperator
    >>> from sparseprec.structures import ar1
    >>> K = torch.full((4, 4), 0.5, dtype=torch.float64) + 0.5 * torch.eye(4, dtype=torch.float64)
    >>> C = KernelPlusPrecisionInverse(K, PrecisionInverseLinearOperator.from_precision(ar1(4, 0.6)))
    >>> dense = K + torch.linalg.inv(ar1(4, 0.6).to_dense())
    >>> torch.allclose(C.logdet(), torch.logdet(dense))
    True
    """

    def __init__(self, kernel: LinearOperator | torch.Tensor, noise: PrecisionInverseLinearOperator):
        kernel = to_linear_operator(kernel)
        if not isinstance(noise, PrecisionInverseLinearOperator):
            raise TypeError(f"noise must be a PrecisionInverseLinearOperator, got {type(noise).__name__}")
        if kernel.shape[-1] != noise.shape[-1]:
            n, m = kernel.shape[-1], noise.shape[-1]
            raise ValueError(f"kernel is {n} × {n} but the noise covers {m} points")
        super().__init__(kernel, noise)
        self.kernel, self.noise = kernel, noise
        self._preconditioner_cache: LowRankPlusPrecisionInverse | None = None

    def _size(self) -> torch.Size:
        batch = broadcast_shapes(self.kernel.batch_shape, self.noise.batch_shape)
        return batch + self.kernel.matrix_shape

    def _transpose_nonbatch(self) -> LinearOperator:
        # the same matrix; transposing the kernel's operator keeps gradients w.r.t. a dense K's entries in place
        return KernelPlusPrecisionInverse(self.kernel._transpose_nonbatch(), self.noise)

    def _matmul(self, rhs: torch.Tensor) -> torch.Tensor:
        return self.kernel._matmul(rhs) + self.noise._matmul(rhs)

    def _bilinear_derivative(self, left_vecs: torch.Tensor, right_vecs: torch.Tensor) -> tuple:
        # ∂(uᵀ (K + Σ) v) = ∂(uᵀ K v) + ∂(uᵀ Σ v): each part by its own operator (the kernel's is an outer product
        # for a dense K); the representation is the kernel's tensors followed by the noise's
        kernel = self.kernel._bilinear_derivative(left_vecs, right_vecs)
        noise = self.noise._bilinear_derivative(left_vecs, right_vecs)
        return tuple(kernel) + tuple(noise)

    def _diagonal(self) -> torch.Tensor:
        return self.kernel._diagonal() + self.noise._diagonal()

    def _expand_batch(self, batch_shape: torch.Size) -> LinearOperator:
        return KernelPlusPrecisionInverse(self.kernel._expand_batch(batch_shape), self.noise._expand_batch(batch_shape))

    def to_dense(self) -> torch.Tensor:
        return self.kernel.to_dense() + self.noise.to_dense()

    # ---- which path --------------------------------------------------------------------------------------------------
    def _exact(self, fast_setting) -> bool:
        """The dense exact path: small operators, or GPyTorch's fast computations turned off for this operation."""
        return fast_setting.off() or self.shape[-1] <= settings.max_cholesky_size.value()

    # ---- the iterative path's preconditioner -------------------------------------------------------------------------
    def _preconditioner(self):
        """``(closure x ↦ P⁻¹ x, P, log det P)`` with ``P = U Uᵀ + Q⁻¹`` (see the module); ``(None, None, None)``
        when ``max_preconditioner_size`` is 0 or ``n < min_preconditioning_size``."""
        rank = settings.max_preconditioner_size.value()
        n = self.shape[-1]
        if rank == 0 or n < settings.min_preconditioning_size.value():  # GPyTorch's rule for its own operators
            return None, None, None
        if self._preconditioner_cache is None:
            rank = min(rank, n)
            batch = self.shape[:-2]
            root = torch.zeros(*batch, n, 0, dtype=self.dtype, device=self.device)
            if rank > 0:
                pivoted = self.kernel.pivoted_cholesky(rank=rank)
                if bool(torch.isnan(pivoted).any()):
                    warnings.warn(
                        "NaNs in the kernel's pivoted Cholesky factor: the preconditioner of K + Q⁻¹ falls back to "
                        "the noise alone (P = Q⁻¹)",
                        NumericalWarning,
                        stacklevel=2,
                    )
                else:
                    root = pivoted.expand(*batch, *pivoted.shape[-2:])
            noise = self.noise if self.noise.batch_shape == batch else self.noise._expand_batch(batch)
            self._preconditioner_cache = LowRankPlusPrecisionInverse(root, noise)
        P = self._preconditioner_cache
        return P.preconditioner_closure(), P, P.logdet()

    # ---- exact dense path --------------------------------------------------------------------------------------------
    def _lu(self) -> tuple[torch.Tensor, torch.Tensor]:
        K = self.kernel.to_dense()
        QK = self.noise.solve(K.expand(self.shape))  # Q K (sparse products); K Q = (Q K)ᵀ
        M = torch.eye(self.shape[-1], dtype=K.dtype, device=K.device) + QK.mT
        return torch.linalg.lu_factor(M)

    def _lu_solve(self, LU: torch.Tensor, pivots: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        """``(K + Q⁻¹)⁻¹ rhs = Q (I + K Q)⁻¹ rhs`` from the LU of ``I + K Q`` (``rhs``: ``(..., n, k)``)."""
        return self.noise.solve(torch.linalg.lu_solve(LU, pivots, rhs.expand(LU.shape[:-2] + rhs.shape[-2:])))

    def solve(self, right_tensor: torch.Tensor, left_tensor: torch.Tensor | None = None) -> torch.Tensor:
        if not self._exact(settings.fast_computations.solves):
            return super().solve(right_tensor, left_tensor)
        vector = right_tensor.dim() == 1
        rhs = right_tensor.unsqueeze(-1) if vector else right_tensor
        out = self._lu_solve(*self._lu(), rhs)
        out = out.squeeze(-1) if vector else out
        return out if left_tensor is None else left_tensor @ out

    def inv_quad_logdet(
        self, inv_quad_rhs: torch.Tensor | None = None, logdet: bool = False, reduce_inv_quad: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._exact(settings.fast_computations.log_prob):
            if not logdet:  # linear_operator would route this back to inv_quad
                empty = torch.zeros([], dtype=self.dtype, device=self.device)
                return self.inv_quad(inv_quad_rhs, reduce_inv_quad=reduce_inv_quad), empty
            return super().inv_quad_logdet(inv_quad_rhs, logdet=logdet, reduce_inv_quad=reduce_inv_quad)
        LU, pivots = self._lu()

        def log_det() -> torch.Tensor:
            # det(I + KQ) > 0: its eigenvalues are real and ≥ 1; the LU's diagonal carries the magnitude
            return LU.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1) + self.noise.logdet()

        solve = functools.partial(self._lu_solve, LU, pivots)
        return exact_inv_quad_logdet(self, inv_quad_rhs, logdet, reduce_inv_quad, solve, log_det)

    def inv_quad(self, inv_quad_rhs: torch.Tensor, reduce_inv_quad: bool = True) -> torch.Tensor:
        if not self._exact(settings.fast_computations.log_prob):
            return super().inv_quad(inv_quad_rhs, reduce_inv_quad=reduce_inv_quad)
        return self.inv_quad_logdet(inv_quad_rhs, reduce_inv_quad=reduce_inv_quad)[0]

    def logdet(self) -> torch.Tensor:
        return self.inv_quad_logdet(logdet=True)[1]
