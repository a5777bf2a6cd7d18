"""The hierarchical VAE: shapes, the ELBO, gradients, the AR head, the one generative path."""
import pytest
import torch

from hvae_lite.baseline import MLPVAE, MLPVAEConfig
from hvae_lite.config import get_preset
from hvae_lite.model import HVAE, HVAEOutput

VARIANTS = {
    "tiny": {},
    "no-td-path": {"deterministic_path": False},
    "no-merge": {"inference_merge": False},
    "standard-layer-prior": {"layer_prior": "standard"},
    "direct-posterior": {"posterior": "direct"},
    "mixture": {"top_prior": "mixture", "mixture_components": 3},
    "ar": {"ar_layers": 2},
    "conditional": {"conditional": True},
    "gaussian": {"likelihood": "gaussian"},
    "one-resolution": {"latent_spec": "14x2"},
    "28x28-latents": {"latent_spec": "7x1,14x0,28x1"},
}


def _model(**overrides) -> HVAE:
    torch.manual_seed(0)
    return HVAE(get_preset("tiny", **overrides))


def _inputs(model, digits):
    x = digits[:4]
    if model.config.likelihood == "gaussian":
        x = x * 0.8 + 0.1  # grey levels
    observed = torch.ones_like(x) if model.config.conditional else None
    if observed is not None:
        observed[..., 14:, :] = 0
    return x, observed


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_forward_shapes_and_elbo(name, digits):
    model = _model(**VARIANTS[name])
    x, observed = _inputs(model, digits)
    out = model(x, observed)
    n_layers = model.n_latent_layers
    assert isinstance(out, HVAEOutput)
    assert out.elbo.shape == out.recon.shape == out.log_weight.shape == (4,)
    assert out.kl.shape == (4, n_layers) and len(out.layers) == n_layers
    assert out.params.shape == (4, 1, 28, 28)
    assert torch.isfinite(out.elbo).all()
    torch.testing.assert_close(out.elbo, -(out.recon + out.kl.sum(1)))
    torch.testing.assert_close(out.loss, -out.elbo.mean())
    # Shapes of each layer: the top vector, then one map per entry of the spec.
    config = model.config
    assert out.layers[0].z.shape == (4, config.top_latent_dim)
    for stats, res in zip(out.layers[1:], config.resolutions):
        assert stats.z.shape == (4, config.latent_channels, res, res)
        assert stats.kl.shape == stats.log_p.shape == stats.log_q.shape == (4,)
        assert (stats.kl > -1e-4).all()  # analytic Gaussian KL
    torch.testing.assert_close(out.kl, torch.stack([s.kl for s in out.layers], 1))
    assert (out.layers[0].prior is None) == (name == "mixture")
    if not config.conditional and not config.ar_layers:  # (AR sampling: its own tests)
        assert model.sample(3).shape == (3, 1, 28, 28)


def test_conditional_model_needs_the_mask_and_counts_missing_pixels_only(digits):
    model = _model(conditional=True)
    with pytest.raises(ValueError, match="observed-pixel mask"):
        model(digits[:2])
    with pytest.raises(ValueError, match="conditional model samples given an observed image"):
        model.sample(2)
    x = digits[:2]
    all_seen = torch.ones_like(x)
    torch.manual_seed(0)
    assert torch.equal(model(x, all_seen).recon, torch.zeros(2))  # no missing pixel: nothing to reconstruct


def test_pixel_mask_restricts_the_reconstruction_term(digits, tiny_model):
    x = digits[:2]
    mask = torch.zeros_like(x)
    mask[..., :14, :] = 1
    torch.manual_seed(0)
    full = tiny_model(x)
    torch.manual_seed(0)
    top_half = tiny_model(x, pixel_mask=mask)
    pixel_nll = -tiny_model.head.pixel_log_prob(x, full.params)
    torch.testing.assert_close(top_half.recon, (pixel_nll * mask).flatten(1).sum(1))
    with pytest.raises(ValueError, match="autoregressive head cannot marginalise"):
        _model(ar_layers=2)(x, pixel_mask=mask)


def test_mlp_baseline_output(digits):
    torch.manual_seed(0)
    model = MLPVAE(MLPVAEConfig(hidden=(32,), latent_dim=4))
    out = model(digits[:4])
    assert out.kl.shape == (4, 1) and out.params.shape == (4, 1, 28, 28)
    torch.testing.assert_close(out.elbo, -(out.recon + out.kl.sum(1)))
    assert model.sample(2).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="values other than 0 and 1"):
        model(torch.full((2, 1, 28, 28), 0.5))


@pytest.mark.parametrize("name", ["tiny", "mixture"])
def test_log_weight_averages_to_the_elbo(name, digits):
    """E_q[log p(x,z) - log q(z|x)] is the ELBO: the sampled terms agree with the analytic KLs."""
    model = _model(**VARIANTS[name])
    with torch.no_grad():  # make posteriors differ from priors so the check has something to check
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    x = digits[:1].repeat(1000, 1, 1, 1)
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(x)
    gap = (out.log_weight - out.elbo)
    assert gap.std() > 0.1  # the terms are really random ...
    assert abs(gap.mean()) < 4 * gap.std() / 1000 ** 0.5  # ... and unbiased


