r"""Layer 5½: Laplace approximation and INLA-style inference for latent GMRFs with non-Gaussian observations.

A :class:`LatentGaussianModel` (a sparse GMRF prior, possibly intrinsic and stacked from components; a sparse linear
predictor; independent observations from a :class:`Likelihood`) gives, at observations ``y``, a
:class:`LaplaceApproximation`: the posterior mode by damped Newton on the sparse Hessian (constraints by conditioning
by kriging), the Gaussian approximation as a distribution, and the Laplace marginal likelihood
:math:`\log\tilde p(y \mid \theta)` with its exact gradient. Hyper-parameters: :func:`fit_hyperparameters` (type-II
maximum likelihood or MAP by L-BFGS), :func:`inla` (integration over a design in :math:`\theta`), or NUTS/SVI over
:math:`\theta` in Pyro (:class:`sparseprec.pyro.LaplaceMarginal`).
"""

from .approximation import LaplaceApproximation
from .hyper import HyperparameterFit, LaplaceObjective, WarmStart, fit_hyperparameters, posterior_draws
from .inla import INLAResult, inla, mixture_quantiles
from .likelihoods import (
    Bernoulli,
    Binomial,
    Gaussian,
    GenericLikelihood,
    Likelihood,
    NegativeBinomial,
    Poisson,
    StudentT,
)
from .model import LatentGaussianModel
from .newton import ModeResult, Newton

__all__ = [
    "LatentGaussianModel",
    "LaplaceApproximation",
    "Newton",
    "ModeResult",
    "LaplaceObjective",
    "fit_hyperparameters",
    "WarmStart",
    "posterior_draws",
    "HyperparameterFit",
    "inla",
    "INLAResult",
    "mixture_quantiles",
    "Likelihood",
    "Poisson",
    "Bernoulli",
    "Binomial",
    "NegativeBinomial",
    "Gaussian",
    "StudentT",
    "GenericLikelihood",
]
