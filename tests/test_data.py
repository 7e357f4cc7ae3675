"""Tests for refimpl.data: readers, integrity checks, search order, downloads (no network), splits."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request

import numpy as np
import pytest

from refimpl import data
from refimpl.data import (
    CorruptDatasetError,
    DatasetNotFoundError,
    channel_stats,
    dataset_search_paths,
    download_file,
    load_dataset,
    parse_idx,
    read_cifar_batch,
    read_idx,
    stratified_split,
)
from tests.conftest import require_dataset

IDX_FILES = data._IDX_FILES


# --- helpers: tiny fake files ----------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX (magic 00 00 08 ndim, big-endian sizes, data)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def fake_idx_set(rng, n_train=30, n_test=12, side=4):
    """Payloads of a tiny MNIST-style set: images (N, side, side) and labels 0..9."""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, side, side), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, side, side), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    return arrays, {name: idx_bytes(a) for name, a in arrays.items()}


def sha256(payload: bytes) -> tuple[str, str]:
    return ("sha256", hashlib.sha256(payload).hexdigest())


def write_idx_dir(directory, payloads, *, gz=()):
    """Write the payloads into ``directory``; the files named in ``gz`` are gzipped."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, payload in payloads.items():
        if name in gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (directory / name).write_bytes(payload)
    return directory


