r"""Datasets: search paths, checksum-verified files, downloads and a uniform NCHW layout.

:func:`load_dataset` returns every dataset in the same shape: a frozen :class:`Dataset` holding float
images ``(N, C, H, W)`` and int64 labels ``(N,)`` for a train and a test split (and a validation split on
request), plus the per-channel statistics used to normalise them.

==================  ===========  ==========  ===========  ================================================
name                input shape  classes     train/test   files
==================  ===========  ==========  ===========  ================================================
``digits``          1 × 8 × 8    10          1437 / 360   bundled with scikit-learn (no download)
``mnist``           1 × 28 × 28  10          60000/10000  IDX: ``train-images-idx3-ubyte[.gz]`` ...
``fashion-mnist``   1 × 28 × 28  10          60000/10000  IDX, same names as MNIST
``cifar10``         3 × 32 × 32  10          50000/10000  ``cifar-10-batches-py/data_batch_1..5``,
                                                          ``test_batch`` (Python pickles)
``synthetic``       1 × 8 × 8    4           480 / 160    generated here: class-dependent blobs (tests)
``npz``             C × S × S    K           yours        one ``.npz`` file of your own, ``path=``
                                                          (see "Your own data" below)
==================  ===========  ==========  ===========  ================================================

Pixels
------
Images are first scaled to :math:`[0, 1]` (bytes divided by 255; the digits' 0..16 grey levels divided by
16), then, with ``normalize=True``, standardised per channel with the statistics of the **whole official
training split** (computed exactly from the integer pixels, population standard deviation):

.. math:: x_{nchw} \leftarrow \frac{x_{nchw} - \mu_c}{\sigma_c}, \qquad
          \mu_c = \operatorname{mean}_{n,h,w}\, x^{\text{train}}_{nchw}, \quad
          \sigma_c^2 = \operatorname{mean}_{n,h,w}\,(x^{\text{train}}_{nchw} - \mu_c)^2 .

The statistics are fixed per dataset: they do not depend on ``val_fraction`` or ``seed``, so a model sees
the same input scaling whether or not a validation split was carved out. The values the code computes
(``Dataset.mean`` / ``Dataset.std``; ``tests/test_data.py`` checks the rows it can load):

=================  ======================================  ======================================
dataset            mean :math:`\mu_c`                      std :math:`\sigma_c`
=================  ======================================  ======================================
``digits``         0.3055                                  0.3761
``fashion-mnist``  0.2860                                  0.3530
``synthetic``      0.1540                                  0.1627
``mnist``          computed on load (files not available where this table was made)
``npz``            computed on load, from the file's ``x_train``
``cifar10``        computed on load (files not available where this table was made)
=================  ======================================  ======================================

A channel that is constant over the whole training split has :math:`\sigma_c = 0` and cannot be
standardised: with ``normalize=True`` that is an error, not a silent division by zero.

Splits
------
* ``digits`` has no official test split. The fixed, documented one: a stratified split with
  :func:`stratified_split` (seed 0, 360 test images, i.e. 1437 / 360). ``split=`` changes the test size.
* ``val_fraction > 0`` carves a stratified validation split out of the training split with
  :func:`stratified_split` seeded by ``seed``: deterministic, and every class is represented in
  proportion.

Where the files are looked for
------------------------------
For a named on-disk dataset, in this order (the first directory holding every file wins):

1. ``root`` (and ``root/<name>``), when given;
2. ``$REFIMPL_DATA/<name>``, when the environment variable is set;
3. ``~/.cache/refimpl/<name>`` (also where downloads go);
4. ``/usr/share/datasets/<name>`` (Debian's ``dataset-fashion-mnist`` package installs there).

If none holds the files and ``download=True``, they are fetched from the public mirrors in
:data:`MIRRORS` into ``~/.cache/refimpl/<name>`` (temporary file, checksum, then an atomic rename), with a
progress bar. Otherwise, or if every mirror fails, :class:`DatasetNotFoundError` lists every path and URL
tried and how to provide the files.

Integrity
---------
Every file is verified against :data:`CHECKSUMS` before it is used; a mismatch, a bad IDX magic number or
an IDX payload shorter or longer than its header announces raises :class:`CorruptDatasetError`, never
returns data. The digests:

* IDX files are checked by the **SHA-256 of the uncompressed payload**, whatever the compression on disk.
  This matters: Debian re-compressed Fashion-MNIST, so its ``.gz`` files differ byte-wise from Zalando's
  while their contents are identical (MD5 of the uncompressed files ``f4a8712d...``, ``9018921c...``,
  ``8181f547...``, ``15d48437...``, the values other projects record for the upstream release). Downloaded
  archives are additionally checked against the publisher's digest before the rename: SHA-256 for MNIST
  (the values TensorFlow's and many loaders' tables use) and the **MD5** that Zalando publishes for
  Fashion-MNIST (no SHA-256 is published).
* CIFAR-10: the archive ``cifar-10-python.tar.gz`` by SHA-256 (the value in torchvision's dataset code),
  each batch file by the **MD5** torchvision checks (the only per-file digests published).

MD5 is used only where it is the digest the publisher gives, and only against accidental corruption; the
SHA-256 digests are the ones to rely on.

Your own data (``npz``)
-----------------------
``load_dataset("npz", path="my_data.npz")`` (a config: ``[data] name = "npz"``, ``path = "my_data.npz"``,
relative to the config file) reads one file written by ``np.savez(path, x_train=..., y_train=...,
x_test=..., y_test=...)``:

* ``x_train``, ``x_test``: images ``(N, C, H, W)``, or ``(N, H, W)`` for one channel; ``uint8`` (0..255,
  divided by 255 like the other sets) or floating (used as they are, finite values only); the same dtype
  and the same ``(C, H, W)`` in both splits, square (``H == W``: the models take one ``input_size``);
* ``y_train``, ``y_test``: 1-D integer labels, one per image, ``>= 0``; the number of classes is
  ``max label + 1`` over both splits;
* optionally ``num_classes``: a scalar integer, for classes that occur in neither split.

Any other key is an error (a misspelt ``num_classes`` must not be ignored), and the file is read with
``allow_pickle=False``: it never runs code. Normalisation (with the file's own training statistics),
``val_fraction`` and ``dtype`` work as for the other sets; ``Dataset.source`` is the file's path.

The pickle trust issue (CIFAR-10)
---------------------------------
CIFAR-10's "python version" is a set of pickles, and unpickling can run arbitrary code. Two defences:
a batch is unpickled only after its digest matched the published one, and the unpickler only resolves
the few globals a batch needs (NumPy's array reconstruction); anything else raises
:class:`CorruptDatasetError`. Still: only load CIFAR batches from a source you trust.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import math
import numbers
import os
import pickle
import struct
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refimpl._validation import check_positive_int, check_probability

__all__ = [
    "CHECKSUMS",
    "DATASETS",
    "MIRRORS",
    "CorruptDatasetError",
    "Dataset",
    "DatasetNotFoundError",
    "channel_stats",
    "dataset_search_paths",
    "download_file",
    "load_dataset",
    "parse_idx",
    "read_cifar_batch",
    "read_idx",
    "stratified_split",
]

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "synthetic", "npz")
"""Every name :func:`load_dataset` accepts (``"npz"`` needs ``path=``; the others are found by name)."""

_NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_NPZ_OPTIONAL = ("num_classes",)

_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_FILES = (*_CIFAR_TRAIN, "test_batch")

CHECKSUMS: dict[str, dict[str, tuple[str, str]]] = {
    # name -> file -> (algorithm, hex digest). For IDX files the entry without ".gz" is the digest of the
    # uncompressed payload (checked on every load); the ".gz" entry is the distributed archive's
    # (checked on download).
    "mnist": {
        "train-images-idx3-ubyte": (
            "sha256", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train-labels-idx1-ubyte": (
            "sha256", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "t10k-images-idx3-ubyte": (
            "sha256", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "t10k-labels-idx1-ubyte": (
            "sha256", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        "train-images-idx3-ubyte.gz": (
            "sha256", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz": (
            "sha256", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz": (
            "sha256", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": (
            "sha256", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": (
            "sha256", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte": (
            "sha256", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte": (
            "sha256", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte": (
            "sha256", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        "train-images-idx3-ubyte.gz": ("md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        "train-labels-idx1-ubyte.gz": ("md5", "25c81989df183df01b3e8a0aad5dffbe"),
        "t10k-images-idx3-ubyte.gz": ("md5", "bef4ecab320f06d8554ea6380940ec79"),
        "t10k-labels-idx1-ubyte.gz": ("md5", "bb300cfdad3c16e7a12a480ee83cd310"),
    },
    "cifar10": {
        _CIFAR_ARCHIVE: ("sha256", "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
        "data_batch_1": ("md5", "c99cafc152244af753f735de768cd75f"),
        "data_batch_2": ("md5", "d4bba439e000b95fd0a9bffe97cbabec"),
        "data_batch_3": ("md5", "54ebc095f3ab1f0389bbae665268c751"),
        "data_batch_4": ("md5", "634d18415352ddfa80567beed471001a"),
        "data_batch_5": ("md5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        "test_batch": ("md5", "40351d587109b95175f43aff81a1287e"),
    },
}
"""Known digests, ``CHECKSUMS[name][file] = (algorithm, hexdigest)`` (see the module docstring)."""

MIRRORS: dict[str, tuple[str, ...]] = {
    # Base URLs tried in order; a file's URL is base + file name.
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}
"""Public download locations (plain HTTP is acceptable only because every file is digest-checked)."""

_SYSTEM_DATA_DIR = Path("/usr/share/datasets")  # Debian's dataset-* packages install here
_DIGITS_TEST_SIZE = 360
_DIGITS_SPLIT_SEED = 0
_SYNTHETIC_SEED = 20180908  # fixed: the synthetic set is the same everywhere, whatever ``seed`` says
_SYNTHETIC_PER_CLASS = 160
_SYNTHETIC_CLASSES = 4
_SYNTHETIC_TEST_FRACTION = 0.25


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are in none of the searched places and could not be downloaded."""


