"""Checkpoints: round trip, atomic writes, helpful errors, checksums, no code execution on load."""
import os
import pickle

import pytest
import torch

from hvae_lite.baseline import MLPVAE, MLPVAEConfig
from hvae_lite.checkpoints import (
    Checkpoint, CheckpointError, atomic_torch_save, build_model, load_checkpoint, save_checkpoint, sha256_of,
)
from hvae_lite.config import get_preset
from hvae_lite.model import HVAE


def _checkpoint(config=None) -> Checkpoint:
    torch.manual_seed(0)
    model = build_model(config or get_preset("tiny", top_prior="mixture"))
    return Checkpoint(config=model.config, model_state=model.state_dict(), train_config={"epochs": 3},
                      history=[{"epoch": 1, "elbo": -100.0, "kl": [1.0, 2.0]}], epoch=1, step=40,
                      rng_state={"torch": torch.get_rng_state()})


@pytest.mark.parametrize("config", [get_preset("tiny", top_prior="mixture"), MLPVAEConfig(hidden=(16,), latent_dim=3)],
                         ids=["hvae", "mlp"])
def test_round_trip_rebuilds_the_same_model(tmp_path, digits, config):
    original = _checkpoint(config)
    save_checkpoint(original, tmp_path / "a.pt")
    loaded = load_checkpoint(tmp_path / "a.pt")
    assert loaded.config == original.config
    assert (loaded.epoch, loaded.step, loaded.history, loaded.train_config) == (1, 40, original.history, {"epochs": 3})
    assert torch.equal(loaded.rng_state["torch"], original.rng_state["torch"])
    a, b = original.model(), loaded.model()
    assert type(b) is type(a) and not b.training
    torch.manual_seed(1)
    out_a = a(digits[:3])
    torch.manual_seed(1)
    out_b = b(digits[:3])
    assert torch.equal(out_a.elbo, out_b.elbo) and torch.equal(out_a.params, out_b.params)


def test_atomic_save_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "sub" / "run.pt"
    save_checkpoint(_checkpoint(), path)
    save_checkpoint(_checkpoint(), path)  # overwriting works too
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.pt"]


def test_failed_save_keeps_the_old_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "run.pt"
    save_checkpoint(_checkpoint(), path)
    before = path.read_bytes()

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_torch_save({"x": Unsaveable()}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*nope\.pt: train one"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(tmp_path):
    path = tmp_path / "run.pt"
    save_checkpoint(_checkpoint(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable hvae_lite checkpoint.*retrain it or restore it"):
        load_checkpoint(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "run.pt"
    path.write_bytes(os.urandom(1000))
    with pytest.raises(CheckpointError, match="not a readable hvae_lite checkpoint"):
        load_checkpoint(path)


def test_a_torch_file_of_another_format(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save(HVAE(get_preset("tiny")).state_dict(), path)  # bare weights: no config
    with pytest.raises(CheckpointError, match="not an hvae_lite checkpoint of format 1"):
        load_checkpoint(path)
    save_checkpoint(_checkpoint(), path)
    raw = torch.load(path, weights_only=True)
    raw["config"]["widht"] = 3
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="malformed field.*widht"):
        load_checkpoint(path)


def test_checksum(tmp_path):
    path = tmp_path / "run.pt"
    save_checkpoint(_checkpoint(), path)
    digest = sha256_of(path)
    assert len(digest) == 64
    assert load_checkpoint(path, expected_sha256=digest).epoch == 1
    with pytest.raises(CheckpointError, match="fails its checksum"):
        load_checkpoint(path, expected_sha256="0" * 64)


MARKER = "hvae_lite_test_pwned"


class _Evil:
    """Unpickling this would create a file: proof that code from the checkpoint ran."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


class _Innocent:
    def __init__(self):
        self.value = 1


@pytest.mark.parametrize("payload", ["os.system", "instance"])
def test_pickled_code_is_refused_and_never_runs(tmp_path, payload):
    path, marker = tmp_path / "evil.pt", tmp_path / MARKER
    obj = _Evil(marker) if payload == "os.system" else _Innocent()
    raw = {"format_version": 1, "model_class": "HVAEConfig", "config": get_preset("tiny").to_dict(), "payload": obj}
    torch.save(raw, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="not a readable hvae_lite checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
    # The same file through plain pickle would have run the command: the test can fail.
    if payload == "os.system":
        with open(path, "rb") as f:
            torch.load(f, weights_only=False)
        assert marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickle_file_that_is_not_a_zip(tmp_path):
    path, marker = tmp_path / "evil.pkl", tmp_path / MARKER
    path.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_build_model():
    assert isinstance(build_model(get_preset("tiny")), HVAE)
    assert isinstance(build_model(MLPVAEConfig(hidden=(8,), latent_dim=2)), MLPVAE)
