r"""Sparsity patterns of Cholesky-like factors for image and volume models with channels.

A Gaussian image model :math:`x \sim N(\mu, Q^{-1})` on a volume of ``C`` channels and spatial shape
:math:`(s_1, \dots, s_d)` whose precision is written :math:`Q = L L^\top` with a sparse lower triangular :math:`L`
that couples each pixel only to the pixels within a small neighbourhood: :func:`image_factor_pattern` builds the
pattern of such an :math:`L` (which entries may be non-zero); the values are then learned, e.g. by maximum likelihood
through :class:`sparseprec.distributions.SparseMultivariateNormal` (``precision_tril=`` or ``scale_tril=``).

The variables are numbered as the entries of a ``(C, *shape)`` tensor in row-major (C) order, channel first:
pixel :math:`(c, p_1, \dots, p_d)` is variable :math:`c \prod_k s_k + \mathrm{ravel}(p)`, so ``x.reshape(C, *shape)``
is the image. An *offset* :math:`o = (o_c, o_1, \dots, o_d)` (channel offset first) stands for every entry
:math:`(i, j)` whose row pixel is the column pixel moved by :math:`o`, when both lie inside the volume (no wrap
around, no padding: the neighbourhood is trimmed at the edges).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._validation import check_dense, check_flag, check_tensor
from ..ops import sparse_coo_tensor, sparse_csr_tensor
from ..pattern import Assembly
from ._assemble import as_int

__all__ = ["ImageFactorPattern", "image_factor_pattern", "image_offsets"]

_RELATIONS = {"independent": "independent", "indep": "independent", "intra": "intra", "inter": "inter"}
_TRIANGLES = ("lower", "upper", None)
_INT32_MAX = 2**31 - 1


def _as_image_shape(shape: object) -> tuple[int, ...]:
    """The spatial shape as a tuple of one or more positive ints, else ``TypeError``/``ValueError`` naming it."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, torch.Size, np.ndarray)):
        raise TypeError(f"shape must be a tuple of positive ints (s1, ..., sd), got {type(shape).__name__} {shape!r}")
    try:
        sizes = tuple(as_int(s, "shape") for s in shape)
    except TypeError:
        raise TypeError(f"shape must hold ints (s1, ..., sd), got {tuple(shape)!r}") from None
    if len(sizes) == 0 or min(sizes) < 1:
        raise ValueError(f"shape must hold one or more positive sizes (s1, ..., sd), got {sizes}")
    return sizes


def _as_relation(relation: object) -> str:
    if not isinstance(relation, str) or relation not in _RELATIONS:
        raise ValueError(
            f"relation must be 'independent' (or 'indep'), 'intra' or 'inter', got {relation!r}"
        )  # fmt: skip
    return _RELATIONS[relation]


def _as_triangle(triangle: object) -> str | None:
    if not (triangle is None or isinstance(triangle, str)) or triangle not in _TRIANGLES:
        raise ValueError(f"triangle must be 'lower', 'upper' or None (both triangles), got {triangle!r}")
    return triangle


def _as_radius(radius: object) -> float:
    if isinstance(radius, (bool, np.bool_)) or not isinstance(radius, numbers.Real):
        raise TypeError(f"radius must be a real number, got {type(radius).__name__} {radius!r}")
    if not math.isfinite(radius) or radius < 0:
        raise ValueError(f"radius must be finite and >= 0, got {radius}")
    return float(radius)


def _first_nonzero_sign(offset: tuple[int, ...]) -> int:
    """+1 / -1: the sign of the first non-zero component (0 for the zero offset)."""
    for o in offset:
        if o != 0:
            return 1 if o > 0 else -1
    return 0


def _in_triangle(offset: tuple[int, ...], triangle: str | None) -> bool:
    sign = _first_nonzero_sign(offset)
    return triangle is None or sign == (1 if triangle == "lower" else -1)


def _norm2(s: Sequence[int]) -> int:
    return sum(x * x for x in s)