def test_every_parameter_and_latent_gets_a_gradient(digits):
    model = _model()
    # The zero-initialised heads pass no gradient to the merge stream at step 0: take two steps first.
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        model(digits).loss.backward()
        optimizer.step()
    optimizer.zero_grad()
    out = model(digits)
    for stats in out.layers:
        stats.z.retain_grad()
    out.loss.backward()
    for i, stats in enumerate(out.layers):
        assert stats.z.grad is not None and stats.z.grad.abs().sum() > 0, f"d loss / d z_{i} is zero"
    missing = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient for {missing}"


def test_fresh_model_heads_and_updates_get_gradients(digits, tiny_model):
    tiny_model(digits).loss.backward()
    for i, layer in enumerate(tiny_model.layers, start=1):
        for part in (layer.prior_head, layer.posterior_head, layer.update):
            grads = [p.grad for p in part.parameters()]
            assert all(g is not None and g.abs().sum() > 0 for g in grads), f"layer {i}: {part}"
    assert tiny_model.top.posterior_head.weight.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- autoregressive head


def _ar_head(size=28, ar_layers=3, seed=0, ar_kernel=5):
    torch.manual_seed(seed)
    model = HVAE(get_preset("tiny", ar_layers=ar_layers, ar_kernel=ar_kernel))
    assert not model.head.ar_out.weight.any()  # a new head starts as the factorised one ...
    torch.nn.init.normal_(model.head.ar_out.weight)  # ... here it reads x, as after training
    features = torch.randn(2, model.config.width, size, size)
    return model.head, features


def test_a_new_ar_head_changes_nothing(digits):
    torch.manual_seed(0)
    factorised = HVAE(get_preset("tiny"))
    with_head = HVAE(get_preset("tiny", ar_layers=1, ar_kernel=3))
    with_head.load_state_dict(factorised.state_dict(), strict=False)
    torch.manual_seed(1)
    a = factorised(digits).elbo
    torch.manual_seed(1)
    b = with_head(digits).elbo
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("pixel", [(0, 0), (0, 27), (5, 13), (13, 0), (27, 26)])
@pytest.mark.parametrize("ar_kernel", [5, 3])
def test_ar_logits_are_causal_in_raster_order(pixel, ar_kernel):
    head, features = _ar_head(ar_kernel=ar_kernel)
    torch.manual_seed(1)
    x = torch.bernoulli(torch.full((2, 1, 28, 28), 0.5))
    flipped = x.clone()
    flipped[:, 0, pixel[0], pixel[1]] = 1 - flipped[:, 0, pixel[0], pixel[1]]
    with torch.no_grad():
        changed = (head.params(features, x) != head.params(features, flipped)).any(0)[0].flatten()
    j = pixel[0] * 28 + pixel[1]
    assert not changed[: j + 1].any(), "a logit depends on its own pixel or a later one"
    if j < 28 * 28 - 1:
        assert changed[j + 1:].any(), "no later logit reads this pixel"


def test_ar_head_needs_x():
    head, features = _ar_head()
    with pytest.raises(ValueError, match="needs x"):
        head.params(features)


def _naive_ar_sample(head, features):
    """Pixel by pixel with the whole image every time: slow and obviously right."""
    x = torch.zeros_like(features[:, :1])
    size = features.shape[-1]
    for row in range(size):
        for col in range(size):
            logits = head.params(features, x)[:, 0, row, col]
            x[:, 0, row, col] = torch.bernoulli(torch.sigmoid(logits))
    return x


@pytest.mark.parametrize("ar_layers, ar_kernel", [(1, 5), (3, 5), (1, 3), (2, 3)])
def test_windowed_ar_sampler_equals_the_naive_one(ar_layers, ar_kernel):
    # 12x12 features: the head is convolutional, and the window (5 rows for 3 layers) still slides.
    head, features = _ar_head(size=12, ar_layers=ar_layers, ar_kernel=ar_kernel)
    with torch.no_grad():
        features = features * 3
        torch.manual_seed(5)
        fast = head.sample(features)
        torch.manual_seed(5)
        naive = _naive_ar_sample(head, features)
    assert 0.05 < fast.mean() < 0.95  # a real mix of pixels, not all one value
    assert torch.equal(fast, naive)


def test_ar_model_samples_binary_images():
    torch.manual_seed(0)
    model = HVAE(get_preset("tiny", ar_layers=1, latent_spec="7x1"))
    samples = model.sample(1)
    assert samples.shape == (1, 1, 28, 28) and ((samples == 0) | (samples == 1)).all()


# ----------------------------------------------------------------------------- the one generative path


def test_resample_below_keep_all_is_the_posterior_path(trained_tiny, digits):
    x = digits[:4]
    torch.manual_seed(7)
    with torch.no_grad():
        reconstruction = torch.sigmoid(trained_tiny(x).params)
    torch.manual_seed(7)
    resampled = trained_tiny.resample_below(x, keep=trained_tiny.n_latent_layers)
    torch.testing.assert_close(resampled, reconstruction)


