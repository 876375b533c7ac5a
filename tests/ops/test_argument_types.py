"""Arguments of the wrong type are refused, never reinterpreted: float or bool index tensors (truncated / read as
0-1), sizes that are not ints, flags that are not bools (a string or None would silently pick a branch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparseprec.ops import sparse_coo_tensor, sparse_csr_tensor, sparse_mm, sparse_triangular_solve

DT = torch.float64
V = torch.ones(2, dtype=DT)
INDEX = torch.tensor([[0, 1], [0, 1]])


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: sparse_coo_tensor(torch.tensor([[0.7, 1.9], [0.2, 1.5]]), V, (2, 2)), TypeError, "indices must"),
        (lambda: sparse_coo_tensor(INDEX.bool(), V, (2, 2)), TypeError, "indices must"),
        (lambda: sparse_csr_tensor(torch.tensor([0.0, 1, 2]), torch.tensor([0, 1]), V, (2, 2)), TypeError, "crow"),
        (lambda: sparse_coo_tensor(INDEX, V, (2.5, 3)), TypeError, "size must hold ints"),
        (lambda: sparse_coo_tensor(INDEX, V, (True, 3)), TypeError, "size must hold ints"),
        (lambda: sparse_coo_tensor(INDEX, V, 3), TypeError, "size must be a tuple"),
        (lambda: sparse_coo_tensor(INDEX, V, (-3, 3)), ValueError, "non-negative"),
        (lambda: sparse_coo_tensor(INDEX, V, (2, 2), is_coalesced="yes"), TypeError, "is_coalesced"),
        (lambda: sparse_csr_tensor(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), V, None), TypeError, "size"),
    ],
)
def test_constructors_refuse_wrong_types(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_constructors_accept_integer_sizes_of_any_kind():
    assert sparse_coo_tensor(INDEX, V, (np.int64(2), torch.tensor(2))).shape == (2, 2)
    assert sparse_csr_tensor(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), V, torch.Size([2, 2])).shape == (2, 2)


@pytest.mark.parametrize("flag", ["upper", "unitriangular", "transpose"])
@pytest.mark.parametrize("value", ["no", None, 1])
def test_triangular_flags_must_be_bools(flag, value):
    L = torch.tensor([[2.0, 0.0], [1.0, 4.0]], dtype=DT).to_sparse_csr()
    kwargs = {"upper": False, flag: value}
    with pytest.raises(TypeError, match=f"{flag} must be a bool"):
        sparse_triangular_solve(L, torch.ones(2, 1, dtype=DT), **kwargs)


def test_matmul_transpose_must_be_a_bool():
    A = torch.eye(2, dtype=DT).to_sparse_csr()
    with pytest.raises(TypeError, match="transpose must be a bool"):
        sparse_mm(A, torch.ones(2, 1, dtype=DT), transpose="yes")
    assert sparse_mm(A, torch.ones(2, 1, dtype=DT), transpose=np.bool_(True)).shape == (2, 1)
