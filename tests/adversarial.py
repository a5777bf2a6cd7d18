"""Bad-input and fault cases tried as an adversarial user would, each classified as

- ok: the kit did the right thing (a correct, finite result),
- clear: an error raised by the kit itself, with a message (the kit's own error type where the
  kit has one; never the advice to load with weights_only=False), or a command-line exit code
  other than 0 with an "error:" or usage line,
- refused: a valid call that raised, or a valid command line that failed: over-refusal is a bug
  too (a kit that refuses everything would otherwise pass),
- silent: no error, but a wrong result (a lost file, NaN, a setting ignored, a wrong count),
- unclear: a raw traceback from torch, numpy, ipywidgets or Python, or a crash.

`python tests/adversarial.py` prints every case and the counts by area; with `--json PATH` it
also writes them (benchmarks/results/adversarial.json, from which benchmarks/tables.py makes the
README's table). tests/test_adversarial.py requires every case to be ok or clear.
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
    """A valid call: a correct result is ok, a wrong one silent; a kit error is an over-refusal."""
    try:
        result = action()
    except Exception as error:  # noqa: BLE001
        return "refused" if classify_error(error) == "clear" else "unclear"
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
    """A valid command line: exit 0 and a correct result is ok; a clear failure is an over-refusal."""
    code, err, escaped = run_cli(argv)
    if escaped is not None:
        return "refused" if classify_error(escaped) == "clear" else "unclear"
    if code != 0:
        return "refused" if _exit_outcome(err) == "clear" else "unclear"
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
    return "refused" if "hvae_lite" in result.stderr.splitlines()[-1] else "unclear"


def _pickled_code(f: Fixtures) -> Path:
    import argparse
    target = f.path("objects.pt")
    torch.save({"format_version": 1, "x": argparse.Namespace(a=1)}, target)  # not a plain tensor or number
    return target


def cases(f: Fixtures) -> dict[str, dict[str, Callable[[], str]]]:
    """area -> name -> a call that returns ok, clear, refused, silent or unclear."""
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
        "the command line": {
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
        },
        "the model and evaluation": {
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
        },
        "exploration and imputation": {
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
        },
        "widgets and plots": {
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
        },
        "the trainer": {
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
        },
        "configs": {
            "HVAEConfig(width=3.5)": lambda: expect_error(lambda: get_preset("tiny", width=3.5)),
            "HVAEConfig(width='8')": lambda: expect_error(lambda: get_preset("tiny", width="8")),
            "HVAEConfig(deterministic_path='false')": lambda: expect_error(
                lambda: get_preset("tiny", deterministic_path="false")),
            "HVAEConfig(mixture_components=True)": lambda: expect_error(
                lambda: get_preset("tiny", mixture_components=True)),
        },
        "files": {
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
        },
        **hardening_cases(f),
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


# ----------------------------------------------------------------------------- the second round (issue 20)

@contextlib.contextmanager
def _shipped_folder(f: Fixtures, checkpoint: bytes | None = None, sha256: Any = "same") -> Any:
    """A stand-in for the shipped folder (paths.CHECKPOINT_DIR) holding matryoshka.pt (the tiny
    run, or `checkpoint`) and its manifest (the sha256 of the tiny run unless given), for the
    duration of the block: the real shipped files are never at risk."""
    from hvae_lite import paths
    from hvae_lite.checkpoints import sha256_of
    folder = f.path("shipped")
    folder.mkdir()
    (folder / "matryoshka.pt").write_bytes(checkpoint if checkpoint is not None else f.ckpt.read_bytes())
    digest = sha256_of(f.ckpt) if sha256 == "same" else sha256
    (folder / "matryoshka.json").write_text(json.dumps({"name": "matryoshka", "sha256": digest}))
    saved = paths.CHECKPOINT_DIR
    paths.CHECKPOINT_DIR = folder
    try:
        yield folder
    finally:
        paths.CHECKPOINT_DIR = saved


def _unchanged(path: Path, outcome: str, before: bytes) -> str:
    """A refusal that still damaged the file is silent (the file is lost)."""
    return "silent" if path.read_bytes() != before else outcome


def _with_patched(target: str, replacement: Any, action: Callable[[], str]) -> str:
    module_name, attr = target.rsplit(".", 1)
    module = sys.modules[module_name]
    saved = getattr(module, attr)
    setattr(module, attr, replacement)
    try:
        return action()
    finally:
        setattr(module, attr, saved)


def _tampered(f: Fixtures) -> bytes:
    """The tiny run with 4 bytes changed in the middle (inside a tensor: torch still reads it)."""
    data = bytearray(f.ckpt.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4] = bytes(b ^ 0xFF for b in data[middle:middle + 4])
    return bytes(data)


def _raw_variant(f: Fixtures, name: str, change: Callable[[dict], None]) -> str:
    """The tiny run's file with a field changed by hand (torch.save: what a user or a bug could write)."""
    raw = torch.load(f.ckpt, weights_only=True)
    change(raw)
    target = f.path(name)
    torch.save(raw, target)
    return str(target)


