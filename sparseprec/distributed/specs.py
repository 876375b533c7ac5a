r"""What to fit: the graph, the model, the method and one outcome's data, as small picklable values.

A :class:`BYM2Poisson` specification holds the neighbourhood graph once (its edge list, a few kB for a few hundred
areas, with a content hash :attr:`Graph.key`), the priors, the method (:class:`EmpiricalBayes` or :class:`INLA`)
and the inner :class:`~sparseprec.laplace.Newton` settings; an :class:`Outcome` holds one data set (counts, expected
counts, covariates). Neither holds a factor, a precision matrix or anything ``n × n``: the worker builds those from
the specification once per process (:mod:`sparseprec.distributed.bym2`).

The model of every outcome (Riebler et al. 2016, "An intuitive Bayesian spatial model for disease mapping that
accounts for scaling", SMMR 25:1145–1165), with :math:`s_i` the BYM2 scaling factor of area ``i``'s connected
component:

.. math::

    y_i \sim \mathrm{Poisson}(E_i\, r_i), \qquad \log r_i = \beta_0 + z_i^\top \beta
        + \sigma\bigl(\sqrt{1-\rho}\,\theta_i + \sqrt{\rho / s_i}\,\phi_i\bigr),

    \beta_0 \sim N(0, a^2), \quad \beta_j \sim N(0, b^2), \quad \theta \sim N(0, I), \quad
    \phi \sim \mathrm{ICAR} \text{ (sum to zero per connected component)}, \quad
    \sigma \sim N^+(0, c^2), \quad \rho \sim \mathrm{Beta}(\alpha, \beta').

An area without neighbours gets the unstructured effect with weight 1 (its ICAR value is pinned to 0).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..laplace import Newton

__all__ = ["Graph", "Outcome", "EmpiricalBayes", "INLA", "BYM2Poisson"]


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True, eq=False)
class Graph:
    """An undirected neighbourhood graph as an edge list: ``n`` areas, ``pairs`` ``(k, 2)`` 0-based, each edge once.

    Pickles to about ``16 k`` bytes (an int64 NumPy array); :attr:`key` is a SHA-256 of ``n`` and the sorted edge list,
    by which a worker process finds the pieces it built for this graph before (two ``Graph`` objects with the same
    edges have the same key, whichever order the edges were listed in and whichever process unpickled them).

    Parameters
    ----------
    n : int
        Number of areas (areas without edges are allowed).
    pairs : array-like of int, shape ``(k, 2)``
        Edges ``(i, j)``, ``i != j``; an edge listed in both directions or twice is kept once.

    Raises
    ------
    ValueError
        ``n < 2``; ``pairs`` not ``(k, 2)`` integers in ``[0, n)``; a self-loop.

    Examples
    --------
    >>> from sparseprec.distributed import Graph
    >>> g = Graph(4, [(0, 1), (2, 1), (1, 0)])
    >>> g.pairs.tolist(), g == Graph(4, [(1, 2), (0, 1)])
    ([[0, 1], [1, 2]], True)
    """

    n: int
    pairs: np.ndarray
    key: str = field(init=False, repr=False)

    def __post_init__(self):
        if isinstance(self.n, bool) or not isinstance(self.n, (int, np.integer)) or self.n < 2:
            raise ValueError(f"n must be an integer >= 2 (the number of areas), got {self.n!r}")
        raw = self.pairs.detach().cpu().numpy() if isinstance(self.pairs, torch.Tensor) else np.asarray(self.pairs)
        if raw.size == 0:
            raw = np.zeros((0, 2), dtype=np.int64)
        if raw.ndim != 2 or raw.shape[1] != 2 or not np.issubdtype(raw.dtype, np.integer):
            raise ValueError(f"pairs must be integer node indices of shape (k, 2), got shape {raw.shape} {raw.dtype}")
        if raw.size and (raw.min() < 0 or raw.max() >= self.n):
            raise ValueError(f"pairs must index areas 0..{self.n - 1}, got indices {raw.min()}..{raw.max()}")
        if bool((raw[:, 0] == raw[:, 1]).any()):
            raise ValueError(f"pairs must not contain self-loops, got ({raw[raw[:, 0] == raw[:, 1]][0].tolist()})")
        edges = np.unique(np.sort(raw.astype(np.int64), axis=1), axis=0)
        edges.setflags(write=False)
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "pairs", edges)
        digest = hashlib.sha256(np.int64(self.n).tobytes() + edges.tobytes()).hexdigest()
        object.__setattr__(self, "key", digest)

    @classmethod
    def from_adjacency(cls, adjacency: torch.Tensor) -> Graph:
        """The graph of a sparse (COO/CSR) or dense symmetric 0/1 adjacency matrix ``(n, n)``.

        Examples
        --------
        >>> from sparseprec.distributed import Graph
        >>> from sparseprec.structures import adjacency_from_pairs
        >>> Graph.from_adjacency(adjacency_from_pairs([(0, 1), (1, 2)])).pairs.tolist()
        [[0, 1], [1, 2]]
        """
        if not isinstance(adjacency, torch.Tensor) or adjacency.dim() != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ValueError(
                "adjacency must be a square 2-D torch.Tensor (sparse COO/CSR or dense), got "
                f"{tuple(adjacency.shape) if isinstance(adjacency, torch.Tensor) else type(adjacency).__name__}"
            )
        coo = (adjacency.to_sparse() if adjacency.layout == torch.strided else adjacency.to_sparse_coo()).coalesce()
        rows, cols = coo.indices()
        keep = (rows < cols) & (coo.values() != 0)
        return cls(int(adjacency.shape[0]), torch.stack([rows[keep], cols[keep]], dim=1))

    def adjacency(self) -> torch.Tensor:
        """The symmetric 0/1 adjacency, sparse CSR ``(n, n)`` float64
        (:func:`sparseprec.structures.adjacency_from_pairs`)."""
        from ..structures import adjacency_from_pairs

        return adjacency_from_pairs(self.pairs, n=self.n)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"Graph(n={self.n}, edges={self.pairs.shape[0]}, key={self.key[:12]}…)"


@dataclass(frozen=True)
class EmpiricalBayes:
    """Hyper-parameters fixed at the mode of :math:`\\tilde p(\\theta \\mid y)` (R-INLA's ``int.strategy = "eb"``):
    :func:`sparseprec.laplace.fit_hyperparameters` with the specification's prior, then the Gaussian approximation of
    the latent field there (its mode as the mean). One Laplace approximation per L-BFGS evaluation (about 10 on the lip
    cancer data).

    Examples
    --------
    >>> from sparseprec.distributed import EmpiricalBayes
    >>> EmpiricalBayes(max_iterations=100)
    EmpiricalBayes(max_iterations=100, gtol=1e-06)
    """

    max_iterations: int = 200
    gtol: float = 1e-6

    def __post_init__(self):
        if isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations, int) or self.max_iterations < 1:
            raise ValueError(f"max_iterations must be an integer >= 1, got {self.max_iterations!r}")
        _positive(self.gtol, "gtol")


@dataclass(frozen=True)
class INLA:
    """Hyper-parameters integrated out over R-INLA's grid (:func:`sparseprec.laplace.inla`, whose arguments these
    are): the latent and predictor marginals are mixtures over the grid points. About ten times the cost of
    :class:`EmpiricalBayes` (about 130 Laplace approximations on the lip cancer data).

    Examples
    --------
    >>> from sparseprec.distributed import INLA
    >>> INLA()
    INLA(dz=0.75, diff_logdens=6.0, strategy='mean-corrected')
    """

    dz: float = 0.75
    diff_logdens: float = 6.0
    strategy: str = "mean-corrected"

    def __post_init__(self):
        _positive(self.dz, "dz")
        _positive(self.diff_logdens, "diff_logdens")
        if self.strategy not in ("mean-corrected", "gaussian"):
            raise ValueError(f"strategy must be 'mean-corrected' or 'gaussian', got {self.strategy!r}")


@dataclass(frozen=True, eq=False)
class Outcome:
    """One data set of an atlas: counts and expected counts per area, and optional covariates.

    Parameters
    ----------
    counts : torch.Tensor
        ``(n,)`` non-negative integer counts (any numeric dtype holding whole numbers).
    expected : torch.Tensor
        ``(n,)`` positive expected counts ``E_i`` (the offset is ``log E_i``).
    covariates : torch.Tensor, optional
        ``(n, p)`` area-level covariates ``z_i`` (``p`` = the specification's ``num_covariates``); default none.
    name : str, optional
        A label carried into the result (e.g. ``"lip cancer, men, 1975-80"``).

    Notes
    -----
    Tensors are stored as given; :meth:`BYM2Poisson.check_outcome` validates them against a specification (done for
    every outcome before any task is submitted).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.distributed import Outcome
    >>> Outcome(torch.tensor([3, 0, 5]), torch.tensor([2.0, 1.0, 4.0]), name="test").name
    'test'
    """

    counts: torch.Tensor
    expected: torch.Tensor
    covariates: torch.Tensor | None = None
    name: str | None = None


@dataclass(frozen=True)
class BYM2Poisson:
    r"""A BYM2 Poisson disease-mapping model with offsets and covariates, and how to fit it (see the module docstring
    for the model).

    The latent field is :math:`x = (\beta_0, \beta_1 \dots \beta_p, \theta_1 \dots \theta_n, \phi_1 \dots \phi_n)`,
    the hyper-parameters :math:`t = (\log\sigma, \operatorname{logit}\rho)`; they enter the linear predictor through
    the values of ``A`` only, so every Laplace approximation of every outcome shares one Hessian pattern and one
    symbolic analysis per process.

    Parameters
    ----------
    graph : Graph
        The neighbourhood graph.
    num_covariates : int
        ``p``, the number of columns of each outcome's ``covariates`` (default 0).
    method : EmpiricalBayes or INLA
        How the hyper-parameters are handled (default ``EmpiricalBayes()``).
    newton : sparseprec.laplace.Newton
        The inner iteration's settings (default ``Newton()``: one torch thread while it runs).
    intercept_sd, coefficient_sd : float
        Prior standard deviations ``a`` of :math:`\beta_0` and ``b`` of each :math:`\beta_j` (defaults 5 and 1).
    sigma_scale : float
        Scale ``c`` of the half-normal prior of :math:`\sigma` (default 1).
    rho_concentration : tuple of float
        :math:`(\alpha, \beta')` of the Beta prior of :math:`\rho` (default ``(0.5, 0.5)``).
    initial_sigma, initial_rho : float
        Where the hyper-parameter search starts (defaults 0.5, 0.5).
    threshold : float
        The relative risk ``c`` of the exceedance probabilities :math:`P(r_i > c \mid y)` (default 1).

    Examples
    --------
    >>> from sparseprec.distributed import BYM2Poisson, Graph, INLA
    >>> spec = BYM2Poisson(Graph(3, [(0, 1), (1, 2)]), num_covariates=1, method=INLA())
    >>> spec.latent_size, spec.hyperparameters
    (8, ('log_sigma', 'logit_rho'))
    """

    graph: Graph
    num_covariates: int = 0
    method: EmpiricalBayes | INLA = field(default_factory=EmpiricalBayes)
    newton: Newton = field(default_factory=Newton)
    intercept_sd: float = 5.0
    coefficient_sd: float = 1.0
    sigma_scale: float = 1.0
    rho_concentration: tuple[float, float] = (0.5, 0.5)
    initial_sigma: float = 0.5
    initial_rho: float = 0.5
    threshold: float = 1.0

    hyperparameters = ("log_sigma", "logit_rho")

    def __post_init__(self):
        if not isinstance(self.graph, Graph):
            raise TypeError(f"graph must be a sparseprec.distributed.Graph, got {type(self.graph).__name__}")
        p = self.num_covariates
        if isinstance(p, bool) or not isinstance(p, int) or p < 0:
            raise ValueError(f"num_covariates must be an integer >= 0, got {p!r}")
        if not isinstance(self.method, (EmpiricalBayes, INLA)):
            raise TypeError(
                f"method must be sparseprec.distributed.EmpiricalBayes() or INLA(), got {type(self.method).__name__}"
            )
        if not isinstance(self.newton, Newton):
            raise TypeError(f"newton must be a sparseprec.laplace.Newton, got {type(self.newton).__name__}")
        for name in ("intercept_sd", "coefficient_sd", "sigma_scale", "threshold"):
            _positive(getattr(self, name), name)
        concentration = tuple(self.rho_concentration)
        if len(concentration) != 2:
            raise ValueError(f"rho_concentration must be a pair (alpha, beta), got {self.rho_concentration!r}")
        for value in concentration:
            _positive(value, "rho_concentration")
        object.__setattr__(self, "rho_concentration", tuple(float(v) for v in concentration))
        _positive(self.initial_sigma, "initial_sigma")
        if not (isinstance(self.initial_rho, (int, float)) and 0 < self.initial_rho < 1):
            raise ValueError(f"initial_rho must lie in (0, 1), got {self.initial_rho!r}")

    @property
    def latent_size(self) -> int:
        """``1 + p + 2 n``: the intercept, the coefficients, the unstructured and the spatial effects."""
        return 1 + self.num_covariates + 2 * self.graph.n

    @property
    def model_key(self) -> tuple:
        """What the worker-side pieces depend on (graph hash, ``p``, the fixed-effect prior): equal keys share them."""
        return (self.graph.key, self.num_covariates, self.intercept_sd, self.coefficient_sd)

    def check_outcome(self, outcome: object, name: str = "outcome") -> Outcome:
        """Raise ``TypeError``/``ValueError`` (naming ``name``) unless ``outcome`` fits this specification; returns
        it with float64 tensors (counts, expected, covariates) on the CPU.

        Examples
        --------
        >>> import torch
        >>> from sparseprec.distributed import BYM2Poisson, Graph, Outcome
        >>> spec = BYM2Poisson(Graph(3, [(0, 1), (1, 2)]))
        >>> spec.check_outcome(Outcome(torch.tensor([1, 2, 0]), torch.ones(3))).counts.dtype
        torch.float64
        """
        if not isinstance(outcome, Outcome):
            raise TypeError(f"{name} must be a sparseprec.distributed.Outcome, got {type(outcome).__name__}")
        n, p = self.graph.n, self.num_covariates

        def vector(t: object, what: str) -> torch.Tensor:
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n,):
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{name}.{what} must be a tensor of shape ({n},) (one per area), got {shape}")
            t = t.detach().to("cpu", torch.float64)
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name}.{what} must be finite, got a non-finite value at area {_first_bad(t)}")
            return t

        counts = vector(outcome.counts, "counts")
        bad = (counts < 0) | (counts != counts.round())
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0, 0])
            raise ValueError(f"{name}.counts must be non-negative whole numbers, got {float(counts[i])} at area {i}")
        expected = vector(outcome.expected, "expected")
        if bool((expected <= 0).any()):
            i = int(torch.nonzero(expected <= 0)[0, 0])
            raise ValueError(f"{name}.expected must be positive, got {float(expected[i])} at area {i}")
        covariates = outcome.covariates
        if p == 0 and covariates is not None and covariates.numel() != 0:
            raise ValueError(f"{name}.covariates must be None (the specification has num_covariates=0), got "
                             f"shape {tuple(covariates.shape)}")  # fmt: skip
        if p > 0:
            if not isinstance(covariates, torch.Tensor) or tuple(covariates.shape) != (n, p):
                shape = tuple(covariates.shape) if isinstance(covariates, torch.Tensor) else type(covariates).__name__
                raise ValueError(f"{name}.covariates must have shape ({n}, {p}) (areas, num_covariates), got {shape}")
            covariates = covariates.detach().to("cpu", torch.float64)
            if not bool(torch.isfinite(covariates).all()):
                raise ValueError(f"{name}.covariates must be finite")
        else:
            covariates = None
        if outcome.name is not None and not isinstance(outcome.name, str):
            raise TypeError(f"{name}.name must be a str or None, got {type(outcome.name).__name__}")
        return Outcome(counts, expected, covariates, outcome.name)


def _first_bad(t: torch.Tensor) -> int:
    return int(torch.nonzero(~torch.isfinite(t))[0, 0])
