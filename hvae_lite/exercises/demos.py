"""Exercises that matter: a student's function put to work in a trained model or a short training run.

- `merge_step_in(model, merge_step)`: inside the block, every latent layer's merge update runs the
  student's `merge_step` (exercise 2.2), so reconstructions and the ELBO show what it does.
- `train_with_kl_term(kl_term, ...)`: the kit's Trainer, with the student's free-bits KL term
  (exercise 4.1) in place of the kit's.
- `recipe_challenge(changes)`: the open exercise 4.2: does a change of the training recipe lift the
  held-out ELBO of a small model by at least `min_gain` nats at the same budget?
- `gradient_estimates`, `path_gradients`, `causal_reach`: the small experiments of exercises 1.1b,
  2.1b and 2.3b, each run with the student's own function.
- `ready(check, fn)`: a demonstration runs only once the student's function passes its check, so
  a notebook still runs from top to bottom while answers are unfinished.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..blocks import Branch
from ..config import HVAEConfig, get_preset
from ..data import DataSplit, load_embedded_mnist
from ..errors import InputError
from ..evaluate import heldout_elbo
from ..model import HVAE
from ..recipes import CHALLENGE_BASELINE
from ..results import paired_difference, verdict
from ..train import TrainConfig, Trainer
from ..validate import check_float, check_int, check_seed
from .feedback import CheckResult, Mistake, call


def _check_function(fn: Any, name: str) -> None:
    if not callable(fn):
        raise InputError(f"pass your {name} function itself (the name, without calling it), got {type(fn).__name__}")


def _run_student(fn: Callable, *args: Any, case: str) -> Any:
    """The student's function on `args`; an exception in it becomes an InputError saying what happened."""
    try:
        return call(fn, *args, case=case)
    except Mistake as mistake:
        raise InputError(str(mistake)) from None


def _student_tensor(value: Any, name: str, shape: tuple[int, ...]) -> Tensor:
    if not isinstance(value, Tensor) or tuple(value.shape) != shape:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise InputError(f"your {name} should return a tensor of shape {shape}, got {got}")
    return value


class _StudentMerge(nn.Module):
    """Stands in for a layer's merge branch r_i: the model computes m + self([h, b, m]), so this
    returns the student's m_i minus m (the model adds m back)."""

    def __init__(self, branch: nn.Module, head: nn.Module, merge_step: Callable):
        super().__init__()
        self.branch, self.head, self.merge_step = branch, head, merge_step

    def forward(self, stacked: Tensor) -> Tensor:  # (B, 3W, r, r) -> (B, W, r, r)
        h, b, m = stacked.chunk(3, dim=1)
        m_new, _, _ = self.merge_step(h, b, m, self.branch, self.head)
        return m_new - m


@contextlib.contextmanager
def merge_step_in(model: HVAE, merge_step: Callable) -> Iterator[HVAE]:
    """Inside the block, each latent layer of `model` updates its merge state with
    `merge_step(h, b, m, r, head) -> (m_new, mean, logvar)`; the trained weights r and head are the
    model's own. The original merge branches are restored on exit, even after an error."""
    if not isinstance(model, HVAE) or not model.config.inference_merge:
        raise InputError("merge_step_in needs an HVAE with the inference merge path (inference_merge=True)")
    _check_function(merge_step, "merge_step")
    originals = [layer.merge for layer in model.layers]
    try:
        for layer, branch in zip(model.layers, originals):
            layer.merge = _StudentMerge(branch, layer.posterior_head, merge_step)
        yield model
    finally:
        for layer, branch in zip(model.layers, originals):
            layer.merge = branch


class _StudentKLTrainer(Trainer):
    """The kit's Trainer with the KL part of the loss computed by a student's function."""

    def __init__(self, kl_term: Callable, *args: Any, **kwargs: Any):
        self.kl_term = kl_term
        super().__init__(*args, **kwargs)

    def _loss(self, x: Tensor, observed: Tensor | None, beta: float, free_bits: float):
        out = self.model(x, observed)
        loss = out.recon.mean() + beta * self.kl_term(out.kl, free_bits).sum()
        return loss, out.elbo.detach(), out.kl.detach()


