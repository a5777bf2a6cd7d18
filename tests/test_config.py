"""HVAEConfig: presets, the latent spec parser, validation, serialisation."""
import dataclasses

import pytest

from hvae_lite.config import PRESETS, HVAEConfig, depth_spec, get_preset, parse_latent_spec
from hvae_lite.errors import ConfigError


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_a_valid_config_and_round_trips(name):
    config = get_preset(name)
    assert isinstance(config, HVAEConfig)
    assert HVAEConfig.from_dict(config.to_dict()) == config


def test_default_preset_has_the_authors_hierarchy():
    config = get_preset("matryoshka")
    assert config.n_latent_layers == 11 >= 10  # the top vector + 10 latent maps
    assert config.resolutions == [7] * 5 + [14] * 5
    assert (config.top_latent_dim, config.latent_channels, config.width) == (32, 4, 64)  # the author's width
    assert get_preset("matryoshka-32") == config.replace(width=32)  # the study's and the quick recipe's


def test_preset_variants_differ_where_named():
    assert get_preset("matryoshka-ar").ar_layers > 0
    assert get_preset("mixture").top_prior == "mixture"
    assert get_preset("imputation").conditional
    assert not get_preset("no-td-path").deterministic_path
    assert not get_preset("no-merge").inference_merge


def test_get_preset_overrides_and_errors():
    assert get_preset("matryoshka", width=8).width == 8
    assert PRESETS["matryoshka"].width == 64  # overrides never mutate the preset
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        get_preset("nope")
    with pytest.raises(ValueError, match=r"unknown config fields: \['widht'\]; the fields are \['latent_spec'"):
        get_preset("matryoshka", widht=8)  # a typo is an error, not silently ignored


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_preset("matryoshka").width = 3


@pytest.mark.parametrize("spec, expected", [
    ("7x5,14x5", [(7, 5), (14, 5)]),
    ("14x3", [(14, 3)]),
    (" 7x1, 14x0, 28x2 ", [(7, 1), (14, 0), (28, 2)]),
    ("7x0,14x4", [(7, 0), (14, 4)]),
])
def test_parse_latent_spec_good(spec, expected):
    assert parse_latent_spec(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("7-5", "each part is RESxCOUNT"),
    ("", "each part is RESxCOUNT"),
    ("7x5,", "each part is RESxCOUNT"),
    ("axb", "each part is RESxCOUNT"),
    ("8x3", "resolution must be 7, 14 or 28"),
    ("7x-1", "count >= 0"),
    ("14x2,7x2", "resolutions must increase"),
    ("7x2,7x2", "resolutions must increase"),
    ("7x0,14x0", "at least one conv latent layer"),
])
def test_parse_latent_spec_bad(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_latent_spec(spec)
    with pytest.raises(ValueError, match="bad latent spec"):
        HVAEConfig(latent_spec=spec)


def test_resolutions_follow_the_spec():
    config = HVAEConfig(latent_spec="7x1,14x0,28x2")
    assert config.resolutions == [7, 28, 28]
    assert config.n_latent_layers == 4


@pytest.mark.parametrize("n", [1, 2, 5, 10, 11])
def test_depth_spec(n):
    config = HVAEConfig(latent_spec=depth_spec(n))
    assert config.n_latent_layers == n + 1
    assert abs(config.resolutions.count(7) - config.resolutions.count(14)) <= 1


@pytest.mark.parametrize("field, value, message", [
    ("top_prior", "gamma", "top_prior='gamma'"),
    ("layer_prior", "fixed", "layer_prior"),
    ("posterior", "relative", "posterior"),
    ("likelihood", "poisson", "likelihood"),
    ("width", 0, "width must be >= 1"),
    ("latent_channels", -1, "latent_channels must be >= 1"),
    ("top_latent_dim", 0, "top_latent_dim"),
    ("mixture_components", 0, "mixture_components"),
    ("ar_width", 0, "ar_width"),
    ("ar_layers", -1, "ar_layers must be >= 0"),
])
def test_invalid_field_values_raise(field, value, message):
    with pytest.raises(ValueError, match=message):
        HVAEConfig(**{field: value})


def test_autoregressive_head_needs_bernoulli():
    with pytest.raises(ValueError, match="bernoulli"):
        HVAEConfig(ar_layers=2, likelihood="gaussian")


def test_to_dict_is_plain_and_from_dict_rejects_unknown_fields():
    values = get_preset("tiny").to_dict()
    assert all(isinstance(v, (str, int, bool)) for v in values.values())
    with pytest.raises(ValueError, match=r"unknown config fields: \['widht'\]"):
        HVAEConfig.from_dict({**values, "widht": 3})


def test_replace_validates():
    assert get_preset("tiny").replace(width=4).width == 4
    with pytest.raises(ValueError, match="bad latent spec"):
        get_preset("tiny").replace(latent_spec="9x1")


def test_a_conditional_model_refuses_a_mixture_top_prior_it_would_ignore():
    with pytest.raises(ConfigError, match="conditional model's top prior comes from the observed pixels"):
        get_preset("tiny", conditional=True, top_prior="mixture")
    # A count of 0 skips the resolution: the top-down path starts at the first one with latents.
    assert get_preset("tiny", latent_spec="7x0,14x2").resolutions == get_preset("tiny", latent_spec="14x2").resolutions
