r"""The BYM2 model of a :class:`~sparseprec.distributed.BYM2Poisson` specification, built once per process.

What depends on the graph alone — the adjacency, the BYM2 scaling factors (a selected inverse of the ICAR precision
per connected component), the prior components, the index arrays of ``A`` — is built the first time a process meets
a specification and kept in the pattern layer's cache (:func:`sparseprec.pattern.shared_derived`, keyed by
:attr:`BYM2Poisson.model_key`: the graph's content hash, ``p`` and the fixed-effect prior). Every later outcome in that
process reuses the very same tensors, so every sparse pattern is found by identity and the Cholesky layer's symbolic
analysis of the Laplace Hessian ``Q + AᵀWA`` (one pattern for every outcome and every ``θ``) is done once per process.

A freshly unpickled specification finds the pieces by the hash; even without them (after
:func:`sparseprec.clear_caches`) the pattern cache compares new index tensors by value (``torch.equal``), so rebuilt
pieces would still reuse a cached analysis: the per-process cache saves the rebuilding itself (ICAR, scaling factors:
about 25 ms on the lip cancer graph, 10 % of a fit).
"""

from __future__ import annotations

import os
import threading
import time

import torch
from torch.nn.functional import logsigmoid

from ..distributions import GMRF, ICAR
from ..laplace import LaplaceApproximation, LatentGaussianModel, Poisson
from ..ops import sparse_csr_tensor
from ..pattern import cache_info, shared_derived
from ..structures import bym2_scaling_per_node
from .specs import BYM2Poisson, Outcome

__all__ = ["BYM2Pieces", "pieces_for", "worker_state"]

F64 = torch.float64
_BUILT = {"count": 0, "seconds": 0.0}
_LOCK = threading.Lock()


def _diagonal_csr(values: torch.Tensor) -> torch.Tensor:
    n = values.numel()
    return sparse_csr_tensor(torch.arange(n + 1), torch.arange(n), values, (n, n))


class _CountingModel(LatentGaussianModel):
    """A :class:`LatentGaussianModel` that adds each Laplace approximation's Newton iterations to a counter."""

    counter: list[int]

    def laplace(self, y, *, x0=None, newton=None) -> LaplaceApproximation:
        fit = super().laplace(y, x0=x0, newton=newton)
        self.counter.append(fit.iterations)
        return fit


class BYM2Pieces:
    r"""The graph-dependent pieces of a :class:`~sparseprec.distributed.BYM2Poisson` model (see the module docstring);
    get them with :func:`pieces_for`.

    Attributes
    ----------
    scaling : torch.Tensor
        ``(n,)`` the BYM2 scaling factor :math:`s_i` of each area's connected component.
    isolated : torch.Tensor
        ``(n,)`` bool: areas without neighbours.
    components : list
        The prior components ``[GMRF(1 + p), GMRF(n), ICAR(n)]``.
    seconds : float
        How long building them took.
    """

    def __init__(self, spec: BYM2Poisson):
        start = time.perf_counter()
        n, p = spec.graph.n, spec.num_covariates
        self.n, self.p = n, p
        adjacency = spec.graph.adjacency()
        self.scaling = bym2_scaling_per_node(adjacency).to(F64)
        self.isolated = adjacency.crow_indices().diff() == 0
        fixed_precision = torch.tensor([spec.intercept_sd**-2] + [spec.coefficient_sd**-2] * p, dtype=F64)
        self.components = [
            GMRF(torch.zeros(1 + p, dtype=F64), _diagonal_csr(fixed_precision)),
            GMRF(torch.zeros(n, dtype=F64), _diagonal_csr(torch.ones(n, dtype=F64))),
            ICAR(adjacency),
        ]
        # A: row i holds 1, z_i1..z_ip, σ w_i (the unstructured effect), σ √(ρ/s_i) (the spatial effect)
        areas = torch.arange(n)
        self.crow = torch.arange(0, (p + 3) * n + 1, p + 3)
        fixed_columns = torch.arange(1 + p).expand(n, 1 + p)
        self.col = torch.cat([fixed_columns, (1 + p + areas)[:, None], (1 + p + n + areas)[:, None]], dim=1).reshape(-1)
        self.seconds = time.perf_counter() - start
        with _LOCK:
            _BUILT["count"] += 1
            _BUILT["seconds"] += self.seconds

    def model(
        self, spec: BYM2Poisson, t: torch.Tensor, outcome: Outcome, counter: list[int] | None = None
    ) -> LatentGaussianModel:
        r"""The latent Gaussian model of ``outcome`` at :math:`t = (\log\sigma, \operatorname{logit}\rho)`; its
        linear predictor is :math:`\eta_i = \log r_i` (the exposure :math:`E_i` is the Poisson likelihood's), so the
        predictor's marginals are those of the log relative risks. ``counter`` collects the Newton iterations of
        every Laplace approximation of the model."""
        n = self.n
        sigma, rho = t[0].exp(), torch.sigmoid(t[1])
        one = torch.ones(n, dtype=F64)
        iid_weight = torch.where(self.isolated, one, (1 - rho).sqrt() * one)
        columns = [one[:, None]]
        if self.p:
            columns.append(outcome.covariates)
        columns += [(sigma * iid_weight)[:, None], (sigma * (rho / self.scaling).sqrt())[:, None]]
        A = sparse_csr_tensor(self.crow, self.col, torch.cat(columns, dim=1).reshape(-1), (n, spec.latent_size))
        likelihood = Poisson(exposure=outcome.expected)
        if counter is None:
            return LatentGaussianModel(self.components, likelihood, obs_matrix=A)
        model = _CountingModel(self.components, likelihood, obs_matrix=A)
        model.counter = counter
        return model