def _huge_weight(raw: dict) -> None:
    name = next(k for k, v in raw["model"].items() if v.is_floating_point() and v.dim() > 1)
    raw["model"][name] = torch.full_like(raw["model"][name], 1e30)
    if raw.get("ema"):
        raw["ema"] = None


def _cli_in_place(f: Fixtures, name: str, content: bytes, argv: Callable[[str], list[str]]) -> str:
    """A command that must refuse to write over `name` (holding `content`): clear, and the file intact."""
    target = f.path(name)
    target.write_bytes(content)
    return _unchanged(target, cli_error(argv(str(target))), content)


def _full_disk_output(f: Fixtures, name: str, previous: bytes, argv: Callable[[str], list[str]]) -> str:
    """The command on a full disk (every fsync fails with ENOSPC): an error naming the file, which keeps
    its previous content (before: 0 bytes and 'cannot access: No space left on device')."""
    target = f.path(name)
    target.write_bytes(previous)

    def run() -> str:
        code, err, escaped = run_cli(argv(str(target)))
        if escaped is not None:
            return classify_error(escaped)
        if code == 0:
            return "silent"
        return _exit_outcome(err) if str(target) in err else "unclear"
    return _unchanged(target, _with_patched("os.fsync", _raise_enospc, run), previous)


def _second_training(f: Fixtures) -> str:
    """A second training of the same --out while a first one holds it (the lock of another process)."""
    from hvae_lite.files import output_lock
    out = f.path("busy.pt")
    with output_lock(out):
        outcome = cli_error(["train", *SMALL, "--epochs", "1", "--out", str(out)])
    return "silent" if out.exists() else outcome


def _resume_other_world_size(f: Fixtures, legacy: bool) -> str:
    """A checkpoint of 2 torchrun processes resumed by one (which would halve the global batch)."""
    raw = torch.load(f.ckpt, weights_only=True)
    if legacy:  # written before checkpoints recorded it: rank 1's random state gives it away
        raw.pop("world_size", None)
        raw["rng"]["torch.rank1"] = raw["rng"]["torch"].clone()
    else:
        raw["world_size"] = 2
    target = f.path("ddp.pt")
    torch.save(raw, target)
    before = target.read_bytes()
    outcome = cli_error(["train", "--resume", "--out", str(target), "--epochs", "3", "--quiet", "--device", "cpu"])
    return _unchanged(target, outcome, before)


def _mismatch_message_is_short(f: Fixtures) -> str:
    """Weights that do not fit their config: one clear line, not torch's 68 lines of 'size mismatch'."""
    path = _raw_variant(f, "wide.pt", lambda raw: raw["config"].update(width=6))
    code, err, escaped = run_cli(["evaluate", path, "--k", "1", "--n-images", "2", "--quiet", "--device", "cpu"])
    if escaped is not None:
        return classify_error(escaped)
    if code == 0:
        return "silent"
    return _exit_outcome(err) if len(err.splitlines()) <= 2 and len(err) < 800 else "unclear"


def _environment(changes: dict[str, str | None], action: Callable[[], str]) -> str:
    saved = {k: os.environ.get(k) for k in changes}
    for k, v in changes.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        return action()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


