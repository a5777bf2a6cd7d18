"""The first cell of every notebook: install the kit where it is missing (a hosted notebook such as
Colab, a shared JupyterHub), then say where the models run.

`SETUP_SOURCE` is that cell's code; `python -m hvae_lite.hosted` inserts it at the top of every
notebook under notebooks/ that lacks it (or brings an older copy up to date), touching no other
cell and no output, and `--check` exits 1 when a notebook's copy is missing or stale. The cell
pins the kit's version (pyproject.toml); env HVAE_LITE_INSTALL names another pip source (a
wheel file or URL, or `git+https://...@v<version>`).
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import paths

SETUP_ID = "hvae-lite-setup"
SETUP_TEMPLATE = '''\
# Setup. Where the kit is not installed (a hosted notebook: Colab, a JupyterHub), install the version
# these notebooks were written for, from the package index or from env HVAE_LITE_INSTALL (a wheel, or
# a git URL pinned to that version); then say where the models run: a GPU when there is one.
import importlib.util, os, subprocess, sys

HVAE_LITE_VERSION = "{version}"
if importlib.util.find_spec("hvae_lite") is None:
    source = os.environ.get("HVAE_LITE_INSTALL") or f"hvae_lite=={{HVAE_LITE_VERSION}}"
    print(f"installing {{source}} (a minute or two) ...")
    if subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source]).returncode != 0:
        raise RuntimeError(f"could not install {{source}}: set HVAE_LITE_INSTALL to a wheel of hvae_lite "
                           f"{{HVAE_LITE_VERSION}} or to a git URL pinned to it, then run this cell again")
    importlib.invalidate_caches()
from hvae_lite.hosted import describe_setup

describe_setup(HVAE_LITE_VERSION)'''


def kit_version() -> str:
    """The kit's version: the installed distribution's, else pyproject.toml's (a clone on PYTHONPATH)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hvae_lite")
    except PackageNotFoundError:
        import tomllib

        return tomllib.loads((paths.REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]


def setup_source(version: str | None = None) -> str:
    return SETUP_TEMPLATE.format(version=version or kit_version())


def describe_setup(expected_version: str) -> str:
    """Print (and return) which kit and which device this notebook uses; warn when the installed kit is
    not the version the notebook was written for."""
    import torch

    from .train import resolve_device

    device = resolve_device("auto")
    name = f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    line = f"hvae_lite {kit_version()}; models run on {device}{name}"
    if kit_version() != expected_version:
        line += f"; note: these notebooks were written for hvae_lite {expected_version}"
    print(line)
    return line


def notebooks(root: Path | None = None) -> list[Path]:
    """The notebooks that get the setup cell: the sequence, the app and the report (not the exercises)."""
    return sorted(Path(root or paths.NOTEBOOKS_DIR).glob("*.ipynb"))


def update(notebook: Path, check: bool = False) -> bool:
    """Give `notebook` the current setup cell as its first cell; True when it had to change
    (with check=True nothing is written)."""
    import nbformat

    node = nbformat.read(notebook, as_version=4)
    first = node.cells[0] if node.cells else None
    if first is not None and first.get("id") == SETUP_ID:
        if first.source == setup_source():
            return False
        if not check:
            first.source = setup_source()
    elif not check:
        cell = nbformat.v4.new_code_cell(setup_source())
        cell.id = SETUP_ID
        node.cells.insert(0, cell)
    if not check:
        nbformat.write(node, notebook)
    return True


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hvae_lite.hosted", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook lacks the current setup cell")
    args = parser.parse_args(argv)
    stale = [path for path in notebooks() if update(path, check=args.check)]
    for path in stale:
        print(f"{'stale' if args.check else 'updated'}: {path}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
