"""Every folder the kit reads or writes, decided once here and nowhere else.

Two situations, told apart by a pyproject.toml beside the package:
- a clone (an editable install, or the package on PYTHONPATH): the shipped checkpoints are the
  source tree's `data/checkpoints/`; runs, downloads and benchmark results stay beside the
  checkout (`runs/`, `data/mnist/`, `benchmarks/results/`; the first two are gitignored);
- an installed package (a wheel, `pip install .`): the shipped checkpoints are package data in
  `hvae_lite/shipped/` (pyproject.toml maps `data/checkpoints/` there), the report's notebook in
  `hvae_lite/notebooks/`; everything the kit writes
  (runs, downloads) goes to the user's cache folder (e.g. `~/.cache/hvae_lite` on Linux), never
  into site-packages.

Env HVAE_LITE_DATA overrides the download folder (`download_dir`).
"""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
# A clone has its pyproject.toml beside the package; an installed package sits in site-packages.
IN_SOURCE_TREE = (REPO_ROOT / "pyproject.toml").is_file()
USER_CACHE_DIR = platformdirs.user_cache_path("hvae_lite")

# The shipped checkpoints and their manifests (read-only).
CHECKPOINT_DIR = REPO_ROOT / "data" / "checkpoints" if IN_SOURCE_TREE else PACKAGE_DIR / "shipped"
# What the kit trains and caches: load_or_train under pretrained/, the benchmarks under bench/.
RUNS_DIR = REPO_ROOT / "runs" if IN_SOURCE_TREE else USER_CACHE_DIR / "runs"
PRETRAINED_RUNS_DIR = RUNS_DIR / "pretrained"
BENCH_RUNS_DIR = RUNS_DIR / "bench"
# Where `make checkpoints` trains the shipped models, relative to REPO_ROOT (as the manifests' commands
# and the fine-tunes' init_from name it).
CHECKPOINT_RUNS = "runs/checkpoints"
# The benchmark results the notebooks and the README read (a clone's benchmarks/results/; an
# installed package has none unless a user puts them in its cache folder: measures read as "not measured").
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" if IN_SOURCE_TREE else USER_CACHE_DIR / "results"
# Figures the benchmarks draw for benchmarks/README.md (beside the results they are drawn from)
FIGURES_DIR = RESULTS_DIR.parent / "figures"
# Downloaded data sets (MNIST, Omniglot, CIFAR-10 share one folder: their file names do not collide).
DEFAULT_DOWNLOAD_DIR = REPO_ROOT / "data" / "mnist" if IN_SOURCE_TREE else USER_CACHE_DIR / "data"
DOWNLOAD_DIR_ENV = "HVAE_LITE_DATA"
# The notebooks: the report and the exercises are generated from here. An installed package holds
# only the report's and the app's notebooks, as package data in hvae_lite/notebooks/ (pyproject.toml maps it there).
NOTEBOOKS_DIR = REPO_ROOT / "notebooks" if IN_SOURCE_TREE else PACKAGE_DIR / "notebooks"


def download_dir(override: str | Path | None = None) -> Path:
    """Where downloads go: `override`, else $HVAE_LITE_DATA, else DEFAULT_DOWNLOAD_DIR."""
    return Path(override or os.environ.get(DOWNLOAD_DIR_ENV) or DEFAULT_DOWNLOAD_DIR).expanduser()


def describe() -> dict[str, str]:
    """Every root, as strings: where this copy of the kit reads and writes."""
    return {"package_dir": str(PACKAGE_DIR), "in_source_tree": str(IN_SOURCE_TREE), "checkpoints": str(CHECKPOINT_DIR),
            "runs": str(RUNS_DIR), "results": str(RESULTS_DIR), "downloads": str(download_dir()),
            "notebooks": str(NOTEBOOKS_DIR)}
