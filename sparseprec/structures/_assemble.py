"""Assembling CSR precisions from fixed index pairs and differentiable, possibly batched, values.

Every builder of :mod:`sparseprec.structures` knows its pattern in advance (it depends on the graph or the grid, not on
the hyper-parameters) and computes the values as a differentiable function of the hyper-parameters. :class:`Pattern`
merges the index pairs once with :class:`sparseprec.pattern.Assembly` (duplicates summed); :meth:`Pattern.matrix` then
only sums the values into the merged entries, so gradients reach ``rho``, ``tau``, ``kappa`` ... through plain torch ops
and :func:`sparseprec.sparse_csr_tensor`'s O(nnz) backward.

Batched hyper-parameters
------------------------
:func:`hyper_parameters` converts, checks and broadcasts the hyper-parameters of a builder in one place: they broadcast
together (torch's rules) to a ``batch_shape``, and the builder's values have shape ``(*batch_shape, n_pairs)``. The
result is then one CSR tensor ``(*batch_shape, n, n)`` whose index tensors are the shared pattern *expanded* (no copy)
and whose values are ``(*batch_shape, nnz)``. 0-D hyper-parameters give the plain ``(n, n)`` matrix.
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
from ..pattern import Assembly

__all__ = [
    "Pattern",
    "as_parameter",
    "hyper_parameters",
    "check_positive",
    "check_correlation",
    "as_int",
    "as_grid_shape",
    "check_dtype",
    "as_positive_float",
]


class Pattern(Assembly):
    """The sorted, merged pattern of ``(rows, cols)`` pairs of an ``(n, n)`` matrix, and its CSR matrices.

    An :class:`sparseprec.pattern.Assembly` of a square matrix (``.row``, ``.col``, ``.crow``, ``.inverse``,
    ``.nnz``, ``.sum``) that also builds the matrix from values given per input pair (:meth:`matrix`) or per merged
    entry (:meth:`merged_matrix`), unbatched or batched.

    Parameters
    ----------
    rows, cols : numpy.ndarray or torch.Tensor
        Entry positions (int), duplicates allowed (their values are summed).
    n : int
        Matrix size.
    """

    def __init__(self, rows: np.ndarray | torch.Tensor, cols: np.ndarray | torch.Tensor, n: int):
        super().__init__(rows, cols, n, n)
        self.n = n

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        """The CSR matrix ``(*batch, n, n)`` with ``values`` ``(*batch, n_pairs)`` (one per input pair, in input order)
        summed into the merged pattern."""
        return self.merged_matrix(self.sum(values))

    def merged_matrix(self, merged: torch.Tensor) -> torch.Tensor:
        """The CSR matrix ``(*batch, n, n)`` with values ``(*batch, nnz)`` already in the merged (sorted) order.

        The index tensors of a batched result are the shared pattern expanded over the batch (views, no copy); the
        matrix is built by :func:`sparseprec.sparse_csr_tensor` (O(nnz) backward; the ops of :mod:`sparseprec.ops`
        take it with no or one batch dimension).
        """
        crow, col = self.on(merged.device)[:2]
        batch = tuple(merged.shape[:-1])
        size = (*batch, self.n, self.n)
        merged = merged.contiguous()
        return sparse_csr_tensor(crow.expand(*batch, -1), col.expand(*batch, -1), merged, size)


def as_parameter(x: float | torch.Tensor, name: str, dtype: torch.dtype, device: torch.device | None) -> torch.Tensor:
    """A hyper-parameter (a number, or a real tensor of any shape) as a tensor of ``dtype``, kept differentiable.

    ``TypeError`` for a bool, a complex number or tensor, or a non-number; an integer tensor is converted to
    ``dtype``."""
    if isinstance(x, torch.Tensor):
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"{name} must be a float or a real floating tensor, got a {x.dtype} tensor")
        return x.to(dtype)
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
        raise TypeError(f"{name} must be a float or a tensor, got {type(x).__name__}")
    return torch.tensor(float(x), dtype=dtype, device=device)


def hyper_parameters(
    dtype: torch.dtype | None,
    *,
    positive: Iterable[str] = (),
    correlation: Iterable[str] = (),
    **values: float | torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """A builder's hyper-parameters (in the order given) converted, checked and broadcast together.

    The one place where hyper-parameters are turned into tensors: numbers and tensors of any shape become tensors of
    one dtype on one device, those named in ``positive`` are checked by :func:`check_positive` and those in
    ``correlation`` by :func:`check_correlation` (each on its own shape, so an error names the argument's own index),
    and all are broadcast together with torch's rules to one ``batch_shape`` (views: the gradient of an expanded
    parameter sums over the batch, as it should).

    ``dtype=None``: the floating dtype of the tensor parameters, which must agree (float64 when all are numbers); a
    given ``dtype`` converts tensor parameters to it (differentiably, as ``Tensor.to``). Never a silent mixture: two
    tensor parameters of different dtypes without ``dtype`` are a ``TypeError``, on different devices a
    ``ValueError``; shapes that do not broadcast are a ``ValueError`` naming them.
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
    converted = {name: as_parameter(x, name, dtype, device) for name, x in values.items()}
    check_positive(**{name: converted[name] for name in positive})
    check_correlation(**{name: converted[name] for name in correlation})
    try:
        return tuple(torch.broadcast_tensors(*converted.values()))
    except RuntimeError:
        found = ", ".join(f"{name} {tuple(x.shape)}" for name, x in converted.items())
        raise ValueError(f"the hyper-parameters' shapes do not broadcast together ({found})") from None


