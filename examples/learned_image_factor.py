"""Learning a sparse precision factor for images
=============================================

A sparse precision factor for images, learned by maximum likelihood from correlated samples and checked against the
truth.

The truth: a two-channel 24 × 24 image model ``x ~ N(0, Q⁻¹)``, ``Q = L Lᵀ``, whose lower triangular factor ``L``
lies in the pattern of :func:`sparseprec.structures.image_factor.image_factor_pattern` (radius 1.5, channel relation
``"inter"``: 13 offsets below the diagonal, the lower half of each pixel's 8 neighbours in its channel and the other
channel at the pixel and its neighbours) with stationary values (one per offset and channel, a larger diagonal in
channel 1). ``N`` images are drawn from it.

Three models are then fitted by maximum likelihood, ``SparseMultivariateNormal(0, precision_tril=L(θ)).log_prob``
summed over the images and maximised with L-BFGS (the diagonal of ``L`` kept positive through ``exp``):

* independent pixels: a diagonal ``L`` (one precision per pixel and channel), the baseline;
* the stationary factor: one value per offset and channel (28 numbers), the true model's family;
* the free factor: every stored entry of ``L`` its own value (10,376 numbers), a non-stationary model.

Printed for each: the relative Frobenius error ``‖Q̂ − Q‖_F / ‖Q‖_F`` of the learned precision (over all entries, that
is on the pattern of ``L Lᵀ``) and the exact ``KL(true ‖ learned)`` in nats, beside ``p / (2N)``, the large-sample
expectation of the KL of a maximum-likelihood fit of a correct model with ``p`` parameters (the independent-pixel model
is not correct: its KL stays large however many images). Dense ``n × n`` matrices appear only here, for these checks;
the fits are sparse. Drawn: the marginal standard deviations and one row of the precision, true and learned.

Run ``python examples/learned_image_factor.py`` (~15 s on 2 cores) or ``--quick`` (12 × 12, fewer images).
Saved: ``learned_image_factor.png``.
"""

from __future__ import annotations

import argparse
import time

import torch

from sparseprec.distributions import SparseMultivariateNormal
from sparseprec.structures.image_factor import ImageFactorPattern, image_factor_pattern

F64 = torch.float64
CHANNELS = 2


def true_offset_values(pattern: ImageFactorPattern) -> torch.Tensor:
    """One value per offset ``(channel, dy, dx)`` and per channel (``(num_offsets, C)``): a smooth stationary field
    in each channel (negative couplings to the axis and diagonal neighbours), positively coupled across channels."""
    theta = torch.zeros(pattern.num_offsets, CHANNELS, dtype=F64)
    for k, (c, dy, dx) in enumerate(pattern.offsets):
        if (c, dy, dx) == (0, 0, 0):
            theta[k] = torch.tensor([1.0, 1.4])
        elif c == 0:
            theta[k] = -0.42 if abs(dy) + abs(dx) == 1 else -0.06
        elif (dy, dx) == (0, 0):
            theta[k] = 0.6
        else:
            theta[k] = 0.12 if abs(dy) + abs(dx) == 1 else 0.0
    return theta


def fit(pattern: ImageFactorPattern, x: torch.Tensor, to_values, raw: torch.Tensor, iterations: int) -> torch.Tensor:
    """Maximise the mean log-likelihood of the images ``x`` over ``raw`` (L-BFGS); ``to_values(raw)`` gives ``L``'s
    stored values. Returns the learned values."""
    raw = raw.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([raw], lr=1.0, max_iter=iterations, history_size=20, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-9, tolerance_change=1e-12)  # fmt: skip
    loc = torch.zeros(pattern.n, dtype=F64)

    def closure():
        optimiser.zero_grad()
        L = pattern.matrix(to_values(raw))
        loss = -SparseMultivariateNormal(loc, precision_tril=L).log_prob(x).mean()
        loss.backward()
        return loss

    optimiser.step(closure)
    return to_values(raw).detach()