@pytest.fixture
def fake_mnist(rng, monkeypatch):
    """A tiny fake MNIST whose payload digests are registered in CHECKSUMS (patched for this test)."""
    arrays, payloads = fake_idx_set(rng)
    monkeypatch.setitem(data.CHECKSUMS, "mnist", {name: sha256(p) for name, p in payloads.items()})
    return arrays, payloads


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No REFIMPL_DATA, a fresh home: only the places a test creates exist."""
    monkeypatch.delenv("REFIMPL_DATA", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return tmp_path


class FakeResponse(io.BytesIO):
    """What ``urlopen`` returns: a readable context manager with headers."""

    def __init__(self, payload: bytes):
        super().__init__(payload)
        self.headers = {"Content-Length": str(len(payload))}


def fake_opener(files: dict[str, bytes], calls: list[str] | None = None):
    """An ``urlopen`` stand-in serving ``files`` by URL; anything else is a network error."""

    def opener(url, timeout=None):
        if calls is not None:
            calls.append(url)
        if url not in files:
            raise urllib.error.URLError(f"no route to {url} (test: offline)")
        return FakeResponse(files[url])

    return opener


# --- argument validation -----------------------------------------------------------------------------


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match=r"unknown dataset name 'imagenet'.*digits.*fashion-mnist.*cifar10"):
        load_dataset("imagenet")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dtype": np.int32}, TypeError, "dtype must be a floating-point dtype"),
        ({"val_fraction": 1.0}, ValueError, "val_fraction"),
        ({"val_fraction": -0.1}, ValueError, "val_fraction"),
        ({"seed": -1}, ValueError, "seed"),
        ({"split": 0}, ValueError, "size must be >= 1"),
        ({"split": 1797}, ValueError, "both parts non-empty"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_dataset("digits", **kwargs)


def test_split_rejected_for_datasets_with_official_split():
    with pytest.raises(ValueError, match="split= applies only to digits and synthetic"):
        load_dataset("mnist", split=100, download=False)


def test_name_is_case_and_underscore_insensitive():
    assert load_dataset("SYNTHETIC").name == "synthetic"
    assert dataset_search_paths("Fashion_MNIST")[-1].name == "fashion-mnist"


# --- digits and synthetic ----------------------------------------------------------------------------


def test_digits_documented_split_and_statistics():
    ds = load_dataset("digits")
    assert ds.x_train.shape == (1437, 1, 8, 8) and ds.x_test.shape == (360, 1, 8, 8)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10 and ds.source == "sklearn"
    # The numbers in the module docstring's table.
    assert ds.mean == pytest.approx((0.3055,), abs=5e-5) and ds.std == pytest.approx((0.3761,), abs=5e-5)
    # Standardised with its own training statistics: mean 0, std 1 on the training split.
    assert abs(float(ds.x_train.mean(dtype=np.float64))) < 1e-6
    assert float(ds.x_train.std(dtype=np.float64)) == pytest.approx(1.0, abs=1e-5)
    # Stratified: every class has 35 to 37 of the 360 test images (1797 images, ~180 per class).
    assert np.bincount(ds.y_test, minlength=10).min() >= 35
    assert np.bincount(ds.y_test, minlength=10).max() <= 37


def test_digits_unnormalised_pixels_are_grey_levels_over_16():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits", normalize=False, dtype=np.float64)
    assert ds.x_train.dtype == np.float64 and not ds.normalized
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    # Every image is one of sklearn's, divided by 16, with its own label.
    bunch = load_digits()
    lookup = {img.tobytes(): t for img, t in zip(bunch.images / 16.0, bunch.target, strict=True)}
    for img, label in zip(ds.x_test[:20, 0], ds.y_test[:20], strict=True):
        assert lookup[img.tobytes()] == label


def test_split_and_val_split_are_deterministic_and_seeded():
    a = load_dataset("digits", val_fraction=0.2, seed=7)
    b = load_dataset("digits", val_fraction=0.2, seed=7)
    c = load_dataset("digits", val_fraction=0.2, seed=8)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.x_val, c.x_val)
    np.testing.assert_array_equal(a.x_test, c.x_test)  # the test split does not depend on seed
    assert len(a.y_val) == round(0.2 * 1437) and len(a.y_train) + len(a.y_val) == 1437
    # The normalisation constants do not move with the validation split.
    assert a.mean == load_dataset("digits").mean


def test_val_split_partitions_the_training_split():
    full = load_dataset("digits", dtype=np.float64)
    part = load_dataset("digits", dtype=np.float64, val_fraction=0.25, seed=1)
    rows = lambda x: sorted(r.tobytes() for r in x.reshape(len(x), -1))  # noqa: E731
    assert rows(np.concatenate([part.x_train, part.x_val])) == rows(full.x_train)


def test_synthetic_is_fixed_small_and_balanced():
    ds = load_dataset("synthetic", dtype=np.float64)
    again = load_dataset("synthetic", dtype=np.float64, seed=99)  # seed only drives the val split
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    assert ds.x_train.shape == (480, 1, 8, 8) and ds.x_test.shape == (160, 1, 8, 8)
    assert ds.num_classes == 4 and np.bincount(ds.y_test).tolist() == [40, 40, 40, 40]
    assert ds.mean == pytest.approx((0.1540,), abs=5e-5) and ds.std == pytest.approx((0.1627,), abs=5e-5)


def test_synthetic_is_learnable_by_nearest_class_mean():
    ds = load_dataset("synthetic", dtype=np.float64)
    x_tr, x_te = ds.x_train.reshape(len(ds.x_train), -1), ds.x_test.reshape(len(ds.x_test), -1)
    centroids = np.stack([x_tr[ds.y_train == k].mean(0) for k in range(ds.num_classes)])
    predicted = ((x_te[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (predicted == ds.y_test).mean() > 0.9


# --- stratified_split and channel_stats --------------------------------------------------------------


def test_stratified_split_counts_by_largest_remainder(rng):
    y = np.repeat([0, 1, 2], [50, 30, 20])
    kept, held = stratified_split(y, 15, rng)
    assert len(held) == 15 and len(np.intersect1d(kept, held)) == 0
    np.testing.assert_array_equal(np.union1d(kept, held), np.arange(100))
    # Quotas 7.5, 4.5, 3.0 -> floors 7, 4, 3 and one leftover unit, to the lower class on the 0.5 tie.
    assert np.bincount(y[held]).tolist() == [8, 4, 3]
    assert np.all(np.diff(held) > 0) and np.all(np.diff(kept) > 0)


def test_stratified_split_rejects_bad_arguments(rng):
    y = np.arange(10) % 2
    with pytest.raises(ValueError, match="size must be an integer count or a fraction"):
        stratified_split(y, 1.5, rng)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        stratified_split(y, 3, 0)


def test_channel_stats_match_numpy(rng):
    raw = rng.integers(0, 256, (7, 3, 5, 4), dtype=np.uint8)
    mean, std = channel_stats(raw, 255)
    x = raw / 255.0
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-12)


# --- IDX ---------------------------------------------------------------------------------------------


def test_read_idx_plain_and_gzip(tmp_path, rng):
    images = rng.integers(0, 256, (5, 3, 2), dtype=np.uint8)
    (tmp_path / "plain").write_bytes(idx_bytes(images))
    (tmp_path / "packed.gz").write_bytes(gzip.compress(idx_bytes(images)))
    np.testing.assert_array_equal(read_idx(tmp_path / "plain"), images)
    np.testing.assert_array_equal(read_idx(tmp_path / "packed.gz"), images)


def test_parse_idx_other_element_types():
    values = np.array([[1, -2], [300, 4]], dtype=">i4")
    payload = bytes([0, 0, 0x0C, 2]) + struct.pack(">2I", 2, 2) + values.tobytes()
    np.testing.assert_array_equal(parse_idx(payload), values)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda p: p[:-1], r"truncated: header says shape \(3, 2, 2\) \(12 bytes\), file holds 11"),
        (lambda p: p + b"\0", "IDX payload has trailing bytes"),
        (lambda p: b"\x01" + p[1:], "bad IDX magic number 01000803"),
        (lambda p: p[:2] + b"\x07" + p[3:], "bad IDX magic number 00000703"),
        (lambda p: p[:10], "IDX header truncated"),
        (lambda p: b"", r"bad IDX magic number \(empty\)"),
    ],
)
def test_parse_idx_rejects_damaged_files(mutate, match):
    payload = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 2, 2))
    with pytest.raises(CorruptDatasetError, match=match):
        parse_idx(mutate(payload), "fake")


def test_truncated_gzip_is_reported(tmp_path):
    packed = gzip.compress(idx_bytes(np.zeros((4, 4), np.uint8)))
    (tmp_path / "cut.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(CorruptDatasetError, match="damaged gzip stream"):
        read_idx(tmp_path / "cut.gz")


def test_load_fake_mnist_gzip_and_plain(tmp_path, fake_mnist, isolated):
    arrays, payloads = fake_mnist
    gz = {"train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}
    directory = write_idx_dir(tmp_path / "m", payloads, gz=gz)
    ds = load_dataset("mnist", root=directory, download=False, normalize=False, dtype=np.float64)
    np.testing.assert_array_equal(ds.x_train[:, 0], arrays["train-images-idx3-ubyte"] / 255.0)
    np.testing.assert_array_equal(ds.x_test[:, 0], arrays["t10k-images-idx3-ubyte"] / 255.0)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.source == str(directory) and ds.input_shape == (1, 4, 4)
    expected_mean = arrays["train-images-idx3-ubyte"].mean() / 255.0
    assert ds.mean == pytest.approx((expected_mean,), rel=1e-12)


def test_checksum_mismatch_is_detected_and_never_used(tmp_path, fake_mnist, isolated):
    _, payloads = fake_mnist
    directory = write_idx_dir(tmp_path / "m", payloads)
    tampered = bytearray(payloads["t10k-images-idx3-ubyte"])
    tampered[-1] ^= 0xFF  # one flipped pixel: same size, valid header, wrong digest
    (directory / "t10k-images-idx3-ubyte").write_bytes(bytes(tampered))
    with pytest.raises(CorruptDatasetError, match=r"checksum mismatch for .*t10k-images-idx3-ubyte: sha256"):
        load_dataset("mnist", root=directory, download=False)


def test_truncated_file_with_matching_digest_is_still_rejected(tmp_path, rng, monkeypatch, isolated):
    # Even if a table entry were wrong, the IDX length check catches a payload cut short.
    _, payloads = fake_idx_set(rng)
    payloads["train-images-idx3-ubyte"] = payloads["train-images-idx3-ubyte"][:-5]
    monkeypatch.setitem(data.CHECKSUMS, "mnist", {n: sha256(p) for n, p in payloads.items()})
    directory = write_idx_dir(tmp_path / "m", payloads)
    with pytest.raises(CorruptDatasetError, match="IDX payload truncated"):
        load_dataset("mnist", root=directory, download=False)


def test_mismatched_image_and_label_counts(tmp_path, rng, monkeypatch, isolated):
    _, payloads = fake_idx_set(rng)
    payloads["train-labels-idx1-ubyte"] = idx_bytes(np.zeros(29, np.uint8))
    monkeypatch.setitem(data.CHECKSUMS, "mnist", {n: sha256(p) for n, p in payloads.items()})
    with pytest.raises(CorruptDatasetError, match="do not match"):
        load_dataset("mnist", root=write_idx_dir(tmp_path / "m", payloads), download=False)


# --- search order ------------------------------------------------------------------------------------


def test_search_paths_order(tmp_path, monkeypatch):
    monkeypatch.setenv("REFIMPL_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert dataset_search_paths("mnist", root=tmp_path / "r") == [
        tmp_path / "r",
        tmp_path / "r" / "mnist",
        tmp_path / "env" / "mnist",
        tmp_path / "home" / ".cache" / "refimpl" / "mnist",
        data.Path("/usr/share/datasets/mnist"),
    ]


def test_search_order_root_then_env_then_cache(tmp_path, rng, monkeypatch, isolated):
    # Three copies whose first training label differs, all with registered digests.
    places = {
        "root": tmp_path / "explicit",
        "env": tmp_path / "env" / "mnist",
        "cache": tmp_path / "home" / ".cache" / "refimpl" / "mnist",
    }
    for marker, directory in enumerate(places.values()):
        arrays, payloads = fake_idx_set(rng)
        arrays["train-labels-idx1-ubyte"][0] = marker
        payloads["train-labels-idx1-ubyte"] = idx_bytes(arrays["train-labels-idx1-ubyte"])
        write_idx_dir(directory, payloads)
    # The three copies differ, so no single digest table fits them all: this test is about the order only.
    monkeypatch.setattr(data, "_verify", lambda payload, name, file, where: None)
    monkeypatch.setenv("REFIMPL_DATA", str(tmp_path / "env"))

    def first_label(**kw):
        return int(load_dataset("mnist", download=False, **kw).y_train[0])

    assert first_label(root=places["root"]) == 0
    assert first_label() == 1  # $REFIMPL_DATA before the cache
    monkeypatch.delenv("REFIMPL_DATA")
    assert first_label() == 2
    # root may also be the parent of <name>/
    assert load_dataset("mnist", root=tmp_path / "env", download=False).source == str(places["env"])


def test_incomplete_directory_is_skipped(tmp_path, fake_mnist, isolated, monkeypatch):
    _, payloads = fake_mnist
    partial = write_idx_dir(tmp_path / "partial", {k: v for k, v in payloads.items() if "t10k" not in k})
    complete = write_idx_dir(tmp_path / "env" / "mnist", payloads)
    monkeypatch.setenv("REFIMPL_DATA", str(tmp_path / "env"))
    assert load_dataset("mnist", root=partial, download=False).source == str(complete)


def test_not_found_lists_every_path_and_how_to_fix(tmp_path, isolated, monkeypatch):
    monkeypatch.setenv("REFIMPL_DATA", str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("mnist", root=tmp_path / "nowhere", download=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for path in dataset_search_paths("mnist", root=tmp_path / "nowhere"):
        assert f"  - {path}\n" in message
    assert "REFIMPL_DATA" in message and "root=" in message and "download=False" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/<file>.gz" in message


# --- downloads (no network: a fake opener) -----------------------------------------------------------


def test_download_file_verifies_then_renames(tmp_path):
    payload = b"x" * 3_000_000  # several 1 MiB reads
    dest = tmp_path / "d" / "file.bin"
    opener = fake_opener({"https://m/file.bin": payload})
    download_file("https://m/file.bin", dest, digest=sha256(payload), progress=False, opener=opener)
    assert dest.read_bytes() == payload
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]  # no temporary left behind


def test_download_file_checksum_mismatch_leaves_nothing(tmp_path):
    dest = tmp_path / "file.bin"
    opener = fake_opener({"https://m/file.bin": b"tampered"})
    with pytest.raises(CorruptDatasetError, match="checksum mismatch for https://m/file.bin: md5"):
        download_file("https://m/file.bin", dest, digest=("md5", "0" * 32), progress=False, opener=opener)
    assert list(tmp_path.iterdir()) == []


def test_download_file_network_error_leaves_nothing(tmp_path):
    with pytest.raises(urllib.error.URLError):
        download_file("https://m/x", tmp_path / "x", digest=("md5", "0" * 32), progress=False,
                      opener=fake_opener({}))
    assert list(tmp_path.iterdir()) == []


def test_load_downloads_into_cache_with_mirror_fallback(rng, monkeypatch, isolated):
    arrays, payloads = fake_idx_set(rng)
    archives = {f"{name}.gz": gzip.compress(p) for name, p in payloads.items()}
    table = {name: sha256(p) for name, p in payloads.items()} | {n: sha256(a) for n, a in archives.items()}
    monkeypatch.setitem(data.CHECKSUMS, "mnist", table)
    monkeypatch.setitem(data.MIRRORS, "mnist", ("https://dead.example/", "https://alive.example/"))
    calls: list[str] = []
    served = {f"https://alive.example/{n}": a for n, a in archives.items()}
    monkeypatch.setattr(urllib.request, "urlopen", fake_opener(served, calls))

    ds = load_dataset("mnist", progress=False, normalize=False)
    cache = isolated / "home" / ".cache" / "refimpl" / "mnist"
    assert ds.source == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(archives)
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    assert calls[:2] == ["https://dead.example/train-images-idx3-ubyte.gz",
                         "https://alive.example/train-images-idx3-ubyte.gz"]
    # A second load finds the cache: no network at all.
    calls.clear()
    load_dataset("mnist", progress=False)
    assert calls == []


def test_offline_download_fails_with_clear_error(monkeypatch, isolated):
    monkeypatch.setattr(data, "_SYSTEM_DATA_DIR", isolated / "system")  # hide Debian's copy
    calls: list[str] = []
    monkeypatch.setattr(urllib.request, "urlopen", fake_opener({}, calls))
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", root=isolated / "nowhere", progress=False)
    message = str(info.value)
    assert "Download failed:" in message and "test: offline" in message
    assert "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/train-images-idx3-ubyte.gz" in message
    assert "apt install dataset-fashion-mnist" in message
    assert calls  # it did try
    cache = isolated / "home" / ".cache" / "refimpl" / "fashion-mnist"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_corrupt_download_is_discarded(rng, monkeypatch, isolated):
    _, payloads = fake_idx_set(rng)
    archives = {f"{name}.gz": gzip.compress(p) for name, p in payloads.items()}
    table = {n: ("sha256", "0" * 64) for n in archives}  # nothing the mirror serves can match
    monkeypatch.setitem(data.CHECKSUMS, "mnist", table)
    monkeypatch.setitem(data.MIRRORS, "mnist", ("https://m.example/",))
    served = {f"https://m.example/{n}": a for n, a in archives.items()}
    monkeypatch.setattr(urllib.request, "urlopen", fake_opener(served))
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch"):
        load_dataset("mnist", progress=False)
    assert list((isolated / "home" / ".cache" / "refimpl" / "mnist").iterdir()) == []


# --- CIFAR-10 ----------------------------------------------------------------------------------------


def cifar_batch(rng, n):
    """A fake batch in the original layout: dict with bytes keys, uint8 (n, 3072) data, list labels."""
    return {
        b"batch_label": b"fake",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"img.png"] * n,
    }


@pytest.fixture
def fake_cifar(rng, monkeypatch):
    """Pickled fake batches (5 train of 4 images, a test batch of 3) with registered MD5 digests."""
    batches = {f"data_batch_{i}": cifar_batch(rng, 4) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(rng, 3)
    blobs = {name: pickle.dumps(b, protocol=2) for name, b in batches.items()}
    table = {name: ("md5", hashlib.md5(blob).hexdigest()) for name, blob in blobs.items()}
    monkeypatch.setitem(data.CHECKSUMS, "cifar10", table)
    return batches, blobs


def test_read_cifar_batch_layout(tmp_path, rng):
    batch = cifar_batch(rng, 2)
    (tmp_path / "b").write_bytes(pickle.dumps(batch, protocol=2))
    images, labels = read_cifar_batch(tmp_path / "b")
    assert images.shape == (2, 3, 32, 32) and images.dtype == np.uint8
    # Channel-major rows: the green plane of image 1 is data[1, 1024:2048].
    np.testing.assert_array_equal(images[1, 1].ravel(), batch[b"data"][1, 1024:2048])
    assert labels.tolist() == batch[b"labels"]


def test_load_fake_cifar(tmp_path, fake_cifar, isolated):
    batches, blobs = fake_cifar
    directory = tmp_path / "c" / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    for name, blob in blobs.items():
        (directory / name).write_bytes(blob)
    ds = load_dataset("cifar10", root=tmp_path / "c", download=False, normalize=False)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (3, 3, 32, 32)
    assert ds.input_shape == (3, 32, 32) and len(ds.mean) == 3
    assert ds.y_train[4:8].tolist() == batches["data_batch_2"][b"labels"]
    np.testing.assert_allclose(ds.x_test[2, 2].ravel(), batches["test_batch"][b"data"][2, 2048:] / 255.0,
                               rtol=1e-6)


def test_cifar_checksum_checked_before_unpickling(tmp_path, fake_cifar, isolated):
    _, blobs = fake_cifar
    directory = tmp_path / "c"
    directory.mkdir()
    for name, blob in blobs.items():
        (directory / name).write_bytes(blob)
    (directory / "test_batch").write_bytes(blobs["data_batch_1"])  # a valid pickle, but not this file
    with pytest.raises(CorruptDatasetError, match="checksum mismatch for .*test_batch: md5"):
        load_dataset("cifar10", root=directory, download=False)


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())  # harmless here, but any callable could stand in its place


def test_cifar_unpickler_refuses_arbitrary_globals(tmp_path):
    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": _Payload(), b"labels": []}, protocol=2))
    with pytest.raises(CorruptDatasetError, match=r"global posix\.getcwd is not allowed|global os\.getcwd"):
        read_cifar_batch(tmp_path / "evil")


def test_cifar_download_extracts_only_known_members(fake_cifar, monkeypatch, isolated):
    _, blobs = fake_cifar
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, blob in [*blobs.items(), ("../escape", b"x")]:
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    archive = buffer.getvalue()
    monkeypatch.setitem(data.CHECKSUMS["cifar10"], "cifar-10-python.tar.gz", sha256(archive))
    monkeypatch.setitem(data.MIRRORS, "cifar10", ("https://c.example/",))
    monkeypatch.setattr(urllib.request, "urlopen",
                        fake_opener({"https://c.example/cifar-10-python.tar.gz": archive}))
    ds = load_dataset("cifar10", progress=False)
    cache = isolated / "home" / ".cache" / "refimpl" / "cifar10"
    assert ds.source == str(cache) and ds.x_train.shape == (20, 3, 32, 32)
    assert sorted(p.name for p in (cache / "cifar-10-batches-py").iterdir()) == sorted(blobs)
    assert not (cache / "escape").exists()


# --- npz: your own data ------------------------------------------------------------------------------


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def npz_arrays(rng, *, side=6):
    """A small valid NHW uint8 set: 30 train / 10 test images, labels 0..2 (3 classes)."""
    return {
        "x_train": rng.integers(0, 256, (30, side, side), dtype=np.uint8),
        "y_train": np.arange(30) % 3,
        "x_test": rng.integers(0, 256, (10, side, side), dtype=np.uint8),
        "y_test": np.arange(10) % 3,
    }


def test_npz_round_trip_nhw_uint8(tmp_path, rng):
    arrays = npz_arrays(rng)
    path = write_npz(tmp_path / "mine.npz", **arrays)
    raw = load_dataset("npz", path=path, normalize=False)
    assert raw.name == "npz" and raw.source == str(path) and raw.num_classes == 3
    assert raw.input_shape == (1, 6, 6) and raw.x_train.dtype == np.float32 and raw.y_train.dtype == np.int64
    # NHW gets a channel axis; bytes are divided by 255 like every other byte dataset.
    for x, stored in ((raw.x_train, arrays["x_train"]), (raw.x_test, arrays["x_test"])):
        np.testing.assert_array_equal(x, stored[:, None].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(raw.y_train, arrays["y_train"])
    np.testing.assert_array_equal(raw.y_test, arrays["y_test"])
    ds = load_dataset("npz", path=path, dtype=np.float64)
    pixels = arrays["x_train"] / 255.0
    assert ds.mean == pytest.approx((pixels.mean(),), rel=1e-12)
    assert ds.std == pytest.approx((pixels.std(),), rel=1e-12)
    np.testing.assert_allclose(ds.x_test[:, 0], (arrays["x_test"] / 255.0 - pixels.mean()) / pixels.std(),
                               rtol=1e-12)


def test_npz_round_trip_nchw_float32(tmp_path, rng):
    x_train = rng.uniform(-1.0, 2.0, (24, 3, 5, 5)).astype(np.float32)
    x_test = rng.uniform(-1.0, 2.0, (8, 3, 5, 5)).astype(np.float32)
    y_train = np.arange(24) % 4
    y_test = np.array([0, 1, 2, 3, 4, 0, 1, 2])  # class 4 occurs in the test split only
    path = write_npz(tmp_path / "mine.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    raw = load_dataset("npz", path=path, normalize=False)
    assert raw.num_classes == 5 and raw.input_shape == (3, 5, 5)
    np.testing.assert_array_equal(raw.x_train, x_train)  # floating images are used as they are
    np.testing.assert_array_equal(raw.x_test, x_test)
    ds = load_dataset("npz", path=path, dtype=np.float64, val_fraction=0.25, seed=3)
    mean = x_train.astype(np.float64).mean(axis=(0, 2, 3))
    std = x_train.astype(np.float64).std(axis=(0, 2, 3))
    np.testing.assert_allclose(ds.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(ds.std, std, rtol=1e-12)
    expected = (x_test.astype(np.float64) - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(ds.x_test, expected, rtol=1e-12, atol=1e-12)
    # val_fraction as for the other sets: stratified (one of the six images of each class), seeded
    assert len(ds.y_val) == 6 and len(ds.y_train) == 18 and np.bincount(ds.y_val).tolist() == [2, 2, 1, 1]
    again = load_dataset("npz", path=path, dtype=np.float64, val_fraction=0.25, seed=3)
    np.testing.assert_array_equal(ds.x_val, again.x_val)


def test_npz_optional_num_classes(tmp_path, rng):
    arrays = npz_arrays(rng)
    assert load_dataset("npz", path=write_npz(tmp_path / "a.npz", **arrays, num_classes=7)).num_classes == 7
    with pytest.raises(CorruptDatasetError, match=r"num_classes = 2 but the labels go up to 2"):
        load_dataset("npz", path=write_npz(tmp_path / "b.npz", **arrays, num_classes=2))
    with pytest.raises(CorruptDatasetError, match=r"num_classes must be a scalar integer, got int64 of"):
        load_dataset("npz", path=write_npz(tmp_path / "c.npz", **arrays, num_classes=[7]))


def _bad_npz_cases():
    def change(**updates):
        def apply(arrays):
            arrays.update(updates)
            return arrays
        return apply

    def drop(key):
        def apply(arrays):
            del arrays[key]
            return arrays
        return apply

    rng = np.random.default_rng(7)
    floats = rng.uniform(0, 1, (30, 6, 6))
    return [
        (drop("y_test"), r"no array 'y_test' \(keys found: \['x_test', 'x_train', 'y_train'\]\)"),
        (change(labels=np.zeros(3)), r"unexpected array 'labels' \(keys found: .*\); an npz dataset holds"),
        (change(x_train=np.zeros((30, 36), np.uint8)),
         r"x_train must have shape \(N, H, W\) or \(N, C, H, W\) with no empty axis, got \(30, 36\)"),
        (change(x_test=np.zeros((10, 1, 1, 6, 6), np.uint8)),
         r"x_test must have shape .* got \(10, 1, 1, 6, 6\)"),
        (change(x_train=np.zeros((0, 6, 6), np.uint8), y_train=np.zeros(0, int)), r"x_train must have shape"),
        (change(x_test=np.zeros((10, 7, 7), np.uint8)),
         r"train images are \(C, H, W\) = \(1, 6, 6\) but test images \(1, 7, 7\)"),
        (change(x_train=np.zeros((30, 2, 6, 6), np.uint8)), r"train images are \(C, H, W\) = \(2, 6, 6\)"),
        (change(y_train=np.arange(29) % 3), r"x_train holds 30 images but y_train 29 labels"),
        (change(y_train=(np.arange(30) % 3).astype(float)),
         r"y_train must be a 1-D array of integer labels, got float64 of shape \(30,\)"),
        (change(y_test=np.zeros((10, 1), int)), r"y_test must be a 1-D array of integer labels"),
        (change(y_test=np.arange(10) - 1), r"y_test holds negative labels \(min -1\)"),
        (change(x_train=np.where(floats > 0.5, np.nan, floats), x_test=np.zeros((10, 6, 6))),
         r"x_train holds NaN or infinite values"),
        (change(x_train=floats, x_test=np.full((10, 6, 6), np.inf)), r"x_test holds NaN or infinite values"),
        (change(x_train=np.zeros((30, 6, 6), np.int16)),
         r"x_train must be uint8 \(0..255\) or floating, got int16"),
        (change(x_test=np.zeros((10, 6, 6), np.float32)),
         r"x_train is uint8 but x_test float32; both splits must be stored alike"),
        (change(x_train=np.zeros((30, 6, 8), np.uint8), x_test=np.zeros((10, 6, 8), np.uint8)),
         r"images must be square \(the models take one input_size\), got H x W = 6 x 8"),
        (change(y_train=np.array([{}] * 30, dtype=object)),  # allow_pickle=False: never unpickled
         r"cannot read 'y_train' \(Object arrays cannot be loaded"),
    ]


@pytest.mark.parametrize(("mutate", "match"), _bad_npz_cases())
def test_npz_rejects_bad_contents_with_one_clear_error(tmp_path, rng, mutate, match):
    path = write_npz(tmp_path / "bad.npz", **mutate(npz_arrays(rng)))
    with pytest.raises(CorruptDatasetError, match=match) as info:
        load_dataset("npz", path=path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_npz_file_problems(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("an npz dataset must never be downloaded")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(DatasetNotFoundError, match=r"npz dataset file .*missing\.npz does not exist"):
        load_dataset("npz", path=tmp_path / "missing.npz", download=True)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip archive")
    with pytest.raises(CorruptDatasetError, match=r"junk\.npz: not a readable \.npz file"):
        load_dataset("npz", path=junk)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(CorruptDatasetError, match=r"holds a single array, not the \.npz archive"):
        load_dataset("npz", path=single)


def test_npz_arguments(tmp_path, rng):
    path = write_npz(tmp_path / "mine.npz", **npz_arrays(rng))
    assert "npz" in data.DATASETS
    with pytest.raises(ValueError, match=r"path= \(the \.npz file\) is required for name='npz'"):
        load_dataset("npz")
    with pytest.raises(ValueError, match=r"path= applies only to name='npz'.*not to 'digits'"):
        load_dataset("digits", path=path)
    with pytest.raises(ValueError, match=r"root= applies to the datasets found by name"):
        load_dataset("npz", tmp_path, path=path)
    with pytest.raises(ValueError, match="split= applies only to digits and synthetic"):
        load_dataset("npz", path=path, split=5)
    with pytest.raises(ValueError, match=r"'npz' is read from its path= file, not searched for"):
        dataset_search_paths("npz")


def test_constant_channel_cannot_be_standardised(tmp_path, rng):
    arrays = npz_arrays(rng)
    arrays["x_train"][:] = 7
    path = write_npz(tmp_path / "flat.npz", **arrays)
    with pytest.raises(CorruptDatasetError, match=r"npz: channel 0 of the training images is constant \(7\)"):
        load_dataset("npz", path=path)
    assert load_dataset("npz", path=path, normalize=False).std == (0.0,)


def test_npz_through_a_config_file_with_a_relative_path(tmp_path, rng):
    from refimpl.config import load_config, to_toml

    arrays = npz_arrays(rng, side=8)
    (tmp_path / "data").mkdir()
    (tmp_path / "configs").mkdir()
    write_npz(tmp_path / "data" / "mine.npz", **arrays)
    config_file = tmp_path / "configs" / "exp.toml"
    config_file.write_text('method = "none"\n[data]\nname = "npz"\npath = "../data/mine.npz"\n')
    config = load_config(config_file)
    assert config.data.path == str((tmp_path / "data" / "mine.npz").resolve())  # not the working directory
    d = config.data
    ds = load_dataset(d.name, d.root, path=d.path, dtype=np.dtype(d.dtype), val_fraction=d.val_fraction)
    assert ds.name == "npz" and ds.input_shape == (1, 8, 8) and ds.num_classes == 3
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"])
    saved = tmp_path / "saved.toml"
    saved.write_text(to_toml(config))
    assert load_config(saved) == config  # the written path is absolute: it reloads from anywhere


def test_npz_runs_an_experiment(tmp_path, rng):
    from refimpl.config import load_config
    from refimpl.engine import run_experiment

    path = write_npz(tmp_path / "mine.npz", **npz_arrays(rng, side=8))
    config = load_config(None, {"method": "none", "data.name": "npz", "data.path": str(path),
                                "pretrain.epochs": 1, "threads": 1})
    report = run_experiment(config, tmp_path / "run", progress=False, echo=None)
    assert report["dataset"] == "npz"


# --- the real Fashion-MNIST (Debian's dataset-fashion-mnist, or anywhere on the search path) -----------


@pytest.mark.data
def test_real_fashion_mnist():
    ds = require_dataset("fashion-mnist")
    assert ds.x_train.shape == (60000, 1, 28, 28) and ds.x_test.shape == (10000, 1, 28, 28)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.y_train.min() == 0 and ds.y_train.max() == 9 and ds.y_test.max() == 9
    assert np.bincount(ds.y_train).tolist() == [6000] * 10  # Fashion-MNIST is balanced
    assert ds.mean == pytest.approx((0.2860,), abs=5e-5) and ds.std == pytest.approx((0.3530,), abs=5e-5)
