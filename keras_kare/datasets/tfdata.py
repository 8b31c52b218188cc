"""``tf.data`` pipelines ready for :meth:`KAREModel.fit` (numpy arrays, TFDS names, IDX files).

Every entry point runs the same steps, in this order, on (inputs, integer
labels or real targets):

1. **class filtering** — ``classes=(7, 9)`` keeps those labels only (absent
   classes raise :class:`~keras_kare.datasets.DatasetError`);
2. **subsetting** — ``count=n`` draws n examples without replacement with
   ``numpy.random.default_rng(seed)`` (order: ascending index of the source);
3. **encoding** of the labels (see :func:`encode_labels`): ``"pm1"`` (two
   classes → +1 for ``classes[0]``, −1 for ``classes[1]``: 7 vs 9 gives 7 → +1),
   ``"one_hot"`` (C columns in ``classes`` order), ``"pm1_one_hot"`` (one-hot
   written with ±1), ``"index"`` (class position as float) or ``None`` (targets
   passed through, e.g. regression);
4. **normalisation** of the inputs (see :func:`normalize`): ``"scale"``
   (÷255 for integer images, giving [0, 1]), ``"standardize"`` (per-feature
   zero mean / unit variance with statistics of the selected examples),
   ``"center_examples"`` (÷255 then each example minus its own mean — the
   paper's MNIST preprocessing) or ``None``; ``flatten=True`` flattens each
   example to a vector;
5. **batching** — ``tf.data.Dataset.from_tensor_slices``, optional seeded
   ``shuffle`` (reshuffled each epoch), ``batch(batch_size,
   drop_remainder=True)`` (KARE needs ≥ 2 examples per batch and a fixed
   batch size keeps one compiled step), ``cache()`` and ``prefetch(AUTOTUNE)``.

Inputs are float32, targets float32 of shape (n,) for ``"pm1"``/``"index"``/
1-D targets and (n, C) for the one-hot encodings.

Nothing here downloads unless asked: :func:`from_tfds` reads a prepared
TFDS ``data_dir`` and raises if the data set is not there (``download=True``
opts in; it needs the ``tfds`` extra, ``pip install 'keras-kare[tfds]'``);
:func:`from_idx` reads MNIST-style IDX files (e.g. an offline copy in
``$KERAS_KARE_DATA/mnist``, see :func:`keras_kare.datasets.mnist_dir`) through
:func:`keras_kare.datasets.idx.read_idx`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from keras_kare.datasets.errors import DatasetError
from keras_kare.datasets.tfds_source import read_tfds

ENCODINGS = ("pm1", "one_hot", "pm1_one_hot", "index", None)
NORMALIZATIONS = ("scale", "standardize", "center_examples", None)


# ---------------------------------------------------------------- numpy steps
def filter_classes(x: np.ndarray, labels: np.ndarray, classes: Optional[Sequence[int]], source: str = "the data"):
    """Keep the examples whose label is in ``classes`` (None: keep all)."""
    if classes is None:
        return x, labels
    classes = list(classes)
    if len(set(classes)) != len(classes) or not classes:
        raise ValueError(f"classes must be a non-empty list of distinct labels, received {classes!r}.")
    present = np.unique(labels)
    absent = [c for c in classes if c not in present]
    if absent:
        shown = (
            present.tolist() if present.size <= 20 else f"{present.size} labels from {present.min()} to {present.max()}"
        )
        raise DatasetError(f"classes {absent} are not present in {source} (labels present: {shown}).")
    keep = np.isin(labels, classes)
    return x[keep], labels[keep]


def subset(x: np.ndarray, y: np.ndarray, count: Optional[int], seed: int = 0, source: str = "the data"):
    """A seeded random draw of ``count`` examples without replacement, in source order."""
    if count is None:
        return x, y
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be a positive int or None, received {count!r}.")
    if count > len(y):
        raise DatasetError(f"count={count} examples requested but {source} has only {len(y)} after filtering.")
    idx = np.sort(np.random.default_rng(seed).choice(len(y), int(count), replace=False))
    return x[idx], y[idx]


def encode_labels(labels: np.ndarray, encoding: Optional[str], classes: Optional[Sequence[int]] = None) -> np.ndarray:
    """Targets from integer labels; ``classes`` fixes the class order (default: sorted labels).

    - ``"pm1"``: exactly two classes; ``classes[0]`` → +1, ``classes[1]`` → −1. Shape (n,).
    - ``"one_hot"``: (n, C) with 1 in the column of the class's position.
    - ``"pm1_one_hot"``: (n, C) with +1 there and −1 elsewhere.
    - ``"index"``: the class's position (0…C−1) as float. Shape (n,).
    - ``None``: the labels/targets unchanged (as float32).
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, received {encoding!r}.")
    if encoding is None:
        return np.asarray(labels, dtype=np.float32)
    labels = np.asarray(labels)
    if not (np.issubdtype(labels.dtype, np.integer) or np.all(labels == np.round(labels))):
        raise ValueError(f"encoding={encoding!r} needs integer class labels, received dtype {labels.dtype}.")
    order = list(classes) if classes is not None else np.unique(labels).tolist()
    pos = {c: i for i, c in enumerate(order)}
    unknown = sorted(set(np.unique(labels).tolist()) - set(pos))
    if unknown:
        raise DatasetError(f"labels {unknown} are not among the classes {order}.")
    index = np.array([pos[v] for v in labels.tolist()], dtype=np.int64)
    if encoding == "pm1":
        if len(order) != 2:
            raise ValueError(f"encoding='pm1' needs exactly two classes, received {order}; use classes=(a, b).")
        return np.where(index == 0, 1.0, -1.0).astype(np.float32)
    if encoding == "index":
        return index.astype(np.float32)
    eye = np.eye(len(order), dtype=np.float32)[index]
    return eye if encoding == "one_hot" else (2.0 * eye - 1.0).astype(np.float32)


