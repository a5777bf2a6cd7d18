"""The trainer: history, exact resume, counted skipped updates, divergence, Ctrl-C, seeds, devices."""
import math

import pytest
import torch

from hvae_lite.baseline import MLPVAEConfig
from hvae_lite.checkpoints import load_checkpoint
from hvae_lite.config import get_preset
from hvae_lite.model import HVAE
from hvae_lite.train import TrainConfig, Trainer, TrainingDiverged, resolve_device

TIMING_KEYS = {"seconds", "images_per_s"}


def _train_config(**changes) -> TrainConfig:
    values = dict(epochs=1, batch_size=50, lr=2e-3, warmup_epochs=1.0, seed=0, device="cpu")
    return TrainConfig(**{**values, **changes})


def _trainer(split, path=None, config=None, **changes) -> Trainer:
    return Trainer(config or get_preset("tiny"), _train_config(**changes), split, checkpoint_path=path,
                   progress=False)


def _numbers(history):
    """The history without its wall-clock fields."""
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in history]


def _assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module):
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_a_deep_model_learns_a_fixed_batch(digits):
    """An 11-latent-layer model (the cpu preset's hierarchy at width 8) trains end to end."""
    torch.manual_seed(0)
    model = HVAE(get_preset("cpu", width=8))
    assert model.n_latent_layers >= 11
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = model(digits).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 100  # from about 560 nats to about 220
    assert sum(losses[-3:]) / 3 < sum(losses[5:8]) / 3  # still improving after the first steps


def test_history_fields(small_split):
    history = _trainer(small_split, warmup_epochs=3.0).fit()
    assert len(history) == 1
    record = history[0]
    expected = {"epoch", "elbo", "loss", "kl", "beta", "lr", "skipped", "seconds", "images_per_s",
                "test_elbo", "test_kl"}
    assert expected <= set(record)
    assert record["epoch"] == 1 and record["skipped"] == 0
    assert record["loss"] == pytest.approx(-record["elbo"])
    assert len(record["kl"]) == len(record["test_kl"]) == get_preset("tiny").n_latent_layers
    assert 0 < record["beta"] < 1  # still warming up: 4 of 12 warm-up steps done
    assert record["elbo"] < 0 and record["test_elbo"] < 0 and record["images_per_s"] > 0


def test_resume_continues_exactly(small_split, tmp_path):
    straight = _trainer(small_split, tmp_path / "straight.pt", epochs=2)
    straight_history = straight.fit()

    def stop(record):
        raise KeyboardInterrupt  # Ctrl-C after the first epoch's checkpoint is written

    interrupted = Trainer(get_preset("tiny"), _train_config(epochs=2), small_split,
                          checkpoint_path=tmp_path / "resumed.pt", callback=stop, progress=False)
    assert len(interrupted.fit()) == 1
    assert load_checkpoint(tmp_path / "resumed.pt").epoch == 1
    torch.manual_seed(123)  # whatever happened in between must not matter
    resumed = Trainer.resume(tmp_path / "resumed.pt", small_split, progress=False)
    resumed_history = resumed.fit()
    assert _numbers(resumed_history) == _numbers(straight_history)
    _assert_same_parameters(resumed.model, straight.model)
    assert resumed.step == straight.step == 8
    on_disk = load_checkpoint(tmp_path / "resumed.pt")
    assert on_disk.epoch == 2 and _numbers(on_disk.history) == _numbers(straight_history)


def test_resume_to_more_epochs(small_split, tmp_path):
    _trainer(small_split, tmp_path / "run.pt").fit()
    resumed = Trainer.resume(tmp_path / "run.pt", small_split, epochs=2, progress=False)
    history = resumed.fit()
    assert [r["epoch"] for r in history] == [1, 2]
    assert load_checkpoint(tmp_path / "run.pt").train_config["epochs"] == 2


def _poison(trainer, bad_calls):
    """Make the training forward pass return a NaN loss on the given (0-based) training calls."""
    forward = trainer.model.forward
    calls = {"n": 0}

    def patched(x, observed=None, pixel_mask=None):
        out = forward(x, observed, pixel_mask)
        if trainer.model.training:
            if calls["n"] in bad_calls:
                out.recon = out.recon * float("nan")
            calls["n"] += 1
        return out

    trainer.model.forward = patched


def test_non_finite_losses_are_skipped_and_counted(small_split):
    trainer = _trainer(small_split, epochs=1)
    _poison(trainer, bad_calls={1, 3})
    history = trainer.fit()
    assert history[0]["skipped"] == 2
    assert trainer.step == 2  # 4 batches, 2 updates
    assert math.isfinite(history[0]["elbo"])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_huge_gradients_are_skipped(small_split):
    trainer = _trainer(small_split, skip_threshold=1e-6)  # every gradient counts as huge
    with pytest.raises(TrainingDiverged, match="4 of 4 updates"):
        trainer.fit()


def test_divergence_raises_and_keeps_the_last_good_checkpoint(small_split, tmp_path):
    path = tmp_path / "run.pt"
    trainer = _trainer(small_split, path, epochs=3)
    _poison(trainer, bad_calls={4, 5, 6})  # epoch 2: 3 of 4 updates NaN
    with pytest.raises(TrainingDiverged, match=r"epoch 2: 3 of 4 updates.*last good checkpoint is kept at"):
        trainer.fit()
    checkpoint = load_checkpoint(path)
    assert checkpoint.epoch == 1 and len(checkpoint.history) == 1
    model = checkpoint.model()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert list(tmp_path.iterdir()) == [path]


def test_keyboard_interrupt_mid_epoch_returns_the_history(small_split, tmp_path, capsys):
    path = tmp_path / "run.pt"
    trainer = _trainer(small_split, path, epochs=3)
    forward = trainer.model.forward
    calls = {"n": 0}

    def interrupt_in_epoch_2(*args):
        if trainer.model.training:
            calls["n"] += 1
            if calls["n"] == 6:
                raise KeyboardInterrupt
        return forward(*args)

    trainer.model.forward = interrupt_in_epoch_2
    history = trainer.fit()
    assert [r["epoch"] for r in history] == [1]
    assert load_checkpoint(path).epoch == 1
    assert "Interrupted during epoch 2" in capsys.readouterr().out


def test_same_seed_same_numbers(small_split):
    a, b = _trainer(small_split, seed=3), _trainer(small_split, seed=3)
    assert _numbers(a.fit()) == _numbers(b.fit())
    _assert_same_parameters(a.model, b.model)
    c = _trainer(small_split, seed=4)
    assert _numbers(c.fit()) != _numbers(a.history)


@pytest.mark.parametrize("config", [get_preset("tiny", conditional=True), get_preset("tiny", likelihood="gaussian"),
                                    MLPVAEConfig(hidden=(16,), latent_dim=4)], ids=["conditional", "gaussian", "mlp"])
def test_other_models_train(small_split, config):
    history = _trainer(small_split, config=config).fit()
    assert math.isfinite(history[0]["elbo"]) and math.isfinite(history[0]["test_elbo"])


def test_amp_runs_on_cpu(small_split):
    trainer = _trainer(small_split, amp=True)
    history = trainer.fit()
    assert math.isfinite(history[0]["elbo"]) and history[0]["skipped"] == 0
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # autocast, not a cast


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    auto = resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else auto.type)
    if not torch.cuda.is_available() and not torch.backends.mps.is_available():
        assert auto == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'no-such-device'"):
        resolve_device("no-such-device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_trainer_rejects_bad_data(small_split):
    bad = type(small_split)(small_split.train_images * 255, small_split.train_labels, small_split.test_images,
                            small_split.test_labels, "embedded")
    with pytest.raises(ValueError, match=r"train_images must be in \[0, 1\]"):
        _trainer(bad)
