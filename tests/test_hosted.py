"""Hosted notebooks: every notebook starts with the setup cell, which installs the kit where it is missing.

The slow test builds what a hosted Jupyter gives before the kit is there: a fresh virtual environment
with only Jupyter's kernel, papermill and the CPU build of torch (from pip's cache or the local
wheel folder, as `make setup` gets it), no source tree on the path and an empty user cache; it
executes notebook 00 there with papermill, in fast mode, with the setup cell pointed at a wheel of
this checkout (env HVAE_LITE_INSTALL). A few minutes: pip installs the kit's dependencies.
"""
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import nbformat
import pytest

from hvae_lite import hosted

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
TORCH = "torch==2.13.0"  # the Makefile's pin


@pytest.mark.parametrize("notebook", hosted.notebooks(), ids=lambda p: p.name)
def test_every_notebook_starts_with_the_current_setup_cell(notebook):
    first = nbformat.read(notebook, as_version=4).cells[0]
    assert first.cell_type == "code" and first.get("id") == hosted.SETUP_ID, "run: python -m hvae_lite.hosted"
    assert first.source == hosted.setup_source(), "stale setup cell: run python -m hvae_lite.hosted"
    assert f'HVAE_LITE_VERSION = "{VERSION}"' in first.source


def test_update_inserts_the_cell_once_and_touches_nothing_else(tmp_path):
    cells = [nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("x = 1", outputs=[
        nbformat.v4.new_output("stream", text="kept\n")])]
    path = tmp_path / "n.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    assert hosted.update(path, check=True) and hosted.update(path) and not hosted.update(path)
    after = nbformat.read(path, as_version=4).cells
    assert [c.source for c in after[1:]] == ["# Title", "x = 1"] and after[2].outputs[0].text == "kept\n"
    assert after[0].source == hosted.setup_source()


def test_describe_setup_names_the_version_and_the_device(capsys):
    line = hosted.describe_setup(VERSION)
    assert line.startswith(f"hvae_lite {VERSION}; models run on ") and "note" not in line
    assert "written for hvae_lite 0.0.1" in hosted.describe_setup("0.0.1")


def _run(command, **kwargs):
    run = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert run.returncode == 0, f"{' '.join(map(str, command))}:\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}"
    return run


def test_a_notebook_installs_the_kit_where_it_is_missing(tmp_path):
    wheels = tmp_path / "wheel"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(wheels), str(ROOT)], timeout=600)
    (wheel,) = wheels.glob("hvae_lite-*.whl")
    env_dir = tmp_path / "hosted"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", TORCH, "ipykernel", "papermill"], timeout=1200)
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # not the source tree: only what is installed
    assert subprocess.run([str(python), "-c", "import hvae_lite"], capture_output=True, cwd=tmp_path,
                          env=clean).returncode != 0
    work = tmp_path / "work"
    work.mkdir()
    notebook = nbformat.read(ROOT / "notebooks" / "00_quickstart.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, work / "00_quickstart.ipynb")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HVAE_LITE", "PYTHONPATH", "VIRTUAL_ENV"))}
    env.update(HVAE_LITE_INSTALL=str(wheel), HVAE_LITE_FAST="1", HVAE_LITE_HEADLESS="1", MPLBACKEND="Agg",
               XDG_CACHE_HOME=str(tmp_path / "cache"), JUPYTER_PLATFORM_DIRS="1",
               JUPYTER_DATA_DIR=str(tmp_path / "jupyter"), PATH=f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}")
    _run([str(python), "-m", "papermill", "--no-progress-bar", "-k", "python3", "00_quickstart.ipynb", "out.ipynb"],
         cwd=work, env=env, timeout=1800)
    executed = nbformat.read(work / "out.ipynb", as_version=4)
    setup_output = "".join(o.get("text", "") for o in executed.cells[0].outputs)
    assert f"installing {wheel}" in setup_output and f"hvae_lite {VERSION}; models run on cpu" in setup_output
    installed = _run([str(python), "-c", "import hvae_lite; print(hvae_lite.__file__)"], env=env, cwd=work).stdout.strip()
    assert Path(installed).is_relative_to(env_dir)  # the wheel, in the fresh environment, not this checkout
