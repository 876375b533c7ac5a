"""``copy.deepcopy`` for objects that hold compressed sparse tensors (CSR, CSC, BSR, BSC).

``torch.Tensor.__deepcopy__`` copies a dense tensor's storage and clones a COO tensor, but a compressed sparse tensor
has no storage of its own, so deep-copying a distribution that holds one raises ``NotImplementedError`` ("Cannot
access storage of SparseCsrTensorImpl"). :class:`SparseDeepCopy` gives a class a ``__deepcopy__`` that first puts a
copy of every such tensor of its state into ``memo`` (so ``copy.deepcopy`` finds it there, and two references to one
tensor stay one tensor in the copy), then copies the state as ``copy.deepcopy`` would, through the class's
``__getstate__``/``__setstate__`` (so what pickling drops, such as a backend's numeric factor, is dropped here too and
recomputed on demand).

A copy follows torch's rule for a leaf: the same values in new memory (index tensors, values, and a ``.grad``),
``requires_grad`` kept, no autograd history. A tensor that is not a leaf (computed from parameters that require grad,
e.g. ``car(W, rho)`` with a learnable ``rho``) is refused with torch's own error, as a dense non-leaf is.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["SparseDeepCopy", "deepcopy_compressed"]

_COMPRESSED = (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)


def deepcopy_compressed(tensor: torch.Tensor, memo: dict) -> torch.Tensor:
    """A deep copy of a compressed sparse leaf tensor (new index and value memory, ``requires_grad`` and ``.grad``
    kept), recorded in ``memo``; a non-leaf raises torch's deepcopy ``RuntimeError``."""
    if id(tensor) in memo:
        return memo[id(tensor)]
    if not tensor.is_leaf:
        return tensor.__deepcopy__(memo)  # torch's own error for a non-leaf
    with torch.no_grad():
        new = tensor.clone()
    if tensor.requires_grad:
        new.requires_grad_()
    if tensor.grad is not None:
        grad = tensor.grad
        new.grad = deepcopy_compressed(grad, memo) if grad.layout in _COMPRESSED else copy.deepcopy(grad, memo)
    memo[id(tensor)] = new
    memo.setdefault(id(memo), []).append(tensor)  # keep the original alive while memo refers to its id (as copy does)
    return new


def _register_compressed(value: Any, memo: dict, seen: set[int]) -> None:
    """Copy into ``memo`` every compressed sparse leaf tensor found in ``value`` and its lists, tuples, sets, dicts
    and ``__dict__``s (other objects are left to ``copy.deepcopy``)."""
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        if value.layout in _COMPRESSED and value.is_leaf:
            deepcopy_compressed(value, memo)
        return
    if isinstance(value, dict):
        items = list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        items = list(vars(value).values())
    else:
        return
    for item in items:
        _register_compressed(item, memo, seen)


class SparseDeepCopy:
    """Mixin: ``copy.deepcopy`` support for a class whose state holds CSR/CSC/BSR/BSC tensors (see the module).

    Examples
    --------
    >>> import copy
    >>> import torch
    >>> from sparseprec.distributions import GMRF
    >>> Q = torch.tensor([[2.0, -1.0], [-1.0, 2.0]], dtype=torch.float64).to_sparse_csr()
    >>> d = GMRF(torch.zeros(2, dtype=torch.float64), Q)
    >>> c = copy.deepcopy(d)
    >>> c.precision.values().data_ptr() != Q.values().data_ptr(), torch.equal(c.precision.to_dense(), Q.to_dense())
    (True, True)
    """

    def __deepcopy__(self, memo: dict) -> Any:
        cls = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        state = self.__getstate__()
        _register_compressed(state, memo, set())
        state = copy.deepcopy(state, memo)
        setstate = getattr(new, "__setstate__", None)
        if setstate is not None:
            setstate(state)
        else:
            new.__dict__.update(state)
        return new
