r"""What comes back from each fit: posterior summaries per outcome (no factor, nothing ``n × n``), and the table of
all of them.

Per area, the relative risk :math:`r_i = \exp(\eta_i)` of a Gaussian (or a mixture of Gaussians over INLA's grid,
weights :math:`w_k`) marginal :math:`\eta_i \sim \sum_k w_k N(m_{ik}, s_{ik}^2)` is log-normal per component:

.. math::

    E[r_i] = \sum_k w_k e^{m_{ik} + s_{ik}^2/2}, \qquad
    E[r_i^2] = \sum_k w_k e^{2 m_{ik} + 2 s_{ik}^2}, \qquad
    P(r_i > c) = \sum_k w_k \Phi\Bigl(\frac{m_{ik} - \log c}{s_{ik}}\Bigr).

(:class:`~sparseprec.distributed.EmpiricalBayes` is the one-component case at the mode.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields

import torch

__all__ = ["OutcomeFit", "AtlasResults"]

OK, FAILED = "ok", "failed"


@dataclass
class OutcomeFit:
    r"""The posterior summaries of one outcome (all float64 CPU tensors; a few kB pickled for a few hundred areas).

    Attributes
    ----------
    index : int
        The outcome's position in the input sequence.
    name : str or None
        The outcome's label.
    status : str
        ``"ok"``, or ``"failed"``: then ``reason`` says why and every numeric field is ``None`` (never NaN).
    reason : str
        ``""``, or the failure: the exception's type and message (``ConvergenceError: ...``,
        ``NotPositiveDefiniteError: ...``), or which summary was not finite.
    theta_mode : torch.Tensor or None
        ``(2,)`` the mode of :math:`\tilde p(t \mid y)`, :math:`t = (\log\sigma, \operatorname{logit}\rho)`.
    theta_mean, theta_sd : torch.Tensor or None
        ``(2,)`` posterior mean and s.d. of :math:`t` (:class:`~sparseprec.distributed.INLA` only; ``None`` for
        empirical Bayes, which gives no uncertainty for :math:`t`).
    coefficients, coefficients_sd : torch.Tensor or None
        ``(1 + p,)`` posterior mean and s.d. of :math:`(\beta_0, \beta_1 \dots \beta_p)`.
    rr_mean, rr_sd : torch.Tensor or None
        ``(n,)`` posterior mean and s.d. of each area's relative risk :math:`r_i`.
    exceedance : torch.Tensor or None
        ``(n,)`` :math:`P(r_i > c \mid y)`, ``c`` the specification's ``threshold``.
    log_marginal_likelihood : float or None
        Empirical Bayes: :math:`\log\tilde p(y \mid \hat\theta)` (the Laplace approximation at the mode, without the
        prior); INLA: :math:`\log \int \tilde p(y \mid \theta) p(\theta)\, d\theta` by the grid (the sum over the
        points of :math:`\tilde p(y \mid \theta_k) p(\theta_k)` times the volume of one cell, :math:`dz^d
        \det(\mathcal{H})^{-1/2}`).
    laplace_evaluations : int or None
        Laplace approximations computed (each one Newton run).
    newton_iterations : int or None
        Newton iterations over all of them.
    seconds : float
        Wall time of the fit in its process (not compared by ``==``).
    """

    index: int
    name: str | None
    status: str
    reason: str = ""
    theta_mode: torch.Tensor | None = None
    theta_mean: torch.Tensor | None = None
    theta_sd: torch.Tensor | None = None
    coefficients: torch.Tensor | None = None
    coefficients_sd: torch.Tensor | None = None
    rr_mean: torch.Tensor | None = None
    rr_sd: torch.Tensor | None = None
    exceedance: torch.Tensor | None = None
    log_marginal_likelihood: float | None = None
    laplace_evaluations: int | None = None
    newton_iterations: int | None = None
    seconds: float = field(default=0.0, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def sigma(self) -> float | None:
        r""":math:`\sigma` at the mode of :math:`\tilde p(t \mid y)` (the total s.d. of the area effects)."""
        return None if self.theta_mode is None else float(self.theta_mode[0].exp())

    @property
    def rho(self) -> float | None:
        r""":math:`\rho` at the mode (the spatially structured share of the area effects' variance)."""
        return None if self.theta_mode is None else float(torch.sigmoid(self.theta_mode[1]))

    def __eq__(self, other: object) -> bool:
        """Equal when every compared field is equal exactly (tensors by ``torch.equal``: same shape, same floats)."""
        if not isinstance(other, OutcomeFit):
            return NotImplemented
        for f in fields(self):
            if not f.compare:
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
                if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)):
                    return False
            elif a != b:
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def failed(cls, index: int, name: str | None, reason: str, seconds: float = 0.0) -> OutcomeFit:
        """A result marked failed with ``reason`` (every numeric field ``None``)."""
        return cls(index=index, name=name, status=FAILED, reason=reason, seconds=seconds)


