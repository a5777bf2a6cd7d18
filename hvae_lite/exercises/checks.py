"""One checker per exercise: run the student's function on several inputs, compare with the reference.

Each checker tries ordinary inputs and edge cases (a batch of one, large log-variances, k = 1,
...), and names the typical mistakes it recognises: each `Diagnosis` is a wrong answer computed
on the same input, so a match says exactly what went wrong.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ..blocks import Branch
from ..config import get_preset
from ..model import HVAE, HVAEOutput
from . import reference as ref
from .feedback import Diagnosis, Mistake, as_tensor, call, checker, expect_close, fmt_shape


def _describe(name: str, *tensors: Tensor) -> str:
    return f"{name} (shapes " + ", ".join(fmt_shape(t.shape) for t in tensors) + ")"


@checker("reparameterisation trick", "correct: z = mean + exp(logvar / 2) * eps, and gradients reach mean "
                                     "and logvar through it.")
def check_reparameterize(student_fn: Callable) -> None:
    cases = {
        "a batch of 4 vectors": (4, 3),
        "a batch of one": (1, 5),
        "latent maps": (2, 3, 4, 4),
    }
    for name, shape in cases.items():
        mean, logvar, eps = torch.randn(shape), 2 * torch.randn(shape), torch.randn(shape)
        _check_reparameterize_case(student_fn, mean, logvar, eps, _describe(name, mean))
    large = torch.tensor([[12.0, -12.0, 0.0]])
    _check_reparameterize_case(student_fn, torch.zeros(1, 3), large, torch.ones(1, 3),
                               "large log-variances (logvar = 12, -12, 0)")
    _check_gradients(student_fn)


def _check_reparameterize_case(student_fn: Callable, mean: Tensor, logvar: Tensor, eps: Tensor, case: str) -> None:
    got = call(student_fn, mean, logvar, eps, case=case)
    again = call(student_fn, mean, logvar, eps, case=case)
    if isinstance(got, Tensor) and isinstance(again, Tensor) and got.shape == again.shape \
            and not torch.allclose(got, again, rtol=0, atol=0, equal_nan=True):  # a NaN is the same NaN
        raise Mistake("your function gives a different z each time for the same eps: use the `eps` argument "
                      "instead of drawing new noise inside the function.")
    expect_close(got, ref.reparameterize(mean, logvar, eps), case, what="your z",
                 nonfinite_hint="A square root or log of the log-variance? logvar can be negative; the standard "
                                "deviation is exp(logvar / 2).", diagnoses=[
        Diagnosis(mean + torch.exp(logvar) * eps, "you multiplied eps by the variance exp(logvar); the standard "
                                                  "deviation is exp(logvar / 2)."),
        Diagnosis(mean + logvar * eps, "you used the log-variance itself as the standard deviation; "
                                       "std = exp(logvar / 2)."),
        Diagnosis(torch.exp(0.5 * logvar) * eps, "you forgot to add the mean."),
        Diagnosis(mean * torch.exp(0.5 * logvar) * eps, "the mean is added to std * eps, not multiplied."),
    ])


def _check_gradients(student_fn: Callable) -> None:
    mean = torch.randn(3, 2, requires_grad=True)
    logvar = torch.randn(3, 2, requires_grad=True)
    eps = torch.randn(3, 2)
    case = "the gradient test"
    z = call(student_fn, mean, logvar, eps, case=case)
    as_tensor(z, "your z", case)  # only checks that z is a tensor
    if not z.requires_grad:
        raise Mistake("no gradient flows from z back to mean and logvar: the trick exists so that it can. "
                      "Don't detach, don't go through numpy, and don't wrap the code in torch.no_grad().")
    z.sum().backward()
    if mean.grad is None or logvar.grad is None:
        raise Mistake("z depends on only one of mean and logvar: both must shape the sample.")


@checker("Gaussian KL divergence", "correct: your analytic KL matches the reference on every case, including "
                                   "identical distributions (KL = 0) and large log-variances.")
def check_gaussian_kl(student_fn: Callable) -> None:
    same = (torch.randn(2, 5), torch.randn(2, 5))
    _check_kl_case(student_fn, same, same, "q equal to p (the KL must be 0)")
    shapes = {"a batch of 4 vectors": (4, 3), "a batch of one": (1, 6), "latent maps": (2, 3, 4, 4)}
    for name, shape in shapes.items():
        q = (torch.randn(shape), torch.randn(shape))
        p = (torch.randn(shape), torch.randn(shape))
        _check_kl_case(student_fn, q, p, _describe(name, q[0]))
    zeros = torch.zeros(4, 3)
    _check_kl_case(student_fn, (torch.randn(4, 3), zeros), (zeros, zeros), "a standard normal prior p = N(0, I)")
    large = torch.tensor([[15.0, -15.0, 10.0]])
    _check_kl_case(student_fn, (torch.ones(1, 3), large), (zeros[:1], -large),
                   "large log-variances (logvar_q = 15, -15, 10; logvar_p the opposite)")


def _check_kl_case(student_fn: Callable, q: tuple[Tensor, Tensor], p: tuple[Tensor, Tensor], case: str) -> None:
    (mq, lq), (mp, lp) = q, p
    got = call(student_fn, mq, lq, mp, lp, case=case)

    def summed(kl: Tensor) -> Tensor:
        return kl.flatten(1).sum(1)

    d2 = (mq - mp) ** 2
    expect_close(got, ref.gaussian_kl(mq, lq, mp, lp), case, what="your KL", shape_name="(B,)", rtol=1e-3,
                 shape_hint="Sum the KL over every dimension except the batch (dim 0), e.g. kl.flatten(1).sum(1).",
                 nonfinite_hint="Did you take the log (or square root) of a log-variance? logvar can be "
                                "negative; the variance is exp(logvar).",
                 explain=lambda kl: f"it is negative ({kl.min().item():.4g}), and a KL divergence never is." if
                 (kl < -1e-5).any() else None,
                 diagnoses=[
        Diagnosis(summed(0.5 * (torch.exp(lp) - torch.exp(lq) + (torch.exp(lq) + d2) / torch.exp(lp) - 1)),
                  "you used the variance where the log-variance belongs? The first term is "
                  "logvar_p - logvar_q (the log of the variance ratio)."),
        Diagnosis(summed(0.5 * (lp - lq + (lq + d2) / lp - 1)),
                  "you used the log-variance where the variance belongs? In the second term the variances "
                  "are exp(logvar)."),
        Diagnosis(summed(0.5 * (lp - lq + (torch.exp(0.5 * lq) + d2) / torch.exp(0.5 * lp) - 1)),
                  "you used standard deviations exp(logvar / 2) where the variances exp(logvar) belong."),
        Diagnosis(summed(0.5 * (lq - lp + (torch.exp(lp) + d2) / torch.exp(lq) - 1)),
                  "you computed KL(p || q); the posterior q comes first: KL(q || p)."),
        Diagnosis(summed(lp - lq + (torch.exp(lq) + d2) / torch.exp(lp) - 1), "you forgot the factor 1/2."),
        Diagnosis(summed(0.5 * (lp - lq + (torch.exp(lq) + d2) / torch.exp(lp))), "you forgot the -1 inside."),
        Diagnosis(summed(0.5 * (lp - lq + torch.exp(lq) / torch.exp(lp) + d2 - 1)),
                  "the squared mean difference must be divided by the prior's variance too."),
        Diagnosis(ref.gaussian_kl(mq, lq, mp, lp) / mq[0].numel(),
                  "you averaged the KL over the dimensions; the dimensions are independent, so their KLs add "
                  "up: sum over every dimension but the batch (kl.flatten(1).sum(1))."),
    ])


@checker("ELBO of a batch", "correct: log p(x | z) summed over pixels (computed stably from logits) minus the "
                            "KL of every layer.")
def check_bernoulli_elbo(student_fn: Callable) -> None:
    for name, (batch, layers) in {"a batch of 3 images, 4 layers": (3, 4), "a batch of one, 1 layer": (1, 1)}.items():
        logits = 3 * torch.randn(batch, 1, 28, 28)
        x = torch.bernoulli(torch.full((batch, 1, 28, 28), 0.3))
        kl = 5 * torch.rand(batch, layers)
        _check_elbo_case(student_fn, logits, x, kl, _describe(name, logits, kl))
    logits = torch.tensor([-200.0, 200.0, -50.0, 50.0]).view(1, 1, 2, 2)
    x = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    _check_elbo_case(student_fn, logits, x, torch.zeros(1, 2), "very confident wrong logits (+-200, +-50)")


def _check_elbo_case(student_fn: Callable, logits: Tensor, x: Tensor, kl: Tensor, case: str) -> None:
    got = call(student_fn, logits, x, kl, case=case)

    def log_px(lg: Tensor) -> Tensor:
        return -F.binary_cross_entropy_with_logits(lg, x, reduction="none").flatten(1)

    want = ref.bernoulli_elbo(logits, x, kl)
    expect_close(got, want, case, what="your ELBO", shape_name="(B,)", rtol=1e-4, atol=1e-3,
                 shape_hint="One ELBO per image: sum over each image's pixels (and over the layers' KLs), "
                            "not over the batch.",
                 nonfinite_hint="log(sigmoid(logit)) under/overflows for large logits: compute log p(x | z) "
                                "from the logits, e.g. with F.binary_cross_entropy_with_logits.",
                 explain=lambda elbo: "it is positive, but log p(x | z) of binary pixels is at most 0 and the KL "
                 "is at least 0, so the ELBO is never above 0." if (elbo > 1e-4).any() else None,
                 diagnoses=[
        Diagnosis(log_px(logits).sum(1) + kl.sum(1), "the KL is subtracted, not added: ELBO = log p(x|z) - KL."),
        Diagnosis(-want, "you returned the negative ELBO (the loss); the ELBO is log p(x|z) - KL."),
        Diagnosis(log_px(logits).mean(1) - kl.sum(1), "you averaged over the pixels; log p(x | z) sums them."),
        Diagnosis(log_px(torch.sigmoid(logits)).sum(1) - kl.sum(1),
                  "you applied the sigmoid twice: binary_cross_entropy_with_logits wants the logits themselves."),
        Diagnosis(log_px(logits).sum(1) - kl.mean(1), "sum the KL over the layers (each layer adds its own KL)."),
        Diagnosis(log_px(logits).sum(1), "you left out the KL term."),
        Diagnosis(log_px(logits).mean() - kl.sum(1), "binary_cross_entropy_with_logits with its default "
                  "reduction='mean' averages over every pixel of the whole batch: pass reduction='none', then "
                  "sum each image's pixels."),
        Diagnosis(log_px(logits).sum() - kl.sum(1), "reduction='sum' adds up the pixels of the whole batch, not "
                  "of each image: pass reduction='none', then sum over each image's pixels (flatten(1).sum(1))."),
        Diagnosis(log_px(logits).sum(1) - kl.sum(), "you summed the KL over the batch too: each image pays its "
                  "own KL, kl.sum(1)."),
    ])


@checker("IWAE-k bound", "correct: log-mean-exp of the weights over the k samples, computed stably with "
                         "logsumexp.")
def check_iwae_bound(student_fn: Callable) -> None:
    cases = {
        "k = 5 samples of a batch of 4": -100 + 3 * torch.randn(5, 4),
        "k = 1 (the bound is then the log-weight itself)": -90 + torch.randn(1, 3),
        "a batch of one, k = 10": -80 + 5 * torch.randn(10, 1),
        "log-weights near -1000 (exp underflows to 0)": -1000 + 2 * torch.randn(6, 2),
        "log-weights near +200 (exp overflows)": 200 + 2 * torch.randn(3, 2),
    }
    for case, log_w in cases.items():
        got = call(student_fn, log_w, case=case)
        k = log_w.shape[0]
        expect_close(got, ref.iwae_bound(log_w), f"{case} (log_weights shape {fmt_shape(log_w.shape)})",
                     what="your bound", shape_name="(B,)",
                     shape_hint="Reduce over the k samples (dim 0), not over the batch.",
                     nonfinite_hint="exp() of large or very negative log-weights under/overflows: use "
                                    "torch.logsumexp, which subtracts the maximum first.",
                     diagnoses=[
            Diagnosis(log_w.mean(0), "you averaged the log-weights: that is the ELBO, the looser bound. IWAE "
                                     "averages the weights themselves: log (1/k) sum exp(log w)."),
            Diagnosis(torch.logsumexp(log_w, 0), "you forgot to subtract log k: logsumexp sums the weights, "
                                                 "the bound averages them."),
            Diagnosis(log_w.max(0).values, "you took the maximum log-weight; logsumexp is its smooth version, "
                                           "plus the other weights' share."),
            Diagnosis(torch.logsumexp(log_w, 0) - k, "subtract log(k), not k."),
            Diagnosis(torch.logsumexp(log_w, 0) / k, "you divided the logsumexp by k; averaging the weights "
                                                     "inside the log subtracts log k outside it."),
            Diagnosis(torch.logsumexp(log_w, 0) - math.log(log_w.shape[1]),
                      "you subtracted the log of the batch size; k is the number of samples, log_weights.shape[0]."),
        ])


@checker("causal mask (masked convolution)", "correct: type A hides the centre pixel and everything after it in "
                                             "raster order; type B lets the centre through.")
def check_causal_mask(student_fn: Callable) -> None:
    for size in (3, 5, 1, 7):
        for mask_type in ("A", "B"):
            case = f"kernel_size={size}, mask_type={mask_type!r}"
            got = call(student_fn, size, mask_type, case=case)
            if isinstance(got, np.ndarray):
                got = torch.from_numpy(got)
            want = ref.causal_mask(size, mask_type)
            other = ref.causal_mask(size, "B" if mask_type == "A" else "A")
            centre = size // 2
            future, below = want.clone(), want.clone()
            future[centre, centre + 1:] = 1
            below[centre + 1:] = 1
            diagnoses = [
                Diagnosis(other, "your type-A mask includes the centre pixel: each pixel would see its own value, "
                                 "the one it is asked to predict." if mask_type == "A" else
                                 "type B must include the centre: by then the centre position holds features "
                                 "of earlier pixels only."),
                Diagnosis(want.T, "your mask is transposed: raster order runs left to right along a row, then "
                                  "down to the next row."),
                Diagnosis(future, "the centre row must hide the pixels to the right of the centre: they come later "
                                  "in raster order."),
                Diagnosis(below, "your mask sees the rows below the centre: they come later in raster order."),
                Diagnosis(torch.ones(size, size) - want, "your mask is inverted: 1 marks the pixels a position may "
                                                         "see (above, and left on its own row)."),
            ]
            expect_close(got, want, case, what="your mask", diagnoses=diagnoses)


def _branch(in_channels: int, width: int, out_channels: int) -> nn.Module:
    """A residual branch as in the kit, with full-size initial weights so its output is not small."""
    return Branch(in_channels, width, out_channels, out_scale=1.0)


@checker("residual top-down update", "correct: h_i = h_{i-1} + g([h_{i-1}, z_i]), the deterministic path from "
                                     "every latent to the output.")
def check_top_down_update(student_fn: Callable) -> None:
    width, channels = 6, 2
    g = _branch(width + channels, width, width)
    for name, (batch, res) in {"a batch of 2 at 7x7": (2, 7), "a batch of one at 14x14": (1, 14)}.items():
        h, z = torch.randn(batch, width, res, res), torch.randn(batch, channels, res, res)
        case = _describe(name, h, z)
        with torch.no_grad():
            got = call(student_fn, h, z, g, case=case,
                       error_hint="concatenate h and z along the channel dimension (dim=1), then apply g.")
            expect_close(got, ref.top_down_update(h, z, g), case, what="your new h", shape_name="h's shape",
                         diagnoses=[
                Diagnosis(g(torch.cat([h, z], 1)), "you returned g([h, z]) alone: the update is residual, "
                                                   "h_i = h_{i-1} + g(...). That sum is the deterministic path."),
                Diagnosis(h + g(torch.cat([z, h], 1)), "concatenate h first, then z: [h, z], the order g expects."),
                Diagnosis(g(torch.cat([h, z], 1)) - h, "add h, don't subtract it."),
            ])


@checker("inference merge step", "correct: m_i = m_{i-1} + r([h, b, m_{i-1}]), and the posterior's mean and "
                                 "log-variance come from the new merge state.")
def check_merge_step(student_fn: Callable) -> None:
    width, channels = 6, 2
    r = _branch(3 * width, width, width)
    head = nn.Conv2d(width, 2 * channels, 3, padding=1)
    for name, (batch, res) in {"a batch of 2 at 7x7": (2, 7), "a batch of one at 14x14": (1, 14)}.items():
        h, b, m = (torch.randn(batch, width, res, res) for _ in range(3))
        case = _describe(name, h, b, m)
        with torch.no_grad():
            got = call(student_fn, h, b, m, r, head, case=case,
                       error_hint="concatenate [h, b, m] along the channel dimension (dim=1) before r.")
            if not isinstance(got, tuple | list) or len(got) != 3:
                raise Mistake(f"return three things, (m_new, mean, logvar), for {case}; got {type(got).__name__}.")
            m_new, mean, logvar = got
            want_m, want_mean, want_logvar = ref.merge_step(h, b, m, r, head)
            expect_close(m_new, want_m, case, what="your new merge state m", shape_name="m's shape", diagnoses=[
                Diagnosis(r(torch.cat([h, b, m], 1)), "you returned r([h, b, m]) alone: the merge state is "
                                                      "updated residually, m_i = m_{i-1} + r(...)."),
                Diagnosis(m + r(torch.cat([b, h, m], 1)), "concatenate in the order [h, b, m]."),
                Diagnosis(m + r(torch.cat([m, h, b], 1)), "concatenate in the order [h, b, m]."),
            ])
            old_mean, old_logvar = head(m).chunk(2, dim=1)
            if isinstance(mean, Tensor) and mean.shape == old_mean.shape and torch.allclose(mean, old_mean, atol=1e-4):
                raise Mistake(f"for {case}, your posterior comes from the old merge state: apply head to m_new.")
            expect_close(mean, want_mean, case, what="your posterior mean", diagnoses=[
                Diagnosis(want_logvar, "mean and logvar are swapped: the first half of head's channels is the "
                                       "mean."),
            ])
            expect_close(logvar, want_logvar, case, what="your posterior log-variance", diagnoses=[
                Diagnosis(torch.exp(want_logvar), "return the log-variance itself, not exp(logvar)."),
            ])


@checker("clustering accuracy", "correct: each cluster is matched to at most one label (the best one-to-one "
                                "matching), and the accuracy is a fraction in [0, 1].")
def check_clustering_accuracy(student_fn: Callable) -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 200)
    permuted = rng.permutation(10)[labels]
    noisy = np.where(rng.random(200) < 0.3, rng.integers(0, 10, 200), permuted)
    cases = {
        "clusters that are the labels under other names (accuracy 1)": (permuted, labels),
        "10 clusters, 10 labels, 30% noise": (noisy, labels),
        "15 clusters for 10 labels": (rng.integers(0, 15, 200), labels),
        "3 clusters for 10 labels": (rng.integers(0, 3, 200), labels),
        "two clusters that both hold mostly label 0": (np.array([0, 0, 0, 1, 1, 1, 2]), np.array([0, 0, 1, 0, 0, 1, 1])),
        "a single example": (np.array([4]), np.array([7])),
        "torch tensors": (torch.from_numpy(noisy), torch.from_numpy(labels)),
    }
    for case, (assignments, truth) in cases.items():
        got = call(student_fn, assignments, truth, case=case)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise Mistake(f"return a single number for {case}, got {type(got).__name__}.") from None
        want = ref.clustering_accuracy(assignments, truth)
        if math.isclose(got, want, abs_tol=1e-6):
            continue
        a, t = np.asarray(assignments), np.asarray(truth)
        purity = sum(np.bincount(t[a == c]).max() for c in np.unique(a)) / len(t)
        if math.isclose(got, 100 * want, abs_tol=1e-4):
            raise Mistake(f"for {case}: return a fraction in [0, 1], not a percentage.")
        if math.isclose(got, float((a == t).mean()), abs_tol=1e-6):
            raise Mistake(f"for {case}, you compared cluster ids with labels directly; cluster 3 need not mean "
                          "digit 3. Match clusters to labels first (scipy.optimize.linear_sum_assignment).")
        if math.isclose(got, purity, abs_tol=1e-6):
            raise Mistake(f"for {case}, several clusters were matched to the same label (majority vote): the "
                          "matching must be one-to-one (scipy.optimize.linear_sum_assignment).")
        if math.isclose(got, want * len(t), abs_tol=1e-4):
            raise Mistake(f"for {case}: divide the number of matched examples by the number of examples.")
        counts = np.zeros((a.max() + 1, t.max() + 1))
        np.add.at(counts, (a, t), 1)
        rows, cols = linear_sum_assignment(counts)  # the minimum-cost matching: the wrong way round
        if math.isclose(got, counts[rows, cols].sum() / len(t), abs_tol=1e-6):
            raise Mistake(f"for {case}, your matching found the *fewest* examples right: linear_sum_assignment "
                          "minimises the total by default; pass maximize=True (or give it -counts).")
        raise Mistake(f"for {case}: expected {want:.4f}, got {got:.4f}.")


class _KnownDecoder(nn.Module):
    """A stand-in model whose p(x | z) is known exactly: logits = a fixed pattern in [-2.5, 2.5] + 1.5 * (2x - 1).

    Its pixel probabilities lie between 0.02 and 0.98, so a fill that thresholds them, pastes
    them in, or reads the wrong image gives a different average than correct Bernoulli draws.
    """

    def __init__(self):
        super().__init__()
        self.pattern = torch.rand(1, 1, 28, 28) * 5 - 2.5

    def forward(self, x: Tensor, *args, **kwargs) -> HVAEOutput:
        logits = self.pattern + 1.5 * (2 * x - 1)
        zero = x.new_zeros(x.shape[0])
        return HVAEOutput(elbo=zero, recon=zero, kl=zero[:, None], log_weight=zero, params=logits, layers=[])


@checker("one step of iterative imputation", "correct: observed pixels kept, missing ones redrawn as 0/1 "
                                             "samples from the model's p(x | z).")
def check_imputation_step(student_fn: Callable) -> None:
    observed = torch.ones(1, 1, 28, 28)
    observed[..., 8:20, 8:20] = 0
    image = (torch.rand(1, 1, 28, 28) < 0.3).float()
    _check_imputation_basics(student_fn, HVAE(get_preset("tiny")).eval(), image.repeat(4, 1, 1, 1),
                             observed.repeat(4, 1, 1, 1), "a tiny HVAE and 4 images with the centre missing")
    n = 400  # one image, many copies: the fills' average estimates the pixel probabilities
    model, batch, mask = _KnownDecoder(), image.repeat(n, 1, 1, 1), observed.repeat(n, 1, 1, 1)
    case = f"a model whose pixel probabilities we know, and {n} copies of one image"
    got = _check_imputation_basics(student_fn, model, batch, mask, case)
    want = torch.sigmoid(model(batch).params[0])
    missing = observed[0] == 0
    gap = (got.mean(0) - want)[missing].abs().mean().item()
    if gap > 0.06:
        raise Mistake(f"for {case}, your filled pixels do not follow the model's probabilities (average gap "
                      f"{gap:.2f}): feed the current x to the model, and draw each missing pixel with "
                      "torch.bernoulli(torch.sigmoid(model(x).params)).")


def _check_imputation_basics(student_fn: Callable, model: nn.Module, x: Tensor, observed: Tensor, case: str) -> Tensor:
    """Shape, observed pixels untouched, missing ones binary and redrawn; returns the student's batch."""
    got = as_tensor(call(student_fn, model, x, observed, case=case), "your imputed batch", case)
    if got.shape != x.shape:
        raise Mistake(f"wrong shape for {case}: expected x's shape {fmt_shape(x.shape)}, got {fmt_shape(got.shape)}.")
    seen, missing = observed.bool(), ~observed.bool()
    if not torch.equal(got[seen], x[seen]):
        raise Mistake(f"for {case}, you changed observed pixels: keep them exactly (x where observed is 1, the "
                      "new draw where it is 0).")
    fill = got[missing]
    if not ((fill == 0) | (fill == 1)).all():
        raise Mistake(f"for {case}, your missing pixels are not 0 or 1: draw them from the Bernoulli "
                      "probabilities (torch.bernoulli), don't paste in the probabilities.")
    if torch.equal(fill, x[missing]):
        raise Mistake(f"for {case}, your missing pixels did not change: replace them with a draw from p(x | z).")
    return got


