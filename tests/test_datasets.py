"""Omniglot and CIFAR-10: downloads from a local HTTP server on 127.0.0.1 serving small files in
the real formats (a MATLAB chardata.mat, a tar.gz of pickled batches), the cache, the offline
errors, and a tiny model trained on each."""
import functools
import hashlib
import http.server
import io
import os
import pickle
import tarfile
import threading

import numpy as np
import pytest
import scipy.io
import torch

from hvae_lite import data
from hvae_lite.__main__ import main
from hvae_lite.checkpoints import load_checkpoint
from hvae_lite.data import DataDownloadError, load_cifar10, load_data, load_omniglot
from hvae_lite.data import cifar10 as cifar10_module, omniglot as omniglot_module
from hvae_lite.errors import DataError, InputError

CIFAR_SET = ["--set", "image_size=32", "--set", "image_channels=3", "--set", "likelihood=logistic",
             "--set", "latent_spec=8x1,16x1", "--set", "logistic_components=2"]


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep pytest output clean
        pass


def _omniglot_mat(rng) -> tuple[bytes, dict]:
    """chardata.mat as the IWAE repository has it: images as (784, N) columns, each stored
    column-major (MATLAB), grey levels in [0, 1]; alphabets one-hot (50, N)."""
    train, test = rng.random((12, 28, 28)), rng.random((6, 28, 28))
    train_alphabet, test_alphabet = rng.integers(0, 50, 12), rng.integers(0, 50, 6)

    def columns(images):
        return np.stack([image.ravel(order="F") for image in images], axis=1)

    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"data": columns(train), "target": np.eye(50)[:, train_alphabet],
                              "testdata": columns(test), "testtarget": np.eye(50)[:, test_alphabet]})
    return buffer.getvalue(), dict(train=train, test=test, train_labels=train_alphabet, test_labels=test_alphabet)


def _pickled_batch(pixels: np.ndarray, labels: list[int]) -> bytes:
    return pickle.dumps({b"batch_label": b"a batch", b"labels": labels, b"data": pixels,
                         b"filenames": [b"x.png"] * len(labels)}, protocol=2)


def _cifar_archive(rng, members: dict[str, bytes] | None = None) -> tuple[bytes, dict]:
    """cifar-10-python.tar.gz in its real layout: five data_batch_N and a test_batch (pickled
    dicts with uint8 (N, 3072) rows: red, green, then blue planes) and batches.meta."""
    pixels = {name: rng.integers(0, 256, (n, 3072), dtype=np.uint8)
              for name, n in [(f"data_batch_{i}", 4) for i in range(1, 6)] + [("test_batch", 5)]}
    labels = {name: [int(v) for v in rng.integers(0, 10, len(p))] for name, p in pixels.items()}
    if members is None:
        members = {name: _pickled_batch(pixels[name], labels[name]) for name in pixels}
        members["batches.meta"] = pickle.dumps({b"label_names": [b"airplane"] * 10}, protocol=2)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return buffer.getvalue(), dict(pixels=pixels, labels=labels)


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A local server with a tiny chardata.mat and cifar-10-python.tar.gz under /good/; the
    kit's mirrors and checksums point at it, and its cache is a fresh folder."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # urllib would send 127.0.0.1 through a proxy
    rng = np.random.default_rng(0)
    folder = tmp_path / "served" / "good"
    folder.mkdir(parents=True)
    omniglot, omniglot_arrays = _omniglot_mat(rng)
    cifar, cifar_arrays = _cifar_archive(rng)
    (folder / "chardata.mat").write_bytes(omniglot)
    (folder / "cifar-10-python.tar.gz").write_bytes(cifar)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(tmp_path / "served")))
    server.requests = []
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/good/"
    # The loaders read their defaults from their own modules: patch them there.
    monkeypatch.setattr(omniglot_module, "OMNIGLOT_MIRRORS", (base,))
    monkeypatch.setattr(omniglot_module, "OMNIGLOT_FILES", {"chardata.mat": hashlib.md5(omniglot).hexdigest()})
    monkeypatch.setattr(cifar10_module, "CIFAR10_MIRRORS", (base,))
    monkeypatch.setattr(cifar10_module, "CIFAR10_FILES", {"cifar-10-python.tar.gz": hashlib.md5(cifar).hexdigest()})
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    yield dict(base=base, requests=server.requests, cache=tmp_path / "cache",
               omniglot=omniglot_arrays, cifar=cifar_arrays)
    server.shutdown()
    server.server_close()



def test_omniglot_downloads_once_and_loads_in_the_iwae_layout(served):
    split = load_omniglot()
    assert split.source == "omniglot" and served["requests"] == ["/good/chardata.mat"]
    assert split.train_images.shape == (12, 1, 28, 28) and split.test_images.shape == (6, 1, 28, 28)
    assert split.train_images.dtype == torch.float32 and split.train_labels.dtype == torch.int64
    expected = torch.from_numpy(served["omniglot"]["train"]).float()
    assert torch.allclose(split.train_images[:, 0], expected)  # column-major storage undone
    assert torch.equal(split.test_labels, torch.from_numpy(served["omniglot"]["test_labels"]))
    assert torch.equal(load_data("omniglot").test_images, split.test_images)
    assert served["requests"] == ["/good/chardata.mat"]  # the second load came from the cache
    assert sorted(p.name for p in served["cache"].iterdir()) == ["chardata.mat"]  # no temp files


