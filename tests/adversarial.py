"""Bad-input and fault cases tried as an adversarial user would, each classified as

- ok: the kit did the right thing (a correct, finite result),
- clear: an error raised by the kit itself, with a message (the kit's own error type where the
  kit has one; never the advice to load with weights_only=False), or a command-line exit code
  other than 0 with an "error:" or usage line,
- silent: no error, but a wrong result (a lost file, NaN, a setting ignored, a wrong count),
- unclear: a raw traceback from torch, numpy, ipywidgets or Python, or a crash.

`python tests/adversarial.py` prints every case and the counts; tests/test_adversarial.py
requires every case to be ok or clear. The cases use only what the kit offered before its
hardening, so the same file counts both versions.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import hvae_lite
from hvae_lite import __main__ as cli
from hvae_lite.checkpoints import build_model, load_checkpoint, save_checkpoint
from hvae_lite.config import get_preset
from hvae_lite.data import fixed_binarize, load_mnist
from hvae_lite.train import TrainConfig, Trainer

KIT = Path(hvae_lite.__file__).resolve().parent
try:
    from hvae_lite.errors import HVAELiteError
except ImportError:  # the kit before its error hierarchy: judge by where the error was raised
    HVAELiteError = None


def classify_error(error: BaseException) -> str:
    """clear when the kit raised it with a message, else unclear."""
    message = str(error)
    frames = traceback.extract_tb(error.__traceback__)
    raised_by_kit = bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(KIT)
    if HVAELiteError is not None:
        raised_by_kit = isinstance(error, HVAELiteError)
    if raised_by_kit and message and "weights_only=False" not in message:
        return "clear"
    return "unclear"


def expect_error(action: Callable[[], Any]) -> str:
    try:
        action()
    except Exception as error:  # noqa: BLE001 - the point is to classify whatever comes out
        return classify_error(error)
    return "silent"


def expect_ok(action: Callable[[], Any], check: Callable[[Any], bool]) -> str:
    """A correct result is ok; a clear refusal also counts as clear (never silent)."""
    try:
        result = action()
    except Exception as error:  # noqa: BLE001
        return classify_error(error)
    return "ok" if check(result) else "silent"


def run_cli(argv: list[str]) -> tuple[int | None, str, BaseException | None]:
    """main(argv) in-process: (exit code, stderr, escaped exception)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    except Exception as error:  # noqa: BLE001
        return None, err.getvalue(), error
    return code, err.getvalue(), None


def _exit_outcome(err: str) -> str:
    """A non-zero exit is clear when it says why, in the kit's words."""
    said = any(line.startswith("error:") for line in err.splitlines()) or "usage:" in err
    return "clear" if said and "weights_only=False" not in err else "unclear"


def cli_error(argv: list[str]) -> str:
    code, err, escaped = run_cli(argv)
    if escaped is not None:
        return classify_error(escaped)
    if code == 0:
        return "silent"
    return _exit_outcome(err)


def cli_ok(argv: list[str], check: Callable[[], bool]) -> str:
    code, err, escaped = run_cli(argv)
    if escaped is not None:
        return classify_error(escaped)
    if code != 0:
        return _exit_outcome(err)
    return "ok" if check() else "silent"


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


class Fixtures:
    """A tiny trained checkpoint, a few models and images, in a temporary folder."""

    def __init__(self, folder: Path):
        torch.manual_seed(0)
        self.folder = folder
        self.data = load_mnist("embedded")
        self.small = dataclasses.replace(self.data, train_images=self.data.train_images[:100],
                                         train_labels=self.data.train_labels[:100],
                                         test_images=self.data.test_images[:20],
                                         test_labels=self.data.test_labels[:20])
        self.ckpt = folder / "base.pt"
        Trainer(get_preset("tiny", width=4), TrainConfig(epochs=2, batch_size=50, device="cpu"), self.small,
                checkpoint_path=self.ckpt, progress=False).fit()
        self.model = load_checkpoint(self.ckpt).model()
        self.mixture = build_model(get_preset("tiny", top_prior="mixture")).eval()
        self.conditional = build_model(get_preset("tiny", conditional=True)).eval()
        self.grey = self.data.test_images[:4]
        self.binary = fixed_binarize(self.grey)
        self.mask = torch.ones_like(self.binary)
        self.mask[..., 14:, :] = 0
        self.counter = 0

    def path(self, name: str) -> Path:
        self.counter += 1
        return self.folder / f"{self.counter}-{name}"

    def copy_ckpt(self) -> Path:
        target = self.path("run.pt")
        target.write_bytes(self.ckpt.read_bytes())
        return target


