r"""``AutoSparseMultivariateNormal``: a Pyro autoguide whose posterior has a sparse precision factor.

The guide is :math:`q(z) = N(\mu, Q^{-1})` over the model's whole unconstrained latent vector :math:`z`
(``latent_dim`` entries) with :math:`Q = (I + L) D (I + L)^\top`, :math:`L` strictly lower triangular on a given
sparsity pattern and :math:`D = \mathrm{diag}(d)`, :math:`d > 0` — a
:class:`sparseprec.distributions.SparseMultivariateNormal` in its precision-LDLᵀ form. Parameters: ``loc``
(``latent_dim``), the stored values of ``L`` (one dense 1-D parameter, initialised to 0) and ``d`` (through a
softplus, initialised to ``1 / init_scale²``). Memory and time per step are O(nnz(L) + latent_dim): no
``latent_dim²`` object exists, so latent fields of 10⁵–10⁶ sites fit.

The pattern of ``L`` is given (``pattern=``: a sparse ``(latent_dim, latent_dim)`` tensor or a ``(2, m)`` index
tensor; only entries below the diagonal are used) or derived from the model: the strictly lower pattern of the
precision of every latent site whose prior is a sparse Gaussian of sparseprec (``GMRF``, ``CAR``,
``SparseMultivariateNormal``: their precision's pattern; intrinsic models ``ICAR``/``IntrinsicGMRF``: the pattern of
the pinned precision of their ``n − k`` free coordinates, see :mod:`sparseprec.distributions.subspace`), placed at
that site's position in the latent vector, plus dense blocks between sites that depend on each other in the prior
(``pyro.infer.inspect.get_dependencies``) when one of the two has at most ``max_dense_block`` entries (e.g. a
precision parameter and the field it scales).
"""

from __future__ import annotations

import warnings

import numpy as np
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.transforms import Transform
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median
from pyro.infer.inspect import get_dependencies
from torch import nn
from torch.distributions import constraints

from .. import distributions as core
from ..ops import sparse_csr_tensor, sparse_mm, sparse_triangular_solve
from ..ops._pattern import pattern_of
from .distributions import SparseMultivariateNormal

__all__ = ["AutoSparseMultivariateNormal"]


class _SparsePrecisionAffine(Transform):
    r""":math:`\varepsilon \mapsto \mu + (I + L)^{-\top} D^{-1/2} \varepsilon` (bijective; log-det :math:`-\tfrac12
    \sum \log d`)."""

    domain = constraints.real_vector
    codomain = constraints.real_vector
    bijective = True

    def __init__(self, loc: torch.Tensor, L: torch.Tensor, d: torch.Tensor, cache_size: int = 0):
        super().__init__(cache_size=cache_size)
        self.loc, self.L, self.d = loc, L, d

    def _columns(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, x.shape[-1]).transpose(0, 1)

    def _call(self, x: torch.Tensor) -> torch.Tensor:
        eps = self._columns(x * self.d.rsqrt())
        z = sparse_triangular_solve(self.L, eps, upper=False, unitriangular=True, transpose=True)
        return self.loc + z.transpose(0, 1).reshape(x.shape)

    def _inverse(self, y: torch.Tensor) -> torch.Tensor:
        r = self._columns(y - self.loc)
        z = r + sparse_mm(self.L, r, transpose=True)
        return z.transpose(0, 1).reshape(y.shape) * self.d.sqrt()

    def log_abs_det_jacobian(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (-0.5 * self.d.log().sum()).expand(x.shape[:-1])


class AutoSparseMultivariateNormal(AutoContinuous):
    """Autoguide with a sparse-precision multivariate normal posterior over all latent sites (see the module).

    Parameters
    ----------
    model : callable
        A Pyro model.
    pattern : torch.Tensor, optional
        The sparsity of the factor ``L`` (see the module docstring); derived from the model when ``None``.
    init_loc_fn : callable
        Per-site initialisation, as for Pyro's autoguides.
    init_scale : float
        Initial posterior standard deviation of every unconstrained latent coordinate.
    max_dense_block : int
        Largest size of the smaller site for which prior dependencies between two sites give a dense block.

    Examples
    --------
    >>> import torch, pyro, pyro.distributions as dist
    >>> import sparseprec.pyro as sp
    >>> from sparseprec.structures import ar1
    >>> def model():
    ...     x = pyro.sample("x", sp.GMRF(torch.zeros(100, dtype=torch.float64), ar1(100, 0.9)))
    ...     pyro.sample("y", dist.Normal(x, 0.5).to_event(1), obs=torch.zeros(100, dtype=torch.float64))
    >>> guide = sp.AutoSparseMultivariateNormal(model)
    >>> _ = guide()
    >>> guide.latent_dim, guide.factor_values.numel()  # AR(1): one entry below the diagonal per row
    (100, 99)
    """

    def __init__(
        self,
        model,
        pattern: torch.Tensor | None = None,
        init_loc_fn=init_to_median,
        init_scale: float = 0.1,
        max_dense_block: int = 16,
    ):
        if not isinstance(init_scale, float) or not init_scale > 0:
            raise ValueError(f"init_scale must be a positive float, got {init_scale!r}")
        self._init_scale = init_scale
        self._max_dense_block = int(max_dense_block)
        super().__init__(model, init_loc_fn=init_loc_fn)
        self._given_pattern = pattern  # a tensor attribute can only be set once the module is initialised

    # ---- pattern --------------------------------------------------------------------------------------------------
    def _site_offsets(self) -> dict[str, tuple[int, int]]:
        offsets, start = {}, 0
        for name, shape in self._unconstrained_shapes.items():
            size = int(np.prod(shape)) if len(shape) else 1
            offsets[name] = (start, size)
            start += size
        return offsets

    def _derived_pairs(self, args, kwargs) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = [], []
        offsets = self._site_offsets()
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            fn = site["fn"]
            precision = _sparse_precision(fn)
            start, size = offsets[name]
            if precision is None or tuple(fn.batch_shape) != () or precision.shape[-1] != size:
                continue
            p = pattern_of(precision)
            r, c = p.row.long().cpu().numpy(), p.col.long().cpu().numpy()
            lower = r > c
            rows.append(start + r[lower])
            cols.append(start + c[lower])
        try:
            with poutine.block():  # the model runs again here: keep its sites out of any enclosing trace
                dependencies = get_dependencies(self.model, args, kwargs)["prior_dependencies"]
        except Exception as error:  # noqa: BLE001 - a model get_dependencies cannot trace still gets its GMRF patterns
            warnings.warn(
                f"pyro.infer.inspect.get_dependencies failed on the model ({type(error).__name__}: {error}); the "
                "guide's pattern holds the sparse priors' precision patterns only",
                stacklevel=3,
            )
            dependencies = {}
        for name, parents in dependencies.items():
            for parent in parents:
                if parent == name or name not in offsets or parent not in offsets:
                    continue
                (a, na), (b, nb) = offsets[name], offsets[parent]
                if min(na, nb) > self._max_dense_block:
                    continue
                i, j = np.meshgrid(np.arange(a, a + na), np.arange(b, b + nb), indexing="ij")
                i, j = i.ravel(), j.ravel()
                rows.append(np.maximum(i, j))
                cols.append(np.minimum(i, j))
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(rows), np.concatenate(cols)

    def _given_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        P = self._given_pattern
        n = self.latent_dim
        if not isinstance(P, torch.Tensor):
            raise TypeError(f"pattern must be a torch.Tensor, got {type(P).__name__}")
        if P.layout in (torch.sparse_coo, torch.sparse_csr):
            if tuple(P.shape) != (n, n):
                raise ValueError(f"pattern must have shape ({n}, {n}) (the latent dimension), got {tuple(P.shape)}")
            index = P.to_sparse_coo().coalesce().indices()
        else:
            if P.dim() != 2 or P.shape[0] != 2:
                raise ValueError(f"pattern must be a sparse ({n}, {n}) tensor or a (2, m) index tensor, got {P.shape}")
            index = P.long()
            if index.numel() and (index.min() < 0 or index.max() >= n):
                raise ValueError(f"pattern indices must lie in [0, {n}), got [{int(index.min())}, {int(index.max())}]")
        r, c = index[0].cpu().numpy(), index[1].cpu().numpy()
        return np.maximum(r, c)[r != c], np.minimum(r, c)[r != c]

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        rows, cols = self._given_pairs() if self._given_pattern is not None else self._derived_pairs(args, kwargs)
        n = self.latent_dim
        keys = np.unique(rows.astype(np.int64) * n + cols.astype(np.int64))
        r, c = keys // n, keys % n
        crow = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=n))])
        init = self._init_loc()
        device, dtype = init.device, init.dtype
        self._crow = torch.from_numpy(crow.astype(np.int64)).to(device)
        self._col = torch.from_numpy(c.astype(np.int64)).to(device)
        self.loc = nn.Parameter(init)
        self.factor_values = nn.Parameter(torch.zeros(keys.size, dtype=dtype, device=device))
        target = torch.full((n,), self._init_scale**-2, dtype=dtype, device=device)
        self.precision_raw = nn.Parameter(target + torch.log(-torch.expm1(-target)))  # softplus⁻¹

    # ---- the posterior ----------------------------------------------------------------------------------------------
    def _factor(self) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.latent_dim
        L = sparse_csr_tensor(self._crow, self._col, self.factor_values, (n, n))
        return L, nn.functional.softplus(self.precision_raw)

    def get_posterior(self, *args, **kwargs) -> SparseMultivariateNormal:
        L, d = self._factor()
        return SparseMultivariateNormal(self.loc, precision_tril=L, diagonal=d)

    def get_base_dist(self):
        return dist.Normal(torch.zeros_like(self.loc), torch.ones_like(self.loc)).to_event(1)

    def get_transform(self, *args, **kwargs):
        L, d = self._factor()
        return _SparsePrecisionAffine(self.loc, L, d)

    def _loc_scale(self, *args, **kwargs):
        with torch.no_grad():
            scale = self.get_posterior().variance.sqrt()
        return self.loc, scale


def _sparse_precision(fn) -> torch.Tensor | None:
    """The sparse precision of a sparseprec distribution (possibly wrapped by Pyro), else ``None``."""
    while hasattr(fn, "base_dist") and not isinstance(fn, core.SparseMultivariateNormal | core.GMRF):
        fn = fn.base_dist
    if isinstance(fn, core.IntrinsicGMRF):  # its unconstrained coordinates are the unpinned nodes (AffineSubspace)
        return fn._reduced.detach()
    if isinstance(fn, core.GMRF):
        return fn.precision
    if isinstance(fn, core.SparseMultivariateNormal) and fn.parameterization.startswith("precision"):
        return fn.precision_matrix.detach()
    return None