_SCALARS = ("log_marginal_likelihood", "laplace_evaluations", "newton_iterations", "seconds")


class AtlasResults(Sequence):
    """The results of :func:`~sparseprec.distributed.fit_many`, one :class:`OutcomeFit` per outcome in input order:
    a sequence (``len``, indexing, iteration), with the failed ones in :attr:`failures` and tables in
    :meth:`to_tensors` and :meth:`to_dataframe`.

    Examples
    --------
    >>> from sparseprec.distributed import AtlasResults, OutcomeFit
    >>> results = AtlasResults([OutcomeFit.failed(0, "a", "ConvergenceError: ...")])
    >>> len(results), results.failures[0].reason
    (1, 'ConvergenceError: ...')
    """

    def __init__(self, fits: Sequence[OutcomeFit]):
        self.fits = list(fits)

    def __len__(self) -> int:
        return len(self.fits)

    def __getitem__(self, i):  # type: ignore[override]
        return self.fits[i]

    def __iter__(self) -> Iterator[OutcomeFit]:
        return iter(self.fits)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AtlasResults) and self.fits == other.fits

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"AtlasResults({len(self.fits)} outcomes, {len(self.failures)} failed)"

    @property
    def failures(self) -> list[OutcomeFit]:
        """The results marked failed."""
        return [f for f in self.fits if not f.ok]

    def to_tensors(self) -> dict[str, object]:
        """Every field stacked over outcomes: ``(N, n)`` for ``rr_mean``, ``rr_sd``, ``exceedance``; ``(N, 2)`` for
        the ``theta_*``; ``(N, 1 + p)`` for the coefficients; ``(N,)`` float64 for the scalars; lists for ``index``,
        ``name``, ``status``, ``reason``. A failed outcome's rows are NaN (its ``status`` column says so); a field no
        outcome has (``theta_mean`` under empirical Bayes) is ``None``.

        Examples
        --------
        >>> from sparseprec.distributed import AtlasResults, OutcomeFit
        >>> table = AtlasResults([OutcomeFit.failed(0, None, "ValueError: ...")]).to_tensors()
        >>> table["status"], table["rr_mean"]
        (['failed'], None)
        """
        out: dict[str, object] = {
            "index": [f.index for f in self.fits],
            "name": [f.name for f in self.fits],
            "status": [f.status for f in self.fits],
            "reason": [f.reason for f in self.fits],
        }
        for f in fields(OutcomeFit):
            if f.name in out:
                continue
            values = [getattr(fit, f.name) for fit in self.fits]
            if f.name in _SCALARS:
                scalars = [float("nan") if v is None else float(v) for v in values]
                out[f.name] = torch.tensor(scalars, dtype=torch.float64)
                continue
            like = next((v for v in values if v is not None), None)
            if like is None:
                out[f.name] = None
                continue
            out[f.name] = torch.stack([torch.full_like(like, float("nan")) if v is None else v for v in values])
        return out

    def to_dataframe(self):
        """One row per outcome and area (long format: ``outcome``, ``name``, ``status``, ``reason``, ``area``,
        ``rr_mean``, ``rr_sd``, ``exceedance``, ``sigma``, ``rho``, ``log_marginal_likelihood``,
        ``newton_iterations``), as a pandas DataFrame; a failed outcome is one row with its reason and NaN values.

        Raises
        ------
        ImportError
            pandas is not installed (``pip install pandas``; :meth:`to_tensors` needs nothing).
        """
        try:
            import pandas
        except ImportError as error:
            raise ImportError(
                "AtlasResults.to_dataframe needs pandas (pip install pandas); to_tensors() does not"
            ) from error
        rows = []
        for fit in self.fits:
            common = {"outcome": fit.index, "name": fit.name, "status": fit.status, "reason": fit.reason,
                      "sigma": fit.sigma, "rho": fit.rho, "log_marginal_likelihood": fit.log_marginal_likelihood,
                      "newton_iterations": fit.newton_iterations}  # fmt: skip
            if not fit.ok:
                rows.append({**common, "area": None, "rr_mean": None, "rr_sd": None, "exceedance": None})
                continue
            columns = zip(fit.rr_mean.tolist(), fit.rr_sd.tolist(), fit.exceedance.tolist(), strict=True)
            for area, (m, s, p) in enumerate(columns):
                rows.append({**common, "area": area, "rr_mean": m, "rr_sd": s, "exceedance": p})
        return pandas.DataFrame(rows)
