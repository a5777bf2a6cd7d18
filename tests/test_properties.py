"""Property-based tests (hypothesis) over the public entry points, written like an attacker: random
shapes, dtypes, ranges, NaN/inf, empty and single-item batches, random numbers and random command
lines. Each call either succeeds with a finite, correctly shaped result or raises the kit's own
error (an HVAELiteError) with a message: never a raw library traceback, never NaN. And the other
way round: a call that is valid by the documented contract (an independent oracle below, not the
kit's own checks) must succeed; refusing it fails the test.
"""
import contextlib
import io
import math
import numbers

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


def kit_error_or(check, valid):
    """Run a call: a result must pass `check`; an exception must be the kit's own, with a message,
    and only for an invalid call (`valid` False): refusing a valid call is a failure too."""
    def run(call):
        try:
            result = call()
        except HVAELiteError as error:
            assert str(error), "an error without a message"
            assert not valid, f"a valid call was refused: {error}"
            return None
        assert check(result), result
        return result
    return run


# The oracle: what the README and the docstrings promise to accept, written independently of validate.py.
def is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def valid_count(value, minimum=1):
    return is_int(value) and value >= minimum


def valid_temperature(value):
    return is_real(value) and math.isfinite(value) and 0 <= value <= 100


def valid_images(x, binary=False, shape=(1, 28, 28)):
    """Float (or bool) tensors (B >= 1, *shape), finite, in [0, 1]; only 0 and 1 for a Bernoulli model."""
    if not isinstance(x, torch.Tensor) or x.dim() != 1 + len(shape) or tuple(x.shape[1:]) != tuple(shape):
        return False
    if x.shape[0] == 0 or not (x.dtype == torch.bool or x.is_floating_point()):
        return False
    v = x.float()
    if not torch.isfinite(v).all() or v.min() < 0 or v.max() > 1:
        return False
    return not binary or bool(((v == 0) | (v == 1)).all())


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
                 and finite(r) and 0 <= r.min() and r.max() <= 1, valid_images(x))(lambda: check_images(x))


@FAST
@given(x=image_batches())
def test_model_forward_gives_a_finite_elbo_per_image_or_says_why(model, x):
    kit_error_or(lambda elbo: elbo.shape == (len(x),) and finite(elbo), valid_images(x, binary=True))(
        lambda: model(x).elbo)


def test_the_properties_fail_when_the_model_refuses_every_valid_call(model, monkeypatch):
    """Proof by patch: with HVAE.forward and HVAE.sample made to refuse everything, the property
    above fails (hypothesis finds a valid batch that was refused), and so does the check the
    sampling property below applies to each call, on a valid one."""
    def refuse(*args, **kwargs):
        raise InputError("patched to refuse")

    monkeypatch.setattr(HVAE, "forward", refuse)
    monkeypatch.setattr(HVAE, "sample", refuse)
    with pytest.raises(AssertionError, match="a valid call was refused"):
        test_model_forward_gives_a_finite_elbo_per_image_or_says_why(model=model)
    with pytest.raises(AssertionError, match="a valid call was refused"):
        kit_error_or(lambda t: True, valid=True)(lambda: model.sample(2, temperature=1.0))


@FAST
@given(n=any_count, temperature=any_number)
def test_sampling_gives_n_finite_images_or_says_why(model, n, temperature):
    kit_error_or(lambda t: t.shape == (n, 1, 28, 28) and finite(t) and 0 <= t.min() and t.max() <= 1,
                 valid_count(n) and valid_temperature(temperature))(lambda: model.sample(n, temperature=temperature))


@FAST
@given(x=image_batches(binary_only=True), keeps=st.lists(any_number, max_size=3), n_samples=any_count,
       temperature=any_number)
def test_layer_resamples_or_says_why(model, x, keeps, n_samples, temperature):
    valid = (valid_images(x, binary=True) and bool(keeps) and all(is_int(k) and 0 <= k <= model.n_latent_layers
                                                                   for k in keeps)
             and valid_count(n_samples) and valid_temperature(temperature))
    kit_error_or(lambda t: t.shape == (len(keeps), len(x), n_samples, 1, 28, 28) and finite(t), valid)(
        lambda: layer_resamples(model, x, keeps, n_samples, temperature))


@FAST
@given(x=image_batches(binary_only=True), observed=image_batches(binary_only=True), n_steps=any_count,
       n_samples=st.integers(-1, 2))
def test_imputation_keeps_the_observed_pixels_or_says_why(model, x, observed, n_steps, n_samples):
    def check(samples):
        x32, seen = x.float(), observed.float()
        return (samples.shape == (len(x), n_samples, 1, 28, 28) and finite(samples)
                and torch.equal(samples * seen[:, None], x32[:, None].expand_as(samples) * seen[:, None]))
    valid = (valid_images(x, binary=True) and valid_images(observed, binary=True)
             and len(observed) == len(x) and valid_count(n_steps) and valid_count(n_samples))
    kit_error_or(check, valid)(lambda: impute_iterative(model, x, observed, n_steps, n_samples))


