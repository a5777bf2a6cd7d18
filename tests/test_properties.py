"""Property-based tests (hypothesis) over the public entry points, written like an attacker: random
shapes, dtypes, ranges, NaN/inf, empty and single-item batches, random numbers and random command
lines. Each call either succeeds with a finite, correctly shaped result or raises the kit's own
error (an HVAELiteError) with a message: never a raw library traceback, never NaN."""
import contextlib
import io
import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hvae_lite import __main__ as cli
from hvae_lite.cli import parse_overrides
from hvae_lite.checkpoints import load_checkpoint
from hvae_lite.config import HVAEConfig, get_preset
from hvae_lite.errors import ConfigError, HVAELiteError, InputError
from hvae_lite.evaluate import clustering_accuracy, evaluate
from hvae_lite.explore import layer_resamples
from hvae_lite.impute import impute_iterative
from hvae_lite.model import HVAE
from hvae_lite.plots import image_grid
from hvae_lite.train import TrainConfig
from hvae_lite.validate import check_images

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return HVAE(get_preset("tiny", width=4)).eval()


def kit_error_or(check):
    """Run a call: a result must pass `check`; an exception must be the kit's own, with a message."""
    def run(call):
        try:
            result = call()
        except HVAELiteError as error:
            assert str(error), "an error without a message"
            return None
        assert check(result), result
        return result
    return run


def finite(t):
    return bool(torch.isfinite(t).all())


# Any number an attacker might type: huge, tiny, negative, NaN, inf, bools, strings, floats for ints.
any_number = st.one_of(st.integers(-10, 10), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=True),
                       st.booleans(), st.sampled_from(["3", "", None]))
# The same for counts that allocate: a valid huge count is slow, not wrong, so counts stay small.
any_count = st.one_of(st.integers(-10, 10), st.integers(-2**63, -1), st.floats(allow_nan=True), st.booleans(),
                      st.sampled_from(["3", "", None]))
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int64, torch.bool]


@st.composite
def image_batches(draw, binary_only=False):
    """Tensors of random shape near (B, 1, 28, 28), dtype and values (NaN, inf, 255, negatives)."""
    batch = draw(st.integers(0, 3))
    shape = draw(st.sampled_from([(batch, 1, 28, 28)] * 4 + [(batch, 784), (batch, 28, 28), (1, 28, 28),
                                                             (batch, 3, 28, 28), (batch, 1, 14, 14)]))
    kind = draw(st.sampled_from(["binary"] * 3 + ([] if binary_only else ["grey", "255", "nan", "inf", "negative"])))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    x = torch.rand(shape, generator=g)
    x = {"binary": x.round(), "grey": x, "255": x * 255, "nan": x.masked_fill(x > 0.9, math.nan),
         "inf": x.masked_fill(x > 0.9, math.inf), "negative": x - 0.5}[kind]
    dtype = draw(st.sampled_from(DTYPES))
    return x.to(dtype) if dtype.is_floating_point or kind in ("binary", "255") else x.round().to(dtype)


@FAST
@given(image_batches())
def test_check_images_returns_float32_images_or_says_why(x):
    kit_error_or(lambda r: r.dtype == torch.float32 and r.shape[1:] == (1, 28, 28) and len(r) >= 1
                 and finite(r) and 0 <= r.min() and r.max() <= 1)(lambda: check_images(x))


@FAST
@given(x=image_batches())
def test_model_forward_gives_a_finite_elbo_per_image_or_says_why(model, x):
    kit_error_or(lambda elbo: elbo.shape == (len(x),) and finite(elbo))(lambda: model(x).elbo)


@FAST
@given(n=any_count, temperature=any_number)
def test_sampling_gives_n_finite_images_or_says_why(model, n, temperature):
    kit_error_or(lambda t: t.shape == (n, 1, 28, 28) and finite(t) and 0 <= t.min() and t.max() <= 1)(
        lambda: model.sample(n, temperature=temperature))


@FAST
@given(x=image_batches(binary_only=True), keeps=st.lists(any_number, max_size=3), n_samples=any_count,
       temperature=any_number)
def test_layer_resamples_or_says_why(model, x, keeps, n_samples, temperature):
    kit_error_or(lambda t: t.shape == (len(keeps), len(x), n_samples, 1, 28, 28) and finite(t))(
        lambda: layer_resamples(model, x, keeps, n_samples, temperature))


@FAST
@given(x=image_batches(binary_only=True), observed=image_batches(binary_only=True), n_steps=any_count,
       n_samples=st.integers(-1, 2))
def test_imputation_keeps_the_observed_pixels_or_says_why(model, x, observed, n_steps, n_samples):
    def check(samples):
        x32, seen = x.float(), observed.float()
        return (samples.shape == (len(x), n_samples, 1, 28, 28) and finite(samples)
                and torch.equal(samples * seen[:, None], x32[:, None].expand_as(samples) * seen[:, None]))
    kit_error_or(check)(lambda: impute_iterative(model, x, observed, n_steps, n_samples))


