"""Tests for hvae_lite.pretrained and hvae_lite.recipes: fast training and its cache, shipped files and their checksums."""
import json

import pytest
import torch

from hvae_lite import recipes
from hvae_lite.checkpoints import CheckpointError, load_checkpoint, read_manifest, sha256_of
from hvae_lite.data import load_data
from hvae_lite.evaluate import heldout_elbo
from hvae_lite.paths import CHECKPOINT_DIR
from hvae_lite.pretrained import load_or_train, ship_checkpoint
from hvae_lite.recipes import CHECKPOINT_NAMES, FAST_RECIPES, QUICK_RECIPES, RECIPES


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    """One fast-mode training of the default model into a private cache (a few seconds)."""
    runs = tmp_path_factory.mktemp("runs")
    empty = tmp_path_factory.mktemp("no_checkpoints")
    checkpoint = load_or_train("matryoshka", fast=True, progress=False, checkpoint_dir=empty, runs_dir=runs)
    return checkpoint, runs, empty


def test_fast_mode_trains_the_tiny_recipe_and_caches_it(fast_run):
    checkpoint, runs, empty = fast_run
    recipe = FAST_RECIPES["matryoshka"]
    # Its second stage: the top prior fitted to the training digits, every other weight the run's.
    assert checkpoint.config == recipe.config.replace(top_prior="mixture", mixture_covariance="full",
                                                      mixture_components=recipe.top_prior_components)
    assert checkpoint.epoch == recipe.train.epochs
    assert (runs / "fast-matryoshka.pt").is_file() and len(list(runs.glob("fast-matryoshka.prior-*.pt"))) == 1
    again = load_or_train("matryoshka", fast=True, progress=False, checkpoint_dir=empty, runs_dir=runs)
    assert again.history == checkpoint.history  # loaded from the cache, not retrained
    for key, value in checkpoint.model_state.items():
        assert torch.equal(again.model_state[key], value)


def test_fast_mode_follows_the_environment(monkeypatch):
    monkeypatch.setenv("HVAE_LITE_FAST", "1")
    assert recipes.fast_mode() and not recipes.fast_mode(False)
    monkeypatch.setenv("HVAE_LITE_FAST", "0")
    assert not recipes.fast_mode() and recipes.fast_mode(True)


def test_unknown_name_is_refused():
    with pytest.raises(ValueError, match="unknown checkpoint"):
        load_or_train("resnet", fast=True)


def test_a_fine_tune_starts_from_its_base(fast_run):
    base, runs, empty = fast_run
    tuned = load_or_train("imputation", fast=True, progress=False, checkpoint_dir=empty, runs_dir=runs)
    assert tuned.train_config["init_from"] == str(runs / "fast-matryoshka.pt")
    assert tuned.config.conditional
    # The shared layers began at the base's weights: after one short epoch they are still close.
    bottom = "bottom_up.stem.weight"
    drift = (tuned.evaluation_state()[bottom] - base.evaluation_state()[bottom]).abs().max()
    assert drift < 0.1


@pytest.mark.parametrize("name", CHECKPOINT_NAMES)
def test_every_fast_and_quick_recipe_builds_its_kind_of_model(name):
    full = RECIPES[name]
    for recipe in (FAST_RECIPES[name], QUICK_RECIPES[name]):
        config = recipe.config
        assert (config.ar_layers > 0, config.top_prior, config.conditional, config.deterministic_path) == (
            full.config.ar_layers > 0, full.config.top_prior, full.config.conditional, full.config.deterministic_path)
        assert (recipe.base, recipe.top_prior_components > 0) == (full.base, full.top_prior_components > 0)
        assert recipe.data == full.data


def test_recipe_command_is_the_cli_training_command():
    command = RECIPES["study-ar-head"].command("runs/x.pt")
    assert command[:4] == ["python", "-m", "hvae_lite", "train"]
    assert command[command.index("--preset") + 1] == "matryoshka-ar"
    assert command[command.index("--init-from") + 1] == "runs/checkpoints/study-matryoshka.pt"
    assert "--kl-balance" in RECIPES["matryoshka"].command("runs/y.pt")
    assert command[command.index("--epochs") + 1] == str(RECIPES["study-ar-head"].train.epochs)
    with pytest.raises(ValueError):
        FAST_RECIPES["matryoshka"].command("runs/x.pt")  # a subset of digits is not a CLI option


def _ship(fast_run, tmp_path, dtype=torch.float16):
    """Ship the fast run into tmp_path as `matryoshka` with a manifest, as `make checkpoints` does."""
    _, runs, _ = fast_run
    digest = ship_checkpoint(runs / "fast-matryoshka.pt", tmp_path / "matryoshka.pt", dtype=dtype)
    (tmp_path / "matryoshka.json").write_text(json.dumps({"sha256": digest}))
    return tmp_path / "matryoshka.pt"


def test_shipped_weights_only_file_loads_back_as_float32(fast_run, tmp_path):
    _, runs, _ = fast_run
    checkpoint = load_checkpoint(runs / "fast-matryoshka.pt")  # the run that _ship ships
    path = _ship(fast_run, tmp_path)
    loaded = load_or_train("matryoshka", fast=False, checkpoint_dir=tmp_path, runs_dir=tmp_path / "runs")
    assert loaded.optimizer_state is None and not (tmp_path / "runs").exists()  # loaded, not trained
    for key, value in checkpoint.evaluation_state().items():
        if value.is_floating_point():
            assert loaded.model_state[key].dtype == torch.float32
            torch.testing.assert_close(loaded.model_state[key], value, rtol=1e-3, atol=1e-3)