def small_data(n_train: int = 1000, n_test: int = 200) -> DataSplit:
    """The first digits of the embedded split: a training run of seconds on a laptop CPU."""
    return load_embedded_mnist(seed=0).subset(n_train, n_test)


def train_with_kl_term(kl_term: Callable, train_config: TrainConfig, data: DataSplit,
                       config: HVAEConfig | None = None) -> Trainer:
    """Train `config` (default: the tiny preset) with loss = recon + beta * kl_term(kl, floor).sum(),
    kl (B, n_layers) and floor = train_config.free_bits; returns the fitted Trainer."""
    _check_function(kl_term, "kl_term")
    if not isinstance(train_config, TrainConfig):
        raise InputError(f"train_config must be a TrainConfig, got {type(train_config).__name__}")
    if not isinstance(data, DataSplit):
        raise InputError(f"data must be a DataSplit (e.g. small_data()), got {type(data).__name__}")
    if config is not None and not isinstance(config, HVAEConfig):
        raise InputError(f"config must be an HVAEConfig (e.g. get_preset('tiny')) or None, got {type(config).__name__}")
    trainer = _StudentKLTrainer(kl_term, config or get_preset("tiny"), train_config, data, progress=False)
    trainer.fit()
    return trainer


_FIXED = ("epochs", "batch_size", "seed", "device", "eval_seed", "init_from", "mixture_init_epoch")
CHALLENGE_SEEDS = (0, 1, 2)


def recipe_challenge(changes: Mapping[str, Any] | Callable[[], Mapping[str, Any]], min_gain: float = 5.0,
                     data: DataSplit | None = None, quiet: bool = False,
                     seeds: Sequence[int] = CHALLENGE_SEEDS) -> CheckResult:
    """Train the tiny model with CHALLENGE_BASELINE and with `changes` applied to it (TrainConfig
    fields, e.g. {"kl_balance": True}, or a function returning them), once per seed; passes when the
    held-out ELBO rises by at least `min_gain` nats on average over the seeds and rises with every
    seed (the runs of one seed share their start, so the pairs are matched). The message gives the
    mean gain with its standard error over seeds and the kit's verdict on it. Prints and returns a
    CheckResult; never raises for a bad recipe."""
    exercise = f"a recipe that lifts the held-out ELBO by {min_gain:g} nats"
    data = data or small_data()
    if isinstance(seeds, (str, bytes)) or not seeds:
        raise InputError(f"seeds must be a non-empty list of seeds, got {seeds!r}")
    seeds = [check_seed(seed) for seed in seeds]
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if callable(changes):
        try:
            changes = call(changes, case="your recipe function")
        except Mistake as mistake:
            changes = str(mistake)
    if isinstance(changes, str):  # the student's function did not give a recipe
        result = CheckResult(exercise, False, changes)
    elif not isinstance(changes, Mapping):
        result = CheckResult(exercise, False, "give your changes as a dict, e.g. {'kl_balance': True}.")
    elif unknown := sorted(set(changes) - known):
        result = CheckResult(exercise, False, f"{unknown} are not TrainConfig fields; choose from {sorted(known - set(_FIXED))}.")
    elif fixed := sorted(set(changes) & set(_FIXED)):
        result = CheckResult(exercise, False, f"{fixed} are part of the fixed budget (the same updates on the same "
                                              "digits): change how the model trains, not how long or on what.")
    else:
        try:
            pairs = [[_heldout_after(dataclasses.replace(CHALLENGE_BASELINE, seed=seed, **c), data) for c in ({}, changes)]
                     for seed in seeds]
        except Exception as error:  # noqa: BLE001 - a bad recipe is feedback, not a crash
            result = CheckResult(exercise, False, f"training with your recipe failed ({type(error).__name__}: {error}).")
        else:
            result = _challenge_result(exercise, pairs, seeds, dict(changes), min_gain, len(data.test_images))
    if not quiet:
        print(result)
    return result


