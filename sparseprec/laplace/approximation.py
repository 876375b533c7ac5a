r"""``LaplaceApproximation``: the mode, the Gaussian approximation and the Laplace marginal likelihood with its exact
gradient.

At the mode :math:`x^*` of :math:`\psi(x) = \log p(y \mid x) + \log p(x \mid \theta)` (on :math:`\{Cx = e\}`), with
:math:`H = Q + A^\top W A`, :math:`W = \mathrm{diag}(-f''(\eta^*))`:

.. math::

    \log \tilde p(y \mid \theta) = \log p(y \mid x^*) + \log p(x^* \mid \theta) - \log \pi_G(x^* \mid y, \theta),

where :math:`\pi_G = N(x^*, H^{-1})` conditioned on :math:`Cx = e` (the same measure as the prior's: Lebesgue on the
constraint surface), so :math:`\log \pi_G(x^*) = -\tfrac{n-k}2 \log 2\pi + \tfrac12 \log\det H + \tfrac12 \log\det
(C H^{-1} C^\top) - \tfrac12 \log\det(C C^\top)`. Exact for a Gaussian likelihood.

**Gradient** (implicit-function theorem). With :math:`\Sigma_C = H^{-1} - H^{-1}C^\top (CH^{-1}C^\top)^{-1}CH^{-1}`,
the mode moves as :math:`dx^* = \Sigma_C\, \partial_\theta \nabla_x \psi\, d\theta` and the total derivative is

.. math::

    \frac{d \log\tilde p}{d\theta} = \partial_\theta \psi(x^*, \theta)
      - \tfrac12 \operatorname{tr}(\Sigma_C\, \partial_\theta H)
      - \tfrac12\, v^\top \partial_\theta \nabla_x\psi(x^*, \theta), \qquad
    v = \Sigma_C\, s, \quad s = A^\top\bigl(d \odot (-f'''(\eta^*))\bigr), \quad d = \mathrm{diag}(A \Sigma_C A^\top),

(the first term has no :math:`dx^*` part: :math:`\nabla_x \psi = C^\top\lambda` at the mode and :math:`C\,dx^* = 0`).
The implementation builds one scalar whose value is :math:`\log\tilde p` and whose autograd gradient is the above:
:math:`\psi(\hat x, \theta) - \log \pi_G(\hat x)` at the detached mode :math:`\hat x` (autograd: the partial
derivatives; :math:`\operatorname{tr}(\Sigma_C \partial H)` through :func:`sparseprec.cholesky.sparse_logdet`'s
selected inverse and the kriging solve) plus :math:`-\tfrac12 v^\top \nabla_x\psi(\hat x, \theta)` minus its own
value. :math:`d` comes from the same selected inverse (:math:`(H^{-1})_{jk}` for :math:`j, k` in one row of
:math:`A` lie on the pattern of :math:`A^\top A \subseteq` that of :math:`H`), :math:`v` from one more solve. The mode
itself is returned differentiable the same way: :math:`\hat x + \Sigma_C \nabla_x\psi(\hat x, \theta)` minus the
value of the second term.
"""

from __future__ import annotations

import numpy as np
import torch

from ..cholesky import diag_inverse
from ..distributions import GMRF, ConstrainedGMRF
from ..distributions._precision import LOG_2PI
from ..distributions.conditioning import gram_pattern
from ..errors import NotPositiveDefiniteError
from ..ops import sparse_mm
from ..pattern import pattern_of
from .newton import ModeResult, Newton, find_mode, hessian, kriging_terms, restricted_solve

__all__ = ["LaplaceApproximation"]


