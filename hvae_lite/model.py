"""The Matryoshka hierarchical VAE: bottom-up, top-down and inference-merge streams.

Notation (see docs/model.md): layer 0 is the top latent vector z_0; layers 1..L are latent maps,
coarse to fine. Bottom-up states b are computed once from x. The top-down state h starts as
f(z_0) and each layer adds a residual update g_i([h, z_i]) (the deterministic path); the merge
state m reads [h, b, m] and gives the posterior of each z_i (the inference merge path).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .blocks import LEAK, Branch, downsample, gaussian_head, upsample
from .config import HVAEConfig
from .errors import InputError
from .validate import check_images, check_int, check_temperature
from .distributions import DiagonalGaussian, MixturePrior, soft_clamp, sum_except_batch
from .likelihoods import OutputHead


@dataclass
class LayerStats:
    """What one latent layer did. Per-example terms are summed over the layer's units."""

    z: Tensor                               # (B, C, H, W) maps or (B, D) for the top vector
    log_p: Tensor                           # (B,) log p(z | above) of the z used
    log_q: Tensor | None                    # (B,) log q(z | x, above); None when z came from the prior
    kl: Tensor | None                       # (B,) KL(q || p): analytic, or log_q - log_p for a mixture prior
    prior: DiagonalGaussian | None          # None for the mixture top prior
    posterior: DiagonalGaussian | None


@dataclass
class HVAEOutput:
    """Named result of `HVAE.forward`; all terms in nats."""

    elbo: Tensor          # (B,) log p(x|z) - sum_i KL_i
    recon: Tensor         # (B,) -log p(x | z), the reconstruction term
    kl: Tensor            # (B, n_latent_layers) KL of each layer, top vector first
    log_weight: Tensor    # (B,) log p(x, z) - log q(z | x) of the sampled z: one IWAE term
    params: Tensor        # (B, C * P, H, W): parameters of p(x | z), P per sub-pixel (see OutputHead)
    layers: list[LayerStats]

    @property
    def loss(self) -> Tensor:
        """The plain negative ELBO per example, averaged (see objectives for warm-up, free bits)."""
        return -self.elbo.mean()


def layer_temperatures(temperature: float | Sequence[float], n_layers: int) -> list[float]:
    """One sampling temperature per latent layer (top vector first), from one for all or a list of
    n_layers, each checked (0..100; 1 = the model's own prior)."""
    if isinstance(temperature, (list, tuple)):
        if len(temperature) != n_layers:
            raise InputError(f"temperature: give one number, or one per latent layer ({n_layers}), got {len(temperature)}")
        return [check_temperature(t, f"temperature of layer {i}") for i, t in enumerate(temperature)]
    return [check_temperature(temperature)] * n_layers


def _gaussian(params: Tensor) -> DiagonalGaussian:
    mean, logvar = params.float().chunk(2, dim=1)  # fp32 even under autocast: KL sums need it
    return DiagonalGaussian(mean, soft_clamp(logvar))


class BottomUp(nn.Module):
    """x (B, in, S, S) -> one state per latent map (coarse to fine, (B, width, r, r)) and a top vector."""

    def __init__(self, config: HVAEConfig, in_channels: int | None = None):
        super().__init__()
        in_channels = config.image_channels if in_channels is None else in_channels
        self.resolutions = config.resolutions[::-1]  # the BU stream runs fine to coarse
        width, top_res = config.width, config.resolutions[0]
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(Branch(width, width, width) for _ in self.resolutions)
        self.to_top = nn.Linear(width * top_res * top_res, width)

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        b = self.stem(x)
        states = []
        for res, block in zip(self.resolutions, self.blocks):
            b = downsample(b, res)
            b = b + block(b)
            states.append(b)
        top = self.to_top(F.leaky_relu(b, LEAK).flatten(1))  # (B, width)
        return states[::-1], top


