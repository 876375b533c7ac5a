r"""Observation likelihoods for latent Gaussian models: elementwise log-densities and their :math:`\eta`-derivatives.

A latent Gaussian model observes :math:`y_i` independently given the linear predictor :math:`\eta = A x + o`. The
Laplace approximation needs, for each observation, :math:`\ell_i(\eta_i) = \log p(y_i \mid \eta_i, \theta)` and its
first three derivatives in :math:`\eta_i`:

- :math:`\ell'` and :math:`\ell''` drive the inner Newton iterations (prior mean :math:`\mu`, offset :math:`o`)
  :math:`(Q + A^\top W A)\,x_{new} = Q\mu + A^\top \bigl(W(\eta - o) + \ell'(\eta)\bigr)` with Newton weights
  :math:`W = -\ell''` (:meth:`Likelihood.information`: the expected information where :math:`-\ell''` can be
  negative);
- :math:`\ell'''` enters the exact gradient of the Laplace marginal likelihood through
  :math:`\partial \log\det(Q + A^\top W A) / \partial \hat x`, and :math:`\partial \ell' / \partial\theta`,
  :math:`\partial \ell'' / \partial\theta` (by autograd through the closed forms below) its gradient in the
  likelihood's own parameters.

Every class returns, for observations ``y`` of shape ``(m,)`` and ``eta`` of shape ``(m,)``, tensors of shape ``(m,)``
in ``eta``'s dtype and device. Parameters are Python numbers or tensors of shape ``()`` (shared) or ``(m,)`` (one per
observation); a parameter marked differentiable may require grad, and :meth:`~Likelihood.log_prob` and
:meth:`~Likelihood.derivatives` then carry its gradient. Parameter tensors are stored as given (not copied), so an
optimiser's in-place updates are seen; :meth:`~Likelihood.check` re-validates them.

All log-densities include their normalising constants and agree with the corresponding :mod:`torch.distributions`
classes. Logistic terms use :func:`torch.sigmoid` on both sides (:math:`\sigma(\eta)\sigma(-\eta)` rather than
:math:`\sigma(1-\sigma)`) and :func:`torch.nn.functional.softplus`, so derivatives stay accurate at large
:math:`|\eta|`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .._validation import FLOAT_DTYPES, check_tensor, describe

__all__ = [
    "Likelihood",
    "Poisson",
    "Bernoulli",
    "Binomial",
    "NegativeBinomial",
    "Gaussian",
    "StudentT",
    "GenericLikelihood",
]

_LOG_2PI = math.log(2 * math.pi)
_LOG_PI = math.log(math.pi)

#: What each parameter rule accepts, for the error messages.
_RULES = {
    "positive": "positive and finite",
    "count": "a non-negative integer",
}

Parameter = float | torch.Tensor


# ----------------------------------------------------------------------------------------------------- validation


def _first_bad(bad: torch.Tensor, value: torch.Tensor, name: str) -> str:
    """``name[i] = v`` (or ``name = v`` for a 0-D tensor) for the first ``True`` of ``bad``."""
    if value.dim() == 0:
        return f"{name} = {value.item()!r}"
    i = int(torch.nonzero(bad)[0, 0])
    return f"{name}[{i}] = {value[i].item()!r}"


def _violations(value: torch.Tensor, rule: str) -> torch.Tensor:
    """Boolean mask of the entries of ``value`` (detached) that break ``rule``."""
    bad = ~torch.isfinite(value)
    if rule == "positive":
        bad |= value <= 0
    elif rule == "count":
        bad |= (value < 0) | (value != torch.floor(value))
    return bad


def _check_parameter(value: object, name: str, rule: str, *, optional: bool = False) -> Parameter | None:
    """Validate a constructor parameter (a real number or a tensor of shape ``()`` or ``(m,)``) against ``rule``.

    Returns a Python float for a number (an int for a count) and the tensor itself (not copied: gradients and in-place
    updates pass through) for a tensor.
    """
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, torch.Tensor)):
        raise TypeError(f"{name} must be a real number or a torch.Tensor, got {type(value).__name__} {value!r}")
    if not isinstance(value, torch.Tensor):
        number = float(value)
        if bool(_violations(torch.tensor(number, dtype=torch.float64), rule)):
            raise ValueError(f"{name} must be {_RULES[rule]}, got {name} = {value!r}")
        return int(number) if rule == "count" else number
    if value.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got a {describe(value)}")
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"{name} must have a real floating or integer dtype, got {value.dtype}")
    if value.dim() > 1:
        raise ValueError(f"{name} must have shape () or (m,) (one value per observation), got {tuple(value.shape)}")
    _check_parameter_values(value, name, rule)
    return value


def _check_parameter_values(value: torch.Tensor, name: str, rule: str) -> None:
    with torch.no_grad():
        detached = value.detach()
        if not detached.is_floating_point():
            detached = detached.double()
        bad = _violations(detached, rule)
        if bool(bad.any()):
            raise ValueError(f"{name} must be {_RULES[rule]}, got {_first_bad(bad, detached, name)}")


def _as_tensor(value: Parameter, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a tensor of ``like``'s dtype and device (differentiable: ``Tensor.to`` keeps the graph)."""
    if isinstance(value, torch.Tensor):
        return value.to(dtype=like.dtype, device=like.device)
    return torch.tensor(value, dtype=like.dtype, device=like.device)