def _offset_order(offset: tuple[int, ...]) -> tuple:
    """Sort key of the generated offsets: squared length with the channel step weighted 10 (so spatial steps of a
    radius below 10 come before channel steps), then the absolute values, then negative components first. The order
    of torchsparsegradutils' ``PairwiseEncoder.offsets``, so per-offset value maps carry over unchanged."""
    c, *s = offset
    return (100 * c * c + _norm2(s), tuple(abs(x) for x in offset), tuple(x >= 0 for x in offset))


def image_offsets(
    ndim: int,
    channels: int = 1,
    *,
    radius: float = 1.0,
    relation: str = "independent",
    triangle: str | None = "lower",
) -> list[tuple[int, ...]]:
    r"""The off-diagonal offsets ``(channel, *spatial)`` of a neighbourhood of radius ``radius``, in canonical order.

    The spatial neighbourhood is the set of non-zero integer vectors :math:`s \in \mathbb{Z}^d` with
    :math:`\lVert s \rVert_2 \le r` (up to a relative :math:`10^{-12}` on :math:`r^2`, so that ``math.sqrt(3)``
    includes the corners at distance :math:`\sqrt 3`). With :math:`k` running over the channel steps
    :math:`\pm 1, \dots, \pm(C-1)`:

    - ``"independent"`` (``"indep"``): :math:`(0, s)`, no coupling between channels;
    - ``"intra"``: also :math:`(k, 0)`, the channels of one pixel coupled with each other;
    - ``"inter"``: also :math:`(k, s)`, every channel of a pixel with every channel of its neighbours.

    ``triangle="lower"`` keeps the offsets whose first non-zero component is positive (their entries lie below the
    diagonal: row > column), ``"upper"`` those whose first non-zero component is negative (the transposed pattern),
    ``None`` both. Ordered by :math:`100\,o_c^2 + \lVert s \rVert^2`, then by absolute values, negative first.

    Parameters
    ----------
    ndim : int
        Number of spatial dimensions ``d >= 1``.
    channels : int
        ``C >= 1``; ``"intra"`` and ``"inter"`` need ``C >= 2``.
    radius : float
        Neighbourhood radius ``r >= 0`` (below 1: no spatial offsets).
    relation : {"independent", "indep", "intra", "inter"}
        Channel relation.
    triangle : {"lower", "upper", None}
        Which half of the neighbourhood.

    Returns
    -------
    list of tuple of int
        Offsets of length ``1 + ndim``, the zero offset (the diagonal) excluded.

    Raises
    ------
    TypeError
        Non-integer ``ndim``/``channels``, non-real ``radius``.
    ValueError
        ``ndim < 1``, ``channels < 1``, ``radius < 0`` or not finite, an unknown ``relation`` or ``triangle``,
        ``"intra"``/``"inter"`` with one channel.

    Examples
    --------
    >>> from sparseprec.structures.image_factor import image_offsets
    >>> image_offsets(2, radius=1.5)
    [(0, 0, 1), (0, 1, 0), (0, 1, -1), (0, 1, 1)]
    >>> image_offsets(1, channels=2, relation="intra", triangle=None)
    [(0, -1), (0, 1), (-1, 0), (1, 0)]
    """
    ndim = as_int(ndim, "ndim", minimum=1)
    channels = as_int(channels, "channels", minimum=1)
    radius = _as_radius(radius)
    relation = _as_relation(relation)
    triangle = _as_triangle(triangle)
    if channels == 1 and relation != "independent":
        raise ValueError(
            f"relation {relation!r} couples channels and needs channels >= 2, got channels=1 "
            "(use relation='independent')"
        )
    reach = math.floor(radius)
    # the squares are integers: a radius such as math.sqrt(3), whose square rounds to 2.9999999999999996, includes
    # the points at distance exactly sqrt(3)
    reach2 = radius**2 * (1 + 1e-12)
    spatial = [s for s in itertools.product(range(-reach, reach + 1), repeat=ndim) if any(s) and _norm2(s) <= reach2]
    steps = [k for k in range(-(channels - 1), channels) if k != 0]
    offsets = [(0, *s) for s in spatial]
    if relation in ("intra", "inter"):
        offsets += [(k,) + (0,) * ndim for k in steps]
    if relation == "inter":
        offsets += [(k, *s) for k in steps for s in spatial]
    return sorted((o for o in offsets if _in_triangle(o, triangle)), key=_offset_order)


