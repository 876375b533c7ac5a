r"""``SparsePrecisionNoise``: a GPyTorch noise model whose covariance is :math:`\Sigma = Q^{-1}` with a sparse,
parameterised precision on the training points.

:math:`Q = \tau\,(\kappa^2 I + G)` for a fixed sparse structure ``G`` (e.g. the grid Laplacian of an image, so the
noise is a spatially correlated GMRF; ``kappa2=None`` drops the :math:`\kappa^2 I` term, for a ``G`` that is already
positive definite). :math:`\tau > 0` and :math:`\kappa^2 > 0` are learnable through GPyTorch's positive constraints
(``raw_tau``, ``raw_kappa2``; priors attach as for any GPyTorch hyper-parameter). ``forward`` returns a
:class:`PrecisionInverseLinearOperator`, differentiable in both.

The state dict carries ``G``'s pattern (buffer ``structure_pattern``) with its values (``structure_values``): loading
a state dict saved with another pattern is refused (``load_state_dict`` raises ``RuntimeError`` naming
``structure_pattern``, also with ``strict=False``) rather than putting the values on other entries. A state dict saved
before the pattern was stored (``structure_values`` without ``structure_pattern``) is refused too, since its pattern is
unknown; to load one known to come from a noise with the same pattern, first add this noise's ``structure_pattern``
entry to it (stating that the patterns agree).
"""

from __future__ import annotations

import math
import numbers

import torch
from gpytorch.constraints import Positive
from gpytorch.likelihoods.noise_models import Noise

from ._pattern_state import pattern_state_problems, refuse_state
from ._sparse_symmetric import from_sparse
from .precision_inverse import PrecisionInverseLinearOperator

__all__ = ["SparsePrecisionNoise"]


