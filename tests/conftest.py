"""Shared fixtures: tiny configs, small binary batches of real digits, a small data split."""
import socket

import pytest
import torch

from hvae_lite.config import get_preset
from hvae_lite.data import DataSplit, fixed_binarize, load_embedded_mnist
from hvae_lite.model import HVAE

# The tests' models are tiny: one thread is faster than two, and far faster on a busy machine
# (intra-op threads spin-wait for each other when the cores are shared).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def embedded():
    """The embedded split (4000 train / 1000 held-out digits), loaded once per test session."""
    return load_embedded_mnist(seed=0)


@pytest.fixture(scope="session")
def small_split(embedded):
    """200 training and 50 held-out digits: enough for a real epoch in well under a second."""
    return DataSplit(embedded.train_images[:200], embedded.train_labels[:200],
                     embedded.test_images[:50], embedded.test_labels[:50], "embedded")


@pytest.fixture(scope="session")
def digits(embedded):
    """16 fixed-binarised real digits (16, 1, 28, 28)."""
    return fixed_binarize(embedded.test_images[:16], seed=0)


@pytest.fixture
def tiny_config():
    return get_preset("tiny")


@pytest.fixture
def tiny_model(tiny_config):
    torch.manual_seed(0)
    return HVAE(tiny_config)


@pytest.fixture(scope="session")
def trained_tiny(digits):
    """A tiny model after 20 Adam steps on 16 digits: its posteriors differ from its priors."""
    torch.manual_seed(0)
    model = HVAE(get_preset("tiny"))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(20):
        optimizer.zero_grad()
        model(digits).loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture
def closed_port_url():
    """A function giving an http URL (with an optional path) on a local port nothing listens on:
    a download from it fails at once, as offline."""
    def url(path: str = "") -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return f"http://127.0.0.1:{s.getsockname()[1]}/{path}"
    return url