def _as_offsets(offsets: object, ndim: int) -> list[tuple[int, ...]]:
    """Explicit offsets as a list of distinct non-zero int tuples of length ``1 + ndim``."""
    if isinstance(offsets, (str, bytes)) or not isinstance(offsets, Sequence):
        raise TypeError(f"offsets must be a sequence of int tuples (channel, *spatial), got {type(offsets).__name__}")
    out = []
    for k, offset in enumerate(offsets):
        if isinstance(offset, (str, bytes)) or not isinstance(offset, Sequence):
            raise TypeError(f"offsets[{k}] must be a tuple of ints (channel, *spatial), got {offset!r}")
        if len(offset) != 1 + ndim:
            raise ValueError(
                f"offsets[{k}] must have length 1 + len(shape) = {1 + ndim} (channel, *spatial), got {tuple(offset)!r}"
            )
        try:
            offset = tuple(as_int(o, f"offsets[{k}]") for o in offset)
        except TypeError:
            raise TypeError(f"offsets[{k}] must hold ints, got {tuple(offset)!r}") from None
        if not any(offset):
            raise ValueError(f"offsets[{k}] is the zero offset: the diagonal is chosen by diagonal=True, not an offset")
        out.append(offset)
    if len(set(out)) != len(out):
        twice = next(o for o in out if out.count(o) > 1)
        raise ValueError(f"offsets must be distinct, got {twice} twice")
    return out


