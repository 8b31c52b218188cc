"""The one reader of tensorflow-datasets (TFDS) splits into numpy arrays.

Used by :func:`keras_kare.datasets.tfdata.from_tfds` and by
:func:`keras_kare.datasets.load_mnist_7v9`. Nothing is downloaded unless
``download=True``. tensorflow-datasets is optional (``pip install
'keras-kare[tfds]'``); without it these functions raise
:class:`keras_kare._optional.MissingExtraError` (an ``ImportError``).
"""

from __future__ import annotations

import difflib

import numpy as np

from keras_kare._optional import require
from keras_kare.datasets.errors import DatasetError


def tfds_prepared(name: str, data_dir=None) -> bool:
    """True if tensorflow-datasets is installed and ``name`` is already prepared in ``data_dir``.

    Never downloads. An unknown name raises :class:`DatasetError`; a missing
    tensorflow-datasets returns False.
    """
    try:
        tfds = require("tensorflow_datasets", "reading tensorflow-datasets")
    except ImportError:
        return False
    import absl.logging

    level = absl.logging.get_verbosity()
    absl.logging.set_verbosity(absl.logging.ERROR)  # an empty TFDS cache is the normal offline case
    try:
        return bool(_builder(tfds, name, data_dir).is_prepared())
    finally:
        absl.logging.set_verbosity(level)


def _builder(tfds, name: str, data_dir):
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        close = difflib.get_close_matches(name, tfds.list_builders(), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise DatasetError(f"tensorflow-datasets has no data set named {name!r}.{hint}") from err


def read_tfds(
    name: str,
    split: str = "train",
    data_dir=None,
    download: bool = False,
    image_key: str = "image",
    label_key: str = "label",
):
    """``(inputs, labels, num_classes)`` numpy arrays of a whole TFDS split (for small data sets).

    Args:
        name: TFDS name, e.g. ``"mnist"``.
        split: split name, e.g. ``"train"`` or ``"test"``.
        data_dir: TFDS data folder (None: TFDS's default).
        download: allow ``download_and_prepare`` (default: never touch the network).
        image_key, label_key: feature names of the inputs and labels.

    Returns:
        Inputs and labels as numpy arrays, and the number of classes of the
        label feature (None when the feature does not say).

    Raises:
        DatasetError: unknown name (with close matches), a data set not
            prepared in ``data_dir``, an unknown split or missing feature keys.
        MissingExtraError: tensorflow-datasets is not installed.

    Example:
        >>> images, labels, num_classes = read_tfds("mnist", "test")  # doctest: +SKIP
    """
    tfds = require("tensorflow_datasets", f"reading the TFDS data set {name!r}")
    builder = _builder(tfds, name, data_dir)
    try:
        if download:
            builder.download_and_prepare()
        ds = builder.as_dataset(split=split)
    except (AssertionError, FileNotFoundError, tfds.core.registered.DatasetNotFoundError) as err:
        raise DatasetError(
            f"TFDS data set {name!r} is not prepared in data_dir={str(data_dir or builder.data_dir)!r} and "
            "download=False (no network access is attempted). Prepare it there, pass download=True, "
            "or use from_idx/from_arrays with local files."
        ) from err
    except ValueError as err:  # unknown split
        raise DatasetError(f"TFDS data set {name!r}: {err}") from err
    features = sorted(ds.element_spec) if isinstance(ds.element_spec, dict) else []
    for key in (image_key, label_key):
        if key not in features:
            raise DatasetError(f"TFDS data set {name!r} has no feature {key!r} (features: {features}).")
    # chunks rather than batch_size=-1, which needs a known cardinality (not so for generated/mock data)
    chunks = list(tfds.as_numpy(ds.map(lambda e: (e[image_key], e[label_key])).batch(4096)))
    if not chunks:
        raise DatasetError(f"TFDS data set {name!r} split {split!r} is empty.")
    label_feature = builder.info.features[label_key] if label_key in builder.info.features else None
    num_classes = getattr(label_feature, "num_classes", None)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks]), num_classes


__all__ = ["read_tfds", "tfds_prepared"]
