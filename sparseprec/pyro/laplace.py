r"""``LaplaceMarginal``: the Laplace marginal likelihood of a latent Gaussian model as a Pyro distribution over the
observations, so that NUTS or SVI run over the hyper-parameters alone with the latent field integrated out.

.. code-block:: python

    def model():
        sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
        rho = pyro.sample("rho", dist.Beta(0.5, 0.5))
        pyro.sample("y", LaplaceMarginal(build(sigma, rho), warm_start=warm), obs=y)

``log_prob(y)`` is :math:`\log\tilde p(y \mid \theta)` (:meth:`sparseprec.laplace.LaplaceApproximation.
log_marginal_likelihood`) with its exact gradient; draws of the latent field given the hyper-parameter draws come
from :func:`sparseprec.laplace.posterior_draws`.
"""

from __future__ import annotations

import torch
from pyro.distributions.torch_distribution import TorchDistribution
from torch.distributions import constraints

from ..laplace import LaplaceApproximation, LatentGaussianModel, Newton, WarmStart

__all__ = ["LaplaceMarginal"]


class LaplaceMarginal(TorchDistribution):
    r"""Observations ``y`` ``(m,)`` of a :class:`~sparseprec.laplace.LatentGaussianModel` with the latent field
    integrated out by the Laplace approximation: ``log_prob(y)`` :math:`= \log\tilde p(y \mid \theta)`.

    Exact for a Gaussian likelihood; otherwise the Laplace approximation (the integrand's Gaussian at its mode). The
    event is the whole observation vector (batch shape ``()``): use it outside ``pyro.plate``.

    Parameters
    ----------
    model : LatentGaussianModel
        Built from the hyper-parameters of this model call (they carry the gradient).
    newton : sparseprec.laplace.Newton, optional
    warm_start : sparseprec.laplace.WarmStart, optional
        Shared across model calls so each Newton iteration starts from the last mode (recommended under NUTS/SVI).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributions import GMRF
    >>> from sparseprec.laplace import LatentGaussianModel, Poisson, WarmStart
    >>> from sparseprec.pyro import LaplaceMarginal
    >>> from sparseprec.structures import ar1
    >>> model = LatentGaussianModel(GMRF(torch.zeros(4, dtype=torch.float64), ar1(4, 0.5)), Poisson())
    >>> d = LaplaceMarginal(model, warm_start=WarmStart())
    >>> d.event_shape, d.log_prob(torch.tensor([1.0, 0.0, 2.0, 1.0], dtype=torch.float64)).shape
    (torch.Size([4]), torch.Size([]))
    """

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 1)
    has_rsample = False

    def __init__(
        self,
        model: LatentGaussianModel,
        *,
        newton: Newton | None = None,
        warm_start: WarmStart | None = None,
        validate_args: bool | None = None,
    ):
        if not isinstance(model, LatentGaussianModel):
            raise TypeError(f"model must be a sparseprec.laplace.LatentGaussianModel, got {type(model).__name__}")
        if warm_start is not None and not isinstance(warm_start, WarmStart):
            raise TypeError(
                f"warm_start must be a sparseprec.laplace.WarmStart or None, got {type(warm_start).__name__}"
            )
        self.model, self.newton = model, newton
        self.warm_start = WarmStart() if warm_start is None else warm_start
        super().__init__(torch.Size(), torch.Size((model.m,)), validate_args=validate_args)

    def laplace(self, value: torch.Tensor) -> LaplaceApproximation:
        """The Laplace approximation at observations ``value`` (warm-started; stores its mode)."""
        return self.warm_start.fit(self.model, value, self.newton)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        r""":math:`\log\tilde p(y \mid \theta)` for ``value`` of shape ``(m,)``: 0-d, differentiable w.r.t. the
        tensors the model was built from."""
        if not isinstance(value, torch.Tensor) or value.shape != self.event_shape:
            got = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"value must be one observation vector of shape {tuple(self.event_shape)} (LaplaceMarginal has batch "
                f"shape (); use it outside pyro.plate), got {got}"
            )
        return self.laplace(value).log_marginal_likelihood()

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        """Draws of ``y`` from the model (the latent field from the prior, then the observations): ``sample_shape +
        (m,)``. An intrinsic component is drawn on its constraint surface."""
        shape = torch.Size(sample_shape)
        count = shape.numel()
        draws = []
        with torch.no_grad():
            for _ in range(count):
                x = torch.cat([c.sample() for c in self.model.components])
                draws.append(self.model.likelihood.sample(self.model.linear_predictor(x)))
        return torch.stack(draws).reshape(shape + self.event_shape)

    def expand(self, batch_shape, _instance=None):
        if torch.Size(batch_shape) != torch.Size():
            raise ValueError(
                f"LaplaceMarginal has batch shape () (one observation vector per latent field); it cannot be expanded "
                f"to {tuple(batch_shape)} — use it outside pyro.plate"
            )
        return self