SMALL = ["--preset", "tiny", "--set", "width=4", "--limit-train", "100", "--batch-size", "50", "--quiet",
         "--device", "cpu"]


def _stale_tmp_removed(f: Fixtures) -> bool:
    target = f.copy_ckpt()
    stale = target.parent / f".{target.name}.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    save_checkpoint(load_checkpoint(target), target)
    return not stale.exists()


def _raise_enospc(*args, **kwargs):
    raise OSError(28, "No space left on device")


def _save_with(f: Fixtures, patch_target: str) -> Callable[[], Any]:
    def action():
        target = f.copy_ckpt()
        original = target.read_bytes()
        module_name, attr = patch_target.rsplit(".", 1)
        module = sys.modules[module_name]
        saved = getattr(module, attr)
        setattr(module, attr, _raise_enospc)
        try:
            save_checkpoint(load_checkpoint(target), target)
        finally:
            setattr(module, attr, saved)
            assert target.read_bytes() == original, "the previous checkpoint was damaged"
    return action


def _download_keeps_hand_placed_file(f: Fixtures) -> str:
    from hvae_lite.data import download_mnist
    folder = f.path("mnist")
    folder.mkdir()
    placed = folder / "train-images-idx3-ubyte.gz"
    placed.write_bytes(b"my own copy")
    try:
        download_mnist(folder, mirrors=["http://127.0.0.1:9/"], timeout=1)
    except Exception as error:  # noqa: BLE001
        outcome = classify_error(error)
        if not placed.exists():
            return "silent"  # a file the user put there is gone
        listed = all(name in str(error) for name in ("train-labels", "t10k-images", "t10k-labels"))
        return outcome if listed else "unclear"  # the user must learn every file that is missing
    return "silent"


def _oom_clustering() -> str:
    """clustering_accuracy with a label of 10**9, in a child process limited to 2 GB."""
    code = ("import resource, numpy as np; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30));"
            "from hvae_lite.evaluate import clustering_accuracy;"
            "a = clustering_accuracy(np.array([0, 1]), np.array([0, 10**9])); assert a == 1.0, a")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(KIT.parent)})
    if result.returncode == 0:
        return "ok"
    return "clear" if "hvae_lite" in result.stderr.splitlines()[-1] else "unclear"


def _pickled_code(f: Fixtures) -> Path:
    import argparse
    target = f.path("objects.pt")
    torch.save({"format_version": 1, "x": argparse.Namespace(a=1)}, target)  # not a plain tensor or number
    return target


