"""Configuration: the model's frozen dataclass (HVAEConfig), the latent-layer spec parser, named
presets, and the training settings (TrainConfig). The recipes that combine them live in recipes.py."""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from .errors import ConfigError
from .validate import check_bool, check_device_name, check_float, check_int, check_seed

IMAGE_SIZE = 28  # the default image side (MNIST); every latent resolution must be image_size / 2**k


@dataclass(frozen=True)
class HVAEConfig:
    """Everything needed to rebuild a model; checkpoints store it as a plain dict."""

    # --- the hierarchy ---
    latent_spec: str = "7x5,14x5"      # latent layers per resolution, coarse to fine: "RESxCOUNT,..."
    latent_channels: int = 4           # channels of each latent map z_i (i >= 1)
    top_latent_dim: int = 32           # size of the top latent vector z_0
    width: int = 64                    # channels of every deterministic state (BU, TD, merge)
    # --- priors and posteriors ---
    top_prior: str = "normal"          # "normal": N(0, I); "mixture": learned mixture of Gaussians
    mixture_components: int = 10       # K for the mixture top prior (one per digit class, hopefully)
    mixture_covariance: str = "diagonal"  # covariance of each mixture component: "diagonal" or "full"
    layer_prior: str = "conditional"   # "conditional": p(z_i | h_{i-1}); "standard": fixed N(0, I)
    posterior: str = "residual"        # "residual": q's parameters are offsets from p's (NVAE); "direct"
    # --- the images ---
    image_size: int = IMAGE_SIZE       # side of the square images (28: MNIST, Omniglot; 32: CIFAR-10)
    image_channels: int = 1            # 1: grey or binary; 3: RGB
    # --- output ---
    likelihood: str = "bernoulli"      # "bernoulli" (binary pixels), "gaussian" (grey levels, learned scale)
                                       # or "logistic" (8-bit pixels: mixture of discretised logistics)
    logistic_components: int = 10      # mixture components per sub-pixel of the "logistic" likelihood
    ar_layers: int = 0                 # masked-conv layers of the autoregressive head; 0 = off
    ar_width: int = 32                 # channels of the autoregressive head
    ar_kernel: int = 5                 # kernel of its first (mask A) conv: 3 sees only the 4 causal neighbours
    # --- ablations the notebooks teach with ---
    deterministic_path: bool = True    # False: h_i = g_i(z_i); each layer sees only the latent below it
    inference_merge: bool = True       # False: ladder-style posterior from the BU state alone
    # --- conditional imputation: the generator also sees the masked image and the mask ---
    conditional: bool = False

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("image_size", "image_channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        parse_latent_spec(self.latent_spec, self.image_size)  # raises on a malformed spec
        choices = {
            "top_prior": ("normal", "mixture"),
            "mixture_covariance": ("diagonal", "full"),
            "layer_prior": ("conditional", "standard"),
            "posterior": ("residual", "direct"),
            "likelihood": ("bernoulli", "gaussian", "logistic"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name}={getattr(self, name)!r}; choose one of {allowed}")
        for name in ("latent_channels", "top_latent_dim", "width", "mixture_components", "ar_width",
                     "logistic_components"):
            check_int(getattr(self, name), name, minimum=1, error=ConfigError)
        check_int(self.ar_layers, "ar_layers", minimum=0, error=ConfigError)
        if self.ar_kernel < 3 or self.ar_kernel % 2 == 0:
            raise ConfigError(f"ar_kernel must be odd and >= 3, got {self.ar_kernel}")
        if self.ar_layers and self.likelihood == "gaussian":
            raise ConfigError("the autoregressive head models discrete pixels: use likelihood='bernoulli' "
                              "(binary) or 'logistic' (8-bit)")
        if self.conditional and self.top_prior == "mixture":
            raise ConfigError("a conditional model's top prior comes from the observed pixels, so a mixture top prior "
                              "would be ignored: use top_prior='normal' with conditional=True")
        if self.ar_layers and self.ar_width < self.image_channels:
            raise ConfigError(f"ar_width ({self.ar_width}) must be >= image_channels ({self.image_channels}): "
                              "the masked convs give each colour channel its own group of features")

    @property
    def resolutions(self) -> list[int]:
        """Resolution of each conv latent layer, coarse to fine, e.g. [7]*5 + [14]*5."""
        return [res for res, count in parse_latent_spec(self.latent_spec, self.image_size) for _ in range(count)]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image, e.g. (1, 28, 28) or (3, 32, 32)."""
        return (self.image_channels, self.image_size, self.image_size)

    @property
    def n_latent_layers(self) -> int:
        """All latent layers: the top vector plus the conv maps."""
        return 1 + len(self.resolutions)

    def replace(self, **changes: Any) -> "HVAEConfig":
        _check_field_names(changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "HVAEConfig":
        _check_field_names(values)
        return cls(**values)


def _check_field_names(values: dict[str, Any]) -> None:
    """A typo in a field name is an error that lists the real names, never a silent default."""
    names = [f.name for f in dataclasses.fields(HVAEConfig)]
    unknown = set(values) - set(names)
    if unknown:
        raise ConfigError(f"unknown config fields: {sorted(unknown)}; the fields are {names}")


def check_field_types(config: Any) -> None:
    """Each field of a config dataclass holds its declared type: 'false' is not a bool, 3.5 not an
    int. Ranges are checked by the config itself."""
    for f in dataclasses.fields(config):
        value, kind = getattr(config, f.name), f.type
        if kind == "bool":
            check_bool(value, f.name)
        elif kind == "int":
            check_int(value, f.name, error=ConfigError)
        elif kind == "str" and not isinstance(value, str):
            raise ConfigError(f"{f.name} must be a string, got {value!r} ({type(value).__name__})")
        elif kind == "float" and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"{f.name} must be a number, got {value!r} ({type(value).__name__})")


def allowed_resolutions(image_size: int = IMAGE_SIZE) -> list[int]:
    """The latent resolutions an image of side `image_size` allows: image_size / 2**k, ascending.
    28 -> [7, 14, 28]; 32 -> [1, 2, 4, 8, 16, 32]."""
    sizes = [image_size]
    while sizes[-1] % 2 == 0:
        sizes.append(sizes[-1] // 2)
    return sizes[::-1]


def parse_latent_spec(spec: str, image_size: int = IMAGE_SIZE) -> list[tuple[int, int]]:
    """'7x5,14x5' -> [(7, 5), (14, 5)]: (resolution, number of latent layers), coarse to fine.

    Resolutions must divide `image_size` by a power of two and must increase. A count may be 0,
    but such a resolution is skipped altogether: the top-down path starts at the first resolution
    with a latent layer ('7x0,14x2' builds the same model as '14x2').
    """
    if not isinstance(spec, str):
        raise ConfigError(f"latent_spec must be a string such as '7x5,14x5', got {spec!r}")
    allowed = allowed_resolutions(image_size)
    allowed_text = ", ".join(map(str, allowed[:-1])) + (" or " if len(allowed) > 1 else "") + str(allowed[-1])
    stages = []
    for part in spec.replace(" ", "").split(","):
        try:
            res_text, count_text = part.split("x")
            res, count = int(res_text), int(count_text)
        except ValueError:
            raise ConfigError(f"bad latent spec {spec!r}: each part is RESxCOUNT, e.g. '7x5,14x5'") from None
        if res not in allowed or count < 0:
            raise ConfigError(f"bad latent spec {spec!r}: resolution must be {allowed_text} "
                              f"(images of side {image_size}), count >= 0")
        stages.append((res, count))
    resolutions = [res for res, _ in stages]
    if resolutions != sorted(set(resolutions)):
        raise ConfigError(f"bad latent spec {spec!r}: resolutions must increase, each once")
    if sum(count for _, count in stages) < 1:
        raise ConfigError(f"bad latent spec {spec!r}: at least one conv latent layer is needed")
    return stages


def depth_spec(n_layers: int) -> str:
    """A spec with n conv latent layers, split as evenly as possible between 7x7 and 14x14."""
    coarse = n_layers // 2
    return f"7x{coarse},14x{n_layers - coarse}" if coarse else f"7x0,14x{n_layers}"


PRESETS: dict[str, HVAEConfig] = {
    # The kit's default: the author's MNIST hierarchy (32-d top vector, 5 latent maps at 7x7 + 5 at
    # 14x14, 4 channels each) at the author's width, 64.
    "matryoshka": HVAEConfig(width=64),
    # The same at width 32, a quarter of the FLOPs: the ablation study's full model and the
    # 10-minute "train it yourself" recipe.
    "matryoshka-32": HVAEConfig(width=32),
    # matryoshka-32 with a lightweight autoregressive head: one masked 3x3 conv, so each pixel sees
    # only its 4 causal neighbours and the latents must still carry the shape.
    "matryoshka-ar": HVAEConfig(width=32, ar_layers=1, ar_kernel=3, ar_width=16),
    # The default with a learned mixture of 10 full-covariance Gaussians as the top prior: class
    # structure without labels.
    "mixture": HVAEConfig(width=64, top_prior="mixture", mixture_covariance="full"),
    # The default as a conditional model: the generator also sees the observed pixels and the mask.
    "imputation": HVAEConfig(width=64, conditional=True),
    # The ablations of matryoshka-32, widened to its number of parameters (within 1 %): without the
    # deterministic top-down path (the naive stack) and without the inference merge.
    "no-td-path": HVAEConfig(width=34, deterministic_path=False),
    "no-merge": HVAEConfig(width=42, inference_merge=False),
    # The author's Omniglot shape: 3 latent maps at 7x7, 3 at 14x14, 5 at 28x28, 6 channels each.
    "omniglot": HVAEConfig(latent_spec="7x3,14x3,28x5", latent_channels=6),
    # CIFAR-10 (32x32 RGB, 8-bit pixels): 5 latent maps at 8x8, 5 at 16x16, 8 channels each, width 128,
    # a mixture of 10 discretised logistics per sub-pixel and the colour autoregressive head.
    "cifar10": HVAEConfig(image_size=32, image_channels=3, likelihood="logistic", latent_spec="8x5,16x5",
                          latent_channels=8, top_latent_dim=64, width=128, ar_layers=3, ar_width=48),
    # Natural-image patches on a CPU (the `photos` data: 32x32 RGB, 8-bit): the cifar10 shape (5 latent
    # maps at 8x8, 5 at 16x16) at width 32 with 4 channels each and 5 logistics per sub-pixel.
    "photos": HVAEConfig(image_size=32, image_channels=3, likelihood="logistic", logistic_components=5,
                         latent_spec="8x5,16x5", width=32),
    # The same with the colour autoregressive head: a 5x5 mask-A conv (each sub-pixel sees the two rows
    # above, the two pixels to its left and the earlier colours of its own pixel) and one 3x3 mask-B conv.
    "photos-ar": HVAEConfig(image_size=32, image_channels=3, likelihood="logistic", logistic_components=5,
                            latent_spec="8x5,16x5", width=32, ar_layers=2, ar_kernel=5, ar_width=24),
    # A tiny model for tests and fast notebook runs.
    "tiny": HVAEConfig(latent_spec="7x2,14x2", width=8, top_latent_dim=4, latent_channels=2, ar_width=8),
}


def get_preset(name: str, **overrides: Any) -> HVAEConfig:
    """A named preset, optionally with some fields changed."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


@dataclass(frozen=True)
class TrainConfig:
    """How to train; stored in every checkpoint beside the model config."""

    epochs: int = 20
    batch_size: int = 100
    lr: float = 2e-3
    lr_final_fraction: float = 0.1   # cosine decay of the learning rate to lr * this by the last epoch
    lr_warmup_steps: int = 0         # > 0: the learning rate rises linearly from lr / N to lr over the first N
                                     # updates (Adamax's first updates move every weight by ~lr at once: wide
                                     # models, e.g. the cifar10 preset, need this at lr 2e-3)
    warmup_epochs: float = 3.0       # KL warm-up length (0 = off)
    free_bits: float = 0.0           # nats per latent layer below which KL is not penalised (0 = off)
    free_bits_end_epoch: float = 0.0 # > 0: the floor falls linearly from the end of warm-up to 0 here
    top_free_bits: float = 0.0       # a floor on the top vector's KL alone, held all run (0 = off): lets
                                     # the layer meant to hold the class take more information for free
    kl_balance: bool = False         # during warm-up, weight each layer's KL by its share (NVAE balancing)
    ema_decay: float = 0.0           # > 0: keep an exponential moving average of the weights; evaluate it
    grad_clip: float = 200.0         # max gradient norm; larger norms are scaled down
    skip_threshold: float = 1e5      # skip (and count) an update whose gradient norm exceeds this
    seed: int = 0
    device: str = "auto"             # "auto" picks cuda, then mps, then cpu
    amp: bool = False                # bf16 autocast for the training forward pass (evaluation stays fp32)
    compile: bool = False            # torch.compile the training step (worth it on a GPU)
    eval_seed: int = 0               # the held-out images' fixed binarisation (and masks, for a conditional model)
    init_from: str = ""              # start from this checkpoint's weights (layers of the same shape)
    new_lr: float = 0.0              # > 0: learning rate of the parameters init_from did not provide
    mixture_init_epoch: int = -1     # >= 0: at the start of this epoch, fit the mixture prior to the
                                     # encoder's top latents by EM (VaDE-style; EM starts from the run's seed)

    def __post_init__(self) -> None:
        check_field_types(self)
        check_int(self.epochs, "epochs", minimum=1, error=ConfigError)
        check_int(self.batch_size, "batch_size", minimum=1, error=ConfigError)
        check_float(self.lr, "lr", low=0.0, low_open=True, error=ConfigError)
        check_float(self.lr_final_fraction, "lr_final_fraction", low=0.0, high=1.0, error=ConfigError)
        check_int(self.lr_warmup_steps, "lr_warmup_steps", minimum=0, error=ConfigError)
        for name in ("warmup_epochs", "free_bits", "free_bits_end_epoch", "top_free_bits"):
            check_float(getattr(self, name), name, low=0.0, error=ConfigError)
        if 0 < self.free_bits_end_epoch < self.warmup_epochs:
            raise ConfigError(f"free_bits_end_epoch={self.free_bits_end_epoch:g} ends the free-bits floor before the "
                              f"KL warm-up ends (warmup_epochs={self.warmup_epochs:g}); use 0 (keep the floor) "
                              "or a value >= warmup_epochs")
        check_float(self.ema_decay, "ema_decay", low=0.0, high=1.0, high_open=True, error=ConfigError)
        check_float(self.grad_clip, "grad_clip", low=0.0, low_open=True, error=ConfigError)
        check_float(self.skip_threshold, "skip_threshold", low=0.0, low_open=True, error=ConfigError)
        check_int(self.mixture_init_epoch, "mixture_init_epoch (-1: off)", minimum=-1, maximum=self.epochs - 1,
                  error=ConfigError)
        for name in ("seed", "eval_seed"):
            check_seed(getattr(self, name), name, error=ConfigError)
        check_device_name(self.device)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(values) - names):
            raise ConfigError(f"unknown training settings {unknown}; the settings are {sorted(names)}")
        return cls(**values)

    def warn_if_average_remembers_start(self, n_images: int, world_size: int = 1) -> None:
        """Warn when a fine-tune's (init_from) weight average would still hold more than 5 % of its
        starting weights at the end (ema_decay ** updates, for `n_images` per epoch): a short fine-tune
        with a slow average ships a blend of the trained run and its untrained new parts (the kit's
        imputation model once lost 5.4 nats of held-out ELBO so)."""
        if not self.init_from or self.ema_decay == 0:
            return
        updates = self.epochs * -(-n_images // (self.batch_size * world_size))
        share = self.ema_decay ** updates
        if share > 0.05:
            warnings.warn(f"ema_decay={self.ema_decay} over this fine-tune's {updates} updates leaves {share:.0%} "
                          f"of the starting weights in the average that is evaluated and saved; ema_decay <= "
                          f"{0.01 ** (1 / updates):.3f} keeps that under 1 %", stacklevel=3)


# Settings a resumed run may change: they move the run elsewhere but do not change its numbers.
RESUME_SAFE = ("device", "compile")

