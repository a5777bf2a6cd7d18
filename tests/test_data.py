"""Tests for hvae_lite.data. Downloads go to a local HTTP server on 127.0.0.1, never the internet."""
import functools
import gzip
import hashlib
import http.server
import struct
import threading

import numpy as np
import pytest
import torch

from hvae_lite import data, paths
from hvae_lite.data import (
    IMAGE_SHAPE, MASK_KINDS, MNIST_FILES, DataDownloadError, check_images, download_mnist,
    dynamic_binarize, fixed_binarize, iterate_minibatches, load_embedded_mnist, load_full_mnist,
    load_mnist, occlusion_mask, random_occlusion_mask, read_idx,
)

# ----------------------------------------------------------------------------- embedded MNIST


@pytest.fixture(scope="module")
def split():
    return load_embedded_mnist(seed=0)


def _rows(images):
    """Each image as bytes, to compare images across tensors as sets."""
    return {bytes(row) for row in (images.reshape(len(images), -1) * 255).round().to(torch.uint8).numpy()}


def test_embedded_split_sizes_dtypes_and_range(split):
    assert split.source == "embedded"
    assert split.train_images.shape == (4000, *IMAGE_SHAPE)
    assert split.test_images.shape == (1000, *IMAGE_SHAPE)
    assert split.train_images.dtype == split.test_images.dtype == torch.float32
    assert split.train_labels.shape == (4000,) and split.test_labels.shape == (1000,)
    assert split.train_labels.dtype == split.test_labels.dtype == torch.int64
    for images in (split.train_images, split.test_images):
        assert images.min() >= 0 and images.max() <= 1 and images.max() == 1


def test_embedded_split_is_stratified_disjoint_and_shuffled(split):
    assert torch.bincount(split.test_labels, minlength=10).tolist() == [100] * 10
    assert torch.bincount(split.train_labels, minlength=10).tolist() == [400] * 10
    train, test = _rows(split.train_images), _rows(split.test_images)
    assert len(train) == 4000 and len(test) == 1000 and not train & test
    # The source is sorted by class; a shuffled part mixes classes from the start.
    assert len(set(split.train_labels[:50].tolist())) > 5
    assert len(set(split.test_labels[:50].tolist())) > 5


def test_embedded_split_depends_only_on_seed(split):
    again, other = load_embedded_mnist(seed=0), load_embedded_mnist(seed=1)
    assert torch.equal(again.train_images, split.train_images)
    assert torch.equal(again.test_labels, split.test_labels)
    assert _rows(other.test_images) != _rows(split.test_images)


def test_embedded_n_test_and_validation():
    small = load_embedded_mnist(seed=3, n_test=200)
    assert len(small.test_images) == 200 and len(small.train_images) == 4800
    assert torch.bincount(small.test_labels).tolist() == [20] * 10
    for bad in (0, 1005, 5000):
        with pytest.raises(ValueError, match="multiple of 10"):
            load_embedded_mnist(n_test=bad)


def test_load_mnist_dispatch(split):
    assert torch.equal(load_mnist("embedded", seed=0).test_images, split.test_images)
    with pytest.raises(ValueError, match="'embedded' or 'full'"):
        load_mnist("fashion")


# ----------------------------------------------------------------------------- binarisation, batches


def test_dynamic_binarize_is_fresh_each_call_and_unbiased(split):
    x = split.test_images
    a, b = dynamic_binarize(x), dynamic_binarize(x)
    assert set(a.unique().tolist()) <= {0.0, 1.0} and a.dtype == torch.float32
    assert not torch.equal(a, b)
    assert abs(a.mean().item() - x.mean().item()) < 0.005
    seeded = [dynamic_binarize(x, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*seeded)


def test_fixed_binarize_is_repeatable_and_ignores_global_rng(split):
    x = split.test_images
    torch.manual_seed(1)
    a = fixed_binarize(x, seed=5)
    torch.manual_seed(2)
    state = torch.get_rng_state()
    b = fixed_binarize(x, seed=5)
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is not consumed
    assert not torch.equal(a, fixed_binarize(x, seed=6))
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert abs(a.mean().item() - x.mean().item()) < 0.005


def test_iterate_minibatches_covers_everything_in_order():
    images = torch.arange(10.0).view(10, 1, 1, 1).expand(10, *IMAGE_SHAPE)
    batches = list(iterate_minibatches(images, 4, shuffle=False))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat(batches), images)