def test_cifar10_downloads_once_and_loads_the_batches_in_order(served):
    split = load_cifar10()
    assert split.source == "cifar10" and served["requests"] == ["/good/cifar-10-python.tar.gz"]
    assert split.train_images.shape == (20, 3, 32, 32) and split.test_images.shape == (5, 3, 32, 32)
    pixels, labels = served["cifar"]["pixels"], served["cifar"]["labels"]
    first = torch.from_numpy(pixels["data_batch_1"][0].astype(np.float32)).view(3, 32, 32) / 255
    assert torch.equal(split.train_images[0], first)  # channel planes, rows, columns
    assert torch.equal(split.train_images[-1].flatten() * 255, torch.from_numpy(pixels["data_batch_5"][-1]).float())
    assert split.train_labels.tolist() == sum((labels[f"data_batch_{i}"] for i in range(1, 6)), [])
    assert split.test_labels.tolist() == labels["test_batch"]
    load_data("cifar10")
    assert len(served["requests"]) == 1


@pytest.mark.parametrize("loader, filename, name", [(load_omniglot, "chardata.mat", "Omniglot"),
                                                   (load_cifar10, "cifar-10-python.tar.gz", "CIFAR-10")])
def test_offline_without_a_cache_says_what_to_do(served, loader, filename, name, closed_port_url):
    offline = closed_port_url()
    with pytest.raises(DataDownloadError) as info:
        loader(mirrors=[served["base"].replace("good", "missing"), offline])
    message = str(info.value)
    assert f"Could not get 1 of the 1 {name} files" in message and f"- {filename} (expected md5" in message
    assert "HTTP 404" in message
    assert f"{offline}{filename}: offline or unreachable" in message
    assert str(served["cache"]) in message and "network" in message and "MNIST" in message
    assert list(served["cache"].iterdir()) == []


def test_a_checksum_mismatch_leaves_nothing(served):
    with pytest.raises(DataDownloadError, match="checksum mismatch"):
        load_cifar10(checksums={"cifar-10-python.tar.gz": "0" * 32})
    assert list(served["cache"].iterdir()) == []


def test_a_pickle_that_would_run_code_is_refused(served, tmp_path):
    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    payload, _ = _cifar_archive(np.random.default_rng(1), {"data_batch_1": pickle.dumps(Exploit())})
    cache = tmp_path / "evil"
    cache.mkdir()
    (cache / "cifar-10-python.tar.gz").write_bytes(payload)
    with pytest.raises(DataError, match=r"not the CIFAR-10 python archive \(UnpicklingError: refusing to load"):
        load_cifar10(cache, checksums={"cifar-10-python.tar.gz": hashlib.md5(payload).hexdigest()})


def test_a_file_of_the_wrong_format_is_a_clear_error(tmp_path):
    payload = b"not a MATLAB file"
    (tmp_path / "chardata.mat").write_bytes(payload)
    with pytest.raises(DataError, match="not the Omniglot chardata.mat"):
        load_omniglot(tmp_path, checksums={"chardata.mat": hashlib.md5(payload).hexdigest()})


def test_load_data_names_the_sources():
    with pytest.raises(InputError, match="unknown data source 'svhn'.*cifar10"):
        load_data("svhn")


def test_a_tiny_model_trains_on_each_from_the_command_line(served, tmp_path):
    common = ["--preset", "tiny", "--epochs", "1", "--batch-size", "4", "--quiet", "--device", "cpu"]
    assert main(["train", "--data", "omniglot", *common, "--out", str(tmp_path / "omniglot.pt")]) == 0
    assert main(["train", "--data", "cifar10", *common, *CIFAR_SET, "--set", "ar_layers=2",
                 "--out", str(tmp_path / "cifar.pt")]) == 0
    for name, shape, steps in [("omniglot", (1, 28, 28), 3), ("cifar", (3, 32, 32), 5)]:
        checkpoint = load_checkpoint(tmp_path / f"{name}.pt")
        assert checkpoint.config.image_shape == shape and checkpoint.step == steps
        record = checkpoint.history[-1]
        assert np.isfinite(record["elbo"]) and np.isfinite(record["test_elbo"]) and record["skipped"] == 0
    assert main(["evaluate", str(tmp_path / "cifar.pt"), "--data", "cifar10", "--k", "2", "--quiet"]) == 0


def test_a_model_for_other_images_is_a_clear_error(served, tmp_path, capsys):
    assert main(["train", "--data", "cifar10", "--preset", "tiny", "--quiet", "--out", str(tmp_path / "x.pt")]) == 1
    assert "train_images must have shape (B, 1, 28, 28), got (20, 3, 32, 32)" in capsys.readouterr().err
