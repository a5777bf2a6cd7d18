"""The kit installs like a library: a wheel installed outside the source tree finds the shipped checkpoints
and writes nothing into site-packages (runs and downloads go to the user's cache folder); its command
line works from any folder: `report` (its notebook is package data), and `evaluate`/`sample` with a
shipped model's name.

Builds a wheel of this checkout, installs it (no dependencies) into a fresh virtual environment that
borrows the running environment's packages through a .pth file (so torch is never downloaded), and
from a temporary directory loads a shipped checkpoint and draws one figure, then runs the commands.
About 1 to 2 minutes (the report, in fast mode, is most of it).
"""
import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from hvae_lite.paths import CHECKPOINT_DIR
from hvae_lite.recipes import CHECKPOINT_NAMES

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [name for name in CHECKPOINT_NAMES if (CHECKPOINT_DIR / f"{name}.pt").is_file()]

# Run by the installed package, in a directory with no source tree above it: prints where the
# checkpoint came from and saves a figure of the loaded model's samples.
SCRIPT = """
import json, sys, warnings
import torch
warnings.filterwarnings("error", "no shipped checkpoint")  # it would train for minutes: fail instead
import hvae_lite
from hvae_lite import paths, plots
from hvae_lite.pretrained import load_or_train
name = sys.argv[1]
model = load_or_train(name, fast=False, progress=False).model()
torch.manual_seed(0)
figure = plots.image_grid(model.sample(4))
figure.savefig("samples.png")
print(json.dumps({"package": hvae_lite.__file__, **paths.describe(), "pretrained": str(paths.PRETRAINED_RUNS_DIR),
                  "bench": str(paths.BENCH_RUNS_DIR)}))
"""


@pytest.fixture(scope="module")
def installed_python(tmp_path_factory):
    """The python of a fresh venv with this checkout's wheel installed (the rest borrowed from ours)."""
    build = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(build),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = build.glob("hvae_lite-*.whl")
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=False)  # pip of the running environment installs into it (--python)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # torch, numpy, matplotlib...: the running environment's, appended after the venv's own site-packages.
    ours = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    (site / "borrowed.pth").write_text("\n".join(sorted(ours)) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--ignore-installed", "--quiet",
                    str(wheel)], check=True, capture_output=True, timeout=300)
    return python


@pytest.mark.skipif(not SHIPPED, reason="no shipped checkpoint in data/checkpoints/")
def test_installed_wheel_loads_a_shipped_checkpoint_outside_the_source_tree(installed_python, tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HVAE_LITE_FAST")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env.pop("HVAE_LITE_DATA", None)  # the default download folder, not an override
    run = subprocess.run([str(installed_python), "-c", SCRIPT, SHIPPED[0]], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    where = json.loads(run.stdout.strip().splitlines()[-1])
    site = installed_python.parent.parent
    assert Path(where["package"]).is_relative_to(site), f"imported {where['package']}, not the installed wheel"
    assert Path(where["checkpoints"]) == Path(where["package"]).parent / "shipped"
    assert where["in_source_tree"] == "False"
    # Everything the kit writes goes to the user's cache folder, never into site-packages.
    for key in ("runs", "pretrained", "bench", "downloads", "results"):
        assert Path(where[key]).is_relative_to(tmp_path / "cache"), (key, where[key])
        assert not Path(where[key]).is_relative_to(site), (key, where[key])
    assert (tmp_path / "samples.png").stat().st_size > 1000


def _outside_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a user of the installed package: no source tree on the path, a private cache."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HVAE_LITE_FAST", "HVAE_LITE_DATA")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["MPLBACKEND"] = "Agg"
    # nbconvert's templates are data files, in <prefix>/share/jupyter of the environment that installed
    # nbconvert: here the borrowed one (a real install puts them in the venv's own share/jupyter).
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share" / "jupyter")
    return env


def test_installed_wheel_runs_the_report_from_any_folder(installed_python, tmp_path):
    """`python -m hvae_lite report` executes the notebook installed with the package (fast mode)."""
    env = dict(_outside_env(tmp_path), HVAE_LITE_FAST="1")
    run = subprocess.run([str(installed_python), "-m", "hvae_lite", "report", "--out", "out", "--quiet"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "<math" in html and html.count("data:image/png;base64,") >= 8
    where = subprocess.run([str(installed_python), "-c", "from hvae_lite import paths; print(paths.NOTEBOOKS_DIR)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(installed_python.parent.parent) and (Path(where) / "report.ipynb").is_file()


@pytest.mark.skipif("matryoshka" not in SHIPPED, reason="no shipped default checkpoint in data/checkpoints/")
def test_installed_wheel_evaluates_and_samples_a_shipped_model_by_name(installed_python, tmp_path):
    env = _outside_env(tmp_path)
    evaluate = subprocess.run([str(installed_python), "-m", "hvae_lite", "evaluate", "matryoshka", "--k", "2",
                               "--n-images", "3", "--chunk", "1", "--quiet"], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    assert json.loads(evaluate.stdout)["n_images"] == 3
    sample = subprocess.run([str(installed_python), "-m", "hvae_lite", "sample", "matryoshka", "--n", "4", "--out",
                             "s.png"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert sample.returncode == 0, sample.stderr[-3000:]
    assert (tmp_path / "s.png").stat().st_size > 1000