@FAST
@given(x=image_batches(), k=any_count, batch_size=st.integers(-1, 3))
def test_evaluate_gives_finite_metrics_or_says_why(model, x, k, batch_size):
    scores = ("elbo", "nll_iwae", "bits_per_dim")
    valid = valid_images(x) and valid_count(k) and valid_count(batch_size)
    kit_error_or(lambda m: m["n_images"] == len(x) and all(math.isfinite(m[key]) for key in scores), valid)(
        lambda: evaluate(model, x, k=k, batch_size=batch_size))


labels = st.lists(st.one_of(st.integers(-2, 12), st.integers(0, 2**62)), max_size=20)


@FAST
@given(assignments=labels, truth=labels, as_float=st.booleans())
def test_clustering_accuracy_is_a_fraction_or_says_why(assignments, truth, as_float):
    a = np.array(assignments, dtype=float if as_float else np.int64)
    valid = not as_float and len(assignments) == len(truth) >= 1 and min(assignments + truth) >= 0
    kit_error_or(lambda acc: 0 <= acc <= 1, valid)(lambda: clustering_accuracy(a, np.array(truth, dtype=np.int64)))


@FAST
@given(x=image_batches(), ncols=st.one_of(st.none(), st.integers(-2, 5)))
def test_image_grid_draws_or_says_why(x, ncols):
    valid = (x.dim() == 4 and x.shape[1] in (1, 3) and valid_images(x, shape=tuple(x.shape[1:]))
             and (ncols is None or ncols >= 1))
    kit_error_or(lambda figure: len(figure.axes) >= len(x), valid)(lambda: image_grid(x, ncols=ncols))


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
        assert not valid_train_fields(fields), f"valid settings {fields} were refused: {error}"
        return
    assert config.epochs >= 1 and config.batch_size >= 1 and 0 <= config.ema_decay < 1
    assert config.lr > 0 and math.isfinite(config.lr) and isinstance(config.amp, bool)


def valid_train_fields(fields):
    """TrainConfig's documented ranges, field by field, and the one rule between two of them."""
    value = lambda name: fields.get(name, getattr(TrainConfig, name))
    number = lambda v, low: is_real(v) and math.isfinite(v) and v >= low
    epochs = value("epochs")
    rules = [valid_count(epochs), valid_count(value("batch_size")), number(value("lr"), 0) and value("lr") > 0,
             number(value("warmup_epochs"), 0), number(value("free_bits"), 0), number(value("free_bits_end_epoch"), 0),
             number(value("ema_decay"), 0) and value("ema_decay") < 1, number(value("grad_clip"), 0)
             and value("grad_clip") > 0, isinstance(value("amp"), bool), value("device") in ("auto", "cpu"),
             is_int(value("mixture_init_epoch")) and valid_count(epochs)
             and -1 <= value("mixture_init_epoch") <= epochs - 1]
    if all(rules) and 0 < value("free_bits_end_epoch") < value("warmup_epochs"):
        return False  # the free-bits floor would end before the warm-up does
    return all(rules)


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


VALID_OVERRIDES = {"width": ["4", "8", "16"], "deterministic_path": ["false", "True", "no", "1"],
                   "inference_merge": ["off", "yes"], "latent_spec": ["7x2,14x2", "7x1", "14x3"],
                   "top_latent_dim": ["4", "16"], "ar_layers": ["0", "1"], "top_prior": ["'mixture'", "normal"]}


@FAST
@given(st.dictionaries(st.sampled_from(sorted(VALID_OVERRIDES)), st.integers(0, 3), max_size=3))
def test_valid_set_overrides_are_accepted(choices):
    """--set with valid values only is never refused (the test above alone would pass a kit that refused all)."""
    pairs = [f"{k}={VALID_OVERRIDES[k][i % len(VALID_OVERRIDES[k])]}" for k, i in choices.items()]
    config = get_preset("tiny", **parse_overrides(pairs))
    if "width" in choices:
        assert config.width == int(VALID_OVERRIDES["width"][choices["width"] % 3])


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


# The values above that the documented ranges accept (a second --set width=... would name width twice).
VALID_FLAG_VALUES = {"--epochs": {"1"}, "--batch-size": {"50"}, "--lr": {"0.002"}, "--ema-decay": {"0.5"},
                     "--free-bits": {"0.1"}, "--warmup-epochs": {"0"}, "--free-bits-end-epoch": {"0", "2"},
                     "--mixture-init-epoch": {"-1"}, "--limit-train": {"50"}, "--split-seed": {"0"},
                     "--device": {"cpu"}, "--init-from": set(), "--set": {"deterministic_path=false"}}


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
    chosen = {flag: FLAG_VALUES[flag][choice % len(FLAG_VALUES[flag])] for flag, choice in flags.items()}
    valid = not resume and all(value in VALID_FLAG_VALUES[flag] for flag, value in chosen.items())
    warmup = float(chosen.get("--warmup-epochs", TrainConfig.warmup_epochs))
    if 0 < float(chosen.get("--free-bits-end-epoch", 0)) < warmup:
        valid = False  # the free-bits floor would end before the warm-up does
    assert code == 0 or not valid, f"a valid command line was refused: {argv}: {err}"
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
