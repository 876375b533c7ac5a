"""Fused passes over ``(n, k)`` blocks: column inner products computed while the rows are still in cache.

A Krylov iteration on a block of ``k`` right-hand sides is bound by memory traffic, not arithmetic: every update
``Y += α X`` and every column inner product ``Σ_i X_ij Y_ij`` streams whole ``n × k`` blocks through memory. Done one
torch call at a time, an inner product of row-major columns writes the products to a scratch block and reads them
back (four passes over ``n × k`` memory), and the inner product that follows an update reads the block the update has
just written. On a CPU the passes here walk the rows in chunks of about :data:`CHUNK_ELEMENTS` entries, so that the
scratch products and the block just updated are read from cache: an inner product costs its two reads, an update
followed by its inner product costs the update alone. A single column uses BLAS ``dot`` (no scratch at all). On other
devices one chunk covers the block (the kernels there are not cache-bound, and every call is a launch).

The sums are exact reorderings of the same terms (per chunk, then over the chunks), so the results agree with the
unchunked ones to rounding.
"""

from __future__ import annotations

import torch

__all__ = ["BlockPasses", "CHUNK_ELEMENTS"]

#: entries of an ``(n, k)`` block per chunk on a CPU: 2 MiB in float64, so that the few chunk slices a pass touches
#: (scratch included) stay in a core's share of the last-level cache
CHUNK_ELEMENTS = 1 << 18


class BlockPasses:
    """Chunked passes over ``(n, k)`` row-major blocks like ``like`` (scratch allocated once, reused every call).

    Parameters
    ----------
    like : torch.Tensor
        A contiguous ``(n, k)`` block: its shape, dtype and device.
    products : int
        How many inner products a single pass may return (the rows of the ``(products, chunks, k)`` partial sums).
    """

    def __init__(self, like: torch.Tensor, products: int = 2):
        n, k = like.shape
        self.n, self.k = n, k
        if like.device.type == "cpu" and n * k > CHUNK_ELEMENTS:
            rows = max(1, CHUNK_ELEMENTS // max(k, 1))
        else:
            rows = max(n, 1)
        self.bounds = [(start, min(start + rows, n)) for start in range(0, n, rows)] or [(0, 0)]
        self.single = len(self.bounds) == 1
        self.vector = k == 1
        # scratch for the products of one chunk (none needed for single columns: BLAS dot reads without writing)
        self.work = None if self.vector else like.new_empty(min(rows, n), k)
        self.parts = like.new_empty(products, len(self.bounds), k)

    def _dot_into(self, X: torch.Tensor, Y: torch.Tensor, out: torch.Tensor) -> None:
        # Σ_i X_ij Y_ij of one chunk into out (k,)
        if self.vector:
            torch.dot(X.view(-1), Y.view(-1), out=out.view(()))
        else:
            torch.sum(torch.mul(X, Y, out=self.work[: X.shape[0]]), 0, out=out)

    def _dot(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        # Σ_i X_ij Y_ij of a whole block in one chunk, a new (k,) tensor
        if self.vector:
            return torch.dot(X.view(-1), Y.view(-1)).view(1)
        return torch.mul(X, Y, out=self.work).sum(0)

    def dot(self, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
        """Column inner products ``Σ_i X_ij Y_ij``, shape ``(k,)``."""
        if self.single:
            return self._dot(X, Y)
        for c, (a, b) in enumerate(self.bounds):
            self._dot_into(X[a:b], Y[a:b], self.parts[0, c])
        return self.parts[0].sum(0)

    def dots(self, R: torch.Tensor, Z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Σ_i R_ij Z_ij, Σ_i R_ij²)`` in one pass over ``R`` (``Z`` read alongside)."""
        if self.single:
            return self._dot(R, Z), self._dot(R, R)
        for c, (a, b) in enumerate(self.bounds):
            r = R[a:b]
            self._dot_into(r, Z[a:b], self.parts[0, c])
            self._dot_into(r, r, self.parts[1, c])
        return self.parts[0].sum(0), self.parts[1].sum(0)

    def step(
        self, X: torch.Tensor, P: torch.Tensor, R: torch.Tensor, Q: torch.Tensor, alpha: torch.Tensor, square: bool
    ) -> torch.Tensor | None:
        """``X += P diag(α)``, ``R −= Q diag(α)`` in one pass; with ``square``, return the new column sums of squares
        ``Σ_i R_ij²``, computed while each chunk of ``R`` is in cache."""
        if self.single:
            X.addcmul_(P, alpha)
            R.addcmul_(Q, alpha, value=-1.0)
            return self._dot(R, R) if square else None
        for c, (a, b) in enumerate(self.bounds):
            X[a:b].addcmul_(P[a:b], alpha)
            r = R[a:b]
            r.addcmul_(Q[a:b], alpha, value=-1.0)
            if square:
                self._dot_into(r, r, self.parts[0, c])
        return self.parts[0].sum(0) if square else None