@FAST
@given(x=image_batches(), k=any_count, batch_size=st.integers(-1, 3))
def test_evaluate_gives_finite_metrics_or_says_why(model, x, k, batch_size):
    numbers = ("elbo", "nll_iwae", "bits_per_dim")
    kit_error_or(lambda m: m["n_images"] == len(x) and all(math.isfinite(m[key]) for key in numbers))(
        lambda: evaluate(model, x, k=k, batch_size=batch_size))


labels = st.lists(st.one_of(st.integers(-2, 12), st.integers(0, 2**62)), max_size=20)


@FAST
@given(assignments=labels, truth=labels, as_float=st.booleans())
def test_clustering_accuracy_is_a_fraction_or_says_why(assignments, truth, as_float):
    a = np.array(assignments, dtype=float if as_float else np.int64)
    kit_error_or(lambda acc: 0 <= acc <= 1)(lambda: clustering_accuracy(a, np.array(truth, dtype=np.int64)))


@FAST
@given(x=image_batches(), ncols=st.one_of(st.none(), st.integers(-2, 5)))
def test_image_grid_draws_or_says_why(x, ncols):
    kit_error_or(lambda figure: len(figure.axes) >= len(x))(lambda: image_grid(x, ncols=ncols))


TRAIN_FIELDS = {"epochs": any_number, "batch_size": any_number, "lr": any_number, "warmup_epochs": any_number,
                "free_bits": any_number, "free_bits_end_epoch": any_number, "ema_decay": any_number,
                "grad_clip": any_number, "mixture_init_epoch": any_number, "amp": any_number,
                "device": st.sampled_from(["auto", "cpu", "gpu", "cuda:x", "meta", ""])}


@FAST
@given(st.fixed_dictionaries({}, optional=TRAIN_FIELDS))
def test_train_config_is_valid_or_a_config_error(fields):
    try:
        config = TrainConfig(**fields)
    except ConfigError as error:
        assert str(error)
        return
    assert config.epochs >= 1 and config.batch_size >= 1 and 0 <= config.ema_decay < 1
    assert config.lr > 0 and math.isfinite(config.lr) and isinstance(config.amp, bool)


MODEL_FIELDS = [f for f in HVAEConfig.__dataclass_fields__]


@FAST
@given(st.lists(st.tuples(st.sampled_from(MODEL_FIELDS + ["widht"]),
                          st.sampled_from(["false", "True", "no", "maybe", "0", "1", "-3", "3.5", "8", "abc",
                                           "7x2,14x2", "'mixture'", "mixture", "nan", ""])), max_size=3))
def test_set_overrides_are_typed_or_a_config_error(pairs):
    """--set KEY=VALUE: a config whose every field has its declared type, or a ConfigError."""
    try:
        config = get_preset("tiny", **parse_overrides([f"{k}={v}" for k, v in pairs]))
    except ConfigError as error:
        assert str(error)
        return
    for name, kind in {"deterministic_path": bool, "inference_merge": bool, "conditional": bool,
                       "width": int, "ar_layers": int, "latent_spec": str}.items():
        assert type(getattr(config, name)) is kind


def run_main(argv):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(argv)
    except SystemExit as exit_info:  # argparse: usage and exit 2
        code = exit_info.code
    return code, err.getvalue()


FLAG_VALUES = {"--epochs": ["1", "0", "-1", "x"], "--batch-size": ["50", "0"], "--lr": ["0.002", "nan", "-1"],
               "--ema-decay": ["0.5", "1", "-0.1"], "--free-bits": ["0.1", "-1"], "--warmup-epochs": ["0", "-2"],
               "--free-bits-end-epoch": ["0", "-1", "2"], "--mixture-init-epoch": ["-1", "0", "-5"],
               "--limit-train": ["50", "0", "-5"], "--split-seed": ["0", "-1"], "--device": ["cpu", "nope", "mps"],
               "--init-from": ["missing.pt"], "--set": ["width=4", "deterministic_path=false", "width=abc"]}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flags=st.dictionaries(st.sampled_from(sorted(FLAG_VALUES)), st.integers(0, 3), max_size=4),
       resume=st.booleans())
def test_random_train_command_lines_train_or_exit_1_with_a_message(tmp_path_factory, flags, resume):
    out = tmp_path_factory.mktemp("cli") / "run.pt"
    argv = ["train", "--preset", "tiny", "--set", "width=4", "--quiet", "--out", str(out), "--limit-train", "50",
            "--epochs", "1", "--device", "cpu"]
    for flag, choice in flags.items():
        argv += [flag, FLAG_VALUES[flag][choice % len(FLAG_VALUES[flag])]]
    if resume:
        argv.append("--resume")
    code, err = run_main(argv)
    if code == 0:
        checkpoint = load_checkpoint(out)
        assert checkpoint.epoch == checkpoint.history[-1]["epoch"] >= 1
        assert all(math.isfinite(record["elbo"]) for record in checkpoint.history)
    else:
        assert code in (1, 2) and ("error:" in err or "usage:" in err), err
        assert "Traceback" not in err
        assert resume or not out.exists()  # a refused run writes nothing


def test_an_error_is_both_the_kits_and_a_value_error():
    """Code that caught ValueError before the kit had its own errors keeps working."""
    with pytest.raises(ValueError):
        check_images(torch.zeros(0, 1, 28, 28))
    assert issubclass(ConfigError, InputError) and issubclass(InputError, HVAELiteError)