class CorruptDatasetError(ValueError):
    """A dataset file is damaged: checksum mismatch, bad IDX magic, truncated payload, bad pickle."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A loaded dataset: NCHW float images and int64 labels per split, and how they were made.

    Attributes
    ----------
    x_train, x_test : ndarray, shape (N, C, H, W), float
        Images, scaled to [0, 1] and (if ``normalized``) standardised with ``mean`` / ``std``.
    y_train, y_test : ndarray, shape (N,), int64
        Class labels in ``0 .. num_classes - 1``.
    name : str
    num_classes : int
    input_shape : tuple of int
        ``(C, H, W)``.
    mean, std : tuple of float, length C
        Per-channel statistics of the whole official training split in [0, 1] pixel units.
    source : str
        Directory the files were read from (``"sklearn"`` / ``"generated"`` for in-memory sets, the file's
        path for ``npz``).
    normalized : bool
        Whether ``mean`` / ``std`` were applied.
    x_val, y_val : ndarray or None
        The validation split, present when ``val_fraction > 0``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    normalized: bool = True
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    def __repr__(self) -> str:
        val = "" if self.x_val is None else f", val={len(self.y_val)}"
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}{val}, "
            f"input_shape={self.input_shape}, dtype={self.x_train.dtype}, source={self.source!r})"
        )


# --- public entry point ----------------------------------------------------------------------------


def load_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    split: int | float | None = None,
    dtype=np.float32,
    normalize: bool = True,
    val_fraction: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    path: str | os.PathLike | None = None,
) -> Dataset:
    """Load a dataset by name as NCHW float images and int64 labels.

    Parameters
    ----------
    name : {"digits", "mnist", "fashion-mnist", "cifar10", "synthetic", "npz"}
    root : path, optional
        Directory holding the files (``root`` itself or ``root/<name>``), searched first. Not for ``npz``.
    download : bool, default True
        Fetch missing files from :data:`MIRRORS` into ``~/.cache/refimpl/<name>``.
    split : int or float, optional
        Test-split size for the sets without an official split (``digits``, ``synthetic``): a count or a
        fraction in (0, 1). ``None`` is the documented default (digits: 360). An error for the others.
    dtype : {float32, float64}, default float32
        The dtype of the images, one the layers compute in: float16 and extended precision are refused
        (the kernels are compiled for float32 and float64), and a big-endian request such as ``">f4"``
        gives native-order arrays of that precision.
    normalize : bool, default True
        Standardise with the per-channel training statistics (module docstring).
    val_fraction : float in [0, 1), default 0
        Share of the training split moved to ``x_val`` / ``y_val`` (stratified, seeded by ``seed``).
    seed : int, default 0
        Seed of the validation split.
    progress : bool, default True
        Show a progress bar while downloading.
    path : path, optional
        The ``.npz`` file of ``name="npz"`` (module docstring, "Your own data"); required for it, an
        error for every other name.

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        Unknown ``name`` (the message lists the known ones) or a bad argument.
    DatasetNotFoundError
        The files are nowhere on disk and could not (or may not) be downloaded; the ``npz`` file does not
        exist.
    CorruptDatasetError
        A file failed its checksum or is not a well-formed IDX / CIFAR batch / npz dataset (the message
        names the array and the problem); a constant training channel with ``normalize=True``.

    Examples
    --------
    >>> ds = load_dataset("digits")
    >>> ds.x_train.shape, ds.x_test.shape, ds.x_train.dtype
    ((1437, 1, 8, 8), (360, 1, 8, 8), dtype('float32'))
    """
    name = _check_name(name)
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
    dtype = dtype.newbyteorder("=")  # the images are converted at this boundary: native order only
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64 (the dtypes refimpl's layers compute in), "
                         f"got {dtype}")
    val_fraction = check_probability(val_fraction, "val_fraction", closed_right=False)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if split is not None and name not in ("digits", "synthetic"):
        raise ValueError(f"split= applies only to digits and synthetic; {name} has an official split")
    if (name == "npz") != (path is not None):
        raise ValueError("path= (the .npz file) is required for name='npz'" if name == "npz" else
                         f"path= applies only to name='npz' (your own .npz file), not to {name!r}; "
                         "its files are found through root= and the search paths")
    if name == "npz" and root is not None:
        raise ValueError("root= applies to the datasets found by name; name='npz' reads path= alone")

    # Each reader returns raw pixels (N, C, H, W) (integers; floating only from an npz file), labels,
    # the pixel value that maps to 1.0 and the source.
    num_classes = _SYNTHETIC_CLASSES if name == "synthetic" else 10
    if name == "digits":
        raw_train, y_train, raw_test, y_test, scale, source = _load_digits(split)
    elif name == "synthetic":
        raw_train, y_train, raw_test, y_test, scale, source = _load_synthetic(split)
    elif name == "npz":
        raw_train, y_train, raw_test, y_test, scale, num_classes = _read_npz(Path(path))
        source = str(path)
    else:
        directory = _locate(name, root, download=download, progress=progress)
        reader = _read_cifar10 if name == "cifar10" else _read_idx_set
        raw_train, y_train, raw_test, y_test = reader(directory, name)
        scale, source = 255, str(directory)

    for part, labels in (("train", y_train), ("test", y_test)):
        if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:
            raise CorruptDatasetError(
                f"{name} {part} labels span {labels.min()}..{labels.max()}, outside 0..{num_classes - 1}"
            )
    mean, std = channel_stats(raw_train, scale)
    if normalize and np.any(std == 0):
        c = int(np.flatnonzero(std == 0)[0])
        raise CorruptDatasetError(
            f"{name}: channel {c} of the training images is constant ({mean[c] * scale:g}), so it cannot be "
            "standardised (std 0); load with normalize=False or drop the channel"
        )
    x_train = _to_float(raw_train, scale, mean, std, dtype, normalize)
    x_test = _to_float(raw_test, scale, mean, std, dtype, normalize)
    y_train = y_train.astype(np.int64)
    y_test = y_test.astype(np.int64)

    x_val = y_val = None
    if val_fraction > 0:
        keep, held = stratified_split(y_train, val_fraction, np.random.default_rng(seed))
        x_val, y_val = x_train[held], y_train[held]
        x_train, y_train = x_train[keep], y_train[keep]

    return Dataset(
        x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, name=name,
        num_classes=num_classes, input_shape=tuple(int(d) for d in x_test.shape[1:]),
        mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std), source=source,
        normalized=bool(normalize), x_val=x_val, y_val=y_val,
    )


def _check_name(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {name!r}")
    key = name.lower().replace("_", "-")
    if key not in DATASETS:
        raise ValueError(f"unknown dataset name {name!r}; known names: {', '.join(DATASETS)}")
    return key


# --- pixels ------------------------------------------------------------------------------------------


def channel_stats(raw: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-channel mean and population std of ``raw / scale``, exactly, from integer pixels.

    Counting how often each grey level occurs in a channel (``np.bincount``) gives the mean and variance
    without a float copy of the whole set (CIFAR-10 in float64 would take 1.2 GB):

    .. math:: \mu_c = \frac{1}{M}\sum_v n_{cv}\,\frac{v}{s}, \qquad
              \sigma_c^2 = \frac{1}{M}\sum_v n_{cv}\,\Bigl(\frac{v}{s} - \mu_c\Bigr)^2

    with :math:`n_{cv}` the count of level :math:`v` in channel :math:`c`, :math:`M` the pixels per channel.
    Floating pixels (an ``npz`` dataset) have no levels to count: their mean and variance are computed in
    float64 in two passes, one channel at a time (a float64 copy of one channel only).

    Parameters
    ----------
    raw : ndarray, shape (N, C, H, W)
        Non-negative integers, or finite floats.
    scale : float
        The pixel value that maps to 1.0 (255 for bytes, 1 for floats already in their final units).

    Returns
    -------
    mean, std : ndarray, shape (C,), float64
    """
    floating = np.issubdtype(raw.dtype, np.floating)
    if raw.ndim != 4 or not (floating or np.issubdtype(raw.dtype, np.integer)):
        raise ValueError(
            f"raw must be an integer or floating array of shape (N, C, H, W), got {raw.dtype} {raw.shape}"
        )
    channels = raw.shape[1]
    mean = np.empty(channels)
    std = np.empty(channels)
    for c in range(channels):
        if floating:
            x = raw[:, c].astype(np.float64) / scale
            mean[c] = x.mean()
            std[c] = np.sqrt(np.mean((x - mean[c]) ** 2))
            continue
        counts = np.bincount(raw[:, c].ravel()).astype(np.float64)
        levels = np.arange(counts.size) / scale
        total = counts.sum()
        mean[c] = counts @ levels / total
        std[c] = np.sqrt(counts @ (levels - mean[c]) ** 2 / total)
    return mean, std