def checks(
    pattern: ImageFactorPattern, L_true: torch.Tensor, values: torch.Tensor
) -> tuple[float, float, torch.Tensor]:
    """Relative Frobenius error of ``Q̂ = L̂ L̂ᵀ`` against ``Q``, ``KL(N(0, Q⁻¹) ‖ N(0, Q̂⁻¹))`` and ``Q̂`` (dense)."""
    L_hat = pattern.matrix(values).to_dense()
    Q, Q_hat = L_true @ L_true.T, L_hat @ L_hat.T
    error = float(torch.linalg.matrix_norm(Q_hat - Q) / torch.linalg.matrix_norm(Q))
    covariance = torch.cholesky_inverse(L_true)  # (L Lᵀ)⁻¹
    logdet, logdet_hat = 2 * L_true.diagonal().log().sum(), 2 * L_hat.diagonal().log().sum()
    kl = 0.5 * (torch.trace(Q_hat @ covariance) - pattern.n + logdet - logdet_hat)
    return error, float(kl), Q_hat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 12 × 12 image and fewer samples (for tests)")
    parser.add_argument("--output", default="learned_image_factor.png")
    args = parser.parse_args()
    side, images, iterations = (12, 200, 150) if args.quick else (24, 400, 400)
    torch.manual_seed(0)

    pattern = image_factor_pattern((side, side), CHANNELS, radius=1.5, relation="inter")
    print(f"pattern: {pattern}")
    print(f"offsets (channel, dy, dx): {list(pattern.offsets)}")
    theta_true = true_offset_values(pattern)
    maps = theta_true[:, :, None, None].expand(-1, -1, side, side)
    L_true_sparse = pattern.matrix(pattern.values_from_maps(maps))
    L_true = L_true_sparse.to_dense()
    x = SparseMultivariateNormal(torch.zeros(pattern.n, dtype=F64), precision_tril=L_true_sparse).sample((images,))
    print(f"n = {pattern.n} variables (2 × {side} × {side}), {images} sampled images, L has {pattern.nnz} entries\n")

    diagonal = pattern.diagonal_mask
    start_diagonal = -0.5 * x.var(0).log()  # log of 1/sd: the independent-pixel estimate, a start for all fits

    def positive_diagonal(values: torch.Tensor) -> torch.Tensor:
        return torch.where(diagonal, values.exp(), values)

    diag_pattern = image_factor_pattern((side, side), CHANNELS, radius=0.0)
    models = {
        "independent pixels": (diag_pattern, lambda raw: raw.exp(), start_diagonal),
        "stationary factor": (
            pattern,
            lambda raw: positive_diagonal(pattern.values_from_maps(raw[:, :, None, None].expand(-1, -1, side, side))),
            torch.zeros(pattern.num_offsets, CHANNELS, dtype=F64),
        ),
        "free factor": (
            pattern,
            positive_diagonal,
            torch.where(diagonal, start_diagonal[pattern.map_index % pattern.n], 0.0),
        ),
    }
    print(f"{'model':<20} {'parameters':>10} {'rel. Frobenius error of Q':>26} {'KL(true || learned)':>20} "
          f"{'p / (2N)':>9} {'fit, s':>7}")  # fmt: skip
    learned = {}
    for name, (model_pattern, to_values, raw) in models.items():
        start = time.perf_counter()
        values = fit(model_pattern, x, to_values, raw, iterations)
        seconds = time.perf_counter() - start
        if model_pattern is diag_pattern:  # the diagonal model's values, placed in the factor's pattern
            values = torch.zeros(pattern.nnz, dtype=F64).masked_scatter(diagonal, values)
        error, kl, Q_hat = checks(pattern, L_true, values)
        learned[name] = Q_hat
        p = raw.numel()
        print(f"{name:<20} {p:>10,} {error:>26.4f} {kl:>14.3f} nats {p / (2 * images):>9.3f} {seconds:>7.1f}")
    plot(pattern, L_true @ L_true.T, learned, side, args.output)


def plot(pattern: ImageFactorPattern, Q: torch.Tensor, learned: dict, side: int, output: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = {"true": Q, **learned}
    centre = (side // 2) * side + side // 2  # the centre pixel of channel 0
    fig, axes = plt.subplots(2, len(columns), figsize=(3.6 * len(columns), 5.6), layout="constrained")
    sd_true = torch.linalg.inv(Q).diagonal().sqrt().reshape(CHANNELS, side, side)
    for col, (name, precision) in enumerate(columns.items()):
        sd = torch.linalg.inv(precision).diagonal().sqrt().reshape(CHANNELS, side, side)
        image = torch.cat(list(sd), dim=1)  # the two channels side by side
        ax = axes[0, col]
        shown = ax.imshow(image.numpy(), vmin=0.9 * float(sd_true.min()), vmax=1.1 * float(sd_true.max()))
        ax.set_title(f"{name}: marginal sd", fontsize=9)
        row = precision[centre].reshape(CHANNELS, side, side)
        window = slice(side // 2 - 3, side // 2 + 4)
        crop = torch.cat([row[c, window, window] for c in range(CHANNELS)], dim=1)
        ax2 = axes[1, col]
        bound = float(Q[centre].abs().max())
        shown2 = ax2.imshow(crop.numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound)
        ax2.set_title(f"{name}: Q row of the centre pixel", fontsize=9)
        for a in (ax, ax2):
            a.set_xticks([])
            a.set_yticks([])
    fig.colorbar(shown, ax=axes[0, :], shrink=0.8, label="sd (channel 0 | channel 1)")
    fig.colorbar(shown2, ax=axes[1, :], shrink=0.8, label="Q[centre, ·], 7 × 7 window")
    fig.suptitle(f"learned sparse precision factors, {CHANNELS} × {side} × {side} image", fontsize=11)
    fig.savefig(output, dpi=100)
    print(f"Figure written to {output}")


if __name__ == "__main__":
    main()
