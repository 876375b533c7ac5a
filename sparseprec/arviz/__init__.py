"""ArviZ integration (imports ArviZ): the posterior of every inference route as an :class:`arviz.InferenceData`.

Import explicitly (``import sparseprec.arviz``; ``pip install 'sparseprec[arviz]'``); the core package never imports
ArviZ.

* :func:`from_mcmc`: a Pyro ``MCMC`` run (NUTS, HMC) through ArviZ's own Pyro converter (posterior, ``diverging``,
  observed data, log-likelihood), with the model's ``pyro.deterministic`` sites added to the posterior; several
  runs of one model become the chains of one ``InferenceData``.
* :func:`from_draws`: any dictionary of draws with a leading draw dimension: SVI guide draws (``Predictive``),
  Laplace draws (:func:`sparseprec.laplace.posterior_draws`), draws from an INLA mixture.
* :func:`area_coords`: ``coords``/``dims`` naming the areas of a spatial model (district names as coordinates).

Give every route the same site names and the same ``coords``/``dims``, and ``arviz.summary`` tables (and, with a
pointwise log-likelihood, ``arviz.compare``) line up across routes.
"""

try:
    import arviz as _arviz  # noqa: F401
except ImportError as error:
    raise ImportError(
        "sparseprec.arviz needs ArviZ, which is not installed: pip install 'sparseprec[arviz]' (or pip install arviz)"
    ) from error

from .areas import area_coords
from .inference_data import from_draws, from_mcmc

__all__ = ["from_mcmc", "from_draws", "area_coords"]
