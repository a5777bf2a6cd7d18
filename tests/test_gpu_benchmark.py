"""benchmarks/gpu.py: without a GPU it says so and exits 0; its batch and FLOP count work on any device."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import gpu  # noqa: E402
from hvae_lite.config import get_preset  # noqa: E402
from hvae_lite.model import HVAE  # noqa: E402


def test_without_a_gpu_it_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--presets", "tiny"]) == 0
    assert "no CUDA GPU is visible" in capsys.readouterr().out


def test_random_batches_fit_each_likelihood_and_flops_are_counted():
    binary = gpu.random_batch(get_preset("tiny"), 4, torch.device("cpu"))
    assert binary.shape == (4, 1, 28, 28) and set(binary.unique().tolist()) <= {0.0, 1.0}
    colour_config = get_preset("tiny", image_size=32, image_channels=3, likelihood="logistic", latent_spec="8x1,16x1")
    colour = gpu.random_batch(colour_config, 4, torch.device("cpu"))
    assert colour.shape == (4, 3, 32, 32) and torch.equal(colour * 255, (colour * 255).round())
    small, large = (gpu.flops_per_step(HVAE(get_preset("tiny", width=w)), binary) for w in (8, 16))
    assert 0 < small < large  # twice the width: about four times the convolution FLOPs