class SparsePrecisionNoise(Noise):
    """Noise covariance ``(τ (κ² I + G))⁻¹`` on ``n`` fixed points (see the module).

    Parameters
    ----------
    structure : torch.Tensor
        ``G``: sparse symmetric ``(n, n)`` COO/CSR, positive semi-definite, storing its diagonal.
    tau : float
        Initial precision scale ``τ``.
    kappa2 : float or None
        Initial ``κ²`` (learnable); ``None``: ``Q = τ G`` (``G`` must then be positive definite).

    Attributes
    ----------
    structure_values : torch.Tensor
        ``(nnz,)`` buffer: the stored values of ``G``.
    structure_pattern : torch.Tensor
        ``(2, nnz)`` int64 buffer: ``(row, column)`` of the entry of ``G`` held by each element of
        ``structure_values``. Part of the state dict.

    Raises
    ------
    TypeError
        ``tau`` or ``kappa2`` (at construction or set later) not a real number or one-element real tensor.
    ValueError
        ``tau`` or ``kappa2`` not positive and finite (a zero would make ``Q`` singular); from ``forward``, when
        asked for noise on a number of points other than the ``n`` it was built for.
    RuntimeError
        From ``load_state_dict`` (with ``strict=True`` or ``False``), when the state dict was saved with another
        pattern of ``G``, or holds ``structure_values`` without a pattern; see the module.

    Examples
    --------
    >>> import torch
    >>> from sparseprec.gpytorch import SparsePrecisionNoise
    >>> from sparseprec.structures import grid_laplacian
    >>> noise = SparsePrecisionNoise(grid_laplacian((3, 3), dtype=torch.float64), tau=2.0, kappa2=0.5).double()
    >>> Sigma = noise(shape=torch.Size([9]))  # PrecisionInverseLinearOperator of (2 (0.5 I + G))⁻¹
    >>> dense = torch.linalg.inv(2.0 * (0.5 * torch.eye(9, dtype=torch.float64) + grid_laplacian((3, 3)).to_dense()))
    >>> torch.allclose(Sigma.to_dense(), dense)
    True
    """

    def __init__(self, structure: torch.Tensor, tau: float = 1.0, kappa2: float | None = 1.0):
        super().__init__()
        values, self.pattern = from_sparse(structure, "structure")
        self.register_buffer("structure_values", values.detach().clone())
        pattern = torch.stack([self.pattern.rows, self.pattern.col]).to(torch.int64)
        self.register_buffer("structure_pattern", pattern)  # saved with the values: they mean nothing without it
        self.register_parameter("raw_tau", torch.nn.Parameter(torch.zeros((), dtype=values.dtype)))
        self.register_constraint("raw_tau", Positive())
        self.tau = tau
        self.has_kappa2 = kappa2 is not None
        if self.has_kappa2:
            self.register_parameter("raw_kappa2", torch.nn.Parameter(torch.zeros((), dtype=values.dtype)))
            self.register_constraint("raw_kappa2", Positive())
            self.kappa2 = kappa2

    @property
    def num_points(self) -> int:
        return self.pattern.n

    @property
    def tau(self) -> torch.Tensor:
        return self.raw_tau_constraint.transform(self.raw_tau)

    @tau.setter
    def tau(self, value: float | torch.Tensor) -> None:
        value = _positive_scalar(value, "tau", self.raw_tau.dtype)
        self.initialize(raw_tau=self.raw_tau_constraint.inverse_transform(value))

    @property
    def kappa2(self) -> torch.Tensor | None:
        return self.raw_kappa2_constraint.transform(self.raw_kappa2) if self.has_kappa2 else None

    @kappa2.setter
    def kappa2(self, value: float | torch.Tensor) -> None:
        if not self.has_kappa2:
            raise AttributeError("kappa2 cannot be set: this noise was built with kappa2=None (Q = τ G, no κ²)")
        value = _positive_scalar(value, "kappa2", self.raw_kappa2.dtype)
        self.initialize(raw_kappa2=self.raw_kappa2_constraint.inverse_transform(value))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        # structure_values are positions on G's pattern: loaded onto another pattern they give another precision
        problems = pattern_state_problems(
            state_dict,
            prefix,
            self.structure_pattern,
            pattern_name="structure_pattern",
            values_name="structure_values",
            owner="noise",
            matrix="G",
            size=f"{self.pattern.nnz} stored entries of G for {self.num_points} points",
            consequence="the structure values would give another precision",
            restore=", add this noise's 'structure_pattern' entry of state_dict() to it under the same prefix",
        )
        if refuse_state(error_msgs, "SparsePrecisionNoise", problems):
            return
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def precision_values(self) -> torch.Tensor:
        """The stored values of ``Q = τ (κ² I + G)`` (differentiable in τ, κ²)."""
        values = self.structure_values
        if self.has_kappa2:
            diagonal = self.pattern.diagonal_positions.to(values.device)
            values = values.index_add(0, diagonal, self.kappa2.expand(diagonal.shape))
        return self.tau * values

    def forward(self, *params, shape: torch.Size | None = None, **kwargs) -> PrecisionInverseLinearOperator:
        if shape is not None and shape[-1] != self.num_points:
            raise ValueError(
                f"SparsePrecisionNoise is defined on the {self.num_points} points its precision was built for, but "
                f"was asked for noise on {shape[-1]} points: the noise exists only on the training grid (predict the "
                "latent function with model(test_x), without the likelihood, elsewhere)"
            )
        op = PrecisionInverseLinearOperator(self.precision_values(), self.pattern)
        batch = torch.Size(shape[:-1]) if shape is not None else torch.Size()
        return op.expand(*batch, self.num_points, self.num_points) if len(batch) else op


def _positive_scalar(value: object, name: str, dtype: torch.dtype) -> torch.Tensor:
    """``value`` as a 0-d tensor of ``dtype``, checked to be one positive finite real number (``name`` in errors)."""
    if isinstance(value, torch.Tensor):
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name} must be a positive finite real scalar, got a tensor of dtype {value.dtype}")
        if value.numel() != 1:
            raise ValueError(f"{name} must be a positive finite scalar (one element), got a tensor of shape "
                             f"{tuple(value.shape)}")  # fmt: skip
        value = value.detach().reshape(()).to(dtype)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = torch.tensor(float(value), dtype=dtype)
    else:
        raise TypeError(f"{name} must be a positive finite scalar (a float or a one-element tensor), got "
                        f"{type(value).__name__} {value!r}")  # fmt: skip
    number = float(value)  # in the parameter's dtype: a positive value that underflows to 0 is refused too
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a positive finite scalar (Q = τ (κ² I + G) must be positive definite), got "
                         f"{number}")  # fmt: skip
    return value
