"""Assembling a CSR precision from fixed index pairs and differentiable values.

Every builder of :mod:`sparseprec.structures` knows its pattern in advance (it depends on the graph or the grid, not on
the hyper-parameters) and computes the values as a differentiable function of the hyper-parameters. :class:`Pattern`
sorts and merges the index pairs once (duplicates summed); :meth:`Pattern.matrix` then only scatters the values, so
gradients reach ``rho``, ``tau``, ``kappa`` ... through plain torch ops and :func:`sparseprec.sparse_csr_tensor`'s
O(nnz) backward.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Iterable

import numpy as np
import torch

from .._validation import FLOAT_DTYPES
from ..ops import sparse_csr_tensor

__all__ = [
    "Pattern",
    "as_parameter",
    "hyper_parameters",
    "check_positive",
    "as_int",
    "as_bool",
    "as_grid_shape",
    "check_dtype",
    "as_spacing",
]


class Pattern:
    """The sorted, merged pattern of ``(rows, cols)`` pairs of an ``(n, n)`` matrix.

    Parameters
    ----------
    rows, cols : numpy.ndarray
        Entry positions (int), duplicates allowed (their values are summed).
    n : int
        Matrix size.
    """

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n: int):
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        keys = rows * n + cols
        unique, inverse = np.unique(keys, return_inverse=True)
        self.n = n
        self.nnz = unique.size
        self.inverse = torch.from_numpy(inverse.reshape(-1))
        self.rows = torch.from_numpy(unique // n)
        self.cols = torch.from_numpy(unique % n)
        self.crow = torch.from_numpy(np.concatenate([[0], np.cumsum(np.bincount(unique // n, minlength=n))]))

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The CSR matrix with ``values`` (one per input pair, in input order) summed into the merged pattern."""
        device = values.device
        merged = values.new_zeros(self.nnz).index_add(0, self.inverse.to(device), values)
        return sparse_csr_tensor(self.crow.to(device), self.cols.to(device), merged, (self.n, self.n))

    def merged_matrix(self, merged: torch.Tensor) -> torch.Tensor:
        """The CSR matrix with values already in the merged (sorted) order, ``(nnz,)``."""
        device = merged.device
        return sparse_csr_tensor(self.crow.to(device), self.cols.to(device), merged, (self.n, self.n))


def as_parameter(x: float | torch.Tensor, name: str, dtype: torch.dtype, device: torch.device | None) -> torch.Tensor:
    """A scalar hyper-parameter as a 0-D tensor (kept differentiable if it is one), else ``ValueError``.

    Only a 0-D tensor is a scalar: a tensor of shape ``(1,)`` (or ``(1, 1)``) is refused rather than silently
    reshaped, as the result has no batch dimension for it to index. ``TypeError`` for a bool or a non-number."""
    if isinstance(x, torch.Tensor):
        if x.dim() != 0:
            raise ValueError(f"{name} must be a scalar (a 0-D tensor), got a tensor of shape {tuple(x.shape)}")
        if x.dtype == torch.bool:
            raise TypeError(f"{name} must be a float or a 0-D floating tensor, got a bool tensor")
        if not x.is_floating_point():
            x = x.to(dtype)
        return x
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(f"{name} must be a float or a 0-D tensor, got {type(x).__name__}")
    return torch.tensor(float(x), dtype=dtype, device=device)


def hyper_parameters(dtype: torch.dtype | None, **values: float | torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Scalar hyper-parameters (in the order given) as 0-D tensors of one dtype and one device.

    ``dtype=None``: the floating dtype of the tensor parameters, which must agree (float64 when all are numbers); a
    given ``dtype`` converts tensor parameters to it (differentiably, as ``Tensor.to``). Never a silent mixture: two
    tensor parameters of different dtypes without ``dtype`` are a ``TypeError``, on different devices a ``ValueError``.
    """
    tensors = {name: x for name, x in values.items() if isinstance(x, torch.Tensor)}
    if dtype is None:
        dtypes = {x.dtype for x in tensors.values() if x.is_floating_point()}
        if len(dtypes) > 1:
            found = ", ".join(f"{name} {x.dtype}" for name, x in tensors.items())
            raise TypeError(f"the hyper-parameters have different dtypes ({found}): pass dtype= to convert them")
        dtype = dtypes.pop() if dtypes else torch.float64
    dtype = check_dtype(dtype)
    devices = {x.device for x in tensors.values()}
    if len(devices) > 1:
        found = ", ".join(f"{name} {x.device}" for name, x in tensors.items())
        raise ValueError(f"the hyper-parameters are on different devices ({found})")
    device = devices.pop() if devices else None
    return tuple(as_parameter(x, name, dtype, device).to(dtype) for name, x in values.items())


def check_positive(**parameters: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every given 0-D tensor is positive and finite (NaN and ±inf are refused).

    The one check of the builders' scale and precision parameters (``tau``, ``kappa``): a non-positive ``tau`` would
    return a negative or zero "precision", a non-finite one a matrix of NaN/inf. The message names the parameters::

        tau must be positive and finite, got -1.0
    """
    values = {name: float(value.detach()) for name, value in parameters.items()}
    bad = [name for name, value in values.items() if not math.isfinite(value) or not value > 0]
    if bad:
        names = " and ".join(values)
        got = (
            str(values[bad[0]]) if len(values) == 1 else ", ".join(f"{name}={value}" for name, value in values.items())
        )
        raise ValueError(f"{names} must be positive and finite, got {got}")


def as_int(value: object, name: str) -> int:
    """``value`` as a Python ``int`` if it is an integer (``int``, NumPy integer, 0-D integer tensor), else
    ``TypeError`` naming ``name``: a float such as ``2.5`` (or ``3.0``) or a bool is never truncated or taken as 1."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{name} must be an int, got a bool ({value!r})")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None


def as_bool(value: object, name: str, hint: str = "") -> bool:
    """``value`` as a ``bool`` if it is one (Python or NumPy), else ``TypeError`` naming ``name`` (and the ``hint``):
    a flag given a number by position, such as ``rw1(n, 2.0)`` meant as ``tau``, must not pass as true."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}{hint}")
    return bool(value)


def as_grid_shape(shape: object, name: str = "shape") -> tuple[int, ...]:
    """A lattice shape ``(s1, s2)`` or ``(s1, s2, s3)`` of positive ints, else ``TypeError``/``ValueError`` naming
    ``name`` (non-integer sizes such as ``2.5`` are refused, not truncated)."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Iterable):
        raise TypeError(
            f"{name} must be a tuple of ints (s1, s2) or (s1, s2, s3), got {type(shape).__name__} {shape!r}"
        )
    sizes = tuple(shape)
    try:
        sizes = tuple(as_int(s, name) for s in sizes)
    except TypeError:
        raise TypeError(f"{name} must hold ints (s1, s2) or (s1, s2, s3), got {sizes!r}") from None
    if len(sizes) not in (2, 3) or min(sizes) < 1:
        raise ValueError(f"{name} must be (s1, s2) or (s1, s2, s3) with positive sizes, got {sizes}")
    return sizes


def as_spacing(spacing: object, name: str = "spacing") -> float:
    """A positive finite lattice spacing as a ``float``, else ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(spacing, (bool, np.bool_)) or not isinstance(spacing, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(spacing).__name__} {spacing!r}")
    if not math.isfinite(spacing) or not spacing > 0:
        raise ValueError(f"{name} must be positive and finite, got {spacing}")
    return float(spacing)


def check_dtype(dtype: object) -> torch.dtype:
    """Raise ``TypeError`` unless ``dtype`` is ``torch.float32`` or ``torch.float64``."""
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype
