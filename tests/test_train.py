"""The trainer: history, exact resume, counted skipped updates, divergence, Ctrl-C, seeds, devices."""
import math
import warnings

import pytest
import torch

from hvae_lite.baseline import MLPVAEConfig
from hvae_lite.checkpoints import load_checkpoint
from hvae_lite.errors import CheckpointError
from hvae_lite.config import get_preset
from hvae_lite.data import fixed_binarize
from hvae_lite.model import HVAE
from hvae_lite.priors import fit_mixture_to_encoder
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
    """An 11-latent-layer model (the default preset's hierarchy at width 8) trains end to end."""
    torch.manual_seed(0)
    model = HVAE(get_preset("matryoshka", width=8))
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
    assert record["loss"] < -record["elbo"]  # the loss optimised: in warm-up the KL weighs less than in the ELBO
    assert len(record["kl"]) == len(record["test_kl"]) == get_preset("tiny").n_latent_layers
    assert 0 < record["beta"] < 1  # still warming up: 4 of 12 warm-up steps done
    assert record["elbo"] < 0 and record["test_elbo"] < 0 and record["images_per_s"] > 0
    plain = _trainer(small_split, warmup_epochs=0.0, free_bits=0.0).fit()[0]
    assert plain["loss"] == pytest.approx(-plain["elbo"], rel=1e-5)  # no warm-up, no free bits: the loss is -ELBO


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


def test_ema_is_evaluated_saved_and_resumed_exactly(small_split, tmp_path):
    straight = _trainer(small_split, tmp_path / "straight.pt", epochs=2, ema_decay=0.9)
    straight.fit()
    saved = load_checkpoint(tmp_path / "straight.pt")
    ema_weights = saved.evaluation_state()
    raw = saved.model_state
    assert set(ema_weights) == set(raw)
    assert any(not torch.equal(ema_weights[k], raw[k]) for k in raw)  # the average lags the raw weights
    _assert_same_parameters(saved.model(), straight.ema.module)        # Checkpoint.model() is the average

    def stop(record):
        raise KeyboardInterrupt

    Trainer(get_preset("tiny"), _train_config(epochs=2, ema_decay=0.9), small_split,
            checkpoint_path=tmp_path / "resumed.pt", callback=stop, progress=False).fit()
    resumed = Trainer.resume(tmp_path / "resumed.pt", small_split, progress=False)
    assert _numbers(resumed.fit()) == _numbers(straight.history)
    _assert_same_parameters(resumed.ema.module, straight.ema.module)


def test_free_bits_schedule_is_recorded(small_split):
    history = _trainer(small_split, epochs=3, warmup_epochs=1.0, free_bits=0.5, free_bits_end_epoch=2.0).fit()
    # The floor holds during warm-up, falls over epoch 2 and is gone in epoch 3.
    assert [round(r["free_bits"], 3) for r in history] == [0.5, 0.125, 0.0]


def test_kl_balance_changes_training_only_during_warm_up(small_split):
    plain = _trainer(small_split, epochs=1, warmup_epochs=1.0).fit()
    balanced = _trainer(small_split, epochs=1, warmup_epochs=1.0, kl_balance=True).fit()
    assert _numbers(plain) != _numbers(balanced)
    after = [_trainer(small_split, epochs=1, warmup_epochs=0.0, kl_balance=flag).fit() for flag in (False, True)]
    assert _numbers(after[0]) == _numbers(after[1])  # beta = 1 from the start: no balancing


def test_warm_start_copies_matching_weights(small_split, tmp_path):
    _trainer(small_split, tmp_path / "base.pt").fit()
    base = load_checkpoint(tmp_path / "base.pt")
    trainer = _trainer(small_split, config=get_preset("tiny", ar_layers=2), init_from=str(tmp_path / "base.pt"),
                       new_lr=0.01)
    assert trainer.init_note.startswith("warm start:")
    # Two parameter groups: the copied body at lr, the new head at new_lr.
    body, head = trainer.optimizer.param_groups
    assert (body["lr"], head["lr"]) == (pytest.approx(2e-3), pytest.approx(0.01))
    head_ids = {id(p) for p in head["params"]}
    assert head_ids == {id(p) for n, p in trainer.model.named_parameters() if n.startswith("head.ar") or
                        n.startswith("head.condition")}
    state = trainer.model.state_dict()
    for name, value in base.evaluation_state().items():
        assert torch.equal(state[name], value), name
    assert any(name.startswith("head.ar_layers") for name in state)  # the new head keeps its initialisation
    with pytest.raises(ValueError, match="shares no weights"):
        _trainer(small_split, config=MLPVAEConfig(hidden=(16,), latent_dim=4), init_from=str(tmp_path / "base.pt"))