def test_resample_below_keep_zero_is_a_prior_sample(trained_tiny, digits):
    torch.manual_seed(8)
    from_prior = trained_tiny.sample(4)
    torch.manual_seed(8)
    resampled = trained_tiny.resample_below(digits[:4], keep=0)
    torch.testing.assert_close(resampled, from_prior)
    with pytest.raises(ValueError, match="keep must be in 0..5"):
        trained_tiny.resample_below(digits[:4], keep=6)


@pytest.mark.parametrize("keep", [1, 3])
def test_keep_posterior_keeps_exactly_the_top_layers(trained_tiny, digits, keep):
    x = digits[:4]
    with torch.no_grad():
        bu = trained_tiny.bottom_up(x)
        torch.manual_seed(9)
        _, full = trained_tiny.top_down(4, bu)
        torch.manual_seed(9)
        _, partial = trained_tiny.top_down(4, bu, keep_posterior=keep)
    for i in range(keep):  # the same noise, the same posterior: the same latents
        assert partial[i].posterior is not None and torch.equal(partial[i].z, full[i].z)
    for i in range(keep, trained_tiny.n_latent_layers):
        assert partial[i].posterior is None and partial[i].kl is None
    assert not torch.equal(partial[keep].z, full[keep].z)


def test_forced_latents_are_used(tiny_model):
    n_layers = tiny_model.n_latent_layers
    with torch.no_grad():
        _, stats = tiny_model.top_down(2)
        forced = [None] * n_layers
        forced[2] = torch.full_like(stats[2].z, 3.0)
        features_a, forced_stats = tiny_model.top_down(2, forced=forced)
        assert torch.equal(forced_stats[2].z, forced[2])
        torch.testing.assert_close(forced_stats[2].log_p, forced_stats[2].prior.log_prob(forced[2]).flatten(1).sum(1))
        # All latents forced: the output is a deterministic function of them.
        everything = [s.z for s in stats]
        torch.manual_seed(0)
        first, _ = tiny_model.top_down(2, forced=everything)
        torch.manual_seed(1)
        second, _ = tiny_model.top_down(2, forced=everything)
        assert torch.equal(first, second)
        changed = list(everything)
        changed[2] = everything[2] + 1
        assert not torch.allclose(tiny_model.top_down(2, forced=changed)[0], first)
    with pytest.raises(ValueError, match="one entry per latent layer"):
        tiny_model.top_down(2, forced=[None])


@pytest.mark.parametrize("overrides", [{}, {"top_prior": "mixture"}])
def test_zero_temperature_prior_sampling_is_deterministic(overrides):
    model = _model(**overrides)
    component = 1 if overrides else None  # a mixture must be told which component
    torch.manual_seed(0)
    a = model.sample(3, temperature=0.0, component=component)
    torch.manual_seed(1)
    b = model.sample(3, temperature=0.0, component=component)
    assert torch.equal(a, b) and torch.equal(a[0], a[1])
    torch.manual_seed(1)
    assert not torch.equal(model.sample(3, temperature=1.0, component=component), a)


@pytest.mark.parametrize("deterministic_path", [False, True])
def test_without_td_path_the_output_depends_on_the_last_latent_only(deterministic_path):
    model = _model(deterministic_path=deterministic_path)
    with torch.no_grad():
        torch.manual_seed(0)
        _, stats = model.top_down(2)
        last = stats[-1].z
        torch.manual_seed(1)
        _, other = model.top_down(2)  # different latents everywhere above
        a, _ = model.top_down(2, forced=[s.z for s in stats])
        b, _ = model.top_down(2, forced=[s.z for s in other[:-1]] + [last])
    if deterministic_path:
        assert not torch.allclose(a, b)  # the residual path carries the upper latents to the output
    else:
        assert torch.equal(a, b)  # no path around z_L


def test_encode_top(trained_tiny, digits):
    q = trained_tiny.encode_top(digits[:3])
    assert q.mean.shape == q.logvar.shape == (3, trained_tiny.config.top_latent_dim)
    torch.manual_seed(0)
    torch.testing.assert_close(trained_tiny(digits[:3]).layers[0].posterior.mean, q.mean)


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(2, 784), r"flat images: use x.view\(-1, 1, 28, 28\)"),
    (torch.zeros(2, 28, 28), "missing the channel axis"),
    (torch.zeros(2, 1, 32, 32), r"shape \(B, 1, 28, 28\)"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "float tensor"),
    (torch.full((2, 1, 28, 28), 255.0), r"must be in \[0, 1\]"),
    (torch.full((2, 1, 28, 28), 0.5), "Bernoulli likelihood needs binary pixels"),
    (torch.zeros(0, 1, 28, 28), "empty batch"),
])
def test_bad_inputs_raise_clear_errors(tiny_model, bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(bad)


def test_gaussian_model_accepts_grey_levels_and_checks_masks(digits):
    model = _model(likelihood="gaussian")
    assert torch.isfinite(model(torch.full((2, 1, 28, 28), 0.5)).elbo).all()
    with pytest.raises(ValueError, match="observed"):
        _model(conditional=True)(digits[:2], torch.full((2, 1, 28, 28), 0.5))