def test_iterate_minibatches_shuffle_is_reproducible_and_keeps_labels_paired():
    images = torch.arange(10.0).view(10, 1, 1, 1).expand(10, *IMAGE_SHAPE)
    labels = torch.arange(10)

    def order(seed):
        pairs = list(iterate_minibatches(images, 3, True, torch.Generator().manual_seed(seed), labels))
        for x, y in pairs:
            assert torch.equal(x[:, 0, 0, 0].long(), y)
        return torch.cat([y for _, y in pairs])

    assert torch.equal(order(0), order(0))
    assert not torch.equal(order(0), order(1))
    assert sorted(order(0).tolist()) == list(range(10))


def test_iterate_minibatches_rejects_bad_arguments():
    images = torch.zeros(4, *IMAGE_SHAPE)
    with pytest.raises(ValueError, match="batch_size"):
        iterate_minibatches(images, 0, shuffle=False)
    with pytest.raises(ValueError, match="4 images but 3 labels"):
        iterate_minibatches(images, 2, shuffle=False, labels=torch.zeros(3))


# ----------------------------------------------------------------------------- occlusion masks


@pytest.mark.parametrize("kind", MASK_KINDS)
def test_masks_are_binary_float_with_the_right_shape(kind):
    mask = occlusion_mask(kind, 5, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (5, 1, 28, 28) and mask.dtype == torch.float32
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert 0 < mask.mean() < 1  # something hidden, something observed


@pytest.mark.parametrize("kind, missing", [
    ("top", (slice(0, 14), slice(None))), ("bottom", (slice(14, 28), slice(None))),
    ("left", (slice(None), slice(0, 14))), ("right", (slice(None), slice(14, 28))),
    ("center", (slice(7, 21), slice(7, 21))),
])
def test_fixed_masks_hide_the_named_region(kind, missing):
    mask = occlusion_mask(kind, 2)
    expected = torch.ones(2, 1, 28, 28)
    expected[(..., *missing)] = 0
    assert torch.equal(mask, expected)


def test_center_square_size_can_be_changed():
    assert (occlusion_mask("center", 1, square_size=10) == 0).sum() == 100
    with pytest.raises(ValueError, match="square_size"):
        occlusion_mask("center", 1, square_size=30)


def test_squares_hide_contiguous_squares():
    one = occlusion_mask("squares", 20, generator=torch.Generator().manual_seed(0), n_squares=1)
    for m in one[:, 0] == 0:
        rows, cols = m.any(dim=1).nonzero().flatten(), m.any(dim=0).nonzero().flatten()
        assert m.sum() == 64 and len(rows) == len(cols) == 8
        assert rows[-1] - rows[0] == 7 and cols[-1] - cols[0] == 7  # one 8x8 block
    three = occlusion_mask("squares", 20, generator=torch.Generator().manual_seed(0))
    hidden = (three == 0).sum(dim=(1, 2, 3))
    assert (hidden >= 64).all() and (hidden <= 3 * 64).all()


def test_pixel_mask_fraction():
    mask = occlusion_mask("pixels", 64, generator=torch.Generator().manual_seed(0), missing_fraction=0.3)
    assert abs((mask == 0).float().mean().item() - 0.3) < 0.02
    assert occlusion_mask("pixels", 2, missing_fraction=0.0).min() == 1
    assert occlusion_mask("pixels", 2, missing_fraction=1.0).max() == 0


@pytest.mark.parametrize("kind", ["squares", "pixels"])
def test_random_masks_are_reproducible_with_a_generator(kind):
    def mask(seed):
        return occlusion_mask(kind, 8, generator=torch.Generator().manual_seed(seed))

    assert torch.equal(mask(0), mask(0)) and not torch.equal(mask(0), mask(1))


def test_unknown_mask_kind_lists_the_choices():
    with pytest.raises(ValueError, match="center.*pixels"):
        occlusion_mask("circle", 1)


def test_random_occlusion_mask_mixes_kinds_reproducibly():
    masks = random_occlusion_mask(200, generator=torch.Generator().manual_seed(0))
    assert masks.shape == (200, 1, 28, 28) and set(masks.unique().tolist()) == {0.0, 1.0}
    for kind in ("center", "top", "bottom", "left", "right"):
        matches = (masks == occlusion_mask(kind, 1)).all(dim=(1, 2, 3))
        assert matches.sum() > 5, kind
    again = random_occlusion_mask(200, generator=torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)


# ----------------------------------------------------------------------------- input checks


@pytest.mark.parametrize("x, message", [
    ([[0.0] * 784], "must be a torch.Tensor"),
    (torch.rand(4, 784), r"view\(-1, 1, 28, 28\)"),
    (torch.rand(4, 28, 28), r"unsqueeze\(1\)"),
    (torch.rand(4, 3, 28, 28), r"shape \(B, 1, 28, 28\), got \(4, 3, 28, 28\)"),
    (torch.rand(0, 1, 28, 28), "empty batch"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "float"),
    (torch.full((2, 1, 28, 28), float("nan")), "NaN or inf"),
    (torch.full((2, 1, 28, 28), float("inf")), "NaN or inf"),
    (torch.full((2, 1, 28, 28), 1.5), r"in \[0, 1\], got values in \[1.5, 1.5\]"),
    (torch.full((2, 1, 28, 28), -0.1), r"in \[0, 1\]"),
])
def test_check_images_explains_each_problem(x, message):
    with pytest.raises(ValueError, match=message):
        check_images(x)


def test_check_images_binary_and_name():
    check_images(torch.rand(2, 1, 28, 28))
    check_images(torch.bernoulli(torch.rand(2, 1, 28, 28)), binary=True)
    with pytest.raises(ValueError, match="batch has values other than 0 and 1.*fixed_binarize"):
        check_images(torch.full((2, 1, 28, 28), 0.5), binary=True, name="batch")


# ----------------------------------------------------------------------------- IDX files


def _idx_bytes(array, type_code=0x08):
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("array, type_code", [
    (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08),
    (np.array([-70000, 1, 2**30], dtype=np.int32), 0x0C),  # multi-byte values catch endianness bugs
    (np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2), 0x0D),
])
def test_read_idx_round_trip_raw_and_gzip(tmp_path, array, type_code):
    raw = _idx_bytes(array, type_code)
    (tmp_path / "a.idx").write_bytes(raw)
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(raw))
    for name in ("a.idx", "a.idx.gz"):
        out = read_idx(tmp_path / name)
        assert out.dtype == array.dtype and np.array_equal(out, array)