@dataclass(frozen=True, repr=False, eq=False)
class ImageFactorPattern:
    r"""The sparsity pattern of a factor over a ``(channels, *shape)`` volume, built by :func:`image_factor_pattern`.

    Every stored entry :math:`e = (i_e, j_e)` belongs to exactly one offset :math:`o_{k_e}`: the row pixel is the
    column pixel moved by it. Values can therefore be given per entry (``(nnz,)``, in the stored order), per offset
    (a stationary model, :math:`v_e = \theta_{k_e}`: :meth:`values_from_offsets`) or as one value map per offset
    (:math:`v_e = M_{k_e}[\text{row pixel of } e]`: :meth:`values_from_maps`, the convention of
    torchsparsegradutils' ``PairwiseEncoder``).

    Attributes
    ----------
    shape : tuple of int
        Spatial shape ``(s1, ..., sd)``.
    channels : int
        ``C``; the matrix is ``(n, n)`` with ``n = C * prod(shape)``.
    offsets : tuple of tuple of int
        The offsets ``(channel, *spatial)``, the zero offset (the diagonal) first when the diagonal is stored.
    layout : torch.layout
        ``torch.sparse_csr`` or ``torch.sparse_coo``.
    crow_indices, col_indices : torch.Tensor or None
        CSR: row pointers ``(n + 1,)`` and column indices ``(nnz,)`` (sorted within rows); ``None`` for COO.
    indices : torch.Tensor or None
        COO: ``(2, nnz)`` row-major sorted, unique (coalesced); ``None`` for CSR.
    offset_index : torch.Tensor
        int64 ``(nnz,)``: for each stored entry, the position of its offset in :attr:`offsets`.
    diagonal_mask : torch.Tensor
        bool ``(nnz,)``: which stored entries are on the diagonal.
    map_index : torch.Tensor
        int64 ``(nnz,)``: for each stored entry, its position in a flattened ``(len(offsets), C, *shape)`` value map
        (``offset_index * n + row``).

    Examples
    --------
    >>> import torch
    >>> from sparseprec.structures.image_factor import image_factor_pattern
    >>> p = image_factor_pattern((4,), radius=1.0)
    >>> p.offsets, p.nnz
    (((0, 0), (0, 1)), 7)
    >>> p.matrix(p.values_from_offsets(torch.tensor([2.0, -1.0]))).to_dense()
    tensor([[ 2.,  0.,  0.,  0.],
            [-1.,  2.,  0.,  0.],
            [ 0., -1.,  2.,  0.],
            [ 0.,  0., -1.,  2.]])
    """

    shape: tuple[int, ...]
    channels: int
    offsets: tuple[tuple[int, ...], ...]
    layout: torch.layout
    crow_indices: torch.Tensor | None
    col_indices: torch.Tensor | None
    indices: torch.Tensor | None
    offset_index: torch.Tensor
    diagonal_mask: torch.Tensor
    map_index: torch.Tensor

    @property
    def n(self) -> int:
        """Matrix size ``C * prod(shape)``."""
        return self.channels * math.prod(self.shape)

    @property
    def size(self) -> tuple[int, int]:
        """``(n, n)``."""
        return (self.n, self.n)

    @property
    def nnz(self) -> int:
        """Number of stored entries."""
        return self.offset_index.numel()

    @property
    def num_offsets(self) -> int:
        """``len(offsets)`` (the diagonal included when stored)."""
        return len(self.offsets)

    @property
    def device(self) -> torch.device:
        """Device of the index tensors."""
        return self.offset_index.device

    @property
    def index_dtype(self) -> torch.dtype:
        """dtype of the index tensors (``crow_indices``/``col_indices`` or ``indices``)."""
        return (self.indices if self.layout == torch.sparse_coo else self.col_indices).dtype

    def __repr__(self) -> str:
        return (
            f"ImageFactorPattern(shape={self.shape}, channels={self.channels}, num_offsets={self.num_offsets}, "
            f"nnz={self.nnz}, layout={self.layout}, index_dtype={self.index_dtype}, device={self.device})"
        )

    def to(self, device: torch.device | str) -> ImageFactorPattern:
        """The same pattern with its index tensors on ``device``."""
        device = torch.device(device)

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return ImageFactorPattern(
            self.shape, self.channels, self.offsets, self.layout, move(self.crow_indices), move(self.col_indices),
            move(self.indices), move(self.offset_index), move(self.diagonal_mask), move(self.map_index),
        )  # fmt: skip

    def _check_values(self, values: object, name: str) -> torch.Tensor:
        check_tensor(values, name)
        if values.device != self.device:
            raise ValueError(
                f"{name} must be on the pattern's device {self.device}, got {values.device} (use pattern.to(device))"
            )
        return values

    def matrix(self, values: torch.Tensor) -> torch.Tensor:
        r"""The sparse ``(n, n)`` (or CSR ``(*batch, n, n)``) matrix with ``values`` at the stored entries.

        Built by :func:`sparseprec.sparse_csr_tensor` / :func:`sparseprec.sparse_coo_tensor`: differentiable w.r.t.
        ``values`` with an O(nnz) backward, :math:`\partial \ell / \partial v_e = \bar A_{i_e j_e}` (the gradient
        only at the stored entries).

        Parameters
        ----------
        values : torch.Tensor
            float32/float64, ``(nnz,)`` in the stored order; CSR also ``(*batch, nnz)`` (batched CSR on the shared
            pattern, index tensors expanded without copy).

        Raises
        ------
        TypeError
            ``values`` not a dense floating tensor.
        ValueError
            Last dimension not ``nnz``, a batch with the COO layout, another device than the pattern's.
        """
        values = self._check_values(values, "values")
        if self.layout == torch.sparse_coo:
            check_dense(values, "values", dims=(1,))
        else:
            check_dense(values, "values", dims=tuple(range(1, values.dim() + 2)))
        if values.shape[-1] != self.nnz:
            raise ValueError(
                f"values must have shape (*batch, nnz) with nnz = {self.nnz}, got {tuple(values.shape)}"
            )  # fmt: skip
        if self.layout == torch.sparse_coo:
            return sparse_coo_tensor(self.indices, values, self.size, is_coalesced=True)
        batch = tuple(values.shape[:-1])
        crow = self.crow_indices.expand(*batch, -1)
        col = self.col_indices.expand(*batch, -1)
        return sparse_csr_tensor(crow, col, values.contiguous(), (*batch, *self.size))

    def values_from_offsets(self, theta: torch.Tensor) -> torch.Tensor:
        r"""Stationary values: :math:`v_e = \theta_{k_e}`, one value per offset, ``(*batch, num_offsets)`` to
        ``(*batch, nnz)`` (differentiable; batch dimensions kept)."""
        theta = self._check_values(theta, "theta")
        if theta.dim() == 0 or theta.shape[-1] != self.num_offsets:
            raise ValueError(
                f"theta must have shape (*batch, num_offsets) with num_offsets = {self.num_offsets}, got "
                f"{tuple(theta.shape)}"
            )
        return theta[..., self.offset_index]

    def values_from_maps(self, maps: torch.Tensor) -> torch.Tensor:
        r"""Values from one map per offset: :math:`v_e = M_{k_e}[c_i, p_i]`, the map of the entry's offset read at
        the entry's *row* pixel :math:`(c_i, p_i)` (the pixel the offset points to; parts of a map that no entry
        reads, near the edges, are ignored). ``(*batch, num_offsets, C, *shape)`` to ``(*batch, nnz)``.

        Raises
        ------
        ValueError
            ``maps`` whose trailing dimensions are not ``(num_offsets, C, *shape)``.
        """
        maps = self._check_values(maps, "maps")
        trailing = (self.num_offsets, self.channels, *self.shape)
        if maps.dim() < len(trailing) or tuple(maps.shape[-len(trailing) :]) != trailing:
            raise ValueError(f"maps must have shape (*batch, {', '.join(map(str, trailing))}), got {tuple(maps.shape)}")
        batch = tuple(maps.shape[: -len(trailing)])
        return maps.reshape(*batch, -1)[..., self.map_index]


