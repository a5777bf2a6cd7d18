"""The classroom app: the three explorers on tabs, over the shipped models, with no code to read.

`notebooks/app.ipynb` calls `ClassroomApp().show()`; `make app` (`python -m hvae_lite.app`) first
imputes every digit under every occlusion once (the slow part, cached in `paths.RUNS_DIR/app/`,
shared by every visitor's kernel), then serves that notebook with Voila (code cells hidden), so
students only see the controls, the figures and their captions. The server settings for a class
(idle kernels culled, one thread per kernel) are `VOILA_OPTIONS` and `KERNEL_ENV`.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import ipywidgets as widgets
import torch
from IPython.display import display

from . import paths
from .data import fixed_binarize, load_embedded_mnist
from .pretrained import load_or_train
from .recipes import fast_mode
from .widgets import ClusterExplorer, Explorer, ImputationExplorer, LayerExplorer, headless_mode

# (tab title, what to try): one line above each explorer.
TABS = {
    "layers": ("What each layer encodes",
               "Pick a digit, then move 'keep top k' from 0 to the end: which layers fix the class, which the style?"),
    "classes": ("Classes without labels",
                "Step through the components: does each one draw a single digit class? Lower the temperature "
                "for more typical samples."),
    "imputation": ("Filling in occluded digits",
                   "Hide part of a digit and compare how the two models fill it in; more samples show how sure "
                   "each model is."),
}

# ipywidgets gives every tab the same width and cuts longer titles: let each title take its width.
_TAB_STYLE = "<style>.jupyter-widgets.jupyter-widget-tab.hvae-lite-tabs > .lm-TabBar .lm-TabBar-tab {flex: 0 0 auto}</style>"


# Where the imputations of every digit and occlusion are kept between runs (one file per set of
# models and settings), so each visitor's kernel loads them instead of computing them.
CACHE_DIR = paths.RUNS_DIR / "app"
# Voila's Jupyter server, set for a class. Voila's page asks the server to stop its kernel as it
# unloads, but a page can vanish without a word (a laptop put to sleep, a dropped network), and
# without culling every such kernel (about 0.5 GB) stays until the server stops: a kernel with no
# page connected that has stayed idle for 10 minutes is culled, checked every minute. A page still
# open is never culled, however long it sits idle.
# Voila runs the notebook before it sends the page, and waits only 4 s (nbclient's default) for a
# cell's last outputs once the kernel says the cell is done: on a machine busy with a class, the
# app's widget came later, was dropped, and the page showed no tabs. 60 s waits for it.
VOILA_OPTIONS = ("--MappingKernelManager.cull_idle_timeout=600", "--MappingKernelManager.cull_interval=60",
                 "--MappingKernelManager.cull_connected=False", "--VoilaExecutor.iopub_timeout=60")
# Every visitor has a kernel of their own: one thread each, so that ten kernels redrawing at once
# share the cores instead of spin-waiting for each other (torch reads this when it is imported).
KERNEL_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
APP_NOTEBOOK = paths.NOTEBOOKS_DIR / "app.ipynb"


def _fingerprint(models: dict[str, torch.nn.Module], digits: torch.Tensor, *settings: object) -> str:
    """A short hash of the models' weights, the digits and the settings: names the imputation cache."""
    digest = hashlib.sha256(repr(settings).encode())
    for name, model in sorted(models.items()):
        digest.update(name.encode())
        for key, value in model.state_dict().items():
            digest.update(key.encode())
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    digest.update(digits.numpy().tobytes())
    return digest.hexdigest()[:16]


class ClassroomApp:
    """Layer, class and imputation explorers on tabs (`.explorers`, `.tabs`; display `.widget`), over the shipped
    checkpoints (fast mode: tiny models trained in seconds), for ten held-out digits, one per class.

    cache_dir: where `precompute()` keeps the imputations and where they are read from (None: nowhere).
    """

    def __init__(self, fast: bool | None = None, seed: int = 0, cache_dir: str | Path | None = CACHE_DIR):
        fast = fast_mode(fast)
        models = {name: load_or_train(name, fast=fast, progress=False).model()
                  for name in ("matryoshka", "mixture", "imputation")}
        data = load_embedded_mnist(seed=0)
        first_of_class = [int((data.test_labels == c).nonzero()[0]) for c in range(10)]
        digits = fixed_binarize(data.test_images[first_of_class], seed=seed)  # (10, 1, 28, 28): 0..9
        imputers, n_steps = {"iterative": models["matryoshka"], "conditional": models["imputation"]}, 3 if fast else 20
        key = _fingerprint(imputers, digits, n_steps, seed)
        self.cache_file = None if cache_dir is None else Path(cache_dir) / f"imputations-{key}.pt"
        table = None
        if self.cache_file is not None and self.cache_file.is_file():
            table = torch.load(self.cache_file, weights_only=True)  # tensors and strings only: no code runs
        self.explorers: dict[str, Explorer] = {
            "layers": LayerExplorer(models["matryoshka"], digits, n_samples=8, seed=seed),
            "classes": ClusterExplorer(models["mixture"], n_samples=16, seed=seed),
            "imputation": ImputationExplorer(imputers, digits, n_steps=n_steps, seed=seed, table=table),
        }
        pages = [widgets.VBox([widgets.HTML(f"<p style='font-size: 1.1em'><b>Try:</b> {TABS[key][1]}</p>"),
                               explorer.widget]) for key, explorer in self.explorers.items()]
        self.tabs = widgets.Tab(children=pages, titles=[TABS[key][0] for key in self.explorers])
        self.tabs.add_class("hvae-lite-tabs")
        self.widget = widgets.VBox([widgets.HTML(_TAB_STYLE), self.tabs])

    def precompute(self, progress: bool = True) -> Path | None:
        """Impute every digit under every occlusion (minutes of one core with the shipped models, once)
        and keep the result in `cache_file`, written atomically, for every later kernel."""
        imputation = self.explorers["imputation"]
        complete = all(f"{d}/{k}" in imputation.table for d, k in imputation.keys())
        table = imputation.precompute(progress=progress)
        if self.cache_file is None or (complete and self.cache_file.is_file()):
            return self.cache_file
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.cache_file.with_name(f".{self.cache_file.name}.{os.getpid()}.tmp")
        torch.save(table, partial)
        os.replace(partial, self.cache_file)
        return self.cache_file

    def show(self, headless: bool | None = None) -> None:
        """Display the tabs; when headless (env HVAE_LITE_HEADLESS=1), also every explorer's figure and
        caption as plain outputs."""
        display(self.widget)
        if headless_mode(headless):
            for explorer in self.explorers.values():
                explorer.show_static()


def voila_command(notebook: Path = APP_NOTEBOOK, ip: str = "127.0.0.1", port: int = 8866) -> list[str]:
    """The command that serves the app notebook for a class (`make app`, the browser test)."""
    return [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--Voila.ip={ip}", f"--port={port}",
            *VOILA_OPTIONS]


def main(argv: list[str] | None = None) -> None:
    """`python -m hvae_lite.app [--ip IP] [--port PORT] [--precompute-only]`: impute once, then serve."""
    parser = argparse.ArgumentParser(prog="python -m hvae_lite.app", description=main.__doc__)
    parser.add_argument("--ip", default="127.0.0.1", help="127.0.0.1: this machine only; 0.0.0.0: the network too")
    parser.add_argument("--port", type=int, default=8866)
    parser.add_argument("--precompute-only", action="store_true", help="fill the imputation cache, then exit")
    args = parser.parse_args(argv)
    cache = ClassroomApp(cache_dir=CACHE_DIR).precompute(progress=True)
    print(f"imputations cached in {cache}", flush=True)
    if not args.precompute_only:
        os.environ.update(KERNEL_ENV)
        command = voila_command(APP_NOTEBOOK, args.ip, args.port)
        os.execv(command[0], command)


if __name__ == "__main__":
    main()