@pytest.mark.parametrize("corrupt, message", [
    (lambda raw: raw[:-5], "truncated or corrupt"),
    (lambda raw: raw[:6], "truncated IDX header"),
    (lambda raw: b"\x01\x02" + raw[2:], "not an IDX file"),
    (lambda raw: raw[:2] + b"\x42" + raw[3:], "not an IDX file"),  # unknown type code
    (lambda raw: b"", "not an IDX file"),
    (lambda raw: gzip.compress(raw)[:-20], "corrupt or truncated gzip"),
])
def test_read_idx_rejects_corrupt_files(tmp_path, corrupt, message):
    path = tmp_path / "bad.idx"
    path.write_bytes(corrupt(_idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))))
    with pytest.raises(ValueError, match=message):
        read_idx(path)


# ----------------------------------------------------------------------------- downloads


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local server with tiny MNIST-format files under /good/ and nothing under /missing/.
    Yields (base URL, checksums for the tiny files, list of requested paths, the arrays)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # urllib would send 127.0.0.1 through a proxy
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), rng.integers(0, 10, 20, dtype=np.uint8),
              rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), rng.integers(0, 10, 10, dtype=np.uint8)]
    served = tmp_path / "served" / "good"
    served.mkdir(parents=True)
    checksums = {}
    for name, array in zip(MNIST_FILES, arrays):
        payload = gzip.compress(_idx_bytes(array))
        (served / name).write_bytes(payload)
        checksums[name] = hashlib.md5(payload).hexdigest()
    handler = functools.partial(_CountingHandler, directory=str(tmp_path / "served"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", checksums, server.requests, arrays
    server.shutdown()
    server.server_close()



def test_download_then_reuse_cache_without_network(tmp_path, mirror):
    base, checksums, requests, _ = mirror
    cache = tmp_path / "cache"
    assert download_mnist(cache, [base + "good/"], timeout=5, checksums=checksums) == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(checksums)  # no temp files left
    assert len(requests) == 4
    download_mnist(cache, [base + "good/"], timeout=5, checksums=checksums)
    assert len(requests) == 4


def test_download_falls_back_to_the_next_mirror(tmp_path, mirror):
    base, checksums, requests, _ = mirror
    download_mnist(tmp_path / "cache", [base + "missing/", base + "good/"], timeout=5, checksums=checksums)
    assert requests[:2] == ["/missing/train-images-idx3-ubyte.gz", "/good/train-images-idx3-ubyte.gz"]
    assert len(requests) == 8


def test_checksum_mismatch_raises_and_leaves_no_partial_file(tmp_path, mirror):
    base, checksums, _, _ = mirror
    wrong = dict(checksums, **{"train-images-idx3-ubyte.gz": "0" * 32})
    cache = tmp_path / "cache"
    with pytest.raises(DataDownloadError, match="train-images-idx3-ubyte.gz(.|\n)*checksum mismatch"):
        download_mnist(cache, [base + "good/"], timeout=5, checksums=wrong)
    # the three verifiable files are in place; of the fourth, nothing (not even a temporary file)
    assert sorted(p.name for p in cache.iterdir()) == sorted(set(checksums) - {"train-images-idx3-ubyte.gz"})


def test_all_mirrors_failing_names_each_and_says_what_to_do(tmp_path, mirror, closed_port_url):
    base, checksums, _, _ = mirror
    offline = closed_port_url("mnist/")
    cache = tmp_path / "cache"
    with pytest.raises(DataDownloadError) as info:
        download_mnist(cache, [base + "missing/", offline], timeout=5, checksums=checksums)
    message = str(info.value)
    assert f"{base}missing/train-images-idx3-ubyte.gz: HTTP 404" in message
    assert f"{offline}train-images-idx3-ubyte.gz: offline or unreachable" in message
    assert str(cache) in message and "embedded" in message and "network" in message
    assert list(cache.iterdir()) == []


def test_a_foreign_cached_file_is_kept_and_named_until_a_verified_copy_replaces_it(tmp_path, mirror, closed_port_url):
    base, checksums, requests, _ = mirror
    cache = tmp_path / "cache"
    cache.mkdir()
    cached = cache / "t10k-labels-idx1-ubyte.gz"
    cached.write_bytes(b"my own copy")
    with pytest.raises(DataDownloadError) as info:
        download_mnist(cache, [closed_port_url("mnist/")], timeout=5, checksums=checksums)
    message = str(info.value)
    assert cached.read_bytes() == b"my own copy"  # never deleted behind the user's back
    assert "is there but its md5 is" in message and "No file you placed there was deleted" in message
    assert all(name in message for name in checksums)  # every missing file is listed, not just the first
    with pytest.warns(UserWarning, match="failed its checksum and was replaced"):
        download_mnist(cache, [base + "good/"], timeout=5, checksums=checksums)
    assert "/good/t10k-labels-idx1-ubyte.gz" in requests
    assert hashlib.md5(cached.read_bytes()).hexdigest() == checksums[cached.name]


def test_cache_dir_from_argument_environment_or_repo(tmp_path, monkeypatch, mirror):
    base, checksums, _, _ = mirror
    monkeypatch.delenv(data.CACHE_DIR_ENV, raising=False)
    assert paths.download_dir(None) == paths.DEFAULT_DOWNLOAD_DIR
    assert paths.IN_SOURCE_TREE and paths.DEFAULT_DOWNLOAD_DIR == paths.REPO_ROOT / "data" / "mnist"  # a clone
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "from_env"))
    assert download_mnist(mirrors=[base + "good/"], timeout=5, checksums=checksums) == tmp_path / "from_env"
    assert paths.download_dir(tmp_path / "arg") == tmp_path / "arg"


def test_load_full_mnist_from_served_files(tmp_path, mirror):
    base, checksums, _, arrays = mirror
    split = load_full_mnist(tmp_path / "cache", [base + "good/"], checksums)
    assert split.source == "full"
    assert split.train_images.shape == (20, *IMAGE_SHAPE) and split.test_images.shape == (10, *IMAGE_SHAPE)
    assert split.train_images.dtype == torch.float32 and split.train_labels.dtype == torch.int64
    assert torch.allclose(split.test_images[:, 0] * 255, torch.from_numpy(arrays[2]).float())
    assert torch.equal(split.train_labels, torch.from_numpy(arrays[1]).long())
    check_images(split.train_images)