@checker("free bits", "correct: each layer is charged max(its batch-mean KL, the floor); below the floor its "
                      "KL gets no gradient, so nothing pushes the layer to switch off.")
def check_free_bits_kl(student_fn: Callable) -> None:
    cases = {
        "a batch of 4 and 5 layers, some below the floor": (torch.rand(4, 5) * 2, 0.5),
        "a batch of one": (torch.tensor([[0.1, 3.0, 0.4]]), 0.5),
        "floor 0 (no free bits: the plain batch-mean KL)": (torch.rand(3, 4) * 2, 0.0),
        "one image below the floor in a layer whose mean is above it": (torch.tensor([[0.0, 0.2], [2.0, 0.2]]), 0.5),
    }
    for case, (kl, floor) in cases.items():
        got = call(student_fn, kl, floor, case=f"{case} (floor {floor})")
        expect_close(got, ref.free_bits_kl(kl, floor), f"{case} (kl {fmt_shape(kl.shape)}, floor {floor})",
                     what="your KL term", shape_name="(n_layers,)",
                     shape_hint="Average over the batch (dim 0) and keep one number per layer.", diagnoses=[
            Diagnosis(kl.clamp(min=floor).mean(0), "you applied the floor to each image, then averaged; free bits "
                                                   "floor the batch-mean KL of each layer (average first, then max)."),
            Diagnosis(kl.mean(0), "you left out the floor: charge max(mean KL, floor)."),
            Diagnosis(kl.mean(0).clamp(max=floor), "you capped the KL at the floor (min) instead of flooring it (max)."),
            Diagnosis(kl.mean(0) - floor, "you subtracted the floor; free bits charge max(mean KL, floor)."),
            Diagnosis(kl.sum(0).clamp(min=floor), "you summed the KL over the batch; the floor applies to each "
                                                  "layer's batch *mean* (kl.mean(0))."),
            Diagnosis(kl.clamp(min=floor).sum(0), "you floored each image and summed over the batch; free bits "
                                                  "floor each layer's batch mean: average first, then max."),
        ])
    kl = torch.tensor([[0.2, 3.0], [0.4, 1.0]], requires_grad=True)  # layer 0 below a 0.5 floor, layer 1 above
    got = call(student_fn, kl, 0.5, case="a KL that needs gradients")
    if not isinstance(got, Tensor) or not got.requires_grad:
        as_tensor(got, "your KL term", "a KL that needs gradients")  # None or not a tensor: say so first
        raise Mistake("no gradient flows through your KL term: compute it with torch operations on `kl` (no .item(), "
                      "no .detach()).")
    got.sum().backward()
    if not torch.allclose(kl.grad, torch.tensor([[0.0, 0.5], [0.0, 0.5]])):
        raise Mistake(f"the gradient is wrong: a layer below the floor should get none, a layer above it 1/B per image; "
                      f"got {kl.grad.tolist()}.")