def cases(f: Fixtures) -> dict[str, Callable[[], str]]:
    """name -> a call that returns ok, clear, silent or unclear."""
    ckpt, model, mixture, conditional = str(f.ckpt), f.model, f.mixture, f.conditional
    binary, grey, mask = f.binary, f.grey, f.mask
    from hvae_lite import evaluate as ev, explore, impute, plots

    def trained_config(out: Path) -> Any:
        return load_checkpoint(out).config

    def overwritten() -> str:
        run = f.copy_ckpt()
        before = run.read_bytes()
        outcome = cli_error(["train", *SMALL, "--epochs", "1", "--out", str(run)])
        if outcome != "silent" and run.read_bytes() != before:
            return "silent"
        return outcome

    def resume_conflict(extra: list[str]) -> Callable[[], str]:
        def run() -> str:
            target = f.copy_ckpt()
            code, err, escaped = run_cli(["train", "--resume", "--out", str(target), "--epochs", "3", "--quiet",
                                          *extra])
            if escaped is not None:
                return classify_error(escaped)
            if code != 0:
                return _exit_outcome(err)
            # Accepted: fine only if the flag was applied and said so (stderr or stdout is not
            # captured here, so acceptance counts as ignored unless the checkpoint shows it).
            return "silent"
        return run

    def resume_restores_subset() -> str:
        target = f.copy_ckpt()
        return cli_ok(["train", "--resume", "--out", str(target), "--epochs", "3", "--quiet", "--device", "cpu"],
                      lambda: load_checkpoint(target).step == 6)  # 100 images, batches of 50, 3 epochs

    def det_path_false() -> str:
        out = f.path("det.pt")
        return cli_ok(["train", *SMALL, "--epochs", "1", "--set", "deterministic_path=false", "--out", str(out)],
                      lambda: trained_config(out).deterministic_path is False)

    def epochs_zero() -> str:
        out = f.path("zero.pt")
        code, err, escaped = run_cli(["train", *SMALL, "--epochs", "0", "--out", str(out)])
        if escaped is not None:
            return classify_error(escaped)
        if code == 0:
            return "ok" if out.exists() else "silent"
        return _exit_outcome(err)

    def sample_nan() -> str:
        out = f.path("s.png")
        return cli_error(["sample", ckpt, "--n", "4", "--temperature", "nan", "--device", "cpu", "--out", str(out)])

    def file_with(content: bytes, name: str = "bad.pt") -> str:
        target = f.path(name)
        target.write_bytes(content)
        return str(target)

    def trainer_with(**changes) -> Callable[[], Any]:
        return lambda: Trainer(get_preset("tiny", width=4), TrainConfig(**{"batch_size": 50, "device": "cpu", **changes}),
                               f.small, progress=False).fit()

    def resume_other_data() -> Any:
        other = dataclasses.replace(f.small, train_images=f.data.train_images[100:300],
                                    train_labels=f.data.train_labels[100:300])
        return Trainer.resume(f.copy_ckpt(), other, epochs=3, progress=False).fit()

    def bad_train_flag(*flag_and_value: str) -> Callable[[], str]:
        """`train` on the small setup for one epoch with one bad flag: a clear error, nothing written."""
        return lambda: cli_error(["train", *SMALL, *flag_and_value, "--epochs", "1", "--out", str(f.path("a.pt"))])

    def sample_shape(n: int) -> Callable[[torch.Tensor], bool]:
        return lambda t: t.shape == (n, 1, 28, 28) and finite(t)

    half = torch.full_like(binary, 0.5)
    return {
        # --- the command line ---
        "train over an existing checkpoint without --resume": overwritten,
        "train --set deterministic_path=false": det_path_false,
        "train --set deterministic_path=maybe": lambda: cli_error(
            ["train", *SMALL, "--set", "deterministic_path=maybe", "--out", str(f.path("m.pt"))]),
        "train --set width=abc": lambda: cli_error(["train", *SMALL, "--set", "width=abc", "--out", str(f.path("a.pt"))]),
        "train --set width=3.5": lambda: cli_error(["train", *SMALL, "--set", "width=3.5", "--out", str(f.path("a.pt"))]),
        "train --set latent_channels=0": lambda: cli_error(
            ["train", *SMALL, "--set", "latent_channels=0", "--out", str(f.path("a.pt"))]),
        "train --set latent_spec=7x-1": lambda: cli_error(
            ["train", *SMALL, "--set", "latent_spec=7x-1", "--out", str(f.path("a.pt"))]),
        "train --resume --preset other": resume_conflict(["--preset", "mixture"]),
        "train --resume --lr 0.1": resume_conflict(["--lr", "0.1"]),
        "train --resume --limit-train 60": resume_conflict(["--limit-train", "60"]),
        "train --resume --set width=6": resume_conflict(["--set", "width=6"]),
        "train --resume --split-seed 3": resume_conflict(["--split-seed", "3"]),
        "train --resume restores the training subset": resume_restores_subset,
        "train --epochs 0": epochs_zero,
        "train --epochs -1": lambda: cli_error(["train", *SMALL, "--epochs", "-1", "--out", str(f.path("a.pt"))]),
        "train --batch-size 0": lambda: cli_error(["train", *SMALL, "--batch-size", "0", "--out", str(f.path("a.pt"))]),
        "train --lr -1": bad_train_flag("--lr", "-1"),
        "train --lr nan": bad_train_flag("--lr", "nan"),
        "train --ema-decay 1": bad_train_flag("--ema-decay", "1"),
        "train --ema-decay -0.5": bad_train_flag("--ema-decay", "-0.5"),
        "train --free-bits -1": bad_train_flag("--free-bits", "-1"),
        "train --warmup-epochs -2": bad_train_flag("--warmup-epochs", "-2"),
        "train --grad-clip 0": bad_train_flag("--grad-clip", "0"),
        "train --free-bits-end-epoch -1": bad_train_flag("--free-bits-end-epoch", "-1"),
        "train --init-from a missing file": bad_train_flag("--init-from", str(f.path("none.pt"))),
        "train --init-from a text file": lambda: bad_train_flag("--init-from", file_with(b"hello"))(),
        "train --mixture-init-epoch 0 without a mixture prior": bad_train_flag("--mixture-init-epoch", "0"),
        "train --mixture-init-epoch -7": bad_train_flag("--mixture-init-epoch", "-7"),
        "train --limit-train -5": bad_train_flag("--limit-train", "-5"),
        "train --device mps (none here)": lambda: cli_error(
            ["train", *SMALL[:-2], "--device", "mps", "--epochs", "1", "--out", str(f.path("a.pt"))]),
        "train --device cuda:7 (none here)": lambda: cli_error(
            ["train", *SMALL[:-2], "--device", "cuda:7", "--epochs", "1", "--out", str(f.path("a.pt"))]),
        "train --device meta": lambda: cli_error(
            ["train", *SMALL[:-2], "--device", "meta", "--epochs", "1", "--out", str(f.path("a.pt"))]),
        "train --out an existing folder": lambda: cli_error(["train", *SMALL, "--epochs", "1", "--out", str(f.folder)]),
        "evaluate --n-images -5": lambda: cli_error(["evaluate", ckpt, "--n-images", "-5", "--k", "2", "--quiet"]),
        "evaluate --k 0": lambda: cli_error(["evaluate", ckpt, "--n-images", "4", "--k", "0", "--quiet"]),
        "evaluate --split-seed -1": lambda: cli_error(["evaluate", ckpt, "--n-images", "4", "--k", "2", "--split-seed",
                                                       "-1", "--quiet"]),
        "evaluate an empty checkpoint file": lambda: cli_error(["evaluate", file_with(b""), "--quiet"]),
        "evaluate a checkpoint with pickled objects": lambda: cli_error(["evaluate", str(_pickled_code(f)), "--quiet"]),
        "evaluate a truncated checkpoint": lambda: cli_error(
            ["evaluate", file_with(f.ckpt.read_bytes()[:2000]), "--quiet"]),
        "evaluate --json into an existing folder": lambda: cli_error(
            ["evaluate", ckpt, "--n-images", "4", "--k", "2", "--quiet", "--json", str(f.folder)]),
        "sample --temperature nan": sample_nan,
        "sample --temperature -1": lambda: cli_error(["sample", ckpt, "--temperature", "-1", "--out", str(f.path("s.png"))]),
        "sample --n 0": lambda: cli_error(["sample", ckpt, "--n", "0", "--out", str(f.path("s.png"))]),
        "sample --n -3": lambda: cli_error(["sample", ckpt, "--n", "-3", "--out", str(f.path("s.png"))]),
        "sample --out with an unknown image type": lambda: cli_error(
            ["sample", ckpt, "--n", "2", "--out", str(f.path("s.xyz"))]),
        # --- the model and evaluation ---
        "model(float64 binary images)": lambda: expect_ok(lambda: model(binary.double()).elbo,
                                                          lambda e: e.shape == (4,) and finite(e)),
        "model(0..255 images)": lambda: expect_error(lambda: model(binary * 255)),
        "model.sample(0)": lambda: expect_error(lambda: model.sample(0)),
        "model.sample(4, temperature=nan)": lambda: expect_error(lambda: model.sample(4, temperature=float("nan"))),
        "model.sample(4, temperature=inf)": lambda: expect_error(lambda: model.sample(4, temperature=float("inf"))),
        "mixture model.sample(component=99)": lambda: expect_error(lambda: mixture.sample(2, component=99)),
        "evaluate(float64 images)": lambda: expect_ok(lambda: ev.evaluate(model, grey.double(), k=2),
                                                      lambda m: np.isfinite(m["elbo"])),
        "evaluate(NaN images)": lambda: expect_error(lambda: ev.evaluate(model, grey * float("nan"), k=2)),
        "evaluate(no images)": lambda: expect_error(lambda: ev.evaluate(model, grey[:0], k=2)),
        "evaluate(k=0)": lambda: expect_error(lambda: ev.evaluate(model, grey, k=0)),
        "evaluate(batch_size=0)": lambda: expect_error(lambda: ev.evaluate(model, grey, k=2, batch_size=0)),
        "evaluate(chunk_size=0)": lambda: expect_error(lambda: ev.evaluate(model, grey, k=2, chunk_size=0)),
        "evaluate(one image)": lambda: expect_ok(lambda: ev.evaluate(model, grey[:1], k=2),
                                                 lambda m: all(np.isfinite(m[k]) for k in ("elbo", "nll_iwae"))),
        "heldout_elbo(0..255 images)": lambda: expect_error(lambda: ev.heldout_elbo(model, grey * 255)),
        "mixture_assignments(0..255 images)": lambda: expect_error(lambda: ev.mixture_assignments(mixture, binary * 255)),
        "mixture_assignments(grey images)": lambda: expect_ok(
            lambda: ev.mixture_assignments(mixture, grey),
            lambda c: torch.equal(c, ev.mixture_assignments(mixture, fixed_binarize(grey)))),
        "clustering_accuracy with a label of 10**9": _oom_clustering,
        "clustering_accuracy(float arrays)": lambda: expect_error(
            lambda: ev.clustering_accuracy(np.array([0.5, 1.0]), np.array([0, 1]))),
        "clustering_accuracy(2-D arrays)": lambda: expect_error(
            lambda: ev.clustering_accuracy(np.zeros((2, 2), int), np.zeros((2, 2), int))),
        # --- exploration and imputation ---
        "layer_resamples(grey images)": lambda: expect_error(lambda: explore.layer_resamples(model, grey, [1])),
        "layer_resamples(0..255 images)": lambda: expect_error(lambda: explore.layer_resamples(model, binary * 255, [1])),
        "layer_resamples(float64 images)": lambda: expect_ok(
            lambda: explore.layer_resamples(model, binary.double(), [1], n_samples=2),
            lambda t: t.shape == (1, 4, 2, 1, 28, 28) and finite(t)),
        "layer_resamples(keeps=[99])": lambda: expect_error(lambda: explore.layer_resamples(model, binary, [99])),
        "layer_resamples(n_samples=0)": lambda: expect_error(lambda: explore.layer_resamples(model, binary, [1], 0)),
        "layer_resamples(temperature=nan)": lambda: expect_error(
            lambda: explore.layer_resamples(model, binary, [1], 2, temperature=float("nan"))),
        "layer_resamples(flat images)": lambda: expect_error(
            lambda: explore.layer_resamples(model, binary.view(4, 784), [1])),
        "component_samples(components=[99])": lambda: expect_error(
            lambda: explore.component_samples(mixture, 2, components=[99])),
        "component_samples(n_per_component=0)": lambda: expect_error(lambda: explore.component_samples(mixture, 0)),
        "top_latent_embedding(0..255 images)": lambda: expect_error(
            lambda: explore.top_latent_embedding(model, binary * 255)),
        "top_latent_embedding(one image)": lambda: expect_error(lambda: explore.top_latent_embedding(model, binary[:1])),
        "impute_iterative(grey images)": lambda: expect_error(lambda: impute.impute_iterative(model, grey, mask, 2)),
        "impute_iterative(NaN images)": lambda: expect_error(
            lambda: impute.impute_iterative(model, binary * float("nan"), mask, 2)),
        "impute_iterative(float64 images)": lambda: expect_ok(
            lambda: impute.impute_iterative(model, binary.double(), mask, 2),
            lambda t: t.shape == (4, 1, 1, 28, 28) and finite(t)),
        "impute_iterative(mask of 0.5s)": lambda: expect_error(lambda: impute.impute_iterative(model, binary, half, 2)),
        "impute_iterative(n_steps=0)": lambda: expect_error(lambda: impute.impute_iterative(model, binary, mask, 0)),
        "impute_conditional(grey images)": lambda: expect_error(lambda: impute.impute_conditional(conditional, grey, mask)),
        "impute_conditional(temperature=nan)": lambda: expect_error(
            lambda: impute.impute_conditional(conditional, binary, mask, temperature=float("nan"))),
        "missing_log_likelihood(k=0)": lambda: expect_error(lambda: impute.missing_log_likelihood(model, binary, mask, 0)),
        "imputation_scores(unknown kind)": lambda: expect_error(
            lambda: impute.imputation_scores({"m": model}, binary, ["diagonal"], k=2)),
        # --- widgets and plots ---
        "LayerExplorer(no images)": lambda: expect_error(lambda: _widgets().LayerExplorer(model, binary[:0])),
        "LayerExplorer(grey images)": lambda: expect_error(lambda: _widgets().LayerExplorer(model, grey)),
        "LayerExplorer(n_samples=0)": lambda: expect_error(lambda: _widgets().LayerExplorer(model, binary, n_samples=0)),
        "ImputationExplorer(n_steps=0)": lambda: expect_error(
            lambda: _widgets().ImputationExplorer({"m": model}, binary, n_steps=0)),
        "ClusterExplorer(n_samples=-1)": lambda: expect_error(lambda: _widgets().ClusterExplorer(mixture, n_samples=-1)),
        "image_grid(no images)": lambda: expect_error(lambda: plots.image_grid(binary[:0])),
        "image_grid(ncols=-1)": lambda: expect_error(lambda: plots.image_grid(binary, ncols=-1)),
        "image_grid(NaN images)": lambda: expect_error(lambda: plots.image_grid(binary * float("nan"))),
        "image_grid(flat images)": lambda: expect_error(lambda: plots.image_grid(binary.view(4, 784))),
        "embedding_scatter(NaN points)": lambda: expect_error(
            lambda: plots.embedding_scatter(torch.full((3, 2), float("nan")), torch.arange(3))),
        "kl_per_layer(no layers)": lambda: expect_error(lambda: plots.kl_per_layer([])),
        "training_curves(records without test_elbo)": lambda: expect_error(
            lambda: plots.training_curves([{"epoch": 1}])),
        # --- the trainer ---
        "Trainer(epochs=0).fit()": lambda: expect_error(trainer_with(epochs=0)),
        "Trainer(batch_size=-1)": lambda: expect_error(
            lambda: Trainer(get_preset("tiny"), TrainConfig(batch_size=-1), f.small, progress=False).fit()),
        "Trainer(lr=nan)": lambda: expect_error(trainer_with(epochs=1, lr=float("nan"))),
        "Trainer(ema_decay=1.5)": lambda: expect_error(trainer_with(epochs=1, ema_decay=1.5)),
        "Trainer(amp='no')": lambda: expect_error(trainer_with(epochs=1, amp="no")),
        "Trainer(0..255 training images)": lambda: expect_error(
            lambda: Trainer(get_preset("tiny"), TrainConfig(device="cpu"),
                            dataclasses.replace(f.small, train_images=f.small.train_images * 255), progress=False)),
        "Trainer(0..255 held-out images)": lambda: expect_error(
            lambda: Trainer(get_preset("tiny"), TrainConfig(device="cpu"),
                            dataclasses.replace(f.small, test_images=f.small.test_images * 255), progress=False)),
        "Trainer.resume on other data": lambda: expect_error(resume_other_data),
        "TrainConfig(device='mps') (none here)": lambda: expect_error(trainer_with(epochs=1, device="mps")),
        # --- configs ---
        "HVAEConfig(width=3.5)": lambda: expect_error(lambda: get_preset("tiny", width=3.5)),
        "HVAEConfig(width='8')": lambda: expect_error(lambda: get_preset("tiny", width="8")),
        "HVAEConfig(deterministic_path='false')": lambda: expect_error(
            lambda: get_preset("tiny", deterministic_path="false")),
        "HVAEConfig(mixture_components=True)": lambda: expect_error(
            lambda: get_preset("tiny", mixture_components=True)),
        # --- files ---
        "load_checkpoint(empty file)": lambda: expect_error(lambda: load_checkpoint(file_with(b""))),
        "load_checkpoint(pickled objects)": lambda: expect_error(lambda: load_checkpoint(_pickled_code(f))),
        "load_checkpoint(a folder)": lambda: expect_error(lambda: load_checkpoint(f.folder)),
        "save_checkpoint removes a stale temporary file": lambda: expect_ok(lambda: _stale_tmp_removed(f), bool),
        "save_checkpoint on a full disk": lambda: expect_error(_save_with(f, "torch.save")),
        "save_checkpoint into a read-only folder": lambda: expect_error(_save_with(f, "tempfile.mkstemp")),
        "download_mnist keeps a hand-placed file and lists every missing file": lambda: _download_keeps_hand_placed_file(f),
        "read_manifest(corrupt JSON)": lambda: expect_error(lambda: _read_manifest_with(f, "{not json")),
        "read_manifest(no sha256)": lambda: expect_error(
            lambda: _load_shipped_with(f, json.dumps({"preset": "tiny"}))),
        "load_mnist(seed='a')": lambda: expect_error(lambda: load_mnist("embedded", seed="a")),
        "occlusion_mask(n_squares=-1)": lambda: expect_error(
            lambda: __import__("hvae_lite.data", fromlist=["x"]).occlusion_mask("squares", 2, n_squares=-1)),
        "iwae_log_likelihood(chunk_size=0)": lambda: expect_error(
            lambda: __import__("hvae_lite.objectives", fromlist=["x"]).iwae_log_likelihood(model, binary, 2, 0)),
    }