def _challenge_result(exercise: str, pairs: list[list[float]], seeds: list[int], changes: dict, min_gain: float,
                      n_digits: int) -> CheckResult:
    """The verdict on (baseline, yours) held-out ELBOs per seed: the mean gain at least `min_gain` and
    a gain with every seed (how much a change is worth depends on the start: 3 to 29 nats over three
    seeds for the kit's answer, benchmarks/README.md), reported with its standard error over seeds."""
    baselines, yours = zip(*pairs)
    mean, stderr = paired_difference(yours, baselines)  # the error bar is NaN for one seed
    per_seed = ", ".join(f"seed {seed}: {b:.1f} -> {y:.1f}" for seed, b, y in zip(seeds, baselines, yours))
    if len(pairs) > 1:
        summary = f"gain {mean:+.1f} ± {stderr:.1f} nats over {len(seeds)} seeds ({verdict(mean, stderr).word})"
    else:
        summary = f"gain {mean:+.1f} nats (one seed: no error bar)"
    passed = mean >= min_gain and all(y > b for b, y in pairs)
    message = f"held-out ELBO on {n_digits} digits with {changes}: {per_seed}; {summary}."
    return CheckResult(exercise, passed, message if passed else message + " Not enough yet: try another change.")


def _heldout_after(train_config: TrainConfig, data: DataSplit) -> float:
    trainer = Trainer(get_preset("tiny"), train_config, data, progress=False)
    trainer.fit()
    elbo, _ = heldout_elbo(trainer.eval_model, data.test_images)
    return elbo


def ready(check: Callable[..., CheckResult], student_fn: Callable) -> bool:
    """Whether `student_fn` passes `check` (run quietly). If not, print why the demonstration that
    uses it is skipped: a demonstration cell runs `if ready(...)` and never fails on an unfinished answer."""
    result = check(student_fn, quiet=True)
    if not result.passed:
        name = getattr(student_fn, "__name__", "function")
        print(f"Skipped: this uses your `{name}`, which does not pass its check yet ({result.message})")
    return result.passed


def gradient_estimates(reparameterize: Callable, mean: float = 1.5, logvar: float = 0.0, n_samples: int = 10,
                       n_repeats: int = 500, seed: int = 0) -> dict[str, Tensor]:
    """Exercise 1.1b: `n_repeats` estimates of d/dmean E[z^2], z ~ N(mean, exp(logvar)), each from
    `n_samples` draws, by two routes: "pathwise" (backpropagation through the student's
    `reparameterize`) and "score function" (REINFORCE: z^2 * d/dmean log q(z), which needs no
    gradient through z). The exact value is 2 * mean. Returns {route: (n_repeats,) estimates}."""
    _check_function(reparameterize, "reparameterize")
    mean, logvar = check_float(mean, "mean"), check_float(logvar, "logvar", -20.0, 20.0)
    n_samples, n_repeats = check_int(n_samples, "n_samples", 1, 10**6), check_int(n_repeats, "n_repeats", 1, 10**6)
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn(n_repeats, n_samples, generator=generator)
    m = torch.full((n_repeats, n_samples), float(mean), requires_grad=True)
    lv = torch.full((n_repeats, n_samples), float(logvar))
    z = _student_tensor(_run_student(reparameterize, m, lv, eps, case="the demonstration's draws"),
                        "reparameterize", (n_repeats, n_samples))
    if not z.requires_grad:
        raise InputError("your reparameterize returns z without a gradient path to the mean: build z from mean, "
                         "logvar and eps with torch operations (no .detach(), no .item())")
    (z ** 2).mean(1).sum().backward()  # each row is one estimate; rows do not interact
    pathwise = m.grad.sum(1)
    with torch.no_grad():
        z = mean + math.exp(logvar / 2) * eps  # the same draws, no gradient through them
        score = (z ** 2 * (z - mean) / math.exp(logvar)).mean(1)  # z^2 * d/dmean log N(z; mean, var)
    return {"pathwise": pathwise.detach(), "score function": score}