@checker("how far a stack of masked convolutions reads", "correct: each masked 3x3 layer reaches one row further "
                                                         "up, so n layers read n rows above the pixel.", function=False)
def check_reach_prediction(prediction: dict | Callable[[], dict]) -> None:
    """Exercise 2.3b: `prediction` (or a function returning it) maps a number of masked 3x3 layers
    (1, 2, 3; type A, then B) to the rows above pixel j that its logit can read. The truth is measured with the reference mask
    (`demos.causal_reach`); the student's own measurement is in their notebook."""
    from .demos import causal_reach, rows_above  # demos import this module's neighbours, not the other way

    if callable(prediction):  # a function returning the prediction, as the exercise notebook writes it
        prediction = call(prediction, case="your prediction")
    if not isinstance(prediction, dict):
        raise Mistake(f"give your prediction as a dict {{layers: rows above}}, e.g. {{1: 0, 2: 0, 3: 0}}; got "
                      f"{type(prediction).__name__}.")
    if sorted(prediction) != [1, 2, 3]:
        raise Mistake(f"predict for 1, 2 and 3 layers: the keys must be 1, 2, 3, got {sorted(prediction)}.")
    truth = {n: rows_above(causal_reach(ref.causal_mask, ("A",) + ("B",) * (n - 1))) for n in (1, 2, 3)}
    said = {}
    for n, value in prediction.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise Mistake(f"for {n} layers give a whole number of rows, got {value!r}.")
        said[n] = int(value)
    if said == truth:
        return
    if said == {n: 3 * n for n in truth}:
        raise Mistake("a 3x3 kernel does not reach 3 rows up: its centre sits in the middle row, so it sees one "
                      "row above (kernel_size // 2), and each layer adds that much.")
    if said == {n: 2 * n for n in truth}:
        raise Mistake("the mask hides every row below the centre: a 3x3 layer reaches 1 row up (not 2), and each "
                      "layer adds one.")
    if said == {n: n - 1 for n in truth}:
        raise Mistake("the first (type A) layer also reads the row above: it hides only the centre and what comes "
                      "after it, so one layer already reaches one row up.")
    if len(set(said.values())) == 1:
        raise Mistake("the reach grows with depth: layer 2 reads the features of layer 1, which already saw one "
                      "row up, and reaches one row further.")
    wrong = [n for n in truth if said[n] != truth[n]]
    raise Mistake(f"for {', '.join(map(str, wrong))} layer(s) the logit reads "
                  f"{', '.join(str(truth[n]) for n in wrong)} row(s) above; run your measurement below and count.")
