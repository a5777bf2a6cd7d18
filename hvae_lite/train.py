"""The trainer: the same loop in a terminal and in a notebook, with visible, counted stability.

TrainConfig (the settings) lives in config.py and the named recipes in recipes.py; both are
importable from here too, as the notebooks do (`from hvae_lite.train import TrainConfig, Trainer`).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from . import distributed
from .checkpoints import (Checkpoint, ModelConfig, build_model, load_checkpoint, load_weights, save_checkpoint,
                          shared_weight_names, warm_start)
from .config import RESUME_SAFE, TrainConfig
from .data import DataSplit, dynamic_binarize, iterate_minibatches, random_occlusion_mask
from .errors import CheckpointError, ConfigError, InputError, TrainingDiverged
from .evaluate import heldout_elbo
from .objectives import free_bits_at, kl_balance_weights, kl_weight, lr_warmup_factor, training_loss
from .priors import fit_mixture_to_encoder
from .validate import check_images, check_int, resolve_device

# This many skipped updates in a row end the run at once (TrainingDiverged), not at the end of the epoch:
# a skipped update leaves the weights as they were, so a run whose every update is skipped is stuck.
DIVERGED_STREAK = 10

__all__ = ["RESUME_SAFE", "TrainConfig", "Trainer", "TrainingDiverged", "resolve_device"]


class Trainer:
    """Trains an HVAE on a DataSplit; `fit()` returns the per-epoch history.

    The model, optimiser, schedule, data order and RNG are all restored by `Trainer.resume`,
    so an interrupted run continues to exactly the numbers of an uninterrupted one.

    Under torchrun (see `distributed`) each of the N ranks trains a DistributedDataParallel
    replica on its own slice of every global batch of N * batch_size images (the same seeded
    order, binarisation and masks on every rank), so N ranks of batch B/N follow one process of
    batch B up to the model's sampling noise. Statistics are summed over ranks; rank 0 evaluates,
    prints and writes the checkpoint, which holds every rank's RNG state.
    """

    def __init__(self, config: ModelConfig, train_config: TrainConfig, data: DataSplit,
                 checkpoint_path: str | Path | None = None,
                 callback: Callable[[dict[str, Any]], None] | None = None, progress: bool = True,
                 *, warm_start_weights: bool = True):
        """warm_start_weights=False skips `train_config.init_from` (resume: the weights come from the run)."""
        if not isinstance(train_config, TrainConfig):
            raise InputError(f"train_config must be a TrainConfig, got {type(train_config).__name__}")
        if not isinstance(data, DataSplit):
            raise InputError(f"data must be a DataSplit (see hvae_lite.data.load_mnist), got {type(data).__name__}")
        # Checked once here; converted to float32 so every batch is ready for the model.
        shape = config.image_shape
        data = dataclasses.replace(data, train_images=check_images(data.train_images, name="train_images", shape=shape),
                                   test_images=check_images(data.test_images, name="test_images", shape=shape))
        if train_config.mixture_init_epoch >= 0 and getattr(config, "top_prior", None) != "mixture":
            raise ConfigError("mixture_init_epoch is set, but the model has no mixture prior: use top_prior='mixture' "
                              "(e.g. --preset mixture) or leave mixture_init_epoch at -1")
        self.config, self.train_config, self.data = config, train_config, data
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.callback, self.progress = callback, progress
        self.device = resolve_device(train_config.device)
        self.dist = distributed.current()
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)  # one GPU per rank
        torch.manual_seed(train_config.seed)
        self.model = build_model(config).to(self.device)
        self.init_note, copied = "", set()
        if train_config.init_from and warm_start_weights:
            self.init_note, copied = warm_start(self.model, load_checkpoint(train_config.init_from))
        elif train_config.init_from and train_config.new_lr > 0:
            # A resumed fine-tune: its weights come from the run, but its optimiser has the two groups
            # the warm start made, so the same split is found again from the checkpoint it started from.
            try:
                copied = shared_weight_names(self.model, load_checkpoint(train_config.init_from))
            except CheckpointError as error:
                raise CheckpointError(f"this run fine-tunes from {train_config.init_from} with new_lr set, and resuming "
                                      f"it needs that file to tell its new parts apart: {error}") from None
        # What the training step calls: DDP averages the gradients over ranks (and starts every
        # replica from rank 0's weights); a single process uses the model itself.
        self.train_module = (torch.nn.parallel.DistributedDataParallel(
            self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.dist.enabled else self.model)
        if self.dist.rank > 0:  # each rank draws its own latent noise; rank 0 draws as a single process would
            torch.manual_seed(train_config.seed + self.dist.rank)
        self.ema = (torch.optim.swa_utils.AveragedModel(
            self.model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(train_config.ema_decay))
            if train_config.ema_decay > 0 else None)
        train_config.warn_if_average_remembers_start(len(data.train_images), self.dist.world_size)
        self.optimizer = torch.optim.Adamax(self._parameter_groups(copied), lr=train_config.lr)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=max(1, train_config.epochs),
            eta_min=train_config.lr * train_config.lr_final_fraction)
        # One generator for the data order, binarisation and masks: its state is checkpointed.
        self.data_rng = torch.Generator().manual_seed(train_config.seed)
        # The model's sampling noise comes from the global RNG. This run keeps its own copy of that
        # state and restores it in fit(), so code run in between (another Trainer) changes nothing.
        self.sampling_rng = self._global_rng_state()
        self.epoch, self.step, self.history = 0, 0, []
        self.skip_streak, self.last_bad = 0, (float("nan"), float("nan"))  # skipped updates in a row; the last (loss, norm)
        self.interrupted = False  # set when Ctrl-C stopped fit()
        self._step_fn = torch.compile(self._loss) if train_config.compile else self._loss

    def _parameter_groups(self, copied: set[str]) -> list[dict[str, Any]]:
        """One group, or two when a warm start left new parts and new_lr is set: the new parts (a
        new head, a context network) may learn faster than the trained body, which a large step
        would knock off its optimum."""
        named = list(self.model.named_parameters())
        new = [p for n, p in named if copied and n not in copied]
        if new and self.train_config.new_lr > 0:
            return [{"params": [p for n, p in named if not (copied and n not in copied)]},
                    {"params": new, "lr": self.train_config.new_lr}]
        return [{"params": [p for _, p in named]}]

    @classmethod
    def resume(cls, path: str | Path, data: DataSplit, epochs: int | None = None, *,
               changes: dict[str, Any] | None = None, **kwargs: Any) -> "Trainer":
        """Continue the run saved at `path` (optionally to a new total number of epochs) on `data`,
        which must be the data the run was trained on (checked against the checkpoint's record).
        `changes`: settings that do not alter the run's numbers, from RESUME_SAFE (device, compile)."""
        ckpt = load_checkpoint(path)
        if ckpt.optimizer_state is None or ckpt.rng_state is None:
            raise CheckpointError(f"{path} holds weights only (a shipped model), not a run to resume; "
                                  "train a new run, or start from its weights with init_from")
        train_config = TrainConfig.from_dict(ckpt.train_config)
        if epochs is not None:
            check_int(epochs, "epochs", minimum=max(1, ckpt.epoch), error=ConfigError)
            train_config = dataclasses.replace(train_config, epochs=epochs)
        if unsafe := sorted(set(changes or {}) - set(RESUME_SAFE)):
            raise ConfigError(f"a resumed run keeps its settings; only {RESUME_SAFE} may change, not {unsafe}")
        train_config = dataclasses.replace(train_config, **(changes or {}))
        if ckpt.data is not None and ckpt.data != data.describe():
            raise InputError(f"{path} was trained on {ckpt.data}, but the data given is {data.describe()}; "
                             "resume on the same data (the command line restores it by itself)")
        distributed.check_resume_world_size(ckpt.world_size, distributed.current(), path)
        trainer = cls(ckpt.config, train_config, data, checkpoint_path=kwargs.pop("checkpoint_path", path),
                      warm_start_weights=False, **kwargs)
        load_weights(trainer.model, ckpt.model_state, str(path))
        try:  # a file whose states do not fit its own model was changed by hand or damaged
            if trainer.ema is not None:
                trainer.ema.load_state_dict(ckpt.ema_state)
            trainer.optimizer.load_state_dict(ckpt.optimizer_state)
            trainer.scheduler.load_state_dict(ckpt.scheduler_state)
            trainer.data_rng.set_state(ckpt.rng_state["data"])
        except (AttributeError, KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{path}: the run's saved optimiser, schedule or random state does not fit its model "
                                  f"({type(error).__name__}: {error}); the file was changed or damaged: restore it, "
                                  "or start a new run") from None
        trainer.scheduler.T_max = max(1, train_config.epochs)
        trainer.epoch, trainer.step, trainer.history = ckpt.epoch, ckpt.step, list(ckpt.history)
        # Rank r > 0 finds its state under "<name>.rank<r>" (a run with as many ranks as this one).
        suffix = f".rank{trainer.dist.rank}" if trainer.dist.rank else ""
        mine = {k.removesuffix(suffix): v for k, v in ckpt.rng_state.items()
                if k != "data" and ((".rank" not in k) if not suffix else k.endswith(suffix))}
        if mine:
            trainer.sampling_rng = mine
        return trainer

    def _global_rng_state(self) -> dict[str, torch.Tensor]:
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        return rng

    def checkpoint(self) -> Checkpoint:
        """The run so far. Under torchrun every rank must call it (it gathers their RNG states)."""
        rng = {"data": self.data_rng.get_state(), **self.sampling_rng}
        for rank, state in enumerate(self.dist.gather(self.sampling_rng)):
            if rank > 0:
                rng.update({f"{name}.rank{rank}": value for name, value in state.items()})
        return Checkpoint(config=self.config, model_state=self.model.state_dict(),
                          train_config=self.train_config.to_dict(), history=self.history,
                          epoch=self.epoch, step=self.step, optimizer_state=self.optimizer.state_dict(),
                          scheduler_state=self.scheduler.state_dict(), rng_state=rng,
                          ema_state=None if self.ema is None else self.ema.state_dict(), data=self.data.describe(),
                          world_size=self.dist.world_size)

    @property
    def eval_model(self) -> torch.nn.Module:
        """The network held-out numbers are measured on: the EMA copy when there is one."""
        return self.model if self.ema is None else self.ema.module

    def _batch(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = dynamic_binarize(images, self.data_rng) if self.config.likelihood == "bernoulli" else images
        observed = (random_occlusion_mask(len(x), x.shape[-1], generator=self.data_rng)
                    if self.config.conditional else None)
        return x.to(self.device), None if observed is None else observed.to(self.device)

    def _loss(self, x: torch.Tensor, observed: torch.Tensor | None, beta: float, free_bits: float):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.train_config.amp):
            out = self.train_module(x, observed)
        weights = None
        if self.train_config.kl_balance and beta < 1:
            units = torch.tensor([s.z[0].numel() for s in out.layers], dtype=torch.float32, device=out.kl.device)
            weights = kl_balance_weights(out.kl.mean(0), units)
        loss = training_loss(out, beta, free_bits, weights, self.train_config.top_free_bits)
        return loss, out.elbo.detach(), out.kl.detach()

    def _update(self, x: torch.Tensor, observed: torch.Tensor | None, beta: float, free_bits: float,
                totals: dict[str, Any]) -> bool:
        """One optimiser step on a batch, added to `totals`; False when it was skipped (a non-finite
        loss, or a non-finite or huge gradient: a wild update would undo many good ones)."""
        loss, elbo, kl = self._step_fn(x, observed, beta, free_bits)
        self.optimizer.zero_grad(set_to_none=True)
        if not self.dist.all_true(torch.isfinite(loss)):  # every rank skips together, or none does
            return False
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train_config.grad_clip)
        self.last_bad = (loss.detach().float().item(), grad_norm.float().item())
        if not torch.isfinite(grad_norm) or grad_norm > self.train_config.skip_threshold:
            return False
        self._optimizer_step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        totals["loss"] += loss.detach().float().item() * len(x)  # the loss optimised (warm-up, free bits)
        totals["elbo"] += elbo.float().sum().item()
        totals["kl"] += kl.float().sum(0).cpu()
        totals["images"] += len(x)
        return True

    def _optimizer_step(self) -> None:
        """One Adamax step at the scheduled rate times the warm-up factor (the schedule never sees it)."""
        scheduled = [group["lr"] for group in self.optimizer.param_groups]
        for group in self.optimizer.param_groups:
            group["lr"] *= lr_warmup_factor(self.step, self.train_config.lr_warmup_steps)
        self.optimizer.step()
        for group, lr in zip(self.optimizer.param_groups, scheduled):
            group["lr"] = lr

    def _diverged(self, what: str) -> TrainingDiverged:
        """The error for a run that no longer trains, saying truly what was kept."""
        kept = ("No checkpoint path was given, so nothing was saved" if self.checkpoint_path is None else
                f"The last good checkpoint is kept at {self.checkpoint_path} (epoch {self.epoch})" if self.epoch else
                f"No checkpoint of this run was written (the first is written at the end of epoch 1); nothing at "
                f"{self.checkpoint_path} was changed")
        return TrainingDiverged(f"{what}. {kept}. Try a learning-rate warm-up (lr_warmup_steps, e.g. 500), a lower "
                                "learning rate, a longer KL warm-up or amp=False")

    def _train_epoch(self) -> dict[str, Any]:
        cfg = self.train_config
        self.model.train()
        world, rank = self.dist.world_size, self.dist.rank
        # A global batch is world * batch_size images; a last one too small to give every rank an
        # image is dropped (a single process drops nothing).
        global_batch = cfg.batch_size * world
        n_images = len(self.data.train_images)
        n_batches = n_images // global_batch + (n_images % global_batch >= world)
        warmup_steps = int(cfg.warmup_epochs * n_batches)
        totals = {"loss": 0.0, "elbo": 0.0, "kl": torch.zeros(self.model.n_latent_layers), "images": 0}
        skipped, start = 0, time.perf_counter()
        batches = iterate_minibatches(self.data.train_images, global_batch, shuffle=True, generator=self.data_rng)
        bar = tqdm(batches, total=n_batches, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                   disable=not self.progress or not self.dist.is_main, leave=False)
        for images in bar:
            if len(images) < world:
                break
            # Every rank binarises and masks the whole global batch with the shared generator (so
            # the generators stay in step), then keeps its own slice.
            x, observed = self._batch(images)
            if self.dist.enabled:
                x = x.tensor_split(world)[rank]
                observed = None if observed is None else observed.tensor_split(world)[rank]
            beta = kl_weight(self.step, warmup_steps)
            free_bits = free_bits_at(self.step / n_batches, cfg.free_bits, cfg.warmup_epochs, cfg.free_bits_end_epoch)
            if not self._update(x, observed, beta, free_bits, totals):
                skipped += 1
                self.skip_streak += 1
                if self.skip_streak >= DIVERGED_STREAK:  # skipped updates leave the weights as they are: stuck
                    loss, norm = self.last_bad
                    raise self._diverged(
                        f"epoch {self.epoch + 1}, update {self.step + 1}: {self.skip_streak} updates in a row had a "
                        f"non-finite or huge loss or gradient (the last: loss {loss:.4g}, gradient norm {norm:.4g}, "
                        f"skip threshold {cfg.skip_threshold:g})")
                continue
            self.skip_streak = 0
            bar.set_postfix(elbo=f"{totals['elbo'] / max(totals['images'], 1):.1f}", beta=f"{beta:.2f}")
        if skipped > n_batches // 2:
            raise self._diverged(f"epoch {self.epoch + 1}: {skipped} of {n_batches} updates had a non-finite or huge "
                                 "loss or gradient")
        seconds = time.perf_counter() - start
        if self.dist.enabled:  # sums over ranks: the record describes every global batch in full
            summed = self.dist.sum(torch.tensor([totals["loss"], totals["elbo"], totals["images"], *totals["kl"].tolist()],
                                                dtype=torch.float64, device=self.device))
            totals = {"loss": summed[0].item(), "elbo": summed[1].item(), "images": int(summed[2].item()),
                      "kl": summed[3:].float().cpu()}
        self.scheduler.step()
        n_seen = max(totals["images"], 1)
        return {"epoch": self.epoch + 1, "elbo": totals["elbo"] / n_seen, "loss": totals["loss"] / n_seen,
                "kl": (totals["kl"] / n_seen).tolist(), "beta": beta, "free_bits": free_bits,
                "lr": self.optimizer.param_groups[0]["lr"], "skipped": skipped, "images": totals["images"],
                "seconds": seconds, "images_per_s": totals["images"] / seconds}

    def _fit_mixture(self) -> None:
        """VaDE-style start of a mixture prior (at mixture_init_epoch): fitted by EM to the encoder's
        top latents of the training images (`priors.fit_mixture_to_encoder`: posterior samples of a
        fixed binarisation). The optimiser forgets its running statistics of the mixture; the EMA
        copy takes the fit too."""
        fit_mixture_to_encoder(self.model, self.data.train_images, seed=self.train_config.seed)
        for parameter in self.model.top.mixture.parameters():
            self.optimizer.state.pop(parameter, None)
        if self.ema is not None:  # the average starts from the fitted mixture too
            self.ema.module.top.mixture.load_state_dict(self.model.top.mixture.state_dict())

    def fit(self, until_epoch: int | None = None) -> list[dict[str, Any]]:
        """Train to `train_config.epochs`; Ctrl-C stops cleanly, keeping the last checkpoint.

        until_epoch: stop after this epoch instead, the schedule still spanning all the epochs
        (for a job with a time limit, e.g. on a cluster's queue; `Trainer.resume` continues it).
        """
        if until_epoch is not None:
            check_int(until_epoch, "until_epoch (--stop-after)", minimum=1, error=ConfigError)
        last = self.train_config.epochs if until_epoch is None else min(until_epoch, self.train_config.epochs)
        epochs = range(self.epoch, last)
        bar = tqdm(epochs, desc="training", disable=not self.progress or not self.dist.is_main)
        torch.set_rng_state(self.sampling_rng["torch"])
        if "cuda" in self.sampling_rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(self.sampling_rng["cuda"])
        try:
            for _ in bar:
                if self.epoch == self.train_config.mixture_init_epoch:
                    self._fit_mixture()
                record = self._train_epoch()
                heldout = (heldout_elbo(self.eval_model, self.data.test_images, self.train_config.eval_seed)
                           if self.dist.is_main else None)
                record["test_elbo"], record["test_kl"] = self.dist.from_main(heldout)
                self.epoch += 1
                self.sampling_rng = self._global_rng_state()
                self.history.append(record)
                if self.checkpoint_path is not None:
                    checkpoint = self.checkpoint()  # on every rank: it gathers their RNG states
                    if self.dist.is_main:
                        save_checkpoint(checkpoint, self.checkpoint_path)
                bar.set_postfix(train_elbo=f"{record['elbo']:.1f}", test_elbo=f"{record['test_elbo']:.1f}")
                if self.callback is not None:
                    self.callback(record)
        except KeyboardInterrupt:
            self.interrupted = True
            where = f"; the checkpoint at {self.checkpoint_path} holds epoch {self.epoch}" if self.checkpoint_path else ""
            if self.dist.is_main:
                print(f"Interrupted during epoch {self.epoch + 1}{where}. Returning the history so far.")
        return self.history