def _widgets():
    from hvae_lite import widgets
    return widgets


def _read_manifest_with(f: Fixtures, text: str) -> Any:
    from hvae_lite.checkpoints import read_manifest
    folder = f.path("shipped")
    folder.mkdir()
    (folder / "matryoshka.json").write_text(text)
    return read_manifest("matryoshka", folder)


def _load_shipped_with(f: Fixtures, text: str) -> Any:
    from hvae_lite.pretrained import load_or_train
    folder = f.path("shipped")
    folder.mkdir()
    (folder / "matryoshka.json").write_text(text)
    (folder / "matryoshka.pt").write_bytes(f.ckpt.read_bytes())
    return load_or_train("matryoshka", fast=False, checkpoint_dir=folder, progress=False)


def run_all(folder: Path) -> dict[str, str]:
    f = Fixtures(folder)
    results = {}
    for name, case in cases(f).items():
        try:
            results[name] = case()
        except Exception as error:  # noqa: BLE001 - a case that itself blew up is unclear
            results[name] = f"unclear ({type(error).__name__} in the case)"
    return results


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        results = run_all(Path(folder))
    width = max(map(len, results))
    for name, outcome in results.items():
        print(f"{name:<{width}}  {outcome}")
    counts = {kind: sum(o.split()[0] == kind for o in results.values()) for kind in ("ok", "clear", "silent", "unclear")}
    print(f"\n{len(results)} cases: {counts['clear']} clear errors, {counts['ok']} correct results, "
          f"{counts['silent']} silently wrong, {counts['unclear']} unclear")


if __name__ == "__main__":
    main()
