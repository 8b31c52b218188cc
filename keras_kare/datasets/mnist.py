"""Figure 2's MNIST 7-vs-9 task (Schwab, Kelly, Malamud, Xu 2025).

Preprocessing (authors' code): pixels scaled to [0, 1], a 2-pixel border cropped
(28×28 → 24×24 = 576 features), flattened, each image centred on its own mean;
label +1 for a 7 and −1 for a 9. ``n_train`` training and ``n_test`` test
examples are drawn at random (without replacement) per seed.

Sources, in order: the IDX folder ``data_dir``; else ``$KERAS_KARE_DATA/mnist``
(see :func:`mnist_dir`); else MNIST through tensorflow-datasets if it is already
prepared locally (never downloaded; needs ``pip install 'keras-kare[tfds]'``).
When an IDX folder only has the *test* set (``t10k-*``, e.g. an offline copy),
train and test are both drawn from it, disjointly, and ``info["note"]`` says so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_kare.datasets.errors import DatasetError
from keras_kare.datasets.idx import idx_exists, read_idx_pair
from keras_kare.datasets.tfds_source import read_tfds, tfds_prepared

POSITIVE, NEGATIVE = 7, 9
DATA_ENV = "KERAS_KARE_DATA"


def mnist_dir(data_dir=None) -> Path:
    """The folder holding MNIST's IDX files: ``data_dir``, else ``$KERAS_KARE_DATA/mnist``.

    Args:
        data_dir: a folder with MNIST IDX files, or None.

    Returns:
        The folder as a ``Path`` (checked to exist).

    Raises:
        DatasetError: neither ``data_dir`` nor ``$KERAS_KARE_DATA`` is given,
            or the folder does not exist.

    Example:
        >>> os.environ["KERAS_KARE_DATA"] = "/data"  # doctest: +SKIP
        >>> mnist_dir()  # doctest: +SKIP
        PosixPath('/data/mnist')
    """
    if data_dir is not None:
        directory = Path(data_dir)
        where = "data_dir"
    elif os.environ.get(DATA_ENV):
        directory = Path(os.environ[DATA_ENV]) / "mnist"
        where = f"${DATA_ENV}/mnist"
    else:
        raise DatasetError(
            f"no MNIST location given: pass data_dir (a folder with MNIST IDX files; CLI: --data-dir) or set "
            f"${DATA_ENV} to a folder whose mnist/ sub-folder holds them."
        )
    if not directory.is_dir():
        raise DatasetError(f"{directory}: MNIST data folder ({where}) does not exist.")
    return directory


def preprocess(images: np.ndarray, crop: int = 2) -> np.ndarray:
    """uint8 (n, 28, 28) images → float32 (n, (28-2·crop)²), in [0, 1], per-image centred."""
    x = np.asarray(images, dtype=np.float32) / 255.0
    if crop:
        x = x[:, crop:-crop, crop:-crop]
    x = x.reshape(len(x), -1)
    return x - x.mean(axis=1, keepdims=True)


def _select_7_9(images: np.ndarray, labels: np.ndarray):
    keep = (labels == POSITIVE) | (labels == NEGATIVE)
    return images[keep], np.where(labels[keep] == POSITIVE, 1.0, -1.0).astype(np.float32)


def _load_idx_split(directory: Path, split: str):
    images, labels = read_idx_pair(directory, split)
    if images.ndim != 3 or labels.ndim != 1:
        raise DatasetError(
            f"{directory}: {split} images have shape {images.shape} and labels {labels.shape} "
            "(expected (n, 28, 28) images and (n,) labels)."
        )
    return images, labels


def _load_tfds_splits() -> dict:
    """Both MNIST splits from the prepared TFDS copy, as (images (n, 28, 28), labels)."""
    out = {}
    for split in ("train", "test"):
        images, labels, _ = read_tfds("mnist", split)
        out[split] = (images[..., 0], labels)
    return out


def _load_idx_splits(directory: Path) -> dict:
    has_test = idx_exists(directory, "t10k-images-idx3-ubyte") and idx_exists(directory, "t10k-labels-idx1-ubyte")
    has_train = idx_exists(directory, "train-images-idx3-ubyte") and idx_exists(directory, "train-labels-idx1-ubyte")
    if not (has_train or has_test):
        raise DatasetError(
            f"{directory}: no MNIST found (expected t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz], "
            "and/or the train-* pair)."
        )
    splits = {}
    if has_train:
        splits["train"] = _load_idx_split(directory, "train")
    if has_test:
        splits["test"] = _load_idx_split(directory, "t10k")
    return splits


def load_mnist_7v9(
    n_train: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
    data_dir=None,
    crop: int = 2,
    use_tfds: bool = True,
):
    """The 7-vs-9 task as numpy arrays.

    Args:
        n_train, n_test: sizes of the random draws (paper 1000 / 1000).
        seed: seed of the draw.
        data_dir: a folder with MNIST IDX files (``train-*`` and/or ``t10k-*``,
            optionally ``.gz``). ``None``: ``$KERAS_KARE_DATA/mnist`` if the
            variable is set, else a prepared tensorflow-datasets ``mnist``.
        crop: border pixels removed on each side (paper 2).
        use_tfds: try tensorflow-datasets when ``data_dir`` is None.

    Returns:
        ``(x_train, y_train, x_test, y_test, info)``: float32 x of shape
        (n, 576), y in {+1, −1}, and ``info`` with ``source`` (where the images
        came from) and ``note`` (how train and test were drawn).

    Raises:
        DatasetError: no usable source (the message names ``data_dir`` and
            ``$KERAS_KARE_DATA``), corrupt IDX file, or not enough 7s and 9s.

    Example:
        >>> x_tr, y_tr, x_te, y_te, info = load_mnist_7v9(data_dir="data/mnist")  # doctest: +SKIP
    """
    rng = np.random.RandomState(seed)
    if data_dir is None and not os.environ.get(DATA_ENV) and use_tfds and tfds_prepared("mnist"):
        splits, source = _load_tfds_splits(), "tensorflow-datasets mnist"
    else:
        try:
            directory = mnist_dir(data_dir)
        except DatasetError as err:
            if data_dir is None and use_tfds:
                raise DatasetError(
                    f"{err} Or prepare tensorflow-datasets' 'mnist' locally (pip install 'keras-kare[tfds]'); "
                    "none was found."
                ) from None
            raise
        splits, source = _load_idx_splits(directory), f"IDX files in {directory}"

    if "train" in splits and "test" in splits:
        x_tr, y_tr = _select_7_9(*splits["train"])
        x_te, y_te = _select_7_9(*splits["test"])
        for name, x, k in (("train", x_tr, n_train), ("test", x_te, n_test)):
            if len(x) < k:
                raise DatasetError(f"{source}: the {name} split has {len(x)} 7s and 9s, fewer than the {k} requested.")
        i_tr = rng.choice(len(x_tr), n_train, replace=False)
        i_te = rng.choice(len(x_te), n_test, replace=False)
        note = "train drawn from MNIST's training set, test from MNIST's test set"
    else:
        split = "train" if "train" in splits else "test"
        x_tr, y_tr = _select_7_9(*splits[split])
        x_te, y_te = x_tr, y_tr
        if len(x_tr) < n_train + n_test:
            raise DatasetError(
                f"{source}: only the {split} split is available and it has {len(x_tr)} 7s and 9s, fewer than "
                f"n_train + n_test = {n_train + n_test} needed for disjoint draws."
            )
        perm = rng.permutation(len(x_tr))
        i_tr, i_te = perm[:n_train], perm[n_train : n_train + n_test]
        note = (
            f"only MNIST's {split} set is available: train and test are disjoint random draws "
            f"from its {len(x_tr)} 7s and 9s"
        )
    info = {"source": source, "note": note}
    return preprocess(x_tr[i_tr], crop), y_tr[i_tr], preprocess(x_te[i_te], crop), y_te[i_te], info