def _to_float(raw, scale, mean, std, dtype, normalize) -> np.ndarray:
    """Raw pixels -> ``dtype`` in [0, 1] (a copy) -> optionally standardised, in place to spare memory."""
    x = raw.astype(dtype)
    x /= dtype.type(scale)
    if normalize:
        shape = (1, -1, 1, 1)
        x -= mean.astype(dtype).reshape(shape)
        x /= std.astype(dtype).reshape(shape)
    return x


# --- splits ------------------------------------------------------------------------------------------


def stratified_split(
    y: np.ndarray, size: int | float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (kept, held out) with every class held out in proportion.

    The held-out count ``n_h`` is ``size`` itself (an int) or ``round(size * N)`` (a fraction). It is
    shared among the classes by the largest-remainder rule: class ``k`` with ``N_k`` samples gets
    ``floor(n_h N_k / N)``, and the leftover units go to the largest fractional parts (ties to the
    lower class label). Inside a class the held-out samples are the first of a permutation drawn from
    ``rng``. Both index arrays are sorted, so the original order survives.

    Parameters
    ----------
    y : ndarray of int, shape (N,)
    size : int in [1, N - 1] or float in (0, 1)
    rng : numpy.random.Generator

    Returns
    -------
    kept, held : ndarray of int64
    """
    y = np.asarray(y)
    n = y.size
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        n_held = check_positive_int(size, "size")
    elif isinstance(size, numbers.Real) and 0.0 < float(size) < 1.0:
        n_held = round(float(size) * n)
    else:
        raise ValueError(f"size must be an integer count or a fraction in (0, 1), got {size!r}")
    if not 0 < n_held < n:
        raise ValueError(f"size must leave both parts non-empty: {n_held} held out of {n}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")

    classes, counts = np.unique(y, return_counts=True)
    quota = n_held * counts / n
    per_class = np.floor(quota).astype(np.int64)
    leftover = n_held - per_class.sum()
    # Stable sort on the negated remainders: ties keep the lower class first.
    per_class[np.argsort(-(quota - per_class), kind="stable")[:leftover]] += 1

    held = [rng.permutation(np.flatnonzero(y == cls))[:k] for cls, k in zip(classes, per_class, strict=True)]
    held = np.sort(np.concatenate(held)).astype(np.int64)
    kept = np.setdiff1d(np.arange(n, dtype=np.int64), held)
    return kept, held


def _test_size(split, default):
    if split is None:
        return default
    if isinstance(split, bool) or not isinstance(split, numbers.Real):
        raise TypeError(f"split must be an integer count or a fraction, got {split!r}")
    return split


# --- in-memory datasets ------------------------------------------------------------------------------


def _load_digits(split):
    """scikit-learn's 1797 8×8 digits (grey levels 0..16) with the documented stratified test split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    raw = bunch.images.astype(np.uint8)[:, None]  # values are the integers 0..16
    y = bunch.target.astype(np.int64)
    train, test = stratified_split(
        y, _test_size(split, _DIGITS_TEST_SIZE), np.random.default_rng(_DIGITS_SPLIT_SEED)
    )
    return raw[train], y[train], raw[test], y[test], 16, "sklearn"


def _load_synthetic(split):
    """Generate the tiny learnable set: each class is a Gaussian blob at its own place on an 8×8 canvas.

    Class ``k`` puts a bright blob (peak 200/255) centred in one of the four quadrants, jittered by up
    to one pixel, on top of uniform noise of up to 40/255; a linear model separates it easily. Always
    generated from the same fixed seed, so the set is identical on every machine.
    """
    rng = np.random.default_rng(_SYNTHETIC_SEED)
    centres = np.array([(2.0, 2.0), (2.0, 5.0), (5.0, 2.0), (5.0, 5.0)])
    rows, cols = np.mgrid[0:8, 0:8]
    n = _SYNTHETIC_PER_CLASS * _SYNTHETIC_CLASSES
    y = np.repeat(np.arange(_SYNTHETIC_CLASSES), _SYNTHETIC_PER_CLASS)
    centre = centres[y] + rng.uniform(-1.0, 1.0, size=(n, 2))
    dist2 = (rows[None] - centre[:, 0, None, None]) ** 2 + (cols[None] - centre[:, 1, None, None]) ** 2
    image = 200.0 * np.exp(-dist2 / 2.0) + rng.uniform(0.0, 40.0, size=(n, 8, 8))
    raw = np.clip(np.rint(image), 0, 255).astype(np.uint8)[:, None]
    train, test = stratified_split(
        y, _test_size(split, _SYNTHETIC_TEST_FRACTION), np.random.default_rng(_SYNTHETIC_SEED)
    )
    return raw[train], y[train], raw[test], y[test], 255, "generated"


# --- your own data (npz) -----------------------------------------------------------------------------


def _read_npz(path: Path):
    """Read and check a user's ``.npz`` dataset (module docstring, "Your own data").

    Returns
    -------
    raw_train, y_train, raw_test, y_test, scale, num_classes
        Images ``(N, C, H, W)`` as stored (uint8 or floating), labels as stored (integers), 255 for uint8
        images and 1 for floating ones, and the number of classes.
    """
    if not path.is_file():
        raise DatasetNotFoundError(f"npz dataset file {path} does not exist")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise CorruptDatasetError(f"{path}: not a readable .npz file ({err})") from err
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CorruptDatasetError(f"{path}: holds a single array, not the .npz archive of "
                                  f"{', '.join(_NPZ_ARRAYS)} (np.savez writes one)")
    with archive:
        found = sorted(archive.files)
        for key in _NPZ_ARRAYS:
            if key not in found:
                raise CorruptDatasetError(f"{path}: no array {key!r} (keys found: {found}); an npz dataset "
                                          f"holds {', '.join(_NPZ_ARRAYS)}")
        unknown = [k for k in found if k not in _NPZ_ARRAYS + _NPZ_OPTIONAL]
        if unknown:
            expected = ", ".join(_NPZ_ARRAYS + _NPZ_OPTIONAL)
            raise CorruptDatasetError(f"{path}: unexpected array {unknown[0]!r} (keys found: {found}); "
                                      f"an npz dataset holds {expected} (the last optional)")
        arrays = {}
        for key in found:
            try:
                arrays[key] = archive[key]
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:  # object arrays, damage
                raise CorruptDatasetError(f"{path}: cannot read {key!r} ({err})") from err

    images = {}
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim not in (3, 4) or 0 in x.shape:
            raise CorruptDatasetError(f"{path}: x_{part} must have shape (N, H, W) or (N, C, H, W) with no "
                                      f"empty axis, got {x.shape}")
        if not (x.dtype == np.uint8 or np.issubdtype(x.dtype, np.floating)):
            raise CorruptDatasetError(f"{path}: x_{part} must be uint8 (0..255) or floating, got {x.dtype}")
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise CorruptDatasetError(f"{path}: x_{part} holds NaN or infinite values")
        if y.ndim != 1 or y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
            raise CorruptDatasetError(f"{path}: y_{part} must be a 1-D array of integer labels, got "
                                      f"{y.dtype} of shape {y.shape}")
        if len(y) != len(x):
            raise CorruptDatasetError(f"{path}: x_{part} holds {len(x)} images but y_{part} {len(y)} labels")
        if y.min() < 0:
            raise CorruptDatasetError(f"{path}: y_{part} holds negative labels (min {y.min()}); labels are "
                                      "class indices 0, 1, ...")
        images[part] = x[:, None] if x.ndim == 3 else x  # (N, H, W): one channel
    x_train, x_test = images["train"], images["test"]
    if x_train.dtype != x_test.dtype:
        raise CorruptDatasetError(f"{path}: x_train is {x_train.dtype} but x_test {x_test.dtype}; both "
                                  "splits must be stored alike (they are scaled alike)")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise CorruptDatasetError(f"{path}: train images are (C, H, W) = {x_train.shape[1:]} but test "
                                  f"images {x_test.shape[1:]}")
    height, width = x_train.shape[2:]
    if height != width:
        raise CorruptDatasetError(f"{path}: images must be square (the models take one input_size), got "
                                  f"H x W = {height} x {width}")

    y_train, y_test = arrays["y_train"], arrays["y_test"]
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if "num_classes" in arrays:
        given = arrays["num_classes"]
        if given.ndim != 0 or given.dtype == np.bool_ or not np.issubdtype(given.dtype, np.integer):
            raise CorruptDatasetError(f"{path}: num_classes must be a scalar integer, got {given.dtype} of "
                                      f"shape {given.shape}")
        if int(given) < num_classes:
            raise CorruptDatasetError(f"{path}: num_classes = {int(given)} but the labels go up to "
                                      f"{num_classes - 1}")
        num_classes = int(given)
    scale = 255 if x_train.dtype == np.uint8 else 1
    return x_train, y_train, x_test, y_test, scale, num_classes


# --- where the files are -----------------------------------------------------------------------------


def dataset_search_paths(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for dataset ``name``, in order (see the module docstring).

    ``$REFIMPL_DATA`` and the home directory are read at call time.
    """
    name = _check_name(name)
    if name == "npz":
        raise ValueError("name='npz' is read from its path= file, not searched for")
    paths: list[Path] = []
    if root is not None:
        root = Path(root).expanduser()
        paths += [root, root / name]
    env = os.environ.get("REFIMPL_DATA")
    if env:
        paths.append(Path(env).expanduser() / name)
    paths.append(_cache_dir(name))
    paths.append(_SYSTEM_DATA_DIR / name)
    return paths


def _cache_dir(name: str) -> Path:
    return Path.home() / ".cache" / "refimpl" / name


def _find_files(directory: Path, name: str) -> dict[str, Path] | None:
    """Map every required file of ``name`` to its path in ``directory``, or ``None`` if one is missing.

    IDX files may be plain or ``.gz`` (plain preferred); CIFAR batches may sit in ``directory`` or in its
    ``cifar-10-batches-py`` subdirectory.
    """
    if not directory.is_dir():
        return None
    found: dict[str, Path] = {}
    if name == "cifar10":
        for base in (directory / _CIFAR_DIR, directory):
            if all((base / f).is_file() for f in _CIFAR_FILES):
                return {f: base / f for f in _CIFAR_FILES}
        return None
    for f in _IDX_FILES:
        for candidate in (directory / f, directory / f"{f}.gz"):
            if candidate.is_file():
                found[f] = candidate
                break
        else:
            return None
    return found


def _locate(name: str, root, *, download: bool, progress: bool) -> Path:
    """First searched directory holding the files; else download; else a :class:`DatasetNotFoundError`."""
    tried = dataset_search_paths(name, root)
    for directory in tried:
        if _find_files(directory, name) is not None:
            return directory
    failures: list[str] = []
    if download:
        target = _cache_dir(name)
        try:
            _download_dataset(name, target, progress=progress, failures=failures)
        except OSError as err:  # e.g. the cache directory cannot be created
            failures.append(f"{target}: {err}")
        if _find_files(target, name) is not None:
            return target
    raise DatasetNotFoundError(_not_found_message(name, tried, download, failures))


def _not_found_message(name: str, tried: Sequence[Path], download: bool, failures: Sequence[str]) -> str:
    wanted = (
        f"{_CIFAR_DIR}/{{{','.join(_CIFAR_FILES)}}}" if name == "cifar10"
        else ", ".join(f"{f}[.gz]" for f in _IDX_FILES)
    )
    lines = [f"dataset {name!r} not found. Looked for {wanted} in:"]
    lines += [f"  - {p}" for p in tried]
    if download:
        lines.append("Download failed:" if failures else "Download produced no usable files.")
        lines += [f"  - {f}" for f in failures]
    else:
        lines.append("Download was disabled (download=False).")
    archive = _CIFAR_ARCHIVE if name == "cifar10" else "<file>.gz"
    urls = ", ".join(base + archive for base in MIRRORS[name])
    lines += [
        "Provide the files in one of these ways:",
        "  - pass root=DIR (or --data-root DIR) with the files in DIR or DIR/" + name,
        f"  - set REFIMPL_DATA=DIR and put the files in DIR/{name}",
        f"  - put them in {_cache_dir(name)}",
        f"  - download them by hand from {urls}",
    ]
    if name == "fashion-mnist":
        lines.append("  - on Debian/Ubuntu: apt install dataset-fashion-mnist")
    return "\n".join(lines)


# --- downloads ---------------------------------------------------------------------------------------


def download_file(
    url: str,
    dest: str | os.PathLike,
    *,
    digest: tuple[str, str],
    progress: bool = True,
    opener: Callable | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` through a temporary file, verify it, then rename it into place.

    Nothing appears at ``dest`` unless the whole file arrived and matched ``digest``; on any failure the
    temporary file is removed and the error propagates.

    Parameters
    ----------
    url : str
    dest : path
    digest : (algorithm, hexdigest)
        E.g. ``("sha256", "ab12...")`` or ``("md5", ...)``.
    progress : bool
        Show a tqdm progress bar.
    opener : callable, optional
        ``opener(url, timeout=...)`` returning a context manager with ``read(n)`` (and optionally
        ``headers``); defaults to :func:`urllib.request.urlopen`. Tests pass a fake.
    timeout : float
        Seconds, passed to ``opener``.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    CorruptDatasetError
        The downloaded bytes do not match ``digest``.
    OSError
        Network or file-system failure (``urllib.error.URLError`` is one).
    """
    from tqdm.auto import tqdm

    algorithm, expected = digest
    opener = urllib.request.urlopen if opener is None else opener
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        hasher = hashlib.new(algorithm)
        with os.fdopen(fd, "wb") as out, opener(url, timeout=timeout) as response:
            length = getattr(response, "headers", {}).get("Content-Length")
            with tqdm(
                total=int(length) if length else None, unit="B", unit_scale=True,
                desc=dest.name, disable=not progress, leave=False,
            ) as bar:
                while chunk := response.read(1 << 20):
                    hasher.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
        actual = hasher.hexdigest()
        if actual != expected.lower():
            raise CorruptDatasetError(
                f"checksum mismatch for {url}: {algorithm} {actual}, expected {expected}; file discarded"
            )
        os.replace(tmp, dest)  # atomic on one file system: readers never see a partial file
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _download_dataset(name: str, target: Path, *, progress: bool, failures: list[str]) -> None:
    """Fetch every missing file of ``name`` into ``target``; record each failed attempt in ``failures``."""
    files = (_CIFAR_ARCHIVE,) if name == "cifar10" else tuple(f"{f}.gz" for f in _IDX_FILES)
    for file in files:
        dest = target / file
        if dest.is_file() or (name != "cifar10" and (target / file[:-3]).is_file()):
            continue
        for base in MIRRORS[name]:
            try:
                download_file(base + file, dest, digest=CHECKSUMS[name][file], progress=progress)
                break
            except (OSError, CorruptDatasetError) as err:  # URLError is an OSError
                failures.append(f"{base + file}: {err}")
        else:
            return  # this file could not be fetched from any mirror: give up
    if name == "cifar10":
        _extract_cifar(target / _CIFAR_ARCHIVE, target)


def _extract_cifar(archive: Path, target: Path) -> None:
    """Extract only the known batch files from the (already verified) archive, by name.

    Extracting member by member to paths built here (not ``tar.extractall``) means a crafted archive
    cannot write outside ``target``.
    """
    out_dir = target / _CIFAR_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for file in _CIFAR_FILES:
            member = tar.extractfile(f"{_CIFAR_DIR}/{file}")
            if member is None:
                raise CorruptDatasetError(f"{archive} has no regular file {_CIFAR_DIR}/{file}")
            fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{file}.", suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(member.read())
            os.replace(tmp_name, out_dir / file)


# --- integrity ---------------------------------------------------------------------------------------


def _verify(data: bytes, name: str, file: str, where: Path) -> None:
    """Raise :class:`CorruptDatasetError` unless ``data`` matches the known digest of ``file``."""
    known = CHECKSUMS.get(name, {}).get(file)
    if known is None:
        raise CorruptDatasetError(f"no known checksum for {name}/{file}; refusing to use {where} unchecked")
    algorithm, expected = known
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != expected.lower():
        raise CorruptDatasetError(
            f"checksum mismatch for {where}: {algorithm} {actual}, expected {expected}. The file is corrupt "
            "or not the published one; delete it and load again (it will be searched for / downloaded)."
        )


# --- IDX (MNIST, Fashion-MNIST) ----------------------------------------------------------------------

# The third magic byte names the element type (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT").
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file starts with the gzip magic ``1f 8b`` (whatever its name)."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
            raise CorruptDatasetError(f"{path}: damaged gzip stream ({err})") from err
    return data


def parse_idx(payload: bytes, where: str = "<bytes>") -> np.ndarray:
    """Decode an uncompressed IDX file.

    Layout: two zero bytes, a type byte (0x08 = unsigned byte, ...), the number of dimensions ``d``,
    then ``d`` big-endian uint32 sizes, then the row-major data.

    Parameters
    ----------
    payload : bytes
    where : str
        Name used in error messages.

    Returns
    -------
    ndarray
        Read-only view on ``payload`` with the header's shape and type (native byte order not forced).

    Raises
    ------
    CorruptDatasetError
        Bad magic number, a header cut short, or a payload shorter or longer than the header announces.
    """
    if len(payload) < 4 or payload[0] != 0 or payload[1] != 0 or payload[2] not in _IDX_TYPES:
        raise CorruptDatasetError(f"{where}: bad IDX magic number {payload[:4].hex() or '(empty)'}")
    ndim = payload[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(payload) < header:
        raise CorruptDatasetError(f"{where}: IDX header truncated or with {ndim} dimensions")
    shape = struct.unpack(f">{ndim}I", payload[4:header])
    dtype = np.dtype(_IDX_TYPES[payload[2]])
    count = math.prod(shape)  # Python integers: a crafted header cannot overflow the byte count
    expected, have = count * dtype.itemsize, len(payload) - header
    if have != expected:
        kind = "truncated" if have < expected else "has trailing bytes"
        raise CorruptDatasetError(
            f"{where}: IDX payload {kind}: header says shape {shape} ({expected} bytes), file holds {have}"
        )
    return np.frombuffer(payload, dtype=dtype, count=count, offset=header).reshape(shape)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzipped or not (no checksum; :func:`load_dataset` verifies before parsing)."""
    return parse_idx(_read_bytes(Path(path)), str(path))


def _read_idx_set(directory: Path, name: str):
    """Read verified train/test images ``(N, 1, 28, 28)`` uint8 and labels from an IDX directory."""
    files = _find_files(directory, name)
    arrays = {}
    for file, path in files.items():
        payload = _read_bytes(path)
        _verify(payload, name, file, path)
        arrays[file] = parse_idx(payload, str(path))
    out = []
    for prefix in ("train", "t10k"):
        images, labels = arrays[f"{prefix}-images-idx3-ubyte"], arrays[f"{prefix}-labels-idx1-ubyte"]
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise CorruptDatasetError(
                f"{directory}: {prefix} images {images.shape} and labels {labels.shape} do not match"
            )
        out += [images[:, None], labels]
    return tuple(out)


# --- CIFAR-10 (pickled batches) ----------------------------------------------------------------------


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that resolves only what a CIFAR batch holds: NumPy array reconstruction.

    Batches written by Python 2 name ``numpy.core.multiarray``; NumPy 2 moved it to ``numpy._core``, so
    both spellings map to the current functions (without NumPy's deprecation shim). Pickles written by
    Python 3 with protocol 2 spell ``bytes`` as ``_codecs.encode(text, "latin1")``, a pure function,
    so it is allowed too.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module, name):  # noqa: D102 (pickle API)
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch") from None


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch (no checksum; :func:`load_dataset` verifies before unpickling).

    The batch is a pickled dict (written by Python 2, hence ``encoding="bytes"``: its keys come back as
    ``bytes``) with ``b"data"``, uint8 of shape (N, 3072) holding the 1024 red, then green, then blue
    values of each 32×32 image row by row, and ``b"labels"``, N ints.

    Returns
    -------
    images : ndarray, shape (N, 3, 32, 32), uint8
    labels : ndarray, shape (N,), int64
    """
    return _parse_cifar_batch(Path(path).read_bytes(), str(path))


def _parse_cifar_batch(data: bytes, where: str):
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
        images = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise CorruptDatasetError(f"{where}: not a CIFAR-10 batch ({type(err).__name__}: {err})") from err
    if images.ndim != 2 or images.shape[1] != 3 * 32 * 32 or labels.shape != (images.shape[0],):
        raise CorruptDatasetError(
            f"{where}: data {images.shape} / labels {labels.shape} are not a CIFAR batch"
        )
    return images.reshape(-1, 3, 32, 32), labels


def _read_cifar10(directory: Path, name: str):
    files = _find_files(directory, name)
    parts = {}
    for file, path in files.items():
        data = path.read_bytes()
        _verify(data, name, file, path)  # before unpickling: see "The pickle trust issue"
        parts[file] = _parse_cifar_batch(data, str(path))
    x_train = np.concatenate([parts[f][0] for f in _CIFAR_TRAIN])
    y_train = np.concatenate([parts[f][1] for f in _CIFAR_TRAIN])
    return x_train, y_train, *parts["test_batch"]