def test_checksum_mismatch_is_a_clear_error(fast_run, tmp_path):
    path = _ship(fast_run, tmp_path)
    with open(path, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(CheckpointError, match=r"matryoshka\.pt fails its checksum.*retrain it or restore it"):
        load_or_train("matryoshka", fast=False, checkpoint_dir=tmp_path, runs_dir=tmp_path / "runs")


def test_a_shipped_file_without_manifest_is_an_error(fast_run, tmp_path):
    _ship(fast_run, tmp_path)
    (tmp_path / "matryoshka.json").unlink()
    with pytest.raises(CheckpointError, match="no manifest"):
        load_or_train("matryoshka", fast=False, checkpoint_dir=tmp_path)


SHIPPED = [name for name in CHECKPOINT_NAMES if (CHECKPOINT_DIR / f"{name}.pt").is_file()]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoint_matches_its_manifest(name):
    manifest = read_manifest(name)
    assert sha256_of(CHECKPOINT_DIR / f"{name}.pt") == manifest["sha256"]
    checkpoint = load_or_train(name, fast=False, progress=False)
    assert checkpoint.config == type(checkpoint.config).from_dict(manifest["config"])  # older manifests lack newer fields
    # The held-out ELBO of the first 100 digits, recomputed from the file, as the manifest says.
    subset = manifest["heldout"]["elbo_subset"]
    data = manifest["data"]  # the digits' manifests name no source (the embedded split); the photos' do
    images = load_data(data.get("source", "embedded"), seed=data["split_seed"] or 0).test_images[: subset["n_images"]]
    model = checkpoint.model()  # built before seeding: its random initialisation draws from the RNG
    torch.manual_seed(subset["torch_seed"])
    elbo, _ = heldout_elbo(model, images)
    assert elbo == pytest.approx(subset["elbo"], abs=0.05)


@pytest.mark.skipif(not (CHECKPOINT_DIR / "matryoshka.pt").is_file(), reason="no shipped checkpoint")
def test_a_shipped_model_is_opened_by_name_and_a_file_of_that_name_wins(fast_run, tmp_path, monkeypatch):
    from hvae_lite.pretrained import open_checkpoint, shipped_path

    by_name = open_checkpoint("matryoshka")
    assert by_name.config == type(by_name.config).from_dict(read_manifest("matryoshka")["config"])
    assert by_name.config.width == RECIPES["matryoshka"].config.width
    assert all(v.dtype == torch.float32 for v in by_name.model_state.values() if v.is_floating_point())
    assert shipped_path("matryoshka") == str(CHECKPOINT_DIR / "matryoshka.pt")
    monkeypatch.chdir(tmp_path)  # a file called "matryoshka" in the working folder is what the user means
    checkpoint, runs, _ = fast_run
    (tmp_path / "matryoshka").write_bytes((runs / "fast-matryoshka.pt").read_bytes())
    assert open_checkpoint("matryoshka").config == load_checkpoint(runs / "fast-matryoshka.pt").config
    assert shipped_path("matryoshka") == "matryoshka"
    with pytest.raises(CheckpointError, match="or name a shipped model: matryoshka, mixture"):
        open_checkpoint("no-such-model")


@pytest.mark.skipif(not (CHECKPOINT_DIR / "matryoshka.pt").is_file(), reason="no shipped checkpoint")
def test_the_command_line_takes_shipped_names_and_evaluation_chunks(tmp_path, capsys, monkeypatch):
    """evaluate and sample take a shipped model's name; evaluate's --batch-size and --chunk size its
    forward passes (the IWAE draws then come in another order; the ELBO is the same)."""
    from hvae_lite.__main__ import main

    monkeypatch.chdir(tmp_path)
    scores = []
    for flags in (["--batch-size", "4", "--chunk", "3"], ["--batch-size", "1", "--chunk", "1"]):
        assert main(["evaluate", "matryoshka", "--k", "3", "--n-images", "4", "--quiet", *flags]) == 0
        scores.append(json.loads(capsys.readouterr().out))
    assert scores[0]["n_images"] == 4 and scores[0]["k"] == 3
    assert scores[0]["elbo"] == pytest.approx(scores[1]["elbo"])
    assert scores[0]["nll_iwae"] == pytest.approx(scores[1]["nll_iwae"], abs=3.0)
    assert main(["sample", "mixture", "--n", "4", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 1000
    assert main(["evaluate", "matryoshka", "--chunk", "0"]) == 1
    assert "--chunk must be >= 1" in capsys.readouterr().err


def test_shipping_with_a_second_stage_fits_the_top_prior(fast_run, tmp_path, embedded):
    _, runs, _ = fast_run
    digest = ship_checkpoint(runs / "fast-matryoshka.pt", tmp_path / "m.pt", dtype=torch.float16,
                             prior_images=embedded.train_images[:300], prior_components=2)
    shipped = load_checkpoint(tmp_path / "m.pt", expected_sha256=digest)
    assert shipped.config.top_prior == "mixture" and shipped.config.mixture_components == 2
    assert shipped.model_state["top.mixture.means"].dtype == torch.float16 and shipped.optimizer_state is None
    assert shipped.model().top.mixture.n_components == 2
