"""Natural images without a network: the photo patches (cut, cached, checksummed, offline), the
logistic head's start, the learning-rate warm-up and divergence caught within a few updates."""
import math
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hvae_lite.config import get_preset
from hvae_lite.data import load_data, photos
from hvae_lite.data.photos import TEST_PHOTOS, TRAIN_PHOTOS, cut_patches, load_photos, shrink
from hvae_lite.errors import DataError
from hvae_lite.likelihoods import OutputHead
from hvae_lite.model import HVAE
from hvae_lite.objectives import bits_per_dim
from hvae_lite.recipes import FAST_RECIPES, RECIPES
from hvae_lite.train import DIVERGED_STREAK, TrainConfig, Trainer, TrainingDiverged


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def split(cache):
    return load_photos(cache_dir=cache)


def test_the_patches_are_8_bit_colour_and_held_out_photographs_are_never_trained_on(split):
    assert split.train_images.shape[1:] == split.test_images.shape[1:] == (3, 32, 32)
    assert (len(split.train_images), len(split.test_images)) == (5985, 827)
    for images in (split.train_images, split.test_images):
        levels = images * 255
        assert images.dtype == torch.float32 and torch.equal(levels, levels.round())
        assert 0 <= images.min() and images.max() <= 1
    assert set(split.train_labels.tolist()) == set(range(len(TRAIN_PHOTOS)))
    assert set(split.test_labels.tolist()) == set(range(len(TRAIN_PHOTOS), len(TRAIN_PHOTOS) + len(TEST_PHOTOS)))
    assert not set(TRAIN_PHOTOS) & set(TEST_PHOTOS) and "motorcycle_right.png" not in TEST_PHOTOS  # the stereo twin
    assert split.describe() == {"source": "photos", "split_seed": None, "n_train": 5985, "n_test": 827}


def test_the_registry_and_the_cache_serve_the_same_patches_without_a_network(split, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the photos data set must never open a connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    first = load_data("photos", cache_dir=tmp_path)             # cut from the photographs
    assert (tmp_path / photos.CACHE_NAME).is_file()
    monkeypatch.setattr(photos, "_cut_all", lambda folder=None: pytest.fail("the cache was not used"))
    again = load_data("photos", cache_dir=tmp_path)             # read from the cache
    for a, b in ((first.train_images, again.train_images), (first.test_images, split.test_images)):
        assert torch.equal(a, b)


def test_a_damaged_cache_is_rebuilt(split, cache, tmp_path):
    path = tmp_path / photos.CACHE_NAME
    shutil.copy(cache / photos.CACHE_NAME, path)
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    rebuilt = load_photos(cache_dir=tmp_path)
    assert len(rebuilt.train_images) == 5985 and photos._read_cache(path) is not None


def test_missing_scikit_image_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # import skimage now raises ImportError
    with pytest.raises(DataError, match=r"scikit-image, which is not installed: pip install"):
        load_photos(cache_dir=tmp_path)


def test_a_missing_or_different_photograph_is_named(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    source = photos.skimage_data_dir()
    for name in list(TRAIN_PHOTOS)[:2]:
        shutil.copy(source / name, folder / name)
    with pytest.raises(DataError, match=rf"{list(TRAIN_PHOTOS)[2]} is missing"):
        load_photos(cache_dir=tmp_path / "cache", photo_dir=folder)
    for name in list(TRAIN_PHOTOS) + list(TEST_PHOTOS):
        shutil.copy(source / name, folder / name)
    shutil.copy(source / "motorcycle_right.png", folder / "motorcycle_left.png")  # another file of that name
    with pytest.raises(DataError, match=r"motorcycle_left.png is not the photograph .*\(sha256 5fc913"):
        load_photos(cache_dir=tmp_path / "cache", photo_dir=folder)
    assert not (tmp_path / "cache" / photos.CACHE_NAME).exists()


def test_shrink_averages_integer_blocks_and_cut_drops_flat_patches():
    image = np.arange(8 * 6 * 3, dtype=np.uint8).reshape(8, 6, 3)
    small = shrink(image, short_side=3)  # factor 2
    assert small.shape == (4, 3, 3)
    block = image[2:4, 4:6, 1].astype(float)
    assert small[1, 2, 1] == math.floor(block.mean() + 0.5)
    flat = np.full((40, 40, 3), 7, dtype=np.uint8)
    flat[:, 20:] = np.random.default_rng(0).integers(0, 256, (40, 20, 3))
    patches = cut_patches(flat, size=8, stride=8)  # 25 windows, the 10 in the left half flat
    assert patches.shape == (15, 3, 8, 8)


def test_the_logistic_head_starts_near_uniform_over_the_256_levels(split):
    """The mixture starts spread over [0, 255] (means at K bin centres, a bin-wide scale): about
    8 bits per sub-pixel on real patches, as a uniform guess. PyTorch's default init starts at one
    logistic of scale 1 on [-1, 1], about 9 bits, and needs thousands of updates to narrow it."""
    torch.manual_seed(0)
    model = HVAE(get_preset("photos")).eval()
    with torch.no_grad():
        out = model(split.test_images[:64])
    recon_bits = bits_per_dim(out.recon.mean().item(), 3 * 32 * 32)
    assert 7.5 < recon_bits < 8.3


def _colour_trainer(split, path=None, **changes):
    values = dict(epochs=1, batch_size=16, lr=2e-3, warmup_epochs=0.0, seed=0, device="cpu")
    config = FAST_RECIPES["photos"].config
    return Trainer(config, TrainConfig(**{**values, **changes}), split.subset(320, 16), checkpoint_path=path,
                   progress=False)


def test_the_learning_rate_warm_up_scales_the_first_updates(split):
    """Adamax's first update moves every weight with a gradient by exactly lr (the sign of its
    gradient); with a warm-up of N updates the first moves it by lr / N."""
    moved = {}
    for warmup in (0, 10):
        trainer = _colour_trainer(split, lr_warmup_steps=warmup)
        before = [p.detach().clone() for p in trainer.model.parameters()]
        x, _ = trainer._batch(trainer.data.train_images[:16])
        totals = {"loss": 0.0, "elbo": 0.0, "kl": torch.zeros(trainer.model.n_latent_layers), "images": 0}
        assert trainer._update(x, None, 1.0, 0.0, totals)
        moved[warmup] = max((p.detach() - b).abs().max().item() for p, b in zip(trainer.model.parameters(), before))
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(2e-3)  # the schedule's rate is untouched
    assert moved[0] == pytest.approx(2e-3, rel=1e-3)
    assert moved[10] == pytest.approx(2e-4, rel=1e-3)


def test_divergence_is_caught_within_a_few_updates_and_says_nothing_was_saved(split, tmp_path):
    path = tmp_path / "run.pt"
    trainer = _colour_trainer(split, path, epochs=2, skip_threshold=1e-9)  # every update counts as huge
    with pytest.raises(TrainingDiverged) as caught:
        trainer.fit()
    message = str(caught.value)
    assert f"update 1: {DIVERGED_STREAK} updates in a row" in message
    assert "gradient norm" in message and "No checkpoint of this run was written" in message
    assert not path.exists() and trainer.step == 0  # 20 batches in the epoch: stopped after 10


def test_photos_recipes_train_on_the_patches_and_say_so_on_the_command_line():
    for name in ("photos", "photos-ar", "photos-control", "photos-imputation"):
        command = RECIPES[name].command(f"runs/{name}.pt")
        assert command[command.index("--data") + 1] == "photos"
        assert RECIPES[name].config.image_shape == FAST_RECIPES[name].config.image_shape == (3, 32, 32)
    ar, control = RECIPES["photos-ar"], RECIPES["photos-control"]
    assert ar.train == control.train and ar.base == control.base == "photos"  # the one difference is the head
    assert control.config == RECIPES["photos"].config and ar.config.ar_layers > 0
    assert RECIPES["photos-imputation"].base is None and RECIPES["photos-imputation"].config.conditional


def test_the_command_line_trains_and_evaluates_on_the_photos(tmp_path, capsys):
    from hvae_lite.__main__ import main
    from hvae_lite.checkpoints import load_checkpoint

    colour = ["--set", "image_size=32", "--set", "image_channels=3", "--set", "likelihood=logistic",
              "--set", "latent_spec=8x1,16x1", "--set", "logistic_components=2"]
    out = tmp_path / "run.pt"
    assert main(["train", "--preset", "tiny", *colour, "--data", "photos", "--limit-train", "40", "--epochs", "1",
                 "--batch-size", "20", "--lr-warmup-steps", "5", "--out", str(out), "--quiet"]) == 0
    checkpoint = load_checkpoint(out)
    assert checkpoint.data == {"source": "photos", "split_seed": None, "n_train": 40, "n_test": 827}
    assert checkpoint.train_config["lr_warmup_steps"] == 5 and checkpoint.history[0]["skipped"] == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--k", "2", "--n-images", "4", "--quiet"]) == 0
    metrics = __import__("json").loads(capsys.readouterr().out)
    assert metrics["n_images"] == 4 and 0 < metrics["bits_per_dim"] < 9


def test_notebook_9_parameters_are_checked_against_the_held_out_patches(split, monkeypatch):
    import nbformat

    from hvae_lite.errors import InputError
    from hvae_lite.parameters import NOTEBOOKS, check_parameters

    monkeypatch.setenv("HVAE_LITE_FAST", "1")  # check_parameters writes the mode it resolves: restored after
    names = list(NOTEBOOKS["09_natural_images"])
    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "09_natural_images.ipynb"
    cells = nbformat.read(notebook, as_version=4).cells
    parameters = [cell for cell in cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and [line.split("=")[0].strip() for line in parameters[0].source.splitlines()] == names
    given = dict.fromkeys(names)
    full = check_parameters("09_natural_images", **{**given, "FAST": False, "SEED": 0})
    assert (full.N_SHOW, full.N_EVAL, full.N_AR_SAMPLES, full.N_STEPS) == (16, len(split.test_images), 4, 30)
    fast = check_parameters("09_natural_images", **{**given, "FAST": True, "SEED": 0})
    assert fast.N_EVAL == 20 and fast.N_AR_SAMPLES == 1
    with pytest.raises(InputError, match="N_EVAL"):  # more patches than are held out
        check_parameters("09_natural_images", **{**given, "FAST": False, "SEED": 0, "N_EVAL": len(split.test_images) + 1})


def test_the_mean_of_a_logistic_head_stays_in_the_unit_interval():
    """Means at the ends of the range, mixed by softmax weights that sum to 1 only up to rounding,
    must still give images in [0, 1] (a sample's mean went to -6e-8 and failed the plots' check)."""
    head = OutputHead(get_preset("photos"))
    k = head.params_per_channel // 3
    logits = torch.randn(64, 3, k, 8, 8, generator=torch.Generator().manual_seed(0)) * 5
    for end in (-3.0, 3.0):  # beyond the clamp of the component means
        params = torch.cat([logits, torch.full_like(logits, end), torch.zeros_like(logits)], 2).flatten(1, 2)
        mean = head.mean(params)
        assert mean.min() >= 0 and mean.max() <= 1