def log_prior(spec: BYM2Poisson, t: torch.Tensor) -> torch.Tensor:
    r""":math:`\log p(t)` for :math:`t = (\log\sigma, \operatorname{logit}\rho)`: the half-normal prior of
    :math:`\sigma` and the Beta prior of :math:`\rho`, with the log-Jacobians :math:`\log\sigma` and
    :math:`\log\rho + \log(1-\rho)` of the two transforms."""
    sigma, rho = t[0].exp(), torch.sigmoid(t[1])
    half_normal = torch.distributions.HalfNormal(torch.tensor(spec.sigma_scale, dtype=t.dtype))
    a, b = spec.rho_concentration
    beta = torch.distributions.Beta(torch.tensor(a, dtype=t.dtype), torch.tensor(b, dtype=t.dtype))
    jacobian = t[0] + logsigmoid(t[1]) + logsigmoid(-t[1])
    return half_normal.log_prob(sigma) + beta.log_prob(rho) + jacobian


def pieces_for(spec: BYM2Poisson) -> BYM2Pieces:
    """The pieces of ``spec``'s model in this process: built on first use, then found by :attr:`BYM2Poisson.model_key`
    (kept in the pattern layer's cache: :func:`sparseprec.cache_info` counts them, :func:`sparseprec.clear_caches`
    drops them).

    Examples
    --------
    >>> from sparseprec.distributed import BYM2Poisson, Graph
    >>> from sparseprec.distributed.bym2 import pieces_for
    >>> spec = BYM2Poisson(Graph(4, [(0, 1), (1, 2)]))
    >>> pieces_for(spec) is pieces_for(BYM2Poisson(Graph(4, [(2, 1), (0, 1)])))  # same graph: same pieces
    True
    >>> pieces_for(spec).isolated.tolist()
    [False, False, False, True]
    """
    return shared_derived(("sparseprec.distributed.BYM2Pieces", *spec.model_key), lambda: BYM2Pieces(spec))


def worker_state() -> dict[str, object]:
    """What this process has built and cached: its pid, the BYM2 pieces built (count, seconds) and the pattern cache's
    counters (``symbolic_analyses`` among them). Run it on every worker with ``client.run(worker_state)``.

    Examples
    --------
    >>> from sparseprec.distributed import worker_state
    >>> sorted(worker_state())
    ['pid', 'pieces_built', 'pieces_seconds', 'symbolic_analyses', 'torch_threads']
    """
    info = cache_info()
    return {
        "pid": os.getpid(),
        "pieces_built": _BUILT["count"],
        "pieces_seconds": _BUILT["seconds"],
        "symbolic_analyses": info.symbolic_analyses,
        "torch_threads": torch.get_num_threads(),
    }