def _first_offending(name: str, value: torch.Tensor, bad: torch.Tensor) -> str | None:
    """``"-1.0"`` (0-D) or ``"tau[1, 2] = -1.0"``: the first entry of ``value`` where ``bad`` holds, else ``None``."""
    if not bool(bad.any()):
        return None
    index = tuple(int(i) for i in torch.nonzero(bad)[0])
    number = str(value.detach()[index].cpu().numpy())  # NumPy prints a float32 as 1.2, not 1.2000000476837158
    return number if value.dim() == 0 else f"{name}[{', '.join(map(str, index))}] = {number}"


def check_positive(**parameters: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every entry of every given tensor is positive and finite (NaN and ±inf refused).

    The one check of the builders' scale and precision parameters (``tau``, ``kappa``): a non-positive ``tau`` would
    return a negative or zero "precision", a non-finite one a matrix of NaN/inf. The message names the parameter and,
    for a batch, the first offending index::

        tau must be positive and finite, got -1.0
        tau must be positive and finite, got tau[1, 2] = -1.0
    """
    for name, value in parameters.items():
        found = _first_offending(name, value, ~(torch.isfinite(value.detach()) & (value.detach() > 0)))
        if found is not None:
            raise ValueError(f"{name} must be positive and finite, got {found}")


def check_correlation(**parameters: torch.Tensor) -> None:
    """Raise ``ValueError`` unless every entry of every given tensor satisfies ``|x| < 1`` (NaN refused): the
    correlation parameters (``rho``) of the stationary and proper models. Messages as :func:`check_positive`'s::

        rho must satisfy |rho| < 1, got rho[3] = 1.0
    """
    for name, value in parameters.items():
        found = _first_offending(name, value, ~(value.detach().abs() < 1))
        if found is not None:
            raise ValueError(f"{name} must satisfy |{name}| < 1, got {found}")


def as_int(value: object, name: str, minimum: int | None = None, hint: str = "") -> int:
    """``value`` as a Python ``int`` if it is an integer (``int``, NumPy integer, 0-D integer tensor), else
    ``TypeError`` naming ``name``: a float such as ``2.5`` (or ``3.0``) or a bool is never truncated or taken as 1.

    With ``minimum``, a smaller value is a ``ValueError`` ("n must be a positive int", "... an int >= 2", with the
    ``hint`` in parentheses): the one check of sizes and counts."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{name} must be an int, got a bool ({value!r})")
    try:
        out = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
    if minimum is not None and out < minimum:
        kind = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
        raise ValueError(f"{name} must be {kind}{f' ({hint})' if hint else ''}, got {out}")
    return out


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


def as_positive_float(value: object, name: str) -> float:
    """A positive finite real number as a ``float``, else ``TypeError``/``ValueError`` naming ``name``: the one check
    of real settings such as a lattice spacing."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or not value > 0:
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return float(value)


def check_dtype(dtype: object) -> torch.dtype:
    """Raise ``TypeError`` unless ``dtype`` is ``torch.float32`` or ``torch.float64``."""
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype
