r"""``AutoSparseMultivariateNormal``: a Pyro autoguide whose posterior has a sparse precision factor.

The guide is :math:`q(z) = N(\mu, Q^{-1})` over the model's whole unconstrained latent vector :math:`z`
(``latent_dim`` entries, site order) with :math:`Q = (I + L)^\top D (I + L)`, :math:`L` strictly lower triangular on
a given sparsity pattern and :math:`D = \mathrm{diag}(d)`, :math:`d > 0`: each coordinate is regressed on the
*earlier* ones, :math:`z_i - \mu_i = -\sum_{j<i} L_{ij}(z_j - \mu_j) + d_i^{-1/2}\varepsilon_i`. Models sample their
global parameters first, so this orientation gives the arrow-shaped precision of a hierarchical posterior (sparse
field block, dense rows of the globals) without fill. It is evaluated as a
:class:`sparseprec.distributions.SparseMultivariateNormal` (precision-LDLᵀ form) of the reversed vector. Parameters:
``loc`` (``latent_dim``), the stored values of ``L`` (``factor_values``, one dense 1-D parameter, initialised to 0;
``factor_pattern`` gives their positions) and ``scale_raw`` with :math:`d = \mathrm{softplus}(\text{scale\_raw})^{-2}`
(the conditional standard deviations, initialised to ``init_scale``). Memory and time per step are
O(nnz(L) + latent_dim): no ``latent_dim²`` object exists, so latent fields of 10⁵–10⁶ sites fit.

The pattern of ``L`` is given (``pattern=``: a sparse ``(latent_dim, latent_dim)`` tensor or a ``(2, m)`` index
tensor; an entry above the diagonal stands for its mirror, the diagonal is ignored) or derived from the model: the
strictly lower pattern of the precision of every latent site whose prior is a sparse Gaussian of sparseprec
(``GMRF``, ``CAR``, ``SparseMultivariateNormal``: their precision's pattern; intrinsic models
``ICAR``/``IntrinsicGMRF``: the pattern of the pinned precision of their ``n − k`` free coordinates, see
:mod:`sparseprec.distributions.subspace`), placed at that site's position in the latent vector; and, for sites that
depend on each other in the posterior (``pyro.infer.inspect.get_dependencies``: prior parent–child links and
co-parents of an observation), a dense block when one of the two has at most ``max_dense_block`` entries (e.g. a
precision parameter and the field it scales), else the pairs of coordinates that determine the same element of two
equally shaped values (e.g. the unstructured and spatial effects of one district).
"""

from __future__ import annotations

import warnings

import numpy as np
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.transforms import ComposeTransform, Permute
from pyro.infer.autoguide import AutoContinuous
from pyro.infer.autoguide.initialization import init_to_median
from pyro.infer.inspect import get_dependencies
from torch import nn
from torch.distributions import biject_to
from torch.distributions.transforms import IndependentTransform

from .. import distributions as core
from .._validation import lower_pattern_pairs
from ..ops import sparse_csr_tensor
from ..pattern import Assembly, crow_from_rows, pattern_of
from .distributions import SparseMultivariateNormal

__all__ = ["AutoSparseMultivariateNormal"]


class ReversedSparseMultivariateNormal(dist.TransformedDistribution):
    """A :class:`SparseMultivariateNormal` of the reversed vector, reversed back: the guide's posterior in latent
    order. ``mean``, ``variance``, ``entropy`` and ``base_dist`` (the sparse distribution itself) are exposed."""

    def __init__(self, base_dist: SparseMultivariateNormal, validate_args: bool | None = None):
        n = base_dist.event_shape[0]
        reverse = Permute(torch.arange(n - 1, -1, -1, device=base_dist.loc.device), cache_size=0)
        super().__init__(base_dist, [reverse], validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.base_dist.mean.flip(-1)

    @property
    def variance(self) -> torch.Tensor:
        return self.base_dist.variance.flip(-1)

    def entropy(self) -> torch.Tensor:
        return self.base_dist.entropy()

    def expand(self, batch_shape, _instance=None) -> ReversedSparseMultivariateNormal:
        return ReversedSparseMultivariateNormal(self.base_dist.expand(batch_shape), validate_args=False)


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
    >>> pyro.clear_param_store()  # the guide's parameters are named after its class
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
                dependencies = get_dependencies(self.model, args, kwargs)["posterior_dependencies"]
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
                    i, j = self._elementwise_pairs(name, parent)
                    i, j = a + i, b + j
                else:
                    i, j = np.meshgrid(np.arange(a, a + na), np.arange(b, b + nb), indexing="ij")
                    i, j = i.ravel(), j.ravel()
                rows.append(np.maximum(i, j))
                cols.append(np.minimum(i, j))
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(rows), np.concatenate(cols)

    def _elementwise_pairs(self, first: str, second: str) -> tuple[np.ndarray, np.ndarray]:
        """Unconstrained coordinates of two large sites that stand for the same element of equally shaped values
        (e.g. the two random effects of one district in BYM2); empty when the values differ in shape or a coordinate
        is not tied to one element."""
        nodes = self.prototype_trace.nodes
        if nodes[first]["value"].shape != nodes[second]["value"].shape:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        maps = [_element_of_coordinate(nodes[name]) for name in (first, second)]
        if maps[0] is None or maps[1] is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        _, i, j = np.intersect1d(maps[0], maps[1], assume_unique=True, return_indices=True)  # O(n log n)
        return i.astype(np.int64), j.astype(np.int64)

    def _setup_prototype(self, *args, **kwargs):
        super()._setup_prototype(*args, **kwargs)
        n = self.latent_dim
        if self._given_pattern is not None:
            rows, cols = lower_pattern_pairs(self._given_pattern, n, "the latent dimension")
        else:
            rows, cols = self._derived_pairs(args, kwargs)
        merged = Assembly(rows.astype(np.int64), cols.astype(np.int64), n, n)
        r, c = merged.row.numpy(), merged.col.numpy()  # entries L[r, c], r > c, in the latent (site) order
        # In reversed coordinates w = z.flip(-1) the precision is M D' Mᵀ with M = R (I + L)ᵀ R unit lower triangular:
        # L[r, c] is M[n-1-c, n-1-r]. Parameters are stored in M's CSR order.
        m_row, m_col = n - 1 - c, n - 1 - r
        order = np.lexsort((m_col, m_row))
        crow = crow_from_rows(torch.from_numpy(m_row), n)
        init = self._init_loc()
        device, dtype = init.device, init.dtype
        self._crow = crow.to(device)
        self._col = torch.from_numpy(m_col[order].astype(np.int64)).to(device)
        self._pattern = torch.from_numpy(np.stack([r[order], c[order]]).astype(np.int64)).to(device)
        self.loc = nn.Parameter(init)
        self.factor_values = nn.Parameter(torch.zeros(merged.nnz, dtype=dtype, device=device))
        # d_i = scale_i⁻² with scale = softplus(scale_raw): Adam moves conditional standard deviations (the units of
        # Pyro's AutoNormal/AutoMultivariateNormal scales), so the same learning rates work; a softplus of d itself
        # would need ~1/init_scale² / lr steps to shrink a precision of 1/init_scale² to O(1).
        scale = torch.full((n,), self._init_scale, dtype=dtype, device=device)
        self.scale_raw = nn.Parameter(scale + torch.log(-torch.expm1(-scale)))  # softplus⁻¹

    @property
    def factor_pattern(self) -> torch.Tensor:
        """``(2, m)`` int64: the ``(row, column)`` (row > column, latent order) of ``L``'s entry held by each element
        of ``factor_values``."""
        return self._pattern

    @property
    def conditional_precisions(self) -> torch.Tensor:
        r""":math:`d`: the precision of each latent coordinate given the earlier ones, ``softplus(scale_raw) ** -2``."""
        return nn.functional.softplus(self.scale_raw).pow(-2)

    # ---- the posterior ----------------------------------------------------------------------------------------------
    def _reversed(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loc, M, d)`` of the posterior of the reversed latent vector (precision-LDLᵀ SparseMultivariateNormal)."""
        n = self.latent_dim
        M = sparse_csr_tensor(self._crow, self._col, self.factor_values, (n, n))
        return self.loc.flip(-1), M, self.conditional_precisions.flip(-1)

    def get_posterior(self, *args, **kwargs) -> ReversedSparseMultivariateNormal:
        r""":math:`N(\mu, Q^{-1})`, :math:`Q = (I + L)^\top D (I + L)`: the reversed-order
        :class:`sparseprec.pyro.SparseMultivariateNormal` (precision :math:`LDL^\top` form) with its coordinates
        reversed back."""
        loc, M, d = self._reversed()
        return ReversedSparseMultivariateNormal(SparseMultivariateNormal(loc, precision_tril=M, diagonal=d))

    def get_base_dist(self):
        return dist.Normal(torch.zeros_like(self.loc), torch.ones_like(self.loc)).to_event(1)

    def get_transform(self, *args, **kwargs):
        r""":math:`\varepsilon \mapsto z`: the sparse distribution's own coloring map
        (:math:`\mu + (I + L)^{-\top} D^{-1/2} \varepsilon` in reversed order, see
        :meth:`SparseMultivariateNormal.coloring_transform`), then the reversal."""
        posterior = self.get_posterior(*args, **kwargs)
        return ComposeTransform([posterior.base_dist.coloring_transform(), *posterior.transforms])

    def _loc_scale(self, *args, **kwargs):
        with torch.no_grad():
            scale = self.get_posterior().variance.sqrt()
        return self.loc, scale


def _element_of_coordinate(site: dict) -> np.ndarray | None:
    """For each unconstrained coordinate of a site, the (flat) element of its value it determines alone; ``None`` when
    the bijection mixes elements (e.g. a simplex or a Cholesky factor)."""
    transform = biject_to(site["fn"].support)
    numel = site["value"].numel()
    if isinstance(transform, core.AffineSubspaceTransform):  # free coordinates = the unpinned elements
        keep = transform._keep.cpu().numpy()
        return keep if site["value"].dim() == 1 else None
    while isinstance(transform, IndependentTransform):
        transform = transform.base_transform
    if transform.domain.event_dim == 0:  # elementwise (identity, exp, sigmoid, affine, ...)
        return np.arange(numel)
    return None


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
