"""sparseprec's distributions as Pyro distributions (``TorchDistributionMixin``).

Each class is the core distribution with Pyro's mixin: ``pyro.plate`` expands it through its own ``expand`` (no
``ExpandedDistribution`` wrapper; the sparse factor or precision is shared, not copied), ``.mask``, ``.to_event`` and
``Predictive`` work, and the KL divergences registered by :mod:`sparseprec.distributions.kl` are used by
``TraceMeanField_ELBO``. ``infer_shapes`` is given for Pyro's shape inference.
"""

from __future__ import annotations

import torch
from pyro.distributions.torch_distribution import TorchDistributionMixin

from .. import distributions as core
from .._validation import broadcast_shapes

__all__ = ["SparseMultivariateNormal", "GMRF", "CAR", "IntrinsicGMRF", "ICAR"]


def _broadcast(*shapes: tuple[int, ...]) -> torch.Size:
    try:
        return broadcast_shapes(*(torch.Size(s) for s in shapes))
    except RuntimeError as error:  # torch's message names no argument
        raise ValueError(
            f"the batch shapes of the arguments {[tuple(s) for s in shapes]} do not broadcast together"
        ) from error


class SparseMultivariateNormal(core.SparseMultivariateNormal, TorchDistributionMixin):
    __doc__ = core.SparseMultivariateNormal.__doc__

    @classmethod
    def infer_shapes(cls, loc, scale_tril=None, precision_tril=None, diagonal=None):
        tril = scale_tril if scale_tril is not None else precision_tril
        shapes = [loc[:-1], tril[:-2]] + ([diagonal[:-1]] if diagonal is not None else [])
        batch = _broadcast(*shapes)
        if len(tril) == 3 and batch[-1] != tril[0]:  # as the constructor: a batched factor is not broadcast
            raise ValueError(
                f"a batched factor of batch size {tril[0]} must match the last batch dimension, got batch shape "
                f"{tuple(batch)} (a factor is not broadcast: pass an unbatched (n, n) factor to share it)"
            )
        return batch, torch.Size(loc[-1:])


class GMRF(core.GMRF, TorchDistributionMixin):
    __doc__ = core.GMRF.__doc__

    @classmethod
    def infer_shapes(cls, loc, precision):
        # a batch of precisions (*pbatch, n, n) broadcasts with loc's batch, as in torch's MultivariateNormal
        return _broadcast(loc[:-1], precision[:-2]), torch.Size(loc[-1:])


class CAR(core.CAR, TorchDistributionMixin):
    __doc__ = core.CAR.__doc__

    @classmethod
    def infer_shapes(cls, adjacency, rho=(), tau=(), loc=None):
        # car(W, rho, tau) gives a precision of batch shape broadcast(rho, tau); loc's batch broadcasts with it
        return _broadcast(rho, tau, () if loc is None else loc[:-1]), torch.Size(adjacency[-1:])


class IntrinsicGMRF(core.IntrinsicGMRF, TorchDistributionMixin):
    __doc__ = core.IntrinsicGMRF.__doc__

    @classmethod
    def infer_shapes(cls, loc, precision, constraint_matrix=None, constraint_value=None):
        shapes = [loc[:-1], precision[:-2]] + ([] if constraint_value is None else [constraint_value[:-1]])
        return _broadcast(*shapes), torch.Size(loc[-1:])


class ICAR(core.ICAR, TorchDistributionMixin):
    __doc__ = core.ICAR.__doc__

    @classmethod
    def infer_shapes(cls, adjacency, tau=(), loc=None):
        return _broadcast(tau, () if loc is None else loc[:-1]), torch.Size(adjacency[-1:])