def _describe_parameter(value: Parameter | None) -> str:
    if value is None or not isinstance(value, torch.Tensor):
        return repr(value)
    grad = ", requires_grad=True" if value.requires_grad else ""
    if value.dim() == 0:
        return f"tensor({value.item()!r}{grad})"
    return f"tensor(shape={tuple(value.shape)}, dtype={value.dtype}{grad})"


def _integer_valued(y: torch.Tensor) -> torch.Tensor:
    return y == torch.floor(y)


# ---------------------------------------------------------------------------------------------------- base class


class Likelihood:
    r"""Base class of the observation models: elementwise :math:`\log p(y_i \mid \eta_i, \theta)`.

    A subclass declares its parameters in ``_PARAMETERS`` (``(name, rule)`` pairs, rule ``"positive"`` or
    ``"count"``; optional ones may be ``None``), stores them as attributes of those names, checks the support of
    ``y`` in ``_check_support`` and implements :meth:`log_prob`, :meth:`derivatives` and :meth:`sample`.

    Attributes
    ----------
    log_concave : bool
        True when :math:`\partial^2 \log p / \partial \eta^2 \le 0` for every ``y`` and :math:`\eta`: Newton's Hessian
        :math:`Q + A^\top W A` with :math:`W = -\ell''` is then positive definite.

    Examples
    --------
    >>> import torch
    >>> lik = Bernoulli()
    >>> isinstance(lik, Likelihood), lik.log_concave
    (True, True)
    >>> y = lik.check(torch.tensor([0, 1, 1]), torch.zeros(3))
    >>> y.dtype, tuple(lik.log_prob(y, torch.zeros(3)).shape)
    (torch.float32, (3,))
    """

    log_concave: bool = True
    _PARAMETERS: tuple[tuple[str, str], ...] = ()

    # -- validation ------------------------------------------------------------------------------------------------

    def check(self, y: torch.Tensor, eta_like: torch.Tensor) -> torch.Tensor:
        r"""Validate observations and parameters; return ``y`` as a dense ``(m,)`` tensor like ``eta_like``.

        Parameters
        ----------
        y : torch.Tensor
            Observations, shape ``(m,)``, dense, of a floating, integer or bool dtype; values in the likelihood's
            support (see the class).
        eta_like : torch.Tensor
            A floating tensor (``torch.float32`` or ``torch.float64``) whose dtype and device the computation uses
            (typically the linear predictor); its shape is not read.

        Returns
        -------
        torch.Tensor
            ``y`` converted to ``eta_like``'s dtype and device, shape ``(m,)``.

        Raises
        ------
        TypeError
            ``y`` or ``eta_like`` not a tensor, sparse, or of an unsupported dtype; a parameter of a wrong kind.
        ValueError
            ``y`` not 1-D, not finite, or outside the support; a parameter whose shape is neither ``()`` nor
            ``(m,)``, that lives on another device than the returned ``y``, or that breaks its constraint. Messages
            name the argument (``y``, ``exposure``, ``total_count``, ...), what was expected and the first offending
            entry.
        """
        check_tensor(eta_like, "eta_like")
        if eta_like.dtype not in FLOAT_DTYPES:
            raise TypeError(f"eta_like must have dtype torch.float32 or torch.float64, got {eta_like.dtype}")
        check_tensor(y, "y")
        if y.layout != torch.strided:
            raise TypeError(f"y must be a dense (strided) tensor, got a {describe(y)}")
        if y.is_complex():
            raise TypeError(f"y must have a real floating, integer or bool dtype, got {y.dtype}")
        if y.dim() != 1:
            raise ValueError(f"y must have shape (m,) (one observation per entry of eta), got {tuple(y.shape)}")
        m = y.shape[0]
        y = y.detach().to(dtype=eta_like.dtype, device=eta_like.device)
        finite = torch.isfinite(y)
        if not bool(finite.all()):
            raise ValueError(f"y must be finite, got {_first_bad(~finite, y, 'y')}")
        for name, rule in self._PARAMETERS:
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                continue  # a Python number, checked when the likelihood was built
            if value.dim() == 1 and value.shape[0] != m:
                raise ValueError(
                    f"{name} must have shape () or (m,) = ({m},) to match y of shape ({m},), got {tuple(value.shape)}"
                )
            if value.device != y.device:
                raise ValueError(f"{name} must be on y's device {y.device}, got {value.device}")
            _check_parameter_values(value, name, rule)
        self._check_support(y)
        return y

    def _check_support(self, y: torch.Tensor) -> None:
        """Raise ``ValueError`` naming ``y`` if an entry lies outside the support (``y`` already finite)."""

    def _parameter(self, name: str, like: torch.Tensor) -> torch.Tensor:
        return _as_tensor(getattr(self, name), like)

    # -- the model -------------------------------------------------------------------------------------------------

    def log_prob(self, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        r"""Elementwise :math:`\log p(y_i \mid \eta_i)` with all normalising constants, shape ``(m,)``.

        Differentiable with respect to ``eta`` and every tensor parameter. ``y`` should come from :meth:`check`.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement log_prob")

    def derivatives(self, y: torch.Tensor, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r""":math:`(\partial_\eta \ell, \partial^2_\eta \ell, \partial^3_\eta \ell)` of :math:`\ell = \log p(y \mid
        \eta)`, elementwise, each of shape ``(m,)``; closed forms in torch operations, differentiable with respect to
        ``eta`` and the parameters."""
        raise NotImplementedError(f"{type(self).__name__} does not implement derivatives")

    def information(self, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        r"""Non-negative Newton weights :math:`W_i`, shape ``(m,)``, detached.

        :math:`W = -\partial^2_\eta \ell` for a log-concave likelihood; otherwise the expected (Fisher) information
        :math:`\mathbb E_y[-\partial^2_\eta \ell]` where a subclass knows it, and :math:`\max(-\partial^2_\eta \ell,
        0)` here in the base class.
        """
        with torch.no_grad():
            d2 = self.derivatives(y, eta)[1]
        return -d2 if self.log_concave else (-d2).clamp(min=0)

    def sample(self, eta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Draws :math:`y_i \sim p(y \mid \eta_i)`, shape ``(m,)``, in ``eta``'s dtype (no gradient)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sample")

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={_describe_parameter(getattr(self, name))}" for name, _ in self._PARAMETERS)
        return f"{type(self).__name__}({args})"


# ------------------------------------------------------------------------------------------------ count models


class Poisson(Likelihood):
    r"""Poisson counts with a log link and an optional exposure.

    .. math::

        y_i \sim \mathrm{Poisson}(\mu_i), \quad \mu_i = E_i e^{\eta_i}, \qquad
        \log p(y_i \mid \eta_i) = y_i(\eta_i + \log E_i) - \mu_i - \log y_i!

    Derivatives: :math:`\ell' = y - \mu`, :math:`\ell'' = \ell''' = -\mu`; log-concave, :math:`W = \mu`.

    Parameters
    ----------
    exposure : float or torch.Tensor, optional
        :math:`E > 0`, shape ``()`` or ``(m,)`` (an offset :math:`\log E` on the linear predictor; not meant to be
        learnt). ``None`` means :math:`E = 1`.

    Raises
    ------
    TypeError, ValueError
        ``exposure`` not a number or tensor, of shape other than ``()``/``(m,)``, or not positive and finite;
        :meth:`check`: ``y`` not non-negative integers.

    Examples
    --------
    >>> import torch
    >>> lik = Poisson(exposure=torch.tensor([1.0, 2.0], dtype=torch.float64))
    >>> eta = torch.tensor([0.0, 0.5], dtype=torch.float64)
    >>> y = lik.check(torch.tensor([0, 3]), eta)
    >>> rate = torch.tensor([1.0, 2.0], dtype=torch.float64) * eta.exp()
    >>> torch.allclose(lik.log_prob(y, eta), torch.distributions.Poisson(rate).log_prob(y))
    True
    >>> d1, d2, d3 = lik.derivatives(y, eta)
    >>> d1.round(decimals=4), torch.equal(d2, d3)
    (tensor([-1.0000, -0.2974], dtype=torch.float64), True)
    >>> lik
    Poisson(exposure=tensor(shape=(2,), dtype=torch.float64))
    """

    _PARAMETERS = (("exposure", "positive"),)

    def __init__(self, exposure: Parameter | None = None) -> None:
        self.exposure = _check_parameter(exposure, "exposure", "positive", optional=True)

    def _check_support(self, y: torch.Tensor) -> None:
        bad = (y < 0) | ~_integer_valued(y)
        if bool(bad.any()):
            raise ValueError(f"y must hold non-negative integers (Poisson counts), got {_first_bad(bad, y, 'y')}")

    def _log_rate(self, eta: torch.Tensor) -> torch.Tensor:
        if self.exposure is None:
            return eta
        return eta + torch.log(self._parameter("exposure", eta))

    def log_prob(self, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        log_rate = self._log_rate(eta)
        y = y.to(eta.dtype)
        return y * log_rate - torch.exp(log_rate) - torch.lgamma(y + 1)

    def derivatives(self, y: torch.Tensor, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu = torch.exp(self._log_rate(eta))
        return y.to(eta.dtype) - mu, -mu, -mu

    def sample(self, eta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            return torch.poisson(torch.exp(self._log_rate(eta.detach())), generator=generator)


class Bernoulli(Likelihood):
    r"""Binary outcomes with a logit link.

    .. math::

        P(y_i = 1 \mid \eta_i) = \sigma(\eta_i), \qquad
        \log p(y_i \mid \eta_i) = y_i \eta_i - \operatorname{softplus}(\eta_i)
        = -y_i \operatorname{softplus}(-\eta_i) - (1 - y_i) \operatorname{softplus}(\eta_i)

    (the last form is the one computed: no cancellation at large :math:`|\eta|`). With :math:`p = \sigma(\eta)`,
    :math:`q = \sigma(-\eta) = 1 - p`: :math:`\ell' = y q - (1 - y) p`, :math:`\ell'' = -pq`,
    :math:`\ell''' = -pq(q - p)`; log-concave.

    Raises
    ------
    ValueError
        :meth:`check`: ``y`` not 0 or 1.

    Examples
    --------
    >>> import torch
    >>> lik = Bernoulli()
    >>> eta = torch.tensor([-1.0, 0.0, 40.0], dtype=torch.float64)
    >>> y = lik.check(torch.tensor([0, 1, 1]), eta)
    >>> torch.allclose(lik.log_prob(y, eta), torch.distributions.Bernoulli(logits=eta).log_prob(y))
    True
    >>> d1, d2, d3 = lik.derivatives(y, eta)
    >>> bool(d2[2] < 0)  # sigma(40) sigma(-40) ≈ 4e-18, not rounded to 0
    True
    """

    def _check_support(self, y: torch.Tensor) -> None:
        bad = (y != 0) & (y != 1)
        if bool(bad.any()):
            raise ValueError(f"y must hold 0 or 1 (Bernoulli outcomes), got {_first_bad(bad, y, 'y')}")

    def log_prob(self, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        y = y.to(eta.dtype)
        return -y * F.softplus(-eta) - (1 - y) * F.softplus(eta)

    def derivatives(self, y: torch.Tensor, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = y.to(eta.dtype)
        p, q = torch.sigmoid(eta), torch.sigmoid(-eta)
        pq = p * q
        return y * q - (1 - y) * p, -pq, -pq * (q - p)

    def sample(self, eta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            return torch.bernoulli(torch.sigmoid(eta.detach()), generator=generator)


class Binomial(Likelihood):
    r"""Numbers of successes out of :math:`N_i` trials, with a logit link.

    .. math::

        \log p(y_i \mid \eta_i) = \log\binom{N_i}{y_i} + y_i \eta_i - N_i \operatorname{softplus}(\eta_i)
        = \log\binom{N_i}{y_i} - y_i \operatorname{softplus}(-\eta_i) - (N_i - y_i) \operatorname{softplus}(\eta_i)

    With :math:`p = \sigma(\eta)`, :math:`q = \sigma(-\eta)`: :math:`\ell' = y q - (N - y) p = y - Np`,
    :math:`\ell'' = -Npq`, :math:`\ell''' = -Npq(q - p)`; log-concave.

    Parameters
    ----------
    total_count : int or torch.Tensor
        :math:`N`, non-negative integers (a tensor of an integer or floating dtype holding integer values), shape
        ``()`` or ``(m,)``. Not differentiable (it is data).

    Raises
    ------
    TypeError, ValueError
        ``total_count`` not a number or tensor, of a wrong shape, or not non-negative integers; :meth:`check`:
        ``y`` not integers in :math:`[0, N_i]`.

    Examples
    --------
    >>> import torch
    >>> lik = Binomial(total_count=torch.tensor([5, 10]))
    >>> eta = torch.tensor([0.3, -1.0], dtype=torch.float64)
    >>> y = lik.check(torch.tensor([2, 10]), eta)
    >>> ref = torch.distributions.Binomial(total_count=torch.tensor([5.0, 10.0], dtype=torch.float64), logits=eta)
    >>> torch.allclose(lik.log_prob(y, eta), ref.log_prob(y))
    True
    >>> lik.check(torch.tensor([6, 0]), eta)
    Traceback (most recent call last):
        ...
    ValueError: y must hold integers in [0, total_count], got y[0] = 6.0 with total_count[0] = 5.0
    """

    _PARAMETERS = (("total_count", "count"),)

    def __init__(self, total_count: int | torch.Tensor) -> None:
        self.total_count = _check_parameter(total_count, "total_count", "count")

    def _check_support(self, y: torch.Tensor) -> None:
        n = self._parameter("total_count", y).expand_as(y)
        bad = (y < 0) | (y > n) | ~_integer_valued(y)
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0, 0])
            per_observation = isinstance(self.total_count, torch.Tensor) and self.total_count.dim() == 1
            where = f"total_count[{i}]" if per_observation else "total_count"
            raise ValueError(
                f"y must hold integers in [0, total_count], got y[{i}] = {y[i].item()!r} with {where} = {n[i].item()!r}"
            )

    def log_prob(self, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        y = y.to(eta.dtype)
        n = self._parameter("total_count", eta)
        log_binom = torch.lgamma(n + 1) - torch.lgamma(y + 1) - torch.lgamma(n - y + 1)
        return log_binom - y * F.softplus(-eta) - (n - y) * F.softplus(eta)

    def derivatives(self, y: torch.Tensor, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = y.to(eta.dtype)
        n = self._parameter("total_count", eta)
        p, q = torch.sigmoid(eta), torch.sigmoid(-eta)
        npq = n * p * q
        return y * q - (n - y) * p, -npq, -npq * (q - p)

    def sample(self, eta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            eta = eta.detach()
            n = self._parameter("total_count", eta).expand_as(eta).contiguous()
            return torch.binomial(n, torch.sigmoid(eta), generator=generator)


class NegativeBinomial(Likelihood):
    r"""Over-dispersed counts: negative binomial with mean :math:`\mu = E e^\eta` and variance :math:`\mu + \mu^2/r`.

    .. math::

        \log p(y_i \mid \eta_i) = \log\Gamma(y_i + r) - \log\Gamma(r) - \log y_i!
        + r \log\frac{r}{r + \mu_i} + y_i \log\frac{\mu_i}{r + \mu_i}

    With :math:`z = \log(\mu / r) = \eta + \log E - \log r`, :math:`p = \sigma(z) = \mu/(r + \mu)` and
    :math:`q = \sigma(-z)`, the last two terms are :math:`-r \operatorname{softplus}(z) - y
    \operatorname{softplus}(-z)` (computed so), and

    .. math::

        \ell' = y q - r p, \qquad \ell'' = -(y + r)\,pq, \qquad \ell''' = -(y + r)\,pq\,(q - p);

    log-concave in :math:`\eta`. It is :class:`torch.distributions.NegativeBinomial` with ``total_count=r`` and
    ``logits=z``; :math:`r \to \infty` gives :class:`Poisson`.

    Parameters
    ----------
    dispersion : float or torch.Tensor
        :math:`r > 0` (the "size"), shape ``()`` or ``(m,)``; may require grad.
    exposure : float or torch.Tensor, optional
        :math:`E > 0`, shape ``()`` or ``(m,)``; ``None`` means :math:`E = 1`.

    Raises
    ------
    TypeError, ValueError
        A parameter not a number or tensor, of a wrong shape, or not positive and finite; :meth:`check`: ``y`` not
        non-negative integers.

    Examples
    --------
    >>> import torch
    >>> r = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    >>> lik = NegativeBinomial(dispersion=r)
    >>> eta = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    >>> y = lik.check(torch.tensor([0, 4, 9]), eta)
    >>> ref = torch.distributions.NegativeBinomial(total_count=r, logits=eta - r.log())
    >>> torch.allclose(lik.log_prob(y, eta), ref.log_prob(y))
    True
    >>> d1, d2, d3 = lik.derivatives(y, eta)
    >>> d2.requires_grad  # differentiable in the dispersion
    True
    """

    _PARAMETERS = (("dispersion", "positive"), ("exposure", "positive"))

    def __init__(self, dispersion: Parameter, exposure: Parameter | None = None) -> None:
        self.dispersion = _check_parameter(dispersion, "dispersion", "positive")
        self.exposure = _check_parameter(exposure, "exposure", "positive", optional=True)

    def _check_support(self, y: torch.Tensor) -> None:
        bad = (y < 0) | ~_integer_valued(y)
        if bool(bad.any()):
            raise ValueError(
                f"y must hold non-negative integers (negative binomial counts), got {_first_bad(bad, y, 'y')}"
            )

    def _logit(self, eta: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        z = eta - torch.log(r)
        if self.exposure is not None:
            z = z + torch.log(self._parameter("exposure", eta))
        return z

    def log_prob(self, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        y = y.to(eta.dtype)
        r = self._parameter("dispersion", eta)
        z = self._logit(eta, r)
        return torch.lgamma(y + r) - torch.lgamma(r) - torch.lgamma(y + 1) - r * F.softplus(z) - y * F.softplus(-z)

    def derivatives(self, y: torch.Tensor, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = y.to(eta.dtype)
        r = self._parameter("dispersion", eta)
        z = self._logit(eta, r)
        p, q = torch.sigmoid(z), torch.sigmoid(-z)
        wpq = (y + r) * p * q
        return y * q - r * p, -wpq, -wpq * (q - p)

    def sample(self, eta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # Gamma-Poisson mixture: lambda ~ Gamma(shape r, scale mu / r), y ~ Poisson(lambda).
        with torch.no_grad():
            eta = eta.detach()
            r = self._parameter("dispersion", eta).expand_as(eta).contiguous()
            gamma = torch._standard_gamma(r, generator=generator)
            return torch.poisson(gamma * torch.exp(self._logit(eta, r)), generator=generator)


# ----------------------------------------------------------------------------------------- continuous models


class Gaussian(Likelihood):
    r"""Gaussian observations of the linear predictor with noise precision :math:`w`.

    .. math::

        y_i \sim N(\eta_i, w_i^{-1}), \qquad
        \log p(y_i \mid \eta_i) = \tfrac12 \log w_i - \tfrac12 \log 2\pi - \tfrac12 w_i (y_i - \eta_i)^2

    Derivatives: :math:`\ell' = w(y - \eta)`, :math:`\ell'' = -w`, :math:`\ell''' = 0`; log-concave, :math:`W = w`
    (the Laplace approximation is then exact).

    Parameters
    ----------
    noise_precision : float or torch.Tensor
        :math:`w > 0`, shape ``()`` or ``(m,)``; may require grad.

    Raises
    ------
    TypeError, ValueError
        ``noise_precision`` not a number or tensor, of a wrong shape, or not positive and finite; :meth:`check`:
        ``y`` not finite.

    Examples
    --------
    >>> import torch
    >>> lik = Gaussian(noise_precision=4.0)
    >>> eta = torch.tensor([0.0, 1.0], dtype=torch.float64)
    >>> y = lik.check(torch.tensor([0.5, 0.0], dtype=torch.float64), eta)
    >>> ref = torch.distributions.Normal(eta, 0.5).log_prob(y)
    >>> torch.allclose(lik.log_prob(y, eta), ref)
    True
    >>> d1, d2, d3 = lik.derivatives(y, eta)
    >>> d1
    tensor([ 2., -4.], dtype=torch.float64)
    >>> d2, d3
    (tensor([-4., -4.], dtype=torch.float64), tensor([0., 0.], dtype=torch.float64))
    """

    _PARAMETERS = (("noise_precision", "positive"),)

    def __init__(self, noise_precision: Parameter) -> None:
        self.noise_precision = _check_parameter(noise_precision, "noise_precision", "positive")

    def log_prob(self, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        w = self._parameter("noise_precision", eta)
        residual = y.to(eta.dtype) - eta
        return 0.5 * (torch.log(w) - _LOG_2PI - w * residual**2)

    def derivatives(self, y: torch.Tensor, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w = self._parameter("noise_precision", eta)
        d1 = w * (y.to(eta.dtype) - eta)
        return d1, -w * torch.ones_like(eta), torch.zeros_like(eta)

    def sample(self, eta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            eta = eta.detach()
            w = self._parameter("noise_precision", eta)
            noise = torch.randn(eta.shape, dtype=eta.dtype, device=eta.device, generator=generator)
            return eta + noise * torch.rsqrt(w)


class StudentT(Likelihood):
    r"""Heavy-tailed observations: :math:`y = \eta + s\,t_\nu` (Student-t with :math:`\nu` degrees of freedom).

    .. math::

        \log p(y_i \mid \eta_i) = \log\Gamma\bigl(\tfrac{\nu+1}{2}\bigr) - \log\Gamma\bigl(\tfrac{\nu}{2}\bigr)
        - \tfrac12 \log(\nu\pi) - \log s - \tfrac{\nu+1}{2} \log\Bigl(1 + \frac{t^2}{\nu}\Bigr),
        \qquad t = \frac{y - \eta}{s}

    With :math:`f = 1 / (\nu + t^2)`:

    .. math::

        \ell' = \frac{\nu+1}{s}\, t f, \qquad
        \ell'' = -\frac{\nu+1}{s^2}\,(\nu - t^2) f^2, \qquad
        \ell''' = -\frac{2(\nu+1)}{s^3}\, t (3\nu - t^2) f^3,

    computed as products of the bounded factors :math:`tf`, :math:`(\nu - t^2) f` and :math:`(3\nu - t^2) f`.
    :math:`\ell'' > 0` for :math:`t^2 > \nu`: **not log-concave**. The Newton weights are the expected information
    for the location, :math:`W = \mathbb E_y[-\ell''] = (\nu+1) / ((\nu+3) s^2)`.

    Parameters
    ----------
    df : float or torch.Tensor
        :math:`\nu > 0`, shape ``()`` or ``(m,)``; may require grad.
    scale : float or torch.Tensor
        :math:`s > 0`, shape ``()`` or ``(m,)``; may require grad.

    Raises
    ------
    TypeError, ValueError
        A parameter not a number or tensor, of a wrong shape, or not positive and finite; :meth:`check`: ``y`` not
        finite.

    Examples
    --------
    >>> import torch
    >>> lik = StudentT(df=4.0, scale=0.5)
    >>> eta = torch.tensor([0.0, 1.0], dtype=torch.float64)
    >>> y = lik.check(torch.tensor([0.1, 3.0], dtype=torch.float64), eta)
    >>> torch.allclose(lik.log_prob(y, eta), torch.distributions.StudentT(4.0, eta, 0.5).log_prob(y))
    True
    >>> lik.log_concave, lik.derivatives(y, eta)[1][1] > 0  # the outlier makes the curvature positive
    (False, tensor(True))
    >>> lik.information(y, eta)  # (ν + 1) / ((ν + 3) s²) = 5 / 1.75
    tensor([2.8571, 2.8571], dtype=torch.float64)
    """

    log_concave = False
    _PARAMETERS = (("df", "positive"), ("scale", "positive"))

    def __init__(self, df: Parameter, scale: Parameter) -> None:
        self.df = _check_parameter(df, "df", "positive")
        self.scale = _check_parameter(scale, "scale", "positive")

    def log_prob(self, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        nu, s = self._parameter("df", eta), self._parameter("scale", eta)
        t = (y.to(eta.dtype) - eta) / s
        return (
            torch.lgamma((nu + 1) / 2)
            - torch.lgamma(nu / 2)
            - 0.5 * (torch.log(nu) + _LOG_PI)
            - torch.log(s)
            - (nu + 1) / 2 * torch.log1p(t**2 / nu)
        )

    def derivatives(self, y: torch.Tensor, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        nu, s = self._parameter("df", eta), self._parameter("scale", eta)
        t = (y.to(eta.dtype) - eta) / s
        t2 = t**2
        f = 1 / (nu + t2)
        tf = t * f
        c = (nu + 1) / s
        d1 = c * tf
        d2 = -(c / s) * ((nu - t2) * f) * f
        d3 = -2 * (c / s**2) * tf * ((3 * nu - t2) * f) * f
        return d1, d2, d3

    def information(self, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            eta = eta.detach()
            nu, s = self._parameter("df", eta), self._parameter("scale", eta)
            return ((nu + 1) / ((nu + 3) * s**2)).expand_as(eta).clone()

    def sample(self, eta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # t = z / sqrt(V / nu) with V ~ chi^2_nu = 2 Gamma(nu / 2)
        with torch.no_grad():
            eta = eta.detach()
            nu = self._parameter("df", eta).expand_as(eta).contiguous()
            s = self._parameter("scale", eta)
            z = torch.randn(eta.shape, dtype=eta.dtype, device=eta.device, generator=generator)
            v = 2 * torch._standard_gamma(nu / 2, generator=generator)
            return eta + s * z * torch.rsqrt(v / nu)


# ------------------------------------------------------------------------------------------------------ generic


def _grad_or_zeros(output: torch.Tensor, wrt: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """Elementwise derivative of an elementwise ``output`` w.r.t. ``wrt`` (gradient of the sum); zeros where unused."""
    if not output.requires_grad:
        return torch.zeros_like(wrt)
    (grad,) = torch.autograd.grad(output.sum(), wrt, create_graph=create_graph, allow_unused=True)
    return torch.zeros_like(wrt) if grad is None else grad


class GenericLikelihood(Likelihood):
    r"""Any elementwise log-density, with its :math:`\eta`-derivatives by automatic differentiation.

    ``log_prob_fn(y, eta)`` must return :math:`\ell_i = \log p(y_i \mid \eta_i)`, shape ``(m,)``, where entry
    :math:`i` depends on :math:`\eta_i` only. Then :math:`\partial_{\eta_i} \sum_j \ell_j = \ell_i'`, so each
    derivative is one :func:`torch.autograd.grad` of the sum of the previous one (``create_graph=True``): the
    results stay differentiable in ``eta`` and in any tensor the function closes over. Works under
    :func:`torch.no_grad` (the results are then detached) and when ``eta`` does not require grad.

    Newton weights: :math:`W = -\ell''` when ``log_concave``; otherwise :math:`\max(-\ell'', 0)` (no expected
    information is known).

    Parameters
    ----------
    log_prob_fn : callable
        ``(y, eta) -> (m,)`` tensor, elementwise, differentiable in ``eta`` (twice, thrice for ``derivatives``).
    log_concave : bool
        Whether :math:`\ell'' \le 0` for every ``y`` and :math:`\eta` (default False).

    Raises
    ------
    TypeError
        ``log_prob_fn`` not callable, ``log_concave`` not a bool; :meth:`log_prob`: the function's result is not a
        tensor.
    ValueError
        :meth:`check`: ``y`` not finite; :meth:`log_prob`: the function's result not of ``eta``'s shape.
    NotImplementedError
        :meth:`sample` (an arbitrary log-density cannot be sampled).

    Examples
    --------
    >>> import torch
    >>> def poisson(y, eta):
    ...     return y * eta - eta.exp() - torch.lgamma(y + 1)
    >>> lik = GenericLikelihood(poisson, log_concave=True)
    >>> eta = torch.tensor([0.0, 1.0], dtype=torch.float64)
    >>> y = lik.check(torch.tensor([2, 0]), eta)
    >>> d1, d2, d3 = lik.derivatives(y, eta)
    >>> torch.allclose(d1, y - eta.exp()), torch.allclose(d2, -eta.exp()), torch.allclose(d3, -eta.exp())
    (True, True, True)
    """

    def __init__(self, log_prob_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], log_concave: bool = False):
        if not callable(log_prob_fn):
            raise TypeError(f"log_prob_fn must be callable (y, eta) -> (m,) tensor, got {type(log_prob_fn).__name__}")
        if not isinstance(log_concave, bool):
            raise TypeError(f"log_concave must be a bool, got {type(log_concave).__name__} {log_concave!r}")
        self.log_prob_fn = log_prob_fn
        self.log_concave = log_concave

    def log_prob(self, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        out = self.log_prob_fn(y, eta)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"log_prob_fn must return a torch.Tensor, got {type(out).__name__}")
        if out.shape != eta.shape:
            raise ValueError(
                f"log_prob_fn must return one log-density per observation, shape {tuple(eta.shape)}, got "
                f"{tuple(out.shape)}"
            )
        return out

    def _derivatives(self, y: torch.Tensor, eta: torch.Tensor, order: int) -> list[torch.Tensor]:
        keep_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            wrt = eta if eta.requires_grad else eta.detach().requires_grad_(True)
            current = self.log_prob(y, wrt)
            out = []
            for k in range(order):
                current = _grad_or_zeros(current, wrt, create_graph=keep_graph or k < order - 1)
                out.append(current)
        return out if keep_graph else [d.detach() for d in out]

    def derivatives(self, y: torch.Tensor, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d1, d2, d3 = self._derivatives(y, eta, 3)
        return d1, d2, d3

    def information(self, y: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            d2 = self._derivatives(y, eta, 2)[1]
        return -d2 if self.log_concave else (-d2).clamp(min=0)

    def sample(self, eta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError(
            "GenericLikelihood cannot sample: it knows only the log-density log_prob_fn; simulate y with the model's "
            "own sampler"
        )

    def __repr__(self) -> str:
        name = getattr(self.log_prob_fn, "__qualname__", None) or repr(self.log_prob_fn)
        return f"GenericLikelihood(log_prob_fn={name}, log_concave={self.log_concave})"