class TopLatent(nn.Module):
    """The top vector z_0: its prior, its posterior from the BU top, and h_0 = f(z_0)."""

    def __init__(self, config: HVAEConfig):
        super().__init__()
        dim, width, self.res = config.top_latent_dim, config.width, config.resolutions[0]
        self.mixture = (MixturePrior(config.mixture_components, dim, config.mixture_covariance)
                        if config.top_prior == "mixture" else None)
        self.posterior_head = nn.Linear(width, 2 * dim)
        self.context_prior = nn.Linear(width, 2 * dim) if config.conditional else None
        if self.context_prior is not None:
            nn.init.zeros_(self.context_prior.weight)
            nn.init.zeros_(self.context_prior.bias)
        self.to_state = nn.Linear(dim, width * self.res * self.res)
        self.dim, self.width = dim, width

    def forward(self, n: int, device: torch.device, bu_top: Tensor | None, context_top: Tensor | None,
                temperature: float, forced: Tensor | None, component: int | None) -> tuple[Tensor, LayerStats]:
        if self.context_prior is not None:
            prior = _gaussian(self.context_prior(context_top))
        elif self.mixture is None:
            prior = DiagonalGaussian(torch.zeros(n, self.dim, device=device), torch.zeros(n, self.dim, device=device))
        else:
            prior = None
        posterior = None if bu_top is None else _gaussian(self.posterior_head(bu_top))
        if forced is not None:
            z = forced
        elif posterior is not None:
            z = posterior.sample()
        elif prior is not None:
            z = prior.sample(temperature)
        else:
            z = self.mixture.sample(n, temperature, component)
        log_p = sum_except_batch(prior.log_prob(z)) if prior is not None else self.mixture.log_prob(z)
        log_q = kl = None
        if posterior is not None:
            log_q = sum_except_batch(posterior.log_prob(z))
            kl = sum_except_batch(posterior.kl(prior)) if prior is not None else log_q - log_p
        h = self.to_state(z).view(n, self.width, self.res, self.res)
        return h, LayerStats(z, log_p, log_q, kl, prior, posterior)


class LatentLayer(nn.Module):
    """One latent map z_i: prior from h, posterior from the merge state, residual update of h."""

    def __init__(self, config: HVAEConfig, resolution: int):
        super().__init__()
        width, channels = config.width, config.latent_channels
        self.resolution, self.channels, self.config = resolution, channels, config
        self.prior_head = gaussian_head(width, channels) if config.layer_prior == "conditional" else None
        if config.inference_merge:
            self.merge = Branch(3 * width, width, width)  # reads [h, b, m]
        self.posterior_head = gaussian_head(width, channels)
        if config.deterministic_path:
            self.update = Branch(width + channels, width, width)  # h_i = h + g([h, z])
        else:
            self.update = Branch(channels, width, width, out_scale=1.0)  # h_i = g(z): no path around z
        if config.conditional:
            self.context_in = nn.Conv2d(width, width, 1)
            nn.init.zeros_(self.context_in.weight)
            nn.init.zeros_(self.context_in.bias)

    def forward(self, h: Tensor, merge_state: Tensor | None, bu_state: Tensor | None,
                context_state: Tensor | None, temperature: float,
                forced: Tensor | None) -> tuple[Tensor, Tensor | None, LayerStats]:
        """h, merge_state: (B, width, r, r) -> updated (h, merge_state) and this layer's stats.

        With no `bu_state` the layer samples its prior (at `temperature`) unless `forced` gives z.
        """
        if context_state is not None:
            h = h + self.context_in(context_state)
        if self.prior_head is None:
            shape = (h.shape[0], self.channels, h.shape[2], h.shape[3])
            prior = DiagonalGaussian(h.new_zeros(shape), h.new_zeros(shape))
        else:
            prior = _gaussian(self.prior_head(h))
        posterior = None
        if bu_state is not None:
            if self.config.inference_merge:
                merge_state = merge_state + self.merge(torch.cat([h, bu_state, merge_state], 1))
                post_params = self.posterior_head(merge_state)
            else:
                post_params = self.posterior_head(bu_state)
            posterior = _gaussian(post_params)
            if self.config.posterior == "residual":
                posterior = DiagonalGaussian(prior.mean + posterior.mean, prior.logvar + posterior.logvar)
        if forced is not None:
            z = forced
        elif posterior is not None:
            z = posterior.sample()
        else:
            z = prior.sample(temperature)
        log_p = sum_except_batch(prior.log_prob(z))
        log_q = kl = None
        if posterior is not None:
            log_q = sum_except_batch(posterior.log_prob(z))
            kl = sum_except_batch(posterior.kl(prior))
        if self.config.deterministic_path:
            h = h + self.update(torch.cat([h, z], 1))
        else:
            h = self.update(z)
        return h, merge_state, LayerStats(z, log_p, log_q, kl, prior, posterior)


