"""Numpy loaders for the paper's data sets (Schwab, Kelly, Malamud, Xu 2025).

- :func:`make_single_index`: Figure 1's synthetic regression.
- :func:`load_mnist_7v9`: Figure 2's MNIST 7-vs-9 task (IDX files or TFDS);
  :func:`mnist_dir` finds the IDX folder (argument or ``$KERAS_KARE_DATA/mnist``).
- :func:`load_higgs`: Figure 2's Higgs task from a user-provided CSV (UCI HIGGS or Kaggle layout).
- :func:`load_uci`, :func:`uci_split`: the 121 UCI data sets of Fernández-Delgado et al.
- :func:`read_idx`: the IDX format.
- :mod:`keras_kare.datasets.tfdata`: ``tf.data`` pipelines for ``KAREModel.fit``
  (:func:`from_arrays`, :func:`from_tfds`, :func:`from_idx`).

All loaders return numpy arrays and raise :class:`DatasetError` (a ``ValueError``)
with a one-line message naming the file when data are missing or malformed.
"""

from keras_kare.datasets import tfdata
from keras_kare.datasets.errors import DatasetError
from keras_kare.datasets.higgs import load_higgs, read_higgs
from keras_kare.datasets.idx import read_idx
from keras_kare.datasets.mnist import load_mnist_7v9, mnist_dir
from keras_kare.datasets.synthetic import index_direction, make_single_index
from keras_kare.datasets.tfdata import from_arrays, from_idx, from_tfds
from keras_kare.datasets.uci import (
    UCIDataset,
    encode_targets,
    list_uci_datasets,
    load_uci,
    preprocess_features,
    uci_split,
)

__all__ = [
    "DatasetError",
    "UCIDataset",
    "encode_targets",
    "from_arrays",
    "from_idx",
    "from_tfds",
    "list_uci_datasets",
    "load_higgs",
    "load_mnist_7v9",
    "load_uci",
    "index_direction",
    "make_single_index",
    "mnist_dir",
    "preprocess_features",
    "read_higgs",
    "read_idx",
    "tfdata",
    "uci_split",
]