def image_factor_pattern(
    shape: Sequence[int],
    channels: int = 1,
    *,
    radius: float | None = None,
    offsets: Sequence[Sequence[int]] | None = None,
    relation: str = "independent",
    triangle: str | None = "lower",
    diagonal: bool = True,
    layout: torch.layout = torch.sparse_csr,
    index_dtype: torch.dtype = torch.int64,
    device: torch.device | str | None = None,
) -> ImageFactorPattern:
    r"""The pattern of a sparse (Cholesky-like) factor of an image or volume model: each pixel coupled to its
    neighbours within a radius, across channels as ``relation`` says, in one triangle.

    The matrix is :math:`n \times n`, :math:`n = C \prod_k s_k`, with the variables numbered as a ``(C, *shape)``
    tensor in row-major order. For each offset :math:`o = (o_c, o_1, \dots, o_d)` (from :func:`image_offsets`, or
    given) the pattern holds every entry :math:`(i, j)` with :math:`\mathrm{pix}(i) = \mathrm{pix}(j) + o` where both
    pixels lie in the volume (trimmed at the edges, no wrap); ``diagonal=True`` adds :math:`(i, i)` for every
    :math:`i`. An offset whose first non-zero component is positive gives entries with :math:`i > j` (below the
    diagonal), so ``triangle="lower"`` with ``diagonal=True`` is the pattern of a lower triangular factor :math:`L`.

    For a precision model :math:`x \sim N(\mu, (L L^\top)^{-1})`, with :math:`L` filled with a positive diagonal,

    .. math::

        \log p(x) = \sum_i \log L_{ii} - \tfrac12 \lVert L^\top (x - \mu) \rVert^2 - \tfrac n2 \log 2\pi,

    which :class:`sparseprec.distributions.SparseMultivariateNormal` computes with ``precision_tril=pattern.matrix(v)``
    (``diagonal=False`` gives the strictly lower part for its :math:`LDL^\top` form, ``diagonal=d``).

    Parameters
    ----------
    shape : sequence of int
        Spatial shape ``(s1, ..., sd)``, ``d >= 1``.
    channels : int
        Number of channels ``C``.
    radius : float, optional
        Neighbourhood radius ``r >= 0`` (default 1: the axis neighbours); not together with ``offsets``.
    offsets : sequence of tuple of int, optional
        Explicit offsets ``(channel, *spatial)``, distinct and non-zero, used as given (in this order; an offset
        reaching outside the volume gives no entries). Each must lie in ``triangle`` (checked, never dropped).
        ``radius`` and ``relation`` must then be left at their defaults.
    relation : {"independent", "indep", "intra", "inter"}
        Channel relation (see :func:`image_offsets`); ``"indep"`` is torchsparsegradutils' spelling of
        ``"independent"``. ``"intra"``/``"inter"`` with one channel are an error.
    triangle : {"lower", "upper", None}
        Keep the offsets in the lower triangle (row > column), the upper one (their transposes), or both.
    diagonal : bool
        Store the diagonal (the zero offset, first in :attr:`ImageFactorPattern.offsets`).
    layout : torch.layout
        ``torch.sparse_csr`` (sorted CSR) or ``torch.sparse_coo`` (coalesced COO).
    index_dtype : torch.dtype
        ``torch.int64`` or ``torch.int32`` (only when ``n`` and ``nnz`` fit in int32).
    device : torch.device or str, optional
        Device of the index tensors (default CPU); built there, vectorised (one pass per offset).

    Returns
    -------
    ImageFactorPattern

    Raises
    ------
    TypeError
        Non-integer sizes or offsets, non-real ``radius``, a non-bool ``diagonal``, an unsupported ``layout`` or
        ``index_dtype``.
    ValueError
        ``shape`` empty or with a size below 1, ``channels < 1``, ``radius < 0``, both ``radius`` and ``offsets``,
        an offset of the wrong length, zero, repeated or outside ``triangle``, an unknown ``relation`` or
        ``triangle``, ``"intra"``/``"inter"`` with one channel, ``index_dtype=torch.int32`` with ``n`` or ``nnz``
        above :math:`2^{31} - 1`.

    Notes
    -----
    torchsparsegradutils' ``PairwiseEncoder(radius, (C, *shape), diag, upper, channel_voxel_relation, layout,
    indices_dtype)`` builds the same index set as ``image_factor_pattern(shape, C, radius=radius,
    relation=channel_voxel_relation, triangle=..., diagonal=diag, ...)`` with ``upper=False`` ↔ ``"lower"`` for every
    relation, and ``upper=True`` ↔ ``"upper"``, ``upper=None`` ↔ ``None`` for ``"indep"``. Deliberate differences:
    its ``"intra"``/``"inter"`` channel offsets only step up in channel (:math:`o_c > 0`), so its ``upper=None`` holds
    only the lower channel couplings and its ``upper=True`` none at all; here ``"upper"`` is the transpose of
    ``"lower"`` and ``None`` their union. Its radius must be >= 1; here any ``radius >= 0`` (below 1: only the
    diagonal and channel couplings), and a radius such as ``math.sqrt(2)`` keeps the points at exactly that distance
    (there a square that rounds down may drop them). Its ``diag`` defaults to ``False``; here ``diagonal=True`` (a
    factor). Its exact set is always available through ``offsets=[o for o in encoder.offsets if any(o)],
    triangle=None``.

    Examples
    --------
    >>> from sparseprec.structures.image_factor import image_factor_pattern
    >>> p = image_factor_pattern((3, 3), radius=1.0)
    >>> p.size, p.nnz, p.layout
    ((9, 9), 21, torch.sparse_csr)
    >>> p.offsets
    ((0, 0, 0), (0, 0, 1), (0, 1, 0))
    >>> image_factor_pattern((8, 8), 3, radius=1.5, relation="inter").num_offsets
    23
    """
    shape = _as_image_shape(shape)
    channels = as_int(channels, "channels", minimum=1)
    relation = _as_relation(relation)
    triangle = _as_triangle(triangle)
    diagonal = check_flag(diagonal, "diagonal")
    if layout not in (torch.sparse_csr, torch.sparse_coo):
        raise TypeError(f"layout must be torch.sparse_csr or torch.sparse_coo, got {layout!r}")
    if index_dtype not in (torch.int32, torch.int64):
        raise TypeError(f"index_dtype must be torch.int32 or torch.int64, got {index_dtype!r}")
    device = torch.device("cpu") if device is None else torch.device(device)
    if offsets is None:
        offset_list = image_offsets(
            len(shape), channels, radius=1.0 if radius is None else radius, relation=relation, triangle=triangle
        )
    else:
        if radius is not None:
            raise ValueError("give radius or offsets, not both")
        if relation != "independent":
            raise ValueError(
                f"relation applies to radius neighbourhoods; with explicit offsets leave it, got {relation!r}"
            )
        offset_list = _as_offsets(offsets, len(shape))
        for k, o in enumerate(offset_list):
            if not _in_triangle(o, triangle):
                raise ValueError(
                    f"offsets[{k}] = {o} is not in the {triangle} triangle (its first non-zero component must be "
                    f"{'positive' if triangle == 'lower' else 'negative'}); pass triangle=None to keep it"
                )
    if diagonal:
        offset_list = [(0,) * (1 + len(shape)), *offset_list]

    volume = (channels, *shape)
    n = math.prod(volume)
    pixel = torch.arange(n, device=device).reshape(volume)
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    rows, cols, which = [empty], [empty], [empty]
    for k, offset in enumerate(offset_list):
        if any(abs(o) >= size for o, size in zip(offset, volume, strict=True)):
            continue  # reaches outside the volume: no entries
        # the entries of this offset: row pixel = column pixel + offset, both inside the volume on every axis
        to_rows = tuple(slice(max(o, 0), size + min(o, 0)) for o, size in zip(offset, volume, strict=True))
        to_cols = tuple(slice(max(-o, 0), size + min(-o, 0)) for o, size in zip(offset, volume, strict=True))
        rows.append(pixel[to_rows].reshape(-1))
        cols.append(pixel[to_cols].reshape(-1))
        which.append(torch.full((rows[-1].numel(),), k, dtype=torch.int64, device=device))
    rows, cols, which = torch.cat(rows), torch.cat(cols), torch.cat(which)
    merged = Assembly(rows, cols, n, n)  # distinct offsets never share an entry: a sort, no summing
    if index_dtype == torch.int32 and max(n, merged.nnz) > _INT32_MAX:
        raise ValueError(
            f"index_dtype=torch.int32 cannot index n = {n} and nnz = {merged.nnz} (max {_INT32_MAX}); use torch.int64"
        )
    offset_index = torch.empty_like(which)
    offset_index[merged.inverse] = which
    map_index = offset_index * n + merged.row
    if layout == torch.sparse_csr:
        crow, col, coo = merged.crow.to(index_dtype), merged.col.to(index_dtype), None
    else:
        crow, col, coo = None, None, torch.stack([merged.row, merged.col]).to(index_dtype)
    return ImageFactorPattern(
        shape=shape, channels=channels, offsets=tuple(offset_list), layout=layout, crow_indices=crow,
        col_indices=col, indices=coo, offset_index=offset_index, diagonal_mask=merged.row == merged.col,
        map_index=map_index,
    )  # fmt: skip
