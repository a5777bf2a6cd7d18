"""The kit installs like a library: a wheel installed outside the source tree finds the shipped checkpoints
and writes nothing into site-packages (runs and downloads go to the user's cache folder).

Builds a wheel of this checkout, installs it (no dependencies) into a fresh virtual environment that
borrows the running environment's packages through a .pth file (so torch is never downloaded), and
from a temporary directory loads a shipped checkpoint and draws one figure. About 15 s.
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