def test_a_fine_tune_warns_when_its_average_would_remember_the_start(small_split, tmp_path):
    """decay ** updates is the share of the starting weights left in the saved average: above 5 % the
    trainer says so and names a decay that forgets; a from-scratch run's average is not checked."""
    _trainer(small_split, tmp_path / "base.pt").fit()
    updates = math.ceil(len(small_split.train_images) / 100)  # one epoch of batches of 100
    tune = dict(epochs=1, batch_size=100, init_from=str(tmp_path / "base.pt"))
    with pytest.warns(UserWarning, match=f"over this fine-tune's {updates} updates leaves") as caught:
        _trainer(small_split, ema_decay=0.99, **tune)
    suggested = float(str(caught[0].message).rsplit("ema_decay <= ", 1)[1].split()[0])
    assert suggested ** updates == pytest.approx(0.01, abs=0.002)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _trainer(small_split, ema_decay=suggested, **tune)
        _trainer(small_split, ema_decay=0.99, epochs=1, batch_size=100)


def test_a_fine_tune_with_new_lr_resumes_exactly(small_split, tmp_path):
    """A warm start with new_lr has two parameter groups; its resume finds the same split again
    (from the checkpoint it started from) and continues to exactly the uninterrupted numbers."""
    _trainer(small_split, tmp_path / "base.pt").fit()
    tune = dict(config=get_preset("tiny", ar_layers=2), init_from=str(tmp_path / "base.pt"), new_lr=0.01, epochs=2)
    straight = _trainer(small_split, tmp_path / "straight.pt", **tune)
    straight_history = straight.fit()

    def stop(record):
        raise KeyboardInterrupt

    interrupted = _trainer(small_split, tmp_path / "resumed.pt", **tune)
    interrupted.callback = stop
    assert len(interrupted.fit()) == 1
    resumed = Trainer.resume(tmp_path / "resumed.pt", small_split, progress=False)
    assert [g["lr"] for g in resumed.optimizer.param_groups] == [g["lr"] for g in interrupted.optimizer.param_groups]
    assert _numbers(resumed.fit()) == _numbers(straight_history)
    _assert_same_parameters(resumed.model, straight.model)
    (tmp_path / "base.pt").unlink()  # without the file it started from, the split cannot be found: said so
    with pytest.raises(CheckpointError, match="new_lr"):
        Trainer.resume(tmp_path / "resumed.pt", small_split, progress=False)


def test_mixture_is_fitted_to_the_encoder(small_split, tmp_path):
    _trainer(small_split, tmp_path / "base.pt").fit()
    trainer = _trainer(small_split, config=get_preset("tiny", top_prior="mixture"), epochs=1,
                       init_from=str(tmp_path / "base.pt"), mixture_init_epoch=0, ema_decay=0.3)
    mixture = trainer.model.top.mixture
    before = mixture.means.detach().clone()
    fit_mixture_to_encoder(trainer.model, small_split.train_images)
    z = trainer.model.encode_top(fixed_binarize(small_split.train_images, 0)).mean
    assert not torch.equal(before, mixture.means)
    # Every component owns some digits and the fitted weights are their shares.
    shares = torch.softmax(mixture.logits.detach(), 0)
    assert torch.all(shares > 0) and shares.sum().item() == pytest.approx(1.0)
    nearest = torch.cdist(z, mixture.means.detach()).argmin(1)
    assert len(nearest.unique()) > 1
    history = trainer.fit()
    assert math.isfinite(history[0]["test_elbo"])
    with pytest.raises(ValueError, match="no mixture top prior"):
        fit_mixture_to_encoder(HVAE(get_preset("tiny")), small_split.train_images)