QUICKSTART = {"FAST": None, "SEED": 0, "N_SAMPLES": None, "N_TEMPERATURE": None, "N_SHOW": 8, "N_EVAL": None}


def hardening_cases(f: Fixtures) -> dict[str, dict[str, Callable[[], str]]]:
    """The cases of the second hardening round: outputs, shipped files, parameters, torchrun."""
    ckpt, model, binary, grey = str(f.ckpt), f.model, f.binary, f.grey
    from hvae_lite.data import fixed_binarize as binarize
    from hvae_lite.evaluate import evaluate
    from hvae_lite.parameters import check_parameters
    evaluate_json = lambda target: ["evaluate", ckpt, "--k", "1", "--n-images", "2", "--quiet", "--device", "cpu",
                                    "--json", target]
    sample_out = lambda target: ["sample", ckpt, "--n", "4", "--device", "cpu", "--out", target]
    train_over = lambda target: ["train", *SMALL, "--epochs", "1", "--overwrite", "--out", target]
    huge = _raw_variant(f, "huge.pt", _huge_weight)
    nan = float("nan")

    def shipped_cli(argv: Callable[[str], list[str]], **folder: Any) -> Callable[[], str]:
        def run() -> str:
            with _shipped_folder(f, **folder) as shipped:
                target = shipped / "matryoshka.pt"
                before = target.read_bytes()
                return _unchanged(target, cli_error(argv(str(target))), before)
        return run

    def shipped_ok(argv: Callable[[str], list[str]]) -> Callable[[], str]:
        def run() -> str:
            with _shipped_folder(f) as shipped:
                return cli_ok(argv(str(shipped / "matryoshka.pt")), lambda: True)
        return run

    def written(target: Path, check: Callable[[Path], bool]) -> Callable[[], bool]:
        return lambda: target.is_file() and check(target)

    metrics, picture = f.path("m.json"), f.path("s.png")
    metrics.write_text('{"elbo": -1}')
    picture.write_bytes(b"\x89PNG old")
    retrained = f.copy_ckpt()
    return {
        "outputs": {
            "evaluate --json onto a shipped checkpoint": shipped_cli(evaluate_json),
            "evaluate --json onto the run it evaluates": lambda: _cli_in_place(
                f, "run.pt", f.ckpt.read_bytes(), lambda t: ["evaluate", t, "--k", "1", "--n-images", "2", "--quiet",
                                                              "--device", "cpu", "--json", t]),
            "train --overwrite --out a shipped manifest": lambda: _shipped_manifest_overwrite(f, train_over),
            "train --overwrite --out a JSON file": lambda: _cli_in_place(f, "notes.json", b'{"mine": 1}', train_over),
            "sample --out onto a checkpoint": lambda: _cli_in_place(
                f, "run.png", f.ckpt.read_bytes(), sample_out),
            "evaluate --json on a full disk": lambda: _full_disk_output(f, "m.json", b'{"old": 1}', evaluate_json),
            "sample --out on a full disk": lambda: _full_disk_output(f, "s.png", b"\x89PNG old", sample_out),
            "two trainings with the same --out": lambda: _second_training(f),
            "evaluate --json over its earlier metrics": lambda: cli_ok(
                evaluate_json(str(metrics)), written(metrics, lambda t: json.loads(t.read_text())["n_images"] == 2)),
            "sample --out over its earlier picture": lambda: cli_ok(
                sample_out(str(picture)), written(picture, lambda t: t.read_bytes()[:4] == b"\x89PNG"
                                                  and t.stat().st_size > 1000)),
            "train --overwrite over an earlier run": lambda: cli_ok(
                train_over(str(retrained)), lambda: load_checkpoint(retrained).epoch == 1),
        },
        "shipped files and checkpoints": {
            "evaluate a shipped checkpoint with 4 bytes changed": shipped_cli(
                lambda t: ["evaluate", t, "--k", "1", "--n-images", "2", "--quiet", "--device", "cpu"],
                checkpoint=_tampered(f)),
            "sample a shipped checkpoint with 4 bytes changed": shipped_cli(
                lambda t: ["sample", t, "--n", "2", "--device", "cpu", "--out", str(f.path("s.png"))],
                checkpoint=_tampered(f)),
            "evaluate a tampered shipped checkpoint whose manifest's sha256 is null": shipped_cli(
                lambda t: ["evaluate", t, "--k", "1", "--n-images", "2", "--quiet", "--device", "cpu"],
                checkpoint=_tampered(f), sha256=None),
            "load_or_train with a manifest whose sha256 is null": lambda: expect_error(
                lambda: _load_shipped_with(f, json.dumps({"sha256": None}))),
            "evaluate a verified shipped checkpoint": shipped_ok(
                lambda t: ["evaluate", t, "--k", "1", "--n-images", "2", "--quiet", "--device", "cpu"]),
            "evaluate a checkpoint with a weight of 1e30 (NaN metrics)": lambda: cli_error(
                ["evaluate", huge, "--k", "1", "--n-images", "2", "--quiet", "--device", "cpu"]),
            "evaluate the digit judge's checkpoint": lambda: cli_error(
                ["evaluate", str(KIT.parent / "data" / "checkpoints" / "judge.pt"), "--k", "1", "--n-images", "2",
                 "--quiet", "--device", "cpu"]),
            "sample the digit judge's checkpoint": lambda: cli_error(
                ["sample", str(KIT.parent / "data" / "checkpoints" / "judge.pt"), "--out", str(f.path("s.png"))]),
            "evaluate weights that do not fit their config (one short message)": lambda: _mismatch_message_is_short(f),
            "resume a checkpoint whose epoch is a string": lambda: cli_error(
                ["train", "--resume", "--out", _raw_variant(f, "e.pt", lambda raw: raw.update(epoch="3")),
                 "--epochs", "3", "--quiet"]),
            "resume a checkpoint whose history is None": lambda: cli_error(
                ["train", "--resume", "--out", _raw_variant(f, "h.pt", lambda raw: raw.update(history=None)),
                 "--epochs", "3", "--quiet"]),
            "resume a checkpoint whose optimiser state is of another model": lambda: cli_error(
                ["train", "--resume", "--out", _raw_variant(f, "o.pt", lambda raw: raw.update(
                    optimizer={"state": {}, "param_groups": []})), "--epochs", "3", "--quiet", "--device", "cpu"]),
            "resume a checkpoint whose data RNG state is garbage": lambda: cli_error(
                ["train", "--resume", "--out", _raw_variant(f, "r.pt", lambda raw: raw["rng"].update(
                    data=torch.zeros(3))), "--epochs", "3", "--quiet", "--device", "cpu"]),
            "Checkpoint.model('cuda') without a GPU": lambda: (
                expect_ok(lambda: load_checkpoint(ckpt).model("cuda"), lambda m: next(m.parameters()).is_cuda)
                if torch.cuda.is_available() else expect_error(lambda: load_checkpoint(ckpt).model("cuda"))),
        },
        "seeds, steps and the environment": {
            "train --stop-after 0": lambda: cli_error(["train", *SMALL, "--epochs", "2", "--stop-after", "0",
                                                       "--out", str(f.path("a.pt"))]),
            "train --seed 2**70": lambda: cli_error(["train", *SMALL, "--epochs", "1", "--seed", str(2**70),
                                                     "--out", str(f.path("a.pt"))]),
            "evaluate --seed 2**70": lambda: cli_error(["evaluate", ckpt, "--k", "1", "--n-images", "2", "--quiet",
                                                        "--seed", str(2**70)]),
            "sample --seed 2**70": lambda: cli_error(["sample", ckpt, "--seed", str(2**70), "--out", str(f.path("s.png"))]),
            "evaluate --split-seed 2**70": lambda: cli_error(["evaluate", ckpt, "--k", "1", "--n-images", "2",
                                                              "--quiet", "--split-seed", str(2**70)]),
            "sample --seed 2**63 - 1 (the largest seed)": lambda: cli_ok(
                ["sample", ckpt, "--n", "2", "--seed", str(2**63 - 1), "--device", "cpu", "--out", str(f.path("s.png"))],
                lambda: True),
            "train with WORLD_SIZE=2 and no other torchrun variable": lambda: _environment(
                {"WORLD_SIZE": "2", "RANK": None, "MASTER_ADDR": None},
                lambda: cli_error(["train", *SMALL, "--epochs", "1", "--out", str(f.path("a.pt"))])),
            "train with WORLD_SIZE=two": lambda: _environment(
                {"WORLD_SIZE": "two"}, lambda: cli_error(["train", *SMALL, "--epochs", "1", "--out", str(f.path("a.pt"))])),
            "resume a 2-process checkpoint in one process": lambda: _resume_other_world_size(f, legacy=False),
            "resume a 2-process checkpoint of before world sizes were recorded": lambda: _resume_other_world_size(
                f, legacy=True),
            "Trainer.fit(until_epoch=0)": lambda: expect_error(
                lambda: Trainer(get_preset("tiny", width=4), TrainConfig(epochs=2, batch_size=50, device="cpu"), f.small,
                                progress=False).fit(until_epoch=0)),
            "TrainConfig(seed=-1)": lambda: expect_error(lambda: TrainConfig(seed=-1)),
        },
        "the public API's images": {
            "evaluate(NumPy images)": lambda: expect_ok(lambda: evaluate(model, grey.numpy(), k=2),
                                                        lambda m: m["n_images"] == 4 and np.isfinite(m["elbo"])),
            "fixed_binarize(0..255 values)": lambda: expect_error(lambda: binarize(grey * 255)),
            "fixed_binarize(negative values)": lambda: expect_error(lambda: binarize(grey - 0.5)),
            "fixed_binarize(NaN)": lambda: expect_error(lambda: binarize(grey * nan)),
            "fixed_binarize(NumPy images)": lambda: expect_ok(
                lambda: binarize(grey.numpy(), seed=3), lambda t: torch.equal(t, binarize(grey, seed=3))),
            "fixed_binarize(seed=2**70)": lambda: expect_error(lambda: binarize(grey, seed=2**70)),
            "model.resample_below(NaN images)": lambda: expect_error(lambda: model.resample_below(binary * nan, 1)),
            "model.resample_below(inf images)": lambda: expect_error(
                lambda: model.resample_below(binary.masked_fill(binary > 0, float("inf")), 1)),
            "model.resample_below(0..255 images)": lambda: expect_error(lambda: model.resample_below(binary * 255, 1)),
            "model.resample_below(binary images)": lambda: expect_ok(
                lambda: model.resample_below(binary, 2), lambda t: t.shape == binary.shape and finite(t)),
            "model.encode_top(NaN images)": lambda: expect_error(lambda: model.encode_top(binary * nan)),
            "model.encode_top(inf images)": lambda: expect_error(
                lambda: model.encode_top(binary.masked_fill(binary > 0, float("inf")))),
            "model.encode_top(0..255 images)": lambda: expect_error(lambda: model.encode_top(binary * 255)),
            "model.encode_top(binary images)": lambda: expect_ok(
                lambda: model.encode_top(binary), lambda q: q.mean.shape[0] == 4 and finite(q.mean)),
        },
        "notebook and report parameters": {
            "report -p N_EVAL -1": lambda: _report_refused(f, "N_EVAL", "-1"),
            "report -p AR maybe": lambda: _report_refused(f, "AR", "maybe"),
            "report -p EPOCHS 0": lambda: _report_refused(f, "EPOCHS", "0"),
            "report -p FAST abc": lambda: _report_refused(f, "FAST", "abc"),
            "report -p N_EVAL 5000 on the embedded digits (1,000 held out)": lambda: _report_refused(f, "N_EVAL", "5000"),
            "00_quickstart N_EVAL=-1": lambda: expect_error(
                lambda: check_parameters("00_quickstart", **{**QUICKSTART, "N_EVAL": -1})),
            "00_quickstart FAST='abc'": lambda: expect_error(
                lambda: check_parameters("00_quickstart", **{**QUICKSTART, "FAST": "abc"})),
            "00_quickstart FAST=True decides the mode": lambda: _environment(
                {"HVAE_LITE_FAST": "0"}, lambda: expect_ok(
                    lambda: (check_parameters("00_quickstart", **{**QUICKSTART, "FAST": True}),
                             os.environ["HVAE_LITE_FAST"]),
                    lambda r: r[0].N_EVAL == 100 and r[1] == "1")),
            "00_quickstart N_EVAL=300 in fast mode is kept": lambda: _environment(
                {"HVAE_LITE_FAST": os.environ.get("HVAE_LITE_FAST")}, lambda: expect_ok(
                    lambda: check_parameters("00_quickstart", **{**QUICKSTART, "FAST": True, "N_EVAL": 300}),
                    lambda r: r.N_EVAL == 300)),
            "01_one_latent_layer HIDDEN=(512, 0)": lambda: expect_error(lambda: check_parameters(
                "01_one_latent_layer", partial=True, HIDDEN=(512, 0))),
            "04_autoregressive_decoder PIXEL=(12, 40)": lambda: expect_error(lambda: check_parameters(
                "04_autoregressive_decoder", partial=True, PIXEL=(12, 40))),
        },
    }