class LaplaceApproximation:
    r"""The Laplace approximation of a :class:`~sparseprec.laplace.LatentGaussianModel` at observations ``y``.

    Made by :meth:`LatentGaussianModel.laplace`; the inner Newton iteration runs on construction (see
    :mod:`sparseprec.laplace.newton`), the rest when first asked for. The maths of the marginal likelihood and its
    gradient are in this module's docstring.

    Parameters
    ----------
    model : LatentGaussianModel
    y : torch.Tensor
        Observations ``(m,)`` (checked by the likelihood).
    x0 : torch.Tensor, optional
        Newton's start (moved onto the constraints); default the prior mean.
    newton : Newton, optional

    Attributes
    ----------
    converged, iterations, decrement, gradient_norm, hessian
        The inner iteration's report (:class:`~sparseprec.laplace.newton.ModeResult`); ``hessian`` is
        ``"expected information"`` when a likelihood that is not log-concave made Newton use it.

    Raises
    ------
    sparseprec.ConvergenceError
        Newton did not converge (the message says what to try; ``.solution`` is the ``ModeResult``).
    sparseprec.NotPositiveDefiniteError
        :math:`Q + A^\top W A` is not positive definite (an unidentified direction, or an observed Hessian of a
        non-log-concave likelihood that is indefinite at the mode).

    Examples
    --------
    A Gaussian likelihood: the approximation is exact, so it equals :meth:`sparseprec.GMRF.log_marginal_likelihood`.

    >>> import torch
    >>> from sparseprec.distributions import GMRF
    >>> from sparseprec.laplace import Gaussian, LatentGaussianModel
    >>> from sparseprec.structures import ar1
    >>> prior = GMRF(torch.zeros(5, dtype=torch.float64), ar1(5, 0.7))
    >>> y = torch.tensor([0.3, -0.1, 0.8, 1.2, 0.4], dtype=torch.float64)
    >>> fit = LatentGaussianModel(prior, Gaussian(torch.tensor(4.0, dtype=torch.float64))).laplace(y)
    >>> eye = torch.eye(5, dtype=torch.float64).to_sparse_csr()
    >>> exact = prior.log_marginal_likelihood(eye, y, 4.0)
    >>> bool(torch.isclose(fit.log_marginal_likelihood(), exact, rtol=0, atol=1e-10)), fit.converged
    (True, True)
    """

    def __init__(self, model, y: torch.Tensor, *, x0: torch.Tensor | None = None, newton: Newton | None = None):
        settings = Newton() if newton is None else newton
        if not isinstance(settings, Newton):
            raise TypeError(f"newton must be a sparseprec.laplace.Newton, got {type(settings).__name__}")
        like = model.components[0].loc
        self.model, self.newton = model, settings
        self.y = model.likelihood.check(y, like.new_zeros(model.m))
        self.result: ModeResult = find_mode(model, self.y, x0, settings)
        self.converged, self.iterations = self.result.converged, self.result.iterations
        self.decrement, self.gradient_norm, self.hessian = (
            self.result.decrement,
            self.result.gradient_norm,
            self.result.hessian,
        )
        self._pieces: dict | None = None
        self._variance_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._built: dict | None = None

    def __repr__(self) -> str:
        return (
            f"LaplaceApproximation(n={self.model.n}, m={self.model.m}, converged={self.converged}, "
            f"iterations={self.iterations}, hessian={self.hessian!r})"
        )

    # ---- the pieces, built once ---------------------------------------------------------------------------------
    def _factorise(self) -> dict:
        """Without autograd: ``H`` at the mode factorised, the kriging terms and the value of the marginal likelihood
        (the marginal variances, which need the selected inverse, come from :meth:`_variances` when asked)."""
        if self._pieces is not None:
            return self._pieces
        model, y, likelihood = self.model, self.y, self.model.likelihood
        x_hat = self.result.x
        with torch.no_grad(), self.newton.thread_limit():
            eta = model.linear_predictor(x_hat)
            d1, d2, d3 = likelihood.derivatives(y, eta)
            H = hessian(model, model.precision(), -d2)
            constraints = model.constraints()
            try:
                factor = self.newton.cholesky.factor(H)
            except NotPositiveDefiniteError as error:
                raise NotPositiveDefiniteError(
                    f"the Laplace precision Q + AᵀWA with the observed W = −f''(η*) is not positive definite at the "
                    f"mode ({error}); the likelihood ({self.model.likelihood!r}) is not log-concave there, so the mode "
                    "is not a strict maximum of log p(x | y) and a Gaussian approximation does not exist at it",
                    column=getattr(error, "column", None),
                ) from error
            kriging = None if constraints is None else kriging_terms(factor, constraints[0])
            # log π_G(x*) = −(n−k)/2 log 2π + ½ log det H + ½ log det S − ½ log det CCᵀ
            k = 0 if constraints is None else constraints[0].shape[0]
            log_gaussian = -0.5 * (model.n - k) * LOG_2PI + 0.5 * factor.logdet()
            if kriging is not None:
                C, S = kriging.C, kriging.S
                log_gaussian = log_gaussian + 0.5 * (torch.logdet(S) - torch.logdet(C @ C.T))
            value = likelihood.log_prob(y, eta).sum() + model.log_prior(x_hat) - log_gaussian
        self._pieces = {
            "factor": factor,
            "kriging": kriging,
            "d3": d3,
            "value": value,
        }
        return self._pieces

    def _build(self) -> dict:
        """With autograd: the differentiable mode, the posterior distribution and the marginal likelihood whose
        gradient is the implicit-function one (see the module docstring)."""
        if self._built is not None:
            return self._built
        pieces = self._factorise()
        model, y, likelihood = self.model, self.y, self.model.likelihood
        x_hat, factor, kriging = self.result.x, pieces["factor"], pieces["kriging"]
        with torch.no_grad(), self.newton.thread_limit():
            s = model.predictor_transpose(-(self.predictor_variance * pieces["d3"]))
            v = restricted_solve(factor, s, kriging)
        with torch.enable_grad(), self.newton.thread_limit():
            eta = model.linear_predictor(x_hat)
            d1, d2, _ = likelihood.derivatives(y, eta)
            Q, mu = model.precision(), model.loc()
            H = hessian(model, Q, -d2)
            settings = self.newton.cholesky
            if kriging is None:
                posterior = GMRF(x_hat, H, cholesky=settings, validate_args=False)
            else:
                posterior = ConstrainedGMRF(
                    x_hat, H, kriging.C, kriging.C @ x_hat, cholesky=settings, validate_args=False
                )
            posterior._factor = (factor,)  # the factor of these very values, made by _factorise
            residual = model.predictor_transpose(d1) - sparse_mm(Q, (x_hat - mu).unsqueeze(-1)).squeeze(-1)
            shift = restricted_solve(factor, residual, kriging)
            mode = x_hat + (shift - shift.detach())
            posterior.loc = mode
            log_joint = likelihood.log_prob(y, eta).sum() + model.log_prior(x_hat)
            implicit = -0.5 * torch.dot(v, residual)
            value = log_joint - posterior.log_prob(mode) + (implicit - implicit.detach())
        self._built = {"posterior": posterior, "mode": mode, "log_marginal_likelihood": value}
        return self._built

    def _variances(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Var x, Var η)`` under the approximation, by selected inversion (once)."""
        if self._variance_cache is None:
            pieces = self._factorise()
            with torch.no_grad(), self.newton.thread_limit():
                variance = self._latent_variance(pieces["factor"], pieces["kriging"])
                predictor = self._predictor_variance(pieces["factor"], pieces["kriging"], variance)
            self._variance_cache = (variance, predictor)
        return self._variance_cache

    @staticmethod
    def _latent_variance(factor, kriging) -> torch.Tensor:
        variance = diag_inverse(factor)
        if kriging is not None:
            variance = variance - (kriging.V * kriging.W).sum(-1)
        return variance

    def _predictor_variance(self, factor, kriging, variance: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathrm{diag}(A \Sigma_C A^\top)_i = \sum_{j,k} A_{ij} A_{ik} (\Sigma_C)_{jk}`: the pairs
        :math:`(j, k)` of one row of ``A`` lie on the pattern of :math:`A^\top A`, inside ``H``'s, so the selected
        inverse holds them (their positions cached with ``H``'s pattern and analysis)."""
        A = self.model.obs_matrix
        if A is None:
            return variance
        a_pattern = pattern_of(A, "obs_matrix")
        first, second, _, _ = gram_pattern(a_pattern, self.model.n)
        structure, Z = factor.selected_inverse_blocks()

        def locate():
            inverse_perm = np.empty(factor.n, dtype=np.int64)
            inverse_perm[factor.perm.cpu().numpy()] = np.arange(factor.n)
            col = a_pattern.col.long().cpu().numpy()
            r, c = inverse_perm[col[first.cpu().numpy()]], inverse_perm[col[second.cpu().numpy()]]
            return structure, structure.locate(np.maximum(r, c), np.minimum(r, c))

        positions = factor.pattern_derived(("laplace_predictor_pairs", a_pattern), locate)
        if positions[0] is not structure:  # a structure built for this factor alone
            positions = locate()
        z = torch.from_numpy(Z[positions[1]]).to(dtype=variance.dtype, device=variance.device)
        a = a_pattern.kernel_values(A.detach())
        terms = a[first] * a[second] * z
        out = terms.new_zeros(self.model.m).index_add(0, a_pattern.row.long()[first], terms)
        if kriging is not None:
            A_detached = A.detach()
            out = out - (sparse_mm(A_detached, kriging.V) * sparse_mm(A_detached, kriging.W)).sum(-1)
        return out

    # ---- the public results -------------------------------------------------------------------------------------
    @property
    def mode(self) -> torch.Tensor:
        r"""The mode :math:`x^*` ``(n,)``, differentiable w.r.t. every tensor the model was built from
        (:math:`dx^* = \Sigma_C\, \partial_\theta \nabla_x \psi`)."""
        return self._build()["mode"]

    @property
    def posterior(self) -> GMRF | ConstrainedGMRF:
        r"""The Gaussian approximation :math:`N(x^*, (Q + A^\top W A)^{-1})` (conditioned on :math:`Cx = e` with
        intrinsic components: a :class:`~sparseprec.distributions.ConstrainedGMRF`) — sample it, evaluate it;
        ``loc`` is the differentiable mode, the precision differentiable w.r.t. the model's tensors."""
        return self._build()["posterior"]

    def log_marginal_likelihood(self) -> torch.Tensor:
        r""":math:`\log\tilde p(y \mid \theta)`, 0-d, with the exact gradient w.r.t. every tensor the model was built
        from (precision hyper-parameters, prior means, ``A``'s values, the offset, likelihood parameters). Under
        ``torch.no_grad()`` only the value is computed (no gradient machinery: cheaper)."""
        if not torch.is_grad_enabled():
            return self._factorise()["value"]
        return self._build()["log_marginal_likelihood"]

    @property
    def variance(self) -> torch.Tensor:
        """Marginal variances of the Gaussian approximation ``(n,)`` (exact, by selected inversion; no gradient)."""
        return self._variances()[0]

    @property
    def mean_correction(self) -> torch.Tensor:
        r"""First-order correction of the posterior mean for the likelihood's skewness, ``(n,)`` (no gradient):
        :math:`E[x \mid y, \theta] \approx x^* + \tfrac12 \Sigma_C A^\top (f^{(3)}(\eta^*) \odot d)`,
        :math:`d = \mathrm{diag}(A \Sigma_C A^\top)`.

        From the third-order expansion :math:`\psi(x^* + u) \approx \psi^* - \tfrac12 u^\top H u + \tfrac16
        \sum_i f^{(3)}_i (a_i^\top u)^3`: the cubic term's gradient has mean :math:`\tfrac12 A^\top (f^{(3)} \odot d)`
        under :math:`N(0, \Sigma_C)`, which moves the mean by :math:`\Sigma_C` times it (a term of the order of the
        inverse information; zero for a Gaussian likelihood). It is :math:`-\tfrac12 v` of the marginal likelihood's
        gradient (see the module docstring): one solve."""
        pieces = self._factorise()
        with torch.no_grad(), self.newton.thread_limit():
            s = self.model.predictor_transpose(self.predictor_variance * pieces["d3"])
            return 0.5 * restricted_solve(pieces["factor"], s, pieces["kriging"])

    @property
    def stddev(self) -> torch.Tensor:
        """Marginal standard deviations ``(n,)`` (no gradient)."""
        return self.variance.sqrt()

    @property
    def predictor_variance(self) -> torch.Tensor:
        r""":math:`\mathrm{Var}(\eta_i)` under the approximation, :math:`\mathrm{diag}(A \Sigma_C A^\top)`, ``(m,)``
        (no gradient)."""
        return self._variances()[1]