class HVAE(nn.Module):
    """A deep hierarchical VAE built from an `HVAEConfig`. Images are (B, C, S, S) = (B, *config.image_shape),
    e.g. (B, 1, 28, 28) for MNIST; occlusion masks are (B, 1, S, S), shared by the colour channels."""

    def __init__(self, config: HVAEConfig):
        super().__init__()
        self.config = config
        self.bottom_up = BottomUp(config)
        # The context is the masked image and the mask: C + 1 channels.
        self.context_net = BottomUp(config, in_channels=config.image_channels + 1) if config.conditional else None
        self.top = TopLatent(config)
        self.layers = nn.ModuleList(LatentLayer(config, res) for res in config.resolutions)
        self.out_block = Branch(config.width, config.width, config.width)
        self.head = OutputHead(config)

    @property
    def n_latent_layers(self) -> int:
        return self.config.n_latent_layers

    def _context(self, x: Tensor | None, observed: Tensor | None) -> tuple[list[Tensor] | list[None], Tensor | None]:
        """Context states from the masked image and the mask (conditional models only)."""
        if self.context_net is None:
            return [None] * len(self.layers), None
        if observed is None or x is None:
            raise InputError("a conditional (imputation) model needs the image and its observed-pixel mask")
        return self.context_net(torch.cat([x * observed, observed], 1))

    def top_down(self, n: int, bu: tuple[list[Tensor], Tensor] | None = None, *,
                 observed_x: Tensor | None = None, observed: Tensor | None = None,
                 keep_posterior: int | None = None, temperature: float | Sequence[float] = 1.0,
                 forced: list[Tensor | None] | None = None,
                 component: int | None = None) -> tuple[Tensor, list[LayerStats]]:
        """The one generative path: returns the output features (B, width, S, S) and per-layer stats.

        bu: bottom-up states of an image (inference), or None (pure prior sampling).
        keep_posterior: with bu, use the posterior for the top k layers only, the prior below.
        temperature: of the prior samples, one for every layer or one per layer (top vector first).
        forced: per layer, a latent to use instead of sampling (None entries sample).
        component: sample the top vector from this mixture component.
        """
        device = next(self.parameters()).device
        n_layers = self.n_latent_layers
        keep = n_layers if keep_posterior is None else keep_posterior
        forced = forced or [None] * n_layers
        temperatures = layer_temperatures(temperature, n_layers)
        if len(forced) != n_layers:
            raise InputError(f"forced must have one entry per latent layer ({n_layers}), got {len(forced)}")
        bu_states, bu_top = bu if bu is not None else ([None] * len(self.layers), None)
        context_states, context_top = self._context(observed_x, observed)
        h, top_stats = self.top(n, device, bu_top if keep > 0 else None, context_top,
                                temperatures[0], forced[0], component)
        stats = [top_stats]
        merge_state = torch.zeros_like(h)
        for i, layer in enumerate(self.layers, start=1):
            h = upsample(h, layer.resolution)
            merge_state = upsample(merge_state, layer.resolution)
            bu_state = bu_states[i - 1] if i < keep else None
            h, merge_state, layer_stats = layer(h, merge_state, bu_state, context_states[i - 1],
                                                temperatures[i], forced[i])
            stats.append(layer_stats)
        h = upsample(h, self.config.image_size)
        return h + self.out_block(h), stats

    def forward(self, x: Tensor, observed: Tensor | None = None, pixel_mask: Tensor | None = None) -> HVAEOutput:
        """Inference and the ELBO. x: (B, C, S, S); observed: (B, 1, S, S) mask, 1 = seen.

        A conditional model sees x * observed and the mask in its prior, and its reconstruction
        term counts only the missing pixels (those it must impute). `pixel_mask` (1 = counts)
        restricts the reconstruction term of any factorised model, e.g. to the observed pixels
        for log p(x_observed), the missing ones being marginalised out.
        """
        shape = self.config.image_shape
        x = self._check_input(x)
        if observed is not None:
            observed = check_images(observed, binary=True, name="observed", shape=(1, *shape[1:]))
        if pixel_mask is not None:
            pixel_mask = check_images(pixel_mask, name="pixel_mask", shape=(1, *shape[1:]))
        if pixel_mask is None and self.config.conditional:
            if observed is None:
                raise InputError("a conditional (imputation) model needs the image and its observed-pixel mask")
            pixel_mask = 1 - observed
        elif pixel_mask is not None and self.head.autoregressive:
            raise InputError("an autoregressive head cannot marginalise pixels: its pixels depend on each other")
        features, stats = self.top_down(x.shape[0], self.bottom_up(x), observed_x=x, observed=observed)
        params = self.head.params(features, x)
        pixel_log_prob = self.head.pixel_log_prob(x, params)
        if pixel_mask is not None:
            pixel_log_prob = pixel_log_prob * pixel_mask
        log_px = sum_except_batch(pixel_log_prob)
        kl = torch.stack([s.kl for s in stats], dim=1)
        log_weight = log_px + sum(s.log_p - s.log_q for s in stats)
        return HVAEOutput(elbo=log_px - kl.sum(1), recon=-log_px, kl=kl, log_weight=log_weight,
                          params=params, layers=stats)

    def _check_input(self, x: Tensor) -> Tensor:
        """Images this model reads, (B, C, S, S) float32 on its device: binary for a Bernoulli head,
        in [0, 1] otherwise (validate.check_images says what is wrong)."""
        x = check_images(x, binary=self.config.likelihood == "bernoulli", name="x", shape=self.config.image_shape)
        return x.to(next(self.parameters()).device)

    @torch.no_grad()
    def sample(self, n: int, temperature: float | Sequence[float] = 1.0, component: int | None = None,
               binary: bool = False) -> Tensor:
        """n images from the prior: (n, C, S, S). binary=False gives the mean of p(x | z) (pixel
        probabilities for a factorised Bernoulli head), which shows a sample's shape more clearly
        than a draw. temperature: one for all layers, or one per layer (top vector first)."""
        if self.config.conditional:
            raise InputError("a conditional model samples given an observed image: use impute()")
        check_int(n, "n (number of samples)", minimum=1)
        layer_temperatures(temperature, self.n_latent_layers)
        if component is not None:
            n_components = self.top.mixture.means.shape[0] if self.top.mixture is not None else 0
            if n_components == 0:
                raise InputError("component is set, but this model has no mixture prior (top_prior='mixture')")
            check_int(component, "component", minimum=0, maximum=n_components - 1)
        features, _ = self.top_down(n, temperature=temperature, component=component)
        return self.head.sample(features, binary=binary)

    @torch.no_grad()
    def resample_below(self, x: Tensor, keep: int, temperature: float | Sequence[float] = 1.0,
                       binary: bool = False) -> Tensor:
        """Keep the posterior latents of the top `keep` layers of each image, sample the rest.

        keep = 0 is a prior sample, keep = n_latent_layers a reconstruction. (B, C, S, S) -> same.
        """
        x = self._check_input(x)
        check_int(keep, "keep (top layers kept)", minimum=0, maximum=self.n_latent_layers)
        layer_temperatures(temperature, self.n_latent_layers)
        features, _ = self.top_down(x.shape[0], self.bottom_up(x), keep_posterior=keep, temperature=temperature)
        return self.head.sample(features, binary=binary)

    @torch.no_grad()
    def encode_top(self, x: Tensor) -> DiagonalGaussian:
        """The posterior q(z_0 | x) of the top vector: mean and logvar (B, D)."""
        _, bu_top = self.bottom_up(self._check_input(x))
        return _gaussian(self.top.posterior_head(bu_top))