def normalize(x: np.ndarray, method: Optional[str], flatten: bool = False) -> np.ndarray:
    """Inputs as float32 after the normalisation ``method`` (see the module docstring)."""
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, received {method!r}.")
    integer = np.issubdtype(np.asarray(x).dtype, np.integer)
    x = np.asarray(x, dtype=np.float32)
    if flatten:
        x = x.reshape(len(x), -1)
    if method in ("scale", "center_examples") and integer:
        x = x / np.float32(255.0)
    if method == "center_examples":
        axes = tuple(range(1, x.ndim))
        x = x - x.mean(axis=axes, keepdims=True)
    elif method == "standardize":
        mean = x.mean(axis=0, keepdims=True)
        std = x.std(axis=0, keepdims=True)
        x = (x - mean) / np.where(std > 0, std, 1.0)
    return x.astype(np.float32)


def prepare_arrays(
    x,
    y,
    classes: Optional[Sequence[int]] = None,
    encoding: Optional[str] = None,
    count: Optional[int] = None,
    seed: int = 0,
    normalize_method: Optional[str] = None,
    flatten: bool = False,
    source: str = "the data",
    num_classes: Optional[int] = None,
):
    """Steps 1–4 of the module docstring on numpy arrays; returns float32 ``(x, y)``.

    The class order of the encodings is ``classes`` if given, else
    ``range(num_classes)`` if given, else the sorted labels of the *whole*
    input (before subsetting, so a small draw missing a class keeps all columns).
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1 or y.ndim < 1 or len(x) != len(y):
        raise ValueError(f"x and y need the same number of rows, received shapes {x.shape} and {y.shape}.")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, received {encoding!r}.")
    if normalize_method not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, received {normalize_method!r}.")
    order = classes
    if order is None and encoding not in (None, "pm1"):
        order = list(range(num_classes)) if num_classes is not None else np.unique(y).tolist()
    x, y = filter_classes(x, y, classes, source)
    x, y = subset(x, y, count, seed, source)
    y = encode_labels(y, encoding, order)
    x = normalize(x, normalize_method, flatten)
    return x, y


def make_dataset(
    x,
    y,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = True,
    cache: bool = True,
    prefetch: bool = True,
) -> tf.data.Dataset:
    """Step 5: a batched ``tf.data.Dataset`` of ``(x, y)`` from arrays.

    Raises:
        ValueError: ``batch_size`` < 2 (KARE of one example is constant), or
            ``drop_remainder=True`` with fewer examples than one batch.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 2:
        raise ValueError(f"batch_size must be an int >= 2 (KARE needs 2 examples per batch), received {batch_size!r}.")
    n = len(y)
    if drop_remainder and n < batch_size:
        raise ValueError(
            f"only {n} examples for batch_size={batch_size} with drop_remainder=True: the dataset would be empty."
        )
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(int(batch_size), drop_remainder=drop_remainder)
    if prefetch:
        ds = ds.prefetch(tf.data.AUTOTUNE)
    return ds


