r"""``LatentGaussianModel``: a latent GMRF (possibly intrinsic, possibly stacked), a sparse linear predictor and
independent observations.

.. math::

    x \sim N(\mu, Q^{-1}) \ (\text{on } \{C x = e\} \text{ for intrinsic parts}), \qquad
    \eta = A x + o, \qquad y_i \mid \eta_i \sim p(y_i \mid \eta_i) \text{ independently.}

The latent vector is the concatenation of the prior's components (e.g. fixed effects with a vague Gaussian prior, an
ICAR effect, an i.i.d. effect, an RW2 in time); its precision is their block diagonal (one sparse matrix, assembled on
a pattern cached with the components' patterns, differentiable in each component's stored values), and its linear
constraints are those of its intrinsic components, stacked.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch

from .._validation import check_dense, check_sparse_matrix
from ..distributions import GMRF, IntrinsicGMRF
from ..distributions._precision import LOG_2PI, batched_csr
from ..ops import sparse_mm
from ..ops._values import stored_values
from ..pattern import crow_from_rows, pattern_of
from .approximation import LaplaceApproximation
from .likelihoods import Likelihood
from .newton import Newton

__all__ = ["LatentGaussianModel"]


def _check_components(prior: object) -> list[GMRF | IntrinsicGMRF]:
    components = [prior] if not isinstance(prior, (list, tuple)) else list(prior)
    if not components:
        raise ValueError(
            "prior must be a GMRF, an IntrinsicGMRF or a non-empty sequence of them, got an empty sequence"
        )
    for i, c in enumerate(components):
        name = "prior" if len(components) == 1 and not isinstance(prior, (list, tuple)) else f"prior[{i}]"
        if not isinstance(c, (GMRF, IntrinsicGMRF)):
            raise TypeError(f"{name} must be a sparseprec GMRF or IntrinsicGMRF (e.g. ICAR), got {type(c).__name__}")
        if c.batch_shape != torch.Size():
            raise ValueError(
                f"{name} must have batch_shape () (one latent field; fit several data sets one by one), got batch "
                f"shape {tuple(c.batch_shape)}"
            )
        if (c.loc.dtype, c.loc.device) != (components[0].loc.dtype, components[0].loc.device):
            raise ValueError(
                f"{name} must have the first component's dtype {components[0].loc.dtype} and device "
                f"{components[0].loc.device}, got {c.loc.dtype} and {c.loc.device}"
            )
    return components


_CONSTANTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _normalising_constant(component: GMRF | IntrinsicGMRF) -> torch.Tensor:
    """``½ log|Q|* − (rank/2) log 2π`` of a component, without autograd; kept per component object while its
    precision is the same tensor, unmodified (a fixed component reused across hyper-parameters pays once)."""
    precision = component.precision
    versions = _versions(precision)
    kept = _CONSTANTS.get(component)
    if kept is not None and kept[0] is precision and kept[1] == versions:
        return kept[2]
    value = 0.5 * component._log_det_precision().detach() - 0.5 * component._dimension * LOG_2PI
    _CONSTANTS[component] = (precision, versions, value)
    return value


def _versions(A: torch.Tensor) -> tuple[int, ...]:
    parts = (
        (A.crow_indices(), A.col_indices(), A.values()) if A.layout == torch.sparse_csr else (A._indices(), A._values())
    )
    return tuple(t._version for t in parts)


class LatentGaussianModel:
    r"""A latent Gaussian model: sparse GMRF prior, sparse linear predictor, independent observations.

    Parameters
    ----------
    prior : ~sparseprec.distributions.GMRF, ~sparseprec.distributions.IntrinsicGMRF or sequence of them
        The latent field's prior; a sequence is stacked (the latent vector is the concatenation of the components, its
        precision their block diagonal, its constraints those of the intrinsic components). Each component has batch
        shape ``()``. Tensors they were built from (precision hyper-parameters, means) carry gradients through
        :meth:`laplace`'s marginal likelihood.
    likelihood : sparseprec.laplace.Likelihood
        The observation model :math:`p(y_i \mid \eta_i)` (e.g. :class:`~sparseprec.laplace.Poisson`).
    obs_matrix : torch.Tensor, optional
        Sparse COO/CSR ``A`` of shape ``(m, n)`` (values may require grad); default the identity (``m = n``).
    offset : torch.Tensor, optional
        Dense ``(m,)`` or a scalar added to the linear predictor (may require grad); default 0.

    Attributes
    ----------
    components : list
        The prior's components; ``sizes`` their lengths and ``starts`` their first index in ``x``.
    n, m : int
        Latent and observation sizes.

    Raises
    ------
    TypeError
        A component that is not a GMRF/IntrinsicGMRF; a likelihood that is not a ``Likelihood``; a dense ``A``.
    ValueError
        Batched components; components of different dtypes/devices; ``A`` or ``offset`` of the wrong shape, dtype or
        device.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions import GMRF, ICAR
    >>> from sparseprec.laplace import LatentGaussianModel, Poisson
    >>> from sparseprec.structures import grid_adjacency
    >>> W = grid_adjacency((3, 3)).to(torch.float64)
    >>> prior = [GMRF(torch.zeros(1, dtype=torch.float64), torch.eye(1, dtype=torch.float64).to_sparse_csr() * 0.01),
    ...          ICAR(W, torch.tensor(2.0, dtype=torch.float64))]
    >>> A = torch.cat([torch.ones(9, 1), torch.eye(9)], dim=1).to(torch.float64).to_sparse_csr()
    >>> model = LatentGaussianModel(prior, Poisson(), obs_matrix=A)
    >>> model.n, model.m, model.sizes, tuple(model.constraints()[0].shape)
    (10, 9, [1, 9], (1, 10))
    """

    def __init__(
        self,
        prior: GMRF | IntrinsicGMRF | Sequence[GMRF | IntrinsicGMRF],
        likelihood: Likelihood,
        obs_matrix: torch.Tensor | None = None,
        offset: torch.Tensor | float | None = None,
    ):
        self.components = _check_components(prior)
        if not isinstance(likelihood, Likelihood):
            raise TypeError(
                "likelihood must be a sparseprec.laplace.Likelihood (e.g. Poisson(), Bernoulli(), "
                f"GenericLikelihood(fn)), got {type(likelihood).__name__}"
            )
        self.likelihood = likelihood
        self.sizes = [int(c.event_shape[0]) for c in self.components]
        self.starts = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self.n = sum(self.sizes)
        like = self.components[0].loc
        self.dtype, self.device = like.dtype, like.device
        if obs_matrix is not None:
            obs_matrix = check_sparse_matrix(obs_matrix, "obs_matrix")
            if obs_matrix.dim() != 2 or obs_matrix.shape[1] != self.n:
                raise ValueError(
                    f"obs_matrix must have shape (m, {self.n}) (n = the latent size), got {tuple(obs_matrix.shape)}"
                )
            if (obs_matrix.dtype, obs_matrix.device) != (self.dtype, self.device):
                raise ValueError(
                    f"obs_matrix must have the prior's dtype {self.dtype} and device {self.device}, got "
                    f"{obs_matrix.dtype} and {obs_matrix.device}"
                )
        self.obs_matrix = obs_matrix
        self.m = self.n if obs_matrix is None else int(obs_matrix.shape[0])
        if offset is not None and not isinstance(offset, torch.Tensor):
            offset = torch.tensor(float(offset), dtype=self.dtype, device=self.device)
        if offset is not None:
            offset = check_dense(offset, "offset", dims=(0, 1))
            if offset.dim() == 1 and offset.shape[0] != self.m:
                raise ValueError(f"offset must be a scalar or have shape ({self.m},), got {tuple(offset.shape)}")
            if (offset.dtype, offset.device) != (self.dtype, self.device):
                raise ValueError(
                    f"offset must have the prior's dtype {self.dtype} and device {self.device}, got {offset.dtype} "
                    f"and {offset.device}"
                )
        self.offset = offset

    def __repr__(self) -> str:
        parts = ", ".join(f"{type(c).__name__}({s})" for c, s in zip(self.components, self.sizes, strict=True))
        return f"LatentGaussianModel(prior=[{parts}], likelihood={self.likelihood!r}, n={self.n}, m={self.m})"

    # ---- the prior ----------------------------------------------------------------------------------------------
    def precision(self) -> torch.Tensor:
        r"""The stacked prior precision :math:`Q = \mathrm{blockdiag}(Q_1, \dots)`, CSR ``(n, n)``, differentiable
        w.r.t. each component's stored values (a one-component prior returns its own precision)."""
        matrices = [c.precision for c in self.components]
        if len(matrices) == 1:
            return matrices[0]
        patterns = [pattern_of(M, "precision") for M in matrices]

        def assemble() -> tuple[torch.Tensor, torch.Tensor]:
            rows = torch.cat([p.row.long() + s for p, s in zip(patterns, self.starts, strict=True)])
            cols = torch.cat([p.col.long() + s for p, s in zip(patterns, self.starts, strict=True)])
            return crow_from_rows(rows, self.n), cols

        crow, col = patterns[0].derived(("block_diagonal", tuple(patterns[1:]), tuple(self.sizes)), assemble)
        values = torch.cat([stored_values(M, p) for M, p in zip(matrices, patterns, strict=True)])
        return batched_csr(crow, col, values, self.n)

    def loc(self) -> torch.Tensor:
        r"""The stacked prior mean :math:`\mu` ``(n,)`` (each component's ``loc``; differentiable)."""
        return torch.cat([c.loc for c in self.components])

    def constraints(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(C, e)`` of the stacked intrinsic components (``C`` dense ``(k, n)``), or ``None`` without any."""
        blocks = [
            (i, c.constraint_matrix, c.constraint_value)
            for i, c in enumerate(self.components)
            if isinstance(c, IntrinsicGMRF)
        ]
        if not blocks:
            return None
        k = sum(C.shape[0] for _, C, _ in blocks)
        C = torch.zeros(k, self.n, dtype=self.dtype, device=self.device)
        row = 0
        for i, Ci, _ in blocks:
            C[row : row + Ci.shape[0], self.starts[i] : self.starts[i] + self.sizes[i]] = Ci.detach()
            row += Ci.shape[0]
        e = torch.cat([ei for _, _, ei in blocks])
        if e.requires_grad:
            raise NotImplementedError(
                "constraint_value of an intrinsic component requires grad: the Laplace marginal likelihood treats the "
                "constraints C x = e as fixed (pass a constant constraint_value, e.g. the default C·loc with a "
                "constant loc)"
            )
        return C, e

    def log_prior(self, x: torch.Tensor) -> torch.Tensor:
        r"""``log p(x)``: the sum of the components' log-densities at their slices of ``x`` (differentiable).

        Without autograd it is computed as :math:`\sum_c \bigl(\tfrac12 \log|Q_c|^* - \tfrac{r_c}2 \log 2\pi\bigr) -
        \tfrac12 (x-\mu)^\top Q (x-\mu)` with one product on the stacked precision (the components' log-determinants
        kept while their precisions do not change: they do not depend on ``x``)."""
        if torch.is_grad_enabled():
            parts = x.split(self.sizes, dim=-1)
            return sum(c.log_prob(p) for c, p in zip(self.components, parts, strict=True))
        r = x - self.loc()
        quadratic = torch.dot(r, sparse_mm(self.precision(), r.unsqueeze(-1)).squeeze(-1))
        return sum(_normalising_constant(c) for c in self.components) - 0.5 * quadratic

    # ---- the linear predictor -----------------------------------------------------------------------------------
    def linear_predictor(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\eta = A x + o` for ``x`` of shape ``(n,)`` (differentiable w.r.t. ``A``'s values, ``o`` and
        ``x``)."""
        eta = x if self.obs_matrix is None else sparse_mm(self.obs_matrix, x.unsqueeze(-1)).squeeze(-1)
        return eta if self.offset is None else eta + self.offset

    def predictor_transpose(self, v: torch.Tensor) -> torch.Tensor:
        r""":math:`A^\top v` for ``v`` of shape ``(m,)``."""
        if self.obs_matrix is None:
            return v
        return sparse_mm(self.obs_matrix, v.unsqueeze(-1), transpose=True).squeeze(-1)

    def laplace(
        self, y: torch.Tensor, *, x0: torch.Tensor | None = None, newton: Newton | None = None
    ) -> LaplaceApproximation:
        """The Laplace approximation at observations ``y``: see :class:`~sparseprec.laplace.LaplaceApproximation`.

        ``x0`` is the Newton iteration's start (e.g. the mode at nearby hyper-parameters; default the prior mean
        moved onto the constraints), ``newton`` a :class:`~sparseprec.laplace.Newton` (default ``Newton()``)."""
        return LaplaceApproximation(self, y, x0=x0, newton=newton)