def path_gradients(top_down_update: Callable, depth: int = 10, out_scale: float = 0.1, width: int = 8,
                   channels: int = 2, seed: int = 0) -> list[float]:
    """Exercise 2.1b: how much of a change in the top state h_0 still reaches the state after d
    layers of `top_down_update(h, z, g)`, for d = 1..depth, at initialisation (random branches g
    built like the kit's, the last conv scaled by `out_scale`, and random z). Returns, per depth,
    |d <v, h_d> / d h_0| / |v| for a fixed random direction v: about 1 when the path carries h_0
    through unchanged, near 0 when it is lost."""
    _check_function(top_down_update, "top_down_update")
    depth, width = check_int(depth, "depth", 1, 100), check_int(width, "width", 1, 256)
    channels, seed = check_int(channels, "channels", 1, 256), check_seed(seed)
    out_scale = check_float(out_scale, "out_scale", 0.0)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        branches = [Branch(width + channels, width, width, out_scale=out_scale) for _ in range(depth)]
    h0 = torch.randn(1, width, 7, 7, generator=generator, requires_grad=True)
    zs = [torch.randn(1, channels, 7, 7, generator=generator) for _ in range(depth)]
    direction = torch.randn(1, width, 7, 7, generator=generator)
    ratios, h = [], h0
    for g, z in zip(branches, zs):
        h = _student_tensor(_run_student(top_down_update, h, z, g, case="the demonstration's states"),
                            "top_down_update", tuple(h0.shape))
        (grad,) = torch.autograd.grad((h * direction).sum(), h0, retain_graph=True, allow_unused=True)
        ratios.append(0.0 if grad is None else (grad.norm() / direction.norm()).item())
    return ratios


def causal_reach(causal_mask: Callable, mask_types: Sequence[str] = ("A", "B", "B"), kernel_size: int = 3,
                 size: int = 15, seed: int = 0) -> Tensor:
    """Exercise 2.3b: which input pixels the centre output of a stack of masked convolutions reads,
    the masks coming from the student's `causal_mask(kernel_size, type)`, one layer per entry of
    `mask_types` (random weights, one channel). Returns a (size, size) boolean map."""
    _check_function(causal_mask, "causal_mask")
    if isinstance(mask_types, str) or not all(kind in ("A", "B") for kind in mask_types) or not mask_types:
        raise InputError(f"mask_types must be a non-empty list of 'A' and 'B', got {mask_types!r}")
    kernel_size = check_int(kernel_size, "kernel_size", 1, 15)
    if kernel_size % 2 == 0:
        raise InputError(f"kernel_size must be odd (a centre pixel), got {kernel_size}")
    size, seed = check_int(size, "size", kernel_size, 101), check_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        convs = [nn.Conv2d(1, 1, kernel_size, padding=kernel_size // 2) for _ in mask_types]
    masks = [_student_tensor(torch.as_tensor(_run_student(causal_mask, kernel_size, kind, case=f"a {kind} mask"),
                                             dtype=torch.float32), "causal_mask", (kernel_size, kernel_size))
             for kind in mask_types]
    x = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    h = x
    for conv, mask in zip(convs, masks):
        h = torch.tanh(F.conv2d(h, conv.weight * mask, conv.bias, padding=kernel_size // 2))
    centre = size // 2
    h[0, 0, centre, centre].backward()
    return x.grad[0, 0] != 0


def rows_above(reach: Tensor) -> int:
    """How many rows above the centre a reach map (`causal_reach`) touches."""
    if not isinstance(reach, Tensor) or reach.dim() != 2:
        raise InputError(f"rows_above reads the (size, size) map that causal_reach returns, got {reach!r:.80}")
    rows = reach.any(1).nonzero().flatten()
    return 0 if len(rows) == 0 else max(0, reach.shape[0] // 2 - int(rows.min()))