# ---------------------------------------------------------------- entry points
def from_arrays(
    x,
    y,
    batch_size: int,
    classes: Optional[Sequence[int]] = None,
    encoding: Optional[str] = None,
    count: Optional[int] = None,
    seed: int = 0,
    normalize: Optional[str] = None,
    flatten: bool = False,
    shuffle: bool = False,
    drop_remainder: bool = True,
    cache: bool = True,
    prefetch: bool = True,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(x, y)`` batches from numpy arrays (all steps of the module docstring).

    Example:
        >>> ds = from_arrays(images, labels, batch_size=256, classes=(7, 9), encoding="pm1",
        ...                  count=1000, normalize="scale", flatten=True)  # doctest: +SKIP
        >>> KAREModel(net).fit(ds, epochs=10)  # doctest: +SKIP
    """
    xa, ya = prepare_arrays(x, y, classes, encoding, count, seed, normalize, flatten, source="the arrays")
    return make_dataset(xa, ya, batch_size, shuffle, seed, drop_remainder, cache, prefetch)


def load_tfds_arrays(
    name: str,
    split: str = "train",
    data_dir=None,
    download: bool = False,
    image_key: str = "image",
    label_key: str = "label",
):
    """``(inputs, labels)`` numpy arrays of a TFDS split, read whole (for small data sets).

    Never downloads unless ``download=True``; see
    :func:`keras_kare.datasets.tfds_source.read_tfds` for the errors raised.
    """
    return read_tfds(name, split, data_dir, download, image_key, label_key)[:2]


def from_tfds(
    name: str,
    batch_size: int,
    split: str = "train",
    classes: Optional[Sequence[int]] = None,
    encoding: Optional[str] = "one_hot",
    count: Optional[int] = None,
    seed: int = 0,
    normalize: Optional[str] = "scale",
    flatten: bool = False,
    shuffle: bool = False,
    drop_remainder: bool = True,
    cache: bool = True,
    prefetch: bool = True,
    data_dir=None,
    download: bool = False,
    image_key: str = "image",
    label_key: str = "label",
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` from a tensorflow-datasets name (``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``…).

    The split is read into memory (these data sets are small), then the steps
    of the module docstring are applied. For MNIST 7 vs 9 with ±1 targets:
    ``from_tfds("mnist", 256, classes=(7, 9), encoding="pm1", flatten=True)``.
    Needs tensorflow-datasets (``pip install 'keras-kare[tfds]'``).
    """
    images, labels, num_classes = read_tfds(name, split, data_dir, download, image_key, label_key)
    source = f"TFDS {name!r} split {split!r}"
    xa, ya = prepare_arrays(
        images, labels, classes, encoding, count, seed, normalize, flatten, source=source, num_classes=num_classes
    )
    return make_dataset(xa, ya, batch_size, shuffle, seed, drop_remainder, cache, prefetch)


def load_idx_arrays(directory, split: str = "train"):
    """``(images, labels)`` from MNIST-style IDX files.

    The files are ``<split>-images-idx3-ubyte[.gz]`` and ``<split>-labels-idx1-ubyte[.gz]``.

    ``split`` is the file prefix: ``"train"`` or ``"t10k"`` (``"test"`` is an alias).
    """
    from keras_kare.datasets.idx import read_idx_pair

    return read_idx_pair(directory, {"test": "t10k"}.get(split, split))


def from_idx(
    directory,
    batch_size: int,
    split: str = "train",
    classes: Optional[Sequence[int]] = None,
    encoding: Optional[str] = "one_hot",
    count: Optional[int] = None,
    seed: int = 0,
    normalize: Optional[str] = "scale",
    flatten: bool = False,
    shuffle: bool = False,
    drop_remainder: bool = True,
    cache: bool = True,
    prefetch: bool = True,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` from MNIST-style IDX files in ``directory`` (offline; never touches the network).

    Example (the MNIST test set in ``$KERAS_KARE_DATA/mnist``, 7 vs 9):
        >>> from keras_kare.datasets import mnist_dir
        >>> ds = from_idx(mnist_dir(), 128, split="t10k", classes=(7, 9),
        ...               encoding="pm1", flatten=True)  # doctest: +SKIP
    """
    images, labels = load_idx_arrays(directory, split)
    source = f"{directory} ({split})"
    xa, ya = prepare_arrays(images, labels, classes, encoding, count, seed, normalize, flatten, source=source)
    return make_dataset(xa, ya, batch_size, shuffle, seed, drop_remainder, cache, prefetch)


__all__ = [
    "ENCODINGS",
    "NORMALIZATIONS",
    "encode_labels",
    "filter_classes",
    "from_arrays",
    "from_idx",
    "from_tfds",
    "load_idx_arrays",
    "load_tfds_arrays",
    "make_dataset",
    "normalize",
    "prepare_arrays",
    "subset",
]