def _shipped_manifest_overwrite(f: Fixtures, train_over: Callable[[str], list[str]]) -> str:
    with _shipped_folder(f) as shipped:
        manifest = shipped / "matryoshka.json"
        before = manifest.read_bytes()
        return _unchanged(manifest, cli_error(train_over(str(manifest))), before)


def _report_refused(f: Fixtures, name: str, value: str) -> str:
    """A bad report parameter: refused before a kernel starts, naming the parameter, nothing written."""
    out = f.path("report")
    code, err, escaped = run_cli(["report", "--out", str(out), "--quiet", "-p", name, value])
    if escaped is not None:
        return classify_error(escaped)
    if code == 0 or out.exists():
        return "silent"
    return _exit_outcome(err) if name in err else "unclear"


OUTCOMES = ("ok", "clear", "refused", "silent", "unclear")


def run_all(folder: Path) -> dict[str, str]:
    """name -> outcome of every case."""
    return {name: outcome for area in run_by_area(folder).values() for name, outcome in area.items()}


def run_by_area(folder: Path) -> dict[str, dict[str, str]]:
    """area -> name -> outcome."""
    f = Fixtures(folder)
    results: dict[str, dict[str, str]] = {}
    for area, area_cases in cases(f).items():
        results[area] = {}
        for name, case in area_cases.items():
            try:
                results[area][name] = case()
            except Exception as error:  # noqa: BLE001 - a case that itself blew up is unclear
                results[area][name] = f"unclear ({type(error).__name__} in the case)"
    return results


def counts(outcomes: Any) -> dict[str, int]:
    """How many cases of each outcome (OUTCOMES), e.g. {'ok': 40, 'clear': 160, ...}."""
    outcomes = list(outcomes)
    return {kind: sum(o.split()[0] == kind for o in outcomes) for kind in OUTCOMES}


def summary(results: dict[str, dict[str, str]]) -> dict[str, Any]:
    """What benchmarks/results/adversarial.json holds: the counts per area and in all, and every outcome."""
    return {"areas": {area: counts(outcomes.values()) for area, outcomes in results.items()},
            "total": counts(o for outcomes in results.values() for o in outcomes.values()),
            "cases": {area: dict(outcomes) for area, outcomes in results.items()},
            "command": "PYTHONPATH=. python tests/adversarial.py --json benchmarks/results/adversarial.json"}


def main(argv: list[str] | None = None) -> None:
    import argparse
    parser = argparse.ArgumentParser(description="Run every adversarial case and print the outcomes.")
    parser.add_argument("--json", help="also write the counts and outcomes to this results file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        results = run_by_area(Path(folder))
    width = max(len(name) for area in results.values() for name in area)
    for area, outcomes in results.items():
        print(f"\n--- {area}")
        for name, outcome in outcomes.items():
            print(f"{name:<{width}}  {outcome}")
    total = summary(results)["total"]
    print(f"\n{sum(total.values())} cases: {total['clear']} clear errors, {total['ok']} correct results, "
          f"{total['refused']} valid calls refused, {total['silent']} silently wrong, {total['unclear']} unclear")
    if args.json:
        from hvae_lite.files import write_json
        write_json(args.json, summary(results))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
